"""``sklearn-albert serve``: real server processes on 127.0.0.1, real HTTP requests.

Two servers start once for the module, side by side: a joblib pipeline (vectorizer and
logistic regression: predict, predict_proba) behind an API key, and a vectorizer folder
written by ``save`` (transform) that admits one request at a time. Where a test needs
requests to stay in flight, it pauses the inference worker process (SIGSTOP) and resumes
it (SIGCONT): requests then wait in LitServe's queue for as long as the test needs,
whatever the machine's speed.
"""

import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litserve", reason="needs litserve (pip install .[test])")

from sklearn_albert import _cli  # noqa: E402
from sklearn_albert.serving import BATCHES_IN_FLIGHT  # noqa: E402

ROOT = Path(__file__).parents[1]
API_KEY = "test-key-42"
TRAIN = [
    "a great film",
    "a dull and boring film",
    "warm and funny",
    "bad",
    "the plot is clever and the music is lovely",
    "the script was weak and tedious",
    "they love the garden",
    "i hate this",
]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg"]
TEXTS = [
    "a great film",
    "",
    "the director was brilliant but the script was weak",
    "one two three",
    "bad",
    "warm and funny",
    "they love the garden",
    "i hate this",
    "a dull and boring film",
    'the plot is very clever, and the music is "lovely"',
    "café naïve",
    "the",
]
MAX_TEXTS = 8
MAX_CHARS = 200
STARTUP_SECONDS = 240

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="pauses worker processes through /proc"
)


# ---------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def models(tiny_albert_path, tmp_path_factory):
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_albert import AlbertVectorizer

    folder = tmp_path_factory.mktemp("serving")
    vectorizer = AlbertVectorizer(str(tiny_albert_path), dtype="float32", device="cpu")
    pipeline = make_pipeline(vectorizer, LogisticRegression(C=10.0)).fit(TRAIN, LABELS)
    joblib.dump(pipeline, folder / "pipeline.joblib")
    saved = AlbertVectorizer(str(tiny_albert_path), dtype="float32", device="cpu").fit([])
    saved.save(folder / "vectorizer")
    return {"pipeline": pipeline, "vectorizer": saved, "folder": folder}


