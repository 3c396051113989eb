"""The embedding cache: each distinct text is encoded once per model and setting.

What is kept per text
---------------------
Not a feature vector, but what one forward pass tells about the text: the cls, mean and max
vectors of every hidden state, the pooler output (when the model has a pooler), the number of
attended tokens and whether the text was truncated. Every ``pooling``, ``layers``,
``layer_aggregation`` and ``normalize`` value is computed from those, so a grid search over
them, or over a downstream classifier, runs the encoder once per text.

Vectors are kept in the precision the caller names per namespace (``storage_dtype``):
float32 for float32 forward passes, exact; float16 for reduced-precision ones (bfloat16,
float16, int8), half the size. Each float16 value is within a relative 2**-11 (4.9e-4) of the
float32 the forward pass produced (absolute 3e-8 below 6.1e-5), one eighth of a single
bfloat16 rounding. The engine rounds the vectors of texts it has just encoded the same way
(:func:`rounded_batch`: float16 already, in the blocks' layout, so that storing them is a
plain copy) and the vectorizer builds their features from those, so a transform's output
never depends on what the cache held. A text whose vectors exceed
float16's range (65,504) is not kept; it is encoded every time.

How big it gets
---------------
A text costs ``itemsize x hidden_size x (3 x n_hidden_states + pooler)`` bytes of vectors,
plus about 100 bytes of index and the text itself:

============================  ======  =============  ===================  ===================
model                         hidden  hidden states  float16: B / text    float32: B / text
============================  ======  =============  ===================  ===================
ALBERT-base                   768     13             61,440 (17,476/GiB)  122,880 (8,738/GiB)
all-MiniLM-L6-v2              384     7              16,896 (63,550/GiB)  33,792 (31,775/GiB)
============================  ======  =============  ===================  ===================

Where
-----
``embedding_cache="memory"`` (the default) is one process-wide store. Its blocks of texts
live in RAM up to :func:`set_cache_limit` (1 GiB by default); the least recently used blocks
beyond that are written to a spill file in :func:`tempfile.gettempdir` (removed by the
operating system when the process ends, even if it crashes) and read back with plain file
reads, so they sit in the page cache, not in the process's resident memory. The spill file is
bounded too (32 GiB, or half the free space of its folder if smaller); beyond it the least
recently used blocks are forgotten. Blocks are columnar, one array per (summary, hidden
state), so a candidate reads only the layers it asks for.

``embedding_cache="path/to/folder"`` is a store on disk that processes share, such as the
joblib workers of ``GridSearchCV(n_jobs=2)``: per namespace a data file in the same columnar
layout, an append-only index of text digests, and a lock file (format version 2). The one
writer holds an exclusive ``fcntl`` lock while it looks up again, encodes what is still
missing and appends it, so two workers never encode the same text twice. Lookups never take
it: a text is visible once its index record is written, after its vectors.

Trust, threads, files
---------------------
A cache may cost recomputation, never a wrong vector or a failed transform
(``_integrity.py``): writes are checked for every byte, each stored vector carries a
checksum that reads verify, and damage or an I/O error (a full disk, a file size limit, a
read-only folder, a planted link) drops what it concerns, warns once per namespace and fault
(:class:`EmbeddingCacheWarning`) and lets the texts be encoded again. Per namespace, one
thread of a process writes at a time (the others wait, then find its texts); lookups wait
for neither threads nor processes. The folder store opens what it creates without following
links, relative to its parent folder's descriptor, folders 0700 and files 0600
(``_nofollow.py``).

Pages: ``_layout.py`` (rows, float16 rounding), ``_integrity.py`` (checksums, verified
reads and writes, stepping aside), ``_base.py`` (counts, the writing protocol),
``_memory.py`` (RAM and spill file), ``_folder.py`` (the folder store and its lock),
``_nofollow.py`` (opening without following links); this page the process-wide state.

Entries live under a *namespace* that the caller computes: a hash of the model's content
fingerprint and of every setting that changes the forward pass. Nothing else needs
invalidating: a changed checkpoint has a new fingerprint.
"""

import os
import threading

from .._pooling import Encodings
from ._folder import DISK_BLOCK_ROWS, DISK_FOLDER_NAME, DISK_FORMAT_VERSION, DiskCache
from ._integrity import EmbeddingCacheWarning
from ._layout import (
    KINDS,
    STORAGE_DTYPES,
    TORCH_CAST_MIN_SIZE,
    rounded_as_stored,
    rounded_batch,
)
from ._memory import (
    BLOCK_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SPILL_BYTES,
    ENTRY_OVERHEAD_BYTES,
    MAX_BLOCK_ROWS,
    ROW_BITS,
    ROW_MASK,
    MemoryCache,
)

