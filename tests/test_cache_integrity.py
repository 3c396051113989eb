"""The embedding cache never returns what it did not write, and never fails a transform.

Short writes, truncated and bit-flipped files, planted links, crafted ``meta.json`` files and
a failing spill file each cost a warning (EmbeddingCacheWarning) and a recomputation; two
threads sharing a folder encode each text once; a pure hit does not wait for a writer.
"""

import json
import os
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from _fake_encodings import fake_encodings  # tests/ is on sys.path (conftest.py)

from sklearn_albert import EmbeddingCacheWarning, cache_info
from sklearn_albert._cache import DiskCache, MemoryCache, embedding_cache_for

N_HIDDEN_STATES, DIM = 4, 8
N_COLUMNS = 3 * N_HIDDEN_STATES + 1
ALL_LAYERS = tuple(range(N_HIDDEN_STATES))
REPO_ROOT = Path(__file__).resolve().parents[1]


def texts_named(prefix, n):
    return [f"{prefix} text {i}" for i in range(n)]


def assert_found_rows_are_exact(found, got, texts):
    """Every text the cache says it found has exactly the vectors stored for it."""
    assert len(got.n_tokens) == found.sum()
    if not found.any():
        return
    expected = fake_encodings([text for text, hit in zip(texts, found) if hit])
    np.testing.assert_array_equal(got.summaries, expected.summaries)
    np.testing.assert_array_equal(got.pooler, expected.pooler)
    np.testing.assert_array_equal(got.n_tokens, expected.n_tokens)
    np.testing.assert_array_equal(got.truncated, expected.truncated)


def the_file(tmp_path, name):
    (path,) = (tmp_path / "sklearn_albert_cache").glob(f"*/{name}")
    return path


def stored_folder(tmp_path, texts):
    DiskCache(tmp_path).store("ns", texts, fake_encodings(texts), storage_dtype="float32")


class Recorded(warnings.catch_warnings):
    """The EmbeddingCacheWarnings raised inside, checked after the results they concern."""

    def __init__(self):
        super().__init__(record=True)

    def __enter__(self):
        self.caught = super().__enter__()
        warnings.simplefilter("always")
        return self

    def messages(self):
        return [str(w.message) for w in self.caught if w.category is EmbeddingCacheWarning]


