"""CPU streams: whole batches side by side on one-thread workers, instead of each matmul split.

A torch encoder on CPU splits every operation of a batch across its intra-op threads. For
the small matrices of sentence embedding (a few hundred to a few thousand token rows,
768 columns) that split costs: the threads meet at a barrier after every matmul,
normalisation and softmax, and the Python between the operations runs on one core while
the others wait. Running whole batches at once, one per worker thread with one intra-op
thread each, keeps every core on its own batch: on a 2-core machine with AMX, ALBERT-base
in bfloat16 encoded 1.3-1.4x more SST-2 sentences per second as 2 streams x 1 thread than
as 1 stream x 2 threads (``benchmarks/bench_encode.py`` measures the whole effect). The
static int8 encoder does the same inside OpenVINO (its ``streams``).

The workers live for the process (one pool per layout), so that each sets its thread count
once: ``torch.set_num_threads`` called in a worker thread sets that thread's count only,
the caller's is left as it was. ``SKLEARN_ALBERT_CPU_STREAMS`` chooses the number of
streams: 1 (or 0) turns them off, an integer caps them, unset means one stream per torch
thread, at most :data:`MAX_STREAMS`.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: Environment variable: the most streams a CPU transform runs (1 or 0: none).
STREAMS_VARIABLE = "SKLEARN_ALBERT_CPU_STREAMS"

#: Streams when the variable is unset, at most: beyond this many, the caller's thread
#: (which collects the results) and the GIL become the limit.
MAX_STREAMS = 8

_pools = {}  # (streams, threads per stream) -> (process id, executor)
_pools_lock = threading.Lock()


def stream_layout(threads, n_batches):
    """``(streams, threads_per_stream)`` for a CPU run of ``n_batches`` batches.

    Parameters
    ----------
    threads : int
        The caller's torch intra-op thread count (``torch.get_num_threads()``).
    n_batches : int

    Returns
    -------
    streams : int
        1 when streams are off, when there is a single batch, or a single thread.
    threads_per_stream : int
        ``threads // streams`` (``threads`` itself when ``streams`` is 1).

    Raises
    ------
    ValueError
        If ``SKLEARN_ALBERT_CPU_STREAMS`` is set to something other than an integer >= 0.
    """
    limit = _streams_limit()
    streams = max(1, min(int(threads), int(n_batches), limit))
    return streams, (int(threads) if streams == 1 else int(threads) // streams)


def _streams_limit():
    value = os.environ.get(STREAMS_VARIABLE, "").strip()
    if not value:
        return MAX_STREAMS
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(
            f"The environment variable {STREAMS_VARIABLE}={value!r} is not an integer >= 0. "
            f"Set it to 1 (or 0) to run each CPU batch on all threads, to N to run up to N "
            "batches side by side, or leave it unset (one batch per torch thread)."
        )
    return max(1, limit)


def stream_pool(streams, threads_per_stream):
    """The process's worker pool for this layout; each worker runs torch at ``threads_per_stream``.

    A pool inherited through ``fork`` has no threads in the child: the child gets its own.
    """
    key = (int(streams), int(threads_per_stream))
    with _pools_lock:
        owner, pool = _pools.get(key, (None, None))
        if pool is None or owner != os.getpid():
            pool = ThreadPoolExecutor(
                max_workers=key[0],
                thread_name_prefix="sklearn_albert_stream",
                initializer=_set_torch_threads,
                initargs=(key[1],),
            )
            _pools[key] = (os.getpid(), pool)
        return pool


def _set_torch_threads(threads):
    import torch

    torch.set_num_threads(threads)
