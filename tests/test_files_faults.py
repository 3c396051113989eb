"""Resumable ``embed`` against damaged, crafted and half-written files (issue 19).

Each test interrupts or damages a run towards ``work/out.npy`` and checks that the
command line then writes exactly what an uninterrupted run writes, and that nothing
outside ``work/`` changed.
"""

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from sklearn_albert import _cli, _files

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and rlimits")

ROOT = Path(__file__).parents[1]
TEXTS = [f"text number {i} is {'very ' * (i % 4)}good" for i in range(10)]
CHUNK_SIZE = 2  # 5 chunks
REAL_EMBED_CHUNK = _files.embed_chunk


@pytest.fixture(scope="module")
def model_options(tiny_albert_path):
    return ["--model", str(tiny_albert_path), "--device", "cpu", "--dtype", "float32", "--offline"]


@pytest.fixture(scope="module")
def uninterrupted(model_options, tmp_path_factory):
    """The output of one uninterrupted run with the settings every test uses."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    _write_texts(folder / "texts.txt", TEXTS)
    output = folder / "out.npy"
    assert _cli.main(_argv(folder / "texts.txt", output, model_options)) == 0
    return np.load(output)


@pytest.fixture
def work(tmp_path):
    """``tmp_path/work`` holds the input, the output and its sidecar; ``tmp_path/outside``
    holds files that no run may touch."""
    (tmp_path / "work").mkdir()
    (tmp_path / "outside").mkdir()
    _write_texts(tmp_path / "work" / "texts.txt", TEXTS)
    return tmp_path / "work"


def _write_texts(path, texts):
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")


def _argv(texts, output, model_options, *extra, chunk_size=CHUNK_SIZE):
    return ["embed", str(texts), "-o", str(output), "--chunk-size", str(chunk_size), "-q"] + [
        *model_options,
        *extra,
    ]


def _snapshot(root, skip):
    """sha256 (or link target, or kind) of every entry under ``root`` but ``skip``."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        if path.is_symlink():
            state[path] = ("link", os.readlink(path))
        elif path.is_file():
            state[path] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            state[path] = ("other", path.stat().st_mode)
    return state


class _StopAfter:
    """Stands in for ``embed_chunk``: the real one for ``n_ok`` chunks, then a failure."""

    def __init__(self, n_ok):
        self.n_ok = n_ok

    def __call__(self, vectorizer, texts):
        if self.n_ok == 0:
            raise RuntimeError("injected stop")
        self.n_ok -= 1
        return REAL_EMBED_CHUNK(vectorizer, texts)


def _interrupted_run(work, model_options, monkeypatch, n_ok=3):
    monkeypatch.setattr(_files, "embed_chunk", _StopAfter(n_ok))
    assert _cli.main(_argv(work / "texts.txt", work / "out.npy", model_options)) == 1
    monkeypatch.setattr(_files, "embed_chunk", REAL_EMBED_CHUNK)
    sidecar = _files.sidecar_folder(work / "out.npy")
    assert len(list(sidecar.glob("chunk-*.npy"))) == n_ok
    return sidecar


@contextmanager
def _no_hang(seconds):
    """Turn a blocking call (a FIFO opened for reading) into an error instead of a hang."""

    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _truncate(chunk, outside):
    chunk.write_bytes(chunk.read_bytes()[:-7])


def _flip_a_bit(chunk, outside):
    content = bytearray(chunk.read_bytes())
    content[-3] ^= 0x10
    chunk.write_bytes(bytes(content))


def _wrong_shape(chunk, outside):
    np.save(chunk, np.zeros((CHUNK_SIZE + 1, np.load(chunk).shape[1]), dtype=np.float32))


def _chunk_of_another_job(chunk, outside):
    # Right dtype and shape, other rows: chunk 0's bytes, as if copied from another run.
    chunk.write_bytes((chunk.parent / "chunk-000000.npy").read_bytes())


def _symlink_to_outside(chunk, outside):
    victim = outside / "victim.npy"
    np.save(victim, np.zeros_like(np.load(chunk)))
    chunk.unlink()
    chunk.symlink_to(victim)


def _fifo(chunk, outside):
    chunk.unlink()
    os.mkfifo(chunk)


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip_a_bit, _wrong_shape, _chunk_of_another_job, _symlink_to_outside, _fifo],
    ids=["truncated", "bit-flipped", "wrong-shape", "another-job", "symlink", "fifo"],
)
def test_a_damaged_chunk_is_recomputed_never_reused(
    work, model_options, uninterrupted, monkeypatch, capsys, damage
):
    sidecar = _interrupted_run(work, model_options, monkeypatch)
    damage(sidecar / "chunk-000001.npy", work.parent / "outside")
    before = _snapshot(work.parent, skip=work)
    capsys.readouterr()

    with _no_hang(20):
        status = _cli.main(_argv(work / "texts.txt", work / "out.npy", model_options))

    err = capsys.readouterr().err
    assert status == 0, err
    np.testing.assert_array_equal(np.load(work / "out.npy"), uninterrupted)
    assert _snapshot(work.parent, skip=work) == before
    assert not sidecar.exists()
    assert "Recomputing 1 of 5 chunks" in err and "chunk 1" in err
    assert "2 chunk(s) reused" in err