# ---------------------------------------------------------------------- process-wide state

MEMORY_CACHE = MemoryCache()
_DISK_CACHES = {}
_DISK_CACHES_LOCK = threading.Lock()


def _after_fork_in_child():
    global _DISK_CACHES_LOCK
    MEMORY_CACHE.after_fork()
    _DISK_CACHES.clear()  # their descriptors and locks belong to the parent
    _DISK_CACHES_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def embedding_cache_for(value):
    """The cache for an ``embedding_cache`` parameter value already validated by the caller.

    Parameters
    ----------
    value : "memory", str, os.PathLike or None
        "memory" is the process-wide store (bounded, see :func:`set_cache_limit`); a folder
        path is a disk store that processes share; None means no cache.

    Returns
    -------
    cache : MemoryCache, DiskCache or None
        One object per folder in a process, so that its counts add up.
    """
    if value is None:
        return None
    if isinstance(value, str) and value == "memory":
        return MEMORY_CACHE
    key = os.path.abspath(os.fspath(value))
    with _DISK_CACHES_LOCK:
        cache = _DISK_CACHES.get(key)
        if cache is None:
            cache = _DISK_CACHES[key] = DiskCache(key)
        return cache


def set_cache_limit(max_bytes, *, max_spill_bytes=None):
    """Set the bounds of the process-wide embedding cache.

    Parameters
    ----------
    max_bytes : int
        Bound in bytes on the RAM the cache holds (1 GiB by default); 0 turns in-memory
        caching off for every estimator. Beyond it, least recently used blocks of texts move
        to a spill file in the temporary folder.
    max_spill_bytes : int, default=None
        Bound in bytes on that spill file; None keeps the current one (by default 32 GiB or
        half the temporary folder's free space, whichever is less); 0 never spills, so
        least recently used blocks are forgotten instead.

    Notes
    -----
    ALBERT-base keeps 61,440 bytes per text (1 GiB holds 17,476 texts), all-MiniLM-L6-v2
    16,896. A folder given as ``embedding_cache`` is on disk and not bounded by either.
    """
    for name, value in (("max_bytes", max_bytes), ("max_spill_bytes", max_spill_bytes)):
        if value is None and name == "max_spill_bytes":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"Got {name}={value!r} but expected an integer >= 0.")
    MEMORY_CACHE.resize(max_bytes, max_spill_bytes)


def cache_info(embedding_cache="memory"):
    """Statistics of an embedding cache.

    Parameters
    ----------
    embedding_cache : "memory" or path-like, default="memory"
        The process-wide cache, or the folder of a disk cache.

    Returns
    -------
    info : dict
        ``hits`` and ``misses`` (texts this process looked up since the last clear; a miss
        is a text that was then encoded), ``entries``, ``bytes`` and ``storage_dtype``. For
        memory also ``max_bytes``, ``spilled_entries``, ``spill_bytes`` and
        ``max_spill_bytes``; for a folder ``writes`` (texts written by every process; more
        than ``entries`` means some text was encoded twice) and ``namespaces``.
    """
    cache = embedding_cache_for(embedding_cache)
    if cache is None:
        raise ValueError(
            "Got embedding_cache=None but expected 'memory' or the folder of a disk cache."
        )
    return cache.info()


def clear_embedding_cache():
    """Empty the process-wide in-memory cache (RAM and spill file) and its counts."""
    MEMORY_CACHE.clear()


__all__ = [
    "BLOCK_BYTES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SPILL_BYTES",
    "DISK_BLOCK_ROWS",
    "DISK_FOLDER_NAME",
    "DISK_FORMAT_VERSION",
    "ENTRY_OVERHEAD_BYTES",
    "KINDS",
    "MAX_BLOCK_ROWS",
    "MEMORY_CACHE",
    "ROW_BITS",
    "ROW_MASK",
    "STORAGE_DTYPES",
    "TORCH_CAST_MIN_SIZE",
    "DiskCache",
    "EmbeddingCacheWarning",
    "Encodings",
    "MemoryCache",
    "cache_info",
    "clear_embedding_cache",
    "embedding_cache_for",
    "rounded_as_stored",
    "rounded_batch",
    "set_cache_limit",
]
