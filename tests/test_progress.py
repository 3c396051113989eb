"""Progress and logging: silent by default, a progress bar with verbose, the package logger."""

import logging
import warnings

from sklearn.base import clone

from sklearn_albert import clear_cache

TEXTS = ["a great film", "a dull film", "the plot is clever"] * 3


def test_default_fit_and_transform_print_nothing(fitted_tiny_vectorizer, capfd):
    clear_cache(models=True)  # load the checkpoint from disk, as a fresh process would
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectorizer = clone(fitted_tiny_vectorizer).fit(TEXTS)
        vectorizer.transform(TEXTS)

    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_shows_a_progress_bar_on_stderr(vectorizer, capfd):
    vectorizer.set_params(verbose=True).fit(TEXTS).transform(TEXTS)

    captured = capfd.readouterr()
    assert captured.out == ""
    assert "Encoding" in captured.err and "100%" in captured.err


def test_events_are_logged_through_the_sklearn_albert_logger(fitted_tiny_vectorizer, caplog):
    clear_cache(models=True)
    with caplog.at_level(logging.INFO, logger="sklearn_albert"):
        clone(fitted_tiny_vectorizer).fit(TEXTS)

    records = [r for r in caplog.records if r.name == "sklearn_albert"]
    assert any(r.levelno == logging.INFO and "Loaded" in r.getMessage() for r in records)


def test_library_records_below_warning_are_hidden_by_default(fitted_tiny_vectorizer, capfd):
    assert logging.getLogger("sklearn_albert").getEffectiveLevel() >= logging.WARNING
    clear_cache(models=True)
    clone(fitted_tiny_vectorizer).fit(TEXTS)
    assert capfd.readouterr().err == ""
