"""The embedding cache: bounds, eviction order, spilling, fidelity, and sharing by processes."""

import json
import multiprocessing
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _tiny_model import generated_sentences
from conftest import best_candidate, texts_labelled_by_their_last_word
from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_albert import cache_info, set_cache_limit
from sklearn_albert._cache import (
    DEFAULT_MAX_BYTES,
    MEMORY_CACHE,
    DiskCache,
    Encodings,
    MemoryCache,
    embedding_cache_for,
    rounded_as_stored,
)

N_HIDDEN_STATES, DIM = 4, 8
REPO_ROOT = Path(__file__).resolve().parents[1]

# A float16 value is within this relative distance of the float32 it was rounded from.
FLOAT16_RELATIVE_BOUND = 2.0**-11


def fake_encodings(texts, *, pooler=True, scale=1.0):
    """Encodings that depend only on each text, so that any process can rebuild them."""
    rows = []
    for text in texts:
        seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") + len(text)
        rows.append(np.random.default_rng(seed).normal(size=(4, N_HIDDEN_STATES, DIM)))
    values = (np.stack(rows) * scale).astype(np.float32)
    return Encodings(
        values[:, :3].astype(np.float32),
        values[:, 3, 0].astype(np.float32) if pooler else None,
        np.array([len(text) for text in texts], dtype=np.int64),
        np.array([len(text) % 2 == 0 for text in texts], dtype=bool),
    )


def texts_named(prefix, n):
    return [f"{prefix} text {i}" for i in range(n)]


ROW_BYTES_FLOAT32 = (3 * N_HIDDEN_STATES + 1) * DIM * 4


@pytest.fixture(autouse=True)
def _default_limits():
    yield
    set_cache_limit(DEFAULT_MAX_BYTES)
    MEMORY_CACHE.max_spill_bytes = None  # back to the default, measured on the next spill


# ---------------------------------------------------------------------- lookup and store


@pytest.mark.parametrize("pooler", [True, False])
def test_lookup_returns_the_layers_asked_for_in_the_order_of_the_texts(pooler):
    cache = MemoryCache()
    texts = texts_named("a", 5)
    encodings = fake_encodings(texts, pooler=pooler)
    cache.store("ns", texts, encodings, storage_dtype="float32")

    asked = ["missing", texts[3], texts[0], "also missing", texts[3]]
    found, got = cache.lookup("ns", asked, (2, 0))

    np.testing.assert_array_equal(found, [False, True, True, False, True])
    np.testing.assert_array_equal(got.summaries, encodings.summaries[[3, 0, 3]][:, :, [2, 0]])
    if pooler:
        np.testing.assert_array_equal(got.pooler, encodings.pooler[[3, 0, 3]])
    else:
        assert got.pooler is None
    np.testing.assert_array_equal(got.n_tokens, encodings.n_tokens[[3, 0, 3]])
    np.testing.assert_array_equal(got.truncated, encodings.truncated[[3, 0, 3]])
    assert got.summaries.dtype == np.float32
    assert cache.info()["hits"] == 3
    assert cache.info()["misses"] == 2


def test_namespaces_are_separate():
    cache = MemoryCache()
    cache.store("one", ["x"], fake_encodings(["x"]))
    found, _ = cache.lookup("two", ["x"], (0,))
    assert not found.any()
    assert cache.lookup("one", ["x"], (0,))[0].all()


def test_float16_storage_is_within_its_bound_and_equals_rounded_as_stored():
    cache = MemoryCache()
    texts = texts_named("b", 20)
    encodings = fake_encodings(texts, scale=100.0)
    cache.store("ns", texts, encodings)  # float16, the default
    layers = tuple(range(N_HIDDEN_STATES))
    _, got = cache.lookup("ns", texts, layers)

    np.testing.assert_array_equal(got.summaries, rounded_as_stored(encodings.summaries))
    np.testing.assert_array_equal(got.pooler, rounded_as_stored(encodings.pooler))
    relative = np.abs(got.summaries - encodings.summaries) / np.abs(encodings.summaries)
    assert relative.max() <= FLOAT16_RELATIVE_BOUND
    assert not np.array_equal(got.summaries, encodings.summaries)  # it did round