class Server:
    """A ``python -m sklearn_albert serve`` process and its log."""

    def __init__(self, model, log, *options):
        self.port = _free_port()
        self.log = log
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        environment.pop("SKLEARN_ALBERT_API_KEY", None)
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sklearn_albert",
                    "serve",
                    str(model),
                    "--port",
                    str(self.port),
                    "--device",
                    "cpu",
                    "--log-level",
                    "debug",
                    *options,
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=log.parent,
            )

    def wait_until_healthy(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.read_log()}")
            try:
                if get(self.port, "/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the server was not healthy in {STARTUP_SECONDS} s:\n{self.read_log()}")

    def read_log(self):
        return self.log.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self):
        """The inference worker processes LitServe spawned."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                command = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid and b"spawn_main" in command:
                pids.append(int(stat.parent.name))
        assert pids, "found no inference worker process"
        return pids

    @contextmanager
    def workers_paused(self):
        pids = self.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    started = {
        "pipeline": Server(
            models["folder"] / "pipeline.joblib",
            logs / "pipeline.log",
            "--api-key",
            API_KEY,
            "--max-batch-size",
            "16",
            "--batch-timeout",
            "0.2",
            "--max-texts-per-request",
            str(MAX_TEXTS),
            "--max-text-chars",
            str(MAX_CHARS),
        ),
        "vectorizer": Server(
            models["folder"] / "vectorizer", logs / "vectorizer.log", "--max-queue", "1"
        ),
    }
    try:
        for server in started.values():
            server.wait_until_healthy()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def pipeline_server(servers):
    return servers["pipeline"]


@pytest.fixture(scope="module")
def vectorizer_server(servers):
    return servers["vectorizer"]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(port, method, path, body=None, *, key=None, content_type="application/json"):
    """An HTTP request to 127.0.0.1: (status, JSON body or text, headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {}
        if body is not None:
            headers["Content-Type"] = content_type
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read().decode("utf-8")
        try:
            content = json.loads(content)
        except ValueError:
            pass
        return (
            response.status,
            content,
            {name.lower(): value for name, value in response.getheaders()},
        )
    finally:
        connection.close()


def get(port, path):
    return request(port, "GET", path)


def post(port, path, body, **options):
    return request(port, "POST", path, body, **options)


def in_threads(calls):
    """Run each call in its own thread, all released at once; their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def metrics(port):
    """``GET /metrics`` parsed: {(sample name, labels as a sorted tuple): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text, headers = get(port, "/metrics")
    assert status == 200, text
    assert headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def answered(samples, endpoint, status):
    return samples[("sklearn_albert_requests_total", (("endpoint", endpoint), ("status", status)))]


# ---------------------------------------------------------------------- the contract


def test_health_and_the_openapi_page_answer_without_the_key(pipeline_server):
    assert get(pipeline_server.port, "/health")[0] == 200
    status, page, _ = get(pipeline_server.port, "/docs")
    assert status == 200
    assert "swagger" in page.lower()


def test_metrics_count_every_answer_and_its_latency_without_the_key(pipeline_server):
    port = pipeline_server.port
    before = metrics(port)
    for text in TEXTS[:3]:
        assert post(port, "/predict", {"texts": [text]}, key=API_KEY)[0] == 200
    assert post(port, "/predict", {"text": ["x"]}, key=API_KEY)[0] == 422
    assert post(port, "/predict", {"texts": ["x"]})[0] == 401
    after = metrics(port)

    assert answered(after, "/predict", "2xx") - answered(before, "/predict", "2xx") == 3
    assert answered(after, "/predict", "4xx") - answered(before, "/predict", "4xx") == 2
    assert answered(after, "/predict", "5xx") == answered(before, "/predict", "5xx")
    assert answered(after, "/transform", "2xx") == 0  # this server has no /transform
    count = ("sklearn_albert_request_seconds_count", (("endpoint", "/predict"),))
    total = ("sklearn_albert_request_seconds_sum", (("endpoint", "/predict"),))
    inf = ("sklearn_albert_request_seconds_bucket", (("endpoint", "/predict"), ("le", "+Inf")))
    assert after[count] - before[count] == 5
    assert after[inf] == after[count]
    assert after[total] > before[total]
    assert after[("sklearn_albert_requests_in_flight", ())] == 0


def test_no_metrics_leaves_the_route_out(models):
    from sklearn_albert.serving import build_server

    paths = {
        route.path
        for route in build_server(models["folder"] / "pipeline.joblib", metrics=False).app.routes
    }
    assert "/metrics" not in paths
    assert "/predict" in paths


def test_concurrent_requests_get_what_the_pipeline_gives_offline(pipeline_server, models):
    pipeline = models["pipeline"]
    chunks = [TEXTS[start : start + 3] for start in range(0, len(TEXTS), 3)]
    calls = [
        (
            lambda chunk=chunk, path=path: post(
                pipeline_server.port, path, {"texts": chunk}, key=API_KEY
            )
        )
        for chunk in chunks
        for path in ("/predict", "/predict_proba")
    ]

    answers = in_threads(calls)

    for (chunk, path), (status, body, _) in zip(
        [(chunk, path) for chunk in chunks for path in ("/predict", "/predict_proba")], answers
    ):
        assert status == 200, body
        if path == "/predict":
            assert body["predictions"] == pipeline.predict(chunk).tolist()
        else:
            assert body["classes"] == pipeline.classes_.tolist()
            np.testing.assert_allclose(
                body["probabilities"], pipeline.predict_proba(chunk), rtol=1e-5, atol=1e-6
            )


def test_concurrent_requests_share_one_call_of_the_pipeline(pipeline_server, models):
    chunks = [TEXTS[0:2], TEXTS[2:5], TEXTS[5:6], TEXTS[6:10]]
    logged_before = len(pipeline_server.read_log())
    with pipeline_server.workers_paused():
        # The requests queue up in LitServe while the workers are paused...
        answers = []
        threads = [
            threading.Thread(
                target=lambda chunk=chunk: answers.append(
                    post(pipeline_server.port, "/predict", {"texts": chunk}, key=API_KEY)
                )
            )
            for chunk in chunks
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
    for thread in threads:
        thread.join()

    # ... and the resumed worker takes them in batches, each a call of the pipeline on all
    # its requests' texts: the first takes its share (half, with two batches at once).
    assert [status for status, _, _ in answers] == [200] * len(chunks)
    expected = {tuple(chunk): models["pipeline"].predict(chunk).tolist() for chunk in chunks}
    assert sorted(body["predictions"] for _, body, _ in answers) == sorted(expected.values())
    batches = [
        re.search(r"(\d+) request\(s\), (\d+) text\(s\)", line).groups()
        for line in pipeline_server.read_log()[logged_before:].splitlines()
        if "/predict batch:" in line
    ]
    batches = [(int(requests), int(texts)) for requests, texts in batches]
    assert max(requests for requests, _ in batches) == math.ceil(len(chunks) / BATCHES_IN_FLIGHT)
    assert sum(requests for requests, _ in batches) == len(chunks)
    assert sum(texts for _, texts in batches) == sum(map(len, chunks))


def test_transform_of_a_saved_folder_equals_the_offline_embeddings(vectorizer_server, models):
    for chunk in (TEXTS[:5], TEXTS[5:], ["only one"]):
        status, body, _ = post(vectorizer_server.port, "/transform", {"texts": chunk})

        assert status == 200, body
        np.testing.assert_allclose(
            np.asarray(body["embeddings"], dtype=np.float32),
            models["vectorizer"].transform(chunk),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize(
    ("server", "path", "method"),
    [
        ("pipeline", "/transform", "transform"),
        ("vectorizer", "/predict", "predict"),
        ("vectorizer", "/predict_proba", "predict_proba"),
    ],
)
def test_a_method_the_model_lacks_answers_404_naming_it(servers, server, path, method):
    status, body, _ = post(servers[server].port, path, {"texts": ["x"]}, key=API_KEY)

    assert status == 404
    assert f"no {method}()" in body["detail"]


def test_the_api_key_is_required(pipeline_server):
    port = pipeline_server.port
    assert post(port, "/predict", {"texts": ["x"]})[0] == 401
    status, body, headers = post(port, "/predict", {"texts": ["x"]}, key="wrong")
    assert status == 401
    assert "Authorization: Bearer" in body["detail"]
    assert headers["www-authenticate"] == "Bearer"
    assert post(port, "/predict", {"texts": ["x"]}, key=API_KEY)[0] == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragments"),
    [
        ("{not json", "application/json", 400, ["not JSON", '{"texts"']),
        ('{"texts": ["a"]}', "application/x-www-form-urlencoded", 415, ["Content-Type"]),
        (["a", "b"], "application/json", 422, ["JSON array", "object"]),
        ({"text": ["a"]}, "application/json", 422, ["'texts' is missing", "'text'"]),
        ({"texts": "a"}, "application/json", 422, ["'texts' is a JSON string", "list"]),
        ({"texts": ["a", 3, "b"]}, "application/json", 422, ["texts[1]", "number", "string"]),
        ({"texts": ["a", None]}, "application/json", 422, ["texts[1]", "null"]),
        ({"texts": []}, "application/json", 422, ["'texts' is an empty list"]),
        (
            {"texts": ["a"] * (MAX_TEXTS + 1)},
            "application/json",
            413,
            [f"{MAX_TEXTS + 1} texts", f"at most {MAX_TEXTS}", "--max-texts-per-request"],
        ),
        (
            {"texts": ["a", "b" * (MAX_CHARS + 1)]},
            "application/json",
            413,
            ["texts[1]", f"{MAX_CHARS + 1} characters", "--max-text-chars"],
        ),
        ('{"texts": ["\\ud800"]}', "application/json", 422, ["texts[0]", "surrogate"]),
        ({"texts": ["a"], "padding": "x" * 50_000}, "application/json", 413, ["too large"]),
    ],
)
def test_a_bad_request_answers_4xx_naming_the_field_and_harms_nothing(
    pipeline_server, models, body, content_type, status, fragments
):
    answer = post(pipeline_server.port, "/predict", body, key=API_KEY, content_type=content_type)

    assert answer[0] == status, answer
    for fragment in fragments:
        assert fragment in answer[1]["detail"]
    good = post(pipeline_server.port, "/predict", {"texts": TEXTS[:2]}, key=API_KEY)
    assert good[0] == 200
    assert good[1]["predictions"] == models["pipeline"].predict(TEXTS[:2]).tolist()


# ---------------------------------------------------------------------- idle


def _cpu_seconds_of_tree(root_pid):
    """User plus system CPU seconds of a process and all its descendants, from /proc."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, ppid, ... utime and stime are fields 14 and 15 of stat.
        stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in stats.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    ticks = sum(stats[pid][1] for pid in tree if pid in stats)
    return ticks / os.sysconf("SC_CLK_TCK"), len(tree)


def test_an_idle_server_uses_almost_no_cpu(pipeline_server):
    # LitServe's batched loop asks its (Manager) queue for a request every millisecond,
    # idle or not; the server's loop sleeps until a request comes. A CPU-time bound.
    assert get(pipeline_server.port, "/health")[0] == 200
    time.sleep(1.0)  # the answer to /health, and any batch before it, is over
    before, processes = _cpu_seconds_of_tree(pipeline_server.process.pid)
    started = time.monotonic()
    time.sleep(3.0)
    after, _ = _cpu_seconds_of_tree(pipeline_server.process.pid)
    per_second = (after - before) / (time.monotonic() - started)
    assert processes >= 4  # the main process, its Manager, HTTP process and workers
    assert per_second < 0.05, f"{per_second:.3f} CPU-s per second over {processes} processes"


# ---------------------------------------------------------------------- overload, SIGTERM
# The last test: it stops the vectorizer server.


def test_beyond_max_queue_503_then_sigterm_finishes_the_requests_in_flight(
    vectorizer_server, models
):
    port = vectorizer_server.port
    answers = []
    with vectorizer_server.workers_paused():
        in_flight = threading.Thread(
            target=lambda: answers.append(post(port, "/transform", {"texts": TEXTS[:4]}))
        )
        in_flight.start()
        time.sleep(1.0)  # the request reaches the server and waits for the paused worker

        # --max-queue 1: every other request is refused at once, with Retry-After.
        refused = in_threads([lambda: post(port, "/transform", {"texts": ["x"]})] * 4)
        assert [status for status, _, _ in refused] == [503] * 4
        assert all(headers["retry-after"] == "1" for _, _, headers in refused)
        assert "--max-queue" in refused[0][1]["detail"]
        # The refusals are counted as answered 5xx; the waiting request is in flight.
        counts = metrics(port)
        assert answered(counts, "/transform", "5xx") == 4
        assert counts[("sklearn_albert_requests_in_flight", ())] == 1

        vectorizer_server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    in_flight.join()

    assert vectorizer_server.process.wait(timeout=60) == 0, vectorizer_server.read_log()
    [(status, body, _)] = answers
    assert status == 200, body
    np.testing.assert_allclose(
        np.asarray(body["embeddings"], dtype=np.float32),
        models["vectorizer"].transform(TEXTS[:4]),
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------------- in this process


def test_a_skops_file_loads_with_the_library_types_trusted(models, tmp_path):
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    from sklearn_albert.serving import load_estimator

    path = tmp_path / "pipeline.skops"
    sio.dump(models["pipeline"], path)

    loaded = load_estimator(path, device="cpu")

    assert loaded.predict(TEXTS).tolist() == models["pipeline"].predict(TEXTS).tolist()


def test_a_skops_file_with_an_unknown_type_is_refused_until_trusted(tmp_path):
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    from sklearn.preprocessing import FunctionTransformer

    from sklearn_albert.serving import load_estimator

    path = tmp_path / "odd.skops"
    sio.dump(FunctionTransformer(math.sqrt), path)

    with pytest.raises(ValueError, match=r"math\.sqrt.*--trusted TYPE"):
        load_estimator(path)
    assert isinstance(load_estimator(path, trusted=["math.sqrt"]), FunctionTransformer)


def test_a_saved_classifier_folder_loads_as_its_class(tiny_albert_path, tmp_path):
    from sklearn_albert import AlbertClassifier
    from sklearn_albert.serving import load_estimator, served_methods

    classifier = AlbertClassifier(
        str(tiny_albert_path), epochs=1, batch_size=8, dtype="float32", random_state=0
    ).fit(TRAIN, LABELS)
    folder = classifier.save(tmp_path / "classifier")

    loaded = load_estimator(folder, device="cpu")

    assert isinstance(loaded, AlbertClassifier)
    assert {"predict", "predict_proba"} <= set(served_methods(loaded))
    assert loaded.predict(TEXTS).tolist() == classifier.predict(TEXTS).tolist()


def test_a_folder_not_written_by_save_is_refused_by_name(tmp_path):
    from sklearn_albert.serving import load_estimator

    (tmp_path / "estimator.json").write_text('{"class": "os.system"}', encoding="utf-8")

    # Read as load() reads it: refused as no estimator file before its class is believed
    # (a well-formed one naming os.system: tests/test_deploy_faults.py).
    with pytest.raises(ValueError, match=r"is not a sklearn_albert estimator file"):
        load_estimator(tmp_path)


def test_importing_the_package_or_its_command_line_does_not_import_litserve():
    code = (
        "import sys, sklearn_albert, sklearn_albert._cli; "
        "sys.exit('litserve' in sys.modules or 'fastapi' in sys.modules)"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert (
        subprocess.run([sys.executable, "-c", code], env=environment, timeout=120).returncode == 0
    )


def test_the_command_line_defaults_are_the_engine_defaults():
    from sklearn_albert import serving

    args = _cli.build_parser().parse_args(["serve", "m.joblib"])

    assert (args.host, args.device, args.workers, args.api_key) == ("127.0.0.1", "auto", 1, None)
    assert args.max_batch_size == serving.DEFAULT_MAX_BATCH_SIZE
    assert args.batch_timeout == serving.DEFAULT_BATCH_TIMEOUT
    assert args.max_texts_per_request == serving.DEFAULT_MAX_TEXTS_PER_REQUEST
    assert args.max_text_chars == serving.DEFAULT_MAX_TEXT_CHARS
    assert args.max_queue == serving.DEFAULT_MAX_QUEUE
    assert args.request_timeout == serving.DEFAULT_REQUEST_TIMEOUT
    assert args.methods is None
    assert _cli.build_parser().parse_args(
        ["serve", "m.joblib", "--methods", "transform, predict"]
    ).methods == ["transform", "predict"]


def test_methods_serves_only_the_endpoints_named(models):
    from sklearn_albert.serving import build_server

    model = models["folder"] / "pipeline.joblib"
    server = build_server(model, methods=["predict"], request_timeout=12)

    assert [api.api_path for api in server.litapi_connector] == ["/predict"]
    assert server.timeout == 12
    # The left-out method is answered by the 404 route that names what is served.
    assert "/predict_proba" in {route.path for route in server.app.routes}
    with pytest.raises(ValueError, match="has only predict, predict_proba"):
        build_server(model, methods=["transform"])
    with pytest.raises(ValueError, match="request_timeout=0.01"):
        build_server(model, batch_timeout=0.01, request_timeout=0.01)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "MODEL"),
        (["serve", "m.joblib", "--port", "80"], "from 1024 to 65535"),
        (["serve", "m.joblib", "--workers", "0"], "positive integer"),
        (["serve", "m.joblib", "--batch-timeout", "-1"], "number >= 0"),
        (["serve", "m.joblib", "--host", "example.com"], "invalid choice"),
        (["serve", "m.joblib", "--methods", "predict,fit"], "among predict, predict_proba"),
    ],
)
def test_wrong_serve_usage_is_one_line_and_status_2(argv, message, capsys):
    assert _cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_model_is_a_one_line_error(tmp_path, capsys):
    assert _cli.main(["serve", str(tmp_path / "nothing.joblib")]) == 1
    err = capsys.readouterr().err
    assert "no such file or folder" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_litserve_version_gets_litserve_s_own_loop_with_a_warning(monkeypatch, caplog):
    from sklearn_albert import serving

    assert isinstance(serving._batched_loop(16), serving._IdleBatchedLoop)
    assert serving._batched_loop(1) == "auto"
    monkeypatch.setattr(serving.ls, "__version__", "9.0.0")
    with caplog.at_level("WARNING", logger="sklearn_albert"):
        assert serving._batched_loop(16) == "auto"
    assert "LitServe 9.0.0" in caplog.text


def _one_batch(loop, api, requests):
    """What the worker's loop takes as one batch from a queue holding ``requests``."""
    import queue

    waiting = queue.Queue()
    for request in requests:
        waiting.put(request)
    taken = []
    # A guard against a worker that waits out batch_timeout: the call takes milliseconds.
    worker = threading.Thread(
        target=lambda: taken.append(loop.get_batch_requests(api, waiting, None)), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    assert taken, "the loop waited out batch_timeout"
    return taken[0]


def test_a_request_leaves_the_in_flight_count_as_the_last_part_of_its_answer_goes_out():
    import asyncio

    from sklearn_albert import serving

    counter, path_counter = serving._SPAWN.Value("i", 0), serving._SPAWN.Value("i", 0)
    sent = []  # (message type, more_body, counts when the transport got it)

    async def transport(message):
        sent.append((message["type"], message.get("more_body", False), counter.value))

    async def answer_in_two_parts(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        await send({"type": "http.response.body", "body": b"}"})
        # Work after the answer (a background task) no longer counts as in flight.
        assert (counter.value, path_counter.value) == (0, 0)

    async def fail_before_answering(scope, receive, send):
        raise RuntimeError("the app broke")

    def middleware(app):
        return serving._InFlightLimit(
            app,
            limit=4,
            counter=counter,
            paths={"/predict"},
            path_counters={"/predict": path_counter},
        )

    scope = {"type": "http", "path": "/predict"}
    asyncio.run(middleware(answer_in_two_parts)(scope, None, transport))
    # Counted while the answer's first parts go out, not by the time its last one does:
    # a keep-alive client's next request never finds this one still counted.
    assert sent == [
        ("http.response.start", False, 1),
        ("http.response.body", True, 1),
        ("http.response.body", False, 0),
    ]
    assert (counter.value, path_counter.value) == (0, 0)  # released once, not twice

    with pytest.raises(RuntimeError, match="the app broke"):
        asyncio.run(middleware(fail_before_answering)(scope, None, transport))
    assert (counter.value, path_counter.value) == (0, 0)


def test_a_lone_request_does_not_wait_for_a_batch_that_cannot_fill():
    from sklearn_albert import serving

    in_flight = serving._SPAWN.Value("i", 1)
    api = serving.EstimatorAPI("m.joblib", "predict", batch_timeout=3600, in_flight=in_flight)
    api.request_timeout = 7200  # what LitServer sets on each API
    loop = serving._batched_loop(api.max_batch_size)
    now = time.monotonic()
    requests = [(0, "a", now, ["x"]), (0, "b", now, ["y"])]
    # The only request in flight (the count lags behind the queue), taken at once; the
    # lagging one is the next batch, at once too.
    batch, timed_out = _one_batch(loop, api, requests)
    assert batch == [(0, "a", ["x"])] and timed_out == []
    assert _one_batch(loop, api, requests[1:])[0] == [(0, "b", ["y"])]
    assert api.batch_timeout == 3600

    in_flight.value = 3  # a third request is on its way: the batch waits for it
    api.batch_timeout = 0.05
    batch, _ = _one_batch(loop, api, [(0, "c", time.monotonic(), ["z"])])
    assert batch == [(0, "c", ["z"])] and api.batch_timeout == 0.05


def test_a_batch_runs_once_every_request_in_flight_has_joined():
    from sklearn_albert import serving

    in_flight = serving._SPAWN.Value("i", 4)
    api = serving.EstimatorAPI("m.joblib", "predict", batch_timeout=3600, in_flight=in_flight)
    api.request_timeout = 7200
    loop = serving._batched_loop(api.max_batch_size)
    loop._running, loop._free = 3, 1  # another batch runs three of the four requests
    # The fourth is queued: the batch runs without waiting out the hour.
    batch, timed_out = _one_batch(loop, api, [(0, "d", time.monotonic(), ["d"])])
    assert batch == [(0, "d", ["d"])] and timed_out == []
    assert (api.batch_timeout, api.max_batch_size) == (3600, serving.DEFAULT_MAX_BATCH_SIZE)

    # Nothing else runs and fewer are queued than in flight: the batch waits for the
    # others until batch_timeout.
    loop._running, loop._free = 0, serving.BATCHES_IN_FLIGHT
    api.batch_timeout = 0.05
    started = time.monotonic()
    requests = [(0, uid, time.monotonic(), [uid]) for uid in "a"]
    batch, _ = _one_batch(loop, api, requests)
    assert batch == [(0, "a", ["a"])]
    assert time.monotonic() - started >= 0.05


def test_while_another_batch_runs_a_batch_waits_for_it_to_end():
    from sklearn_albert import serving

    in_flight = serving._SPAWN.Value("i", 6)
    api = serving.EstimatorAPI("m.joblib", "predict", batch_timeout=0.05, in_flight=in_flight)
    api.request_timeout = 7200
    loop = serving._batched_loop(api.max_batch_size)
    loop._running, loop._free = 2, 1  # a batch of two runs; three more are on their way
    ends = threading.Timer(0.3, lambda: setattr(loop, "_ended", loop._ended + 1))
    started = time.monotonic()
    ends.start()
    batch, _ = _one_batch(loop, api, [(0, "x", time.monotonic(), ["x"])])
    waited = time.monotonic() - started
    # Not cut by the 0.05 s batch_timeout, but 0.05 s after the other batch ended.
    assert batch == [(0, "x", ["x"])]
    assert 0.3 <= waited < serving.OVERLAP_WAIT_LIMIT
    assert api.batch_timeout == 0.05


def test_while_another_batch_runs_a_batch_waits_for_the_clients_it_just_answered():
    import queue

    from sklearn_albert import serving

    # Six requests of a running batch, two more in flight: one queued, one on its way (a
    # batch's share of eight in flight is four).
    in_flight = serving._SPAWN.Value("i", 8)
    api = serving.EstimatorAPI("m.joblib", "predict", batch_timeout=0.3, in_flight=in_flight)
    api.request_timeout = 7200
    loop = serving._batched_loop(api.max_batch_size)
    loop._running, loop._free = 6, 1
    waiting = queue.Queue()
    waiting.put((0, "x", time.monotonic(), ["x"]))

    def arrive(uid):  # counted in flight by the HTTP process, then queued
        in_flight.value += uid != "y"
        waiting.put((0, uid, time.monotonic(), [uid]))

    # y completes the count at 0.05 s; z, a client just answered by the running batch,
    # comes back 0.15 s later: within batch_timeout of "everyone in", so it joins.
    timers = [threading.Timer(0.05, arrive, ("y",)), threading.Timer(0.2, arrive, ("z",))]
    started = time.monotonic()
    for timer in timers:
        timer.start()
    taken = []
    worker = threading.Thread(
        target=lambda: taken.append(loop.get_batch_requests(api, waiting, None)), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    waited = time.monotonic() - started
    assert [uid for _, uid, _ in taken[0][0]] == ["x", "y", "z"]
    assert 0.2 + 0.3 <= waited < serving.OVERLAP_WAIT_LIMIT  # ended 0.3 s after z
    assert (api.batch_timeout, api.max_batch_size) == (0.3, serving.DEFAULT_MAX_BATCH_SIZE)


def test_a_crowd_splits_into_batches_that_overlap():
    from sklearn_albert import serving

    in_flight = serving._SPAWN.Value("i", 64)
    api = serving.EstimatorAPI("m.joblib", "predict", batch_timeout=3600, in_flight=in_flight)
    api.request_timeout = 7200
    loop = serving._batched_loop(api.max_batch_size)
    assert loop._free == serving.BATCHES_IN_FLIGHT == 2
    now = time.monotonic()
    requests = [(0, str(i), now, [str(i)]) for i in range(64)]
    # 64 in flight, none running, two batches can start: the first takes half of them...
    first, _ = _one_batch(loop, api, requests)
    assert [uid for _, uid, _ in first] == [str(i) for i in range(32)]
    assert (api.batch_timeout, api.max_batch_size) == (3600, serving.DEFAULT_MAX_BATCH_SIZE)
    # ... and while it runs, the next batch takes the rest at once (everyone is in).
    loop._running, loop._free = 32, 1
    second, _ = _one_batch(loop, api, requests[32:])
    assert [uid for _, uid, _ in second] == [str(i) for i in range(32, 64)]
