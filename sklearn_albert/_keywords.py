"""Keyword extraction: the candidate n-grams whose embeddings lie closest to the document's.

The method is KeyBERT's (Grootendorst, 2020): list a document's candidate n-grams, embed
the document and every candidate with the same encoder, rank candidates by cosine
similarity to the document, and optionally trade some similarity for diversity with
Maximal Marginal Relevance or Max Sum Similarity.

Candidates come from scikit-learn's ``CountVectorizer``: its word analyzer for languages
written with spaces, and for Chinese (and Japanese) text either character n-grams or, when
the optional ``jieba`` package is installed, n-grams of jieba's words. No n-gram crosses
punctuation in the Chinese modes.

Every embedding goes through one internal ``AlbertVectorizer``, so candidates shared by
several documents are encoded once and the embedding cache serves repeated calls.
"""

import importlib.util
import itertools
import logging
import math
import re
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

from ._validation import validate_texts
from ._vectorizer import AlbertVectorizer

#: The AlbertVectorizer options an AlbertKeywordExtractor passes through unchanged.
MODEL_OPTIONS = (
    "model_name_or_path",
    "pooling",
    "layers",
    "layer_aggregation",
    "max_length",
    "batch_size",
    "max_tokens_per_batch",
    "device",
    "dtype",
    "embedding_cache",
    "revision",
    "cache_dir",
    "local_files_only",
    "token_env",
    "verbose",
)

#: Han ideographs, kana and CJK compatibility ideographs: scripts written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_UNIT = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
# Characters that end an n-gram run in the Chinese modes: anything but letters, digits and spaces.
_BREAK = re.compile(r"[^\w\s]+")

# The largest number of keyword sets max_sum may compare (n_candidates choose top_k).
MAX_SUM_COMBINATIONS = 1_000_000


