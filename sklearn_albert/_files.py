"""Embedding files of texts: reading inputs, writing arrays, resumable chunked runs.

The command line's ``embed`` is built on :func:`embed_file`. A run is cut into chunks of
texts; each finished chunk is written at once (atomically) to a sidecar folder beside
the output, ``OUTPUT.parts/``, together with a manifest naming the input, the options and
the model. Run the same command again after an interruption and the finished chunks are
reused; only when every chunk exists is the output assembled and the sidecar removed.
A sidecar from a run with another input, other options or another model is discarded.
"""

import csv
import hashlib
import io
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

logger = logging.getLogger("sklearn_albert")

INPUT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
OUTPUT_SUFFIXES = (".npy", ".parquet")
DEFAULT_COLUMN = "text"
MANIFEST_FILE = "manifest.json"


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


def check_output_path(path, *, overwrite=False):
    """Refuse an output with an unknown suffix, a missing folder, or one that exists."""
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
    if path.exists() and not overwrite:
        raise FileExistsError(f"OUTPUT={str(path)!r} exists. Pass --overwrite to replace it.")
    return path


def write_array(features, path, *, feature_names):
    """Write ``features`` to ``.npy``, or ``.parquet`` with one float32 column per feature.

    The file appears complete or not at all: it is written beside ``path`` and renamed.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if path.suffix.lower() == ".npy":
            with open(partial, "wb") as file:
                np.save(file, features)
        else:
            import pyarrow as pa

            parquet = _import_pyarrow_parquet("write .parquet files")
            table = pa.table(
                {name: pa.array(features[:, i]) for i, name in enumerate(feature_names)}
            )
            parquet.write_table(table, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


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
    sidecar = sidecar_folder(output)
    manifest = _manifest(vectorizer, texts, chunk_size)
    bounds = [
        (start, min(start + chunk_size, len(texts))) for start in range(0, len(texts), chunk_size)
    ]
    done = _finished_chunks(sidecar, manifest, len(bounds))
    bar = _progress_bar(
        len(texts), sum(b - a for i, (a, b) in enumerate(bounds) if i in done), progress
    )
    try:
        for index, (start, stop) in enumerate(bounds):
            if index in done:
                continue
            features = embed_chunk(vectorizer, texts[start:stop])
            _save_chunk(sidecar, index, features)
            bar.update(stop - start)
    finally:
        bar.close()
    features = _assemble(sidecar, len(bounds), vectorizer.n_features_out_)
    names = feature_names if feature_names is not None else list(vectorizer.get_feature_names_out())
    write_array(features, output, feature_names=names)
    _remove_sidecar(sidecar)
    return {
        "n_texts": len(texts),
        "n_chunks": len(bounds),
        "reused_chunks": len(done),
        "shape": features.shape,
    }


def resume_hint(output):
    """A sentence on what an interrupted run towards ``output`` left, or None."""
    sidecar = sidecar_folder(output)
    if not (sidecar / MANIFEST_FILE).is_file():
        return None
    finished = len(list(sidecar.glob("chunk-*.npy")))
    return (
        f"{finished} finished chunk(s) are kept in {sidecar}; run the same command again "
        "to resume from there."
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
        if name not in _NOT_IN_MANIFEST
    }
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


def _finished_chunks(sidecar, manifest, n_chunks):
    """Indices of chunks an earlier, identical run finished; a stale sidecar is cleared."""
    manifest_file = sidecar / MANIFEST_FILE
    if sidecar.is_dir():
        try:
            previous = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous == manifest:
            done = {index for index in range(n_chunks) if (sidecar / _chunk_name(index)).is_file()}
            if done:
                logger.warning(
                    "Resuming: %d of %d chunks were finished by an earlier run (%s).",
                    len(done),
                    n_chunks,
                    sidecar,
                )
            return done
        stale = list(sidecar.glob("chunk-*.npy"))
        if stale:
            logger.warning(
                "Discarding %d chunks in %s: they come from a run with another input, "
                "options or model.",
                len(stale),
                sidecar,
            )
        _remove_sidecar(sidecar)
    sidecar.mkdir()
    manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return set()


def _chunk_name(index):
    return f"chunk-{index:06d}.npy"


def _save_chunk(sidecar, index, features):
    final = sidecar / _chunk_name(index)
    partial = sidecar / f".{final.name}.partial"
    with open(partial, "wb") as file:
        np.save(file, np.ascontiguousarray(features, dtype=np.float32))
    os.replace(partial, final)


def _assemble(sidecar, n_chunks, n_features):
    parts = [np.load(sidecar / _chunk_name(index)) for index in range(n_chunks)]
    if not parts:
        return np.empty((0, n_features), dtype=np.float32)
    return np.concatenate(parts)


def _remove_sidecar(sidecar):
    for file in sidecar.glob("chunk-*.npy"):
        file.unlink()
    for file in sidecar.glob(".chunk-*.partial"):
        file.unlink()
    (sidecar / MANIFEST_FILE).unlink(missing_ok=True)
    try:
        sidecar.rmdir()
    except OSError:
        logger.warning("Left %s in place: it holds files this run did not write.", sidecar)


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
