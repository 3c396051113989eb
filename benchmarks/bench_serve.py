"""How the served pipeline behaves under load: ``sklearn-albert serve`` over real HTTP.

A ``Pipeline(AlbertVectorizer, LogisticRegression)`` on the ALBERT-base architecture
(seeded random weights, the default precision: bfloat16 on a CPU that has it) is fitted on
SST-2 train sentences, saved with joblib (weights in the pickle), and served by
``python -m sklearn_albert serve MODEL``. A real HTTP client (aiohttp, over loopback, in
this process) sends SST-2 dev and test sentences, one text per request, and every server
process's CPU time and resident memory are read from ``/proc`` (psutil). Scenarios
(``--scenarios``), in this order, with their goals:

``throughput``
    64 concurrent clients in a closed loop (each sends one request after the other) over
    ``--texts`` texts, against the offline figure: ``pipeline.predict`` of the same texts
    in one call, in this process, with every server process stopped (SIGSTOP) meanwhile.
    Interleaved: offline, served, offline. Goal: served texts/s >= 0.85 x offline.
``baselines``
    The same 64 clients on the first ``--baseline-texts`` texts against a hand-written
    FastAPI endpoint calling ``predict`` per request (``_naive_server.py``) and against
    ``mlflow models serve --env-manager local`` of the same pipeline saved with
    ``mlflow.sklearn.save_model``. Interleaved: served, naive, served, mlflow, served; the
    servers not being measured are stopped (SIGSTOP). Goal: >= 2x each.
``latency``
    1 client over ``--latency-texts`` texts against ``pipeline.predict([text])`` in this
    process, text by text. Interleaved: in-process, served, in-process. Goal: p50 <= 1.3x.
``tail``
    8 clients in a closed loop over ``--tail-texts`` texts. Goal: p99 / p50 <= 3.
``overload``
    An open loop (requests sent on a fixed schedule, whatever the answers) at 4x the
    texts/s measured by ``throughput`` for ``--duration`` seconds, against the server's
    bounded queue (``--max-queue``). Goal: every request answered 200 or 503 within the
    client timeout (``--overload-timeout``, 10 s), no connection error, and the server's
    resident memory (all its processes) at most 10% above what it was before.
``sigterm``
    64 clients in a closed loop; after ``--sigterm-after`` seconds the server gets
    SIGTERM and the clients stop sending. Goal: every request in flight at the signal
    answered 200, and the server exits with status 0.
``coldstart``
    A fresh server process: seconds from ``Popen`` to the first ``GET /health`` 200,
    ``--cold-starts`` times, and the pieces, each timed in a fresh interpreter: Python
    itself, the imports (torch, transformers, sklearn_albert, litserve), ``joblib.load``
    of the pipeline, and the first and second ``predict`` (the lazy model build, then
    warm kernels).

``--tune`` first runs ``throughput``'s served half for each server setting of
``--tune-grid`` (workers:max-batch-size:batch-timeout) on ``--tune-texts`` texts, with
the offline figure before and after.

The machine these scripts run on is shared: each row records the 1-minute load average,
and the ratios, measured interleaved, are the figures that count. How batches formed is
estimated from the client side: responses that arrive within 5 ms of one another are
counted as one batch ("burst").

Examples
--------
``python benchmarks/bench_serve.py --quick`` (smoke run: tiny counts, a few minutes)
``python benchmarks/bench_serve.py --out serve.json`` (2,000 texts; not timed on an idle machine)
``python benchmarks/bench_serve.py --tune --scenarios throughput``
"""

import argparse
import asyncio
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common as common
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = ("throughput", "baselines", "latency", "tail", "overload", "sigterm", "coldstart")
DEFAULT_TUNE_GRID = "1:16:0.01,1:32:0.01,1:64:0.02,1:64:0.05,2:32:0.02"
BURST_GAP_SECONDS = 0.005
#: What ``sklearn_albert.serving`` logs per batch at ``--log-level debug``.
BATCH_LINE = re.compile(
    r"/predict batch: (\d+) request\(s\), (\d+) text\(s\), \d+ characters, ([\d.]+) s"
    r"(?: on (\S+))?"
)

# ---------------------------------------------------------------------- texts and model