def test_texts_beyond_float16_range_are_not_kept_but_exact_float32_ones_are():
    cache = MemoryCache()
    huge = fake_encodings(["huge"], scale=1e6)
    cache.store("ns", ["huge"], huge)
    assert not cache.lookup("ns", ["huge"], (0,))[0].any()
    np.testing.assert_array_equal(rounded_as_stored(huge.summaries), huge.summaries)

    cache.store("exact", ["huge"], huge, storage_dtype="float32")
    found, got = cache.lookup("exact", ["huge"], (1,))
    assert found.all()
    np.testing.assert_array_equal(got.summaries, huge.summaries[:, :, [1]])


def test_storing_a_text_twice_keeps_one_entry():
    cache = MemoryCache()
    cache.store("ns", ["x", "x", "y"], fake_encodings(["x", "x", "y"]))
    cache.store("ns", ["x"], fake_encodings(["x"]))
    assert cache.info()["entries"] == 2


def test_a_bad_storage_dtype_is_named():
    with pytest.raises(ValueError, match="Got storage_dtype='int8' but expected one of"):
        MemoryCache().store("ns", ["x"], fake_encodings(["x"]), storage_dtype="int8")


# ---------------------------------------------------------------------- bounds and eviction


def test_data_that_outgrows_memory_spills_to_disk_and_is_still_found():
    cache = MemoryCache(max_bytes=3 * 2 * ROW_BYTES_FLOAT32 + 2000, block_rows=2)
    texts = texts_named("c", 20)
    encodings = fake_encodings(texts)
    for start in range(0, 20, 4):
        chunk = slice(start, start + 4)
        cache.store(
            "ns",
            texts[chunk],
            encodings._replace(
                summaries=encodings.summaries[chunk],
                pooler=encodings.pooler[chunk],
                n_tokens=encodings.n_tokens[chunk],
                truncated=encodings.truncated[chunk],
            ),
            storage_dtype="float32",
        )
    info = cache.info()
    assert info["entries"] == 20
    assert info["spilled_entries"] >= 12
    assert info["bytes"] <= info["max_bytes"]

    found, got = cache.lookup("ns", texts, (0, 3))
    assert found.all()
    np.testing.assert_array_equal(got.summaries, encodings.summaries[:, :, [0, 3]])
    np.testing.assert_array_equal(got.pooler, encodings.pooler)
    assert cache.info()["misses"] == 0


def test_without_a_spill_file_the_least_recently_used_blocks_go_first():
    # Room for two blocks of two texts: storing a third block evicts the oldest unused.
    cache = MemoryCache(max_bytes=2 * 2 * ROW_BYTES_FLOAT32 + 1000, max_spill_bytes=0, block_rows=2)
    blocks = {name: texts_named(name, 2) for name in ("old", "used", "new")}
    cache.store("ns", blocks["old"], fake_encodings(blocks["old"]), storage_dtype="float32")
    cache.store("ns", blocks["used"], fake_encodings(blocks["used"]), storage_dtype="float32")
    cache.lookup("ns", blocks["old"], (0,))  # now "used" is the least recently used
    cache.store("ns", blocks["new"], fake_encodings(blocks["new"]), storage_dtype="float32")

    assert cache.lookup("ns", blocks["old"], (0,))[0].all()
    assert not cache.lookup("ns", blocks["used"], (0,))[0].any()
    assert cache.lookup("ns", blocks["new"], (0,))[0].all()
    assert cache.info()["bytes"] <= cache.info()["max_bytes"]


def test_a_batch_larger_than_the_cache_keeps_its_most_recent_texts():
    cache = MemoryCache(max_bytes=3 * 2 * ROW_BYTES_FLOAT32 + 3000, max_spill_bytes=0, block_rows=2)
    texts = texts_named("d", 30)
    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    found, _ = cache.lookup("ns", texts, (0,))
    assert 0 < found.sum() < len(texts)
    assert found[-found.sum() :].all()  # the latest texts stayed, not none of them


def test_the_spill_file_is_bounded_too():
    cache = MemoryCache(
        max_bytes=2 * ROW_BYTES_FLOAT32 + 1000,
        max_spill_bytes=4 * ROW_BYTES_FLOAT32,
        block_rows=2,
    )
    texts = texts_named("e", 20)
    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    info = cache.info()
    assert info["spill_bytes"] <= 4 * ROW_BYTES_FLOAT32
    assert info["entries"] == 6  # one block in RAM, two spilled
    assert cache.lookup("ns", texts[-6:], (0,))[0].all()


