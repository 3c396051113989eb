"""Embed and predict on a Dask cluster: the model loaded once per worker, no work lost.

Three entry points, all lazy until computed, all running on whatever scheduler is active
(a ``distributed.Client`` when one exists, else dask's local threads):

- ``AlbertVectorizer.transform(X)`` with a dask Series (or one-column DataFrame) calls
  :func:`transform_collection`;
- :func:`embed_to_parquet` writes one Parquet file per input partition, atomically and
  resumably;
- :func:`parallel_predict` runs any fitted pipeline that holds a vectorizer partition by
  partition.

The estimator travels once per worker, not once per task: it is pickled once into a
single graph key that every partition task depends on, the scheduler sends that key to
each worker once, and each worker process unpickles it once (``_hosts.received``). A
default pickle leaves the weights out, so each worker loads the checkpoint from
``model_name_or_path`` on first use, once per process (loaded models are shared
process-wide); with ``store_weights_in_pickle=True`` the weights are that one key.

dask is imported only when one of these functions runs, never by ``import sklearn_albert``.
"""

import hashlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ._hosts import received
from ._output import output_dtype_of
from ._settings import EncodeSettings

__all__ = ["EmbedSummary", "embed_to_parquet", "parallel_predict", "transform_collection"]

PREDICT_METHODS = ("predict", "predict_proba", "decision_function", "transform")
PART_NAME = "part-{index:05d}.parquet"
MANIFEST_NAME = "_sklearn_albert_manifest.json"
# Each part file's Parquet metadata: the job (model and settings), partition, row count and
# digest of the input rows it embeds, checked before a later run keeps the file.
PART_METADATA_KEY = "sklearn_albert.part"
# The manifest's entries that describe the input rows rather than the job's settings.
DATA_KEYS = frozenset({"format", "partitions", "partition_rows", "partition_digests"})
# A part file's temporary name starts with "." (parquet readers skip such files) and holds
# the writer's process id, so that the leftovers of a killed worker are recognisable.
TEMPORARY_SUFFIX = ".tmp"
# The fitted settings that change the numbers in the output, for the manifest: every field
# of EncodeSettings but those the manifest records apart (fingerprint, dtype) and those
# that only decide where and how fast it runs.
OUTPUT_SETTINGS = tuple(
    field.name
    for field in fields(EncodeSettings)
    if field.name
    not in {"model_fingerprint", "compute_dtype", "device", "batch_size", "max_tokens"}
)

# Settings added after format 2, with the value that leaves the output as it was before
# them: recorded only when set otherwise, so that a job written before them resumes.
LATER_SETTINGS = {"prompt": None, "prompt_ids": (), "truncate_dim": None, "output_dtype": "float32"}
_ALWAYS = object()


def is_dask_collection(X):
    """Whether ``X`` is a dask collection, without importing dask when it is not loaded.

    A dask object cannot exist unless dask was imported, so ``sys.modules`` tells.
    """
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(X)


# ---------------------------------------------------------------------- transform


