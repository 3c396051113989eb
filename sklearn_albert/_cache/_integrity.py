"""What the cache trusts: checksums, verified writes and reads, and the step-aside rule.

A cache may only cost recomputation, never a wrong vector or a failed ``transform``:

* Every write is checked for every byte (:func:`write_all` loops over short writes and
  raises when the file takes no more), and what a store writes becomes visible only after
  all of it was written.
* Every read from a file is checked: a short read is damage, not an exception
  (:func:`read_columns` returns None), and each (row, column) vector carries a checksum
  (:func:`checksums`) that the reader compares for exactly the columns it read.
* Damage and I/O errors (a full disk, a file size limit, a read-only or vanished folder,
  a planted link) make the cache *step aside*: the entries concerned are dropped, the
  texts are encoded again, and :class:`StepAside` warns once per namespace and fault with
  :class:`EmbeddingCacheWarning`.

The checksum
------------
A multilinear hash of a vector's 32-bit words (16-bit where a row's bytes are not a
multiple of 4), summed modulo 2**64 in numpy, plus a salt drawn from the slot and column
the vector belongs to::

    h = salt(slot, column) + sum_i m_i * w_i   (mod 2**64)

Each multiplier ``m_i`` is odd and its low 32 bits are ``2 i + 1``, so ``m_i - m_j`` is not
a multiple of 2**32 for distinct positions. That makes it catch, with certainty:

* any single flipped bit (``m_i * 2**b`` is never 0 modulo 2**64 for an odd ``m_i``);
* two words swapped within a vector (``(m_i - m_j) (w_j - w_i)`` has fewer than 64 factors
  of two);
* a vector read from another slot or column (the salt differs), so a block shifted or
  reordered in the file is caught;

and by chance (about 2**-64 per vector) zeroed regions, holes and other random damage.
It is no defence against a deliberately crafted file: anyone who can write the cache folder
can compute matching checksums. A cache folder must be writable only by those whose
vectors you would accept (see ``docs/caching.rst``).
"""

import errno
import os
import threading
import warnings

import numpy as np

#: Whether lookups verify checksums. Only benchmarks switch it off, to measure its cost.
VERIFY = True

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class EmbeddingCacheWarning(UserWarning):
    """The embedding cache stepped aside: an I/O error or a damaged file cost a recomputation.

    Raised at most once per cache namespace and kind of fault. The texts concerned were
    encoded again, so results are unaffected; the message says what went wrong and where.
    """


class Damaged(Exception):
    """A cache file is not what the cache wrote: the caller drops what it read and recomputes."""


def _mix(values):
    """splitmix64's finaliser, elementwise on a uint64 array: a fixed, well-spread map."""
    values = np.asarray(values, dtype=np.uint64)
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


# Filled on first use per row width; two threads computing the same entry store equal arrays.
_MULTIPLIERS = {}


def _multipliers(n_words):
    """The fixed multipliers of the first ``n_words`` positions (see the module docstring)."""
    multipliers = _MULTIPLIERS.get(n_words)
    if multipliers is None:
        positions = np.arange(n_words, dtype=np.uint64)
        high = _mix(positions + np.uint64(1)) & np.uint64(0xFFFFFFFF00000000)
        multipliers = _MULTIPLIERS[n_words] = high | (np.uint64(2) * positions + np.uint64(1))
    return multipliers


