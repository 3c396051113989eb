"""The engine: one forward pass for every caller, one out-of-memory backoff, input order."""

import threading

import numpy as np
import pytest
import torch
from _tiny_model import generated_sentences
from sklearn.base import clone

import sklearn_albert._engine as engine
from sklearn_albert import AlbertClassifier, cache_info


def _failing_above(limit, error_factory, calls):
    real_forward = engine.forward

    def forward(runner, input_ids, attention_mask, compute_dtype, step):
        calls.append(len(input_ids))
        if len(input_ids) > limit:
            raise error_factory()
        return real_forward(runner, input_ids, attention_mask, compute_dtype, step)

    return forward


def real_cpu_allocation_failure():
    """The error PyTorch's CPU allocator raises when memory runs out (a real one)."""
    try:
        torch.empty(1 << 62, dtype=torch.uint8)
    except RuntimeError as error:
        return error
    raise AssertionError("allocating 4 EiB unexpectedly succeeded")


def test_the_cpu_allocators_error_counts_as_out_of_memory():
    error = real_cpu_allocation_failure()
    assert "out of memory" not in str(error).lower()  # why a substring match was not enough
    assert engine.is_out_of_memory(error)
    assert not engine.is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_out_of_memory_halves_the_batch_and_loses_nothing(vectorizer, monkeypatch, caplog, kind):
    texts = generated_sentences(40, seed=2)
    expected = vectorizer.set_params(embedding_cache=None).fit(texts).transform(texts)
    calls = []
    # Batches filled to batch_size, as on a GPU, not cut by padding: the sizes below follow.
    monkeypatch.setattr(engine, "CPU_BATCH_COST", None)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_UNPADDED", "0")  # ALBERT's padded batches
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    error = (lambda: oom("injected")) if kind == "cuda" else real_cpu_allocation_failure
    monkeypatch.setattr(engine, "forward", _failing_above(5, error, calls))
    with caplog.at_level("WARNING", logger="sklearn_albert"):
        features = vectorizer.set_params(batch_size=16).fit(texts).transform(texts)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    # Halved until it fits (batches may run side by side on CPU streams, so calls of
    # several batches interleave): every text ran once, in batches of 4.
    assert 16 in calls and 8 in calls
    assert all(size in (16, 8, 4) for size in calls)
    assert sum(size for size in calls if size <= 5) == len(texts)
    assert "Out of memory on a batch of 16 texts" in caplog.text


def test_token_vectors_and_classifier_predictions_back_off_too(
    vectorizer, tiny_albert_path, monkeypatch
):
    texts = generated_sentences(24, seed=3)
    vectorizer.set_params(batch_size=16).fit(texts)
    expected = vectorizer.transform_tokens(texts)
    classifier = AlbertClassifier(
        str(tiny_albert_path), epochs=1, batch_size=16, dtype="float32", random_state=0
    ).fit(texts, [i % 2 for i in range(len(texts))])
    expected_proba = classifier.predict_proba(texts)
    calls = []
    monkeypatch.setattr(engine, "CPU_BATCH_COST", None)  # batches filled to batch_size
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_UNPADDED", "0")  # ALBERT's padded batches
    monkeypatch.setattr(engine, "forward", _failing_above(5, real_cpu_allocation_failure, calls))

    records = vectorizer.transform_tokens(texts)
    proba = classifier.predict_proba(texts)

    for record, reference in zip(records, expected):
        np.testing.assert_allclose(record.embeddings, reference.embeddings, atol=1e-5)
    np.testing.assert_allclose(proba, expected_proba, atol=1e-5)
    # Each caller's first batch of 16 failed and was split: both run the one engine loop.
    assert calls.count(16) == 2 and all(size <= 8 for size in calls if size != 16)


def test_other_errors_propagate_and_the_vectorizer_stays_usable(vectorizer, monkeypatch):
    texts = generated_sentences(20, seed=4)
    vectorizer.set_params(batch_size=4).fit(texts)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_UNPADDED", "0")  # batches of 4, padded
    expected = clone(vectorizer).set_params(embedding_cache=None).fit([]).transform(texts)
    calls = []
    monkeypatch.setattr(
        engine, "forward", _failing_above(3, lambda: RuntimeError("injected failure"), calls)
    )
    with pytest.raises(RuntimeError, match="injected failure"):
        vectorizer.transform(texts)
    monkeypatch.undo()
    assert calls and all(size == 4 for size in calls)  # raised as is, not halved and retried
    assert cache_info()["entries"] == 0  # no batch finished before the failure

    first = vectorizer.transform(texts)
    again = vectorizer.transform(texts)

    # Encoded once, then read back: both equal what an estimator that never failed gives.
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)
    n_distinct = len(set(texts))
    assert (cache_info()["misses"], cache_info()["hits"]) == (2 * n_distinct, n_distinct)


def texts_of_distinct_lengths(n, seed):
    """``n`` texts of 1 to ``n`` words (prefixes of one word sequence): no two token counts tie."""
    words = " ".join(generated_sentences(3 * n, seed=seed)).split()
    return [" ".join(words[:k]) for k in range(1, n + 1)]