def transform_collection(vectorizer, X):
    """Embed a dask Series of texts lazily, one block per partition, in input order.

    ``AlbertVectorizer.transform`` calls this when ``X`` is a dask collection.

    Parameters
    ----------
    vectorizer : AlbertVectorizer
        A fitted vectorizer. It is pickled once into the task graph (without its weights
        unless ``store_weights_in_pickle=True``) and unpickled once per worker process.
    X : dask.dataframe.Series or dask.dataframe.DataFrame
        Texts: a Series of str or a DataFrame with one column of str.

    Returns
    -------
    embeddings : dask.array.Array or dask.dataframe.DataFrame
        A lazy array of shape ``(n_texts, n_features_out_)``, float32 or the
        vectorizer's ``output_dtype``, with one block per
        partition of ``X`` (row counts unknown until computed). With
        ``vectorizer.set_output(transform="pandas")``, a dask DataFrame with the
        vectorizer's feature names as columns and ``X``'s index.

    Notes
    -----
    The device is chosen on each worker: a vectorizer with ``device="auto"`` uses the
    worker's GPU when it has one, whatever device the client has.

    Examples
    --------
    >>> import dask.dataframe as dd  # doctest: +SKIP
    >>> texts = dd.read_parquet("corpus/")["text"]  # doctest: +SKIP
    >>> vectorizer.transform(texts).compute()  # doctest: +SKIP
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(vectorizer)
    texts = _text_series(X)
    # The empty transform, through the set_output wrapper: the result's type and columns.
    meta = vectorizer.transform([])
    digest, shipped = _shipped(vectorizer, texts.npartitions)
    if isinstance(meta, np.ndarray):
        return texts.map_partitions(_embed_block, digest, shipped, meta=meta)
    if type(meta).__module__.partition(".")[0] != "pandas":
        raise ValueError(
            f"Got set_output(transform={type(meta).__module__.partition('.')[0]!r}) on a dask "
            "collection, which has no lazy equivalent. Use set_output(transform='pandas') "
            "(a dask DataFrame) or 'default' (a dask array)."
        )
    meta = meta.set_axis(texts._meta.index[:0], axis=0)
    return texts.map_partitions(_embed_frame, digest, shipped, list(meta.columns), meta=meta)


def _embed_block(texts, digest, shipped):
    vectorizer = received(digest, shipped)
    dtype = output_dtype_of(vectorizer.settings_)
    return np.asarray(vectorizer.transform(texts.tolist()), dtype=dtype)


def _embed_frame(texts, digest, shipped, columns):
    import pandas as pd

    features = _embed_block(texts, digest, shipped)
    return pd.DataFrame(features, index=texts.index, columns=columns)


def _text_series(X, parameter="X"):
    """The dask Series of texts in ``X``, or an error naming what would work."""
    import dask.dataframe as dd

    if isinstance(X, dd.Series):
        return X
    if isinstance(X, dd.DataFrame):
        if len(X.columns) != 1:
            raise ValueError(
                f"{parameter} is a dask DataFrame with {len(X.columns)} columns "
                f"{list(X.columns)}; expected one column of texts. Select it, e.g. "
                f"{parameter}[{X.columns[0]!r}]."
            )
        return X[X.columns[0]]
    raise TypeError(
        f"{parameter} is a {type(X).__module__}.{type(X).__name__}; a dask collection of "
        "texts must be a dask Series or a one-column dask DataFrame."
    )


# ---------------------------------------------------------------------- predict


def parallel_predict(estimator, X, method="predict", *, meta=None):
    """Run a fitted estimator's ``method`` partition by partition on the workers.

    Parameters
    ----------
    estimator : estimator
        Any fitted estimator or pipeline, typically one holding an
        :class:`~sklearn_albert.AlbertVectorizer` (for example loaded with
        ``joblib.load``). It is pickled once into the task graph and unpickled once
        per worker process.
    X : dask.dataframe.Series or dask.dataframe.DataFrame
        The input; each partition (a pandas Series or DataFrame) is passed to ``method``
        as it is.
    method : {"predict", "predict_proba", "decision_function", "transform"}, \