def test_writing_turns_a_re_lookup_into_hits_not_second_misses():
    cache = MemoryCache()
    texts = texts_named("f", 4)
    cache.lookup("ns", texts, (0,))
    with cache.writing("ns"):
        cache.store("ns", texts[:1], fake_encodings(texts[:1]))  # "another worker" wrote one
        found, _ = cache.lookup("ns", texts, (0,))
    assert found.sum() == 1
    assert (cache.info()["hits"], cache.info()["misses"]) == (1, 3)


# ---------------------------------------------------------------------- through the vectorizer


def test_set_cache_limit_zero_turns_memory_caching_off(vectorizer):
    texts = generated_sentences(12, seed=20)
    set_cache_limit(0)
    vectorizer.fit(texts).transform(texts)
    vectorizer.transform(texts)
    info = cache_info()
    assert (info["entries"], info["hits"], info["misses"]) == (0, 0, 2 * len(set(texts)))


def test_set_cache_limit_rejects_bad_values():
    with pytest.raises(ValueError, match="Got max_bytes=-1 but expected an integer >= 0."):
        set_cache_limit(-1)
    with pytest.raises(ValueError, match="Got max_spill_bytes=1.5 but expected an integer"):
        set_cache_limit(10, max_spill_bytes=1.5)


def test_when_texts_outgrow_memory_they_spill_and_are_encoded_once(vectorizer):
    texts = generated_sentences(200, seed=21)
    uncached = clone(vectorizer).set_params(embedding_cache=None).fit(texts)
    expected_mean = uncached.transform(texts)
    expected_max = clone(uncached).set_params(pooling="max").fit([]).transform(texts)
    set_cache_limit(60_000)  # about 50 tiny-model texts in RAM
    vectorizer.fit(texts)
    first = vectorizer.transform(texts)
    second = clone(vectorizer).set_params(pooling="max").fit([]).transform(texts)
    info = cache_info()
    assert info["misses"] == len(set(texts))
    assert info["spilled_entries"] > len(set(texts)) // 2
    assert info["bytes"] <= 60_000
    np.testing.assert_array_equal(first, expected_mean)
    # Every text read back, most of them from the spill file: float32, kept exactly.
    np.testing.assert_array_equal(second, expected_max)


def test_without_spill_texts_that_outgrow_memory_miss_again(vectorizer):
    texts = generated_sentences(200, seed=22)
    set_cache_limit(60_000, max_spill_bytes=0)
    vectorizer.fit(texts).transform(texts)
    after_first = cache_info()
    vectorizer.transform(texts)
    info = cache_info()
    assert 0 < after_first["entries"] < len(set(texts))
    assert info["misses"] > after_first["misses"]  # evicted texts were encoded again
    assert info["hits"] > 0  # the most recent ones were kept


def test_float32_passes_are_cached_exactly(vectorizer):
    texts = generated_sentences(30, seed=23)
    defaults = clone(vectorizer)
    fresh = clone(defaults).set_params(embedding_cache=None).fit(texts).transform(texts)
    vectorizer.set_params(layers=(-1, -2), pooling=["cls", "mean", "max"]).fit(texts)
    vectorizer.transform(texts[:10])
    cached = vectorizer.transform(texts)  # 10 texts read back, 20 encoded
    uncached = clone(vectorizer).set_params(embedding_cache=None).fit([]).transform(texts)
    np.testing.assert_array_equal(cached, uncached)
    # The float32 pass itself, not a float16 rounding of it: hardly any value (about 1 in
    # 8,192 at random) equals its float16 rounding.
    assert np.mean(rounded_as_stored(cached) == cached) < 0.01
    # The default settings read from the same entries: exactly what they compute uncached.
    info = cache_info()
    np.testing.assert_array_equal(defaults.fit([]).transform(texts), fresh)
    assert cache_info()["hits"] - info["hits"] == len(set(texts))


