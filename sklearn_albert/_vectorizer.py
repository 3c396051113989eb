"""AlbertVectorizer: the scikit-learn face of the encoder.

``fit`` resolves and validates every option into a frozen ``EncodeSettings``
(``_settings.py``); ``transform`` looks the distinct texts up in the embedding cache, asks the
engine (``_engine.py``) for the rest, and builds features from the summaries. Nothing here
tokenizes, batches or runs the model.
"""

import functools
import os
import warnings
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._cache import embedding_cache_for
from ._long_texts import CHUNK_AGGREGATIONS
from ._output import (
    FITTED_RANGE_DTYPES,
    OUTPUT_DTYPES,
    finish_vectors,
    fit_ranges,
    quantize,
)
from ._persistence import EncoderPersistence
from ._pooling import POOLING_NAMES, features_from
from ._settings import resolve_settings, validated_embedding_cache
from ._threads import one_torch_thread
from ._unknown_tokens import UnknownTokenTally
from ._validation import input_name, validate_texts
from ._warnings import warn_at_caller

#: Distinct texts looked up in the cache and turned into features at a time (bounds memory).
ASSEMBLY_CHUNK = 4096

#: Parameters that decide the output: changing one after ``fit`` takes effect on the next fit.
#: ``batch_size`` and ``max_tokens_per_batch`` only pace the work: ``transform`` reads them.
SETTING_PARAMETERS = (
    "model_name_or_path",
    "pooling",
    "layers",
    "layer_aggregation",
    "max_length",
    "long_text",
    "stride",
    "chunk_aggregation",
    "normalize",
    "device",
    "dtype",
    "revision",
    "prompt",
    "truncate_dim",
    "output_dtype",
    "fine_tune",
    "fine_tune_epochs",
    "fine_tune_batch_size",
    "fine_tune_learning_rate",
    "random_state",
)

#: Valid values of ``fine_tune`` besides None.
FINE_TUNE_METHODS = ("contrastive",)