def run_child(code, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from _fake_encodings import fake_encodings\n" + code],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------------- the checksum


def test_the_checksum_catches_bit_flips_swapped_words_holes_and_moved_vectors():
    from sklearn_albert._cache._integrity import checksums

    values = np.random.default_rng(0).normal(size=(2, 3, 16)).astype(np.float16)
    slots, columns = np.array([5, 6, 7]), np.array([0, 9])
    reference = checksums(values, slots, columns)
    words = values.view(np.uint32)
    for word in range(words.shape[-1]):
        for bit in range(32):
            flipped = words.copy()
            flipped[1, 2, word] ^= np.uint32(1 << bit)
            assert checksums(flipped.view(np.float16), slots, columns)[1, 2] != reference[1, 2]
    swapped = words.copy()
    swapped[0, 0, [2, 3]] = swapped[0, 0, [3, 2]]
    assert checksums(swapped.view(np.float16), slots, columns)[0, 0] != reference[0, 0]
    hole = values.copy()
    hole[0, 1] = 0
    assert checksums(hole, slots, columns)[0, 1] != reference[0, 1]
    moved = checksums(values[:, ::-1], slots, columns)
    assert moved[0, 0] != reference[0, 2]  # a vector read from another slot does not match


# ---------------------------------------------------------------------- the folder store


def test_a_short_write_leaves_nothing_visible_and_the_texts_are_stored_again(tmp_path):
    # The last column (the pooler's) starts at 12 blocks of 1024 rows x 8 float32 values:
    # a file size limit 16 rows into it cuts the writes of 50 texts short.
    limit = 12 * 1024 * DIM * 4 + 16 * DIM * 4
    output = run_child(
        f"""
import resource, signal, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from sklearn_albert._cache import DiskCache
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
texts = [f"s text {{i}}" for i in range(50)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    DiskCache(".").store("ns", texts, fake_encodings(texts), storage_dtype="float32")
print(sorted({{type(w.message).__name__ for w in caught}}))
""",
        tmp_path,
    )
    texts = texts_named("s", 50)
    cache = DiskCache(tmp_path)
    found, got = cache.lookup("ns", texts, ALL_LAYERS)
    assert_found_rows_are_exact(found, got, texts)  # 0a2a18e: 34 rows of zeros
    assert not found.any()
    assert "EmbeddingCacheWarning" in output

    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    found, got = DiskCache(tmp_path).lookup("ns", texts, ALL_LAYERS)
    assert found.all()
    assert_found_rows_are_exact(found, got, texts)


def test_a_truncated_data_file_is_reported_once_and_its_texts_stored_again(tmp_path):
    texts = texts_named("t", 50)
    stored_folder(tmp_path, texts)
    data = the_file(tmp_path, "data.bin")
    os.truncate(data, data.stat().st_size // 2)

    cache = DiskCache(tmp_path)
    with Recorded() as recorded:
        found, got = cache.lookup("ns", texts, ALL_LAYERS)  # 0a2a18e: OSError
    assert not found.all()
    assert_found_rows_are_exact(found, got, texts)
    assert len(recorded.messages()) == 1
    assert "damaged" in recorded.messages()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per namespace and fault
        cache.lookup("ns", texts, ALL_LAYERS)

    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found, got = DiskCache(tmp_path).lookup("ns", texts, ALL_LAYERS)
    assert found.all()  # the later records win
    assert_found_rows_are_exact(found, got, texts)


def test_a_flipped_bit_in_the_data_drops_that_text_only(tmp_path):
    texts = texts_named("f", 10)
    stored_folder(tmp_path, texts)
    data = the_file(tmp_path, "data.bin")
    raw = bytearray(data.read_bytes())
    raw[3 * DIM * 4 + 1] ^= 0x10  # column 0 (cls of the first hidden state), row 3
    data.write_bytes(bytes(raw))

    with Recorded() as recorded:
        found, got = DiskCache(tmp_path).lookup("ns", texts, (0,), kinds=["cls"])
    expected = [i != 3 for i in range(10)]
    np.testing.assert_array_equal(found, expected)  # 0a2a18e: found, with a wrong value
    np.testing.assert_array_equal(
        got.summaries[:, 0], fake_encodings(texts).summaries[expected][:, 0, [0]]
    )
    assert len(recorded.messages()) == 1


def test_a_flipped_bit_in_an_index_record_drops_that_record_only(tmp_path):
    texts = texts_named("i", 10)
    stored_folder(tmp_path, texts)
    index = the_file(tmp_path, "index.bin")
    raw = bytearray(index.read_bytes())
    record_bytes = len(raw) // 10
    raw[4 * record_bytes + 16] ^= 0x01  # record 4's token count
    index.write_bytes(bytes(raw))

    with Recorded() as recorded:
        found, got = DiskCache(tmp_path).lookup("ns", texts, ALL_LAYERS)
    np.testing.assert_array_equal(found, [i != 4 for i in range(10)])  # 0a2a18e: all found
    assert_found_rows_are_exact(found, got, texts)
    assert len(recorded.messages()) == 1


@pytest.mark.parametrize("name", ["data.bin", "index.bin"])
def test_links_planted_for_the_cache_files_are_never_written_through(tmp_path, name):
    texts = texts_named("l", 20)
    cache_folder = tmp_path / "cache"
    stored_folder(cache_folder, texts[:10])
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious " * 1000)
    planted = the_file(cache_folder, name)
    planted.unlink()
    planted.symlink_to(victim)

    cache = DiskCache(cache_folder)
    with Recorded() as recorded:
        found, _ = cache.lookup("ns", texts, ALL_LAYERS)
        with cache.writing("ns"):
            cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    assert victim.read_bytes() == b"precious " * 1000  # 0a2a18e: truncated and overwritten
    assert planted.is_symlink()
    assert not found.any()
    assert len(recorded.messages()) == 1
    assert "symbolic link" in recorded.messages()[0]


def test_a_linked_cache_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    user_folder = tmp_path / "cache"
    user_folder.mkdir()
    (user_folder / "sklearn_albert_cache").symlink_to(elsewhere)

    cache = DiskCache(user_folder)
    with Recorded() as recorded:
        cache.store("ns", ["x"], fake_encodings(["x"]), storage_dtype="float32")
        found, _ = cache.lookup("ns", ["x"], ALL_LAYERS)
    assert list(elsewhere.iterdir()) == []  # 0a2a18e: the namespace was created in there
    assert not found.any()
    assert "symbolic link" in recorded.messages()[0]


def test_the_cache_creates_its_folders_0700_and_files_0600(tmp_path):
    stored_folder(tmp_path, ["x", "y"])
    top = tmp_path / "sklearn_albert_cache"
    (namespace,) = top.iterdir()
    for folder in (top, namespace):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    for path in namespace.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name  # 0a2a18e: 0644


@pytest.mark.parametrize(
    "meta",
    [
        "not json {",
        "[1, 2, 3]",
        '{"version": 1, "n_hidden_states": 4, "dim": 8, "has_pooler": true, '
        '"block_rows": 1024, "storage_dtype": "float32"}',
        '{"version": 2, "n_hidden_states": 4, "dim": 1e12, "has_pooler": true, '
        '"block_rows": 1024, "storage_dtype": "float32"}',
        '{"version": 2, "n_hidden_states": 4, "dim": 8, "has_pooler": true, '
        '"block_rows": 1024, "storage_dtype": "object"}',
    ],
    ids=["not-json", "a-list", "version-1", "absurd-dim", "unknown-dtype"],
)
def test_a_crafted_meta_json_makes_the_cache_step_aside(tmp_path, meta):
    texts = texts_named("m", 5)
    stored_folder(tmp_path, texts)
    the_file(tmp_path, "meta.json").write_text(meta)

    cache = DiskCache(tmp_path)
    with Recorded() as recorded:
        found, _ = cache.lookup("ns", texts, ALL_LAYERS)  # 0a2a18e: an exception
        cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    assert not found.any()
    assert the_file(tmp_path, "meta.json").read_text() == meta  # left for the user to see
    assert len(recorded.messages()) == 1
    if '"version": 1' in meta:
        assert "Delete that folder" in recorded.messages()[0]


def test_a_vectorizer_transform_survives_a_truncated_folder_cache(vectorizer, tmp_path):
    texts = [f"a sentence number {i}" for i in range(30)]
    vectorizer.set_params(embedding_cache=str(tmp_path)).fit(texts)
    first = vectorizer.transform(texts)
    data = the_file(tmp_path, "data.bin")
    os.truncate(data, data.stat().st_size // 3)

    with Recorded() as recorded:
        again = vectorizer.transform(texts)  # 0a2a18e: OSError naming a file descriptor
    np.testing.assert_array_equal(again, first)
    assert len(recorded.messages()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(vectorizer.transform(texts), first)


# ---------------------------------------------------------------------- threads and locks


def test_two_threads_sharing_a_folder_encode_each_text_once(tmp_path):
    texts = texts_named("w", 300)
    cache = embedding_cache_for(str(tmp_path))
    both_missed = threading.Barrier(2)
    errors = []

    def transform_like_the_vectorizer():
        try:
            found, _ = cache.lookup("ns", texts, ALL_LAYERS)
            both_missed.wait(timeout=30)
            with cache.writing("ns"):
                found, _ = cache.lookup("ns", texts, ALL_LAYERS)
                missing = [text for text, hit in zip(texts, found) if not hit]
                if missing:
                    time.sleep(0.3)  # encoding
                    cache.store("ns", missing, fake_encodings(missing), storage_dtype="float32")
        except Exception as error:  # noqa: BLE001 (reported by the main thread)
            errors.append(error)

    threads = [threading.Thread(target=transform_like_the_vectorizer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    info = cache_info(str(tmp_path))
    assert info["entries"] == 300
    assert info["writes"] == info["entries"]  # 0a2a18e: 600


def test_a_pure_hit_does_not_wait_for_the_lock_a_writer_waits_on(tmp_path):
    texts = texts_named("h", 40)
    cache = DiskCache(tmp_path)
    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    lock = the_file(tmp_path, "lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(3.5)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        entered = threading.Event()

        def writer():
            with cache.writing("ns"):  # waits for the other process
                entered.set()

        waiting = threading.Thread(target=writer)
        waiting.start()
        time.sleep(0.3)  # the writer thread is now waiting for the lock file
        assert not entered.is_set()
        start = time.perf_counter()
        found, got = cache.lookup("ns", texts, ALL_LAYERS)
        elapsed = time.perf_counter() - start
        assert found.all()
        assert_found_rows_are_exact(found, got, texts)
        assert elapsed < 1.0  # 0a2a18e: about 3.2 s, until the other process let go
    finally:
        holder.wait(timeout=30)
        waiting.join(timeout=30)
    assert entered.is_set()


# ---------------------------------------------------------------------- the memory store


def test_a_failing_spill_file_forgets_blocks_and_the_cache_recovers(tmp_path):
    # 8 texts of 13 float32 columns of 8 values per block: 3,328 bytes; 200 texts add 22 kB
    # of index and the spilled blocks 832 bytes of checksums each, so that a few blocks stay
    # in RAM. A file size limit of 5,000 bytes fits the first spilled block and cuts the
    # second one short.
    output = run_child(
        """
import json, resource, signal, warnings
import numpy as np
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from sklearn_albert._cache import MemoryCache
texts = [f"p text {i}" for i in range(200)]
expected = fake_encodings(texts)
cache = MemoryCache(max_bytes=60_000, block_rows=8)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (5_000, hard))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cache.store("ns", texts, expected, storage_dtype="float32")  # 0a2a18e: OSError
    found, got = cache.lookup("ns", texts, (0, 1, 2, 3))
during = [type(w.message).__name__ for w in caught]
found_during = int(found.sum())
exact_during = bool(np.array_equal(got.summaries, expected.summaries[found]))
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cache.store("ns", texts, expected, storage_dtype="float32")
    found, got = cache.lookup("ns", texts, (0, 1, 2, 3))
print(json.dumps({
    "during": during,
    "found_during": found_during,
    "exact_during": exact_during,
    "after": [type(w.message).__name__ for w in caught],
    "found_after": int(found.sum()),
    "exact_after": bool(np.array_equal(got.summaries, expected.summaries[found])),
    "spilled": cache.info()["spilled_entries"],
}))
""",
        tmp_path,
    )
    result = json.loads(output)
    assert result["during"] == ["EmbeddingCacheWarning"]  # once
    assert result["exact_during"]
    assert result["found_during"] < 200
    assert result["after"] == []
    assert result["found_after"] == 200  # 0a2a18e: "shorter than expected" after the fault
    assert result["exact_after"]
    assert result["spilled"] > 8


def test_a_damaged_spill_file_drops_the_block_and_warns_once():
    cache = MemoryCache(max_bytes=60_000, block_rows=8)
    texts = texts_named("d", 200)
    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    spill_fd = cache._spill.fd  # the unnamed file: reachable only through its descriptor
    os.pwrite(spill_fd, b"\xff" * 16, 100)

    with Recorded() as recorded:
        found, got = cache.lookup("ns", texts, ALL_LAYERS)
    assert 0 < found.sum() < 200  # 0a2a18e: all found, one block with wrong values
    assert_found_rows_are_exact(found, got, texts)
    assert len(recorded.messages()) == 1
    assert "spill" in recorded.messages()[0]