def test_reduced_precision_passes_are_cached_within_the_float16_bound(vectorizer):
    texts = generated_sentences(30, seed=24)
    vectorizer.set_params(dtype="bfloat16", pooling=["cls", "mean", "max"]).fit(texts)
    first = vectorizer.transform(texts)  # encoded, built from the stored precision
    again = vectorizer.transform(texts)  # every text from the cache
    uncached = clone(vectorizer).set_params(embedding_cache=None).fit([]).transform(texts)

    np.testing.assert_array_equal(again, first)
    relative = np.abs(again - uncached) / np.maximum(np.abs(uncached), 1e-6)
    assert relative.max() <= FLOAT16_RELATIVE_BOUND
    cosine = (again * uncached).sum(1) / np.linalg.norm(again, axis=1)
    cosine /= np.linalg.norm(uncached, axis=1)
    assert cosine.min() > 1 - 1e-6


def test_a_disk_cache_is_read_by_another_process(vectorizer, tmp_path, tiny_albert_path):
    texts = generated_sentences(15, seed=25)
    vectorizer.set_params(embedding_cache=str(tmp_path)).fit(texts)
    expected = vectorizer.transform(texts)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from sklearn_albert import AlbertVectorizer, cache_info
        texts = {texts!r}
        vect = AlbertVectorizer({str(tiny_albert_path)!r}, dtype="float32",
                                embedding_cache={str(tmp_path)!r}).fit(texts)
        features = vect.transform(texts)
        same = bool(np.array_equal(features, np.load({str(tmp_path / "expected.npy")!r})))
        print(json.dumps({{"same": same, **cache_info({str(tmp_path)!r})}}))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    info = json.loads(completed.stdout.strip().splitlines()[-1])
    assert info["same"]
    assert (info["hits"], info["misses"]) == (len(texts), 0)  # the child encoded nothing
    assert info["writes"] == info["entries"] == len(texts)


def test_grid_search_with_two_jobs_and_a_disk_cache_encodes_each_text_once(vectorizer, tmp_path):
    texts, labels = texts_labelled_by_their_last_word(48)
    pipe = Pipeline(
        [("vect", vectorizer.set_params(embedding_cache=str(tmp_path))), ("clf", RidgeClassifier())]
    )
    grid = {"vect__pooling": ["cls", "mean"], "vect__layers": [-1, -2], "clf__alpha": [1, 10]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(texts, labels)
    info = cache_info(tmp_path)
    # The workers' shared cache changed no candidate's score: each scored on its own,
    # uncached, gives the same winner.
    uncached = clone(pipe).set_params(vect__embedding_cache=None)
    best_params, best_score = best_candidate(uncached, grid, texts, labels, cv=3)
    assert search.best_params_ == best_params
    assert search.best_score_ == pytest.approx(best_score, abs=1e-12)
    # Every process together wrote each distinct text once: none was encoded twice.
    assert info["entries"] == info["writes"] == len(set(texts))


# ---------------------------------------------------------------------- processes, directly


def _writer(folder, texts, result_path, use_writing):
    """Store ``texts`` the way the vectorizer does; write down how many this process encoded."""
    cache = DiskCache(folder)
    encoded = 0
    for start in range(0, len(texts), 7):
        chunk = texts[start : start + 7]
        found, _ = cache.lookup("ns", chunk, (0,))
        missing = [text for text, hit in zip(chunk, found) if not hit]
        if not missing:
            continue
        context = cache.writing("ns") if use_writing else _no_context()
        with context:
            if use_writing:
                found, _ = cache.lookup("ns", missing, (0,))
                missing = [text for text, hit in zip(missing, found) if not hit]
            encoded += len(missing)
            if missing:  # the other process may have written them all while this one waited
                cache.store("ns", missing, fake_encodings(missing), storage_dtype="float32")
    Path(result_path).write_text(str(encoded))


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


@pytest.mark.parametrize("use_writing", [True, False])
def test_two_processes_writing_at_once_lose_nothing(tmp_path, use_writing):
    shared = texts_named("shared", 150)
    texts_a = shared + texts_named("only a", 40)
    texts_b = list(reversed(shared)) + texts_named("only b", 40)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_writer, args=(tmp_path, texts, tmp_path / f"{name}.txt", use_writing)
        )
        for name, texts in (("a", texts_a), ("b", texts_b))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0

    everything = sorted(set(texts_a) | set(texts_b))
    cache = DiskCache(tmp_path)
    found, got = cache.lookup("ns", everything, tuple(range(N_HIDDEN_STATES)))
    expected = fake_encodings(everything)
    assert found.all()
    np.testing.assert_array_equal(got.summaries, expected.summaries)
    np.testing.assert_array_equal(got.pooler, expected.pooler)
    np.testing.assert_array_equal(got.n_tokens, expected.n_tokens)
    info = cache.info()
    assert info["entries"] == len(everything)
    encoded = sum(int((tmp_path / f"{name}.txt").read_text()) for name in ("a", "b"))
    if use_writing:
        # Under the lock, a worker looks up again before encoding: no text twice.
        assert encoded == info["writes"] == len(everything)
    else:
        assert encoded == info["writes"] >= len(everything)