class AlbertKeywordExtractor(BaseEstimator):
    """Extract keywords: the n-grams of a document whose embeddings are closest to its own.

    Candidates are the document's n-grams (scikit-learn's ``CountVectorizer`` lists them);
    the document and each candidate are embedded by an :class:`AlbertVectorizer` built from
    the model options below; candidates are ranked by cosine similarity to the document,
    optionally re-ranked for diversity. The model is pretrained and frozen: ``fit`` only
    loads it, and :meth:`extract_keywords` fits first when needed.

    Parameters
    ----------
    model_name_or_path : str or path-like, default="albert-base-v2"
        A Hugging Face hub id or a local folder, as for :class:`AlbertVectorizer`.

    ngram_range : tuple (min_n, max_n), default=(1, 2)
        Lengths of candidate n-grams, in words (in characters or jieba words for Chinese).

    stop_words : "english", list of str or None, default="english"
        Words that never start, end or sit inside a candidate (removed before n-grams are
        formed, as ``CountVectorizer`` does). ``"english"`` is scikit-learn's list; for
        Chinese pass a list such as ``["的", "了", "是"]``.

    analyzer : {"auto", "word", "char", "jieba"}, default="auto"
        How candidates are cut:

        - ``"word"``: ``CountVectorizer``'s word n-grams (lowercased);
        - ``"char"``: for Chinese and Japanese, n-grams of single characters (Latin words
          count as one unit), never across punctuation; no segmenter needed;
        - ``"jieba"``: n-grams of the words found by the ``jieba`` segmenter
          (``pip install sklearn-albert[chinese]``);
        - ``"auto"``: per document, ``"word"`` unless Chinese or Japanese characters
          outnumber Latin words, then ``"jieba"`` if it is installed (and the text is not
          Japanese), else ``"char"``.

    diversity_method : {"mmr", "max_sum"} or None, default="mmr"
        ``"mmr"`` (Maximal Marginal Relevance) picks keywords one by one, each maximising
        ``(1 - diversity) * similarity to the document - diversity * similarity to the
        keywords already picked``. ``"max_sum"`` takes the ``n_candidates`` candidates
        closest to the document and returns the ``top_k`` of them least similar to each
        other. None ranks by similarity alone.

    diversity : float in [0, 1], default=0.5
        Weight of diversity for ``"mmr"``: 0 ranks by similarity alone, 1 by novelty alone.

    n_candidates : int, default=20
        Pool size for ``"max_sum"``; at most ``MAX_SUM_COMBINATIONS`` (one million) subsets
        of ``top_k`` among them are compared.

    top_k : int, default=5
        Keywords per document when :meth:`extract_keywords` is not given ``top_k``.

    pooling : str or list of str, default="mean"
        How token vectors become the document's and each candidate's vector; see
        :class:`AlbertVectorizer`, like every parameter below, passed on unchanged.

    layers : int or tuple of int, default=-1
        Hidden states to pool (0 = embedding output, -1 = last layer).

    layer_aggregation : {"mean", "concat"}, default="mean"
        How several selected layers combine.

    max_length : int, default=None
        Tokens per text; None is the model's limit. Longer documents are truncated.

    batch_size : int, default=32
        At most this many texts per forward pass.

    max_tokens_per_batch : int or "auto", default="auto"
        At most this many padded tokens per forward pass.

    device : str, default="auto"
        "auto" (cuda, else mps, else cpu) or any torch device string.

    dtype : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Compute precision; scores are always float.

    embedding_cache : "memory", path-like or None, default="memory"
        Where encodings of already seen texts (documents and candidates) are kept.

    revision : str, default=None
        Hub branch, tag or commit of the checkpoint.

    cache_dir : str or path-like, default=None
        Hugging Face download cache folder.

    local_files_only : bool, default=False
        Never use the network.

    token_env : str, default=None
        Name of an environment variable holding a hub token.

    verbose : bool, default=False
        Show a progress bar while encoding.

    Attributes
    ----------
    vectorizer_ : AlbertVectorizer
        The fitted vectorizer that embeds documents and candidates (``normalize=True``).

    See Also
    --------
    AlbertVectorizer : The embeddings underneath.
    sklearn.feature_extraction.text.CountVectorizer : Lists the candidate n-grams.

    Notes
    -----
    Scores are cosine similarities between a keyword and its document, whatever the
    diversity method; keywords are returned from the highest score down. Documents longer
    than the vectorizer's ``max_length`` are embedded from their first ``max_length``
    tokens (with a warning), while candidates come from the whole text.

    Examples
    --------
    >>> from sklearn_albert import AlbertKeywordExtractor
    >>> extractor = AlbertKeywordExtractor("albert-base-v2", top_k=3)  # doctest: +SKIP
    >>> docs = ["Supervised learning fits a model to labelled data."]
    >>> extractor.extract_keywords(docs)  # doctest: +SKIP
    [[('supervised learning', 0.71), ('labelled data', 0.58), ('model', 0.41)]]
    """

    _parameter_constraints: dict = {
        **{name: AlbertVectorizer._parameter_constraints[name] for name in MODEL_OPTIONS},
        "ngram_range": [tuple],
        "stop_words": [StrOptions({"english"}), list, None],
        "analyzer": [StrOptions({"auto", "word", "char", "jieba"})],
        "diversity_method": [StrOptions({"mmr", "max_sum"}), None],
        "diversity": [Interval(Real, 0, 1, closed="both")],
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "top_k": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        model_name_or_path="albert-base-v2",
        *,
        ngram_range=(1, 2),
        stop_words="english",
        analyzer="auto",
        diversity_method="mmr",
        diversity=0.5,
        n_candidates=20,
        top_k=5,
        pooling="mean",
        layers=-1,
        layer_aggregation="mean",
        max_length=None,
        batch_size=32,
        max_tokens_per_batch="auto",
        device="auto",
        dtype="auto",
        embedding_cache="memory",
        revision=None,
        cache_dir=None,
        local_files_only=False,
        token_env=None,
        verbose=False,
    ):
        self.model_name_or_path = model_name_or_path
        self.ngram_range = ngram_range
        self.stop_words = stop_words
        self.analyzer = analyzer
        self.diversity_method = diversity_method
        self.diversity = diversity
        self.n_candidates = n_candidates
        self.top_k = top_k
        self.pooling = pooling
        self.layers = layers
        self.layer_aggregation = layer_aggregation
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.device = device
        self.dtype = dtype
        self.embedding_cache = embedding_cache
        self.revision = revision
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only
        self.token_env = token_env
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Load the model. Nothing is learned from X.

        Parameters
        ----------
        X : iterable of str or None
            Ignored apart from its type; documents are given to :meth:`extract_keywords`.
        y : None
            Ignored.

        Returns
        -------
        self : AlbertKeywordExtractor
            The fitted extractor.
        """
        if X is not None:
            validate_texts(X)
        _check_ngram_range(self.ngram_range)
        if self.analyzer == "jieba" and not _jieba_installed():
            raise InvalidParameterError(
                "Got analyzer='jieba' but the jieba package is not installed. Install it "
                "(pip install sklearn-albert[chinese]) or use analyzer='char'."
            )
        options = {name: getattr(self, name) for name in MODEL_OPTIONS}
        self.vectorizer_ = AlbertVectorizer(**options, normalize=True).fit(["warm up"])
        return self

    def extract_keywords(self, docs, top_k=None, *, top_n=None):
        """The keywords of each document, with their similarity to it.

        Parameters
        ----------
        docs : iterable of str
            Documents: a list, tuple, numpy array, pandas Series or one-column DataFrame.
        top_k : int, default=None
            Keywords per document; None uses the ``top_k`` parameter. Documents with
            fewer candidates return all of them.
        top_n : int, default=None
            Another name for ``top_k``, the one KeyBERT's ``extract_keywords`` uses.
            Giving both with different values is an error.

        Returns
        -------
        keywords : list of list of (str, float)
            For each document, ``(keyword, cosine similarity)`` pairs, highest first.
        """
        texts = validate_texts(docs, parameter="docs")
        if top_n is not None:
            if top_k is not None and top_k != top_n:
                raise ValueError(
                    f"Got top_k={top_k!r} and top_n={top_n!r}: top_n is another name for "
                    "top_k (KeyBERT's). Pass one of them."
                )
            top_k = top_n
        top_k = self.top_k if top_k is None else top_k
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"Got top_k={top_k!r} but expected a positive integer.")
        if not hasattr(self, "vectorizer_"):
            self.fit()
        candidates = [self.list_candidates(text) for text in texts]
        if not texts:
            return []
        doc_vectors = self.vectorizer_.transform(texts)
        unique = sorted({candidate for row in candidates for candidate in row})
        row_of = {candidate: row for row, candidate in enumerate(unique)}
        candidate_vectors = (
            self.vectorizer_.transform(unique) if unique else np.empty((0, doc_vectors.shape[1]))
        )
        return [
            select_keywords(
                doc_vector,
                candidate_vectors[[row_of[c] for c in row]],
                row,
                top_k=top_k,
                method=self.diversity_method,
                diversity=self.diversity,
                n_candidates=self.n_candidates,
            )
            for doc_vector, row in zip(doc_vectors, candidates)
        ]

    def list_candidates(self, doc):
        """The candidate keywords of one document, as listed by ``CountVectorizer``.

        Parameters
        ----------
        doc : str
            One document.

        Returns
        -------
        candidates : list of str
            Distinct n-grams in ``CountVectorizer``'s (alphabetical) order.
        """
        analyzer = self._analyzer_for(doc)
        if analyzer == "word":
            counter = CountVectorizer(ngram_range=self.ngram_range, stop_words=self.stop_words)
        else:
            segment = _segment_jieba if analyzer == "jieba" else _segment_chars
            stop_words = self._stop_word_set()
            counter = CountVectorizer(
                analyzer=lambda text: _unit_ngrams(text, segment, self.ngram_range, stop_words)
            )
        try:
            counter.fit([doc])
        except ValueError:  # "empty vocabulary": nothing but stop words or punctuation
            return []
        return counter.get_feature_names_out().tolist()

    def _analyzer_for(self, doc):
        if self.analyzer != "auto":
            return self.analyzer
        n_cjk = len(_CJK_CHAR.findall(doc))
        if n_cjk == 0 or n_cjk < len(_LATIN_WORD.findall(doc)):
            return "word"
        has_kana = re.search("[\u3040-\u30ff]", doc) is not None
        return "jieba" if _jieba_installed() and not has_kana else "char"

    def _stop_word_set(self):
        if self.stop_words == "english":
            return ENGLISH_STOP_WORDS
        return frozenset(self.stop_words or ())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


def select_keywords(
    doc_vector, candidate_vectors, candidates, *, top_k, method, diversity, n_candidates
):
    """Rank one document's candidates by similarity, with optional diversity.

    Parameters
    ----------
    doc_vector : ndarray of shape (dim,)
        Unit-norm document embedding.
    candidate_vectors : ndarray of shape (n_candidates, dim)
        Unit-norm candidate embeddings.
    candidates : list of str
    top_k : int
    method : {"mmr", "max_sum"} or None
    diversity : float
    n_candidates : int
        Pool size for "max_sum".

    Returns
    -------
    keywords : list of (str, float)
        Highest cosine similarity first.
    """
    if not candidates:
        return []
    similarity = candidate_vectors @ doc_vector
    top_k = min(top_k, len(candidates))
    if method == "mmr":
        chosen = maximal_marginal_relevance(similarity, candidate_vectors, top_k, diversity)
    elif method == "max_sum":
        chosen = max_sum_similarity(similarity, candidate_vectors, top_k, n_candidates)
    else:
        chosen = np.argsort(-similarity, kind="stable")[:top_k]
    chosen = sorted(chosen, key=lambda index: -similarity[index])
    return [(candidates[index], float(similarity[index])) for index in chosen]


def maximal_marginal_relevance(similarity, vectors, top_k, diversity):
    """Indices picked greedily by MMR (Carbonell and Goldstein, 1998)."""
    chosen = [int(np.argmax(similarity))]
    remaining = [index for index in range(len(similarity)) if index != chosen[0]]
    while len(chosen) < top_k and remaining:
        redundancy = (vectors[remaining] @ vectors[chosen].T).max(axis=1)
        score = (1 - diversity) * similarity[remaining] - diversity * redundancy
        chosen.append(remaining.pop(int(np.argmax(score))))
    return chosen


def max_sum_similarity(similarity, vectors, top_k, n_candidates):
    """Among the ``n_candidates`` closest candidates, the ``top_k`` least similar to each other."""
    pool_size = min(max(n_candidates, top_k), len(similarity))
    n_subsets = math.comb(pool_size, top_k)
    if n_subsets > MAX_SUM_COMBINATIONS:
        raise ValueError(
            f"Got n_candidates={n_candidates} and top_k={top_k}: max_sum would compare "
            f"{n_subsets:,} keyword sets, more than {MAX_SUM_COMBINATIONS:,}. Lower "
            "n_candidates or top_k, or use diversity_method='mmr'."
        )
    pool = np.argsort(-similarity, kind="stable")[:pool_size]
    pairwise = vectors[pool] @ vectors[pool].T
    best, best_sum = None, np.inf
    for subset in itertools.combinations(range(pool_size), top_k):
        subset = list(subset)
        total = pairwise[np.ix_(subset, subset)].sum()
        if total < best_sum:
            best, best_sum = subset, total
    return [int(pool[index]) for index in best]


def _unit_ngrams(text, segment, ngram_range, stop_words):
    """N-grams of consecutive units within each punctuation-free run of ``text``."""
    low, high = ngram_range
    grams = []
    for run in _BREAK.split(text.lower()):
        units = [unit for unit in segment(run) if unit not in stop_words]
        for n in range(low, high + 1):
            for start in range(len(units) - n + 1):
                grams.append(_join(units[start : start + n]))
    return grams


def _join(units):
    """Chinese units join directly; a space separates two non-Chinese units."""
    text = units[0]
    for previous, unit in itertools.pairwise(units):
        glue = "" if _CJK_CHAR.match(previous[-1]) or _CJK_CHAR.match(unit[0]) else " "
        text += glue + unit
    return text


def _segment_chars(run):
    """Each Chinese or Japanese character alone; runs of other letters and digits whole."""
    return _UNIT.findall(run)


def _segment_jieba(run):
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [word for word in jieba.lcut(run) if word.strip() and re.search(r"\w", word)]


def _jieba_installed():
    return importlib.util.find_spec("jieba") is not None


def _check_ngram_range(ngram_range):
    valid = (
        len(ngram_range) == 2
        and all(isinstance(n, Integral) and not isinstance(n, bool) for n in ngram_range)
        and 1 <= ngram_range[0] <= ngram_range[1]
    )
    if not valid:
        raise InvalidParameterError(
            f"Got ngram_range={ngram_range!r} but expected a tuple (min_n, max_n) of "
            "integers with 1 <= min_n <= max_n, e.g. (1, 2)."
        )
