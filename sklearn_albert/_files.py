"""Embedding files of texts: reading inputs, writing arrays, resumable chunked runs.

The command line's ``embed`` is built on :func:`embed_file`. A run is cut into chunks of
texts; each finished chunk is written at once (atomically) to a sidecar folder beside
the output, ``OUTPUT.parts/``, together with a manifest naming the input, the options and
the model, and then, chunk by chunk, each chunk's row count and checksum. Run the same
command again after an interruption and the finished chunks are reused, each only if it
is a regular file (never a link) with the recorded checksum and the expected shape; any
other is recomputed. Only when every chunk exists is the output assembled (written
beside it and renamed) and the sidecar removed. A sidecar from a run with another input,
other options or another model is discarded.
"""

import csv
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from ._output import output_dtype_of

logger = logging.getLogger("sklearn_albert")

INPUT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
OUTPUT_SUFFIXES = (".npy", ".parquet")
DEFAULT_COLUMN = "text"
MANIFEST_FILE = "manifest.json"
_CHUNK_NAME = re.compile(r"chunk-(\d{6})\.npy")


class FileFormatError(ValueError):
    """An input or output file that cannot be read or written as asked."""


# ---------------------------------------------------------------------- reading


def read_texts(path, *, column=None):
    """The texts of a file, in file order.

    Parameters
    ----------
    path : str or path-like
        ``.txt`` (one text per line, UTF-8), ``.csv`` (with a header row), ``.tsv``
        (with a header row; no quoting, as GLUE-style files are written), ``.jsonl``
        (one JSON object, or string, per line) or ``.parquet``.
    column : str, default=None
        The column holding the texts in a table. None means ``"text"``, or the only
        column of a one-column table.

    Returns
    -------
    texts : list
        One entry per line or row. Missing values are kept (None) so that validation
        can name their row.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise FileFormatError(
            f"Cannot read INPUT={str(path)!r}: unknown suffix {suffix!r}. Use one of "
            f"{', '.join(INPUT_SUFFIXES)}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"Cannot read INPUT={str(path)!r}: no such file.")
    if suffix == ".txt":
        if column is not None:
            raise FileFormatError(
                f"Got --column={column!r} but {path.name} is a .txt file, one text per line, "
                "without columns. Drop --column."
            )
        return _read_lines(path)
    if suffix == ".parquet":
        return _read_parquet(path, column)
    if suffix == ".jsonl":
        return _read_jsonl(path, column)
    return _read_delimited(path, column, delimiter="\t" if suffix == ".tsv" else ",")


def _read_text_file(path):
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise FileFormatError(
            f"Cannot read INPUT={str(path)!r}: it is not UTF-8 text (byte {error.start} "
            f"is {error.object[error.start : error.start + 1]!r}). Convert it to UTF-8 first."
        ) from None


def _read_lines(path):
    content = _read_text_file(path)
    if not content:
        return []
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _choose_column(names, column, path):
    if column is not None:
        if column not in names:
            raise FileFormatError(
                f"Got --column={column!r} but {path.name} has the columns {list(names)}."
            )
        return column
    if DEFAULT_COLUMN in names:
        return DEFAULT_COLUMN
    if len(names) == 1:
        return names[0]
    raise FileFormatError(
        f"{path.name} has the columns {list(names)} and none is named {DEFAULT_COLUMN!r}: "
        "say which one holds the texts with --column."
    )


@contextmanager
def _csv_fields_of_any_size():
    """Texts longer than csv's 128 KiB default field limit are still texts."""
    previous = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_delimited(path, column, *, delimiter):
    content = _read_text_file(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with _csv_fields_of_any_size():
        try:
            rows = csv.reader(
                io.StringIO(content, newline=""), delimiter=delimiter, quoting=quoting
            )
            header = next(rows, None)
            if header is None:
                raise FileFormatError(f"Cannot read INPUT={str(path)!r}: the file is empty.")
            index = header.index(_choose_column(header, column, path))
            return [row[index] if index < len(row) else None for row in rows]
        except csv.Error as error:
            raise FileFormatError(f"Cannot read INPUT={str(path)!r}: {error}.") from None


def _read_jsonl(path, column):
    texts, chosen = [], column
    for number, line in enumerate(_read_text_file(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise FileFormatError(
                f"Cannot read INPUT={str(path)!r}: line {number} is not JSON ({error.msg})."
            ) from None
        if isinstance(record, str) and column is None:
            texts.append(record)
            continue
        if not isinstance(record, dict):
            raise FileFormatError(
                f"Cannot read INPUT={str(path)!r}: line {number} is a "
                f"{type(record).__name__}, expected an object with a text field."
            )
        if chosen is None:
            chosen = _choose_column(list(record), column, path)
        if chosen not in record:
            raise FileFormatError(
                f"Cannot read INPUT={str(path)!r}: line {number} has no field {chosen!r}."
            )
        texts.append(record[chosen])
    return texts


def _read_parquet(path, column):
    parquet = _import_pyarrow_parquet("read .parquet files")
    names = parquet.read_schema(path).names
    chosen = _choose_column(names, column, path)
    return parquet.read_table(path, columns=[chosen]).column(chosen).to_pylist()


def _import_pyarrow_parquet(purpose):
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise ImportError(
            f"pyarrow is needed to {purpose}: pip install 'sklearn-albert[parquet]'."
        ) from None
    return parquet


# ---------------------------------------------------------------------- writing

# Every file this module writes, or reads back, is reached without following a symbolic
# link: a link planted at one of its names must not redirect a write (or a read) elsewhere.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_PARTIAL_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.partial")


def check_output_path(path, *, overwrite=False):
    """Refuse an output with an unknown suffix, a missing folder, or one that exists.

    A symbolic link at ``path`` counts as existing; with ``overwrite`` the link itself is
    replaced, never the file it points to.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise FileFormatError(
            f"Cannot write OUTPUT={str(path)!r}: unknown suffix {suffix!r}. Use "
            f"{' or '.join(OUTPUT_SUFFIXES)}."
        )
    if suffix == ".parquet":
        _import_pyarrow_parquet("write .parquet files")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write OUTPUT={str(path)!r}: the folder {str(path.parent)!r} does not exist."
        )
    if os.path.lexists(path) and not overwrite:
        what = "is a symbolic link" if path.is_symlink() else "exists"
        raise FileExistsError(f"OUTPUT={str(path)!r} {what}. Pass --overwrite to replace it.")
    return path


def write_array(features, path, *, feature_names):
    """Write ``features`` to ``.npy``, or ``.parquet`` with one column per feature.

    Columns keep the array's dtype: float32, or int8 / uint8 for quantized output.

    The file appears complete or not at all: it is written under a fresh name beside
    ``path`` (created exclusively, so never through a planted link), synced to disk and
    renamed over ``path``. A symbolic link at ``path`` is replaced, not followed.

    Raises
    ------
    OSError
        When the file cannot be written whole (a full disk, a file size limit); nothing
        is left at ``path`` then.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":

        def write(file):
            np.save(_Stream(file), features, allow_pickle=False)

    else:
        import pyarrow as pa

        parquet = _import_pyarrow_parquet("write .parquet files")
        table = pa.table({name: pa.array(features[:, i]) for i, name in enumerate(feature_names)})

        def write(file):
            parquet.write_table(table, file)

    folder = os.open(path.parent, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        _replace_atomically(folder, path.name, write, mode=0o666)
    except OSError as error:
        raise _write_error(error, f"Could not write OUTPUT={str(path)!r}") from error
    finally:
        os.close(folder)


class _Stream:
    """A file that numpy sees as a plain stream, so that it writes through ``file.write``.

    Given a real file, ``np.save`` writes with ``ndarray.tofile``, which loses the end of
    the array without an error when the disk is full or the file size is limited.
    """

    def __init__(self, file):
        self.write = file.write


def _replace_atomically(folder, name, write, *, mode):
    """Put a file at ``name`` in the folder open as descriptor ``folder``: whole, or not at all.

    ``write(file)`` fills a new file under a fresh name (``O_EXCL | O_NOFOLLOW``), which
    is flushed (a short write raises there), synced and renamed over ``name``.
    """
    temporary = f".{name}.{secrets.token_hex(8)}.partial"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
    descriptor = os.open(temporary, flags, mode, dir_fd=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise
    # The rename itself survives a power cut only once the folder is synced.
    with suppress(OSError):
        os.fsync(folder)


def _write_error(error, what):
    """``error`` (a failed write) as one sentence that says what was being written."""
    reason = error.strerror or str(error)
    message = f"{what}: {reason}"
    if error.errno in (None, errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
        message += " (is the disk full, or the file size limited?)"
    return OSError(error.errno, message) if error.errno else OSError(message)


# ---------------------------------------------------------------------- chunked runs


def sidecar_folder(output):
    """Where the finished chunks of a run towards ``output`` are kept."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def embed_chunk(vectorizer, texts):
    """One chunk's features (the command line's unit of work and of resumption)."""
    return vectorizer.transform(texts)


def embed_file(vectorizer, texts, output, *, chunk_size=1000, progress=False, feature_names=None):
    """Embed ``texts`` with a fitted ``vectorizer`` into ``output``, resumably.

    Parameters
    ----------
    vectorizer : AlbertVectorizer
        Fitted.
    texts : list of str
        Validated texts.
    output : path-like
        ``.npy`` or ``.parquet`` file to write.
    chunk_size : int, default=1000
        Texts per chunk: the work lost to an interruption is at most one chunk.
    progress : bool, default=False
        Show a progress bar (texts) on stderr.
    feature_names : list of str, default=None
        Column names for ``.parquet`` output; default the vectorizer's.

    Returns
    -------
    summary : dict
        ``n_texts``, ``n_chunks``, ``reused_chunks`` (finished by an earlier run) and
        ``shape``.
    """
    output = Path(output)
    job = _manifest(vectorizer, texts, chunk_size)
    bounds = [
        (start, min(start + chunk_size, len(texts))) for start in range(0, len(texts), chunk_size)
    ]
    with _Sidecar(sidecar_folder(output)) as sidecar:
        shape = (vectorizer.n_features_out_, output_dtype_of(vectorizer.settings_))
        records = _finished_chunks(sidecar, job, bounds, shape)
        reused = len(records)
        bar = _progress_bar(
            len(texts), sum(b - a for i, (a, b) in enumerate(bounds) if i in records), progress
        )
        try:
            for index, (start, stop) in enumerate(bounds):
                if index in records:
                    continue
                features = embed_chunk(vectorizer, texts[start:stop])
                _save_chunk(sidecar, job, records, index, features, shape[1])
                bar.update(stop - start)
        finally:
            bar.close()
        features = _assemble(sidecar, job, records, vectorizer, texts, bounds)
        names = (
            feature_names if feature_names is not None else list(vectorizer.get_feature_names_out())
        )
        write_array(features, output, feature_names=names)
        _remove_sidecar(sidecar)
    return {
        "n_texts": len(texts),
        "n_chunks": len(bounds),
        "reused_chunks": reused,
        "shape": features.shape,
    }


def resume_hint(output):
    """A sentence on what an interrupted run towards ``output`` left, or None."""
    try:
        sidecar = _Sidecar(sidecar_folder(output), create=False)
    except OSError:
        return None
    with sidecar:
        manifest = _read_manifest(sidecar)
    chunks = manifest.get("chunks") if manifest is not None else None
    if not isinstance(chunks, dict):
        return None
    return (
        f"{len(chunks)} finished chunk(s) are kept in {sidecar.path}; run the same command "
        "again to resume from there."
    )


#: Parameters that change no output number, or whose effect the manifest records
#: otherwise (the model by its fingerprint, dtype and max_length by their fitted values).
_NOT_IN_MANIFEST = frozenset(
    {
        "batch_size",
        "max_tokens_per_batch",
        "verbose",
        "embedding_cache",
        "device",
        "dtype",
        "max_length",
        "model_name_or_path",
        "revision",
        "cache_dir",
        "local_files_only",
        "token_env",
        "store_weights_in_pickle",
    }
)

#: Parameters added after the manifest's format, with the value that leaves the output as
#: before them: recorded only when set otherwise, so that older runs still resume.
_LATER_PARAMETERS = {"prompt": None, "truncate_dim": None, "output_dtype": "float32"}
_ALWAYS = object()


def _manifest(vectorizer, texts, chunk_size):
    from ._persistence import to_json_value

    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    params = {
        name: value
        for name, value in vectorizer.get_params(deep=False).items()
        if name not in _NOT_IN_MANIFEST and _LATER_PARAMETERS.get(name, _ALWAYS) != value
    }
    ranges = getattr(vectorizer, "quantization_ranges_", None)
    if ranges is not None:  # fitted int8 or uint8 levels change the numbers
        params["quantization_ranges"] = hashlib.blake2b(
            np.ascontiguousarray(ranges, np.float32).tobytes(), digest_size=16
        ).hexdigest()
    return {
        "texts": digest.hexdigest(),
        "n_texts": len(texts),
        "chunk_size": chunk_size,
        "model_fingerprint": vectorizer.model_fingerprint_,
        "dtype": vectorizer.dtype_,
        "max_length": vectorizer.max_length_,
        "device_type": vectorizer.device_.split(":")[0],
        "n_features": vectorizer.n_features_out_,
        "params": {name: to_json_value(value, name) for name, value in params.items()},
    }


class _Sidecar:
    """The folder ``OUTPUT.parts/``, opened once: every name in it is reached through that
    descriptor and without following links, so nothing outside it is read or written.

    A symbolic link, or anything but a folder, at that path is refused (FileExistsError):
    it is not something this command made, and removing it could lose the user's data.
    """

    def __init__(self, path, *, create=True):
        self.path = Path(path)
        if create:
            with suppress(FileExistsError):
                os.mkdir(self.path, 0o700)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            kind = "a symbolic link" if self.path.is_symlink() else "not a folder"
            raise FileExistsError(
                f"Cannot keep the finished chunks in {str(self.path)!r}: it is {kind}, not a "
                "folder this command made. Remove it, or choose another OUTPUT."
            ) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def names(self):
        return os.listdir(self.fd)

    def read(self, name, size=None, *, limit=64 * 2**20):
        """``(content, None)``, or ``(None, why not)`` unless ``name`` is a regular file of
        ``size`` bytes (or at most ``limit`` bytes when ``size`` is None)."""
        flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY
        try:
            descriptor = os.open(name, flags, dir_fd=self.fd)
        except FileNotFoundError:
            return None, "missing"
        except OSError as error:
            if error.errno == errno.ELOOP:
                return None, "a symbolic link"
            return None, f"unreadable ({error.strerror})"
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                return None, "not a regular file"
            expected = info.st_size if size is None else size
            if info.st_size != expected or info.st_size > limit and size is None:
                return None, "truncated or of the wrong size"
            with open(descriptor, "rb", closefd=False) as file:
                content = file.read(expected + 1)
        except OSError as error:
            return None, f"unreadable ({error.strerror})"
        finally:
            os.close(descriptor)
        if len(content) != expected:
            return None, "truncated or of the wrong size"
        return content, None

    def write(self, name, content):
        _replace_atomically(self.fd, name, lambda file: file.write(content), mode=0o600)

    def unlink(self, name):
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):
            # A folder planted at a chunk's name: an empty one goes, a full one is an error.
            os.rmdir(name, dir_fd=self.fd)


def _chunk_name(index):
    return f"chunk-{index:06d}.npy"


def _checksum(content):
    return hashlib.blake2b(content, digest_size=16).hexdigest()


def _read_manifest(sidecar):
    content, _ = sidecar.read(MANIFEST_FILE)
    try:
        manifest = json.loads(content) if content is not None else None
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def _write_manifest(sidecar, job, records):
    chunks = {str(index): record for index, record in sorted(records.items())}
    content = json.dumps({"job": job, "chunks": chunks}, sort_keys=True)
    sidecar.write(MANIFEST_FILE, content.encode("utf-8"))


def _finished_chunks(sidecar, job, bounds, shape):
    """The records ``{index: {rows, bytes, blake2b}}`` of the chunks an earlier, identical
    run finished and that still verify; every other file of ours in the sidecar is removed."""
    names = sidecar.names()
    files = {int(match[1]): name for name in names if (match := _CHUNK_NAME.fullmatch(name))}
    for name in names:
        if _PARTIAL_NAME.fullmatch(name):  # a write that a stopped run left unfinished
            sidecar.unlink(name)
    previous = _read_manifest(sidecar)
    if previous is None or previous.get("job") != job:
        if files:
            logger.warning(
                "Discarding %d chunks in %s: they come from a run with another input, "
                "options or model.",
                len(files),
                sidecar.path,
            )
        records = {}
    else:
        recorded = previous.get("chunks")
        recorded = recorded if isinstance(recorded, dict) else {}
        indices = set(files) | {int(key) for key in recorded if str(key).isdigit()}
        records, problems = {}, {}
        for index in sorted(i for i in indices if i < len(bounds)):
            start, stop = bounds[index]
            record = recorded.get(str(index))
            _, problem = _load_chunk(sidecar, index, record, stop - start, shape)
            if problem is None:
                records[index] = record
            else:
                problems.setdefault(problem, []).append(index)
        _warn_recomputed(sidecar, problems, len(bounds))
        if records:
            logger.warning(
                "Resuming: %d of %d chunks were finished by an earlier run (%s).",
                len(records),
                len(bounds),
                sidecar.path,
            )
    for index, name in files.items():
        if index not in records:
            sidecar.unlink(name)
    try:
        _write_manifest(sidecar, job, records)
    except OSError as error:
        where = str(sidecar.path / MANIFEST_FILE)
        raise _write_error(error, f"Could not write {where!r}") from error
    return records


def _load_chunk(sidecar, index, record, rows, shape):
    """``(array, None)`` when chunk ``index`` verifies against its record, else ``(None, why)``."""
    if not (
        isinstance(record, dict)
        and isinstance(record.get("bytes"), int)
        and isinstance(record.get("blake2b"), str)
        and record.get("rows") == rows
    ):
        return None, "not recorded in the manifest (the run stopped while writing it)"
    content, problem = sidecar.read(_chunk_name(index), record["bytes"])
    if problem is not None:
        return None, problem
    if _checksum(content) != record["blake2b"]:
        return None, "damaged (its checksum differs)"
    try:
        array = np.load(io.BytesIO(content), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None, "not a NumPy array"
    n_features, dtype = shape
    if array.dtype != dtype or array.shape != (rows, n_features):
        return None, f"not a {dtype} array of shape ({rows}, {n_features})"
    return array, None


def _warn_recomputed(sidecar, problems, n_chunks):
    if not problems:
        return
    reasons = "; ".join(
        f"{reason}: chunk{'s' if len(indices) > 1 else ''} "
        + ", ".join(map(str, indices[:5]))
        + (", ..." if len(indices) > 5 else "")
        for reason, indices in problems.items()
    )
    logger.warning(
        "Recomputing %d of %d chunks in %s: %s.",
        sum(map(len, problems.values())),
        n_chunks,
        sidecar.path,
        reasons,
    )


def _save_chunk(sidecar, job, records, index, features, dtype):
    """Write chunk ``index``, then record its rows and checksum in the manifest."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(features, dtype=dtype), allow_pickle=False)
    content = buffer.getvalue()
    try:
        sidecar.write(_chunk_name(index), content)
        # Recorded only once the chunk is whole on disk: a chunk without a record is redone.
        records[index] = {
            "rows": len(features),
            "bytes": len(content),
            "blake2b": _checksum(content),
        }
        _write_manifest(sidecar, job, records)
    except OSError as error:
        records.pop(index, None)
        raise _write_error(
            error, f"Could not save chunk {index} in {str(sidecar.path)!r}"
        ) from error


def _assemble(sidecar, job, records, vectorizer, texts, bounds):
    """The output, from verified chunks; one that changed since it was checked is redone."""
    n_features, dtype = vectorizer.n_features_out_, output_dtype_of(vectorizer.settings_)
    shape = (n_features, dtype)
    parts, problems = [], {}
    for index, (start, stop) in enumerate(bounds):
        part, problem = _load_chunk(sidecar, index, records.get(index), stop - start, shape)
        if part is None:
            problems.setdefault(problem, []).append(index)
            part = np.ascontiguousarray(embed_chunk(vectorizer, texts[start:stop]), dtype)
            _save_chunk(sidecar, job, records, index, part, dtype)
        parts.append(part)
    _warn_recomputed(sidecar, problems, len(bounds))
    if not parts:
        return np.empty((0, n_features), dtype=dtype)
    return np.concatenate(parts)


def _remove_sidecar(sidecar):
    for name in sidecar.names():
        if _CHUNK_NAME.fullmatch(name) or _PARTIAL_NAME.fullmatch(name) or name == MANIFEST_FILE:
            sidecar.unlink(name)
    sidecar.close()
    try:
        os.rmdir(sidecar.path)
    except OSError:
        logger.warning("Left %s in place: it holds files this run did not write.", sidecar.path)


def _progress_bar(total, initial, enabled):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="Embedding",
        unit="text",
        disable=not enabled,
        file=sys.stderr,
    )
