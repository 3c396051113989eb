"""From pooled vectors to the output: Matryoshka cut and normalisation.

The order is fixed: normalise the pooled vector (``normalize=True``), keep its first
``truncate_dim`` values, normalise again (so that a cut vector has unit length too).
Normalising before the cut changes nothing once the cut vector is normalised again, so
that step is skipped. All of it runs after the embedding cache, on float32 features: a
grid search over ``truncate_dim`` reads the same cached summaries and encodes each text
once.
"""

import numpy as np


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