default="predict"
        The method to run.
    meta : ndarray, default=None
        An empty array with the output's dtype and trailing shape, such as
        ``np.empty((0, 3))``. None infers it from ``classes_`` (classifiers) or
        ``get_feature_names_out`` (transform).

    Returns
    -------
    result : dask.array.Array
        Lazy, one block per partition of ``X``, rows in input order.

    Examples
    --------
    >>> pipeline = joblib.load("sentiment.joblib")  # doctest: +SKIP
    >>> labels = parallel_predict(pipeline, texts).compute()  # doctest: +SKIP
    """
    from sklearn.utils.validation import check_is_fitted

    if method not in PREDICT_METHODS:
        raise ValueError(f"Got method={method!r}; expected one of {PREDICT_METHODS}.")
    if not hasattr(estimator, method):
        raise ValueError(
            f"Got method={method!r} but {type(estimator).__name__} has no such method. "
            f"Use one it has among {[m for m in PREDICT_METHODS if hasattr(estimator, m)]}."
        )
    check_is_fitted(estimator)
    _dask_dataframe(X, "X")
    meta = _output_meta(estimator, method) if meta is None else np.asarray(meta)[:0]
    digest, shipped = _shipped(estimator, X.npartitions)
    return X.map_partitions(_predict_block, digest, shipped, method, meta, meta=meta)


def _predict_block(part, digest, shipped, method, meta):
    if len(part) == 0:  # scikit-learn's input checks reject zero rows
        return meta
    estimator = received(digest, shipped)
    return np.asarray(getattr(estimator, method)(part))


def _output_meta(estimator, method):
    """An empty array with the dtype and trailing shape ``method`` returns."""
    classes = getattr(estimator, "classes_", None)
    if method == "transform":
        last = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        n_features = len(estimator.get_feature_names_out())
        is_vectorizer = type(last).__name__ == "AlbertVectorizer"
        dtype = output_dtype_of(last.settings_) if is_vectorizer else np.float64
        return np.empty((0, n_features), dtype=dtype)
    if method == "predict":
        dtype = np.asarray(classes).dtype if classes is not None else np.float64
        return np.empty((0,), dtype=dtype)
    if classes is None or np.ndim(classes) != 1:
        raise ValueError(
            f"Cannot infer the shape of {type(estimator).__name__}.{method}'s output "
            "(no 1-D classes_). Pass meta=, an empty array of its dtype and trailing "
            "shape, such as np.empty((0, n_outputs))."
        )
    if method == "decision_function" and len(classes) == 2:
        return np.empty((0,), dtype=np.float64)
    return np.empty((0, len(classes)), dtype=np.float64)


# ---------------------------------------------------------------------- to parquet


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`~sklearn_albert.distributed.embed_to_parquet` did.

    Attributes
    ----------
    output_dir : pathlib.Path
        The folder of part files.
    rows : int
        Texts embedded by this run (rows of the files it wrote).
    files : int
        Part files written by this run.
    skipped : int
        Part files already complete from an earlier run, left as they were.
    seconds : float
        Wall time of the run.
    texts_per_second : float
        ``rows / seconds``.
    """

    output_dir: Path
    rows: int
    files: int
    skipped: int
    seconds: float
    texts_per_second: float


