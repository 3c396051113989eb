"""What a worker process of a cluster engine (Dask, Spark) does with a shipped estimator.

Each process unpickles a given estimator once, keeps it for every partition it embeds,
and prepares it for its own device (``choose_device_here``), and lets glibc reuse freed
memory in processes Dask started with a small trim threshold (:func:`reuse_freed_memory`).
"""

import ctypes
import ctypes.util
import os
import sys
import threading

# Per worker process: estimators already unpickled, by content digest (insertion order).
MAX_RECEIVED = 4
_received_estimators = {}
_received_lock = threading.Lock()
_counts = {"estimators_unpickled": 0}


def received(digest, payload):
    """The estimator of ``payload``, unpickled once per process and prepared for it."""
    with _received_lock:
        estimator = _received_estimators.get(digest)
        if estimator is None:
            import pickle

            reuse_freed_memory()
            estimator = pickle.loads(payload)
            choose_device_here(estimator)
            _received_estimators[digest] = estimator
            while len(_received_estimators) > MAX_RECEIVED:  # oldest job's first
                _received_estimators.pop(next(iter(_received_estimators)))
            _counts["estimators_unpickled"] += 1
        return estimator


def choose_device_here(estimator):
    """Move ``device="auto"`` vectorizers to this worker's best device, without refitting.

    A vectorizer fitted on a CPU-only client runs on a GPU worker's GPU. Only the device
    (and the precision ``dtype`` resolves to there) changes: the fitted state stays as
    fitted (``input_name_``, the int8 calibration, ``model_fingerprint_``), and the model
    loads on the new device at first use, which warns if the worker's checkpoint differs
    from the fitted one. ``dtype="int8"`` runs on CPU only, so its best device is the CPU.
    A vectorizer whose weights travel in the pickle keeps them, on the device the pickle
    remapped it to.
    """
    from ._devices import resolve_device
    from ._persistence import move_to_device
    from ._vectorizer import AlbertVectorizer

    best = resolve_device("auto")
    found = [estimator] if isinstance(estimator, AlbertVectorizer) else []
    if hasattr(estimator, "get_params"):
        found += [
            value
            for value in estimator.get_params(deep=True).values()
            if isinstance(value, AlbertVectorizer)
        ]
    for vectorizer in found:
        target = resolve_device("cpu") if vectorizer.dtype_ == "int8" else best
        if (
            vectorizer.device != "auto"
            or vectorizer.store_weights_in_pickle
            or vectorizer.device_.split(":")[0] == target.type
        ):
            continue
        # The move a pickle makes when its fitted device is missing: settings on another
        # device, nothing refitted. A shipped vectorizer holds no model yet (a default
        # pickle leaves it out), so its first transform loads it on ``target``.
        move_to_device(vectorizer, target)


# glibc's mallopt parameters (malloc.h), and the values an encoding process keeps: the
# largest that glibc's own dynamic thresholds reach on 64-bit Linux.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
ENCODING_MMAP_THRESHOLD = 32 * 1024 * 1024
ENCODING_TRIM_THRESHOLD = 2 * ENCODING_MMAP_THRESHOLD
_allocator_lock = threading.Lock()
_allocator_tuned = {"pid": None}


def reuse_freed_memory():
    """Let glibc reuse freed memory in a process started with a small trim threshold.

    Dask's nanny starts each worker process with ``MALLOC_TRIM_THRESHOLD_=65536``, so that
    freed memory goes back to the operating system at once. That setting also freezes
    glibc's mmap threshold at 128 KiB, so every activation tensor of a forward pass is
    mapped, faulted in page by page and unmapped again: on a 2-core machine, ALBERT-base
    encoded 35% slower in such a process (121 against 188 texts/s on one thread). The first
    time a process embeds a partition, this sets the thresholds glibc itself would have
    grown to without the variable (blocks under 32 MiB from the heap, up to 64 MiB of free
    heap top kept), for the rest of the process's life; once per process, thread-safe.

    Nothing changes where ``MALLOC_TRIM_THRESHOLD_`` is not set, or set at or above
    64 MiB, or the C library is not glibc.

    Returns
    -------
    tuned : bool
        Whether the thresholds were set (now or by an earlier call in this process).
    """
    libc = _glibc_to_tune()
    if libc is None:
        return False
    with _allocator_lock:
        if _allocator_tuned["pid"] != os.getpid():
            libc.mallopt(M_MMAP_THRESHOLD, ENCODING_MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, ENCODING_TRIM_THRESHOLD)
            _allocator_tuned["pid"] = os.getpid()
    return True


def _glibc_to_tune():
    """glibc, when this process runs with a small ``MALLOC_TRIM_THRESHOLD_``; else None."""
    try:
        trim = int(os.environ["MALLOC_TRIM_THRESHOLD_"])
    except (KeyError, ValueError):
        return None
    if trim >= ENCODING_TRIM_THRESHOLD or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError):
        return None
    return libc


def process_counts():
    """This process's counters (for tests and benchmarks): estimators unpickled."""
    return dict(_counts)
