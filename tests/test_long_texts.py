import warnings

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_albert._long_texts import merge_windows, split_into_windows

LONG = " ".join(["the moving story of a city river and its lovely garden"] * 30)


def test_windows_overlap_by_stride_and_cover_the_text():
    ids = list(range(25))
    windows = split_into_windows(ids, room=10, stride=3)
    assert windows[0] == list(range(10))
    assert windows[1][:3] == windows[0][-3:]
    assert windows[-1][-1] == 24
    assert all(len(window) == 10 for window in windows)
    assert set().union(*map(set, windows)) == set(ids)


def test_a_short_text_is_one_window():
    assert split_into_windows([1, 2], room=10, stride=3) == [[1, 2]]
    assert split_into_windows([], room=10, stride=3) == [[]]


def test_weighted_merge_weighs_windows_by_token_count():
    summaries = np.stack([np.zeros((3, 1, 2)), np.ones((3, 1, 2))]).astype(np.float32)
    merged, pooler = merge_windows(summaries, None, np.array([3, 1]), "weighted")
    np.testing.assert_allclose(merged, 0.25)
    assert pooler is None
    merged, _ = merge_windows(summaries, None, np.array([3, 1]), "mean")
    np.testing.assert_allclose(merged, 0.5)
    merged, _ = merge_windows(summaries, None, np.array([3, 1]), "max")
    np.testing.assert_allclose(merged, 1.0)


def test_a_text_that_fits_gets_the_same_vector_under_both_modes(vectorizer):
    texts = ["a short text", "another one", ""]
    truncated = vectorizer.fit(texts).transform(texts)
    chunked = vectorizer.set_params(long_text="chunk").fit(texts).transform(texts)
    np.testing.assert_array_equal(truncated, chunked)


@pytest.mark.parametrize("aggregation", ["mean", "max", "weighted"])
def test_chunking_merges_the_windows_encoded_one_by_one(vectorizer, tiny_albert_path, aggregation):
    vectorizer.set_params(
        long_text="chunk",
        max_length=16,
        stride=4,
        chunk_aggregation=aggregation,
        pooling=["cls", "mean", "max"],
    ).fit([LONG])
    loaded = vectorizer._ensure_loaded()
    content = loaded.tokenizer(LONG, add_special_tokens=False, verbose=False)["input_ids"]
    windows = split_into_windows(content, room=14, stride=4)
    assert len(windows) > 5
    per_window = np.vstack([_pooled_reference(loaded, window) for window in windows])
    weights = np.array([len(w) + 2 for w in windows], dtype=float)
    if aggregation == "max":
        expected = per_window.max(axis=0)
    elif aggregation == "weighted":
        expected = weights @ per_window / weights.sum()
    else:
        expected = per_window.mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chunked texts are never reported as truncated
        features = vectorizer.transform([LONG])
    np.testing.assert_allclose(features[0], expected, atol=2e-5)


def _pooled_reference(loaded, window):
    """cls, mean and max of the last layer for one window, straight from the model."""
    ids = torch.tensor([[*loaded.special_prefix, *window, *loaded.special_suffix]])
    with torch.no_grad():
        last = loaded.model(input_ids=ids).last_hidden_state[0]
    return np.hstack([last[0].numpy(), last.mean(0).numpy(), last.amax(0).numpy()])


def test_chunked_long_texts_are_batched_with_short_ones(vectorizer):
    texts = [LONG, "short", LONG + " again", "tiny"]
    vectorizer.set_params(long_text="chunk", max_length=16, stride=4, batch_size=3).fit(texts)
    together = vectorizer.set_params(embedding_cache=None).transform(texts)
    alone = np.vstack([vectorizer.transform([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_truncation_is_reported_and_chunking_is_not(vectorizer):
    vectorizer.fit([LONG])  # the model's limit: a max_length set on purpose does not warn
    with pytest.warns(UserWarning, match="were truncated"):
        vectorizer.transform([LONG])
    assert vectorizer.n_truncated_ == 1


def test_a_stride_as_wide_as_the_window_is_refused(vectorizer):
    with pytest.raises(
        InvalidParameterError, match="Got stride=14 but a window holds only 14 text tokens"
    ):
        vectorizer.set_params(long_text="chunk", max_length=16, stride=14).fit([LONG])


def test_in_reduced_precision_chunked_texts_give_what_the_cache_gives_later(vectorizer):
    # Windows arrive as float16 in the cache's layout; merging them runs in float32 and
    # is rounded again, so the first transform equals every later one, read from the cache.
    texts = [LONG, "short", LONG + " again"]
    vectorizer.set_params(
        dtype="bfloat16", long_text="chunk", max_length=16, stride=4, pooling=["mean", "max"]
    ).fit(texts)
    first = vectorizer.transform(texts)
    again = vectorizer.transform(texts)

    assert first.dtype == np.float32
    np.testing.assert_array_equal(again, first)