def embed_to_parquet(
    data,
    output_dir,
    vectorizer,
    *,
    text_column="text",
    id_column=None,
    overwrite=False,
    progress=True,
):
    """Embed a table's texts into one Parquet file per input partition, resumably.

    Each partition becomes ``output_dir/part-NNNNN.parquet`` (``NNNNN`` its position),
    written under a temporary name and renamed when complete, so a file is either
    absent or whole. A worker killed mid-job leaves no partial or duplicate file: its
    partitions run again elsewhere and rename onto the same names.

    Running again resumes: the parts already there are kept when they hold this job's
    embeddings of these very rows, and the others are computed. To tell, a first pass
    reads the input once and records a digest of each partition's rows (texts and ids)
    in ``output_dir``'s manifest and in each part file's metadata. Other data (any
    partition's rows changed, or another number of partitions), another model or other
    settings is an error that names what differs: pass ``overwrite=True`` to replace the
    earlier parts, or write to another ``output_dir``. A part file that is damaged (its
    pages fail their checksums), a symbolic link, or not written by this job for this
    partition is computed again, never kept.

    Parameters
    ----------
    data : dask.dataframe.DataFrame, str or path-like
        The table, or a path or glob of ``.parquet`` (or a folder of them), ``.csv``,
        ``.tsv`` or ``.jsonl`` files, which dask reads in partitions.
    output_dir : str or path-like
        The folder to write (created if missing).
    vectorizer : AlbertVectorizer
        A fitted vectorizer; pickled once, unpickled once per worker process.
    text_column : str, default="text"
        The column of texts.
    id_column : str, default=None
        A column copied beside each embedding, under its own name. None writes a column
        ``id`` holding each row's position in ``data`` (0-based).
    overwrite : bool, default=False
        Delete the part files of an earlier job in ``output_dir`` first. If False, an
        ``output_dir`` written by a job with other data (rows of any partition), model or
        settings is an error.
    progress : bool, default=True
        Show a progress bar of finished partitions.

    Returns
    -------
    summary : EmbedSummary
        Rows and files written, files skipped, seconds and texts per second.

    Notes
    -----
    Each file has two columns: the id column and ``embedding``, a fixed-size list of
    ``n_features_out_`` float32 (int8 or uint8 with another ``output_dtype``).
    ``pandas.read_parquet(output_dir)`` (or ``dask.dataframe.read_parquet``) reads the
    parts back in order.

    The digest pass costs one read of the input (without ``id_column``, it also counts
    the rows each id needs, a pass made anyway). A resumed run also reads the kept part
    files once to verify them.

    Examples
    --------
    >>> from distributed import Client  # doctest: +SKIP
    >>> client = Client("tcp://scheduler:8786")  # doctest: +SKIP
    >>> embed_to_parquet("corpus/*.parquet", "embeddings/", vectorizer)  # doctest: +SKIP
    EmbedSummary(output_dir=..., rows=1000000, files=64, skipped=0, ...)
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(vectorizer)
    started = time.perf_counter()
    frame = _read_table(data)
    _check_columns(frame, text_column=text_column, id_column=id_column)
    frame = frame[[text_column] if id_column is None else [text_column, id_column]]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    import dask

    parts = frame.to_delayed()
    rows = _partition_rows(parts, text_column, id_column)
    manifest = _manifest(vectorizer, frame, text_column, id_column, rows)
    _claim_output_dir(output_dir, manifest, overwrite)

    n_partitions = frame.npartitions
    job = _job_key(manifest)
    todo = [i for i in range(n_partitions) if not _kept_part(output_dir, i, job, rows[i])]
    offsets = np.concatenate([[0], np.cumsum([n for n, _ in rows], dtype=np.int64)])
    digest, shipped = _shipped(vectorizer)
    write = dask.delayed(_write_part, pure=True)
    tasks = [
        write(
            parts[i],
            str(output_dir),
            i,
            int(offsets[i]),
            text_column,
            id_column,
            digest,
            shipped,
            {"job": job, "partition": i, "rows": rows[i][0], "digest": rows[i][1]},
        )
        for i in todo
    ]
    written = _run(tasks, progress=progress, description="Embedding partitions")
    _remove_leftovers(output_dir)
    rows = sum(n for n in written if n is not None)
    files = sum(n is not None for n in written)
    seconds = time.perf_counter() - started
    return EmbedSummary(
        output_dir=output_dir,
        rows=int(rows),
        files=int(files),
        skipped=n_partitions - len(todo) + sum(n is None for n in written),
        seconds=seconds,
        texts_per_second=rows / seconds if seconds > 0 else float("nan"),
    )


def _part_name(index):
    return PART_NAME.format(index=index)


def _write_part(part, output_dir, index, offset, text_column, id_column, digest, shipped, record):
    """Embed one partition into its part file; None when this task's file exists already.

    ``record`` (job, partition, rows, digest) goes into the file's metadata, so that a
    later run can tell that the file holds this job's embeddings of these rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = Path(output_dir) / _part_name(index)
    # A rerun of a task whose first run finished (a worker lost after the rename): the
    # driver removed every file it did not keep, so one that exists now is this job's.
    if not final.is_symlink() and _part_record(final) == record:
        return None
    if _partition_digest(part, text_column, id_column) != (record["rows"], record["digest"]):
        raise ValueError(
            f"Partition {index} of the input changed while embed_to_parquet ran: its rows "
            "differ from those read by the digest pass. Run again once the input is stable."
        )
    vectorizer = received(digest, shipped)
    features = np.ascontiguousarray(
        vectorizer.transform(part[text_column].tolist()),
        dtype=output_dtype_of(vectorizer.settings_),
    )
    if id_column is None:
        ids = pa.array(np.arange(offset, offset + len(part), dtype=np.int64))
    else:
        ids = pa.Array.from_pandas(part[id_column])
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1])
    table = pa.table({id_column or "id": ids, "embedding": embedding})
    table = table.replace_schema_metadata({PART_METADATA_KEY: json.dumps(record, sort_keys=True)})
    temporary = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
    try:
        pq.write_table(table, temporary, write_page_checksum=True)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return len(part)


def _remove_leftovers(output_dir):
    """Delete the temporary files of writers that died (all tasks are finished now)."""
    for leftover in output_dir.glob(f".part-*{TEMPORARY_SUFFIX}"):
        leftover.unlink(missing_ok=True)


