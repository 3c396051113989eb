"""Settings resolved once in fit: what transform reads, and the options refused there."""

import os
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_albert import AlbertVectorizer

TEXTS = ["the good film", "a bad movie", "i love this very moving story and its music"]


def test_parameters_changed_after_fit_apply_from_the_next_fit(vectorizer):
    fitted = vectorizer.fit(TEXTS)
    expected = fitted.transform(TEXTS)
    fitted.set_params(pooling=["mean", "max"], layers=(-1, -2), long_text="chunk", stride=10**6)

    with pytest.warns(
        UserWarning, match=re.escape("Parameters changed since fit (pooling: 'mean'")
    ):
        features = fitted.transform(TEXTS)

    np.testing.assert_array_equal(features, expected)
    assert features.shape == (len(TEXTS), fitted.n_features_out_)
    with pytest.raises(InvalidParameterError, match="Got stride=1000000"):
        fitted.fit(TEXTS)  # validated where it is applied
    refitted = fitted.set_params(stride=4).fit(TEXTS)
    features = refitted.transform(TEXTS)
    assert features.shape == (len(TEXTS), 2 * refitted.hidden_size_)
    # Nothing of the first fit lingers: the same as an estimator built with these parameters.
    np.testing.assert_array_equal(features, clone(refitted).fit(TEXTS).transform(TEXTS))
    assert not np.allclose(features[:, : refitted.hidden_size_], expected)  # layers did change


def test_batch_budgets_pace_the_work_and_apply_at_once(vectorizer):
    fitted = vectorizer.fit(TEXTS)
    expected = fitted.transform(TEXTS)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features = fitted.set_params(batch_size=1, max_tokens_per_batch=8).transform(TEXTS)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter"):
        fitted.set_params(batch_size=0).transform(TEXTS)


def test_the_settings_name_a_cache_namespace_only_forward_options_change(vectorizer):
    base = clone(vectorizer).fit(TEXTS)._cache_namespace()
    pooled = clone(vectorizer).set_params(pooling="max", layers=(0, -1), normalize=True)
    shorter = clone(vectorizer).set_params(max_length=8)
    assert pooled.fit(TEXTS)._cache_namespace() == base
    assert shorter.fit(TEXTS)._cache_namespace() != base


@pytest.mark.parametrize("value", ["Memory", "MEMORY", "none", "disk"])
def test_a_misspelt_cache_option_is_refused_and_creates_no_folder(
    vectorizer, tmp_path, monkeypatch, value
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidParameterError, match=re.escape(f"embedding_cache={value!r}")):
        vectorizer.set_params(embedding_cache=value).fit(TEXTS)
    assert os.listdir(tmp_path) == []


def test_a_cache_folder_path_is_accepted(vectorizer, tmp_path):
    vectorizer.set_params(embedding_cache=str(tmp_path / "Memory")).fit(TEXTS).transform(TEXTS)
    assert (tmp_path / "Memory").is_dir()


def test_settings_are_validated_against_the_checkpoint(tiny_albert_path):
    with pytest.raises(InvalidParameterError, match="accepts at most 64 tokens"):
        AlbertVectorizer(str(tiny_albert_path), max_length=65).fit(TEXTS)
    with pytest.raises(InvalidParameterError, match=re.escape("in [-4, 3]")):
        AlbertVectorizer(str(tiny_albert_path), layers=(0, 5)).fit(TEXTS)
