"""CPU streams: whole batches side by side on one-thread workers, results as without them.

The speed is measured by ``benchmarks/bench_encode.py``; these tests check the behaviour:
where batches run, at how many threads, that the caller's thread count is left alone,
that errors surface, and that the features equal those of one batch at a time.
"""

import threading

import numpy as np
import pytest
import torch
from _tiny_model import generated_sentences

import sklearn_albert._engine as engine
from sklearn_albert._cpu.streams import MAX_STREAMS, STREAMS_VARIABLE, stream_layout


@pytest.fixture
def two_torch_threads():
    """Run the test with torch at 2 intra-op threads (streams need at least 2)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def record_forward_threads(monkeypatch):
    """Record, for each forward pass, its thread's name and torch thread count."""
    seen = []
    real_forward = engine.forward

    def forward(runner, input_ids, attention_mask, compute_dtype, step):
        seen.append((threading.current_thread().name, torch.get_num_threads(), len(input_ids)))
        return real_forward(runner, input_ids, attention_mask, compute_dtype, step)

    monkeypatch.setattr(engine, "forward", forward)
    return seen


@pytest.mark.parametrize(
    ("threads", "n_batches", "variable", "expected"),
    [
        (2, 10, None, (2, 1)),
        (16, 100, None, (MAX_STREAMS, 2)),
        (4, 3, None, (3, 1)),  # no more streams than batches
        (2, 1, None, (1, 2)),  # one batch: all threads on it
        (1, 10, None, (1, 1)),
        (8, 10, "1", (1, 8)),
        (8, 10, "0", (1, 8)),
        (8, 10, "2", (2, 4)),
    ],
)
def test_stream_layout(monkeypatch, threads, n_batches, variable, expected):
    monkeypatch.delenv(STREAMS_VARIABLE, raising=False)
    if variable is not None:
        monkeypatch.setenv(STREAMS_VARIABLE, variable)
    assert stream_layout(threads, n_batches) == expected


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_bad_streams_variable_says_what_would_work(monkeypatch, value):
    monkeypatch.setenv(STREAMS_VARIABLE, value)
    with pytest.raises(ValueError, match=rf"{STREAMS_VARIABLE}={value!r}.*integer >= 0"):
        stream_layout(2, 10)


def test_batches_run_on_one_thread_workers_and_match_one_batch_at_a_time(
    vectorizer, monkeypatch, two_torch_threads
):
    texts = generated_sentences(60, seed=5)
    vectorizer.set_params(embedding_cache=None, batch_size=8).fit(texts)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_UNPADDED", "0")  # padded batches of 8
    monkeypatch.setenv(STREAMS_VARIABLE, "1")
    one_at_a_time = vectorizer.transform(texts)

    monkeypatch.delenv(STREAMS_VARIABLE)
    seen = record_forward_threads(monkeypatch)
    side_by_side = vectorizer.transform(texts)

    assert len(seen) == 8  # 60 texts in batches of 8
    assert {name.startswith("sklearn_albert_stream") for name, _, _ in seen} == {True}
    assert {threads for _, threads, _ in seen} == {1}
    assert len({name for name, _, _ in seen}) == 2  # both workers took batches
    np.testing.assert_allclose(side_by_side, one_at_a_time, atol=1e-5)
    assert torch.get_num_threads() == 2  # the caller's count is as it was


def test_a_single_batch_runs_inline_on_the_callers_threads(
    vectorizer, monkeypatch, two_torch_threads
):
    vectorizer.set_params(embedding_cache=None).fit(["warm up"])
    seen = record_forward_threads(monkeypatch)
    vectorizer.transform(["one short text", "and another"])
    assert seen == [(threading.current_thread().name, 2, 2)]


def test_a_thread_on_streams_only_runs_its_batches_on_the_streams_and_gets_the_same_bits(
    vectorizer, monkeypatch, two_torch_threads
):
    from sklearn_albert._threads import run_torch_on_streams_only, threads_for_streams

    texts = generated_sentences(60, seed=7)
    vectorizer.set_params(embedding_cache=None, batch_size=8).fit(texts)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_UNPADDED", "0")  # padded batches of 8
    expected = vectorizer.transform(texts)
    assert threads_for_streams() == 2  # the caller's own count, where nothing was lent

    seen = record_forward_threads(monkeypatch)
    outcome = {}

    def batch_thread():  # what a server's batch thread does
        run_torch_on_streams_only(2)
        outcome["threads"] = (torch.get_num_threads(), threads_for_streams())
        outcome["features"] = vectorizer.transform(texts)
        outcome["one batch"] = vectorizer.transform(texts[:2])

    thread = threading.Thread(target=batch_thread, name="batch_0")
    thread.start()
    thread.join()

    # Its own torch work runs on one thread (no OpenMP team of its own)...
    assert outcome["threads"] == (1, 2)
    # ... its batches on both streams, each at one thread...
    streamed = [entry for entry in seen if entry[0].startswith("sklearn_albert_stream")]
    assert len(streamed) == 8 and {threads for _, threads, _ in streamed} == {1}
    # ... a single batch inline, at its one thread; and the features are the same bits.
    assert seen[-1] == ("batch_0", 1, 2)
    np.testing.assert_array_equal(outcome["features"], expected)
    np.testing.assert_array_equal(outcome["one batch"], expected[:2])
    assert torch.get_num_threads() == 2 and threads_for_streams() == 2  # this thread's own


def test_an_error_in_a_worker_reaches_the_caller_and_restores_its_threads(
    vectorizer, monkeypatch, two_torch_threads
):
    texts = generated_sentences(40, seed=6)
    vectorizer.set_params(embedding_cache=None, batch_size=8).fit(texts)
    expected = vectorizer.transform(texts)
    real_forward = engine.forward
    calls = []

    def failing_third(runner, input_ids, attention_mask, compute_dtype, step):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("a shape mismatch in batch three")
        return real_forward(runner, input_ids, attention_mask, compute_dtype, step)

    monkeypatch.setattr(engine, "forward", failing_third)
    with pytest.raises(RuntimeError, match="shape mismatch in batch three"):
        vectorizer.transform(texts)
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(engine, "forward", real_forward)
    # Usable as before: the same batches on the same layout give the same bits.
    np.testing.assert_array_equal(vectorizer.transform(texts), expected)


def test_the_int8_encoder_gets_one_worker_per_openvino_stream():
    class OwnStreams:
        runs_own_streams = True
        streams = 2

    class Plain:
        pass

    cpu = torch.device("cpu")
    assert engine._cpu_streams(OwnStreams(), cpu, 10) == (2, 1)
    assert engine._cpu_streams(Plain(), cpu, 10) == (1, None)
    assert engine._cpu_streams(OwnStreams(), cpu, 1) == (1, None)