def load_texts(n_texts, *, seed=0):
    """``n_texts`` SST-2 sentences from GLUE dev and the labelled test set, shuffled."""
    sst2 = common.SHARED / "data" / "sst2"
    if not (sst2 / "glue_dev.tsv").exists():
        print("SST-2 is not available here; using generated sentences.")
        return common.distinct_generated_sentences(n_texts, seed=seed), "generated"
    texts, _ = common.read_sst2_glue_dev()
    with open(sst2 / "test.tsv", encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        texts += [row["content"] for row in rows]
    order = np.random.default_rng(seed).permutation(len(texts))
    texts = [texts[i] for i in order]
    if n_texts > len(texts):
        texts = (texts * (n_texts // len(texts) + 1))[:n_texts]
        print(f"Only {len(order)} SST-2 dev and test sentences: some texts repeat.")
    return texts[:n_texts], "sst2-dev+test"


def fit_pipeline(folder, n_fit):
    """``Pipeline(AlbertVectorizer, LogisticRegression)`` fitted on SST-2 train sentences."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from sklearn_albert import AlbertVectorizer

    if common.sst2_train_path().exists():
        texts, labels = common.sample_sst2_train(n_fit, seed=0, distinct=True)
    else:
        texts = common.distinct_generated_sentences(n_fit)
        labels = [len(text) % 2 for text in texts]
    vectorizer = AlbertVectorizer(str(folder), embedding_cache=None, store_weights_in_pickle=True)
    pipeline = Pipeline([("vect", vectorizer), ("clf", LogisticRegression(max_iter=1000))])
    return pipeline.fit(texts, labels)


def save_models(pipeline, folder):
    """The pipeline as a joblib file, and as an MLflow model (sklearn flavour)."""
    import joblib

    joblib_path = Path(folder) / "pipeline.joblib"
    joblib.dump(pipeline, joblib_path)
    mlflow_path = Path(folder) / "mlflow_model"
    try:
        import mlflow.sklearn

        # Naming the requirements skips MLflow's inference of them (a model load in a
        # subprocess); --env-manager local ignores them anyway. MLflow 3's default format,
        # skops, refuses the vectorizer's types unless trusted by name: cloudpickle, as
        # MLflow 2 wrote it (the weights travel in the pickle, store_weights_in_pickle).
        mlflow.sklearn.save_model(
            pipeline,
            str(mlflow_path),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=["scikit-learn"],
        )
    except ImportError:
        mlflow_path = None
    return joblib_path, mlflow_path


# ---------------------------------------------------------------------- server processes


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(common.REPO_ROOT), env.get("PYTHONPATH")])
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


class Server:
    """One server process (and its children): start, health, CPU, memory, pause, stop.

    Parameters
    ----------
    name : str
    command : list of str
    health_path : str
        Path answered 200 once the model is loaded.
    predict_path : str
    payload : callable
        ``payload(text) -> dict``, the JSON body of a one-text request.
    log_dir : Path
    """

    def __init__(self, name, command, port, health_path, predict_path, payload, log_dir):
        self.name = name
        self.command = command
        self.port = port
        self.health_url = f"http://127.0.0.1:{port}{health_path}"
        self.predict_url = f"http://127.0.0.1:{port}{predict_path}"
        self.payload = payload
        self.log_path = Path(log_dir) / f"{name}-{port}.log"
        self.process = None
        self.paused = False

    def start(self, timeout=600):
        """Start the process; return the seconds until ``health_path`` answered 200."""
        log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
            start_new_session=True,
        )
        log.close()
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode} before "
                    f"answering {self.health_url}:\n{self.log_tail()}"
                )
            if health_status(self.health_url) == 200:
                self.cold_start_seconds = time.perf_counter() - started
                return self.cold_start_seconds
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"{self.name} did not answer {self.health_url} in {timeout} s:\n{self.log_tail()}"
        )

    def log_size(self):
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def batches_logged(self, start, end):
        """``(requests, texts, estimator seconds, thread name)`` of each batch in the
        server's debug log between two offsets (the thread is "?" for older servers)."""
        with open(self.log_path, "rb") as handle:
            handle.seek(start)
            text = handle.read(end - start).decode(errors="replace")
        return [
            (int(requests), int(texts), float(seconds), thread or "?")
            for requests, texts, seconds, thread in BATCH_LINE.findall(text)
        ]

    def log_tail(self, n_chars=3000):
        return self.log_path.read_text(errors="replace")[-n_chars:]

    def processes(self):
        """The server's process and all its descendants now."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self):
        """User + system CPU seconds of every live process of the server."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self):
        """``{pid: user + system CPU seconds}`` of every live process of the server."""
        import psutil

        seconds = {}
        for process in self.processes():
            try:
                times = process.cpu_times()
                seconds[process.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return seconds

    def rss_bytes(self):
        """Resident memory summed over the server's processes (``VmRSS``)."""
        return sum(self.rss_by_process().values())

    def rss_by_process(self):
        """``{pid: resident bytes}`` of every live process of the server."""
        import psutil

        rss = {}
        for process in self.processes():
            try:
                rss[process.pid] = process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return rss

    def process_roles(self):
        """``{pid: "main" | "http" | "inference worker" | "other", rss MB}`` of each process.

        LitServe names its processes in its debug log (``LitServer-0[pid]``, ``Worker
        inference-worker (PID: pid)``); worker pids are logged at shutdown only, so a live
        server's model-holding processes are told by their memory instead.
        """
        import psutil

        roles = {}
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        http = set(re.findall(r"LitServer-\d+\[(\d+)\]", log))
        for process in self.processes():
            try:
                rss = common.megabytes(process.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
            if process.pid == self.process.pid:
                role = "main"
            elif str(process.pid) in http:
                role = "http"
            else:
                role = "other"
            roles[process.pid] = {"role": role, "rss_mb": round(rss)}
        return roles

    def pause(self):
        for process in self.processes():
            process.suspend()
        self.paused = True

    def resume(self):
        for process in self.processes():
            process.resume()
        self.paused = False

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout=60):
        """SIGTERM to the main process; return ``(exit status, seconds)`` or kill at timeout."""
        if self.paused:
            self.resume()
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None, time.perf_counter() - started
        seconds = time.perf_counter() - started
        self.kill()  # leftover children, if any
        return status, seconds

    def kill(self):
        """SIGKILL the process group this server was started in (its own session)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()


def health_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def served_server(args, model_path, log_dir, *, workers, max_batch_size, batch_timeout):
    if args.target == "naive":
        server = naive_server(model_path, log_dir)
        server.name = "served"
        return server
    port = free_port()
    command = [
        sys.executable, "-m", "sklearn_albert", "serve", str(model_path),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
        "--max-batch-size", str(max_batch_size),
        "--batch-timeout", str(batch_timeout),
        "--max-queue", str(args.max_queue),
        "--log-level", args.server_log_level,
    ]  # fmt: skip
    return Server(
        "served", command, port, "/health", "/predict", lambda text: {"texts": [text]}, log_dir
    )


def naive_server(model_path, log_dir):
    port = free_port()
    command = [
        sys.executable,
        str(BENCH_DIR / "_naive_server.py"),
        str(model_path),
        "--port",
        str(port),
    ]
    return Server(
        "naive_fastapi", command, port, "/health", "/predict", lambda t: {"texts": [t]}, log_dir
    )


def mlflow_server(mlflow_path, log_dir):
    port = free_port()
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    command = [
        mlflow_cli, "models", "serve", "-m", str(mlflow_path), "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip

    def payload(text):
        return {"dataframe_split": {"columns": ["text"], "data": [[text]]}}

    return Server("mlflow_serve", command, port, "/ping", "/invocations", payload, log_dir)


# ---------------------------------------------------------------------- HTTP clients


async def _send(session, url, body, timeout):
    import aiohttp

    started = time.perf_counter()
    status, detail = None, None
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
        ) as response:
            payload = await response.read()
            status = response.status
            if status == 200:
                answer = json.loads(payload)
                if len(answer.get("predictions", ())) != 1:
                    status, detail = "bad_body", payload[:200].decode(errors="replace")
            elif status == 503:
                detail = response.headers.get("Retry-After")
    except asyncio.TimeoutError:
        status = "timeout"
    except aiohttp.ClientError as error:
        status, detail = "connection_error", type(error).__name__
    return started, time.perf_counter(), status, detail


def _bodies(server, texts):
    return [json.dumps(server.payload(text)).encode() for text in texts]


async def _closed_loop(url, bodies, clients, timeout, stop=None):
    import aiohttp

    records = []
    pending = iter(bodies)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client():
            for body in pending:
                if stop is not None and stop.is_set():
                    return
                records.append(await _send(session, url, body, client_timeout))

        await asyncio.gather(*(client() for _ in range(clients)))
    return records


async def _open_loop(url, bodies, rate, duration, timeout):
    import aiohttp

    n_requests = int(rate * duration)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=0)
    lag = 0.0
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        started = time.perf_counter()
        for index in range(n_requests):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            body = bodies[index % len(bodies)]
            tasks.append(asyncio.create_task(_send(session, url, body, client_timeout)))
        records = await asyncio.gather(*tasks)
    return records, lag


# ---------------------------------------------------------------------- measuring


def _percentile_ms(values, q):
    return float(np.percentile(values, q) * 1000) if len(values) else None


def texts_per_cpu_second(row):
    """Texts answered per CPU second (server + client, or this process offline).

    Less sensitive than texts/s to what else runs on a shared machine: the scheduler
    gives a process with many runnable threads a larger share of the cores.
    """
    if row.get("cpu_s_total"):
        row["texts_per_cpu_s"] = row["ok"] / row["cpu_s_total"]
    return row


def summarize(records, seconds):
    """Texts/s, latency percentiles (answered 200 only), statuses and batch bursts."""
    ok = [(start, end) for start, end, status, _ in records if status == 200]
    latencies = [end - start for start, end in ok]
    ends = sorted(end for _, end in ok)
    bursts = [1] if ends else []
    for previous, current in zip(ends, ends[1:]):
        if current - previous <= BURST_GAP_SECONDS:
            bursts[-1] += 1
        else:
            bursts.append(1)
    statuses = Counter(str(status) for _, _, status, _ in records)
    return {
        "requests": len(records),
        "ok": len(ok),
        "seconds": seconds,
        "texts_per_second": len(ok) / seconds if seconds else None,
        "p50_ms": _percentile_ms(latencies, 50),
        "p95_ms": _percentile_ms(latencies, 95),
        "p99_ms": _percentile_ms(latencies, 99),
        "max_ms": _percentile_ms(latencies, 100),
        "statuses": dict(statuses),
        "mean_burst": float(np.mean(bursts)) if bursts else None,
        "max_burst": max(bursts) if bursts else None,
    }


class Phase:
    """Wall time, load, this process's CPU and every live server's CPU over a ``with`` block."""

    def __init__(self, servers):
        self.servers = [server for server in servers if server.alive()]

    def __enter__(self):
        self.load = os.getloadavg()[0]
        self.by_process = {server.name: server.cpu_by_process() for server in self.servers}
        self.server_cpu = {server.name: server.cpu_seconds() for server in self.servers}
        self.client_cpu = _own_cpu_seconds()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self.started
        self.client_cpu = _own_cpu_seconds() - self.client_cpu
        self.server_cpu = {
            server.name: server.cpu_seconds() - self.server_cpu[server.name]
            for server in self.servers
        }
        for server in self.servers:
            before = self.by_process[server.name]
            after = server.cpu_by_process()
            self.by_process[server.name] = {
                pid: round(seconds - before.get(pid, 0.0), 2) for pid, seconds in after.items()
            }
        return False

    def row(self, server_name=None):
        cpu = self.server_cpu.get(server_name) if server_name else None
        others = sum(v for name, v in self.server_cpu.items() if name != server_name)
        return {
            "load_1min": self.load,
            "server_cpu_s": cpu,
            "server_cpu_per_s": cpu / self.seconds if cpu is not None else None,
            "cpu_s_total": (cpu or 0.0) + self.client_cpu,
            "client_cpu_s": self.client_cpu,
            "other_servers_cpu_s": others,
            "server_cpu_s_by_pid": self.by_process.get(server_name) if server_name else None,
        }


def _own_cpu_seconds():
    times = os.times()
    return times.user + times.system


def _paused_except(servers, keep):
    for server in servers:
        if server is not keep and server.alive() and not server.paused:
            server.pause()
    if keep is not None and keep.paused:
        keep.resume()


def warm_up(server, texts, clients=4):
    """A few requests, so that the measured requests find the model built and warm."""
    records = asyncio.run(_closed_loop(server.predict_url, _bodies(server, texts), clients, 120))
    bad = [record for record in records if record[2] != 200]
    if bad:
        raise RuntimeError(f"{server.name} answered {bad[0][2]} ({bad[0][3]}) during warm-up")


def run_closed_loop(server, texts, clients, servers, *, timeout=120, label):
    _paused_except(servers, server)
    bodies = _bodies(server, texts)
    log_start = server.log_size()
    with Phase(servers) as phase:
        records = asyncio.run(_closed_loop(server.predict_url, bodies, clients, timeout))
    row = {"scenario": label, "system": server.name, "clients": clients}
    row.update(summarize(records, phase.seconds))
    row.update(phase.row(server.name))
    add_batches(row, server, log_start)
    return texts_per_cpu_second(row)


def add_batches(row, server, log_start):
    """Batch sizes the server logged during the phase (``--server-log-level debug``)."""
    time.sleep(0.2)  # the last batch's line
    batches = server.batches_logged(log_start, server.log_size())
    if batches:
        sizes = [texts for _, texts, _, _ in batches]
        row["batches"] = len(batches)
        row["mean_batch_texts"] = float(np.mean(sizes))
        row["max_batch_texts"] = max(sizes)
        row["batch_sizes"] = sizes
        row["batch_estimator_ms_p50"] = _percentile_ms([s for _, _, s, _ in batches], 50)
        row["batch_threads"] = dict(Counter(thread for _, _, _, thread in batches))


def run_offline(pipeline, texts, servers, *, label):
    _paused_except(servers, None)
    time.sleep(0.5)
    with Phase(servers) as phase:
        predictions = pipeline.predict(texts)
    assert len(predictions) == len(texts)
    row = {"scenario": label, "system": "offline predict", "clients": None, "requests": 1}
    row.update({"ok": len(texts), "seconds": phase.seconds})
    row["texts_per_second"] = len(texts) / phase.seconds
    row.update(phase.row())
    row["process_cpu_s"] = phase.client_cpu
    return texts_per_cpu_second(row)


def run_in_process_batches(pipeline, texts, batch_sizes, servers, *, label):
    """``pipeline.predict`` in this process on consecutive slices of ``texts``, one call
    per batch the server ran (``batch_sizes``, in its order), as many calls at once as a
    server worker runs (``serving.BATCHES_IN_FLIGHT`` threads taking the slices in
    order, each running torch on one thread and its passes on the streams, as a worker's
    batch threads do): what the served batches cost without HTTP, queues or other
    processes."""
    _paused_except(servers, None)
    time.sleep(0.5)
    slices, start = [], 0
    for size in batch_sizes:
        if start >= len(texts):
            break
        slices.append(texts[start : start + size])
        start += size
    if start < len(texts):
        slices.append(texts[start:])
    import torch

    from sklearn_albert._threads import run_torch_on_streams_only
    from sklearn_albert.serving import BATCHES_IN_FLIGHT

    callers = ThreadPoolExecutor(  # as a worker's batch threads run
        BATCHES_IN_FLIGHT,
        initializer=run_torch_on_streams_only,
        initargs=(torch.get_num_threads(),),
    )
    with Phase(servers) as phase, callers:
        list(callers.map(pipeline.predict, slices))
    row = {"scenario": label, "system": "in-process, served batches", "clients": None}
    row.update({"requests": len(slices), "ok": len(texts), "seconds": phase.seconds})
    row["texts_per_second"] = len(texts) / phase.seconds
    row["mean_batch_texts"] = len(texts) / len(slices)
    row.update(phase.row())
    row["process_cpu_s"] = phase.client_cpu
    return texts_per_cpu_second(row)


def run_in_process_one_by_one(pipeline, texts, servers, *, label):
    _paused_except(servers, None)
    time.sleep(0.5)
    latencies = []
    with Phase(servers) as phase:
        for text in texts:
            started = time.perf_counter()
            pipeline.predict([text])
            latencies.append(time.perf_counter() - started)
    row = {"scenario": label, "system": "in-process predict([text])", "clients": 1}
    row.update({"requests": len(texts), "ok": len(texts), "seconds": phase.seconds})
    row["texts_per_second"] = len(texts) / phase.seconds
    for q in (50, 95, 99):
        row[f"p{q}_ms"] = _percentile_ms(latencies, q)
    row.update(phase.row())
    row["process_cpu_s"] = phase.client_cpu
    return texts_per_cpu_second(row)


# ---------------------------------------------------------------------- scenarios


def scenario_throughput(ctx):
    args, served = ctx["args"], ctx["served"]
    rows = []
    for _ in range(args.rounds):
        rows.append(run_offline(ctx["pipeline"], ctx["texts"], ctx["servers"], label="throughput"))
        rows.append(run_closed_loop(served, ctx["texts"], 64, ctx["servers"], label="throughput"))
        if rows[-1].get("batch_sizes"):
            # Where the served path loses: its batches, or what carries them?
            sizes = rows[-1]["batch_sizes"]
            rows.append(
                run_in_process_batches(
                    ctx["pipeline"], ctx["texts"], sizes, ctx["servers"], label="throughput"
                )
            )
        rows.append(run_offline(ctx["pipeline"], ctx["texts"], ctx["servers"], label="throughput"))

    def mean_rate(system):
        rates = [row["texts_per_second"] for row in rows if row["system"] == system]
        return np.mean(rates) if rates else float("nan")

    offline, online = mean_rate("offline predict"), mean_rate("served")
    ctx["capacity"] = online
    goal = {"goal": "served / offline texts/s >= 0.85", "value": online / offline}
    goal["met"] = goal["value"] >= 0.85
    in_batches = mean_rate("in-process, served batches")
    if np.isfinite(in_batches):  # the server logged its batches (--server-log-level debug)
        goal["in_process_batches_over_offline"] = in_batches / offline
        goal["served_over_in_process_batches"] = online / in_batches
    return rows, [goal]


def scenario_baselines(ctx):
    args, served = ctx["args"], ctx["served"]
    texts = ctx["texts"][: args.baseline_texts]
    baselines = [naive_server(ctx["joblib_path"], ctx["log_dir"])]
    if ctx["mlflow_path"] is not None:
        baselines.append(mlflow_server(ctx["mlflow_path"], ctx["log_dir"]))
    rows, goals = [], []
    for baseline in baselines:
        _paused_except(ctx["servers"], None)
        seconds = baseline.start()
        print(f"  {baseline.name} up in {seconds:.1f} s", flush=True)
        ctx["servers"].append(baseline)
        warm_up(baseline, texts[:8])
    rows.append(run_closed_loop(served, texts, 64, ctx["servers"], label="baselines"))
    for baseline in baselines:
        rows.append(run_closed_loop(baseline, texts, 64, ctx["servers"], label="baselines"))
        rows.append(run_closed_loop(served, texts, 64, ctx["servers"], label="baselines"))
    for baseline in baselines:
        ctx["servers"].remove(baseline)
        baseline.kill()
    served_rate = np.mean([row["texts_per_second"] for row in rows if row["system"] == "served"])
    for row in rows:
        if row["system"] != "served":
            value = served_rate / row["texts_per_second"] if row["texts_per_second"] else None
            goal = {"goal": f"served / {row['system']} texts/s >= 2", "value": value}
            goal["met"] = value is not None and value >= 2
            goals.append(goal)
    return rows, goals


def scenario_latency(ctx):
    texts = ctx["texts"][: ctx["args"].latency_texts]
    pipeline, servers, served = ctx["pipeline"], ctx["servers"], ctx["served"]
    rows = [run_in_process_one_by_one(pipeline, texts, servers, label="latency")]
    rows.append(run_closed_loop(served, texts, 1, servers, label="latency"))
    rows.append(run_in_process_one_by_one(pipeline, texts, servers, label="latency"))
    in_process = np.mean([rows[0]["p50_ms"], rows[2]["p50_ms"]])
    goal = {"goal": "1 client p50 / in-process p50 <= 1.3", "value": rows[1]["p50_ms"] / in_process}
    goal["met"] = goal["value"] <= 1.3
    return rows, [goal]


def scenario_tail(ctx):
    texts = ctx["texts"][: ctx["args"].tail_texts]
    row = run_closed_loop(ctx["served"], texts, 8, ctx["servers"], label="tail")
    goal = {"goal": "8 clients p99 / p50 <= 3", "value": row["p99_ms"] / row["p50_ms"]}
    goal["met"] = goal["value"] <= 3
    return [row], [goal]


def scenario_overload(ctx):
    args, served = ctx["args"], ctx["served"]
    if ctx.get("capacity") is None:
        probe = run_closed_loop(served, ctx["texts"][:256], 64, ctx["servers"], label="capacity")
        ctx["capacity"] = probe["texts_per_second"]
    rate = 4 * ctx["capacity"]
    _paused_except(ctx["servers"], served)
    bodies = _bodies(served, ctx["texts"])
    by_process_before = served.rss_by_process()
    rss_before = sum(by_process_before.values())
    samples, by_process_peak, stop = [], dict(by_process_before), threading.Event()

    def sample():
        while not stop.wait(0.25):
            by_process = served.rss_by_process()
            samples.append(sum(by_process.values()))
            for pid, rss in by_process.items():
                by_process_peak[pid] = max(rss, by_process_peak.get(pid, 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log_start = served.log_size()
    with Phase(ctx["servers"]) as phase:
        records, lag = asyncio.run(
            _open_loop(served.predict_url, bodies, rate, args.duration, args.overload_timeout)
        )
    drained = time.perf_counter()
    while health_status(served.health_url) != 200 and time.perf_counter() - drained < 60:
        time.sleep(0.1)
    drained = time.perf_counter() - drained
    time.sleep(1.0)
    stop.set()
    sampler.join()
    rss_after = served.rss_bytes()
    row = {"scenario": "overload", "system": "served", "clients": f"open loop {rate:.0f}/s"}
    row.update(summarize(records, phase.seconds))
    row.update(phase.row(served.name))
    add_batches(row, served, log_start)
    answered = [r for r in records if r[2] in (200, 503)]
    late = [r for r in answered if r[1] - r[0] > args.overload_timeout]
    rejected = [r[1] - r[0] for r in records if r[2] == 503]
    retry_after = Counter(r[3] for r in records if r[2] == 503)
    row.update(
        {
            "offered_rate": rate,
            "client_send_lag_s": lag,
            "answered_200_or_503": len(answered),
            "rejected_503": len(rejected),
            "p50_ms_503": _percentile_ms(rejected, 50),
            "p99_ms_503": _percentile_ms(rejected, 99),
            "retry_after_values": dict(retry_after),
            "timeouts": sum(r[2] == "timeout" for r in records),
            "connection_errors": sum(r[2] == "connection_error" for r in records),
            "health_200_after_s": drained,
            "rss_before_mb": common.megabytes(rss_before),
            "rss_peak_mb": common.megabytes(max([rss_before, rss_after, *samples])),
            "rss_after_mb": common.megabytes(rss_after),
            # Which process grew: {pid: [MB before, peak MB during and after]}.
            "rss_mb_by_pid": {
                str(pid): [
                    round(common.megabytes(by_process_before.get(pid, 0))),
                    round(common.megabytes(peak)),
                ]
                for pid, peak in by_process_peak.items()
            },
        }
    )
    growth = max([rss_after, *samples]) / rss_before - 1
    row["rss_growth"] = growth
    goals = [
        {
            "goal": f"every request 200 or 503 within {args.overload_timeout:g} s",
            "value": f"{len(answered) - len(late)} / {len(records)}",
            "met": len(answered) - len(late) == len(records),
        },
        {"goal": "connection errors == 0", "value": row["connection_errors"]},
        {"goal": "server RSS growth <= 10%", "value": growth, "met": growth <= 0.10},
    ]
    goals[1]["met"] = row["connection_errors"] == 0
    return [row], goals


def scenario_sigterm(ctx):
    args, served = ctx["args"], ctx["served"]
    _paused_except(ctx["servers"], served)
    bodies = _bodies(served, ctx["texts"])
    outcome = {}

    async def load_then_signal():
        stop = asyncio.Event()

        async def signal_later():
            await asyncio.sleep(args.sigterm_after)
            outcome["signal_at"] = time.perf_counter()
            served.process.send_signal(signal.SIGTERM)
            stop.set()

        signaller = asyncio.create_task(signal_later())
        records = await _closed_loop(served.predict_url, bodies, 64, 120, stop=stop)
        await signaller
        return records

    with Phase(ctx["servers"]) as phase:
        records = asyncio.run(load_then_signal())
    signal_at = outcome["signal_at"]
    try:
        status = served.process.wait(60)
    except subprocess.TimeoutExpired:
        status = None
    exit_seconds = time.perf_counter() - signal_at
    served.kill()
    in_flight = [r for r in records if r[0] < signal_at < r[1]]
    after = [r for r in records if r[0] >= signal_at]
    statuses = Counter(str(r[2]) for r in in_flight)
    row = {"scenario": "sigterm", "system": "served", "clients": 64}
    row.update(summarize(records, phase.seconds))
    row.update(phase.row(served.name))
    row.update(
        {
            "in_flight_at_signal": len(in_flight),
            "in_flight_statuses": dict(statuses),
            "sent_after_signal": len(after),
            "exit_status": status,
            "exit_seconds_after_signal": exit_seconds,
            "last_answer_after_signal_s": max((r[1] for r in in_flight), default=signal_at)
            - signal_at,
        }
    )
    goals = [
        {
            "goal": "every in-flight request at SIGTERM answered 200",
            "value": f"{statuses.get('200', 0)} / {len(in_flight)}",
            "met": bool(in_flight) and statuses.get("200", 0) == len(in_flight),
        },
        {"goal": "exit status 0 after SIGTERM", "value": status, "met": status == 0},
    ]
    return [row], goals


PIECES = r"""
import json, sys, time
started = time.perf_counter()
import torch, transformers, sklearn
imported_torch = time.perf_counter()
import sklearn_albert
try:
    import litserve
except ImportError:
    pass
imported = time.perf_counter()
import joblib
pipeline = joblib.load(sys.argv[1])
loaded = time.perf_counter()
pipeline.predict(["a first sentence to build the model."])
first = time.perf_counter()
pipeline.predict(["a second sentence, with warm kernels."])
second = time.perf_counter()
print(json.dumps({
    "import_torch_transformers_sklearn_s": imported_torch - started,
    "import_sklearn_albert_litserve_s": imported - imported_torch,
    "joblib_load_s": loaded - imported,
    "first_predict_s": first - loaded,
    "second_predict_s": second - first,
}))
"""


def scenario_coldstart(ctx):
    args = ctx["args"]
    rows = []
    for _ in range(args.cold_starts):
        server = served_server(args, ctx["joblib_path"], ctx["log_dir"], **ctx["settings"])
        with Phase([]) as phase:
            seconds = server.start()
        rss = server.rss_bytes()
        n_processes = len(server.processes())
        roles = server.process_roles()
        status, _ = server.terminate()
        rows.append(
            {
                "scenario": "coldstart",
                "system": "served",
                "seconds": seconds,
                "rss_mb": common.megabytes(rss),
                "processes": n_processes,
                "process_roles": roles,
                "exit_status": status,
                "load_1min": phase.load,
            }
        )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=server_env())
    python_seconds = time.perf_counter() - started
    completed = subprocess.run(
        [sys.executable, "-c", PIECES, str(ctx["joblib_path"])],
        check=True,
        capture_output=True,
        text=True,
        env=server_env(),
    )
    pieces = {"python_startup_s": python_seconds}
    pieces.update(json.loads(completed.stdout.strip().splitlines()[-1]))
    rows.append({"scenario": "coldstart", "system": "pieces (fresh interpreter)", **pieces})
    return rows, []


def tune(ctx):
    args = ctx["args"]
    texts = ctx["texts"][: args.tune_texts]
    rows = [run_offline(ctx["pipeline"], texts, [], label="tune")]
    for spec in args.tune_grid.split(","):
        workers, batch, timeout = spec.split(":")
        settings = {"workers": int(workers), "max_batch_size": int(batch), "batch_timeout": timeout}
        server = served_server(args, ctx["joblib_path"], ctx["log_dir"], **settings)
        server.start()
        warm_up(server, texts[:16])
        row = run_closed_loop(server, texts, 64, [server], label="tune")
        row["settings"] = spec
        row["rss_mb"] = common.megabytes(server.rss_bytes())
        rows.append(row)
        server.kill()
        print(f"  {spec}: {row['texts_per_second']:.1f} texts/s, p50 {row['p50_ms']:.0f} ms")
    rows.append(run_offline(ctx["pipeline"], texts, [], label="tune"))
    return rows


# ---------------------------------------------------------------------- output


def markdown_table(rows):
    columns = [
        ("scenario", "scenario", "{}"),
        ("system", "system", "{}"),
        ("clients", "clients", "{}"),
        ("requests", "requests", "{}"),
        ("texts/s", "texts_per_second", "{:.1f}"),
        ("p50 ms", "p50_ms", "{:.0f}"),
        ("p95 ms", "p95_ms", "{:.0f}"),
        ("p99 ms", "p99_ms", "{:.0f}"),
        ("server CPU s", "server_cpu_s", "{:.1f}"),
        ("server cores", "server_cpu_per_s", "{:.2f}"),
        ("client CPU s", "client_cpu_s", "{:.1f}"),
        ("texts/CPU-s", "texts_per_cpu_s", "{:.1f}"),
        ("batch", "mean_batch_texts", "{:.1f}"),
        ("burst", "mean_burst", "{:.1f}"),
        ("statuses", "statuses", "{}"),
        ("load", "load_1min", "{:.1f}"),
    ]
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            if key == "statuses" and isinstance(value, dict):
                value = " ".join(f"{k}:{v}" for k, v in sorted(value.items()))
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_table(goals):
    lines = ["| goal | measured | met |", "|---|---|---|"]
    for goal in goals:
        value = goal["value"]
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        if "served_over_in_process_batches" in goal:
            shown += (
                f" (in-process calls of the served batches / offline "
                f"{goal['in_process_batches_over_offline']:.2f}; served / those calls "
                f"{goal['served_over_in_process_batches']:.2f})"
            )
        lines.append(f"| {goal['goal']} | {shown} | {'yes' if goal['met'] else 'NO'} |")
    return "\n".join(lines)


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


# ---------------------------------------------------------------------- main


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000, help="texts of the throughput runs")
    parser.add_argument("--baseline-texts", type=int, default=600)
    parser.add_argument("--latency-texts", type=int, default=100)
    parser.add_argument("--tail-texts", type=int, default=400)
    parser.add_argument(
        "--fit-texts", type=int, default=500, help="SST-2 train sentences to fit on"
    )
    parser.add_argument("--rounds", type=int, default=1, help="offline/served/offline rounds")
    parser.add_argument("--duration", type=float, default=30.0, help="overload seconds")
    parser.add_argument("--overload-timeout", type=float, default=10.0)
    parser.add_argument("--sigterm-after", type=float, default=5.0)
    parser.add_argument("--cold-starts", type=int, default=2)
    parser.add_argument("--scenarios", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.02)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument(
        "--server-log-level",
        default="debug",
        choices=("debug", "info", "warning"),
        help="the server's --log-level; debug logs each batch's size, read into the results",
    )
    parser.add_argument("--tune", action="store_true", help="try --tune-grid first")
    parser.add_argument("--tune-grid", default=DEFAULT_TUNE_GRID)
    parser.add_argument("--tune-texts", type=int, default=600)
    parser.add_argument(
        "--target",
        choices=("serve", "naive"),
        default="serve",
        help="what plays the served system: sklearn-albert serve, or (to test this script "
        "without it) the naive FastAPI server",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    parser.add_argument("--out", help="JSON file to write (default: benchmarks/results/)")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.baseline_texts, args.latency_texts = 128, 64, 10
        args.tail_texts, args.fit_texts, args.duration, args.tune_texts = 64, 64, 5.0, 64
        args.cold_starts, args.sigterm_after = 1, 2.0
    return args


def run_scenarios(ctx, payload):
    """Start the served model, run ``--scenarios`` on it in order; return rows and goals."""
    args, texts = ctx["args"], ctx["texts"]
    rows, goals = [], []
    served = served_server(args, ctx["joblib_path"], ctx["log_dir"], **ctx["settings"])
    try:
        payload["first_start_seconds"] = served.start()
        print(f"Server up in {payload['first_start_seconds']:.1f} s", flush=True)
        ctx["served"] = served
        ctx["servers"].append(served)
        warm_up(served, texts[:16])
        payload["served_processes"] = served.process_roles()
        with Phase([served]) as idle:
            time.sleep(3.0)
        payload["idle_server_cpu_per_s"] = idle.server_cpu["served"] / idle.seconds
        for name in args.scenarios:
            if name == "coldstart" or not served.alive():
                continue
            print(f"[{name}] load {os.getloadavg()[0]:.1f}", flush=True)
            scenario_rows, scenario_goals = globals()[f"scenario_{name}"](ctx)
            rows += scenario_rows
            goals += scenario_goals
            print(markdown_table(scenario_rows), flush=True)
        if "coldstart" in args.scenarios:
            print(f"[coldstart] load {os.getloadavg()[0]:.1f}", flush=True)
            rows += scenario_coldstart(ctx)[0]
    finally:
        for server in ctx["servers"]:
            if server.alive():
                server.kill()
        payload["served_log_tail"] = served.log_tail(6000) if served.log_path.exists() else None
    return rows, goals


def main():
    args = parse_args()
    common.quiet_transformers()
    import joblib

    print(uptime(), flush=True)
    folder = common.albert_base_folder()
    texts, source = load_texts(args.texts)
    settings = {
        "workers": args.workers,
        "max_batch_size": args.max_batch_size,
        "batch_timeout": args.batch_timeout,
    }
    payload = {
        "script": "bench_serve.py",
        "started": common.utc_now(),
        "uptime_before": uptime(),
        "machine": common.machine_info(),
        "args": vars(args),
        "texts_source": source,
        "server_settings": settings,
    }
    rows, goals = [], []
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        started = time.perf_counter()
        pipeline = fit_pipeline(folder, args.fit_texts)
        joblib_path, mlflow_path = save_models(pipeline, tmp)
        print(f"Pipeline fitted and saved in {time.perf_counter() - started:.1f} s", flush=True)
        offline_pipeline = joblib.load(joblib_path)
        offline_pipeline.predict(texts[:32])  # warm-up: model built, kernels ready
        ctx = {
            "args": args,
            "texts": texts,
            "pipeline": offline_pipeline,
            "joblib_path": joblib_path,
            "mlflow_path": mlflow_path,
            "log_dir": tmp,
            "settings": settings,
            "servers": [],
        }
        if args.tune:
            tune_rows = tune(ctx)
            payload["tune"] = tune_rows
            print(markdown_table(tune_rows), flush=True)
        if args.scenarios:
            rows, goals = run_scenarios(ctx, payload)
    payload.update({"rows": rows, "goals": goals, "uptime_after": uptime()})
    payload["finished"] = common.utc_now()
    print()
    print(markdown_table(rows))
    print()
    print(goals_table(goals))
    print(f"\nload: before {payload['uptime_before']}\n      after  {payload['uptime_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"Wrote {args.out}")
    else:
        print(f"Wrote {common.save_json('bench_serve', payload)}")


if __name__ == "__main__":
    main()
