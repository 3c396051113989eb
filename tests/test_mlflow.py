"""The MLflow flavour: a real SQLite tracking store, fresh processes, the real scoring server.

The pipeline is fitted on a copy of the tiny ALBERT that is deleted once the model is
logged, so every load below reads the model's own files. Everything MLflow writes (the
database, the artifacts) stays in the module's temporary folder.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow", reason="needs mlflow (pip install .[mlflow])")
pd = pytest.importorskip("pandas", reason="needs pandas (pip install .[mlflow])")

from _tiny_model import build_tiny_albert, generated_sentences  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a warm and moving film", "a cold, dull plot", "the music was lovely", "too long"]
# No telemetry (no network here), no fallback to ./mlruns, no uv lock.
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A classifier pipeline and a bare vectorizer, logged, their checkpoint deleted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import sklearn_albert
    import sklearn_albert.mlflow
    from sklearn_albert import AlbertVectorizer

    folder = tmp_path_factory.mktemp("mlflow")
    checkpoint = build_tiny_albert(folder / "checkpoint-to-delete")
    train = generated_sentences(24, seed=5)
    labels = [index % 2 for index in range(len(train))]
    pipe = make_pipeline(AlbertVectorizer(str(checkpoint)), LogisticRegression())
    pipe.fit(train, labels)
    vectorizer = AlbertVectorizer(str(checkpoint)).fit(train)

    saved = {name: os.environ.get(name) for name in QUIET_MLFLOW}
    os.environ.update(QUIET_MLFLOW)
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("texts", artifact_location=str(folder / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        pipe_info = sklearn_albert.mlflow.log_model(pipe, name="sentiment", input_example=TEXTS)
        vectorizer_info = sklearn_albert.mlflow.log_model(vectorizer, name="embeddings")
    expected = {
        "sentiment": pipe.predict(TEXTS).tolist(),
        "embeddings": vectorizer.transform(TEXTS).tolist(),
    }
    shutil.rmtree(checkpoint)
    sklearn_albert.clear_cache()  # nor do weights held in this process help a load
    logged = {
        "folder": folder,
        "tracking_uri": tracking_uri,
        "uris": {"sentiment": pipe_info.model_uri, "embeddings": vectorizer_info.model_uri},
        "expected": expected,
        "pipe": pipe,
    }
    # The server starts now (it is slow to start), while the tests before it run.
    with start_server(logged) as server:
        logged["server"] = server
        yield logged
    mlflow.set_tracking_uri(None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def child_environment(logged):
    env = dict(os.environ, **QUIET_MLFLOW, MLFLOW_TRACKING_URI=logged["tracking_uri"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


FRESH_PROCESS = """
import json, sys
import mlflow, pandas as pd

uris = json.loads(sys.argv[1])
texts = json.loads(sys.argv[2])
out = {}
for name, uri in uris.items():
    model = mlflow.pyfunc.load_model(uri)
    out[name] = {
        "frame": model.predict(pd.DataFrame({"text": texts})).tolist(),
        "list": model.predict(texts).tolist(),
        "series": model.predict(pd.Series(texts)).tolist(),
    }
