"""Similarity and search over embeddings: cosine scores and nearest texts.

Cosine similarity is the natural score for sentence embeddings. These helpers compute it
in float32 without ever dividing by zero (a zero vector has similarity 0 to everything),
and search a corpus block by block so that memory stays bounded by ``block_size x
len(corpus)`` however many queries there are.

For an index to reuse across many searches, scikit-learn's ``NearestNeighbors`` works on
the same embeddings: ``NearestNeighbors(metric="cosine").fit(vectorizer.transform(corpus))``
(or, with ``normalize=True``, the faster default Euclidean metric, whose ranking is the
same on unit vectors).
"""

from numbers import Integral
from typing import NamedTuple

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._validation import validate_texts

#: Queries scored against the whole corpus at once by :func:`most_similar`.
SEARCH_BLOCK = 1024


class Match(NamedTuple):
    """One search result: a corpus text and its cosine similarity to the query.

    Attributes
    ----------
    index : int
        Position of the text in the corpus.
    text : str
        The corpus text.
    score : float
        Cosine similarity to the query, in [-1, 1].
    """

    index: int
    text: str
    score: float


def cosine_similarity_matrix(X, Y=None):
    """Cosine similarity between every row of ``X`` and every row of ``Y``.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        Embeddings, e.g. from ``AlbertVectorizer.transform``.
    Y : array-like of shape (n_samples_Y, n_features), default=None
        Other embeddings; None compares ``X`` with itself.

    Returns
    -------
    similarity : ndarray of shape (n_samples_X, n_samples_Y), float32
        A row of zeros stands for a zero vector, which has no direction.

    See Also
    --------
    sklearn.metrics.pairwise.cosine_similarity : The same in float64, for sparse input too.
    """
    X = _unit_rows(X, "X")
    Y = X if Y is None else _unit_rows(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"Got X with {X.shape[1]} features and Y with {Y.shape[1]}; embeddings to "
            "compare must come from the same vectorizer settings."
        )
    return X @ Y.T


def paired_cosine_similarity(X, Y):
    """Cosine similarity between each row of ``X`` and the same row of ``Y``.

    The score of sentence-pair benchmarks such as STS-B.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings of the first texts of each pair.
    Y : array-like of shape (n_samples, n_features)
        Embeddings of the second texts, row for row.

    Returns
    -------
    similarity : ndarray of shape (n_samples,), float32
        Cosine similarity of each pair; 0 where either vector is zero.
    """
    X, Y = _unit_rows(X, "X"), _unit_rows(Y, "Y")
    if X.shape != Y.shape:
        raise ValueError(
            f"Got X of shape {X.shape} and Y of shape {Y.shape}; paired similarity needs "
            "one row of Y per row of X."
        )
    return np.einsum("ij,ij->i", X, Y)


def most_similar(query_texts, corpus_texts, vectorizer, *, top_k=5):
    """The corpus texts closest to each query, by cosine similarity of their embeddings.

    Parameters
    ----------
    query_texts : iterable of str
        What to search for.
    corpus_texts : iterable of str
        Where to search.
    vectorizer : AlbertVectorizer
        Embeds both sides. An unfitted one is cloned and fitted (fitting only loads the
        model), so the caller's object is never changed; a fitted one is used as is, and
        its embedding cache spares re-encoding the corpus on later calls.
    top_k : int, default=5
        Matches per query (fewer if the corpus is smaller).

    Returns
    -------
    matches : list of list of Match
        For each query, ``Match(index, text, score)`` tuples, best first; equal scores
        keep corpus order.

    Examples
    --------
    >>> from sklearn_albert import AlbertVectorizer, most_similar
    >>> corpus = ["A man plays the guitar.", "A chef cooks pasta.", "A dog runs."]
    >>> most_similar(["someone is cooking"], corpus, AlbertVectorizer(), top_k=1)  # doctest: +SKIP
    [[Match(index=1, text='A chef cooks pasta.', score=0.62)]]
    """
    queries = validate_texts(query_texts, parameter="query_texts")
    corpus = validate_texts(corpus_texts, parameter="corpus_texts")
    if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"Got top_k={top_k!r} but expected a positive integer.")
    if not queries or not corpus:
        return [[] for _ in queries]
    try:
        check_is_fitted(vectorizer)
    except NotFittedError:
        vectorizer = clone(vectorizer).fit(corpus)
    output_dtype = getattr(getattr(vectorizer, "settings_", None), "output_dtype", "float32")
    if output_dtype != "float32":
        raise ValueError(
            f"Got a vectorizer with output_dtype={output_dtype!r}: cosine similarity needs "
            "float vectors. Use output_dtype='float32' here (quantized vectors are for a "
            "vector store: compare int8 codes by dot product, binary ones by Hamming "
            "distance)."
        )
    corpus_vectors = _unit_rows(vectorizer.transform(corpus), "corpus embeddings")
    query_vectors = _unit_rows(vectorizer.transform(queries), "query embeddings")
    top_k = min(top_k, len(corpus))
    matches = []
    for start in range(0, len(queries), SEARCH_BLOCK):
        scores = query_vectors[start : start + SEARCH_BLOCK] @ corpus_vectors.T
        for row in scores:
            best = _top_indices(row, top_k)
            matches.append([Match(int(i), corpus[i], float(row[i])) for i in best])
    return matches


def _top_indices(scores, top_k):
    """Indices of the ``top_k`` highest scores, best first, ties in index order."""
    if top_k < len(scores):
        candidates = np.argpartition(-scores, top_k - 1)[:top_k]
        # Ties at the boundary: take every index scoring as well as the weakest kept.
        threshold = scores[candidates].min()
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:top_k]


def _unit_rows(X, name):
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(
            f"Got {name} with shape {X.shape} but expected a 2-D array of embeddings "
            "(n_samples, n_features)."
        )
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, np.finfo(np.float32).tiny)
