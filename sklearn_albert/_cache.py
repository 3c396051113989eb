"""The embedding cache: each distinct text is encoded once per model and setting.

What is cached for a text is not its final feature vector but the summaries of one forward
pass (cls, mean and max of every hidden layer, the pooler output and the token count). Every
``pooling``, ``layers``, ``layer_aggregation`` and ``normalize`` value is computed from those,
so a grid search over them, or over a downstream classifier, runs the encoder once per text.

Entries live under a *namespace*: a hash of the model's content fingerprint and of every
setting that changes the forward pass (maximum length, precision, device type, long-text
handling). Nothing else needs invalidating: a changed checkpoint has a new fingerprint.

Memory is bounded (1 GiB by default, :func:`set_cache_limit`), least recently used entries
go first, and a transform whose new entries could never fit at once is not cached at all:
filling the cache with a stream that cannot be kept would only evict useful entries. An
optional SQLite file on disk (``embedding_cache="path/to/folder"``) is shared by processes,
such as joblib workers in ``GridSearchCV(n_jobs=...)``.
"""

import contextlib
import hashlib
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._pooling import Encodings

DEFAULT_MAX_BYTES = 1 << 30
DISK_FILE_NAME = "sklearn_albert_embeddings.sqlite"


class TextEncoding(NamedTuple):
    """What one forward pass tells about one text (one row of :class:`Encodings`)."""

    summaries: np.ndarray  # (3, n_layers, dim) float32: cls, mean, max per layer
    pooler: object  # (dim,) float32 ndarray, or None when the model has no pooler
    n_tokens: int
    truncated: bool

    @property
    def nbytes(self):
        pooler_bytes = 0 if self.pooler is None else self.pooler.nbytes
        return self.summaries.nbytes + pooler_bytes + 64


class _ArrayInterface:
    """``lookup``/``store``/``writing`` over per-text ``get_many``/``put_many``."""

    def lookup(self, namespace, texts, layers):
        """Which texts are cached, and their encodings restricted to ``layers``.

        Returns
        -------
        found : ndarray of shape (len(texts),), bool
        encodings : Encodings
            Of the found texts, in their order in ``texts``.
        """
        entries = self.get_many(namespace, texts)
        found = np.fromiter((text in entries for text in texts), dtype=bool, count=len(texts))
        rows = [entries[text] for text in texts if text in entries]
        return found, _stack(rows, layers)

    def store(self, namespace, texts, encodings):
        """Keep the full encodings of ``texts``."""
        self.put_many(
            namespace,
            [
                (
                    text,
                    TextEncoding(
                        encodings.summaries[row],
                        None if encodings.pooler is None else encodings.pooler[row],
                        int(encodings.n_tokens[row]),
                        bool(encodings.truncated[row]),
                    ),
                )
                for row, text in enumerate(texts)
            ],
        )

    def writing(self, namespace):
        """Held while the caller encodes and stores misses (no cross-process lock here)."""
        return contextlib.nullcontext()


def _stack(rows, layers):
    layers = list(layers)
    if not rows:
        return Encodings(
            np.empty((0, 3, len(layers), 0), np.float32),
            None,
            np.empty(0, np.int64),
            np.empty(0, bool),
        )
    return Encodings(
        summaries=np.stack([row.summaries[:, layers] for row in rows]),
        pooler=None if rows[0].pooler is None else np.stack([row.pooler for row in rows]),
        n_tokens=np.array([row.n_tokens for row in rows], dtype=np.int64),
        truncated=np.array([row.truncated for row in rows], dtype=bool),
    )