print(json.dumps(out))
"""


def test_a_fresh_process_loads_both_models_without_the_checkpoint(logged):
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(logged["uris"]), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        cwd=logged["folder"],
        env=child_environment(logged),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for form in ("frame", "list", "series"):
        assert got["sentiment"][form] == logged["expected"]["sentiment"]
        np.testing.assert_allclose(
            got["embeddings"][form], logged["expected"]["embeddings"], atol=1e-6
        )


def test_load_model_gives_the_pipeline_back(logged):
    from sklearn.base import clone

    import sklearn_albert.mlflow
    from sklearn_albert import AlbertVectorizer

    pipe = sklearn_albert.mlflow.load_model(logged["uris"]["sentiment"])

    assert isinstance(pipe.steps[0][1], AlbertVectorizer)
    assert pipe.get_params()["albertvectorizer__pooling"] == "mean"
    np.testing.assert_allclose(
        pipe.predict_proba(TEXTS), logged["pipe"].predict_proba(TEXTS), atol=1e-6
    )
    # The checkpoint folder is gone: a clone encodes with the weights the load holds.
    refitted = clone(pipe).fit(TEXTS, [1, 0, 1, 0])
    np.testing.assert_allclose(
        refitted[0].transform(TEXTS), logged["pipe"][0].transform(TEXTS), atol=1e-6
    )


def test_the_model_folder_keeps_weights_out_of_the_pickle_and_records_requirements(logged):
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    local = Path(download_artifacts(logged["uris"]["sentiment"], dst_path=logged["folder"]))
    model = Model.load(local / "MLmodel")

    assert set(model.flavors) == {"python_function", "sklearn_albert"}
    flavor = model.flavors["sklearn_albert"]
    assert flavor["predict_method"] == "predict"
    assert [each["class"] for each in flavor["encoders"]] == ["AlbertVectorizer"]
    assert model.signature.inputs.input_types() == [mlflow.types.DataType.string]
    assert model.saved_input_example_info is not None
    assert (local / "estimator" / "encoders" / "0" / "model" / "model.safetensors").is_file()
    assert (local / "estimator" / "estimator.pkl").stat().st_size < 10_000  # no weights
    requirements = (local / "requirements.txt").read_text().splitlines()
    for package in ("sklearn-albert==", "torch==", "transformers==", "scikit-learn=="):
        assert any(line.startswith(package) for line in requirements), requirements
    assert not any("+" in line for line in requirements)  # local labels dropped


def test_nothing_is_written_outside_the_temporary_folder(logged):
    assert not (REPO / "mlruns").exists() and not (Path.cwd() / "mlruns").exists()
    assert (logged["folder"] / "artifacts").is_dir()


def test_predict_method_must_be_one_the_model_has(logged):
    import sklearn_albert.mlflow

    with pytest.raises(ValueError, match="Got predict_method='transform' but expected one of"):
        sklearn_albert.mlflow.save_model(
            logged["pipe"], logged["folder"] / "never", predict_method="transform"
        )


def test_importing_sklearn_albert_does_not_import_mlflow():
    code = "import sys, sklearn_albert; print('mlflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_an_int8_vectorizer_keeps_its_calibration_without_the_checkpoint(tmp_path):
    pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
    pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")
    import sklearn_albert
    import sklearn_albert.mlflow
    from sklearn_albert import AlbertVectorizer

    checkpoint = build_tiny_albert(tmp_path / "checkpoint-to-delete")
    vectorizer = AlbertVectorizer(str(checkpoint), dtype="int8").fit(generated_sentences(40))
    expected = vectorizer.transform(TEXTS)
    sklearn_albert.mlflow.save_model(vectorizer, tmp_path / "model")
    shutil.rmtree(checkpoint)
    sklearn_albert.clear_cache()

    loaded = sklearn_albert.mlflow.load_model(str(tmp_path / "model"))

    assert loaded.dtype_ == "int8"
    assert loaded.int8_calibration_ == vectorizer.int8_calibration_
    np.testing.assert_allclose(loaded.transform(TEXTS), expected, atol=1e-6)


# ---------------------------------------------------------------------- the scoring server


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_json(url, payload):
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def start_server(logged):
    """``mlflow models serve`` of the classifier pipeline on loopback, stopped on exit."""
    port = free_port()
    log_path = logged["folder"] / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", logged["uris"]["sentiment"]]
            + ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=logged["folder"],
            env=child_environment(logged),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the server's workers share its process group
        )
        try:
            yield {"process": process, "url": f"http://127.0.0.1:{port}", "log": log_path}
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def server(logged):
    """The URL of the server ``logged`` started, once it answers ``/ping``."""
    started = logged["server"]
    deadline = time.monotonic() + 240  # a start-up limit, not a timing assertion
    while True:
        if started["process"].poll() is not None:
            pytest.fail(f"the server exited: {started['log'].read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{started['url']}/ping", timeout=5):
                return started["url"]
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                pytest.fail(f"no answer in 240 s: {started['log'].read_text()[-3000:]}")
            time.sleep(0.5)


def test_the_scoring_server_predicts_a_dataframe_split_request(logged, server):
    payload = {"dataframe_split": {"columns": ["text"], "data": [[text] for text in TEXTS]}}

    answer = post_json(f"{server}/invocations", payload)

    assert answer == {"predictions": logged["expected"]["sentiment"]}


def test_the_scoring_server_takes_a_list_of_texts_as_inputs(logged, server):
    answer = post_json(f"{server}/invocations", {"inputs": TEXTS})

    assert answer == {"predictions": logged["expected"]["sentiment"]}
