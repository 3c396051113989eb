"""torch's thread count around the small torch work a cache-warm transform does."""

import numpy as np
import torch
from _tiny_model import generated_sentences
from torch.overrides import TorchFunctionMode


class _RecordThreads(TorchFunctionMode):
    """Records torch's intra-op thread count at every torch call made inside the mode."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append((getattr(func, "__name__", repr(func)), torch.get_num_threads()))
        return func(*args, **(kwargs or {}))


def test_cache_reads_run_torch_on_one_thread_and_restore_the_callers_count(vectorizer):
    # A team of threads on the cache's conversions spun against the classifier's fits of a
    # grid search (benchmarks/bench_readme_grid.py); the caller's own count must survive.
    texts = generated_sentences(400)  # enough rows for the cache to convert through torch
    vectorizer.fit(texts)
    expected = vectorizer.transform(texts)  # encodes and fills the cache
    callers = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _RecordThreads() as record:
            again = vectorizer.transform(texts)  # every text is read from the cache
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(callers)
    assert record.seen, "the cache read ran no torch operation: nothing was checked"
    assert {threads for _, threads in record.seen} == {1}, record.seen
    assert after == 2
    np.testing.assert_array_equal(again, expected)


def test_one_torch_thread_restores_the_count_when_the_block_raises():
    from sklearn_albert._threads import one_torch_thread

    callers = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        try:
            with one_torch_thread():
                assert torch.get_num_threads() == 1
                raise KeyError("inside")
        except KeyError:
            pass
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(callers)