def test_a_partial_index_record_left_by_a_dead_writer_is_ignored_and_overwritten(tmp_path):
    cache = DiskCache(tmp_path)
    cache.store("ns", ["a"], fake_encodings(["a"]), storage_dtype="float32")
    index = next((tmp_path / "sklearn_albert_cache").glob("*/index.bin"))
    with open(index, "ab") as handle:
        handle.write(b"\x01" * 11)  # a record cut short

    reader = DiskCache(tmp_path)
    assert reader.lookup("ns", ["a"], (0,))[0].all()
    reader.store("ns", ["b"], fake_encodings(["b"]), storage_dtype="float32")
    found, got = DiskCache(tmp_path).lookup("ns", ["a", "b"], (1,))
    assert found.all()
    np.testing.assert_array_equal(got.summaries, fake_encodings(["a", "b"]).summaries[:, :, [1]])


def test_embedding_cache_for_gives_one_object_per_folder(tmp_path):
    assert embedding_cache_for(None) is None
    assert embedding_cache_for("memory") is embedding_cache_for("memory")
    assert embedding_cache_for(tmp_path) is embedding_cache_for(str(tmp_path))
    with pytest.raises(ValueError, match="Got embedding_cache=None"):
        cache_info(None)


@pytest.mark.parametrize("cache_kind", ["memory", "disk"])
def test_lookup_of_some_kinds_equals_the_full_lookup_for_those_kinds(cache_kind, tmp_path):
    cache = MemoryCache() if cache_kind == "memory" else DiskCache(tmp_path)
    texts = texts_named("g", 9)
    cache.store("ns", texts, fake_encodings(texts), storage_dtype="float32")
    _, full = cache.lookup("ns", texts, (1, 3))
    _, some = cache.lookup("ns", texts, (1, 3), kinds={"max", "pooler"})
    np.testing.assert_array_equal(some.summaries[:, 2], full.summaries[:, 2])
    np.testing.assert_array_equal(some.pooler, full.pooler)
    with pytest.raises(ValueError, match=re.escape("Got kinds=['sum'] but expected a subset")):
        cache.lookup("ns", texts, (1,), kinds={"sum"})


def edge_values(shape, seed=0):
    """float32 values that stress a float16 rounding: halfway cases, subnormals, -0, overflow."""
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 5, shape)).astype(np.float32)
    flat = values.reshape(-1)
    halfway = np.float32(1.0) + np.float32(2.0**-11)  # exactly between two float16 values
    specials = [halfway, -halfway, 2.0**-24, 2.0**-25, 3 * 2.0**-26, -0.0, 65504.0, 65520.0]
    flat[: len(specials)] = specials
    return values


def test_torch_and_numpy_float16_conversions_give_the_same_bits():
    import torch  # noqa: F401 - loaded, so cast goes through torch

    from sklearn_albert._cache._layout import cast, fits_float16

    values = edge_values((6, 3, 13, 64))
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    got = cast(values, np.float16)
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))
    back = cast(got, np.float32)
    np.testing.assert_array_equal(back.view(np.uint32), expected.astype(np.float32).view(np.uint32))
    columns = np.moveaxis(got, 0, 2).reshape(3 * 13, 6, 64)
    np.testing.assert_array_equal(fits_float16(columns), np.isfinite(columns).all(axis=(0, 2)))


