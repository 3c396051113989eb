"""Embed a Spark DataFrame's texts with a fitted AlbertVectorizer, one model per Python worker.

Built on ``pyspark.ml.functions.predict_batch_udf``, which calls the model factory once
per Python worker process and caches what it returns, and hands it Arrow batches of
``batch_size`` rows. pyspark is imported only when :func:`embedding_udf` runs.
"""

from numbers import Integral

import numpy as np

__all__ = ["embedding_udf"]

#: Each ``output_dtype``'s Spark element type and the numpy dtype handed to it: Spark has
#: no unsigned byte, so uint8 codes travel as shorts (0 to 255).
SPARK_ELEMENT_TYPES = {
    "float32": ("FloatType", np.float32),
    "int8": ("ByteType", np.int8),
    "binary": ("ByteType", np.int8),
    "uint8": ("ShortType", np.int16),
    "ubinary": ("ShortType", np.int16),
}


def embedding_udf(vectorizer, *, batch_size=256):
    """A pandas UDF that embeds a string column into ``array<float>`` rows (or integers).

    Parameters
    ----------
    vectorizer : AlbertVectorizer
        A fitted vectorizer. Its pickle (without the weights unless
        ``store_weights_in_pickle=True``) goes to the executors; each Python worker
        unpickles it once and loads the model once, on its best device when
        ``device="auto"``.
    batch_size : int, default=256
        Rows handed to the vectorizer per call; the vectorizer still batches its forward
        passes by its own ``batch_size`` and ``max_tokens_per_batch``.

    Returns
    -------
    udf : callable
        Call it on a column of strings: ``df.withColumn("embedding", udf("text"))``. Each
        row gets ``n_features_out_`` float32 values (Spark's ``array<float>``), in the
        rows' own order. With ``output_dtype="int8"`` or ``"binary"`` they are
        ``array<tinyint>``; with ``"uint8"`` or ``"ubinary"`` ``array<smallint>`` (Spark
        has no unsigned byte). Null texts are an error (filter them out first).

    Examples
    --------
    >>> from sklearn_albert.spark import embedding_udf  # doctest: +SKIP
    >>> embed = embedding_udf(vectorizer, batch_size=512)  # doctest: +SKIP
    >>> spark.read.parquet("corpus/").withColumn("embedding", embed("text"))  # doctest: +SKIP
    """
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"Got batch_size={batch_size!r} but expected a positive integer.")
    check_is_fitted(vectorizer)
    try:
        from pyspark.ml.functions import predict_batch_udf
        from pyspark.sql import types
    except ImportError as error:
        raise ImportError(
            "sklearn_albert.spark needs pyspark: pip install 'sklearn-albert[spark]'."
        ) from error
    import cloudpickle

    # Bytes, not the estimator: the UDF's closure then pickles the same way everywhere,
    # and each worker unpickles a private copy.
    payload = cloudpickle.dumps(vectorizer)
    n_features = int(vectorizer.n_features_out_)
    element_type, dtype = SPARK_ELEMENT_TYPES[vectorizer.settings_.output_dtype]
    return predict_batch_udf(
        lambda: _make_embed(payload, n_features, dtype),
        return_type=types.ArrayType(getattr(types, element_type)()),
        batch_size=int(batch_size),
    )


def _make_embed(payload, n_features, dtype):
    """The per-worker factory: unpickle the vectorizer once, return the batch function."""
    import pickle

    from ._hosts import choose_device_here, reuse_freed_memory

    reuse_freed_memory()
    vectorizer = pickle.loads(payload)
    choose_device_here(vectorizer)

    def embed(texts):
        if len(texts) == 0:
            return np.empty((0, n_features), dtype=dtype)
        return np.asarray(vectorizer.transform(texts.tolist()), dtype=dtype)

    return embed
