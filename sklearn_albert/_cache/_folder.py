"""The store in a folder that processes share, and its lock.

Per namespace, in ``<folder>/sklearn_albert_cache/<namespace hash>/``:

``meta.json``
    The layout (format version, hidden states, dim, pooler, block rows, storage dtype),
    written once, whole, by the first writer; read without following links and validated
    field by field.
``data.bin``
    Blocks of ``block_rows`` slots in the memory store's columnar layout; slot ``s`` is the
    ``s``-th index record's.
``index.bin``
    Append-only records: the text's digest, its token count and truncation flag, the
    checksum of each of its vectors, and the record's own checksum. A later record for the
    same digest wins.
``lock``
    Held (``flock``) by the one writer; readers never take it.
``writes.txt``
    Texts written by every process together (more than the entries: some were encoded twice).

A store writes the vectors first, every byte verified, then appends their records: a crash
or a failed write between the two leaves records that are absent, torn (their checksum
fails) or cut short (not a whole record), all of which readers ignore. A reader verifies the
checksums of the vectors it reads; damage drops those entries (a warning, once), and the
texts are encoded again and appended anew.
"""

import contextlib
import errno
import hashlib
import json
import os
import threading

import numpy as np

from . import _integrity
from ._base import CacheBase
from ._integrity import (
    Damaged,
    checksums,
    read_columns,
    record_checksums,
    write_all,
    write_columns,
)
from ._layout import (
    STORAGE_DTYPES,
    Layout,
    assemble,
    check_storage_dtype,
    empty_encodings,
    groups,
    joined,
    rows_of,
    storable,
    wanted_columns,
)
from ._nofollow import Folder

DISK_FOLDER_NAME = "sklearn_albert_cache"
#: 2: per-vector and per-record checksums in the index. Version 1 folders are not read.
DISK_FORMAT_VERSION = 2
DISK_BLOCK_ROWS = 1024
#: Bounds ``meta.json`` is checked against: far beyond any encoder, far below a crafted value.
_META_LIMITS = {"n_hidden_states": 4096, "dim": 1 << 16, "block_rows": 1 << 16}
_SMALL_FILE_BYTES = 4096


def record_dtype(n_columns):
    """One index record: digest, token count, truncation, vector checksums, its checksum."""
    return np.dtype(
        [
            ("key", "V16"),
            ("n_tokens", "<i8"),
            ("truncated", "u1"),
            ("pad", "V7"),
            ("sums", "<u8", (n_columns,)),
            ("check", "<u8"),
        ]
    )


def _digest(text):
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Unusable(Exception):
    """A namespace folder this version must not read (other format, damaged meta.json)."""


def parse_meta(raw, where):
    """The layout and block rows ``meta.json`` describes, each field checked.

    Raises
    ------
    Unusable
        Naming what is wrong; the caller steps aside.
    """
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Unusable(f"{where}/meta.json is not JSON") from None
    if not isinstance(meta, dict):
        raise Unusable(f"{where}/meta.json holds a {type(meta).__name__}, not an object")
    version = meta.get("version")
    if version != DISK_FORMAT_VERSION:
        raise Unusable(
            f"{where} has format version {version!r}; this sklearn_albert reads version "
            f"{DISK_FORMAT_VERSION} only. Delete that folder (its texts will be encoded again)"
        )
    for name, limit in _META_LIMITS.items():
        value = meta.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise Unusable(f"{where}/meta.json has {name}={value!r}, not an int in 1..{limit}")
    if not isinstance(meta.get("has_pooler"), bool):
        raise Unusable(f"{where}/meta.json has has_pooler={meta.get('has_pooler')!r}")
    if meta.get("storage_dtype") not in STORAGE_DTYPES:
        raise Unusable(f"{where}/meta.json has storage_dtype={meta.get('storage_dtype')!r}")
    layout = Layout(meta["n_hidden_states"], meta["dim"], meta["has_pooler"], meta["storage_dtype"])
    return layout, meta["block_rows"]


def _meta_of(layout):
    return {
        "version": DISK_FORMAT_VERSION,
        "n_hidden_states": layout.n_hidden_states,
        "dim": layout.dim,
        "has_pooler": layout.has_pooler,
        "block_rows": DISK_BLOCK_ROWS,
        "storage_dtype": layout.storage_dtype,
    }


def _read_count(folder):
    """The number in ``writes.txt``, 0 if absent or not a number."""
    try:
        text = folder.read("writes.txt", 64).decode("ascii").strip()
    except FileNotFoundError:
        return 0
    except (UnicodeDecodeError, OSError):
        return 0
    return int(text) if text.isdigit() else 0


