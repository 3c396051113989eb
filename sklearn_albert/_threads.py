"""Thread counts for the small torch operations that run beside a user's own work.

Reading the embedding cache converts stored summaries with torch's vectorised kernels
(``_cache.py``). Each call is a few milliseconds of memory traffic; a team of intra-op
threads gains nothing on it, and on a busy machine its OpenMP barrier waits for threads
the scheduler has parked. In a cache-warm grid search, where such reads alternate with the
classifier's fits, the README's search (2,000 texts, MiniLM, 2-core CPU, load average
about 6, ``benchmarks/bench_readme_grid.py``) took 3.7 to 3.9 s with the caller's two
threads against 2.4 s with every thread pool at one thread, and 1.7 to 1.9 s with this.
"""

import contextlib
import sys


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
