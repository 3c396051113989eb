"""``truncate_dim``: Matryoshka vectors, cut from the cached full vectors."""

import pickle
import re

import numpy as np
import pytest
from _tiny_model import generated_sentences, mean_pooling_sentence_transformer
from conftest import best_candidate
from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_albert import AlbertVectorizer, cache_info, skops_trusted_types

TEXTS = ["a great film", "a dull and boring film", "", "the plot is very clever"]


def test_the_first_dimensions_are_kept(vectorizer):
    full = clone(vectorizer).fit([]).transform(TEXTS)

    cut = vectorizer.set_params(truncate_dim=5).fit([]).transform(TEXTS)

    np.testing.assert_array_equal(cut, full[:, :5])
    assert cut.dtype == np.float32 and cut.flags.c_contiguous
    assert vectorizer.n_features_out_ == 5
    assert vectorizer.get_feature_names_out().tolist() == [f"albertvectorizer{i}" for i in range(5)]


def test_with_normalize_the_cut_vector_is_normalised_again(vectorizer):
    full = clone(vectorizer).fit([]).transform(TEXTS[:2])

    cut = vectorizer.set_params(truncate_dim=6, normalize=True).fit([]).transform(TEXTS[:2])

    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, rtol=1e-6)
    expected = full[:, :6] / np.linalg.norm(full[:, :6], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, rtol=1e-6)


def test_matches_sentence_transformers_truncate_dim(vectorizer, tiny_albert_path):
    pytest.importorskip("sentence_transformers")
    texts = generated_sentences(6, seed=51)
    reference = mean_pooling_sentence_transformer(tiny_albert_path)
    expected = reference.encode(texts, truncate_dim=7)

    features = vectorizer.set_params(truncate_dim=7).fit([]).transform(texts)

    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_it_cuts_the_concatenated_vector(vectorizer):
    full = clone(vectorizer).set_params(pooling=["mean", "max"]).fit([])
    width = full.n_features_out_
    cut = vectorizer.set_params(pooling=["mean", "max"], truncate_dim=width - 3).fit([])
    np.testing.assert_array_equal(cut.transform(TEXTS), full.transform(TEXTS)[:, :-3])


def test_a_width_beyond_the_vectors_is_refused_at_fit_with_the_range(vectorizer):
    width = clone(vectorizer).fit([]).n_features_out_
    vectorizer.set_params(truncate_dim=width + 1)
    message = (
        f"Got truncate_dim={width + 1} but this vectorizer's vectors have {width} "
        "dimensions (the checkpoint's width with this pooling and layers). Use an int in "
        f"[1, {width}], or None to keep them all."
    )
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        vectorizer.fit([])
    for bad in (0, 2.5, "8"):
        with pytest.raises(InvalidParameterError, match="The 'truncate_dim' parameter"):
            clone(vectorizer).set_params(truncate_dim=bad).fit([])


def test_a_grid_over_truncate_dim_encodes_each_text_once(vectorizer):
    texts = generated_sentences(30, seed=52)
    labels = [i % 2 for i in range(30)]
    pipe = Pipeline([("vect", vectorizer), ("clf", RidgeClassifier())])
    grid = {"vect__truncate_dim": [4, None], "vect__normalize": [False, True]}

    search = GridSearchCV(pipe, grid, cv=3).fit(texts, labels)

    info = cache_info()
    assert info["misses"] == info["entries"] == len(set(texts))
    # The cache changed no score: each candidate scored on its own, uncached, agrees.
    uncached = clone(pipe).set_params(vect__embedding_cache=None)
    best_params, best_score = best_candidate(uncached, grid, texts, labels, cv=3)
    assert search.best_params_ == best_params
    assert search.best_score_ == pytest.approx(best_score, abs=1e-12)


def test_truncate_dim_survives_pickle_save_load_and_skops(vectorizer, tmp_path):
    fitted = vectorizer.set_params(truncate_dim=9, normalize=True).fit(TEXTS)
    expected = fitted.transform(TEXTS)
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    sio.dump(fitted, tmp_path / "vect.skops")

    restored = [
        pickle.loads(pickle.dumps(fitted)),
        AlbertVectorizer.load(fitted.save(tmp_path / "vect")),
        sio.load(tmp_path / "vect.skops", trusted=skops_trusted_types()),
    ]

    for copy in restored:
        assert copy.truncate_dim == 9 and copy.n_features_out_ == 9
        assert copy.settings_ == fitted.settings_
        np.testing.assert_array_equal(copy.transform(TEXTS), expected)