def salts(slots, columns):
    """(len(columns), len(slots)) uint64: what ties a vector to its slot and column."""
    slots = np.asarray(slots, dtype=np.uint64)
    columns = np.asarray(columns, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix(slots[None, :] * _GOLDEN + (columns[:, None] + np.uint64(1)))


def _words(values):
    """The vectors of ``values`` (..., dim) as unsigned words, one row of words per vector."""
    values = np.ascontiguousarray(values)
    row_bytes = values.shape[-1] * values.dtype.itemsize
    word = np.uint32 if row_bytes % 4 == 0 else np.uint16
    return values.view(np.uint8).reshape(*values.shape[:-1], row_bytes).view(word)


#: Vectors hashed at a time: bounds the uint64 temporary to about 32 MB.
_CHUNK_WORDS = 1 << 22


def checksums(values, slots, columns):
    """The checksum of each vector of ``values``.

    Parameters
    ----------
    values : ndarray of shape (len(columns), len(slots), dim)
        float16 or float32 vectors, as stored.
    slots : array-like of int
        The slot (row in the store) of each vector's text.
    columns : array-like of int
        The column (summary and hidden state) of each row of ``values``.

    Returns
    -------
    sums : ndarray of shape (len(columns), len(slots)), uint64
    """
    words = _words(values)
    n_words = words.shape[-1]
    flat = words.reshape(-1, n_words)
    multipliers = _multipliers(n_words)
    sums = np.empty(len(flat), dtype=np.uint64)
    step = max(1, _CHUNK_WORDS // max(n_words, 1))
    for start in range(0, len(flat), step):
        chunk = flat[start : start + step].astype(np.uint64)
        sums[start : start + step] = chunk @ multipliers  # wraps modulo 2**64
    with np.errstate(over="ignore"):
        return sums.reshape(words.shape[:-1]) + salts(slots, columns)


def record_checksums(records, slots):
    """The checksum of each index record's bytes but its last 8 (where the checksum goes)."""
    raw = np.ascontiguousarray(records).view(np.uint8).reshape(len(records), -1)[:, :-8]
    return checksums(raw[None], slots, [0])[0]


def write_all(fd, data, offset):
    """Write every byte of ``data`` at ``offset``, looping over short writes.

    Raises
    ------
    OSError
        Where the file takes no more (a full disk, a file size limit), among others.
    """
    view = memoryview(data).cast("B")
    while len(view):
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "the file took no more bytes")
        view, offset = view[written:], offset + written


def read_exact(fd, buffer, offset):
    """Fill ``buffer`` from ``offset``; False when the file ends first (damage)."""
    view = memoryview(buffer).cast("B")
    while len(view):
        n_read = os.preadv(fd, [view], offset)
        if n_read <= 0:
            return False
        view, offset = view[n_read:], offset + n_read
    return True


def read_columns(fd, base, capacity, dim, dtype, columns, rows):
    """Read ``rows`` of ``columns`` of a block stored at ``base`` in a file.

    A block is (n_columns, capacity, dim) ``dtype``, row-major. One read per column covers the
    span of the rows asked for; the page cache, not this process, holds the file.

    Returns
    -------
    values : ndarray of shape (len(columns), len(rows), dim), or None
        None when the file is shorter than the block (damage).
    """
    rows = np.asarray(rows, dtype=np.intp)
    first, last = int(rows.min()), int(rows.max()) + 1
    itemsize = dtype.itemsize
    span = np.empty((len(columns), last - first, dim), dtype=dtype)
    for position, column in enumerate(columns):
        offset = base + (column * capacity + first) * dim * itemsize
        if not read_exact(fd, span[position], offset):
            return None
    return span[:, rows - first]


def write_columns(fd, base, capacity, columns, first_row):
    """Write (n_columns, k, dim) vectors into rows ``first_row:first_row + k`` of a block."""
    _, _, dim = columns.shape
    itemsize = columns.dtype.itemsize
    for column in range(columns.shape[0]):
        offset = base + (column * capacity + first_row) * dim * itemsize
        write_all(fd, np.ascontiguousarray(columns[column]), offset)


def fault_of(error):
    """A short name for what went wrong: the errno's name, or ``damaged``."""
    if isinstance(error, Damaged):
        return "damaged"
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "link"
    if isinstance(error, OSError) and error.errno is not None:
        return errno.errorcode.get(error.errno, str(error.errno))
    return type(error).__name__


class StepAside:
    """Warns once per (namespace, fault) that the cache stepped aside, and why."""

    def __init__(self):
        self._warned = set()
        self._lock = threading.Lock()

    def warn(self, where, error, what):
        """Warn, unless already done for this place and this kind of fault.

        Parameters
        ----------
        where : str
            The store and namespace (a folder, "memory").
        error : BaseException
            What happened.
        what : str
            What the cache did about it, e.g. "these texts are encoded again".
        """
        fault = fault_of(error)
        with self._lock:
            if (where, fault) in self._warned:
                return
            self._warned.add((where, fault))
        if fault == "link":
            cause = "a symbolic link was planted where the cache keeps its files"
        else:
            cause = str(error) or fault
        warnings.warn(
            f"The embedding cache at {where} stepped aside ({cause}); {what}. Results are "
            "unaffected; only the time to encode those texts again is lost.",
            EmbeddingCacheWarning,
            stacklevel=4,
        )

    def reset(self):
        with self._lock:
            self._warned.clear()

    def after_fork(self):
        """In a forked child: the parent's threads hold nothing here."""
        self._lock = threading.Lock()