def _read_table(data):
    """A dask DataFrame from a dask DataFrame, or from a path or glob dask can read."""
    import dask.dataframe as dd

    if isinstance(data, dd.DataFrame):
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(
            f"data is a {type(data).__name__}; expected a dask DataFrame or a path or glob "
            "of .parquet, .csv, .tsv or .jsonl files."
        )
    path = os.fspath(data)
    suffix = Path(path.rstrip("/*")).suffix.lower() if not os.path.isdir(path) else ".parquet"
    if suffix in (".parquet", ".pq"):
        return dd.read_parquet(path)
    if suffix == ".csv":
        return dd.read_csv(path)
    if suffix == ".tsv":
        return dd.read_csv(path, sep="\t")
    if suffix in (".jsonl", ".ndjson", ".json"):
        return dd.read_json(path, lines=True, blocksize=2**26)
    raise ValueError(
        f"Got data={path!r}, whose suffix {suffix!r} is not a table dask reads here. Use "
        ".parquet (or a folder of them), .csv, .tsv or .jsonl files, or a dask DataFrame."
    )


def _check_columns(frame, *, text_column, id_column):
    columns = list(frame.columns)
    for name, value in (("text_column", text_column), ("id_column", id_column)):
        if value is not None and value not in columns:
            raise ValueError(f"Got {name}={value!r} but the data's columns are {columns}.")
    if id_column == "embedding":
        raise ValueError(
            "Got id_column='embedding', the name of the output's embedding column. "
            "Rename that column first."
        )


def _partition_rows(parts, text_column, id_column):
    """``[(n_rows, digest), ...]`` of each partition: one pass over the input."""
    import dask

    digest = dask.delayed(_partition_digest, pure=True)
    tasks = [digest(part, text_column, id_column) for part in parts]
    return [(int(n), str(d)) for n, d in _run(tasks, progress=False, description="")]


def _partition_digest(part, text_column, id_column):
    """``(n_rows, digest)``: the rows' texts (and ids), length-prefixed, in order."""
    digest = hashlib.blake2b(digest_size=16)
    columns = [text_column] if id_column is None else [text_column, id_column]
    for column in columns:
        digest.update(f"column {column!r}".encode())
        for value in part[column].tolist():
            # A type tag, so that the text "None" and a missing value differ.
            tag, text = (b"s", value) if isinstance(value, str) else (b"r", repr(value))
            encoded = text.encode("utf-8", "surrogatepass")
            digest.update(tag + len(encoded).to_bytes(8, "little") + encoded)
    return len(part), digest.hexdigest()


