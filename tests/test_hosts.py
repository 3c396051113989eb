"""What any host does with a shipped estimator: its device, glibc's allocator, its imports.

The allocator is observed, not assumed: ``mallinfo2`` tells whether a 4 MiB block came from
the heap or from its own memory mapping, in a fresh process started with the environment
Dask's nanny gives its workers.
"""

import ast
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only"
)

PROBE = textwrap.dedent(
    """
    import ctypes, json

    from sklearn_albert._hosts import reuse_freed_memory

    libc = ctypes.CDLL("libc.so.6")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def mapped_when_allocating():
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(4 * 1024 * 1024)
        mapped = libc.mallinfo2().hblkhd - before >= 4 * 1024 * 1024
        libc.free(block)
        return mapped

    facts = {"before": mapped_when_allocating()}
    facts["tuned"] = reuse_freed_memory()
    facts["after"] = mapped_when_allocating()
    facts["again"] = reuse_freed_memory()  # once per process: a second call changes nothing
    facts["still"] = mapped_when_allocating()
    print(json.dumps(facts))
    """
)


def run_probe(env_trim):
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if env_trim is not None:
        env["MALLOC_TRIM_THRESHOLD_"] = str(env_trim)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def glibc_has_mallinfo2():
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


needs_mallinfo2 = pytest.mark.skipif(
    not glibc_has_mallinfo2(), reason="needs glibc 2.33 or later (mallinfo2)"
)


@needs_mallinfo2
@linux_only
def test_under_dasks_trim_threshold_blocks_come_from_the_heap_once_a_process_encodes():
    facts = run_probe(65536)  # what distributed's nanny sets in each worker process
    # Before: the small trim threshold froze the mmap threshold at 128 KiB.
    assert facts["before"] is True
    assert facts["tuned"] is True
    assert facts["after"] is False
    assert facts["again"] is True
    assert facts["still"] is False


@linux_only
@pytest.mark.parametrize("value", [None, str(1024**3), "not a number"])
def test_the_allocator_is_left_alone_without_a_small_trim_threshold(monkeypatch, value):
    from sklearn_albert import _hosts

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    if value is not None:
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", value)
    assert _hosts._glibc_to_tune() is None
    assert _hosts.reuse_freed_memory() is False


# ---------------------------------------------------------------------- device on a worker


def shipped_from_another_device(fitted, device):
    """A worker's copy of ``fitted`` (a fresh unpickled one), as if fitted on ``device``.

    This machine has no second device: the copy records another device's name, as a
    vectorizer fitted on a GPU client would, so that this worker's best device differs.
    """
    from conftest import pretend_fitted_on

    return pretend_fitted_on(pickle.loads(pickle.dumps(fitted)), device)


def test_a_worker_moves_a_vectorizer_to_its_device_without_refitting(vectorizer):
    pd = pytest.importorskip("pandas", reason="needs pandas (pip install .[test])")
    from sklearn_albert._hosts import choose_device_here

    texts = pd.Series(["a warm film", "a cold plot", "the music was lovely"], name="review")
    fitted = vectorizer.set_params(device="auto").fit(texts)
    shipped = shipped_from_another_device(fitted, "cuda")

    choose_device_here(shipped)

    assert shipped.device_ == "cpu" and shipped.dtype_ == fitted.dtype_
    assert shipped.input_name_ == "review"  # a refit on [] would forget the column's name
    assert list(shipped.get_feature_names_out()[:2]) == ["review_0", "review_1"]
    assert shipped.model_fingerprint_ == fitted.model_fingerprint_
    np.testing.assert_array_equal(shipped.transform(texts), fitted.transform(texts))


def test_a_worker_keeps_the_int8_calibration_of_the_fit_texts(tiny_albert_path):
    pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
    pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")
    from _tiny_model import generated_sentences

    from sklearn_albert import AlbertVectorizer
    from sklearn_albert._hosts import choose_device_here

    texts = generated_sentences(40, seed=61)
    fitted = AlbertVectorizer(str(tiny_albert_path), dtype="int8", device="auto").fit(texts)
    assert fitted.int8_calibration_["source"] == "fit texts"
    shipped = shipped_from_another_device(fitted, "cuda")

    choose_device_here(shipped)

    assert shipped.device_ == "cpu" and shipped.dtype_ == "int8"
    # The calibration learned from the fit texts, not a new one on the built-in sample.
    assert shipped.int8_calibration_ == fitted.int8_calibration_
    assert shipped.settings_.calibration_id == fitted.settings_.calibration_id
    np.testing.assert_allclose(shipped.transform(texts), fitted.transform(texts), atol=1e-6)


