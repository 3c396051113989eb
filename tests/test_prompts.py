"""``prompt``: an instruction before every text, as e5, bge, gte and nomic models expect."""

import pickle
import re
import warnings

import numpy as np
import pytest
from _tiny_model import generated_sentences, mean_pooling_sentence_transformer
from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_albert import AlbertVectorizer, cache_info, skops_trusted_types
from sklearn_albert._engine import cut_windows, tokenize

TEXTS = ["a great film", "a dull and boring film", "", "the plot is very clever"]
PROMPT = "query: "


def test_a_prompt_gives_the_vectors_of_the_prompted_texts(vectorizer):
    plain = clone(vectorizer).fit([]).transform([PROMPT + text for text in TEXTS])

    prompted = vectorizer.set_params(prompt=PROMPT).fit(TEXTS).transform(TEXTS)

    np.testing.assert_allclose(prompted, plain, atol=1e-6)
    assert vectorizer.settings_.prompt == PROMPT
    assert len(vectorizer.settings_.prompt_ids) > 0


def test_a_prompt_matches_sentence_transformers_prompt(vectorizer, tiny_albert_path):
    pytest.importorskip("sentence_transformers")
    texts = generated_sentences(10, seed=41)
    expected = mean_pooling_sentence_transformer(tiny_albert_path).encode(texts, prompt=PROMPT)

    features = vectorizer.set_params(prompt=PROMPT).fit(texts).transform(texts)

    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_prompted_and_plain_vectors_are_cached_apart(vectorizer):
    texts = generated_sentences(8, seed=42)
    uncached = clone(vectorizer).set_params(embedding_cache=None, prompt=PROMPT).fit([])
    plain = clone(vectorizer).fit([]).transform(texts)

    prompted = vectorizer.set_params(prompt=PROMPT).fit([]).transform(texts)
    prompted_again = clone(vectorizer).fit([]).transform(texts)

    assert not np.allclose(prompted, plain)
    np.testing.assert_array_equal(prompted, uncached.transform(texts))
    np.testing.assert_array_equal(prompted_again, prompted)
    info = cache_info()
    assert (info["misses"], info["hits"]) == (2 * len(set(texts)), len(set(texts)))


def test_the_prompts_tokens_count_towards_truncation(vectorizer):
    # The tiny model's max_length is 64; texts of 60 tokens fit alone, not with the prompt.
    tokens = clone(vectorizer).fit([]).count_tokens(["a " * 40])[0]
    text = "a " * (40 - (tokens - 62))
    plain = clone(vectorizer).fit([text])
    assert plain.count_tokens([text])[0] == 62 and plain.n_truncated_ == 0

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        prompted = vectorizer.set_params(prompt=PROMPT).fit([text, "short"])
        prompted.transform([text, "short"])

    n_prompt = len(prompted.settings_.prompt_ids)
    assert prompted.count_tokens([text, "short"])[0] == 62 + n_prompt
    assert prompted.find_truncated([text, "short"]).tolist() == [True, False]
    assert prompted.n_truncated_ == 1
    assert [str(w.message)[:41] for w in record if "truncated" in str(w.message)] == [
        "1 of 2 distinct texts are longer than max"
    ]
    assert not plain.find_truncated([text]).any()


def test_with_chunking_every_window_starts_with_the_prompt(vectorizer):
    vectorizer.set_params(prompt=PROMPT, long_text="chunk", max_length=16, stride=2).fit([])
    loaded, settings = vectorizer._ensure_loaded(), vectorizer.settings_
    long_text = " ".join(generated_sentences(6, seed=43))
    content = tokenize(loaded.tokenizer, [long_text, "short"])

    windows = cut_windows(content, loaded, settings)

    lead = [*loaded.special_prefix, *settings.prompt_ids]
    assert windows.n_windows.tolist()[0] > 2
    assert all(ids[: len(lead)] == lead for ids in windows.ids)
    assert all(len(ids) <= 16 for ids in windows.ids)
    # A text that fits one window gets the same vector chunked or truncated.
    short = vectorizer.transform(["short"])
    truncating = clone(vectorizer).set_params(long_text="truncate").fit([])
    np.testing.assert_allclose(short, truncating.transform(["short"]), atol=1e-6)


def test_token_vectors_see_the_prompt_but_return_the_texts_tokens_only(vectorizer):
    plain = clone(vectorizer).fit([]).transform_tokens(["the plot is clever"])[0]

    record = (
        vectorizer.set_params(prompt=PROMPT).fit([]).transform_tokens(["the plot is clever"])[0]
    )

    assert record.tokens == plain.tokens
    np.testing.assert_array_equal(record.offsets, plain.offsets)
    assert not np.allclose(record.embeddings, plain.embeddings)


def test_a_prompt_too_long_for_a_window_is_refused_at_fit(vectorizer):
    vectorizer.set_params(prompt="represent this sentence for searching: ", max_length=8)
    with pytest.raises(
        InvalidParameterError,
        match=re.escape("Got prompt='represent this sentence for searching: ', "),
    ) as error:
        vectorizer.fit([])
    assert "Use a shorter prompt or a larger max_length." in str(error.value)
    vectorizer.set_params(prompt=3)
    with pytest.raises(InvalidParameterError, match="The 'prompt' parameter"):
        vectorizer.fit([])


def test_an_empty_prompt_is_no_prompt(vectorizer):
    plain = clone(vectorizer).fit([]).transform(TEXTS)
    features = vectorizer.set_params(prompt="").fit([]).transform(TEXTS)
    np.testing.assert_array_equal(features, plain)
    assert cache_info()["misses"] == len(TEXTS)  # the same cache namespace


def test_grid_search_over_the_prompt(vectorizer):
    texts = generated_sentences(24, seed=44)
    labels = [i % 2 for i in range(24)]
    pipe = Pipeline([("vect", vectorizer), ("clf", RidgeClassifier())])
    search = GridSearchCV(pipe, {"vect__prompt": [None, PROMPT]}, cv=2).fit(texts, labels)
    assert search.best_params_["vect__prompt"] in (None, PROMPT)
    # Each text encoded once per prompt, whatever the folds.
    assert cache_info()["misses"] == 2 * len(set(texts))


def test_the_prompt_survives_pickle_save_load_and_skops(vectorizer, tmp_path):
    fitted = vectorizer.set_params(prompt=PROMPT).fit(TEXTS)
    expected = fitted.transform(TEXTS)
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    sio.dump(fitted, tmp_path / "vect.skops")

    restored = [
        pickle.loads(pickle.dumps(fitted)),
        AlbertVectorizer.load(fitted.save(tmp_path / "vect")),
        sio.load(tmp_path / "vect.skops", trusted=skops_trusted_types()),
    ]

    for copy in restored:
        assert copy.prompt == PROMPT
        assert copy.settings_ == fitted.settings_
        np.testing.assert_array_equal(copy.transform(TEXTS), expected)
