"""Truncation warnings name the user's line, once per call, and only for the model's limit.

The rule (``sklearn_albert/_warnings.py``): with ``max_length=None`` a call that truncates
warns once, naming the caller's line, also through scikit-learn (``cross_val_score``,
``Pipeline``), which runs many fits and transforms for one user call; a ``max_length`` the
user set is deliberate and never warns, while ``n_truncated_`` and ``find_truncated`` still
report.
"""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_albert import AlbertClassifier

LONG = " ".join(["the film was brilliant and moving"] * 20)  # beyond the tiny model's 64
TEXTS = [LONG + f" {i}" if i % 3 == 0 else f"short review number {i}" for i in range(12)]
LABELS = np.array([i % 2 for i in range(12)])


def truncation_warnings(record):
    return [w for w in record if "truncated" in str(w.message)]


def test_the_warning_names_the_callers_line_not_scikit_learn(vectorizer):
    vectorizer.fit(["warm up"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        vectorizer.transform([LONG, "short"])
        vectorizer.fit_transform([LONG, "short"])
    caught = truncation_warnings(record)
    assert len(caught) == 2
    assert {w.filename for w in caught} == {__file__}, [w.filename for w in caught]


def test_a_cross_validation_warns_once_at_the_callers_line(vectorizer):
    pipe = make_pipeline(vectorizer, LogisticRegression())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cross_val_score(pipe, TEXTS, LABELS, cv=3)  # 3 fit_transforms and 3 transforms
    caught = truncation_warnings(record)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert caught[0].filename == __file__
    # A second call is a new call: it warns again.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2):
            vectorizer.fit(["warm up"]).transform([LONG])
    assert len(truncation_warnings(record)) == 2


def test_an_explicit_max_length_is_not_warned_about_but_still_reported(vectorizer):
    vectorizer.set_params(max_length=48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectorizer.fit([LONG, "short"])
        vectorizer.transform([LONG, "short"])
        vectorizer.fit_transform([LONG, "short"])
        records = vectorizer.transform_tokens([LONG, "short"])
    assert vectorizer.n_truncated_ == 1
    assert vectorizer.find_truncated([LONG, "short"]).tolist() == [True, False]
    assert records[0].truncated and not records[1].truncated


@pytest.mark.parametrize("max_length, n_warnings", [(None, 2), (48, 0)])
def test_the_classifier_warns_only_for_its_default_limit(tiny_albert_path, max_length, n_warnings):
    classifier = AlbertClassifier(
        str(tiny_albert_path), max_length=max_length, epochs=1, batch_size=8, random_state=0
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        classifier.fit(TEXTS, LABELS)
        classifier.predict([LONG, "short"])
    caught = truncation_warnings(record)
    assert len(caught) == n_warnings, [str(w.message) for w in caught]
    assert {w.filename for w in caught} <= {__file__}
    assert classifier.n_truncated_ == 4


def test_a_classifier_cross_validation_warns_once_at_the_callers_line(tiny_albert_path):
    classifier = AlbertClassifier(str(tiny_albert_path), epochs=1, batch_size=8, random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cross_val_score(classifier, TEXTS, LABELS, cv=2)  # 2 fits and 2 predictions
    caught = truncation_warnings(record)
    assert len(caught) == 1, [(w.filename, str(w.message)) for w in caught]
    assert caught[0].filename == __file__