def _open_data_file(folder, name):
    """``name`` opened to read and write, or only to read where writing is refused."""
    try:
        return folder.open(name, os.O_RDWR, create=True)
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        # a read-only copy, or a folder others write: this process can still read it
        return folder.open(name, os.O_RDONLY)


class _Namespace:
    """This process's view of one namespace's files: their index, read incrementally.

    ``mutex`` guards the state below for lookups and stores of this process; it is held
    briefly, never while waiting for the lock file. The one thread inside ``writing`` holds
    the cache's writer mutex of the namespace, and ``lock_depth`` (the lock file's
    re-entries) is only changed by that thread.
    """

    def __init__(self, root, name):
        self.root = root  # the user's folder
        self.name = name
        self.where = os.path.join(root, DISK_FOLDER_NAME, name)
        self.mutex = threading.Lock()
        self.folder = None
        self._reset_index()
        self.index_fd = self.data_fd = self.lock_fd = None
        self.lock_depth = 0
        self.locked = False  # whether this process holds the lock file now
        self.suspect = None  # a record that failed its checksum once: torn, or being written

    def _reset_index(self):
        self.layout = None
        self.block_rows = None
        self.record = None
        self.slots = {}  # digest -> slot
        self.n_tokens = np.empty(0, dtype=np.int64)
        self.truncated = np.empty(0, dtype=bool)
        self.sums = np.empty((0, 0), dtype=np.uint64)
        self.n_read = 0

    def open_folder(self, *, create):
        """The namespace's folder, opened without following links; None if absent."""
        if self.folder is not None:
            return self.folder
        try:
            with Folder.user(self.root, create=create) as user:
                with user.folder(DISK_FOLDER_NAME, create=create) as top:
                    self.folder = top.folder(self.name, create=create)
        except FileNotFoundError:
            if create:
                raise
            return None
        return self.folder

    def open(self):
        """Open the files once ``meta.json`` exists; False while nothing was ever written.

        Raises
        ------
        Unusable, OSError
        """
        if self.layout is not None:
            return True
        folder = self.open_folder(create=False)
        if folder is None:
            return False
        try:
            raw = folder.read("meta.json", _SMALL_FILE_BYTES)
        except FileNotFoundError:
            return False
        layout, block_rows = parse_meta(raw, self.where)
        index_fd = _open_data_file(folder, "index.bin")
        try:
            data_fd = _open_data_file(folder, "data.bin")
        except OSError:
            os.close(index_fd)
            raise
        self.index_fd, self.data_fd = index_fd, data_fd
        self.layout, self.block_rows = layout, block_rows
        self.record = record_dtype(layout.n_columns)
        self.sums = np.empty((0, layout.n_columns), dtype=np.uint64)
        return True

    def refresh(self, *, settled=False):
        """Read the index records appended since the last call; call with ``mutex`` held.

        A record whose checksum fails is damage (skipped), unless it and every record after
        it fail: those may still be being written by another process, so a reader stops
        before them and tries again next time, and treats them as damage when they fail
        twice. With ``settled`` (the caller holds the lock file, so nobody is writing) they
        are damage at once.

        Returns
        -------
        damaged : int
            Records skipped as damaged.
        """
        size = os.fstat(self.index_fd).st_size
        record_bytes = self.record.itemsize
        if size < self.n_read * record_bytes:
            # The index shrank under us: someone cut or replaced it. Start over.
            layout, block_rows, record = self.layout, self.block_rows, self.record
            self._reset_index()
            self.layout, self.block_rows, self.record = layout, block_rows, record
            self.sums = np.empty((0, layout.n_columns), dtype=np.uint64)
            raise Damaged(f"{self.where}/index.bin is shorter than it was")
        n_complete = size // record_bytes
        if n_complete <= self.n_read:
            return 0
        raw = bytearray((n_complete - self.n_read) * record_bytes)
        if not _integrity.read_exact(self.index_fd, raw, self.n_read * record_bytes):
            return 0  # cut while we read: next time
        records = np.frombuffer(raw, dtype=self.record)
        slots = np.arange(self.n_read, n_complete)
        valid = records["check"] == record_checksums(records, slots)
        n_damaged = 0
        if not valid.all():
            first_bad = int(np.argmin(valid))
            slot = self.n_read + first_bad
            # A record still being written is in the tail: a valid one after it means damage.
            in_tail = not valid[first_bad:].any()
            if not settled and in_tail and self.suspect != slot:
                self.suspect = slot  # maybe being written now: read up to it, retry later
                records, slots, valid = records[:first_bad], slots[:first_bad], valid[:first_bad]
                n_complete = slot
            n_damaged = int((~valid).sum())
        keys = records["key"].tolist()
        for digest, slot, ok in zip(keys, slots.tolist(), valid.tolist()):
            if ok:
                self.slots[digest] = slot  # a later record for the same text wins
        self.n_tokens = np.concatenate([self.n_tokens, records["n_tokens"]])
        self.truncated = np.concatenate([self.truncated, records["truncated"].astype(bool)])
        self.sums = np.concatenate([self.sums, records["sums"]])
        self.n_read = n_complete
        return n_damaged

    def block_base(self, block):
        return block * self.layout.row_bytes * self.block_rows

    def close(self):
        for fd in (self.index_fd, self.data_fd, self.lock_fd):
            if fd is not None:
                os.close(fd)
        if self.folder is not None:
            self.folder.close()
        self.folder = None
        self.index_fd = self.data_fd = self.lock_fd = None
        self._reset_index()


