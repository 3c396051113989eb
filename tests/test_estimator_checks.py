"""scikit-learn's estimator checks for every estimator, and their text versions.

The data-free checks come from one list (``conftest.data_free_checks``); the checks that
need data are written for text input in ``conftest.py`` and run here on each estimator.
"""

import numpy as np
import pytest
from _tiny_model import generated_sentences
from conftest import (
    check_feature_names_out,
    check_fit_check_is_fitted,
    check_fit_idempotent,
    check_pickle_equivalence,
    check_transform_changes_nothing,
    data_free_checks,
)

from sklearn_albert import AlbertClassifier, AlbertKeywordExtractor, AlbertVectorizer

TEXTS = generated_sentences(12, seed=11) + ["", "a text far longer than the limit " * 20]
LABELS = np.arange(len(TEXTS)) % 2


@pytest.mark.parametrize("check", data_free_checks(), ids=lambda check: check.__name__)
@pytest.mark.parametrize(
    "estimator", [AlbertVectorizer, AlbertClassifier, AlbertKeywordExtractor], ids=str
)
def test_scikit_learn_data_free_checks_pass(estimator, check):
    check(estimator.__name__, estimator())


@pytest.fixture
def vectorizer_config(tiny_albert_path):
    return AlbertVectorizer(str(tiny_albert_path), dtype="float32", max_length=16)


@pytest.mark.filterwarnings("ignore:.*were truncated")
@pytest.mark.parametrize("embedding_cache", ["memory", None])
def test_vectorizer_transform_changes_nothing(vectorizer_config, embedding_cache):
    fitted = vectorizer_config.set_params(embedding_cache=embedding_cache).fit(TEXTS)
    check_transform_changes_nothing(fitted, TEXTS)
    check_transform_changes_nothing(fitted, TEXTS)  # from the cache this time
    check_transform_changes_nothing(fitted, TEXTS, method="transform_tokens")
    check_transform_changes_nothing(fitted, TEXTS, method="find_truncated")


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_vectorizer_fit_is_idempotent_and_marks_fitted(vectorizer_config):
    check_fit_idempotent(vectorizer_config, TEXTS)
    check_fit_check_is_fitted(vectorizer_config, TEXTS)


@pytest.mark.filterwarnings("ignore:.*were truncated")
@pytest.mark.parametrize("store_weights", [False, True])
def test_vectorizer_pickles_to_an_equivalent_estimator(vectorizer_config, store_weights):
    fitted = vectorizer_config.set_params(store_weights_in_pickle=store_weights).fit(TEXTS)
    check_pickle_equivalence(fitted, TEXTS)


@pytest.mark.filterwarnings("ignore:.*were truncated")
@pytest.mark.parametrize("pooling", ["mean", ["cls", "max"]])
def test_vectorizer_names_every_feature(vectorizer_config, pooling):
    check_feature_names_out(vectorizer_config.set_params(pooling=pooling).fit(TEXTS), TEXTS)


@pytest.fixture(scope="module")
def fitted_classifier(tiny_albert_path):
    return AlbertClassifier(
        str(tiny_albert_path),
        epochs=1,
        batch_size=8,
        max_length=16,
        dtype="float32",
        random_state=0,
    ).fit(TEXTS, LABELS)


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_classifier_prediction_changes_nothing(fitted_classifier):
    check_transform_changes_nothing(fitted_classifier, TEXTS, method="predict_proba")


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_classifier_fit_is_idempotent_and_marks_fitted(fitted_classifier):
    template = AlbertClassifier(**fitted_classifier.get_params())
    check_fit_idempotent(template, TEXTS, LABELS, method="predict_proba")
    check_fit_check_is_fitted(template, TEXTS, LABELS)


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_classifier_pickles_to_an_equivalent_estimator(fitted_classifier):
    check_pickle_equivalence(fitted_classifier, TEXTS, method="predict_proba")
