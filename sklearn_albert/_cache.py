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
layout, an append-only index of text digests, and a lock file. Writers hold an exclusive
``fcntl`` lock while they look up again, encode what is still missing and append it, so two
workers never encode the same text twice. Readers never block: a text is visible once its
index record is written, after its vectors.

Entries live under a *namespace* that the caller computes: a hash of the model's content
fingerprint and of every setting that changes the forward pass. Nothing else needs
invalidating: a changed checkpoint has a new fingerprint.
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._pooling import Encodings

#: The precisions vectors may be kept in (see the module docstring for the error bound).
STORAGE_DTYPES = ("float16", "float32")

DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_SPILL_BYTES = 32 << 30
#: A block holds about this many bytes of vectors (at most MAX_BLOCK_ROWS texts).
BLOCK_BYTES = 32 << 20
MAX_BLOCK_ROWS = 4096
#: What an entry costs beside its vectors: its key in the index and its two scalars.
ENTRY_OVERHEAD_BYTES = 100
# An entry's place in memory is one int: its block's serial number, then its row.
ROW_BITS = 16
ROW_MASK = (1 << ROW_BITS) - 1

DISK_FOLDER_NAME = "sklearn_albert_cache"
DISK_FORMAT_VERSION = 1
DISK_BLOCK_ROWS = 1024
_RECORD = np.dtype([("key", "V16"), ("n_tokens", "<i8"), ("truncated", "u1"), ("pad", "V7")])


class _Layout(NamedTuple):
    """The shape of one namespace's entries: one column per (summary, hidden state)."""

    n_hidden_states: int
    dim: int
    has_pooler: bool
    storage_dtype: str

    @classmethod
    def of(cls, encodings, storage_dtype):
        _, _, n_hidden_states, dim = encodings.summaries.shape
        return cls(int(n_hidden_states), int(dim), encodings.pooler is not None, storage_dtype)

    @property
    def dtype(self):
        return np.dtype(self.storage_dtype)

    @property
    def n_columns(self):
        return 3 * self.n_hidden_states + int(self.has_pooler)

    @property
    def row_bytes(self):
        return self.n_columns * self.dim * self.dtype.itemsize

    def columns_for(self, layers, wanted):
        """Column indices of the wanted summaries of ``layers`` (then the pooler's)."""
        summary_ids, with_pooler = wanted
        columns = [s * self.n_hidden_states + layer for s in summary_ids for layer in layers]
        if self.has_pooler and with_pooler:
            columns.append(3 * self.n_hidden_states)
        return columns


#: The names ``lookup(kinds=...)`` accepts: the three summaries, in their order, and the pooler.
KINDS = ("cls", "mean", "max", "pooler")


def _wanted(kinds):
    """``(summary indices, pooler wanted)`` for a ``kinds`` argument of ``lookup``."""
    if kinds is None:
        return (0, 1, 2), True
    kinds = set(kinds)
    if not kinds <= set(KINDS):
        raise ValueError(f"Got kinds={sorted(kinds)!r} but expected a subset of {KINDS}.")
    return tuple(i for i, kind in enumerate(KINDS[:3]) if kind in kinds), "pooler" in kinds


def _check_storage_dtype(storage_dtype):
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(
            f"Got storage_dtype={storage_dtype!r} but expected one of {STORAGE_DTYPES}."
        )
    return np.dtype(storage_dtype)


#: Below this many values a numpy conversion is as quick as handing the array to torch.
TORCH_CAST_MIN_SIZE = 4096


