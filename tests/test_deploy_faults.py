"""Deployed models against damaged, crafted and half-written files: MLflow and ``serve``.

Each test damages one file of a saved model as a disk, a copy or a person could (cut
short, one bit flipped, a link planted, a file crafted, a save cut short by a full disk or
killed) and checks that loading refuses, naming the file and what is wrong, or gives
exactly the original outputs: never other outputs. The checkpoint the models were fitted
from is deleted once they are written, so every load reads the model's own files.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _estimator_file import edit_estimator_file, make_legacy

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symlinks and rlimits")

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a warm and moving film", "a cold, dull plot", "the music was lovely", "too long"]
# No telemetry (no network here), no fallback to ./mlruns.
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@pytest.fixture(scope="module")
def saved(tiny_albert_path, tmp_path_factory):
    """One pipeline written every way it is deployed, and a folder of other outputs."""
    pytest.importorskip("mlflow", reason="needs mlflow (pip install .[mlflow])")
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    import joblib
    from _tiny_model import generated_sentences
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import sklearn_albert
    import sklearn_albert.mlflow
    from sklearn_albert import AlbertVectorizer

    root = tmp_path_factory.mktemp("deploy-faults")
    checkpoint = shutil.copytree(tiny_albert_path, root / "checkpoint-to-delete")
    train = generated_sentences(24, seed=5)
    labels = [index % 2 for index in range(len(train))]
    settings = {"dtype": "float32", "store_weights_in_pickle": True}
    pipe = make_pipeline(AlbertVectorizer(str(checkpoint), **settings), LogisticRegression())
    pipe.fit(train, labels)
    sklearn_albert.mlflow.save_model(pipe, root / "mlflow-model")
    joblib.dump(pipe, root / "pipe.joblib")
    sio.dump(pipe, root / "pipe.skops")
    pipe[0].save(root / "folder")
    # Same weights, other outputs: what a link or a swapped file could load instead.
    AlbertVectorizer(str(checkpoint), dtype="float32", pooling="cls").fit(train).save(
        root / "other-folder"
    )
    expected = {"predict_proba": pipe.predict_proba(TEXTS), "transform": pipe[0].transform(TEXTS)}
    shutil.rmtree(checkpoint)
    sklearn_albert.clear_cache()
    return {"root": root, "pipe": pipe, "expected": expected}


def _copy(saved, name, tmp_path):
    return shutil.copytree(saved["root"] / name, tmp_path / name, symlinks=True)


def _truncate(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def _flip(path, offset, mask=0x01):
    content = bytearray(path.read_bytes())
    content[offset] ^= mask
    path.write_bytes(bytes(content))


def _offset_of(path, data):
    offset = path.read_bytes().find(data)
    assert offset >= 0, f"{data[:16]!r} not found in {path}"
    return offset


def _query_weights(pipe):
    """The first bytes of a weight every token goes through, as the checkpoint stores them."""
    weights = pipe[0]._loaded.model.state_dict()
    name = next(name for name in sorted(weights) if name.endswith("attention.query.weight"))
    return weights[name].detach().cpu().contiguous().numpy().tobytes()[:64]


def _same_or_refused(load, expected, method):
    """What ``load`` gave: its error, or None once its outputs equal ``expected`` exactly."""
    try:
        model = load()
    except (ValueError, TypeError, OSError) as error:
        return str(error)
    np.testing.assert_array_equal(getattr(model, method)(TEXTS), expected)
    return None


# ---------------------------------------------------------------------- MLflow: damage


def _pickle_cut(model, saved):
    _truncate(model / "estimator" / "estimator.pkl")


def _pickle_coefficient_flipped(model, saved):
    # The lowest exponent bit of the first coefficient: the weight doubles or halves.
    pickled = model / "estimator" / "estimator.pkl"
    coefficients = saved["pipe"][-1].coef_.tobytes()
    _flip(pickled, _offset_of(pickled, coefficients) + 7)


def _weights_cut(model, saved):
    _truncate(model / "estimator" / "encoders" / "0" / "model" / "model.safetensors")


def _weights_flipped(model, saved):
    weights = model / "estimator" / "encoders" / "0" / "model" / "model.safetensors"
    _flip(weights, _offset_of(weights, _query_weights(saved["pipe"])) + 3, 0x40)


def _encoder_file_cut(model, saved):
    _truncate(model / "estimator" / "encoders" / "0" / "estimator.json")


def _encoder_layer_flipped(model, saved):
    # The fitted layer, 3 -> 2 (one bit of "3"): valid JSON, other embeddings.
    document = model / "estimator" / "encoders" / "0" / "estimator.json"
    text = document.read_text(encoding="utf-8")
    layers = text.index('"layers"', text.index('"settings_"'))
    offset = text.index("3", layers)
    assert text[layers:offset].count("[") == 1, text[layers : offset + 1]
    _flip(document, offset)


def _encoder_file_of_another_class(model, saved):
    document = model / "estimator" / "encoders" / "0" / "estimator.json"
    content = json.loads(document.read_text(encoding="utf-8"))
    content["class"] = "sklearn_albert._classifier.AlbertClassifier"
    document.write_text(json.dumps(content), encoding="utf-8")


def _mlmodel_cut(model, saved):
    _truncate(model / "MLmodel")


def _mlmodel_naming_another_class(model, saved):
    mlmodel = model / "MLmodel"
    mlmodel.write_text(
        mlmodel.read_text(encoding="utf-8").replace("class: AlbertVectorizer", "class: Pipeline"),
        encoding="utf-8",
    )


def _mlmodel_placing_the_encoder_elsewhere(model, saved):
    mlmodel = model / "MLmodel"
    outside = os.path.relpath(saved["root"] / "other-folder", model / "estimator")
    mlmodel.write_text(
        mlmodel.read_text(encoding="utf-8").replace("path: encoders/0", f"path: {outside}"),
        encoding="utf-8",
    )


def _weights_linked(model, saved):
    weights = model / "estimator" / "encoders" / "0" / "model" / "model.safetensors"
    same_bytes = model.parent / "elsewhere.safetensors"
    shutil.copyfile(weights, same_bytes)
    weights.unlink()
    weights.symlink_to(same_bytes)


def _encoder_folder_linked(model, saved):
    folder = model / "estimator" / "encoders" / "0"
    shutil.rmtree(folder)
    folder.symlink_to(saved["root"] / "other-folder", target_is_directory=True)


def _pickle_linked(model, saved):
    pickled = model / "estimator" / "estimator.pkl"
    pickled.unlink()
    pickled.symlink_to(saved["root"] / "mlflow-model" / "estimator" / "estimator.pkl")


MLFLOW_DAMAGE = {
    "pickle-truncated": (_pickle_cut, r"estimator\.pkl'.*SHA-256 differs"),
    "pickle-bit-flipped": (_pickle_coefficient_flipped, r"estimator\.pkl'.*SHA-256 differs"),
    "weights-truncated": (_weights_cut, r"model\.safetensors changed"),
    "weights-bit-flipped": (_weights_flipped, r"model\.safetensors changed"),
    "encoder-file-truncated": (_encoder_file_cut, r"estimator\.json"),
    "encoder-file-bit-flipped": (_encoder_layer_flipped, r"estimator\.json'.*SHA-256 differs"),
    "encoder-file-of-another-class": (_encoder_file_of_another_class, r"estimator\.json"),
    "mlmodel-truncated": (_mlmodel_cut, r"MLmodel"),
    "mlmodel-naming-a-pipeline": (_mlmodel_naming_another_class, r"class='Pipeline'"),
    "mlmodel-placing-the-encoder-outside": (
        _mlmodel_placing_the_encoder_elsewhere,
        r"places encoder 0 at '\.\./",
    ),
    "weights-symlink": (_weights_linked, r"model\.safetensors'.*symbolic link"),
    "encoder-folder-symlink": (_encoder_folder_linked, r"encoders/0'.*symbolic link"),
    "pickle-symlink": (_pickle_linked, r"estimator\.pkl'.*symbolic link"),
}


@pytest.mark.parametrize("damage", list(MLFLOW_DAMAGE))
def test_a_damaged_mlflow_model_is_refused_naming_the_file(saved, tmp_path, damage):
    import sklearn_albert.mlflow

    mutate, message = MLFLOW_DAMAGE[damage]
    model = _copy(saved, "mlflow-model", tmp_path)
    mutate(model, saved)

    error = _same_or_refused(
        lambda: sklearn_albert.mlflow.load_model(str(model)),
        saved["expected"]["predict_proba"],
        "predict_proba",
    )

    assert error is not None, "the damaged model loaded (with the original outputs)"
    assert re.search(message, error), error


def test_python_function_refuses_a_damaged_model_too(saved, tmp_path):
    """``mlflow.pyfunc.load_model`` (what ``mlflow models serve`` calls) checks the same."""
    import mlflow

    model = _copy(saved, "mlflow-model", tmp_path)
    _pickle_coefficient_flipped(model, saved)

    with pytest.raises(ValueError, match=r"estimator\.pkl'.*SHA-256 differs"):
        mlflow.pyfunc.load_model(str(model))


def test_a_logged_model_whose_encoder_folder_links_elsewhere_is_refused(saved, tmp_path):
    """The same through a SQLite tracking store: the artifact store holds the link."""
    import mlflow

    import sklearn_albert.mlflow

    saved_environment = {name: os.environ.get(name) for name in QUIET_MLFLOW}
    os.environ.update(QUIET_MLFLOW)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        experiment = mlflow.create_experiment("faults", artifact_location=str(tmp_path / "art"))
        with mlflow.start_run(experiment_id=experiment):
            info = sklearn_albert.mlflow.log_model(saved["pipe"], name="sentiment")
        logged = next((tmp_path / "art").rglob("MLmodel")).parent
        _encoder_folder_linked(logged, saved)

        try:
            error = _same_or_refused(
                lambda: sklearn_albert.mlflow.load_model(info.model_uri, dst_path=str(tmp_path)),
                saved["expected"]["predict_proba"],
                "predict_proba",
            )
        except mlflow.exceptions.MlflowException as refused:  # MLflow's own download check
            error = str(refused)
    finally:
        mlflow.set_tracking_uri(None)
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    assert error is not None, "the linked model loaded (with the original outputs)"
    # MLflow refuses to download through the link; were it copied, the SHA-256 of its
    # estimator.json recorded in MLmodel would tell it apart.
    assert re.search(
        r"outside the artifact directory|estimator\.json'.*SHA-256 differs|symbolic link", error
    ), error


# ---------------------------------------------------------------------- MLflow: saving

SAVES_IN_A_CHILD = """
import json, resource, signal, sys, threading, time
from pathlib import Path
import sklearn_albert.mlflow

