"""What any host does with a shipped estimator: unpickle it once, pick the device, tune the process.

A host is a process that receives a fitted estimator from elsewhere and runs it: a Dask
worker (:mod:`sklearn_albert.distributed`), a Spark Python worker
(:mod:`sklearn_albert.spark`), a model server. Each process unpickles a given estimator
once and keeps it for every batch (:func:`received`), moves ``device="auto"`` encoders to
its own best device (:func:`choose_device_here`), and lets glibc reuse freed memory when
it was started with a small trim threshold, as Dask's nanny starts its workers
(:func:`reuse_freed_memory`).

The engines import this module; it imports nothing above it: only ``_devices`` and
``_persistence``, which the estimators themselves are built on. It recognises the
estimators to move by their shared base, ``EncoderPersistence``, never by importing an
estimator's module (``tests/test_hosts.py`` checks the import graph).
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
    """Move ``device="auto"`` encoders to this host's best device, without refitting.

    A vectorizer fitted on a CPU-only client runs on a GPU worker's GPU. Only the device
    (and the precision ``dtype`` resolves to there) changes: the fitted state stays as
    fitted (``input_name_``, the int8 calibration, ``model_fingerprint_``), and the model
    loads on the new device at first use, which warns if the host's checkpoint differs
    from the fitted one. ``dtype="int8"`` runs on CPU only, so its best device is the CPU.
    An encoder whose weights travel in the pickle (``store_weights_in_pickle=True``, or a
    fine-tuned classifier, which always carries its weights) keeps them, on the device the
    pickle remapped it to.

    Parameters
    ----------
    estimator : object
        A fitted estimator, or a meta-estimator (a ``Pipeline``) holding fitted encoders
        among its ``get_params(deep=True)`` values.
    """
    from ._persistence import move_to_device

    for encoder in _encoders_without_weights(estimator):
        target = device_here(encoder.device, encoder.dtype_)
        if target is None or encoder.device_.split(":")[0] == target.type:
            continue
        # The move a pickle makes when its fitted device is missing: settings on another
        # device, nothing refitted. A shipped encoder holds no model yet (a default
        # pickle leaves it out), so its first transform loads it on ``target``.
        move_to_device(encoder, target)


def device_here(device, dtype):
    """The device an encoder runs on in this host, or None to keep its fitted one.

    Parameters
    ----------
    device : str
        The encoder's ``device`` parameter: only ``"auto"`` moves, to this host's best
        device; a device named by the user is kept (or falls back to the CPU, with a
        warning, where this host lacks it).
    dtype : str
        The fitted precision (``dtype_``): ``"int8"`` runs on the CPU only.

    Returns
    -------
    device : torch.device or None
    """
    from ._devices import resolve_device

    if device != "auto":
        return None
    return resolve_device("cpu" if dtype == "int8" else "auto")


def device_to_load_with(device, dtype):
    """The ``device=`` to pass to ``load`` for a saved encoder, by :func:`device_here`'s rule.

    ``"auto"`` (the encoder keeps its parameter and loads on this host's best device), or
    None (its fitted device, a CPU for int8): a saved encoder's weights then load once,
    on the device they run on, rather than being moved after loading.

    Parameters
    ----------
    device, dtype : str
        The encoder's ``device`` parameter and fitted ``dtype_``, as saved.

    Returns
    -------
    device : "auto" or None
    """
    return "auto" if device == "auto" and dtype != "int8" else None


def _encoders_without_weights(estimator):
    """``estimator`` and its nested estimators that hold a checkpoint but not its weights."""
    from ._persistence import EncoderPersistence

    found = [estimator]
    if hasattr(estimator, "get_params"):
        found += list(estimator.get_params(deep=True).values())
    # Only a vectorizer has the parameter: an estimator without it carries its weights.
    return [
        value
        for value in found
        if isinstance(value, EncoderPersistence)
        and not getattr(value, "store_weights_in_pickle", True)
    ]


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