def test_a_sidecar_that_is_a_symlink_is_refused_and_left_alone(work, model_options, capsys):
    elsewhere = work.parent / "outside" / "folder"
    elsewhere.mkdir()
    np.save(elsewhere / "chunk-000000.npy", np.zeros((2, 3), dtype=np.float32))
    (elsewhere / "manifest.json").write_text("{}", encoding="utf-8")
    _files.sidecar_folder(work / "out.npy").symlink_to(elsewhere, target_is_directory=True)
    before = _snapshot(work.parent, skip=work)

    status = _cli.main(_argv(work / "texts.txt", work / "out.npy", model_options))

    err = capsys.readouterr().err
    assert status == 1
    assert "out.npy.parts" in err and "it is a symbolic link" in err and "Traceback" not in err
    assert not (work / "out.npy").exists()
    assert _snapshot(work.parent, skip=work) == before


@pytest.mark.parametrize("planted_at", ["out.npy", ".out.npy.partial"])
def test_a_symlink_at_the_output_path_is_replaced_not_written_through(
    work, model_options, uninterrupted, capsys, planted_at
):
    victim = work.parent / "outside" / "victim.npy"
    victim.write_bytes(b"precious")
    (work / planted_at).symlink_to(victim)
    before = _snapshot(work.parent, skip=work)

    status = _cli.main(_argv(work / "texts.txt", work / "out.npy", model_options, "--overwrite"))

    assert status == 0, capsys.readouterr().err
    assert _snapshot(work.parent, skip=work) == before
    assert not (work / "out.npy").is_symlink()
    np.testing.assert_array_equal(np.load(work / "out.npy"), uninterrupted)


def test_a_symlink_at_the_output_path_needs_overwrite(work, model_options, capsys):
    (work / "out.npy").symlink_to(work.parent / "outside" / "missing.npy")

    status = _cli.main(_argv(work / "texts.txt", work / "out.npy", model_options))

    assert status == 1
    assert "is a symbolic link. Pass --overwrite" in capsys.readouterr().err
    assert not (work.parent / "outside" / "missing.npy").exists()


def _cli_process(argv, **kwargs):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sklearn_albert", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        **kwargs,
    )


def _limit_file_size(limit):
    def limit_in_child():
        # A write past the limit then fails with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_in_child


@pytest.mark.parametrize("short", ["chunk", "output"])
def test_a_short_write_fails_clearly_and_a_rerun_writes_the_right_output(
    work, model_options, uninterrupted, capsys, short
):
    n_rows, n_features = uninterrupted.shape
    if short == "chunk":
        # One chunk of all the texts, one byte short; the manifest (< 1 kB) fits.
        argv = _argv(work / "texts.txt", work / "out.npy", model_options, chunk_size=n_rows)
        message = "Could not save chunk 0 in"
    else:
        # Every chunk (384 bytes) and the manifest fit; the output is one byte short.
        argv = _argv(work / "texts.txt", work / "out.npy", model_options)
        message = "Could not write OUTPUT="
    limit = 128 + n_rows * n_features * 4 - 1
    before = _snapshot(work.parent, skip=work)

    child = _cli_process(argv, preexec_fn=_limit_file_size(limit))
    _, err = child.communicate(timeout=120)

    assert child.returncode == 1, err
    assert "Traceback" not in err
    assert message in err and "File too large (is the disk full" in err, err
    assert not (work / "out.npy").exists()

    status = _cli.main(argv)

    assert status == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(work / "out.npy"), uninterrupted)
    assert not _files.sidecar_folder(work / "out.npy").exists()
    assert _snapshot(work.parent, skip=work) == before


def test_a_writer_killed_mid_run_leaves_what_a_rerun_completes(
    work, model_options, tmp_path_factory, capsys
):
    texts = [f"sentence {i} about the {'long ' * (i % 7)}garden" for i in range(40)]
    _write_texts(work / "texts.txt", texts)
    elsewhere = tmp_path_factory.mktemp("uninterrupted-long")
    _write_texts(elsewhere / "texts.txt", texts)
    assert _cli.main(_argv(elsewhere / "texts.txt", elsewhere / "out.npy", model_options)) == 0
    argv = _argv(work / "texts.txt", work / "out.npy", model_options)
    sidecar = _files.sidecar_folder(work / "out.npy")
    before = _snapshot(work.parent, skip=work)

    child = _cli_process(argv)
    deadline = time.monotonic() + 120
    while not list(sidecar.glob("chunk-*.npy")) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert not (work / "out.npy").exists()

    status = _cli.main(argv)

    assert status == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(work / "out.npy"), np.load(elsewhere / "out.npy"))
    assert _snapshot(work.parent, skip=work) == before