class DiskCache(CacheBase):
    """A store in a folder that processes share (joblib workers, later sessions).

    Parameters
    ----------
    folder : str or path-like
        Where to keep it; entries go to ``folder/sklearn_albert_cache/<namespace hash>/``.
    """

    writers_take_turns = True

    def __init__(self, folder):
        super().__init__()
        self.folder = os.fspath(folder)
        self.root = os.path.join(self.folder, DISK_FOLDER_NAME)
        self._namespaces = {}

    def _namespace(self, namespace):
        with self._lock:
            state = self._namespaces.get(namespace)
            if state is None:
                name = hashlib.blake2b(namespace.encode(), digest_size=16).hexdigest()
                state = self._namespaces[namespace] = _Namespace(self.folder, name)
            return state

    def _step_aside(self, state, error, what):
        self.step_aside.warn(state.where, error, what)

    def lookup(self, namespace, texts, layers, *, kinds=None):
        """Find cached texts and return their vectors for ``layers``.

        Same parameters and returns as :meth:`MemoryCache.lookup`. Never waits for a
        writer; an I/O error or damage makes the texts concerned misses (with a warning).
        """
        layers = tuple(int(layer) for layer in layers)
        state = self._namespace(namespace)
        none = np.zeros(len(texts), dtype=bool), empty_encodings(len(layers))
        with state.mutex:
            try:
                if not state.open():
                    self._count(0, len(texts))
                    return none
                if state.refresh():
                    self._step_aside(state, Damaged("torn index records"), "they are ignored")
                return self._lookup(state, texts, layers, wanted_columns(kinds))
            except (OSError, Damaged, Unusable) as error:
                self._step_aside(state, error, "these texts are encoded again")
                self._count(0, len(texts))
                return none

    def _lookup(self, state, texts, layers, wanted):
        slots = np.fromiter(
            (state.slots.get(_digest(text), -1) for text in texts),
            dtype=np.int64,
            count=len(texts),
        )
        found = slots >= 0
        slots = slots[found]
        layout = state.layout
        columns = layout.columns_for(layers, wanted)
        gathered = np.empty((len(columns), len(slots), layout.dim), layout.dtype)
        kept = np.ones(len(slots), dtype=bool)
        for block, positions in groups(slots // state.block_rows):
            values = read_columns(
                state.data_fd,
                state.block_base(block),
                state.block_rows,
                layout.dim,
                layout.dtype,
                columns,
                slots[positions] % state.block_rows,
            )
            if values is None:
                kept[positions] = False
                continue
            gathered[:, positions] = values
        if _integrity.VERIFY and len(slots):
            expected = state.sums[slots][:, columns].T
            kept &= (checksums(gathered, slots, columns) == expected).all(axis=0)
        if not kept.all():
            self._step_aside(
                state,
                Damaged(f"{(~kept).sum()} entries of data.bin are short or damaged"),
                "they are dropped and encoded again",
            )
            bad = set(slots[~kept].tolist())
            for digest, slot in list(state.slots.items()):
                if slot in bad:
                    del state.slots[digest]  # a later store appends a fresh copy
            found[np.flatnonzero(found)[~kept]] = False
            slots, gathered = slots[kept], gathered[:, kept]
        self._count(len(slots), len(texts))
        encodings = assemble(
            layout, layers, wanted, gathered, state.n_tokens[slots], state.truncated[slots]
        )
        return found, encodings

    def store(self, namespace, texts, encodings, *, storage_dtype="float16"):
        """Append the encodings of ``texts`` not already on disk.

        Takes the namespace's lock unless this thread holds it already (inside
        :meth:`writing`). Same parameters as :meth:`MemoryCache.store`. An I/O error
        (a full disk, a file size limit...) writes nothing visible and warns once.
        """
        if not len(texts):
            return
        dtype = check_storage_dtype(storage_dtype)
        layout = Layout.of(encodings, storage_dtype)
        state = self._namespace(namespace)
        with self._writer(namespace), self._exclusive(namespace):
            if not state.locked:
                return  # the lock file could not be taken (warned): writing could collide
            try:
                with state.mutex:
                    if not state.open():
                        state.folder.replace("meta.json", json.dumps(_meta_of(layout)).encode())
                        state.open()
                    if state.layout != layout:
                        raise ValueError(
                            f"Got encodings shaped {layout} for namespace {namespace!r}, which "
                            f"holds {state.layout} in {state.where}; a namespace must name "
                            "one model."
                        )
                    if state.refresh(settled=True):
                        self._step_aside(state, Damaged("torn index records"), "they are ignored")
                    digests = [_digest(text) for text in texts]
                    new, seen = [], set()
                    for position, digest in enumerate(digests):
                        if digest not in state.slots and digest not in seen:
                            seen.add(digest)
                            new.append(position)
                    first = state.n_read
                parts, fits = storable(rows_of(encodings, new), dtype)
                new = [position for position, fit in zip(new, fits) if fit]
                # No mutex while writing: lookups go on, and only this thread writes.
                self._append(
                    state, first, [digests[p] for p in new], joined(parts, fits), encodings, new
                )
                with state.mutex:
                    state.refresh(settled=True)
                state.folder.replace(
                    "writes.txt", str(_read_count(state.folder) + len(texts)).encode()
                )
            except (OSError, Damaged, Unusable) as error:
                self._step_aside(state, error, "new texts are not kept")

    def _append(self, state, first, digests, columns, encodings, positions):
        """Write vectors, then their records: a failure in between leaves nothing visible."""
        record_bytes = state.record.itemsize
        # A writer that died mid-record left a partial tail: cut it before appending.
        os.ftruncate(state.index_fd, first * record_bytes)
        if not digests:
            return
        done = 0
        while done < len(digests):
            block, row = divmod(first + done, state.block_rows)
            take = min(len(digests) - done, state.block_rows - row)
            write_columns(
                state.data_fd,
                state.block_base(block),
                state.block_rows,
                columns[:, done : done + take],
                row,
            )
            done += take
        slots = np.arange(first, first + len(digests))
        records = np.zeros(len(digests), dtype=state.record)
        records["key"] = np.array(digests, dtype="V16")
        records["n_tokens"] = encodings.n_tokens[positions]
        records["truncated"] = encodings.truncated[positions]
        records["sums"] = checksums(columns, slots, np.arange(state.layout.n_columns)).T
        records["check"] = record_checksums(records, slots)
        write_all(state.index_fd, records, first * record_bytes)

    @contextlib.contextmanager
    def _exclusive(self, namespace):
        """The namespace's lock file, held exclusively; re-entrant for the writing thread.

        The caller holds the namespace's writer mutex, so only one thread of this process
        is here; the lock file is taken without holding the cache-wide lock, so lookups go
        on meanwhile. If the lock cannot be taken (an I/O error), it warns and the body
        runs unlocked, and :meth:`store` then writes nothing.
        """
        state = self._namespace(namespace)
        if state.lock_depth == 0:
            try:
                folder = state.open_folder(create=True)
                if state.lock_fd is None:
                    state.lock_fd = folder.open("lock", os.O_RDWR, create=True)
                _lock_file(state.lock_fd)
                state.locked = True
            except OSError as error:
                self._step_aside(state, error, "new texts are not kept")
        state.lock_depth += 1
        try:
            yield
        finally:
            state.lock_depth -= 1
            if state.lock_depth == 0 and state.locked:
                state.locked = False
                _unlock_file(state.lock_fd)

    def info(self):
        """Entries, bytes and writes of every namespace in the folder, and this process's counts."""
        with self._lock:
            entries = n_bytes = writes = n_namespaces = 0
            try:
                with Folder.user(self.folder, create=False) as user:
                    with user.folder(DISK_FOLDER_NAME, create=False) as top:
                        names = sorted(top.names())
                        for name in names:
                            try:
                                with top.folder(name, create=False) as folder:
                                    layout, _ = parse_meta(
                                        folder.read("meta.json", _SMALL_FILE_BYTES), name
                                    )
                                    record_bytes = record_dtype(layout.n_columns).itemsize
                                    index_bytes = folder.size("index.bin")
                                    data_bytes = folder.size("data.bin")
                                    count = _read_count(folder)
                            except (OSError, Unusable):
                                continue
                            entries += index_bytes // record_bytes
                            n_bytes += data_bytes
                            writes += count
                            n_namespaces += 1
            except OSError:
                pass
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": entries,
                "bytes": n_bytes,
                "writes": writes,
                "namespaces": n_namespaces,
                "folder": self.root,
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
