"""Thread counts for the small torch operations that run beside a user's own work.

Reading the embedding cache converts stored summaries with torch's vectorised kernels
(``_cache.py``). Each call is a few milliseconds of memory traffic; a team of intra-op
threads gains nothing on it, and on a busy machine its OpenMP barrier waits for threads
the scheduler has parked. In a cache-warm grid search, where such reads alternate with the
classifier's fits, the README's search (2,000 texts, MiniLM, 2-core CPU, load average
about 6, ``benchmarks/bench_readme_grid.py``) took 3.7 to 3.9 s with the caller's two
threads against 2.4 s with every thread pool at one thread, and 1.7 to 1.9 s with this.

The same one-thread block keeps bfloat16 Linear layers batch-invariant on CPUs with AMX,
whose kernels split a matmul's sums by the thread count (``_cpu/packed_linear.py``).
"""

import contextlib
import sys
import threading

_lent = threading.local()  # .threads: what run_torch_on_streams_only lent this thread


@contextlib.contextmanager
def one_torch_thread():
    """Run the block with torch at one intra-op thread, restoring the caller's count after.

    ``torch.set_num_threads`` sets the calling thread's count only, so other threads (a
    joblib worker, the engine's streams) are not affected. torch is not imported for this:
    when it is not loaded, nothing in the block runs torch.
    """
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else 1
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_torch_on_streams_only(threads):
    """Make the calling thread run torch on one intra-op thread, its transforms on streams.

    For a thread that calls the estimators beside another thread that does (a model
    server's batch threads, :mod:`sklearn_albert.serving`). libgomp, the OpenMP runtime
    of torch's CPU builds, gives every thread that starts a parallel region a team of its
    own; once the process holds more such threads than there are cores, every team stops
    spinning between operations (libgomp's throttled spin count) and wakes its threads
    through the kernel at each of the hundreds of operations of a forward pass. On 2
    cores, a server whose two batch threads had each run a batch on a two-thread team
    took 39.5-46 ms for a one-text batch on its main thread, against 26-28 ms where the
    batch threads ran torch on one thread (``benchmarks/bench_serve.py --scenarios
    latency``).

    The thread still spreads a transform's forward passes over ``threads`` threads of the
    engine's streams (:func:`threads_for_streams`), whose workers run one intra-op
    thread each: no team of their own either.

    Parameters
    ----------
    threads : int
        Threads this thread's CPU transforms may run their batches on, as streams: the
        process's torch thread count, typically.
    """
    import torch

    torch.set_num_threads(1)
    _lent.threads = max(1, int(threads))


def threads_for_streams():
    """Threads the calling thread's CPU transforms may run their batches on, as streams.

    Its torch intra-op thread count, or what :func:`run_torch_on_streams_only` lent it.
    """
    import torch

    return max(torch.get_num_threads(), getattr(_lent, "threads", 1))
