"""GPU-only branches: run with ``python -m pytest -m cuda`` on a machine with a CUDA device.

They are left out of the default run (``addopts`` in pyproject.toml), where no GPU exists;
``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""

import numpy as np
import pytest
import torch
from _tiny_model import generated_sentences
from sklearn.base import clone

import sklearn_albert._engine as engine
from sklearn_albert import AlbertClassifier, AlbertVectorizer

pytestmark = pytest.mark.cuda

TEXTS = generated_sentences(300, seed=21)


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("the cuda-marked tests need a CUDA device; run them with -m cuda on a GPU")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_on_the_gpu_matches_float32_on_the_cpu(tiny_albert_path, dtype):
    cpu = AlbertVectorizer(str(tiny_albert_path), device="cpu", dtype="float32").fit(TEXTS)
    gpu = AlbertVectorizer(str(tiny_albert_path), device="cuda", dtype=dtype).fit(TEXTS)
    expected, features = cpu.transform(TEXTS), gpu.transform(TEXTS)
    cosine = (expected * features).sum(1) / (
        np.linalg.norm(expected, axis=1) * np.linalg.norm(features, axis=1)
    )
    assert gpu.device_.startswith("cuda") and cosine.min() > 0.999


def test_batches_are_pinned_and_prefetched_on_the_gpu(tiny_albert_path, monkeypatch):
    pinned, threads = [], []
    real_collate = engine.collate

    def recording_collate(ids, batch, pad_id, pin_memory=False):
        import threading

        pinned.append(pin_memory)
        threads.append(threading.current_thread().name)
        return real_collate(ids, batch, pad_id, pin_memory=pin_memory)

    monkeypatch.setattr(engine, "collate", recording_collate)
    vect = AlbertVectorizer(str(tiny_albert_path), device="cuda", batch_size=16).fit(TEXTS)
    vect.set_params(embedding_cache=None).transform(TEXTS)
    assert pinned and all(pinned)
    assert any(name != "MainThread" for name in threads)  # padded by the prefetch worker


def test_a_real_out_of_memory_halves_the_batch_and_loses_nothing(tiny_albert_path, caplog):
    vect = AlbertVectorizer(
        str(tiny_albert_path), device="cuda", dtype="float32", embedding_cache=None
    ).fit(TEXTS)
    expected = vect.transform(TEXTS)
    free, total = torch.cuda.mem_get_info()
    # One batch of 4,096 texts x 64 tokens needs more than this share of the card.
    torch.cuda.set_per_process_memory_fraction(min(0.9, 64 * 2**20 / total + 0.001))
    try:
        wide = clone(vect).set_params(batch_size=4096, max_tokens_per_batch=1 << 30).fit(TEXTS)
        many = TEXTS * 14
        with caplog.at_level("WARNING", logger="sklearn_albert"):
            features = wide.transform(many)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    np.testing.assert_allclose(features[: len(TEXTS)], expected, atol=1e-4)
    assert "Out of memory on a batch" in caplog.text


def test_float16_fine_tuning_scales_the_loss_and_learns(tiny_albert_path):
    labels = [int("good" in text or "great" in text) for text in TEXTS]
    classifier = AlbertClassifier(
        str(tiny_albert_path), device="cuda", dtype="float16", epochs=2, random_state=0
    ).fit(TEXTS, labels)
    assert classifier.dtype_ == "float16"
    assert all(np.isfinite(record["train_loss"]) for record in classifier.history_)
    assert classifier.predict_proba(TEXTS[:5]).shape == (5, 2)
