"""From pooled vectors to the output: Matryoshka cut, normalisation, quantization.

The order is fixed: normalise the pooled vector (``normalize=True``), keep its first
``truncate_dim`` values, normalise again (so that a cut vector has unit length too), then
quantize to ``output_dtype``. Normalising before the cut changes nothing once the cut
vector is normalised again, so that step is skipped. All of it runs after the embedding
cache, on float32 features: a grid search over ``truncate_dim`` or ``output_dtype`` reads
the same cached summaries and encodes each text once.

Quantization
------------
``"int8"`` and ``"uint8"`` map each dimension's fitted range ``[low, high]`` (its minimum
and maximum over the texts given to ``fit``, :func:`fit_ranges`) onto 256 evenly spaced
levels; values outside the range are clipped. The ranges are fitted state, so a text's
codes never depend on the other texts of a call. ``"binary"`` and ``"ubinary"`` keep one
bit per dimension, set when the value is positive, packed eight to a byte with
:func:`numpy.packbits` (most significant bit first; a last partial byte is padded with
zero bits): ``"ubinary"`` as uint8, ``"binary"`` as int8 (each byte minus 128), the two
layouts sentence-transformers names alike.
"""

import numpy as np

#: ``output_dtype`` values and the numpy dtype of their output.
OUTPUT_DTYPES = {
    "float32": np.dtype(np.float32),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "binary": np.dtype(np.int8),
    "ubinary": np.dtype(np.uint8),
}

#: Output dtypes whose levels are fitted on the texts given to ``fit``.
FITTED_RANGE_DTYPES = ("int8", "uint8")

#: Output dtypes that pack one sign bit per dimension.
PACKED_DTYPES = ("binary", "ubinary")

_LEVELS = 255  # steps between the lowest and highest of 256 levels


def output_width(n_dims, output_dtype):
    """Output columns for ``n_dims`` float dimensions: a byte per 8 dimensions when packed."""
    return -(-n_dims // 8) if output_dtype in PACKED_DTYPES else n_dims


def output_dtype_of(settings):
    """The numpy dtype of the output of an estimator fitted with ``settings``."""
    return OUTPUT_DTYPES[settings.output_dtype]


def finish_vectors(features, *, normalize, truncate_dim):
    """Pooled float32 rows cut to ``truncate_dim`` and normalised, as ``normalize`` asks.

    Parameters
    ----------
    features : ndarray of shape (n, n_pooled), float32
        Not written to.
    normalize : bool
    truncate_dim : int or None

    Returns
    -------
    vectors : ndarray of shape (n, truncate_dim or n_pooled), float32
    """
    if truncate_dim is not None and truncate_dim < features.shape[1]:
        features = features[:, :truncate_dim]
    if not normalize:
        return np.ascontiguousarray(features)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float32).tiny)


def fit_ranges(vectors, output_dtype):
    """Each dimension's ``[low, high]`` over ``vectors``, for ``int8`` or ``uint8`` output.

    Parameters
    ----------
    vectors : ndarray of shape (n, n_dims), float32
        The finished vectors (:func:`finish_vectors`) of the texts given to ``fit``.
    output_dtype : {"int8", "uint8"}
        Named in the error when ``vectors`` is empty.

    Returns
    -------
    ranges : ndarray of shape (2, n_dims), float32
        Row 0 the minimum of each dimension, row 1 its maximum.
    """
    if not len(vectors):
        raise ValueError(
            f"Got output_dtype={output_dtype!r} and no texts to fit: int8 and uint8 output "
            "map each dimension's range over the texts given to fit onto 256 levels. Fit on "
            "texts like those you will embed, or use output_dtype='float32', 'binary' or "
            "'ubinary', which need none."
        )
    return np.stack([vectors.min(axis=0), vectors.max(axis=0)]).astype(np.float32)


def quantize(vectors, output_dtype, ranges=None):
    """``vectors`` in ``output_dtype`` (see the module docstring for each layout).

    Parameters
    ----------
    vectors : ndarray of shape (n, n_dims), float32
    output_dtype : str
        A key of :data:`OUTPUT_DTYPES`.
    ranges : ndarray of shape (2, n_dims), default=None
        From :func:`fit_ranges`; required for ``"int8"`` and ``"uint8"``.

    Returns
    -------
    output : ndarray of shape (n, output_width(n_dims, output_dtype))
    """
    if output_dtype == "float32":
        return vectors
    if output_dtype in PACKED_DTYPES:
        packed = np.packbits(vectors > 0, axis=1)
        if output_dtype == "ubinary":
            return packed
        return (packed.astype(np.int16) - 128).astype(np.int8)
    low, high = ranges[0], ranges[1]
    # A dimension constant over the fit texts gets level 0 for its value (and clips to it).
    step = np.where(high > low, (high - low) / _LEVELS, 1.0).astype(np.float32)
    levels = np.clip(np.rint((vectors - low) / step), 0, _LEVELS)
    if output_dtype == "uint8":
        return levels.astype(np.uint8)
    return (levels - 128).astype(np.int8)
