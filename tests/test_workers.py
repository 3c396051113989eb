"""What worker processes of cluster engines do: glibc's allocator while a partition encodes.

The allocator is observed, not assumed: ``mallinfo2`` tells whether a 4 MiB block came from
the heap or from its own memory mapping, in a fresh process started with the environment
Dask's nanny gives its workers.
"""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only"
)

PROBE = textwrap.dedent(
    """
    import ctypes, json

    from sklearn_albert._workers import reuse_freed_memory

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
    from sklearn_albert import _workers

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    if value is not None:
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", value)
    assert _workers._glibc_to_tune() is None
    assert _workers.reuse_freed_memory() is False


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
    from sklearn_albert._workers import choose_device_here

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
    from sklearn_albert._workers import choose_device_here

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
