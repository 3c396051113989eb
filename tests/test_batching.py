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
