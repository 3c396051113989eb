"""AlbertVectorizer: parameters, validation, fit/transform, feature names, tags, pickling."""

import functools
import logging
import os
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._cache import Encodings, embedding_cache_for, namespace_for, stored_precision
from ._long_texts import CHUNK_AGGREGATIONS
from ._pooling import POOLING_NAMES, combine_pooled, n_pooled_features
from ._validation import validate_texts

logger = logging.getLogger("sklearn_albert")

# Cached encodings are looked up and turned into features this many texts at a time, to
# bound memory.
ASSEMBLY_CHUNK = 4096


class AlbertVectorizer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Embed raw texts with ALBERT (or any Hugging Face encoder) as a scikit-learn transformer.

    The model is pretrained and stays frozen: ``fit`` loads it and checks the options
    against it, it learns nothing from ``X``. ``transform`` tokenizes, encodes in
    length-sorted batches and pools each text into one float32 vector.

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
        "truncate" keeps the first ``max_length`` tokens of a longer text; ``n_truncated_``
        counts such texts and a warning says so. "chunk" cuts it into windows of
        ``max_length`` tokens overlapping by ``stride`` tokens, encodes every window in the
        same batches as other texts, and merges the windows by ``chunk_aggregation``. A
        text that fits in one window gets the same vector either way.

    stride : int, default=32
        Tokens shared by consecutive windows when ``long_text="chunk"``; must be smaller
        than a window's room for text (``max_length`` minus the special tokens).

    chunk_aggregation : {"mean", "max", "weighted"}, default="mean"
        How the windows of a chunked text merge: their mean, their element-wise maximum,
        or their mean weighted by each window's token count. Merging applies to every
        layer's cls, mean and max vectors and to the pooler output; pooling then proceeds
        as for any text (``mean_sqrt_len`` multiplies the merged mean by the square root
        of the text's whole token count).

    normalize : bool, default=False
        Scale each output row to unit L2 norm (cosine similarity becomes a dot product).

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
        normalisations and pooling stay float32. "int8" (CPU only) quantizes the ``Linear``
        layers dynamically to int8: smaller and often faster on CPUs without bfloat16, at
        some fidelity cost (see the benchmarks). Outputs are always float32.

    embedding_cache : "memory", path-like or None, default="memory"
        Where encodings of already seen texts are kept, so that a text is encoded once per
        model and setting even across ``clone`` (grid search candidates and folds).
        "memory" uses a process-wide cache bounded in RAM (1 GiB, see
        :func:`set_cache_limit`) that spills to a temporary file beyond that; a folder path
        keeps them on disk there, shared by processes such as the joblib workers of
        ``GridSearchCV(n_jobs=2)``; None turns caching off. With ``dtype_="float32"`` the
        cache is exact; with a reduced precision it keeps float16 vectors, and features
        then equal those of ``embedding_cache=None`` to a relative 4.9e-4 per summary
        value (see :ref:`caching`).

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

    verbose : bool, default=False
        Show a progress bar while encoding.

    Attributes
    ----------
    n_features_out_ : int
        Number of output features.

    device_ : str
        The device the model runs on.

    dtype_ : str
        The compute precision in use ("float32", "float16" or "bfloat16").

    max_length_ : int
        The token limit in use.

    n_hidden_states_ : int
        Number of hidden states the model returns (embedding output plus its layers).

    hidden_size_ : int
        Size of one token vector.

    model_fingerprint_ : str
        A hash of the checkpoint's config, tokenizer and weights.

    n_truncated_ : int
        Number of texts cropped to ``max_length_`` by the last ``transform``.

    See Also
    --------
    sklearn.feature_extraction.text.TfidfVectorizer : Sparse bag-of-words features.

    Notes
    -----
    A grid search over ``pooling``, ``layers``, ``layer_aggregation`` and ``normalize``
    encodes each text once: the cache keeps every layer's cls, mean and max vectors of a
    forward pass and builds each candidate's features from them.

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
        "normalize": ["boolean"],
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
        normalize=False,
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
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the model and check the options against it. Nothing is learned from X.

        Parameters
        ----------
        X : iterable of str
            Texts; only their type is checked.
        y : None
            Ignored.

        Returns
        -------
        self : AlbertVectorizer
            The fitted vectorizer.
        """
        validate_texts(X)
        pooling = self._validated_pooling()
        from ._model import dtype_name, load_model, resolve_device, resolve_dtype

        device = self._resolve(resolve_device, self.device, "device")
        loaded = load_model(
            self.model_name_or_path,
            device=device,
            revision=self.revision,
            cache_dir=self.cache_dir,
            local_files_only=self.local_files_only,
            token_env=self.token_env,
        )
        layers = self._validated_layers(loaded.n_hidden_states)
        if "pooler" in pooling and not loaded.has_pooler:
            raise InvalidParameterError(
                f"Got pooling={self.pooling!r} but the checkpoint {self.model_name_or_path!r}"
                f" has no pooler. Use one of {POOLING_NAMES[:-1]}."
            )
        if self.max_length is not None and self.max_length > loaded.max_length:
            raise InvalidParameterError(
                f"Got max_length={self.max_length} but the checkpoint accepts at most "
                f"{loaded.max_length} tokens. Use max_length=None for the model's limit."
            )
        room = (
            (self.max_length or loaded.max_length)
            - len(loaded.special_prefix)
            - len(loaded.special_suffix)
        )
        if self.long_text == "chunk" and self.stride >= room:
            raise InvalidParameterError(
                f"Got stride={self.stride} but a window holds only {room} text tokens "
                f"(max_length minus special tokens). Use a stride below {room}."
            )
        self._loaded = loaded
        self.device_ = str(device)
        self.dtype_ = dtype_name(
            self._resolve(lambda d: resolve_dtype(d, device), self.dtype, "dtype")
        )
        self.max_length_ = self.max_length or loaded.max_length
        self.n_hidden_states_ = loaded.n_hidden_states
        self.hidden_size_ = loaded.hidden_size
        self.model_fingerprint_ = loaded.fingerprint
        self.n_features_out_ = n_pooled_features(
            loaded.hidden_size,
            pooling=pooling,
            n_layers=len(layers),
            layer_aggregation=self.layer_aggregation,
        )
        self.n_truncated_ = 0
        return self

    def transform(self, X):
        """Embed each text.

        Parameters
        ----------
        X : iterable of str
            Texts: a list, tuple, numpy array, pandas Series or one-column DataFrame.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out\\_), float32
        """
        check_is_fitted(self)
        texts = validate_texts(X)
        features = self._embed(texts)
        if self.normalize:
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            features /= np.maximum(norms, np.finfo(np.float32).tiny)
        return features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    @property
    def _n_features_out(self):
        """Number of features, for ``get_feature_names_out``."""
        return self.n_features_out_

    # ------------------------------------------------------------------ options

    def _validated_pooling(self):
        pooling = (self.pooling,) if isinstance(self.pooling, str) else tuple(self.pooling)
        bad = [name for name in pooling if not isinstance(name, str) or name not in POOLING_NAMES]
        if not pooling or bad:
            raise InvalidParameterError(
                f"The 'pooling' parameter of {type(self).__name__} must be one of "
                f"{POOLING_NAMES} or a non-empty list of them. Got {self.pooling!r}."
            )
        return pooling

    def _validated_layers(self, n_hidden_states):
        layers = (self.layers,) if isinstance(self.layers, Integral) else tuple(self.layers)
        valid = all(
            isinstance(layer, Integral) and -n_hidden_states <= layer < n_hidden_states
            for layer in layers
        )
        if not layers or not valid:
            raise InvalidParameterError(
                f"The 'layers' parameter of {type(self).__name__} must be an int or a "
                f"non-empty tuple of ints in [-{n_hidden_states}, {n_hidden_states - 1}] "
                f"(this checkpoint has {n_hidden_states} hidden states, 0 = embeddings). "
                f"Got {self.layers!r}."
            )
        return tuple(int(layer) % n_hidden_states for layer in layers)

    @staticmethod
    def _resolve(resolver, value, name):
        try:
            return resolver(value)
        except ValueError as error:
            raise InvalidParameterError(str(error)) from None

    # ------------------------------------------------------------------ encoding

    def _ensure_loaded(self):
        """The model this fitted estimator encodes with, loading it on first use."""
        loaded = getattr(self, "_loaded", None)
        if loaded is not None:
            return loaded
        import torch

        from ._model import load_model

        loaded = load_model(
            self.model_name_or_path,
            device=torch.device(self.device_),
            revision=self.revision,
            cache_dir=self.cache_dir,
            local_files_only=self.local_files_only,
            token_env=self.token_env,
        )
        if loaded.fingerprint != self.model_fingerprint_:
            warnings.warn(
                f"The checkpoint loaded from {self.model_name_or_path!r} differs from the one "
                "this vectorizer was fitted with (its config, tokenizer or weights changed); "
                "embeddings will differ. Pin `revision`, or pickle with "
                "store_weights_in_pickle=True to keep the exact weights.",
                UserWarning,
                stacklevel=3,
            )
        self._loaded = loaded
        return loaded

    def _cache_namespace(self):
        chunking = (self.stride, self.chunk_aggregation) if self.long_text == "chunk" else None
        return namespace_for(
            model=self.model_fingerprint_,
            max_length=self.max_length_,
            dtype=self.dtype_,
            device_type=self.device_.split(":")[0],
            chunking=chunking,
        )

    def _embed(self, texts):
        """Features for ``texts``: each distinct text is looked up or encoded once.

        The cache protocol: ``lookup`` every distinct text; for the misses, enter
        ``writing(namespace)`` (exclusive across processes for a disk cache), ``lookup`` them
        again (another process may have written them meanwhile), encode what is still
        missing and ``store`` each finished batch.
        """
        position_of = {}
        inverse = np.fromiter(
            (position_of.setdefault(text, len(position_of)) for text in texts),
            dtype=np.intp,
            count=len(texts),
        )
        unique = list(position_of)
        features = np.empty((len(unique), self.n_features_out_), dtype=np.float32)
        cache = embedding_cache_for(self.embedding_cache)
        if cache is None:
            n_truncated = self._encode_missing(features, position_of, unique, None, None)
        else:
            namespace = self._cache_namespace()
            missing, n_truncated = self._write_cached(features, position_of, unique, cache)
            if missing:
                with cache.writing(namespace):
                    missing, more = self._write_cached(features, position_of, missing, cache)
                    n_truncated += more
                    if missing:
                        n_truncated += self._encode_missing(
                            features, position_of, missing, namespace, cache
                        )
        self._report_truncation(n_truncated, len(unique))
        return features if len(unique) == len(texts) else features[inverse]

    def _write_cached(self, features, position_of, texts, cache):
        """Write the rows of cached ``texts``; returns the texts not found and the truncated."""
        layers = self._validated_layers(self.n_hidden_states_)
        namespace = self._cache_namespace()
        # Only the summaries this pooling reads are converted by the lookup.
        kinds = {"mean" if name == "mean_sqrt_len" else name for name in self._validated_pooling()}
        missing, n_truncated = [], 0
        for start in range(0, len(texts), ASSEMBLY_CHUNK):
            chunk = texts[start : start + ASSEMBLY_CHUNK]
            found, encodings = cache.lookup(namespace, chunk, layers, kinds=kinds)
            if found.any():
                rows = [position_of[text] for text, hit in zip(chunk, found) if hit]
                features[rows] = self._combine(encodings)
                n_truncated += int(encodings.truncated.sum())
            missing.extend(text for text, hit in zip(chunk, found) if not hit)
        return missing, n_truncated

    def _combine(self, encodings):
        """Features from encodings whose summaries hold the selected layers only."""
        return combine_pooled(
            encodings.summaries,
            encodings.pooler,
            encodings.n_tokens,
            pooling=self._validated_pooling(),
            layers=range(encodings.summaries.shape[2]),
            layer_aggregation=self.layer_aggregation,
        )

    def _encode_missing(self, features, position_of, texts, namespace, cache):
        """Run the encoder on ``texts``, write their rows, and store them in ``cache``.

        Texts go through in groups (``_batching.tokenized_groups``): each group is
        tokenized, cut into windows, sorted and encoded; on CUDA the next group is
        tokenized while the device encodes this one.

        Returns the number of texts that were truncated.
        """
        from ._batching import AUTO_TOKEN_BUDGET, tokenized_groups

        loaded = self._ensure_loaded()
        max_tokens = self.max_tokens_per_batch
        if max_tokens == "auto":
            max_tokens = AUTO_TOKEN_BUDGET.get(loaded.device.type, 4096)
        store = functools.partial(
            self._store_finished,
            features,
            position_of,
            namespace=namespace,
            cache=cache,
        )
        progress = _progress_bar(len(texts)) if self.verbose else None
        n_truncated = 0
        try:
            for group, content in tokenized_groups(
                loaded.tokenizer, texts, overlap=loaded.device.type == "cuda"
            ):
                n_truncated += self._encode_group(
                    loaded, group, content, max_tokens, store, progress
                )
        finally:
            if progress is not None:
                progress.close()
        return n_truncated

    def _encode_group(self, loaded, texts, content, max_tokens, store, progress):
        """Encode one group of texts from their token ids; returns how many were truncated."""
        from ._batching import encode

        windows, owner, n_windows, n_tokens, truncated = self._windows(loaded, content)
        partial = {}  # text index -> window summaries of a chunked text still incomplete
        for batch, summaries, pooler in encode(
            loaded,
            windows,
            batch_size=self.batch_size,
            max_tokens=max_tokens,
            compute_dtype=self._compute_dtype(),
        ):
            finished = []
            for row, window in enumerate(batch):
                index = owner[window]
                window_pooler = None if pooler is None else pooler[row]
                if n_windows[index] == 1:
                    summary = (
                        summaries[row].copy(),
                        None if pooler is None else window_pooler.copy(),
                    )
                else:
                    parts = partial.setdefault(index, [])
                    parts.append((summaries[row].copy(), window_pooler, len(windows[window])))
                    if len(parts) < n_windows[index]:
                        continue
                    summary = self._merge_windows(partial.pop(index))
                finished.append((texts[index], *summary, n_tokens[index], truncated[index]))
            if finished:
                store(finished)
                if progress is not None:
                    progress.update(len(finished))
        return int(truncated.sum())

    def _windows(self, loaded, content):
        """Token ids to encode: one window per text, or several for chunked long texts."""
        from ._batching import add_special_tokens
        from ._long_texts import split_into_windows

        prefix, suffix = loaded.special_prefix, loaded.special_suffix
        room = self.max_length_ - len(prefix) - len(suffix)
        lengths = np.fromiter((len(ids) for ids in content), dtype=np.intp, count=len(content))
        n_tokens = np.minimum(lengths, room) + len(prefix) + len(suffix)
        if self.long_text == "chunk":
            windows, owner = [], []
            for index, ids in enumerate(content):
                for window in split_into_windows(ids, room, self.stride):
                    windows.append([*prefix, *window, *suffix])
                    owner.append(index)
            owner = np.asarray(owner, dtype=np.intp)
            n_tokens = lengths + len(prefix) + len(suffix)
            truncated = np.zeros(len(content), dtype=bool)
        else:
            windows = [add_special_tokens(ids, prefix, suffix, self.max_length_) for ids in content]
            owner = np.arange(len(content))
            truncated = lengths > room
        n_windows = np.bincount(owner, minlength=len(content))
        return windows, owner, n_windows, n_tokens, truncated

    def _merge_windows(self, parts):
        from ._long_texts import merge_windows

        summaries = np.stack([summary for summary, _, _ in parts])
        poolers = None if parts[0][1] is None else np.stack([pooler for _, pooler, _ in parts])
        n_tokens = np.array([n for _, _, n in parts])
        return merge_windows(summaries, poolers, n_tokens, self.chunk_aggregation)

    def _store_finished(self, features, position_of, finished, *, namespace, cache):
        """Write the rows of finished texts and store their encodings in ``cache``.

        ``finished`` holds ``(text, summaries, pooler, n_tokens, truncated)`` tuples. With a
        cache, the rows are built from the vectors as the cache keeps them
        (``stored_precision``), so that they equal what a later lookup gives.
        """
        texts = [item[0] for item in finished]
        encodings = Encodings(
            np.stack([item[1] for item in finished]),
            None if finished[0][2] is None else np.stack([item[2] for item in finished]),
            np.array([item[3] for item in finished], dtype=np.int64),
            np.array([item[4] for item in finished], dtype=bool),
        )
        # Reduced-precision forward passes are kept in float16, whose rounding is an eighth
        # of one bfloat16 rounding; float32 ones are kept exactly.
        storage_dtype = "float32" if self.dtype_ == "float32" else "float16"
        if cache is not None:
            encodings = stored_precision(encodings, storage_dtype)
        layers = list(self._validated_layers(self.n_hidden_states_))
        selected = encodings._replace(summaries=encodings.summaries[:, :, layers])
        features[[position_of[text] for text in texts]] = self._combine(selected)
        if cache is not None:
            cache.store(namespace, texts, encodings, storage_dtype=storage_dtype)

    def _compute_dtype(self):
        import torch

        from ._model import resolve_dtype

        return resolve_dtype(self.dtype_, torch.device(self.device_))

    def _report_truncation(self, n_truncated, n_texts):
        self.n_truncated_ = int(n_truncated)
        if n_truncated:
            warnings.warn(
                f"{n_truncated} of {n_texts} distinct texts are longer than max_length_="
                f"{self.max_length_} tokens and were truncated. n_truncated_ holds the count.",
                UserWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------ pickling

    def __getstate__(self):
        # BaseEstimator returns the live __dict__ on Python 3.11+: copy it, or pickling
        # would drop the model from (and add the weights to) the estimator being pickled.
        state = dict(super().__getstate__())
        loaded = state.pop("_loaded", None)
        if self.store_weights_in_pickle and hasattr(self, "model_fingerprint_"):
            from ._model import export_model_files

            loaded = loaded or self._ensure_loaded()
            state["_model_files"] = export_model_files(loaded)
        return state

    def __setstate__(self, state):
        files = state.pop("_model_files", None)
        super().__setstate__(state)
        if not hasattr(self, "device_"):
            return
        self._remap_device()
        if files is not None:
            import torch

            from ._model import load_model_from_files

            self._loaded = load_model_from_files(files, device=torch.device(self.device_))

    def _remap_device(self):
        """Run on this machine's device when the fitted one is missing here."""
        from ._model import resolve_device, warn_device_change

        try:
            device = resolve_device(self.device_)
        except ValueError:
            device = resolve_device("auto" if self.device == "auto" else "cpu")
            warn_device_change(self.device_, str(device))
            self.device_ = str(device)
            self.dtype_ = self._dtype_name_on(device)

    # ------------------------------------------------------------------ saving without pickle

    def save(self, path, *, include_model=True):
        """Save to a folder that loads without executing code (no pickle).

        The folder holds ``estimator.json`` (parameters and fitted attributes) and, when
        fitted, ``model/`` (safetensors weights, config and tokenizer files). Secrets
        are never written: ``token_env`` is saved, the token it names is not.

        Parameters
        ----------
        path : str or path-like
            A new or empty folder, or one written by an earlier ``save`` (replaced).
        include_model : bool, default=True
            Write the checkpoint too. If False, the loaded vectorizer reloads it from
            ``model_name_or_path`` on first use, as a default pickle does.

        Returns
        -------
        path : pathlib.Path
            The folder written.

        See Also
        --------
        load : Read such a folder back.
        """
        from ._persistence import save_estimator

        return save_estimator(self, path, include_model=include_model)

    @classmethod
    def load(cls, path, *, device=None):
        """Load a vectorizer written by :meth:`save`, without executing stored code.

        Parameters
        ----------
        path : str or path-like
            The folder ``save`` wrote.
        device : str, default=None
            Run on this device (also sets the ``device`` parameter). None keeps the
            saved device, or uses this machine's best one, with a warning, when the
            saved device is missing here.

        Returns
        -------
        vectorizer : AlbertVectorizer
            Fitted if it was fitted when saved.
        """
        from ._persistence import load_estimator

        return load_estimator(cls, path, device=device)

    # What ``save`` and ``load`` (in _persistence.py) ask of the estimator they handle.

    def _model_for_saving(self):
        return self._ensure_loaded()

    def _extra_weights_for_saving(self):
        return None  # a vectorizer's weights are the checkpoint's, all in model/

    def _restore_extra_weights(self, tensors):
        raise ValueError("An AlbertVectorizer folder holds no weights beside model/.")

    def _dtype_name_on(self, device):
        from ._model import dtype_name, resolve_dtype

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
            n_features)`` float32; rows are L2-normalised when ``normalize=True``) and
            ``truncated`` (whether tokens past ``max_length_`` were dropped).

        Examples
        --------
        >>> vectorizer = AlbertVectorizer("albert-base-v2").fit(["warm up"])  # doctest: +SKIP
        >>> record = vectorizer.transform_tokens(["Paris is lovely"])[0]  # doctest: +SKIP
        >>> record.tokens, record.offsets[0], record.embeddings.shape  # doctest: +SKIP
        (['▁paris', '▁is', '▁lovely'], array([0, 5]), (3, 768))
        """
        check_is_fitted(self)
        from ._tokens import transform_tokens

        return transform_tokens(
            self, validate_texts(X), word_level=word_level, word_aggregation=word_aggregation
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


def _progress_bar(total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding", unit="text")
