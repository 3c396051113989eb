import threading

import numpy as np
import pytest
import torch
from _tiny_model import generated_sentences

import sklearn_albert._batching as batching
from sklearn_albert import cache_info
from sklearn_albert._batching import collate, plan_batches


def test_batches_are_sorted_longest_first_and_respect_both_budgets():
    lengths = [5, 50, 7, 50, 3, 20, 20, 1]
    batches = plan_batches(lengths, batch_size=3, max_tokens=100)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100


def test_short_texts_fill_larger_batches_than_long_ones():
    lengths = [500] * 8 + [10] * 64
    sizes = [len(batch) for batch in plan_batches(lengths, batch_size=64, max_tokens=1000)]
    assert sizes[:4] == [2, 2, 2, 2]
    assert sizes[-1] == 64


def test_a_text_longer_than_the_token_budget_still_gets_a_batch():
    assert [len(b) for b in plan_batches([300, 2], batch_size=8, max_tokens=100)] == [1, 1]


def test_collate_pads_to_the_longest_text_of_the_batch():
    input_ids, mask = collate([[5, 6, 7], [8], [9, 9]], np.array([0, 1]), pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _failing_above(limit, error_factory, calls):
    real_run_model = batching.run_model

    def run_model(model, input_ids, attention_mask, compute_dtype):
        calls.append(len(input_ids))
        if len(input_ids) > limit:
            raise error_factory()
        return real_run_model(model, input_ids, attention_mask, compute_dtype)

    return run_model


def test_out_of_memory_halves_the_batch_and_loses_nothing(vectorizer, monkeypatch, caplog):
    texts = generated_sentences(40, seed=2)
    expected = vectorizer.set_params(embedding_cache=None).fit(texts).transform(texts)
    calls = []
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    monkeypatch.setattr(batching, "run_model", _failing_above(5, lambda: oom("injected"), calls))
    with caplog.at_level("WARNING", logger="sklearn_albert"):
        features = vectorizer.set_params(batch_size=16).transform(texts)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert calls[:3] == [16, 8, 4]  # halved until it fits, then the other halves
    assert "Out of memory on a batch of 16 texts" in caplog.text


def test_other_errors_propagate_and_the_vectorizer_stays_usable(vectorizer, monkeypatch):
    texts = generated_sentences(20, seed=4)
    vectorizer.fit(texts)
    calls = []
    monkeypatch.setattr(
        batching, "run_model", _failing_above(3, lambda: RuntimeError("injected failure"), calls)
    )
    with pytest.raises(RuntimeError, match="injected failure"):
        vectorizer.set_params(batch_size=4).transform(texts)
    monkeypatch.undo()
    first = vectorizer.transform(texts)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, vectorizer.transform(texts))


def test_batches_finished_before_a_failure_stay_cached(vectorizer, monkeypatch):
    texts = generated_sentences(30, seed=6)
    vectorizer.set_params(batch_size=4).fit(texts)
    state = {"batches": 0}
    real_run_model = batching.run_model

    def fail_on_third_batch(*args):
        state["batches"] += 1
        if state["batches"] == 3:
            raise RuntimeError("injected failure")
        return real_run_model(*args)

    monkeypatch.setattr(batching, "run_model", fail_on_third_batch)
    with pytest.raises(RuntimeError):
        vectorizer.transform(texts)
    assert cache_info()["entries"] == 8
    monkeypatch.undo()
    vectorizer.transform(texts)
    assert cache_info()["misses"] == len(set(texts)) + len(set(texts)) - 8


def test_tokenized_groups_cover_the_texts_in_order_one_group_at_a_time():
    class RecordingTokenizer:
        calls = []

        def __call__(self, texts, **kwargs):
            self.calls.append(list(texts))
            return {"input_ids": [[len(text)] for text in texts]}

    texts = [f"text {'x' * i}" for i in range(7)]
    tokenizer = RecordingTokenizer()

    groups = list(batching.tokenized_groups(tokenizer, texts, overlap=False, group_size=3))

    assert [group for group, _ in groups] == [texts[0:3], texts[3:6], texts[6:7]]
    assert [ids for _, ids in groups] == [[[len(t)] for t in group] for group, _ in groups]
    assert tokenizer.calls == [texts[0:3], texts[3:6], texts[6:7]]


@pytest.mark.filterwarnings("ignore:1 of 11 distinct texts:UserWarning")
@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_overlapped_group_tokenization_gives_the_same_features(vectorizer, monkeypatch, long_text):
    # The CUDA path (a worker tokenizes the next group) forced on CPU, with groups of 3.
    texts = generated_sentences(10, seed=8) + ["a long text " * 30]
    vectorizer.set_params(embedding_cache=None, long_text=long_text, max_length=24, stride=4)
    expected = vectorizer.fit(texts).transform(texts)
    threads = []
    real_tokenize, real_groups = batching.tokenize, batching.tokenized_groups

    def recording_tokenize(tokenizer, group):
        threads.append(threading.current_thread().name)
        return real_tokenize(tokenizer, group)

    def overlapped_groups(tokenizer, group_texts, *, overlap):
        return real_groups(tokenizer, group_texts, overlap=True, group_size=3)

    monkeypatch.setattr(batching, "tokenize", recording_tokenize)
    monkeypatch.setattr(batching, "tokenized_groups", overlapped_groups)
    features = vectorizer.transform(texts)

    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert len(threads) == 4  # 11 distinct texts in groups of 3
    assert all(name.startswith("sklearn_albert_tokenize") for name in threads)


def test_a_consumer_that_stops_early_leaves_no_tokenizing_worker():
    tokenizer = lambda texts, **kwargs: {"input_ids": [[1] for _ in texts]}  # noqa: E731
    groups = batching.tokenized_groups(tokenizer, list("abcdefg"), overlap=True, group_size=2)

    assert next(groups)[0] == ["a", "b"]
    groups.close()

    assert not [t for t in threading.enumerate() if t.name.startswith("sklearn_albert_tokenize")]