source, parent, limits = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
model = sklearn_albert.mlflow.load_model(source)
# A write past the limit then fails with EFBIG instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
errors = {}
for name, limit in limits.items():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        sklearn_albert.mlflow.save_model(model, parent / name / "model")
        errors[name] = None
    except Exception as error:
        errors[name] = f"{type(error).__name__}: {error}"
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
print(json.dumps(errors), flush=True)
# Then a save killed from a second thread once the encoders' folder exists, staged or in
# place: between its first file and its last.
killed = parent / "killed"
saver = threading.Thread(target=sklearn_albert.mlflow.save_model, args=(model, killed / "model"))
saver.start()
while saver.is_alive():
    if list(killed.glob("*/estimator/encoders")):
        signal.raise_signal(signal.SIGKILL)
    time.sleep(0.0005)
"""
#: File size limits: the weights (52 kB) cannot be written; the tokenizer (330 kB) cannot.
SHORT_WRITES = {"short-weights": 1_000, "short-tokenizer-file": 100_000}


@pytest.fixture(scope="module")
def saves_in_a_child(saved, tmp_path_factory):
    """One process saves under each file size limit of ``SHORT_WRITES``, then is killed
    mid-save (one interpreter start for all, since each costs seconds)."""
    parent = tmp_path_factory.mktemp("saves")
    for name in [*SHORT_WRITES, "killed"]:
        (parent / name).mkdir()
    environment = dict(os.environ, **QUIET_MLFLOW)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), environment.get("PYTHONPATH")])
    )
    child = subprocess.run(
        [sys.executable, "-c", SAVES_IN_A_CHILD, str(saved["root"] / "mlflow-model")]
        + [str(parent), json.dumps(SHORT_WRITES)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )
    lines = child.stdout.strip().splitlines()
    assert lines, child.stderr[-3000:]
    return {"parent": parent, "errors": json.loads(lines[-1]), "child": child}


def _check_no_model_and_a_new_save_loads_the_same(saved, target):
    import mlflow

    import sklearn_albert.mlflow

    assert not target.exists()
    with pytest.raises(mlflow.exceptions.MlflowException, match="No such artifact"):
        sklearn_albert.mlflow.load_model(str(target))
    sklearn_albert.mlflow.save_model(saved["pipe"], target)
    np.testing.assert_array_equal(
        sklearn_albert.mlflow.load_model(str(target)).predict_proba(TEXTS),
        saved["expected"]["predict_proba"],
    )


@pytest.mark.parametrize("short", list(SHORT_WRITES))
def test_a_short_write_fails_loudly_and_leaves_no_model(saved, saves_in_a_child, short):
    error = saves_in_a_child["errors"][short]
    folder = saves_in_a_child["parent"] / short

    assert error is not None and "File too large" in error, error
    assert list(folder.iterdir()) == []  # neither the model nor its staging folder
    _check_no_model_and_a_new_save_loads_the_same(saved, folder / "model")


def test_a_writer_killed_mid_save_leaves_no_model(saved, saves_in_a_child):
    child = saves_in_a_child["child"]
    folder = saves_in_a_child["parent"] / "killed"

    assert child.returncode == -signal.SIGKILL, f"not killed mid-save: {child.stderr[-3000:]}"
    # What is left is a hidden staging folder beside it, which a new save does not need.
    assert [entry.name[:7] for entry in folder.iterdir()] == [".model."]
    _check_no_model_and_a_new_save_loads_the_same(saved, folder / "model")


# ---------------------------------------------------------------------- serve MODEL


def _serving():
    pytest.importorskip("litserve", reason="needs litserve (pip install .[test])")
    from sklearn_albert import serving

    return serving


def _joblib_cut(model, saved):
    _truncate(model)


def _joblib_weights_flipped(model, saved):
    _flip(model, _offset_of(model, _query_weights(saved["pipe"])) + 3, 0x40)


def _skops_cut(model, saved):
    _truncate(model)


def _skops_member_flipped(model, saved):
    with zipfile.ZipFile(model) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
    _flip(model, member.header_offset + 30 + len(member.filename) + member.compress_size // 2)


def _skops_with_an_untrusted_type(model, saved):
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = members["schema.json"].decode()
    assert '"LogisticRegression"' in schema
    members["schema.json"] = (
        schema.replace('"LogisticRegression"', '"Popen"')
        .replace('"sklearn.linear_model._logistic"', '"subprocess"')
        .encode()
    )
    with zipfile.ZipFile(model, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def _folder_weights_flipped(model, saved):
    _weights_flipped_in(model / "model" / "model.safetensors", saved)


def _weights_flipped_in(weights, saved):
    _flip(weights, _offset_of(weights, _query_weights(saved["pipe"])) + 3, 0x40)


def _folder_weights_linked(model, saved):
    weights = model / "model" / "model.safetensors"
    same_bytes = model.parent / "elsewhere.safetensors"
    shutil.copyfile(weights, same_bytes)
    weights.unlink()
    weights.symlink_to(same_bytes)


def _folder_of_another_class(model, saved, name="sklearn_albert._classifier.AlbertClassifier"):
    # Crafted, with estimator.json's own checksum rewritten: the class checks must refuse.
    edit_estimator_file(model, lambda document: document.update({"class": name}))


def _folder_naming_os_system(model, saved):
    _folder_of_another_class(model, saved, name="os.system")


def _folder_class_flipped(model, saved):
    # "...AlbertVectorizer" -> "...AlbertVectorizes": the damage, not the name, is reported.
    _flip_in_estimator_file(model, b"class", b"AlbertVectorizer")


def _folder_estimator_file_linked(model, saved):
    document = model / "estimator.json"
    same_bytes = model.parent / "elsewhere.json"
    shutil.copyfile(document, same_bytes)
    document.unlink()
    document.symlink_to(same_bytes)


def _folder_file_cut(model, saved):
    _truncate(model / "estimator.json")


def _flip_in_estimator_file(model, field, value, *, after=None, mask=0x01):
    """Flip one bit of ``value`` (bytes), the first one after ``"field":`` (and ``after``)."""
    document = model / "estimator.json"
    text = document.read_bytes()
    start = text.index(after) if after is not None else 0
    key = text.index(b'"' + field + b'":', start)
    offset = text.index(value, key)
    assert b"," not in text[key:offset], text[key : offset + len(value)]
    _flip(document, offset + len(value) - 1, mask)


def _folder_layer_flipped(model, saved):
    # The fitted layer, 3 -> 2: valid JSON, other embeddings.
    _flip_in_estimator_file(model, b"layers", b"3", after=b'"settings_"')


def _folder_max_length_flipped(model, saved):
    # The fitted token limit, 64 -> 24.
    _flip_in_estimator_file(model, b"max_length", b"6", after=b'"settings_"', mask=0x04)


def _folder_bool_flipped(model, saved):
    # false -> falsd: no bit flip turns one JSON literal into another.
    _flip_in_estimator_file(model, b"normalize", b"false", after=b'"settings_"')


def _folder_string_flipped(model, saved):
    # The fitted pooling, "mean" -> "meao".
    _flip_in_estimator_file(model, b"pooling", b'"mean', after=b'"settings_"')


def _folder_version_flipped(model, saved):
    # format_version 3 -> 2: the folder must not pass for one without a checksum.
    _flip_in_estimator_file(model, b"format_version", b"3")


def _folder_checksum_flipped(model, saved):
    # The second hex digit of the recorded checksum itself.
    document = model / "estimator.json"
    _flip(document, _offset_of(document, b'"document_sha256": "') + 21)


def _folder_checksum_name_flipped(model, saved):
    # document_sha256 -> document_sha257: the field seems absent.
    document = model / "estimator.json"
    _flip(document, _offset_of(document, b'"document_sha256"') + 15)


def _folder_checksum_name_and_layer_flipped(model, saved):
    # Once the field's name is gone, a second flip must still not load.
    _folder_checksum_name_flipped(model, saved)
    _folder_layer_flipped(model, saved)


DAMAGED = r"estimator\.json is damaged or was edited"
#: One or two flipped bits in a saved folder's estimator.json, and what the load says.
FOLDER_FILE_FLIPS = {
    "pooled-layer": (_folder_layer_flipped, DAMAGED + r".*match the SHA-256"),
    "max-length": (_folder_max_length_flipped, DAMAGED + r".*match the SHA-256"),
    "bool": (_folder_bool_flipped, r"estimator\.json is not valid JSON.*damaged"),
    "string": (_folder_string_flipped, DAMAGED + r".*match the SHA-256"),
    "format-version": (_folder_version_flipped, DAMAGED + r".*match the SHA-256"),
    "checksum": (_folder_checksum_flipped, DAMAGED + r".*match the SHA-256"),
    "checksum-name": (_folder_checksum_name_flipped, DAMAGED + r".*field is missing"),
    "checksum-name-and-layer": (
        _folder_checksum_name_and_layer_flipped,
        DAMAGED + r".*field is missing",
    ),
}


@pytest.mark.parametrize("flip", list(FOLDER_FILE_FLIPS))
def test_a_bit_flip_in_a_saved_folders_estimator_file_is_refused(saved, tmp_path, flip):
    from sklearn_albert import AlbertVectorizer

    mutate, message = FOLDER_FILE_FLIPS[flip]
    folder = _copy(saved, "folder", tmp_path)
    mutate(folder, saved)

    with pytest.raises(ValueError, match=message) as refused:
        AlbertVectorizer.load(folder)

    assert str(folder) in str(refused.value)
    assert "Save the fitted estimator again" in str(refused.value)


def test_an_untouched_folder_loads_with_the_same_outputs(saved, tmp_path):
    from sklearn_albert import AlbertVectorizer

    folder = _copy(saved, "folder", tmp_path)
    loaded = AlbertVectorizer.load(folder)

    np.testing.assert_array_equal(loaded.transform(TEXTS), saved["expected"]["transform"])


def test_a_folder_saved_before_the_checksum_loads_with_the_same_outputs(saved, tmp_path):
    """Format 2 (and earlier) wrote no checksum: such folders load as they did."""
    from sklearn_albert import AlbertVectorizer

    folder = _copy(saved, "folder", tmp_path)
    make_legacy(folder)
    assert b"document_sha256" not in (folder / "estimator.json").read_bytes()

    loaded = AlbertVectorizer.load(folder)

    np.testing.assert_array_equal(loaded.transform(TEXTS), saved["expected"]["transform"])


SERVE_DAMAGE = {
    "joblib-truncated": ("pipe.joblib", _joblib_cut, r"pipe\.joblib'.*truncated or damaged"),
    "joblib-weights-bit-flipped": (
        "pipe.joblib",
        _joblib_weights_flipped,
        r"pipe\.joblib'.*weights in the pickle are not those it was fitted with",
    ),
    "skops-truncated": ("pipe.skops", _skops_cut, r"pipe\.skops'.*truncated or damaged"),
    "skops-bit-flipped": (
        "pipe.skops",
        _skops_member_flipped,
        r"pipe\.skops'.*CRC-32.*truncated or damaged",
    ),
    "skops-untrusted-type": ("pipe.skops", _skops_with_an_untrusted_type, r"subprocess\.Popen"),
    "folder-weights-bit-flipped": (
        "folder",
        _folder_weights_flipped,
        r"model\.safetensors changed",
    ),
    "folder-weights-symlink": ("folder", _folder_weights_linked, r"symbolic link"),
    "folder-of-another-class": (
        "folder",
        _folder_of_another_class,
        r"estimator\.json sets .*not fitted attributes of Alb",
    ),
    "folder-naming-os-system": ("folder", _folder_naming_os_system, r"names class 'os\.system'"),
    "folder-class-bit-flipped": (
        "folder",
        _folder_class_flipped,
        r"estimator\.json is damaged or was edited.*SHA-256",
    ),
    "folder-estimator-file-symlink": (
        "folder",
        _folder_estimator_file_linked,
        r"estimator\.json'.*symbolic link",
    ),
    "folder-file-truncated": ("folder", _folder_file_cut, r"estimator\.json"),
    "folder-file-layer-bit-flipped": (
        "folder",
        _folder_layer_flipped,
        r"estimator\.json is damaged or was edited",
    ),
}


@pytest.mark.parametrize("damage", list(SERVE_DAMAGE))
def test_serve_refuses_a_damaged_model_naming_the_file(saved, tmp_path, damage):
    serving = _serving()
    import sklearn_albert

    name, mutate, message = SERVE_DAMAGE[damage]
    model = _copy(saved, name, tmp_path) if name == "folder" else tmp_path / name
    if name != "folder":
        shutil.copyfile(saved["root"] / name, model)
    mutate(model, saved)
    sklearn_albert.clear_cache()  # the original weights, held in memory, must not help
    method = "transform" if name == "folder" else "predict_proba"

    error = _same_or_refused(
        lambda: serving.load_estimator(model, device="cpu"), saved["expected"][method], method
    )

    assert error is not None, "the damaged model loaded (with the original outputs)"
    assert re.search(message, error), error


def test_serve_exits_with_one_line_naming_a_damaged_model(saved, tmp_path):
    _serving()
    model = tmp_path / "pipe.joblib"
    shutil.copyfile(saved["root"] / "pipe.joblib", model)
    _truncate(model)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), environment.get("PYTHONPATH")])
    )

    with socket.socket() as probe:  # the load fails before the port is bound
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    served = subprocess.run(
        [sys.executable, "-m", "sklearn_albert", "serve", str(model), "--port", str(port)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )

    assert served.returncode == 1, served.stderr[-3000:]
    assert "Traceback" not in served.stderr
    lines = [line for line in served.stderr.splitlines() if "pipe.joblib" in line]
    assert len(lines) == 1 and "truncated or damaged" in lines[0], served.stderr[-3000:]