def _job_key(manifest):
    """A digest of what makes the numbers (model, settings, columns), data aside."""
    settings = {key: value for key, value in manifest.items() if key not in DATA_KEYS}
    encoded = json.dumps(settings, sort_keys=True).encode()
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _part_record(path):
    """The record a part file's metadata holds, or None (absent, unreadable, foreign)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[PART_METADATA_KEY.encode()])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _kept_part(output_dir, index, job, rows):
    """Whether the part file of partition ``index`` holds this job's rows, intact.

    A symbolic link, a file of another job or partition, or a damaged file (a page that
    fails its checksum, a short file) is removed, to be computed again.
    """
    import pyarrow.parquet as pq

    path = output_dir / _part_name(index)
    if not path.exists() and not path.is_symlink():
        return False
    expected = {"job": job, "partition": index, "rows": rows[0], "digest": rows[1]}
    intact = False
    if not path.is_symlink() and _part_record(path) == expected:
        try:
            table = pq.read_table(path, page_checksum_verification=True)
            intact = table.num_rows == rows[0]
        except (OSError, ValueError):
            intact = False
    if not intact:
        path.unlink()
    return intact


def _manifest(vectorizer, frame, text_column, id_column, rows):
    settings = vectorizer.settings_
    return {
        "format": 2,
        "partitions": frame.npartitions,
        "partition_rows": [n for n, _ in rows],
        "partition_digests": [d for _, d in rows],
        "text_column": text_column,
        "id_column": id_column,
        "model_fingerprint": vectorizer.model_fingerprint_,
        "n_features": int(vectorizer.n_features_out_),
        "dtype": vectorizer.dtype_,
        "settings": {
            name: repr(getattr(settings, name))
            for name in OUTPUT_SETTINGS
            if LATER_SETTINGS.get(name, _ALWAYS) != getattr(settings, name)
        },
        **_quantization_record(vectorizer),
    }


def _quantization_record(vectorizer):
    """The digest of fitted int8 or uint8 ranges, which change the numbers written."""
    ranges = getattr(vectorizer, "quantization_ranges_", None)
    if ranges is None:
        return {}
    digest = hashlib.blake2b(np.ascontiguousarray(ranges, np.float32).tobytes(), digest_size=16)
    return {"quantization_ranges": digest.hexdigest()}


def _claim_output_dir(output_dir, manifest, overwrite):
    """Write the job's manifest, or check that the folder's parts belong to this job."""
    path = output_dir / MANIFEST_NAME
    if overwrite:
        for part in output_dir.glob("part-*.parquet"):
            part.unlink()
        _remove_leftovers(output_dir)
    elif path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in manifest if previous.get(key) != manifest[key])
        if changed:
            raise ValueError(
                f"output_dir={str(output_dir)!r} holds the parts of another job "
                f"({_what_differs(previous, manifest, changed)}). Use a new folder, or "
                "overwrite=True to replace them."
            )
        return
    elif any(output_dir.glob("part-*.parquet")):
        raise ValueError(
            f"output_dir={str(output_dir)!r} holds part files but no {MANIFEST_NAME}: "
            "they were not written by embed_to_parquet. Use a new folder, or overwrite=True."
        )
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def _what_differs(previous, manifest, changed):
    """The differences between two manifests, in words: other data, other settings."""
    said = []
    if any(key in DATA_KEYS for key in changed):
        old_rows = previous.get("partition_rows") or []
        old_digests = previous.get("partition_digests") or []
        if previous.get("partitions") != manifest["partitions"] or not old_digests:
            said.append(
                f"other data: {previous.get('partitions')} input partitions then, "
                f"{manifest['partitions']} now"
                if old_digests
                else "written without a digest of its input rows, by an earlier version, "
                "so other data cannot be ruled out"
            )
        else:
            differ = [
                index
                for index, now in enumerate(
                    zip(manifest["partition_rows"], manifest["partition_digests"])
                )
                if (old_rows[index], old_digests[index]) != now
            ]
            shown = ", ".join(str(index) for index in differ[:10])
            more = f" and {len(differ) - 10} more" if len(differ) > 10 else ""
            said.append(
                f"other data: the rows of input partition(s) {shown}{more} of "
                f"{manifest['partitions']} differ from those embedded there"
            )
    settings = [key for key in changed if key not in DATA_KEYS]
    if settings:
        said.append(f"its {', '.join(settings)} differ")
    return "; ".join(said)


def _run(tasks, *, progress, description):
    """Compute delayed tasks on the active scheduler, with a progress bar of tasks."""
    if not tasks:
        return []
    client = _current_client()
    if client is None:
        import dask

        if not progress:
            return list(dask.compute(*tasks))
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return list(dask.compute(*tasks))
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(tasks)
    bar = tqdm(total=len(futures), desc=description, unit="part", disable=not progress)
    try:
        for _ in as_completed(futures):
            bar.update(1)
    finally:
        bar.close()
    return client.gather(futures)


def _current_client():
    if "distributed" not in sys.modules:  # no Client can exist without it
        return None
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


# ---------------------------------------------------------------------- shipping


def _shipped(estimator, n_partitions=None):
    """``(digest, delayed)``: the estimator's pickle as one graph key shared by all tasks.

    The scheduler holds the bytes once and each worker fetches them once, whatever the
    number of partitions (the per-task pickling of dask-ml's ParallelPostFit is what this
    avoids). For a ``map_partitions`` over one partition the bytes are the task's own
    argument instead: dask 2026.8's array optimization cannot compute a one-partition
    ``read_parquet`` that depends on a delayed key ("Cannot fuse tasks with multiple
    outputs"), and one task ships the bytes once either way.
    """
    import cloudpickle
    import dask

    payload = cloudpickle.dumps(estimator)
    digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
    if n_partitions == 1:
        return digest, payload
    return digest, dask.delayed(payload, name=f"sklearn-albert-estimator-{digest}")


def _dask_dataframe(X, parameter):
    import dask.dataframe as dd

    if not isinstance(X, (dd.Series, dd.DataFrame)):
        raise TypeError(
            f"{parameter} is a {type(X).__module__}.{type(X).__name__}; expected a dask "
            "Series or DataFrame (dask.dataframe.from_pandas, read_parquet, read_csv)."
        )