def test_a_worker_moves_a_vectorizer_inside_a_pipeline(vectorizer):
    from conftest import pretend_fitted_on
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_albert._hosts import choose_device_here

    texts = ["a warm film", "a cold plot", "the music was lovely", "dull and long"]
    fitted = make_pipeline(vectorizer.set_params(device="auto"), LogisticRegression())
    fitted.fit(texts, [1, 0, 1, 0])
    shipped = pickle.loads(pickle.dumps(fitted))
    shipped_vectorizer = pretend_fitted_on(shipped.steps[0][1], "cuda")

    choose_device_here(shipped)

    assert shipped_vectorizer.device_ == "cpu"
    np.testing.assert_array_equal(shipped.predict_proba(texts), fitted.predict_proba(texts))


def test_a_worker_leaves_a_vectorizer_that_carries_its_weights_or_names_its_device(
    vectorizer,
):
    from sklearn.base import clone

    from sklearn_albert._hosts import choose_device_here

    texts = ["a warm film", "a cold plot"]
    carries = clone(vectorizer).set_params(device="auto", store_weights_in_pickle=True)
    names = clone(vectorizer).set_params(device="cpu")
    shipped = [shipped_from_another_device(each.fit(texts), "cuda") for each in (carries, names)]

    for each in shipped:
        choose_device_here(each)

    assert [each.device_ for each in shipped] == ["cuda", "cuda"]


# ---------------------------------------------------------------------- the import graph

PACKAGE = Path(__file__).resolve().parent.parent / "sklearn_albert"
# What hosts run and what deploys them: _hosts sits below all of these.
ABOVE_HOSTS = {"_vectorizer", "_classifier", "distributed", "spark", "serving", "mlflow"}


def imported_modules(name):
    """The package's modules that module ``name`` imports, at any depth of its code.

    Imports inside functions count: they are how the old loop (``_vectorizer`` ->
    ``distributed`` -> ``_workers`` -> ``_vectorizer``) was hidden. ``import
    sklearn_albert`` (the package's face, for ``__version__``) is not a layer and is
    left out.
    """
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            # from . import a, b / from ._x import y / from ._cache._layout import z
            if node.module is None:
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn_albert."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("sklearn_albert.")
            )
    return {module for module in found if (PACKAGE / f"{module}.py").exists()}


def reachable_from(name):
    seen, todo = set(), [name]
    while todo:
        for module in imported_modules(todo.pop()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


def test_hosts_imports_nothing_above_it():
    assert imported_modules("_hosts") <= {"_devices", "_persistence"}
    assert not reachable_from("_hosts") & ABOVE_HOSTS


def test_the_engines_import_hosts_and_no_loop_returns_to_the_vectorizer():
    assert not (PACKAGE / "_workers.py").exists()
    assert "_hosts" in imported_modules("distributed")
    assert "_hosts" in imported_modules("spark")
    # _vectorizer hands dask collections to distributed; nothing below leads back.
    assert "distributed" in imported_modules("_vectorizer")
    assert "_vectorizer" not in reachable_from("distributed")
    assert "_vectorizer" not in reachable_from("spark")


def test_importing_hosts_loads_no_engine():
    code = (
        "import sys, sklearn_albert._hosts; "
        "print(sorted(m for m in sys.modules if m.startswith('sklearn_albert.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for engine in ("distributed", "spark", "serving", "mlflow"):
        assert f"'sklearn_albert.{engine}'" not in loaded


def test_a_saved_encoder_loads_where_a_shipped_one_would_run():
    from sklearn_albert._hosts import device_here, device_to_load_with

    assert device_to_load_with("auto", "float32") == "auto"  # this host's best device
    assert device_to_load_with("auto", "int8") is None  # its fitted CPU
    assert device_to_load_with("cpu", "float32") is None  # the user's choice
    assert device_here("auto", "int8").type == "cpu"
    assert device_here("cuda", "float16") is None