class AlbertVectorizer(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, EncoderPersistence, BaseEstimator
):
    """Embed raw texts with ALBERT (or any Hugging Face encoder) as a scikit-learn transformer.

    By default the model is pretrained and stays frozen: ``fit`` loads it and checks the
    options against it, it learns nothing from ``X``. With ``fine_tune="contrastive"``,
    ``fit(X, y)`` adapts a copy of the encoder to the labels first (few-shot, as SetFit
    does; see :ref:`fine_tuning`). ``transform`` tokenizes, encodes in length-sorted
    batches and pools each text into one float32 vector (or a quantized one, see
    ``output_dtype``).

    Parameters
    ----------
    model_name_or_path : str or path-like, default="albert-base-v2"
        A Hugging Face hub id or a local folder holding a checkpoint and its tokenizer.
        ALBERT, BERT and other encoder checkpoints load through ``AutoModel``. Remote code
        is never trusted.

    pooling : str or list of str, default="mean"
        How token vectors become one vector per text:

        - ``"cls"``: the first token's vector;
        - ``"mean"``: the mean over the text's tokens (padding excluded, special tokens
          included, as sentence-transformers does);
        - ``"max"``: the element-wise maximum over the text's tokens;
        - ``"mean_sqrt_len"``: the sum over tokens divided by the square root of their count;
        - ``"pooler"``: the model's pooler output (ALBERT and BERT have one); ignores
          ``layers``.

        A list concatenates the vectors of each name, in order.

    layers : int or tuple of int, default=-1
        Indices into the model's hidden states: 0 is the embedding output, -1 the last
        layer. A tuple selects several layers, combined by ``layer_aggregation``.

    layer_aggregation : {"mean", "concat"}, default="mean"
        How the pooled vectors of the selected layers combine. For ``cls``, ``mean`` and
        ``mean_sqrt_len``, averaging pooled vectors equals pooling the averaged token
        vectors; for ``max`` it is the mean of each layer's maximum.

    max_length : int, default=None
        Tokens per text, special tokens included. None means the model's limit (the
        smaller of its position table and its tokenizer's limit). What happens to longer
        texts is set by ``long_text``.

    long_text : {"truncate", "chunk"}, default="truncate"
        "truncate" keeps the first ``max_length`` tokens of a longer text; with
        ``max_length=None`` a warning says how many texts were cropped (naming the
        caller's line, once per call; a limit set on purpose does not warn), and
        :meth:`find_truncated` tells which.
        "chunk" cuts it into windows of ``max_length`` tokens overlapping by ``stride``
        tokens, encodes every window in the same batches as other texts, and merges the
        windows by ``chunk_aggregation``. A text that fits in one window gets the same
        vector either way.

    stride : int, default=32
        Tokens shared by consecutive windows when ``long_text="chunk"``; must be smaller
        than a window's room for text (``max_length`` minus the special tokens).

    chunk_aggregation : {"mean", "max", "weighted"}, default="mean"
        How the windows of a chunked text merge: their mean, their element-wise maximum,
        or their mean weighted by each window's token count. Merging applies to every
        layer's cls, mean and max vectors and to the pooler output; pooling then proceeds
        as for any text (``mean_sqrt_len`` multiplies the merged mean by the square root
        of the text's whole token count).

    normalize : bool or "auto", default="auto"
        Scale each output row to unit L2 norm (cosine similarity becomes a dot product).
        "auto" normalises the rows of an encoder adapted by ``fine_tune`` (its training
        shaped the vectors' directions, not their lengths; on 20 Newsgroups unit rows gave
        the classifier head 0.8 to 1.0 point more, see the fine-tuning guide) and keeps the
        pooled vectors as they are without ``fine_tune``.

    batch_size : int, default=32
        At most this many texts per forward pass.

    max_tokens_per_batch : int or "auto", default="auto"
        At most this many padded tokens (texts x longest text) per forward pass, so that
        batches of short texts and of long texts cost about the same memory. "auto" is
        4096 on CPU, 16384 on MPS and 65536 on CUDA.

    device : str, default="auto"
        "auto" picks cuda if available, else mps, else cpu; or any torch device string.

    dtype : {"auto", "float32", "float16", "bfloat16", "int8"}, default="auto"
        Compute precision. "auto" is bfloat16 (or float16) on CUDA, bfloat16 on a CPU with
        native bfloat16 instructions (detected at run time), float32 otherwise. Reduced
        precision runs under autocast with the ``Linear`` weights stored in that precision;
        normalisations and pooling stay float32. "int8" (CPU only, the ``int8`` extra) is
        static int8 on OpenVINO: ``fit`` calibrates the activation ranges of every layer
        application on (a sample of at most 300 of) its texts, or on a built-in sample
        when it sees fewer than 32 (``int8_calibration_`` says which and how long it
        took); results do not depend on the batch. See the devices page for speed and
        fidelity. Outputs are float32 whatever the precision (``output_dtype`` sets
        another output type).

    embedding_cache : "memory", path-like or None, default="memory"
        Where encodings of already seen texts are kept, so that a text is encoded once per
        model and setting even across ``clone`` (grid search candidates and folds).
        "memory" uses a process-wide cache bounded in RAM (1 GiB, see
        :func:`set_cache_limit`) that spills to a temporary file beyond that; a folder path
        keeps them on disk there, shared by processes such as the joblib workers of
        ``GridSearchCV(n_jobs=2)``; None turns caching off. With ``dtype_="float32"`` the
        cache is exact; with a reduced precision it keeps float16 vectors, and features
        then equal those of ``embedding_cache=None`` to a relative 4.9e-4 per summary
        value (see :ref:`caching`). A string that reads like a misspelt option
        ("Memory", "none") is refused rather than made a folder.

    store_weights_in_pickle : bool, default=False
        If False, a pickle holds the parameters only and reloads the model from
        ``model_name_or_path`` when first used. If True, it also holds the weights and
        tokenizer (safetensors bytes) and needs nothing else to load.

    revision : str, default=None
        Hub branch, tag or commit of the checkpoint.

    cache_dir : str or path-like, default=None
        Hugging Face download cache folder.

    local_files_only : bool, default=False
        Never use the network; load from the local folder or cache only.

    token_env : str, default=None
        Name of an environment variable holding a hub token for private checkpoints. The
        token itself is never stored in the estimator or its pickle.

    prompt : str, default=None
        An instruction put before every text, such as ``"query: "`` or ``"passage: "``
        for the e5 family (bge, gte and nomic models ask for theirs). It is tokenized on
        its own and its tokens follow the model's leading special tokens in every window
        (each window of a chunked long text starts with it), and count against
        ``max_length``; pooling includes them, as sentence-transformers does. For a prompt
        ending in a space or punctuation, as these do, the model sees the tokens of
        ``prompt + text``. Prompted vectors are cached apart from plain ones. See
        :doc:`/modern_models` for different prompts on queries and documents.

    truncate_dim : int, default=None
        Keep the first ``truncate_dim`` dimensions of each vector, for models trained
        with a Matryoshka loss (nomic, mxbai, gte, OpenAI-style): smaller vectors that
        keep most of the quality. When rows are normalised (``normalize``) the cut vector is
        normalised again. It applies after the embedding cache, so a grid search over it encodes
        each text once. At most the pooled width (``fit`` says the range); None keeps
        every dimension.

    output_dtype : {"float32", "int8", "uint8", "binary", "ubinary"}, default="float32"
        The output's type, for compact storage and fast search:

        - ``"int8"`` / ``"uint8"``: 256 levels per dimension, spread over that
          dimension's range (minimum to maximum) over the texts given to ``fit``, kept in
          ``quantization_ranges_``; values outside it are clipped. ``fit`` therefore
          encodes its texts (``fit_transform`` in the same pass), and a text's codes
          never depend on the other texts of a ``transform`` call.
        - ``"ubinary"``: one bit per dimension, set when the value is positive, packed
          eight to a byte by ``numpy.packbits`` (most significant bit first):
          ``ceil(dims / 8)`` uint8 columns. ``"binary"``: the same bytes minus 128, as
          int8 (sentence-transformers' layouts of the same names).

        Quantization comes last: normalise, cut to ``truncate_dim``, normalise again,
        quantize. It applies after the embedding cache, so a grid search over it encodes
        each text once.

    fine_tune : {"contrastive"} or None, default=None
        None keeps the pretrained encoder: ``y`` is ignored and nothing is trained.
        "contrastive" makes ``fit(X, y)`` tune a copy of the encoder on the labelled texts
        before anything is embedded: the pooled vectors (``pooling``, ``layers``,
        ``layer_aggregation``, as ``transform`` computes them) of every pair of texts in a
        class-balanced batch are pulled to a cosine of 1 for the same class and 0 for
        different classes (SetFit's objective over all in-batch pairs). Meant for a few
        to a few hundred labels per class, with a classifier after it in a pipeline;
        ``transform`` then embeds with the adapted weights, which a pickle always carries
        (even with ``store_weights_in_pickle=False``), in rows of unit length unless
        ``normalize=False``. Needs at least two classes of two
        texts each; not with ``dtype="int8"``. Precision follows ``dtype`` (bfloat16
        autocast where ``"auto"`` picks it; weights and optimizer stay float32).

    fine_tune_epochs : int or "auto", default="auto"
        Passes over the labelled texts when ``fine_tune="contrastive"``. "auto" gives
        every pair of texts about five turns in a batch, between 5 and 20 epochs: 5 when
        all the texts fit in one batch, ``round(5 (n - 1) / (B - 1))`` for ``n`` texts in
        batches of ``B``, 20 from about 60 texts (at the default batch size). The number
        used is ``fine_tune_epochs_``.

    fine_tune_batch_size : int, default=16
        Texts per optimizer step when ``fine_tune="contrastive"``: each step encodes them
        once and scores all ``B (B - 1) / 2`` pairs among them.

    fine_tune_learning_rate : float or "auto", default="auto"
        Peak learning rate of AdamW when ``fine_tune="contrastive"`` (linear warmup over
        the first 10 % of steps, then linear decay to 0; weight decay 0.01; gradients
        clipped to norm 1, as for :class:`AlbertClassifier`). "auto" is 7.5e-4 divided by
        the epochs: 1.5e-4 at 5 epochs, 3.75e-5 at 20. The rate used is
        ``fine_tune_learning_rate_``.

    random_state : int, RandomState instance or None, default=None
        Seeds the batches and dropout of ``fine_tune="contrastive"``; with an int, two
        fits on CPU at the same number of torch threads give the same embeddings to the
        bit. Unused without ``fine_tune``.

    verbose : bool, default=False
        Show a progress bar while encoding (and one per epoch of adaptation).

    Attributes
    ----------
    settings_ : EncodeSettings
        Every option resolved and validated against the checkpoint by ``fit``:
        ``transform`` reads these, not the live parameters, so parameters changed with
        ``set_params`` after ``fit`` apply from the next ``fit`` (``transform`` warns);
        ``batch_size`` and ``max_tokens_per_batch`` only pace the work and apply at once.

    n_features_out_ : int
        Number of output features: the pooled width, or ``truncate_dim``; in bytes
        (``ceil(dims / 8)``) for binary output.

    quantization_ranges_ : ndarray of shape (2, n_features_out\\_), float32
        Only with ``output_dtype="int8"`` or ``"uint8"``: each dimension's minimum (row
        0) and maximum (row 1) over the texts given to ``fit``, mapped onto the 256
        levels.

    device_ : str
        The device the model runs on.

    dtype_ : str
        The compute precision in use ("float32", "float16", "bfloat16" or "int8").

    max_length_ : int
        The token limit in use.

    n_hidden_states_ : int
        Number of hidden states the model returns (embedding output plus its layers).

    hidden_size_ : int
        Size of one token vector.

    model_fingerprint_ : str
        A hash of the checkpoint fitted with: its config, tokenizer and weights
        (``"fp2-"`` and 32 hex digits; see :doc:`caching`). The embedding cache names the
        checkpoint actually loaded instead, so a vectorizer whose checkpoint changed since
        fit warns and never shares cached vectors with the original.

    n_truncated_ : int
        Number of distinct texts passed to ``fit`` (or ``fit_transform``) longer than
        ``max_length_`` tokens: a text repeated three times counts once, as in the
        truncation warning. ``transform`` never changes it; use :meth:`find_truncated`
        for other texts.

    int8_calibration_ : dict
        Only with ``dtype="int8"``: ``n_texts`` calibrated on, ``seconds`` it took and
        ``source`` ("fit texts" or "built-in sample").

    fine_tune_history_ : list of dict
        Only with ``fine_tune="contrastive"``: one record per epoch of adaptation,
        ``epoch``, ``train_loss`` (mean over the epoch's batches), ``learning_rate`` (at
        the epoch's end), ``seconds`` and ``chunk_size`` (None, or the texts per chunk
        once a batch ran out of memory and steps went on with gradient caching).
        ``model_fingerprint_`` then names the adapted weights, so the embedding cache
        keeps their vectors apart from the pretrained model's and from other fits'.

    fine_tune_epochs_ : int
        Only with ``fine_tune="contrastive"``: the epochs the adaptation ran
        (``fine_tune_epochs``, or what "auto" chose for the number of texts).

    fine_tune_learning_rate_ : float
        Only with ``fine_tune="contrastive"``: the peak learning rate it used.

    input_name_ : str or None
        The name of the text column seen in ``fit`` (a named pandas or polars Series, or
        a one-column DataFrame), which prefixes the output feature names
        (``review_0``, ``review_1``, ...); None gives ``albertvectorizer0``, ...

    See Also
    --------
    sklearn.feature_extraction.text.TfidfVectorizer : Sparse bag-of-words features.

    Notes
    -----
    A grid search over ``pooling``, ``layers``, ``layer_aggregation``, ``normalize`` and
    ``truncate_dim`` encodes each text once: the cache keeps every layer's cls, mean and
    max vectors of a forward pass and builds each candidate's features from them.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_albert import AlbertVectorizer
    >>> pipe = make_pipeline(AlbertVectorizer("albert-base-v2"), LogisticRegression())
    >>> pipe.fit(["a great film", "a dull film"], [1, 0])  # doctest: +SKIP
    >>> pipe.predict(["great"])  # doctest: +SKIP
    array([1])
    """

    _parameter_constraints: dict = {
        "model_name_or_path": [str, os.PathLike],
        "pooling": [StrOptions(set(POOLING_NAMES)), list, tuple],
        "layers": [Integral, list, tuple],
        "layer_aggregation": [StrOptions({"mean", "concat"})],
        "max_length": [Interval(Integral, 2, None, closed="left"), None],
        "long_text": [StrOptions({"truncate", "chunk"})],
        "stride": [Interval(Integral, 0, None, closed="left")],
        "chunk_aggregation": [StrOptions(set(CHUNK_AGGREGATIONS))],
        "normalize": ["boolean", StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_tokens_per_batch": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "device": [str],
        "dtype": [StrOptions({"auto", "float32", "float16", "bfloat16", "int8"})],
        "embedding_cache": [str, os.PathLike, None],
        "store_weights_in_pickle": ["boolean"],
        "revision": [str, None],
        "cache_dir": [str, os.PathLike, None],
        "local_files_only": ["boolean"],
        "token_env": [str, None],
        "prompt": [str, None],
        "truncate_dim": [Interval(Integral, 1, None, closed="left"), None],
        "output_dtype": [StrOptions(set(OUTPUT_DTYPES))],
        "fine_tune": [StrOptions(set(FINE_TUNE_METHODS)), None],
        "fine_tune_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "fine_tune_batch_size": [Interval(Integral, 2, None, closed="left")],
        "fine_tune_learning_rate": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "random_state": ["random_state"],
        "verbose": ["boolean"],
    }

    def __init__(
        self,
        model_name_or_path="albert-base-v2",
        *,
        pooling="mean",
        layers=-1,
        layer_aggregation="mean",
        max_length=None,
        long_text="truncate",
        stride=32,
        chunk_aggregation="mean",
        normalize="auto",
        batch_size=32,
        max_tokens_per_batch="auto",
        device="auto",
        dtype="auto",
        embedding_cache="memory",
        store_weights_in_pickle=False,
        revision=None,
        cache_dir=None,
        local_files_only=False,
        token_env=None,
        prompt=None,
        truncate_dim=None,
        output_dtype="float32",
        fine_tune=None,
        fine_tune_epochs="auto",
        fine_tune_batch_size=16,
        fine_tune_learning_rate="auto",
        random_state=None,
        verbose=False,
    ):
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.layers = layers
        self.layer_aggregation = layer_aggregation
        self.max_length = max_length
        self.long_text = long_text
        self.stride = stride
        self.chunk_aggregation = chunk_aggregation
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.device = device
        self.dtype = dtype
        self.embedding_cache = embedding_cache
        self.store_weights_in_pickle = store_weights_in_pickle
        self.revision = revision
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only
        self.token_env = token_env
        self.prompt = prompt
        self.truncate_dim = truncate_dim
        self.output_dtype = output_dtype
        self.fine_tune = fine_tune
        self.fine_tune_epochs = fine_tune_epochs
        self.fine_tune_batch_size = fine_tune_batch_size
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the model and resolve every option against it; adapt it if asked.

        With ``fine_tune=None`` nothing is learned from X, except with
        ``output_dtype="int8"`` or ``"uint8"``: then its texts are encoded and each
        dimension's range is kept (``quantization_ranges_``). With
        ``fine_tune="contrastive"`` a copy of the encoder is tuned on the labelled texts.

        Parameters
        ----------
        X : iterable of str
            Texts; they are tokenized to count those longer than ``max_length_``.
        y : array-like of shape (n_samples,) or None
            Ignored with ``fine_tune=None``. With ``fine_tune="contrastive"``, the label
            of each text: at least two classes, each with at least two texts.

        Returns
        -------
        self : AlbertVectorizer
            The fitted vectorizer.
        """
        name = input_name(X)
        texts = validate_texts(X)
        if self.output_dtype in FITTED_RANGE_DTYPES:
            self.fit_transform(texts, y)
            self.input_name_ = name
            return self
        self._fit(texts, name, y)
        from ._engine import token_counts

        # Distinct texts, as fit_transform (which encodes each distinct text once) counts.
        unknown = UnknownTokenTally(self._loaded.tokenizer)
        counts = token_counts(
            self._loaded,
            list(dict.fromkeys(texts)),
            tally=unknown,
            prompt_ids=self.settings_.prompt_ids,
        )
        unknown.warn_if_mostly_unknown(stacklevel=3)
        cropped = counts > self.settings_.max_length
        self.n_truncated_ = int(cropped.sum()) if self.settings_.long_text == "truncate" else 0
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit, then embed ``X``, in one pass over it (a generator works).

        Parameters
        ----------
        X : iterable of str
            Texts, as for :meth:`transform`.
        y : array-like of shape (n_samples,) or None
            Labels, used with ``fine_tune="contrastive"`` only (see :meth:`fit`).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out\\_)
            float32, or the ``output_dtype``.
        """
        name = input_name(X)
        texts = validate_texts(X)
        if self.output_dtype in FITTED_RANGE_DTYPES and not texts:
            fit_ranges(np.empty((0, 0), np.float32), self.output_dtype)  # its error
        self._fit(texts, name, y)
        unknown = UnknownTokenTally(self._loaded.tokenizer)
        vectors, n_truncated = self._embed(texts, tally=unknown)
        unknown.warn_if_mostly_unknown(stacklevel=4)
        self.n_truncated_ = n_truncated
        if self.settings_.output_dtype in FITTED_RANGE_DTYPES:
            self.quantization_ranges_ = fit_ranges(vectors, self.settings_.output_dtype)
        return self._quantized(vectors)

    def transform(self, X):
        """Embed each text.

        Parameters
        ----------
        X : iterable of str
            Texts: a list, tuple, numpy array, pandas Series or one-column DataFrame; or
            a dask Series or one-column dask DataFrame, embedded lazily on the workers
            (see ``sklearn_albert.distributed.transform_collection``).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out\\_)
            float32, or the ``output_dtype``. A lazy dask array (one block per
            partition) for a dask input, or a dask DataFrame with
            ``set_output(transform="pandas")``.
        """
        check_is_fitted(self)
        texts = validate_texts(X)
        self._warn_if_changed_since_fit()
        return self._quantized(self._embed(texts)[0])

    def _quantized(self, vectors):
        """``vectors`` in the fitted ``output_dtype`` (``_output.py``)."""
        settings = self.settings_
        return quantize(vectors, settings.output_dtype, getattr(self, "quantization_ranges_", None))

    def count_tokens(self, X):
        """Tokens each text takes, special tokens included (tokenizes, runs no model).

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        counts : ndarray of shape (n_samples,), int64
            Whole texts, with the fitted prompt's tokens: a count above ``max_length_``
            means the text is truncated by :meth:`transform` (``long_text="truncate"``)
            or encoded as several windows (``"chunk"``).
        """
        check_is_fitted(self)
        from ._engine import token_counts

        return token_counts(
            self._ensure_loaded(), validate_texts(X), prompt_ids=self.settings_.prompt_ids
        )

    def find_truncated(self, X):
        """Which texts are longer than ``max_length_`` tokens (tokenizes, runs no model).

        ``transform`` warns how many texts it cropped and never changes the estimator;
        this says which ones. With ``long_text="chunk"`` such texts are encoded whole, as
        several windows.

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        truncated : ndarray of shape (n_samples,), bool
        """
        return self.count_tokens(X) > self.max_length_

    def describe(self):
        """What this fitted vectorizer runs: checkpoint, architecture, device, sizes.

        Returns
        -------
        report : dict
            ``model``, ``architecture``, ``model_type``, ``tokenizer``, ``parameters``,
            ``device``, ``dtype``, ``hidden_states``, ``hidden_size``, ``max_length``,
            ``has_pooler``, ``pooling``, ``n_features_out``, ``fingerprint`` (of the
            checkpoint loaded now; ``model_fingerprint_`` is the one fitted with), and
            what changes the features beyond the checkpoint: ``prompt``,
            ``truncate_dim``, ``output_dtype`` and ``adapted`` (True when ``fit`` tuned
            the weights, ``fine_tune``).
        """
        check_is_fitted(self)
        loaded = self._ensure_loaded()
        return {
            "model": str(self.model_name_or_path),
            "architecture": type(loaded.model).__name__,
            "model_type": getattr(loaded.model.config, "model_type", None),
            "tokenizer": type(loaded.tokenizer).__name__,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "device": self.device_,
            "dtype": self.dtype_,
            "hidden_states": self.n_hidden_states_,
            "hidden_size": self.hidden_size_,
            "max_length": self.max_length_,
            "has_pooler": loaded.has_pooler,
            "pooling": self.settings_.pooling,
            "n_features_out": self.n_features_out_,
            "fingerprint": loaded.fingerprint,
            "prompt": self.prompt,
            "truncate_dim": self.truncate_dim,
            "output_dtype": self.output_dtype,
            "adapted": self._is_adapted(),
        }

    def get_feature_names_out(self, input_features=None):
        """Output feature names: ``<column>_<i>`` for a named text column, else the class's.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored beyond scikit-learn's consistency checks.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        if self.input_name_ is None:
            return super().get_feature_names_out(input_features)
        return np.asarray(
            [f"{self.input_name_}_{i}" for i in range(self.n_features_out_)], dtype=object
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    @property
    def _n_features_out(self):
        """Number of features, for ``get_feature_names_out``."""
        return self.n_features_out_

    def _fit(self, texts, name, y=None):
        from ._devices import dtype_name, resolve_device, resolve_dtype

        validated_embedding_cache(self.embedding_cache)
        targets = self._validated_targets(texts, y)
        device = _as_parameter_error(resolve_device, self.device)
        compute_dtype = _as_parameter_error(lambda dtype: resolve_dtype(dtype, device), self.dtype)
        loaded = self._load_checkpoint(device)
        params = self.get_params(deep=False)
        settings = resolve_settings(
            params,
            loaded,
            estimator_name=type(self).__name__,
            compute_dtype=dtype_name(compute_dtype),
        )
        self._int8_encoder = None
        vars(self).pop("quantization_ranges_", None)  # fitted anew for int8 and uint8 only
        for attribute in ("fine_tune_history_", "fine_tune_epochs_", "fine_tune_learning_rate_"):
            vars(self).pop(attribute, None)
        if targets is not None:
            loaded, schedule, self.fine_tune_history_ = self._adapt(
                texts, targets, loaded, settings, compute_dtype
            )
            self.fine_tune_epochs_, self.fine_tune_learning_rate_ = schedule
            settings = replace(settings, model_fingerprint=loaded.fingerprint)
        if settings.compute_dtype == "int8":
            from ._calibration import calibrate_on_texts

            self._int8_encoder, self.int8_calibration_ = calibrate_on_texts(
                texts, loaded, settings, progress=self.verbose
            )
            settings = replace(settings, calibration_id=self._int8_encoder.calibration_id)
        self._loaded = loaded
        self._params_at_fit = {name: params[name] for name in SETTING_PARAMETERS}
        self.settings_ = settings
        self.n_hidden_states_ = loaded.n_hidden_states
        self.hidden_size_ = loaded.hidden_size
        self.n_features_out_ = settings.n_features_out(loaded.hidden_size)
        self.input_name_ = name

    def _validated_targets(self, texts, y):
        """Class indices of ``y`` for ``fine_tune="contrastive"``; None when not adapting."""
        if self.fine_tune is None:
            return None
        from sklearn.preprocessing import LabelEncoder
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import check_consistent_length, column_or_1d

        if y is None:
            raise ValueError(
                f"Got fine_tune={self.fine_tune!r} but y=None: contrastive adaptation learns "
                "from labels. Call fit(X, y) with a label per text (a Pipeline passes y on), "
                "or use fine_tune=None for the pretrained encoder."
            )
        if self.dtype == "int8":
            raise ValueError(
                f"Got fine_tune={self.fine_tune!r} with dtype='int8': adaptation trains "
                "float weights, and int8 calibrates a fixed encoder. Use dtype='auto', "
                "'float32' or 'bfloat16'; or save() the adapted vectorizer and build an "
                "int8 one from its model/ folder."
            )
        y = column_or_1d(y, warn=True)
        check_consistent_length(texts, y)
        check_classification_targets(y)
        encoder = LabelEncoder()
        targets = encoder.fit_transform(y)
        counts = np.bincount(targets)
        if len(counts) < 2:
            raise ValueError(
                f"Got fine_tune={self.fine_tune!r} with a single class in y "
                f"({encoder.classes_.tolist()!r}): contrastive adaptation needs texts of at "
                "least 2 classes. Label texts of another class, or use fine_tune=None."
            )
        if counts.min() < 2:
            lonely = encoder.classes_[counts < 2].tolist()
            raise ValueError(
                f"Got fine_tune={self.fine_tune!r} with classes {lonely!r} of one text each "
                "in y: a class needs at least 2 texts to form a same-class pair. Label more "
                "texts of those classes, drop them, or use fine_tune=None."
            )
        return targets

    def _adapt(self, texts, targets, pretrained, settings, compute_dtype):
        """The encoder tuned contrastively on ``texts``: ``(loaded, schedule, history)``.

        ``loaded`` is a ``LoadedModel`` of the adapted weights, ``schedule`` the
        ``(epochs, learning_rate)`` it trained with ("auto" resolved), ``history`` one
        record per epoch.

        The pretrained model is the shared one of the registry (other estimators encode
        with it): training runs on a copy, and the copy is held under its own fingerprint
        (``in-memory:<fingerprint>``) only, never under ``model_name_or_path``.
        """
        import torch
        from sklearn.utils import check_random_state

        from ._contrastive import adapt_encoder, resolve_schedule
        from ._engine import cut_windows, tokenize
        from ._loading import hold_in_memory, in_memory_name, prepare_model

        windows = cut_windows(
            tokenize(pretrained.tokenizer, texts), pretrained, settings, long_text="truncate"
        )
        epochs, learning_rate = resolve_schedule(
            len(texts),
            self.fine_tune_batch_size,
            self.fine_tune_epochs,
            self.fine_tune_learning_rate,
        )
        rng = check_random_state(self.random_state)
        torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        device = torch.device(settings.device)
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(torch_seed)
            encoder, history = adapt_encoder(
                pretrained.model,
                windows.ids,
                targets,
                settings=settings,
                epochs=epochs,
                batch_size=self.fine_tune_batch_size,
                learning_rate=learning_rate,
                compute_dtype=compute_dtype,
                pad_id=pretrained.pad_id,
                rng=rng,
                verbose=self.verbose,
            )
        adapted = prepare_model(encoder, pretrained.tokenizer, device)
        return hold_in_memory(in_memory_name(adapted), adapted), (epochs, learning_rate), history

    def _is_adapted(self):
        """Whether this fitted vectorizer encodes with weights it tuned itself."""
        return "fine_tune_history_" in vars(self)

    # ------------------------------------------------------------------ encoding

    def _ensure_loaded(self):
        """The model this fitted estimator encodes with, loading it on first use."""
        loaded = getattr(self, "_loaded", None)
        if loaded is not None:
            return loaded
        import torch

        from ._loading import IN_MEMORY_PREFIX, load_model

        if self._is_adapted():
            # Adapted weights live in this estimator (and its pickles) only.
            self._loaded = load_model(
                IN_MEMORY_PREFIX + self.model_fingerprint_, device=torch.device(self.device_)
            )
            return self._loaded
        loaded = self._load_checkpoint(torch.device(self.device_))
        if not _same_checkpoint(loaded, self.model_fingerprint_):
            warnings.warn(
                f"The checkpoint loaded from {self.model_name_or_path!r} differs from the one "
                "this vectorizer was fitted with (its config, tokenizer or weights "
                "changed); embeddings will differ, and are cached apart from those of the "
                "original checkpoint. Pin `revision`, or pickle with "
                "store_weights_in_pickle=True to keep the exact weights.",
                UserWarning,
                stacklevel=3,
            )
        self._loaded = loaded
        return loaded

    def _load_checkpoint(self, device):
        """The pretrained checkpoint on ``device``: the weights this vectorizer (or the one
        it was cloned from) was restored with, while it names their checkpoint, else what
        ``model_name_or_path`` holds now."""
        from ._loading import load_model

        restored = getattr(self, "_restored_checkpoint", None)
        if restored is not None and restored.applies_to(self.model_name_or_path, self.revision):
            return restored.on(device)
        return load_model(
            self.model_name_or_path,
            device=device,
            revision=self.revision,
            cache_dir=self.cache_dir,
            local_files_only=self.local_files_only,
            token_env=self.token_env,
        )

    def __sklearn_clone__(self):
        """An unfitted copy with the same parameters, as :func:`sklearn.base.clone` makes.

        A vectorizer restored with its weights (a pickle with
        ``store_weights_in_pickle=True``, a saved folder, an MLflow model) hands them to
        the copy, which fits with them while its ``model_name_or_path`` and ``revision``
        are unchanged.
        """
        twin = super().__sklearn_clone__()
        restored = getattr(self, "_restored_checkpoint", None)
        if restored is not None:
            twin._restored_checkpoint = restored
        return twin

    def _runner(self):
        """The module that runs the forward pass at the fitted precision."""
        if self.settings_.compute_dtype == "int8":
            encoder = getattr(self, "_int8_encoder", None)
            if encoder is None:
                raise ValueError(
                    "This dtype='int8' vectorizer holds no calibration (it was restored from "
                    "a file written without it). Call fit again to calibrate."
                )
            return encoder
        from ._engine import runner_for

        return runner_for(self._ensure_loaded(), self.settings_)

    def _transform_settings(self):
        """``settings_`` with the batch budgets as they are now (they pace, not decide)."""
        from dataclasses import replace

        from sklearn.utils._param_validation import validate_parameter_constraints

        from ._settings import token_budget

        settings = self.settings_
        budget = {"batch_size": self.batch_size, "max_tokens_per_batch": self.max_tokens_per_batch}
        validate_parameter_constraints(
            {name: self._parameter_constraints[name] for name in budget},
            budget,
            type(self).__name__,
        )
        max_tokens = token_budget(self.max_tokens_per_batch, settings.device)
        if (self.batch_size, max_tokens) == (settings.batch_size, settings.max_tokens):
            return settings
        return replace(settings, batch_size=int(self.batch_size), max_tokens=max_tokens)

    def _embed(self, texts, tally=None):
        """Features for ``texts`` and how many distinct ones were truncated.

        Each distinct text is looked up in the embedding cache or encoded once; the
        estimator itself is not changed. The cache protocol: ``lookup`` every distinct
        text; for the misses, enter ``writing(namespace)`` (exclusive across processes for
        a disk cache), ``lookup`` them again (another process may have written them
        meanwhile), encode what is still missing and ``store`` each finished batch.
        ``tally`` counts the unknown tokens of the texts encoded (not those cached).
        """
        settings = self._transform_settings()
        position_of = {}
        inverse = np.fromiter(
            (position_of.setdefault(text, len(position_of)) for text in texts),
            dtype=np.intp,
            count=len(texts),
        )
        unique = list(position_of)
        # Pooled vectors: the cut and normalisation come after the cache (_output.py).
        features = np.empty((len(unique), settings.n_features(self.hidden_size_)), np.float32)
        cache = embedding_cache_for(validated_embedding_cache(self.embedding_cache))
        todo = np.arange(len(unique))
        n_truncated = 0
        if cache is None:
            n_truncated += self._encode(features, unique, todo, None, settings, tally)
        else:
            store = (cache, self._cache_namespace(settings))
            todo, n_truncated = self._fill_from_cache(features, unique, todo, store, settings)
            if len(todo):
                with cache.writing(store[1]):
                    todo, n_found = self._fill_from_cache(features, unique, todo, store, settings)
                    n_truncated += n_found
                    n_truncated += self._encode(features, unique, todo, store, settings, tally)
        if self.max_length is None:  # a limit the user chose is no surprise: no warning
            _warn_truncated(n_truncated, len(unique), settings.max_length)
        features = finish_vectors(
            features, normalize=settings.normalize, truncate_dim=settings.truncate_dim
        )
        return (features if len(unique) == len(texts) else features[inverse]), n_truncated

    def _cache_namespace(self, settings=None):
        """The cache namespace of the model that encodes here and now (see ``_settings.py``).

        It names the checkpoint loaded in this process (or, for int8, the calibrated
        encoder and the tokenizer), not the one recorded at fit: an estimator whose
        checkpoint changed since fit never writes its vectors where an estimator with the
        original checkpoint reads.
        """
        from ._devices import numerics_identity

        settings = self.settings_ if settings is None else settings
        loaded = self._ensure_loaded()
        numerics = numerics_identity(settings.device, settings.compute_dtype)
        if settings.compute_dtype != "int8":
            return settings.cache_namespace(loaded, numerics=numerics)
        return settings.cache_namespace(
            loaded, numerics=numerics, calibration_id=self._runner().calibration_id
        )

    def _fill_from_cache(self, features, unique, rows, store, settings):
        """Write the rows of ``unique[rows]`` the cache holds, a chunk of texts at a time.

        ``store`` is the pair (cache, namespace).

        Returns
        -------
        missing : ndarray of int
            The rows still to encode.
        n_truncated : int
            Truncated texts among those found.
        """
        cache, namespace = store
        kinds = {"mean" if name == "mean_sqrt_len" else name for name in settings.pooling}
        missing, n_truncated = [], 0
        for start in range(0, len(rows), ASSEMBLY_CHUNK):
            chunk = rows[start : start + ASSEMBLY_CHUNK]
            # The lookup's conversions are too small for a team of torch threads, which
            # would spin against the caller's next work (a classifier's fits): _threads.py.
            with one_torch_thread():
                found, encodings = cache.lookup(
                    namespace,
                    [unique[row] for row in chunk],
                    settings.layers,
                    kinds=kinds,
                )
            if found.any():
                features[chunk[found]] = features_from(encodings, settings, layers_selected=True)
            missing.append(chunk[~found])
            n_truncated += int(encodings.truncated.sum())
        return (np.concatenate(missing) if missing else rows[:0]), n_truncated

    def _encode(self, features, unique, rows, store, settings, tally=None):
        """Run the engine on the texts ``unique[rows]``; write their features, cache them.

        ``store`` is the pair (cache, namespace), or None for no cache.

        With a cache, features are built from the vectors as the cache keeps them
        (float16 for reduced precision, see ``_cache/``; the engine rounds them where it
        encodes), so a transform's output never depends on what the cache held.
        """
        if not len(rows):
            return 0
        from ._engine import encode_summaries

        cache, namespace = store if store is not None else (None, None)
        storage_dtype = "float32" if settings.compute_dtype == "float32" else "float16"
        texts = [unique[row] for row in rows]
        progress = _progress_bar(len(texts)) if self.verbose else None
        n_truncated = 0
        try:
            for indices, encodings in encode_summaries(
                self._ensure_loaded(),
                self._runner(),
                texts,
                settings,
                progress=progress,
                round_to="float16" if cache is not None and storage_dtype == "float16" else None,
                tally=tally,
            ):
                features[rows[indices]] = features_from(encodings, settings)
                n_truncated += int(encodings.truncated.sum())
                if cache is not None:
                    cache.store(
                        namespace,
                        [texts[i] for i in indices],
                        encodings,
                        storage_dtype=storage_dtype,
                    )
        finally:
            if progress is not None:
                progress.close()
        return n_truncated

    def _warn_if_changed_since_fit(self):
        fitted = getattr(self, "_params_at_fit", None)
        if fitted is None:
            return
        current = self.get_params(deep=False)
        changed = [name for name, value in fitted.items() if current[name] != value]
        if changed:
            details = ", ".join(
                f"{name}: {fitted[name]!r} -> {current[name]!r}" for name in changed
            )
            warnings.warn(
                f"Parameters changed since fit ({details}); transform keeps using the "
                "fitted settings (settings_). Call fit again to apply them.",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ persistence hooks
    # Pickling, save() and load() live in EncoderPersistence (_persistence.py).

    # The calibrated int8 encoder travels as its data files (_extra_files), never live.
    _TRANSIENT = ("_loaded", "_int8_encoder", "_restored_checkpoint")
    #: What fit may set; load() refuses any other name a saved folder lists as fitted.
    _FITTED_ATTRIBUTES = (
        "settings_",
        "n_features_out_",
        "n_hidden_states_",
        "hidden_size_",
        "n_truncated_",
        "int8_calibration_",
        "quantization_ranges_",
        "input_name_",
        "fine_tune_history_",
        "fine_tune_epochs_",
        "fine_tune_learning_rate_",
        "n_features_in_",
        "feature_names_in_",
    )

    def _weights_travel(self):
        # Adapted weights are on no hub and in no folder: they always travel.
        return self.store_weights_in_pickle or self._is_adapted()

    def _weights_are_fitted_state(self):
        return self._is_adapted()

    def _model_to_save(self):
        return self._ensure_loaded()

    def _extra_weights(self):
        return None  # a vectorizer's weights are the checkpoint's, all in model/

    def _extra_files(self):
        encoder = getattr(self, "_int8_encoder", None)
        return {} if encoder is None else encoder.to_files()

    def _restore_extra_files(self, files):
        from ._cpu.int8 import StaticInt8Encoder

        self._int8_encoder = StaticInt8Encoder.from_files(files) if files else None

    def _attach_model(self, loaded, extra_weights):
        from dataclasses import replace

        from ._loading import RestoredCheckpoint, hold_in_memory, is_legacy_fingerprint

        if extra_weights is not None:
            raise ValueError("An AlbertVectorizer folder holds no weights beside model/.")
        if self._is_adapted():
            # Held under their own fingerprint, never under model_name_or_path: clones
            # and fresh vectorizers of that checkpoint must get the pretrained weights.
            from ._loading import in_memory_name

            if loaded.fingerprint != self.model_fingerprint_:
                raise ValueError(
                    "The restored weights are not the adapted weights this vectorizer was "
                    "fitted with (their fingerprints differ)."
                )
            self._loaded = hold_in_memory(in_memory_name(loaded), loaded)
            return
        # Kept by this vectorizer and handed to its clones (a grid search on a restored
        # pipeline encodes with these weights even when the checkpoint is not reachable),
        # never held under the checkpoint's name: a fresh vectorizer of that name loads
        # what the name holds now.
        self._restored_checkpoint = RestoredCheckpoint(
            self.model_name_or_path, self.revision, loaded
        )
        self._loaded = loaded
        if is_legacy_fingerprint(self.model_fingerprint_):
            # Written by an older sklearn_albert: these are the weights it was saved with
            # (a folder's files were checked against their SHA-256), under today's scheme.
            self.settings_ = replace(self.settings_, model_fingerprint=loaded.fingerprint)

    def _dtype_on(self, device):
        from ._devices import dtype_name, resolve_dtype

        return dtype_name(resolve_dtype(self.dtype, device))

    # ------------------------------------------------------------------ token and static embeddings
    # The logic lives in _tokens.py and _static.py; these are thin entry points.

    def transform_tokens(self, X, *, word_level=False, word_aggregation="mean"):
        """Embed every token (or word) of each text, with its character offsets.

        The forward pass is that of :meth:`transform` (same batching, device, precision,
        ``max_length_``, ``layers`` and ``layer_aggregation``), but each token keeps its
        own vector instead of being pooled: the features for tagging tasks such as named
        entity recognition. ``pooling`` does not apply. Special tokens are run but not
        returned. Results are not cached.

        Parameters
        ----------
        X : iterable of str
            Texts, as for :meth:`transform`.

        word_level : bool, default=False
            If True, merge the subword pieces of each word into one vector. A word is a
            run of characters between whitespace, whatever the tokenizer (punctuation
            stays attached: ``"words."``); in Chinese and Japanese every character is a
            word. Text pre-split into tokens (CoNLL-style NER data) and joined with
            single spaces gets exactly one vector per token.

        word_aggregation : {"mean", "first", "last", "max"}, default="mean"
            How the pieces of a word combine when ``word_level=True``; ``"first"`` is the
            usual choice for token classification heads.

        Returns
        -------
        records : list of TokenEmbeddings
            One per text, in input order, with ``tokens`` (list of str), ``offsets``
            (``(n_tokens, 2)`` int64 character spans), ``embeddings`` (``(n_tokens,
            n_features)`` float32; rows are L2-normalised as ``normalize`` asks;
            ``truncate_dim`` and ``output_dtype`` do not apply, ``prompt`` does: its
            tokens are run before the text's but not returned) and
            ``truncated`` (whether tokens past ``max_length_`` were dropped).

        Examples
        --------
        >>> vectorizer = AlbertVectorizer("albert-base-v2").fit(["warm up"])  # doctest: +SKIP
        >>> record = vectorizer.transform_tokens(["Paris is lovely"])[0]  # doctest: +SKIP
        >>> record.tokens, record.offsets[0], record.embeddings.shape  # doctest: +SKIP
        (['▁paris', '▁is', '▁lovely'], array([0, 5]), (3, 768))
        """
        check_is_fitted(self)
        self._warn_if_changed_since_fit()
        from ._tokens import transform_tokens

        return transform_tokens(
            self._ensure_loaded(),
            self._runner(),
            self._transform_settings(),
            validate_texts(X),
            word_level=word_level,
            word_aggregation=word_aggregation,
            warn=self.max_length is None,  # a limit the user chose is no surprise
        )

    def static_embeddings(self, words=None):
        """The model's input embedding table with its vocabulary, or one vector per word.

        Row ``i`` of the table is ``model.get_input_embeddings().weight[i]``: the
        context-free vector of token ``i``. For ALBERT the table is factorised,
        ``vocab_size x embedding_size`` (128 for the published checkpoints); the model
        projects it to ``hidden_size`` with ``model.encoder.embedding_hidden_mapping_in``
        after adding position and token-type embeddings. For BERT-family models it is
        ``vocab_size x hidden_size``. These vectors are not comparable with the rows of
        :meth:`transform`.

        Parameters
        ----------
        words : iterable of str, default=None
            None returns the whole table. Otherwise each word (or phrase) is tokenized
            without special tokens and gets the mean of its pieces' rows.

        Returns
        -------
        static : StaticEmbeddings
            A named tuple ``(vocabulary, vectors)``: the tokens in id order (or the words
            given) and a float32 array of shape ``(len(vocabulary), embedding_size)``.

        Examples
        --------
        >>> vocabulary, table = vectorizer.static_embeddings()  # doctest: +SKIP
        >>> table.shape  # doctest: +SKIP
        (30000, 128)
        >>> vectorizer.static_embeddings(["king", "queen"]).vectors.shape  # doctest: +SKIP
        (2, 128)
        """
        check_is_fitted(self)
        from ._static import static_embeddings

        return static_embeddings(self._ensure_loaded(), words)


def _same_checkpoint(loaded, recorded):
    """Whether ``loaded`` is the checkpoint whose fingerprint ``recorded`` is.

    A fingerprint recorded by an older sklearn_albert (before ``FINGERPRINT_SCHEME``) is
    compared with the old scheme's hash of ``loaded``.
    """
    from ._loading import is_legacy_fingerprint, legacy_fingerprint

    if is_legacy_fingerprint(recorded):
        return legacy_fingerprint(loaded.model, loaded.tokenizer) == recorded
    return loaded.fingerprint == recorded


def _as_parameter_error(resolver, value):
    try:
        return resolver(value)
    except ValueError as error:
        raise InvalidParameterError(str(error)) from None


def _warn_truncated(n_truncated, n_texts, max_length):
    if n_truncated:
        warn_at_caller(
            f"{n_truncated} of {n_texts} distinct texts are longer than max_length_="
            f"{max_length} tokens and were truncated. find_truncated(X) tells which; "
            "long_text='chunk' encodes them whole."
        )


def _progress_bar(total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding", unit="text")


# A dask collection bypasses the set_output wrapper, which would make pandas of a lazy
# result (computing it): the distributed module returns a dask array or DataFrame itself.
_transform_in_process = AlbertVectorizer.transform


@functools.wraps(_transform_in_process)
def _transform(self, X):
    from . import distributed

    if distributed.is_dask_collection(X):
        return distributed.transform_collection(self, X)
    return _transform_in_process(self, X)


AlbertVectorizer.transform = _transform