def test_rounded_as_stored_gives_the_bits_the_cache_returns():
    """What the engine rounds where it encodes equals what a store and lookup give back."""
    import torch

    values = edge_values((5, 3, 13, 64), seed=1)
    values[2, 0, 0, 0] = 1e6  # beyond float16: this row stays unrounded, and is not kept
    values[3, 1, 2, 3] = np.nan  # NaN: this row too
    pooler = edge_values((5, 64), seed=2)
    texts = texts_named("r", 5)
    encodings = fake_encodings(texts)._replace(summaries=values, pooler=pooler)
    cache = MemoryCache()
    cache.store("ns", texts, encodings)
    found, kept = cache.lookup("ns", texts, tuple(range(13)))
    # Row 0 holds 65520 (edge_values), which rounds to inf in float16: not kept either.
    np.testing.assert_array_equal(found, [False, True, False, False, True])

    on_device = rounded_as_stored(torch.from_numpy(values))  # a tensor, as in the engine
    from_numpy = rounded_as_stored(values)
    assert isinstance(on_device, torch.Tensor) and isinstance(from_numpy, np.ndarray)
    for got in (on_device.numpy(), from_numpy):
        np.testing.assert_array_equal(got[found].view(np.uint32), kept.summaries.view(np.uint32))
        np.testing.assert_array_equal(got[~found].view(np.uint32), values[~found].view(np.uint32))
    np.testing.assert_array_equal(
        rounded_as_stored(pooler)[found].view(np.uint32), kept.pooler.view(np.uint32)
    )
    np.testing.assert_array_equal(rounded_as_stored(encodings.summaries), from_numpy)


@pytest.mark.parametrize("cache_kind", ["memory", "disk"])
def test_a_rounded_batch_is_float16_in_the_cache_layout_and_stores_the_same(cache_kind, tmp_path):
    """The engine's float16 hand-over: the values of rounded_as_stored, stored alike."""
    import torch

    from sklearn_albert._cache import rounded_batch

    values = edge_values((6, 3, 13, 64), seed=3)
    values.flat[7] = 1.0  # edge_values's 65520 would round beyond float16's range
    pooler = edge_values((6, 64), seed=4)
    pooler.flat[7] = 1.0
    summaries, pooled = rounded_batch(torch.from_numpy(values), torch.from_numpy(pooler))

    assert summaries.dtype == pooled.dtype == torch.float16
    assert summaries.shape == values.shape
    assert summaries.permute(1, 2, 0, 3).is_contiguous()  # the cache's columns, in memory
    expected = rounded_as_stored(values)
    np.testing.assert_array_equal(summaries.float().numpy(), expected)
    np.testing.assert_array_equal(pooled.float().numpy(), rounded_as_stored(pooler))

    texts = texts_named("h", 6)
    half = fake_encodings(texts)._replace(summaries=summaries.numpy(), pooler=pooled.numpy())
    rounded = fake_encodings(texts)._replace(summaries=expected, pooler=rounded_as_stored(pooler))
    stores = []
    for name, encodings in (("half", half), ("rounded", rounded)):
        cache = MemoryCache() if cache_kind == "memory" else DiskCache(tmp_path / name)
        cache.store("ns", texts, encodings)
        stores.append(cache.lookup("ns", texts, tuple(range(13))))
    (found_half, kept_half), (found_rounded, kept_rounded) = stores
    assert found_half.all() and found_rounded.all()
    np.testing.assert_array_equal(kept_half.summaries, kept_rounded.summaries)
    np.testing.assert_array_equal(kept_half.pooler, kept_rounded.pooler)
    np.testing.assert_array_equal(kept_half.summaries, expected)


@pytest.mark.parametrize("where", ["summaries", "pooler"])
def test_a_rounded_batch_with_a_value_beyond_float16_is_rounded_float32(where):
    import torch

    from sklearn_albert._cache import rounded_batch

    values = edge_values((4, 3, 13, 64), seed=5)
    values.flat[7] = 1.0  # only the value set below is beyond float16's range
    pooler = np.ones((4, 64), dtype=np.float32)
    (values if where == "summaries" else pooler)[1].flat[5] = 1e6

    summaries, pooled = rounded_batch(torch.from_numpy(values), torch.from_numpy(pooler))

    assert summaries.dtype == pooled.dtype == torch.float32
    np.testing.assert_array_equal(summaries.numpy(), rounded_as_stored(values))
    np.testing.assert_array_equal(pooled.numpy(), rounded_as_stored(pooler))