class MemoryCache(_ArrayInterface):
    """A thread-safe, byte-bounded LRU mapping ``(namespace, text)`` to ``TextEncoding``."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries = OrderedDict()
        self._n_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, namespace, texts):
        """``{text: TextEncoding}`` for the texts that are cached."""
        found = {}
        with self._lock:
            for text in texts:
                entry = self._entries.get((namespace, text))
                if entry is not None:
                    self._entries.move_to_end((namespace, text))
                    found[text] = entry
            self.hits += len(found)
            self.misses += len(texts) - len(found)
        return found

    def put_many(self, namespace, items):
        for text, entry in items:
            self.put(namespace, text, entry)

    def put(self, namespace, text, entry):
        size = entry.nbytes + len(text)
        with self._lock:
            previous = self._entries.pop((namespace, text), None)
            if previous is not None:
                self._n_bytes -= previous.nbytes + len(text)
            self._entries[(namespace, text)] = entry
            self._n_bytes += size
            self._evict()

    def resize(self, max_bytes):
        with self._lock:
            self.max_bytes = max_bytes
            self._evict()

    def _evict(self):
        while self._n_bytes > self.max_bytes and self._entries:
            (_, old_text), old = self._entries.popitem(last=False)
            self._n_bytes -= old.nbytes + len(old_text)

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._n_bytes = 0
            self.hits = self.misses = 0

    def info(self):
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": len(self._entries),
                "bytes": self._n_bytes,
                "max_bytes": self.max_bytes,
            }


class DiskCache(_ArrayInterface):
    """Entries in a SQLite file, safe to share between processes."""

    shared_between_processes = True

    def __init__(self, folder):
        self.path = Path(folder) / DISK_FILE_NAME

    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS encodings (key BLOB PRIMARY KEY, n_layers INTEGER,"
            " dim INTEGER, n_tokens INTEGER, truncated INTEGER, summaries BLOB, pooler BLOB)"
        )
        return connection

    @staticmethod
    def _key(namespace, text):
        digest = hashlib.blake2b(namespace.encode(), digest_size=20)
        digest.update(b"\0")
        digest.update(text.encode("utf-8"))
        return digest.digest()

    def get_many(self, namespace, texts):
        keys = {self._key(namespace, text): text for text in texts}
        found = {}
        connection = self._connect()
        try:
            key_list = list(keys)
            for start in range(0, len(key_list), 500):
                part = key_list[start : start + 500]
                rows = connection.execute(
                    "SELECT key, n_layers, dim, n_tokens, truncated, summaries, pooler FROM "
                    f"encodings WHERE key IN ({','.join('?' * len(part))})",
                    part,
                )
                for key, n_layers, dim, n_tokens, truncated, summaries, pooler in rows:
                    found[keys[key]] = TextEncoding(
                        np.frombuffer(summaries, dtype=np.float32).reshape(3, n_layers, dim),
                        None if pooler is None else np.frombuffer(pooler, dtype=np.float32),
                        int(n_tokens),
                        bool(truncated),
                    )
        finally:
            connection.close()
        return found

    def put_many(self, namespace, items):
        rows = [
            (
                self._key(namespace, text),
                entry.summaries.shape[1],
                entry.summaries.shape[2],
                entry.n_tokens,
                int(entry.truncated),
                np.ascontiguousarray(entry.summaries, dtype=np.float32).tobytes(),
                None if entry.pooler is None else entry.pooler.astype(np.float32).tobytes(),
            )
            for text, entry in items
        ]
        connection = self._connect()
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO encodings VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
        finally:
            connection.close()


MEMORY_CACHE = MemoryCache()


class _Layered(_ArrayInterface):
    """The memory cache in front of a disk cache."""

    shared_between_processes = True

    def __init__(self, memory, disk):
        self.memory, self.disk = memory, disk

    def get_many(self, namespace, texts):
        found = self.memory.get_many(namespace, texts)
        if len(found) < len(texts):
            from_disk = self.disk.get_many(namespace, [t for t in texts if t not in found])
            self.memory.put_many(namespace, from_disk.items())
            found.update(from_disk)
        return found

    def put_many(self, namespace, items):
        self.memory.put_many(namespace, items)
        self.disk.put_many(namespace, items)


def embedding_cache_for(value):
    """The cache for an already validated ``embedding_cache`` value, or None for no cache.

    "memory" is the process-wide bounded cache; a folder path adds a SQLite file there that
    processes share.
    """
    if value is None:
        return None
    memory = MEMORY_CACHE if MEMORY_CACHE.max_bytes > 0 else None
    if isinstance(value, str) and value == "memory":
        return memory
    disk = DiskCache(value)
    return disk if memory is None else _Layered(memory, disk)


def set_cache_limit(max_bytes):
    """Set the memory bound of the process-wide embedding cache.

    Parameters
    ----------
    max_bytes : int
        Upper bound in bytes; 0 turns in-memory caching off for every estimator.
        Least recently used entries are evicted when the bound is exceeded.
    """
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise ValueError(f"Got max_bytes={max_bytes!r} but expected an integer >= 0.")
    MEMORY_CACHE.resize(max_bytes)


def cache_info():
    """Statistics of the in-memory embedding cache.

    Returns
    -------
    info : dict
        ``hits`` and ``misses`` (texts looked up since the last clear), ``entries``,
        ``bytes`` used and ``max_bytes``.
    """
    return MEMORY_CACHE.info()


def clear_embedding_cache():
    """Empty the in-memory embedding cache."""
    MEMORY_CACHE.clear()