def _torch_for(*arrays):
    """torch, when it is loaded and the arrays are large and writable enough to hand over."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    for array in arrays:
        if array.size < TORCH_CAST_MIN_SIZE or not array.flags.writeable:
            return None
    return torch


def _cast(values, dtype):
    """``values.astype(dtype)``, through torch's vectorised kernels when torch is loaded.

    numpy converts to and from float16 one value at a time: about 1.8 ms for the summaries
    of 32 ALBERT-base texts, against 0.15 ms in torch. Both round to nearest even (values
    beyond float16's range become inf, NaN stays NaN), so the results are the same bits.
    """
    dtype = np.dtype(dtype)
    if values.dtype == dtype:
        return values
    torch = _torch_for(values)
    if torch is None:
        with np.errstate(over="ignore"):  # values beyond the range become inf, as in torch
            return values.astype(dtype)
    source = torch.from_numpy(np.ascontiguousarray(values))
    return source.to(getattr(torch, dtype.name)).numpy()


def _cast_into(target, source):
    """``target[...] = source`` with a dtype conversion, through torch when it is loaded."""
    torch = _torch_for(target, source)
    if torch is None or not (target.flags.c_contiguous and source.flags.c_contiguous):
        target[...] = source
        return
    torch.from_numpy(target).copy_(torch.from_numpy(source))


def _fits_float16(columns):
    """Per text (axis 1), whether none of its float16 values is inf or NaN.

    Read from the exponent bits (all ones for inf and NaN): three times quicker than
    ``np.isfinite`` on float16.
    """
    exponent = np.uint16(0x7C00)
    return ~((columns.view(np.uint16) & exponent) == exponent).any(axis=(0, 2))


def _storable(encodings, dtype):
    """``(parts, fits)``: the vectors in ``dtype``, and which rows fit.

    ``parts`` are (n_columns, n, dim) arrays whose concatenation is the block's columns:
    the summaries' (a view, without a copy, when they come from :func:`rounded_batch`),
    then the pooler's, if any.
    """
    n, _, n_hidden_states, dim = encodings.summaries.shape
    summaries = _cast(np.moveaxis(encodings.summaries, 0, 2), dtype)
    parts = [summaries.reshape(3 * n_hidden_states, n, dim)]
    if encodings.pooler is not None:
        parts.append(_cast(encodings.pooler, dtype)[None])
    fits = np.ones(n, dtype=bool)
    for part in parts:
        if dtype == np.float16:
            fits &= _fits_float16(part)
        else:
            fits &= np.isfinite(part).all(axis=(0, 2))  # NaN fails too
    return parts, fits


def _joined(parts, rows):
    """The ``rows`` of the columns split in ``parts``, as one (n_columns, k, dim) array."""
    if len(parts) == 1:
        return parts[0][:, rows]
    return np.concatenate([part[:, rows] for part in parts], axis=0)


def rounded_as_stored(values, storage_dtype="float16"):
    """``values`` as the cache keeps them: rounded through ``storage_dtype``, row by row.

    The one definition of the rounding: the engine applies it where it encodes (on the
    GPU, or on the CPU stream of the batch, through :func:`rounded_batch`).

    Parameters
    ----------
    values : torch.Tensor or ndarray, float32
        Rows along the first axis; a tensor may live on any device.
    storage_dtype : {"float16", "float32"}, default="float16"
        The precision given to :meth:`MemoryCache.store`; "float32" changes nothing.

    Returns
    -------
    rounded : torch.Tensor or ndarray (as ``values``), float32
        A new array: each value rounded to the nearest ``storage_dtype`` value (ties to
        even) and back, except the rows holding a value ``storage_dtype`` cannot represent
        (beyond its range, or NaN), which stay unrounded since the cache does not keep them.
    """
    import torch

    dtype = _check_storage_dtype(storage_dtype)
    as_numpy = isinstance(values, np.ndarray)
    if as_numpy:
        values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    values = values.to(torch.float32)
    if dtype == np.float32:
        rounded = values.clone()
    else:
        rounded = values.to(getattr(torch, dtype.name)).to(torch.float32)
        unfit = ~torch.isfinite(rounded).flatten(1).all(dim=1)
        if bool(unfit.any()):
            rounded[unfit] = values[unfit]
    return rounded.numpy() if as_numpy else rounded


def rounded_batch(summaries, pooler, storage_dtype="float16"):
    """One batch's summaries and pooler output as the cache keeps them, ready to store.

    What the engine hands over for a batch it has just encoded (on the GPU, or on the
    CPU stream of the batch). When every value fits float16, the arrays are float16
    (exactly the values :func:`rounded_as_stored` gives, at half the size), and
    ``summaries`` lies in memory as the cache's columns, (3, n_hidden_states, n, dim),
    seen as (n, 3, n_hidden_states, dim): :meth:`MemoryCache.store` then copies them into
    a block without a conversion or a transposition. Otherwise each array is
    :func:`rounded_as_stored` (float32).

    Parameters
    ----------
    summaries : torch.Tensor of shape (n, 3, n_hidden_states, dim), float32
    pooler : torch.Tensor of shape (n, dim), float32, or None
    storage_dtype : {"float16", "float32"}, default="float16"

    Returns
    -------
    summaries, pooler : torch.Tensor (or None for no pooler)
        float16 as described, or float32.
    """
    import torch

    if _check_storage_dtype(storage_dtype) == np.float16:
        n, n_summaries, n_states, dim = summaries.shape
        columns = torch.empty(
            (n_summaries, n_states, n, dim), dtype=torch.float16, device=summaries.device
        )
        columns.copy_(summaries.permute(1, 2, 0, 3))
        half_pooler = None if pooler is None else pooler.to(torch.float16)
        # inf where a value is beyond float16's range, NaN where it was NaN
        if bool(torch.isfinite(columns).all()) and (
            half_pooler is None or bool(torch.isfinite(half_pooler).all())
        ):
            return columns.permute(2, 0, 1, 3), half_pooler
    return (
        rounded_as_stored(summaries, storage_dtype),
        None if pooler is None else rounded_as_stored(pooler, storage_dtype),
    )


def _empty_encodings(n_layers, dim=0, has_pooler=False):
    return Encodings(
        np.empty((0, 3, n_layers, dim), dtype=np.float32),
        np.empty((0, dim), dtype=np.float32) if has_pooler else None,
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=bool),
    )


def _assemble(layout, layers, wanted, gathered, n_tokens, truncated):
    """Encodings from the columns gathered for :meth:`_Layout.columns_for`.

    ``summaries`` is a (n, 3, n_layers, dim) view of a (3, n_layers, n, dim) array: the
    float32 conversion is then one contiguous pass per summary, and what callers index (a
    summary and some layers of every text) stays cheap. Summaries (and a pooler) not in
    ``wanted`` are left unset, so that a lookup converts only what the caller will read.
    """
    summary_ids, with_pooler = wanted
    n_layers, n_found = len(layers), gathered.shape[1]
    full = np.empty((3, n_layers, n_found, layout.dim), dtype=np.float32)
    for position, summary in enumerate(summary_ids):
        _cast_into(full[summary], gathered[position * n_layers : (position + 1) * n_layers])
    pooler = None
    if layout.has_pooler:
        pooler = _cast(gathered[-1], np.float32) if with_pooler else np.empty_like(full[0, 0])
    return Encodings(np.moveaxis(full, 2, 0), pooler, n_tokens, truncated)


def _groups(block_ids):
    """``(block id, positions)`` pairs: the positions in ``block_ids`` of each block."""
    order = np.argsort(block_ids, kind="stable")
    ids, starts = np.unique(block_ids[order], return_index=True)
    return zip(ids.tolist(), np.split(order, starts[1:]))


def _read_columns(fd, base, capacity, dim, dtype, columns, rows):
    """Read ``rows`` of ``columns`` of a block stored at ``base`` in a file.

    A block is (n_columns, capacity, dim) ``dtype``, row-major. One read per column covers the
    span of the rows asked for; the page cache, not this process, holds the file.
    """
    rows = np.asarray(rows, dtype=np.intp)
    first, last = int(rows.min()), int(rows.max()) + 1
    itemsize = dtype.itemsize
    span = np.empty((len(columns), last - first, dim), dtype=dtype)
    for position, column in enumerate(columns):
        offset = base + (column * capacity + first) * dim * itemsize
        buffer = memoryview(span[position]).cast("B")
        if os.preadv(fd, [buffer], offset) != buffer.nbytes:
            raise OSError(f"The embedding cache file is shorter than expected (fd {fd}).")
    return span[:, rows - first]


def _write_columns(fd, base, capacity, columns, first_row):
    """Write (n_columns, k, dim) vectors into rows ``first_row:first_row + k`` of a block."""
    _, _, dim = columns.shape
    itemsize = columns.dtype.itemsize
    for column in range(columns.shape[0]):
        offset = base + (column * capacity + first_row) * dim * itemsize
        os.pwrite(fd, np.ascontiguousarray(columns[column]).tobytes(), offset)


class _CacheBase:
    """Hit and miss counts, and the re-lookup rule of :meth:`writing`."""

    def __init__(self):
        self._lock = threading.RLock()
        self._local = threading.local()
        self.hits = 0
        self.misses = 0

    def _count(self, n_found, n_texts):
        with self._lock:
            if getattr(self._local, "writing", 0):
                # A re-lookup inside ``writing``: these texts were counted as misses by the
                # lookup before it; those found now were written by someone else meanwhile.
                self.hits += n_found
                self.misses = max(0, self.misses - n_found)
            else:
                self.hits += n_found
                self.misses += n_texts - n_found

    @contextlib.contextmanager
    def writing(self, namespace):
        """Held while the caller looks up again, encodes the misses and stores them.

        Inside it, :meth:`lookup` is a re-lookup of texts already counted as misses: a text
        found then counts as a hit instead, one not found is not counted twice.

        Parameters
        ----------
        namespace : str
            The namespace the caller is about to write.
        """
        self._local.writing = getattr(self._local, "writing", 0) + 1
        try:
            with self._exclusive(namespace):
                yield self
        finally:
            self._local.writing -= 1

    def _exclusive(self, namespace):
        return contextlib.nullcontext()


class _Block:
    """Up to ``capacity`` texts of one namespace, columnar: (n_columns, capacity, dim)."""

    def __init__(self, serial, namespace, layout, capacity):
        self.serial = serial
        self.namespace = namespace
        self.layout = layout
        self.capacity = capacity
        self.data = np.empty((layout.n_columns, capacity, layout.dim), dtype=layout.dtype)
        self.n_tokens = np.empty(capacity, dtype=np.int64)
        self.truncated = np.empty(capacity, dtype=bool)
        self.texts = []
        self.spill_offset = None  # where it lives in the spill file once written there

    @property
    def nbytes(self):
        return self.layout.row_bytes * self.capacity

    @property
    def full(self):
        return len(self.texts) == self.capacity

    def read(self, spill, columns, rows):
        if self.data is not None:
            return self.data[np.ix_(columns, rows)]
        return _read_columns(
            spill.fd,
            self.spill_offset,
            self.capacity,
            self.layout.dim,
            self.layout.dtype,
            columns,
            rows,
        )


class _SpillFile:
    """An unnamed temporary file that holds the blocks memory could not."""

    def __init__(self, folder=None):
        self.folder = folder or tempfile.gettempdir()
        self._file = tempfile.TemporaryFile(prefix="sklearn_albert_spill_", dir=self.folder)
        self.fd = self._file.fileno()
        self.size = 0
        self._free = []  # (offset, n_bytes) of regions of forgotten blocks

    def allocate(self, n_bytes):
        for index, (offset, size) in enumerate(self._free):
            if size >= n_bytes:
                del self._free[index]
                if size > n_bytes:
                    self._free.append((offset + n_bytes, size - n_bytes))
                return offset
        offset, self.size = self.size, self.size + n_bytes
        return offset

    def release(self, offset, n_bytes):
        self._free.append((offset, n_bytes))

    def close(self):
        self._file.close()


def _default_spill_bound(folder):
    """32 GiB, or half the free space in the spill folder if that is less."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 0
    return min(DEFAULT_MAX_SPILL_BYTES, free // 2)


class MemoryCache(_CacheBase):
    """The process-wide store: blocks in RAM up to a bound, then in a spill file.

    Parameters
    ----------
    max_bytes : int, default=1 GiB
        Bound on the RAM held by blocks and index; 0 turns the cache off (nothing is kept,
        lookups still count misses).
    max_spill_bytes : int or None, default=None
        Bound on the spill file; None means 32 GiB or half the free space of the temporary
        folder, whichever is less, measured when the spill file is created. 0 never spills:
        blocks beyond ``max_bytes`` are forgotten.
    block_rows : int or None, default=None
        Texts per block; None sizes blocks at about 32 MB of vectors (at most 4,096 texts,
        and at most a quarter of ``max_bytes``).
    """

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES, *, max_spill_bytes=None, block_rows=None):
        super().__init__()
        self.max_bytes = max_bytes
        self.max_spill_bytes = max_spill_bytes
        self.block_rows = block_rows
        self._reset()

    def _reset(self):
        # namespace -> {text: block serial << ROW_BITS | row}: one int per entry, so that a
        # lookup turns into arrays at once.
        self._index = {}
        self._layouts = {}  # namespace -> _Layout
        self._open = {}  # namespace -> the block still being filled
        self._blocks = OrderedDict()  # serial -> block, least recently used first
        self._next_serial = 0
        self._ram_bytes = 0
        self._spill_bytes = 0
        self._spill = None

    # ------------------------------------------------------------------ the interface

    def lookup(self, namespace, texts, layers, *, kinds=None):
        """Find cached texts and return their vectors for ``layers``.

        Parameters
        ----------
        namespace : str
            Names the model and the settings that change the forward pass.
        texts : list of str
        layers : tuple of int
            Non-negative indices into the hidden states.
        kinds : collection of {"cls", "mean", "max", "pooler"}, default=None
            What the caller will read; None means all. The values of other summaries (and
            of the pooler) in the result are unspecified: leaving them out skips their
            reading and conversion, most of a lookup's cost.

        Returns
        -------
        found : ndarray of shape (len(texts),), bool
        encodings : Encodings
            Of the found texts, in their order in ``texts``; ``summaries`` has shape
            ``(found.sum(), 3, len(layers), dim)``, float32 (a view of a summary-major
            array).
        """
        layers = tuple(int(layer) for layer in layers)
        with self._lock:
            index = self._index.get(namespace)
            if index is None or self.max_bytes == 0:
                self._count(0, len(texts))
                return np.zeros(len(texts), dtype=bool), _empty_encodings(len(layers))
            layout = self._layouts[namespace]
            codes = np.fromiter(
                (index.get(text, -1) for text in texts), dtype=np.int64, count=len(texts)
            )
            found = codes >= 0
            codes = codes[found]
            rows = codes & ROW_MASK
            wanted = _wanted(kinds)
            columns = layout.columns_for(layers, wanted)
            gathered = np.empty((len(columns), len(codes), layout.dim), dtype=layout.dtype)
            n_tokens = np.empty(len(codes), dtype=np.int64)
            truncated = np.empty(len(codes), dtype=bool)
            for serial, positions in _groups(codes >> ROW_BITS):
                block = self._blocks[serial]
                block_rows = rows[positions]
                gathered[:, positions] = block.read(self._spill, columns, block_rows)
                n_tokens[positions] = block.n_tokens[block_rows]
                truncated[positions] = block.truncated[block_rows]
                self._blocks.move_to_end(serial)
            self._count(len(codes), len(texts))
            return found, _assemble(layout, layers, wanted, gathered, n_tokens, truncated)

    def store(self, namespace, texts, encodings, *, storage_dtype="float16"):
        """Keep the full encodings (all hidden states) of ``texts``.

        Texts already kept, and texts whose vectors exceed the storage range, are skipped.
        Least recently used blocks move to the spill file when RAM is over its bound.

        Parameters
        ----------
        namespace : str
        texts : list of str
        encodings : Encodings
            Rows aligned with ``texts``, every hidden state, float32.
        storage_dtype : {"float16", "float32"}, default="float16"
            The precision of the kept vectors, fixed per namespace by its first store.
            float16 halves the memory and is within 4.9e-4 relative of float32; callers
            that compute in float32 and want exact reuse pass "float32".
        """
        if not len(texts):
            return
        dtype = _check_storage_dtype(storage_dtype)
        layout = _Layout.of(encodings, storage_dtype)
        with self._lock:
            if self.max_bytes == 0:
                return
            known = self._layouts.setdefault(namespace, layout)
            if known != layout:
                raise ValueError(
                    f"Got encodings shaped {layout} for namespace {namespace!r}, which holds "
                    f"{known}; a namespace must name one model."
                )
            index = self._index.setdefault(namespace, {})
            new, seen = [], set()
            for position, text in enumerate(texts):
                if text not in index and text not in seen:
                    seen.add(text)
                    new.append(position)
            if not new:
                return
            parts, fits = _storable(_rows_of(encodings, new), dtype)
            if not fits.all():
                new = [position for position, fit in zip(new, fits) if fit]
                parts = [part[:, fits] for part in parts]
            done = 0
            while done < len(new):
                block = self._open_block(namespace, layout)
                first = len(block.texts)
                take = min(len(new) - done, block.capacity - first)
                positions = new[done : done + take]
                column = 0
                for part in parts:
                    block.data[column : column + len(part), first : first + take] = part[
                        :, done : done + take
                    ]
                    column += len(part)
                block.n_tokens[first : first + take] = encodings.n_tokens[positions]
                block.truncated[first : first + take] = encodings.truncated[positions]
                code = block.serial << ROW_BITS
                for row, position in enumerate(positions, start=first):
                    text = texts[position]
                    block.texts.append(text)
                    index[text] = code | row
                    self._ram_bytes += ENTRY_OVERHEAD_BYTES + len(text)
                self._blocks.move_to_end(block.serial)
                done += take
            self._make_room()

    # ------------------------------------------------------------------ blocks

    def _capacity(self, layout):
        if self.block_rows is not None:
            return min(self.block_rows, ROW_MASK + 1)
        target = min(BLOCK_BYTES, max(self.max_bytes // 4, 1))
        return int(np.clip(target // layout.row_bytes, 1, MAX_BLOCK_ROWS))

    def _open_block(self, namespace, layout):
        block = self._open.get(namespace)
        if block is None or block.full:
            block = _Block(self._next_serial, namespace, layout, self._capacity(layout))
            self._next_serial += 1
            self._open[namespace] = block
            self._blocks[block.serial] = block
            self._ram_bytes += block.nbytes
        return block

    def _make_room(self):
        """Spill, then forget, least recently used blocks until both bounds hold."""
        while self._ram_bytes > self.max_bytes:
            block = next((b for b in self._blocks.values() if b.data is not None), None)
            if block is None:
                break  # only the index is left; it shrinks as blocks are forgotten below
            self._spill_block(block)
        while self._ram_bytes > self.max_bytes and self._blocks:
            self._forget(next(iter(self._blocks.values())))

    def _spill_block(self, block):
        if self._open.get(block.namespace) is block:
            del self._open[block.namespace]  # a spilled block takes no more rows
        bound = self._spill_bound()
        while self._spill_bytes + block.nbytes > bound:
            oldest = next((b for b in self._blocks.values() if b.data is None), None)
            if oldest is None:
                self._forget(block)
                return
            self._forget(oldest)
        if self._spill is None:
            self._spill = _SpillFile()
        offset = self._spill.allocate(block.nbytes)
        os.pwrite(self._spill.fd, block.data, offset)
        block.spill_offset, block.data = offset, None
        self._ram_bytes -= block.nbytes
        self._spill_bytes += block.nbytes

    def _spill_bound(self):
        if self.max_spill_bytes is None:
            folder = self._spill.folder if self._spill is not None else tempfile.gettempdir()
            self.max_spill_bytes = _default_spill_bound(folder)
        return self.max_spill_bytes

    def _forget(self, block, *, release=True):
        """Drop a block and its entries, wherever it lives."""
        del self._blocks[block.serial]
        if self._open.get(block.namespace) is block:
            del self._open[block.namespace]
        index = self._index[block.namespace]
        for text in block.texts:
            del index[text]
            self._ram_bytes -= ENTRY_OVERHEAD_BYTES + len(text)
        if block.data is not None:
            self._ram_bytes -= block.nbytes
        else:
            if release:
                self._spill.release(block.spill_offset, block.nbytes)
            self._spill_bytes -= block.nbytes

    # ------------------------------------------------------------------ management

    def resize(self, max_bytes, max_spill_bytes=None):
        """Change the bounds; blocks beyond them spill or are forgotten at once."""
        with self._lock:
            self.max_bytes = max_bytes
            if max_spill_bytes is not None:
                self.max_spill_bytes = max_spill_bytes
            if max_bytes == 0:
                self.clear(counts=False)
                return
            self._make_room()
            while self._spill_bytes > self._spill_bound():
                self._forget(next(b for b in self._blocks.values() if b.data is None))

    def clear(self, *, counts=True):
        """Forget every entry (RAM and spill file) and, by default, the hit and miss counts."""
        with self._lock:
            if self._spill is not None:
                self._spill.close()
            self._reset()
            if counts:
                self.hits = self.misses = 0

    def _after_fork(self):
        # A forked child must not write into the parent's spill file: it keeps the RAM
        # blocks (copy-on-write) and forgets the spilled ones.
        self._lock = threading.RLock()
        self._local = threading.local()
        for block in [b for b in self._blocks.values() if b.data is None]:
            self._forget(block, release=False)
        self._spill = None

    def info(self):
        with self._lock:
            spilled = [b for b in self._blocks.values() if b.data is None]
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": sum(len(index) for index in self._index.values()),
                "bytes": self._ram_bytes,
                "max_bytes": self.max_bytes,
                "spilled_entries": sum(len(b.texts) for b in spilled),
                "spill_bytes": self._spill_bytes,
                "max_spill_bytes": self.max_spill_bytes,
            }


def _rows_of(encodings, positions):
    """The encodings of the texts at ``positions`` (a view when they are all of them)."""
    if len(positions) == len(encodings.n_tokens):
        return encodings
    return Encodings(
        encodings.summaries[positions],
        None if encodings.pooler is None else encodings.pooler[positions],
        encodings.n_tokens[positions],
        encodings.truncated[positions],
    )


# ---------------------------------------------------------------------- the disk store


def _digest(text):
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _DiskNamespace:
    """This process's view of one namespace's files: their index, read incrementally."""

    def __init__(self, folder):
        self.folder = folder
        self.layout = None
        self.block_rows = None
        self.slots = {}  # digest -> slot
        self.n_tokens = np.empty(0, dtype=np.int64)
        self.truncated = np.empty(0, dtype=bool)
        self.n_read = 0
        self.index_fd = None
        self.data_fd = None
        self.lock_fd = None
        self.lock_depth = 0

    def open(self):
        """Open the files once ``meta.json`` exists; False while nothing was ever written."""
        if self.layout is not None:
            return True
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            return False
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != DISK_FORMAT_VERSION:
            raise ValueError(
                f"The embedding cache in {self.folder} has format version "
                f"{meta.get('version')!r}; this sklearn_albert reads version "
                f"{DISK_FORMAT_VERSION}. Delete the folder, or use another embedding_cache."
            )
        self.layout = _Layout(
            meta["n_hidden_states"], meta["dim"], meta["has_pooler"], meta["storage_dtype"]
        )
        self.block_rows = meta["block_rows"]
        self.index_fd = os.open(self.folder / "index.bin", os.O_RDWR | os.O_CREAT, 0o644)
        self.data_fd = os.open(self.folder / "data.bin", os.O_RDWR | os.O_CREAT, 0o644)
        return True

    def refresh(self):
        """Read index records other processes appended since the last call."""
        n_complete = os.fstat(self.index_fd).st_size // _RECORD.itemsize
        if n_complete <= self.n_read:
            return
        size = (n_complete - self.n_read) * _RECORD.itemsize
        raw = os.pread(self.index_fd, size, self.n_read * _RECORD.itemsize)
        records = np.frombuffer(raw, dtype=_RECORD)
        self.slots.update(zip(records["key"].tolist(), range(self.n_read, n_complete)))
        self.n_tokens = np.concatenate([self.n_tokens, records["n_tokens"]])
        self.truncated = np.concatenate([self.truncated, records["truncated"].astype(bool)])
        self.n_read = n_complete

    def block_base(self, block):
        return block * self.layout.row_bytes * self.block_rows

    def close(self):
        for fd in (self.index_fd, self.data_fd, self.lock_fd):
            if fd is not None:
                os.close(fd)
        self.index_fd = self.data_fd = self.lock_fd = None


class DiskCache(_CacheBase):
    """A store in a folder that processes share (joblib workers, later sessions).

    Parameters
    ----------
    folder : str or path-like
        Where to keep it; entries go to ``folder/sklearn_albert_cache/<namespace hash>/``.
    """

    def __init__(self, folder):
        super().__init__()
        self.root = Path(folder) / DISK_FOLDER_NAME
        self._namespaces = {}

    def _namespace(self, namespace):
        state = self._namespaces.get(namespace)
        if state is None:
            name = hashlib.blake2b(namespace.encode(), digest_size=16).hexdigest()
            state = self._namespaces[namespace] = _DiskNamespace(self.root / name)
        return state

    def lookup(self, namespace, texts, layers, *, kinds=None):
        """Find cached texts and return their vectors for ``layers``.

        Same parameters and returns as :meth:`MemoryCache.lookup`.
        """
        layers = tuple(int(layer) for layer in layers)
        with self._lock:
            state = self._namespace(namespace)
            if not state.open():
                self._count(0, len(texts))
                return np.zeros(len(texts), dtype=bool), _empty_encodings(len(layers))
            state.refresh()
            slots = np.fromiter(
                (state.slots.get(_digest(text), -1) for text in texts),
                dtype=np.int64,
                count=len(texts),
            )
            found = slots >= 0
            slots = slots[found]
            wanted = _wanted(kinds)
            columns = state.layout.columns_for(layers, wanted)
            gathered = np.empty((len(columns), len(slots), state.layout.dim), state.layout.dtype)
            for block, positions in _groups(slots // state.block_rows):
                gathered[:, positions] = _read_columns(
                    state.data_fd,
                    state.block_base(block),
                    state.block_rows,
                    state.layout.dim,
                    state.layout.dtype,
                    columns,
                    slots[positions] % state.block_rows,
                )
            self._count(len(slots), len(texts))
            encodings = _assemble(
                state.layout,
                layers,
                wanted,
                gathered,
                state.n_tokens[slots],
                state.truncated[slots],
            )
            return found, encodings

    def store(self, namespace, texts, encodings, *, storage_dtype="float16"):
        """Append the encodings of ``texts`` not already on disk.

        Takes the namespace's exclusive lock unless this process holds it already (inside
        :meth:`writing`). Same parameters as :meth:`MemoryCache.store`.
        """
        if not len(texts):
            return
        dtype = _check_storage_dtype(storage_dtype)
        layout = _Layout.of(encodings, storage_dtype)
        with self._lock, self._exclusive(namespace):
            state = self._namespace(namespace)
            if not state.open():
                self._create(state, layout)
            if state.layout != layout:
                raise ValueError(
                    f"Got encodings shaped {layout} for namespace {namespace!r}, which holds "
                    f"{state.layout} in {state.folder}; a namespace must name one model."
                )
            state.refresh()
            digests = [_digest(text) for text in texts]
            new, seen = [], set()
            for position, digest in enumerate(digests):
                if digest not in state.slots and digest not in seen:
                    seen.add(digest)
                    new.append(position)
            parts, fits = _storable(_rows_of(encodings, new), dtype)
            new = [position for position, fit in zip(new, fits) if fit]
            self._append(state, [digests[p] for p in new], _joined(parts, fits), encodings, new)
            self._add_writes(state, len(texts))

    def _append(self, state, digests, columns, encodings, positions):
        first = state.n_read
        # A writer that died mid-record left a partial tail: cut it before appending.
        os.ftruncate(state.index_fd, first * _RECORD.itemsize)
        done = 0
        while done < len(digests):
            slot = first + done
            block, row = divmod(slot, state.block_rows)
            take = min(len(digests) - done, state.block_rows - row)
            _write_columns(
                state.data_fd,
                state.block_base(block),
                state.block_rows,
                columns[:, done : done + take],
                row,
            )
            done += take
        records = np.zeros(len(digests), dtype=_RECORD)
        records["key"] = np.array(digests, dtype="V16") if digests else records["key"]
        records["n_tokens"] = encodings.n_tokens[positions]
        records["truncated"] = encodings.truncated[positions]
        # Vectors first, then their index records: a reader never sees one without the other.
        os.pwrite(state.index_fd, records.tobytes(), first * _RECORD.itemsize)
        state.refresh()

    def _create(self, state, layout):
        meta = {
            "version": DISK_FORMAT_VERSION,
            "n_hidden_states": layout.n_hidden_states,
            "dim": layout.dim,
            "has_pooler": layout.has_pooler,
            "block_rows": DISK_BLOCK_ROWS,
            "storage_dtype": layout.storage_dtype,
        }
        partial = state.folder / "meta.json.partial"
        partial.write_text(json.dumps(meta))
        os.replace(partial, state.folder / "meta.json")
        state.open()

    def _add_writes(self, state, n_texts):
        path = state.folder / "writes.txt"
        before = int(path.read_text()) if path.exists() else 0
        partial = state.folder / "writes.txt.partial"
        partial.write_text(str(before + n_texts))
        os.replace(partial, path)

    @contextlib.contextmanager
    def _exclusive(self, namespace):
        """The namespace's lock file, held exclusively (re-entrant within this process)."""
        with self._lock:
            state = self._namespace(namespace)
            if state.lock_depth == 0:
                state.folder.mkdir(parents=True, exist_ok=True)
                if state.lock_fd is None:
                    state.lock_fd = os.open(state.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
                _lock_file(state.lock_fd)
            state.lock_depth += 1
        try:
            yield
        finally:
            with self._lock:
                state.lock_depth -= 1
                if state.lock_depth == 0:
                    _unlock_file(state.lock_fd)

    def info(self):
        """Entries, bytes and writes of every namespace in the folder, and this process's counts."""
        with self._lock:
            entries = n_bytes = writes = 0
            namespaces = sorted(self.root.glob("*/meta.json")) if self.root.exists() else []
            for meta in namespaces:
                folder = meta.parent
                entries += (folder / "index.bin").stat().st_size // _RECORD.itemsize
                n_bytes += (folder / "data.bin").stat().st_size
                if (folder / "writes.txt").exists():
                    writes += int((folder / "writes.txt").read_text())
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": entries,
                "bytes": n_bytes,
                "writes": writes,
                "namespaces": len(namespaces),
                "folder": str(self.root),
            }

    def close(self):
        with self._lock:
            for state in self._namespaces.values():
                state.close()
            self._namespaces.clear()


try:
    import fcntl

    def _lock_file(fd):
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd):
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _lock_file(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue

    def _unlock_file(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


# ---------------------------------------------------------------------- process-wide state

MEMORY_CACHE = MemoryCache()
_DISK_CACHES = {}
_DISK_CACHES_LOCK = threading.Lock()


def _after_fork_in_child():
    global _DISK_CACHES_LOCK
    MEMORY_CACHE._after_fork()
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