@pytest.mark.parametrize("streams", ["1", None])
def test_batches_finished_before_a_failure_stay_cached(vectorizer, monkeypatch, streams):
    if streams is not None:  # one batch at a time; by default, batches side by side
        monkeypatch.setenv("SKLEARN_ALBERT_CPU_STREAMS", streams)
    texts = texts_of_distinct_lengths(24, seed=6)
    vectorizer.set_params(batch_size=4).fit(texts)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_UNPADDED", "0")  # batches of 4, padded
    expected = clone(vectorizer).set_params(embedding_cache=None).fit([]).transform(texts)
    lengths = vectorizer.count_tokens(texts)
    assert len(set(lengths.tolist())) == len(texts)  # a batch's longest text names the batch
    # The engine's plan: longest texts first, four per batch. The third batch fails, wherever
    # it runs and whenever the others finish.
    plan = [np.argsort(-lengths)[start : start + 4] for start in range(0, len(texts), 4)]
    failing_longest = int(lengths[plan[2][0]])
    encoded, state = [], {"fail": True}
    real_forward = engine.forward

    def forward(runner, input_ids, attention_mask, compute_dtype, step):
        batch_lengths = attention_mask.sum(dim=1).tolist()
        if state["fail"] and max(batch_lengths) == failing_longest:
            raise RuntimeError("injected failure")
        encoded.extend(batch_lengths)
        return real_forward(runner, input_ids, attention_mask, compute_dtype, step)

    monkeypatch.setattr(engine, "forward", forward)
    with pytest.raises(RuntimeError, match="injected failure"):
        vectorizer.transform(texts)
    state["fail"] = False

    # Kept: exactly the two batches handed back before the failed one, as they were encoded.
    kept = np.sort(np.concatenate(plan[:2]))
    assert cache_info()["entries"] == len(kept)
    del encoded[:]
    before = cache_info()
    np.testing.assert_array_equal(vectorizer.transform([texts[i] for i in kept]), expected[kept])
    assert encoded == []
    assert cache_info()["hits"] - before["hits"] == len(kept)
    # The rest runs again, and only the rest.
    features = vectorizer.transform(texts)
    assert sorted(encoded) == sorted(int(lengths[i]) for batch in plan[2:] for i in batch)
    assert cache_info()["misses"] - before["misses"] == len(texts) - len(kept)
    # Four batches now, not six: on more cores each may get another thread count (the same
    # bits here, 2 cores; float32 round-off at most elsewhere).
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-6)


def test_tokenized_groups_cover_the_texts_in_order_one_group_at_a_time():
    class RecordingTokenizer:
        calls = []

        def __call__(self, texts, **kwargs):
            self.calls.append(list(texts))
            return {"input_ids": [[len(text)] for text in texts]}

    texts = [f"text {'x' * i}" for i in range(7)]
    tokenizer = RecordingTokenizer()

    groups = list(engine.tokenized_groups(tokenizer, texts, overlap=False, group_size=3))

    assert [start for start, _ in groups] == [0, 3, 6]
    assert [ids for _, ids in groups] == [
        [[len(t)] for t in texts[start : start + 3]] for start, _ in groups
    ]
    assert tokenizer.calls == [texts[0:3], texts[3:6], texts[6:7]]


@pytest.mark.filterwarnings("ignore:1 of 11 distinct texts:UserWarning")
@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_overlapped_group_tokenization_gives_the_same_features(vectorizer, monkeypatch, long_text):
    # The CUDA path (a worker tokenizes the next group) forced on CPU, with groups of 3.
    texts = generated_sentences(10, seed=8) + ["a long text " * 30]
    vectorizer.set_params(embedding_cache=None, long_text=long_text, max_length=24, stride=4)
    expected = vectorizer.fit(texts).transform(texts)
    threads = []
    real_tokenize, real_groups = engine.tokenize, engine.tokenized_groups

    def recording_tokenize(tokenizer, group):
        threads.append(threading.current_thread().name)
        return real_tokenize(tokenizer, group)

    def overlapped_groups(tokenizer, group_texts, *, overlap):
        return real_groups(tokenizer, group_texts, overlap=True, group_size=3)

    monkeypatch.setattr(engine, "tokenize", recording_tokenize)
    monkeypatch.setattr(engine, "tokenized_groups", overlapped_groups)
    features = vectorizer.transform(texts)

    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert len(threads) == 4  # 11 distinct texts in groups of 3
    assert all(name.startswith("sklearn_albert_tokenize") for name in threads)


def test_a_consumer_that_stops_early_leaves_no_tokenizing_worker():
    tokenizer = lambda texts, **kwargs: {"input_ids": [[1] for _ in texts]}  # noqa: E731
    groups = engine.tokenized_groups(tokenizer, list("abcdefg"), overlap=True, group_size=2)

    assert next(groups) == (0, [[1], [1]])
    groups.close()

    assert not [t for t in threading.enumerate() if t.name.startswith("sklearn_albert_tokenize")]
