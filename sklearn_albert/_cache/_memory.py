"""The process-wide store: blocks of texts in RAM up to a bound, then in a spill file.

Blocks are columnar, (n_columns, capacity, dim), so that a lookup reads only the columns it
asks for. Beyond ``max_bytes`` the least recently used blocks are written to an unnamed
temporary file (removed by the operating system when the process ends, even if it crashes)
and read back with plain file reads, so they sit in the page cache, not in the process's
resident memory. Beyond the spill file's own bound, the least recently used are forgotten.

RAM blocks need no checksums. A spilled block keeps the checksum of each of its vectors in
RAM (8 bytes per vector, 1/192 of an ALBERT-base float16 block, outside ``max_bytes``: 32 MB
for 100,000 spilled texts) and a read verifies those it reads; a short read or a mismatch
forgets the block, warns once, and its texts are encoded again. A spill write that fails (a
full or vanished temporary folder, a file size limit) forgets the block being written, so
nothing half-written stays reachable.
"""

import shutil
import tempfile
from collections import OrderedDict

import numpy as np

from . import _integrity
from ._base import CacheBase
from ._integrity import Damaged, checksums, read_columns, write_all
from ._layout import (
    Layout,
    assemble,
    check_storage_dtype,
    empty_encodings,
    groups,
    rows_of,
    storable,
    wanted_columns,
)

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
        self.sums = None  # (n_columns, capacity) checksums, once spilled

    @property
    def nbytes(self):
        return self.layout.row_bytes * self.capacity

    @property
    def full(self):
        return len(self.texts) == self.capacity

    def read(self, spill, columns, rows):
        """The vectors of ``rows`` in ``columns``.

        Raises
        ------
        Damaged
            When the spill file is short, or a vector read back is not the one written.
        """
        if self.data is not None:
            return self.data[np.ix_(columns, rows)]
        values = read_columns(
            spill.fd,
            self.spill_offset,
            self.capacity,
            self.layout.dim,
            self.layout.dtype,
            columns,
            rows,
        )
        if values is None:
            raise Damaged("the spill file is shorter than the blocks written to it")
        if _integrity.VERIFY and not np.array_equal(
            checksums(values, rows, columns), self.sums[np.ix_(columns, rows)]
        ):
            raise Damaged("a block read back from the spill file is not the one written")
        return values


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


class MemoryCache(CacheBase):
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
        self._layouts = {}  # namespace -> Layout
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
                return np.zeros(len(texts), dtype=bool), empty_encodings(len(layers))
            layout = self._layouts[namespace]
            codes = np.fromiter(
                (index.get(text, -1) for text in texts), dtype=np.int64, count=len(texts)
            )
            found = codes >= 0
            codes = codes[found]
            rows = codes & ROW_MASK
            wanted = wanted_columns(kinds)
            columns = layout.columns_for(layers, wanted)
            gathered = np.empty((len(columns), len(codes), layout.dim), dtype=layout.dtype)
            n_tokens = np.empty(len(codes), dtype=np.int64)
            truncated = np.empty(len(codes), dtype=bool)
            kept = np.ones(len(codes), dtype=bool)
            for serial, positions in groups(codes >> ROW_BITS):
                block = self._blocks[serial]
                block_rows = rows[positions]
                try:
                    gathered[:, positions] = block.read(self._spill, columns, block_rows)
                except (Damaged, OSError) as error:
                    self.step_aside.warn(
                        "memory (spill file)", error, "its block was dropped and is recomputed"
                    )
                    self._forget(block)
                    kept[positions] = False
                    continue
                n_tokens[positions] = block.n_tokens[block_rows]
                truncated[positions] = block.truncated[block_rows]
                self._blocks.move_to_end(serial)
            if not kept.all():
                found[np.flatnonzero(found)[~kept]] = False
                gathered, n_tokens, truncated = gathered[:, kept], n_tokens[kept], truncated[kept]
            self._count(int(kept.sum()), len(texts))
            return found, assemble(layout, layers, wanted, gathered, n_tokens, truncated)

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
        dtype = check_storage_dtype(storage_dtype)
        layout = Layout.of(encodings, storage_dtype)
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
            parts, fits = storable(rows_of(encodings, new), dtype)
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
        offset = None
        try:
            if self._spill is None:
                self._spill = _SpillFile()
            offset = self._spill.allocate(block.nbytes)
            write_all(self._spill.fd, block.data, offset)
        except OSError as error:
            # Nothing half-written stays reachable: the block is forgotten, its texts will
            # be encoded again if asked for, and a later spill tries the file again.
            if offset is not None:
                self._spill.release(offset, block.nbytes)
            self.step_aside.warn(
                f"memory (spill file in {tempfile.gettempdir()})",
                error,
                "blocks that do not fit in RAM are forgotten instead of spilled",
            )
            self._forget(block)
            return
        layout = block.layout
        block.sums = checksums(block.data, np.arange(block.capacity), np.arange(layout.n_columns))
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
            self.step_aside.reset()
            if counts:
                self.hits = self.misses = 0

    def after_fork(self):
        # A forked child must not write into the parent's spill file: it keeps the RAM
        # blocks (copy-on-write) and forgets the spilled ones.
        self._reset_locks()
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
