"""AlbertClassifier: fine-tune an encoder on labelled texts; predict; hand over embeddings."""

import os
from dataclasses import replace
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from ._persistence import EncoderPersistence
from ._validation import validate_texts
from ._warnings import warn_at_caller

# Kept in sync with _finetuning.HEAD_POOLING_NAMES, which cannot be imported here without
# importing torch.
HEAD_POOLING_NAMES = ("mean", "cls", "pooler")

#: Tokens per text when ``max_length=None``, unless the model accepts fewer.
DEFAULT_MAX_LENGTH = 128


class AlbertClassifier(ClassifierMixin, EncoderPersistence, BaseEstimator):
    """Fine-tune ALBERT (or any Hugging Face encoder) to classify raw texts.

    ``fit`` trains the whole encoder and a linear head on top of it with cross-entropy:
    AdamW, a linear learning-rate schedule with warmup, gradient clipping, and mixed
    precision on GPU. The fitted classifier predicts labels and probabilities from raw
    text, and :meth:`to_vectorizer` turns its tuned encoder into an
    :class:`AlbertVectorizer` for task-aware embeddings.

    Parameters
    ----------
    model_name_or_path : str or path-like, default="albert-base-v2"
        The pretrained checkpoint to start from: a Hugging Face hub id or a local folder
        holding a checkpoint and its tokenizer. Loaded through ``AutoModel``; remote code
        is never trusted.

    pooling : {"mean", "cls", "pooler"}, default="mean"
        What the head reads from the encoder: the mean of the last layer's token vectors
        (padding excluded), the first token's vector, or the model's pooler output (what
        ``AlbertForSequenceClassification`` uses).

    epochs : int, default=3
        Passes over the training data.

    batch_size : int, default=16
        Texts per optimizer step (and per forward pass when predicting).

    learning_rate : float, default=5e-5
        Peak learning rate of AdamW, reached after the warmup.

    weight_decay : float, default=0.01
        AdamW's decoupled weight decay; biases and normalisation weights are not decayed.

    warmup : float, default=0.1
        Fraction of all optimizer steps over which the learning rate rises linearly from
        0 to ``learning_rate``; it then decays linearly to 0 at the last step.

    max_length : int or None, default=None
        Tokens per text, special tokens included. None means 128, or the model's limit
        when that is smaller (fine-tuning cost grows with length; most sentences fit). A
        value above the model's limit is refused, as by ``AlbertVectorizer``. Longer
        texts are truncated; with None, ``fit`` and every prediction warn how many (at the
        caller's line, once per call). A limit set here is deliberate, so nothing warns;
        ``n_truncated_`` still counts.

    validation_fraction : float or None, default=None
        Fraction of the training texts held out (stratified) and scored after every epoch,
        in ``history_``. None holds out nothing, or 0.1 when ``early_stopping=True``.

    early_stopping : bool, default=False
        Stop when the validation accuracy has not improved for ``n_iter_no_change``
        epochs, and keep the weights of the best epoch.

    n_iter_no_change : int, default=2
        Epochs without improvement before stopping, when ``early_stopping=True``.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as ``{label: weight}``; ``"balanced"`` weights
        each class by ``n_samples / (n_classes * count)``; None weighs them equally.

    device : str, default="auto"
        "auto" picks cuda if available, else mps, else cpu; or any torch device string.

    dtype : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Compute precision. Reduced precision runs under autocast (weights and the optimizer
        stay float32); float16 adds loss scaling. "auto" is bfloat16 (float16 where not
        supported) on CUDA and float32 elsewhere.

    random_state : int, RandomState instance or None, default=None
        Seeds the head's initialisation, dropout, the validation split and the batch
        order. On CPU an int makes ``fit`` reproducible: the same predictions to the bit.

    verbose : bool, default=False
        Show a progress bar per epoch with the running loss.

    revision : str, default=None
        Hub branch, tag or commit of the checkpoint.

    cache_dir : str or path-like, default=None
        Hugging Face download cache folder.

    local_files_only : bool, default=False
        Never use the network; load from the local folder or cache only.

    token_env : str, default=None
        Name of an environment variable holding a hub token for private checkpoints. The
        token itself is never stored in the estimator or its pickle.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of the columns of ``predict_proba``.

    history_ : list of dict
        One entry per epoch run: ``epoch``, ``train_loss`` (mean cross-entropy over the
        epoch's batches), ``validation_loss`` and ``validation_score`` (accuracy on the
        held-out texts, None without validation), ``learning_rate`` (at the epoch's end)
        and ``seconds``. ``pandas.DataFrame(history_)`` makes it a table.

    n_iter_ : int
        Number of epochs run.

    best_epoch_ : int or None
        With early stopping, the epoch whose weights were kept; else None.

    settings_ : EncodeSettings
        How predictions encode texts (pooling, token limit, precision, device, batch
        budgets), resolved by ``fit``.

    n_truncated_ : int
        Number of training texts longer than ``max_length_`` tokens. With
        ``max_length=None``, predictions on texts longer than that warn how many were
        cropped.

    device_ : str
        The device the model runs on.

    dtype_ : str
        The compute precision in use ("float32", "float16" or "bfloat16").

    max_length_ : int
        The token limit in use.

    hidden_size_ : int
        Size of the encoder's token vectors.

    model_fingerprint_ : str
        A hash of the tuned encoder's config, tokenizer and weights.

    See Also
    --------
    AlbertVectorizer : Frozen embeddings, for any scikit-learn model downstream.
    sklearn.linear_model.LogisticRegression : A classifier for those embeddings.

    Notes
    -----
    The head is a dropout layer and a linear layer over the pooled last layer of an
    ``AutoModel`` encoder, rather than ``AutoModelForSequenceClassification``: every
    encoder gets the same head, the tuned encoder is exactly the model
    :class:`AlbertVectorizer` reads, and ``pooling`` chooses what the head sees.

    Gradients are clipped to a global norm of 1. Training batches group texts of similar
    length, so that little compute goes to padding. A pickle holds the parameters, the
    tuned weights (safetensors), the tokenizer and ``classes_``; no training data. It
    loads on a machine without the fitted device, on the best one there, with a warning.

    Examples
    --------
    >>> from sklearn_albert import AlbertClassifier
    >>> clf = AlbertClassifier("albert-base-v2", epochs=2, random_state=0)
    >>> clf.fit(["a great film", "a dull film"], ["pos", "neg"])  # doctest: +SKIP
    >>> clf.predict(["great"])  # doctest: +SKIP
    array(['pos'], dtype='<U3')
    >>> embeddings = clf.to_vectorizer().transform(["great"])  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "model_name_or_path": [str, os.PathLike],
        "pooling": [StrOptions(set(HEAD_POOLING_NAMES))],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "device": [str],
        "dtype": [StrOptions({"auto", "float32", "float16", "bfloat16"})],
        "random_state": ["random_state"],
        "verbose": ["boolean"],
        "revision": [str, None],
        "cache_dir": [str, os.PathLike, None],
        "local_files_only": ["boolean"],
        "token_env": [str, None],
    }

    def __init__(
        self,
        model_name_or_path="albert-base-v2",
        *,
        pooling="mean",
        epochs=3,
        batch_size=16,
        learning_rate=5e-5,
        weight_decay=0.01,
        warmup=0.1,
        max_length=None,
        validation_fraction=None,
        early_stopping=False,
        n_iter_no_change=2,
        class_weight=None,
        device="auto",
        dtype="auto",
        random_state=None,
        verbose=False,
        revision=None,
        cache_dir=None,
        local_files_only=False,
        token_env=None,
    ):
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup = warmup
        self.max_length = max_length
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.revision = revision
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only
        self.token_env = token_env

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fine-tune the encoder and a classification head on labelled texts.

        Parameters
        ----------
        X : iterable of str
            Training texts: a list, tuple, numpy array, pandas Series or one-column
            DataFrame.
        y : array-like of shape (n_samples,)
            Their labels, of any type (str, int, ...); at least two distinct labels.

        Returns
        -------
        self : AlbertClassifier
            The fitted classifier.
        """
        texts = validate_texts(X)
        y = column_or_1d(y, warn=True)
        check_consistent_length(texts, y)
        check_classification_targets(y)
        label_encoder = LabelEncoder()
        targets = label_encoder.fit_transform(y)
        classes = label_encoder.classes_
        if len(classes) < 2:
            raise ValueError(
                f"AlbertClassifier needs samples of at least 2 classes in y; got "
                f"{len(classes)} class: {classes.tolist()!r}."
            )
        class_weight = self._validated_class_weight(classes, y)

        import torch

        from ._devices import dtype_name
        from ._engine import cut_windows, tokenize
        from ._finetuning import build_network, train
        from ._loading import hold_in_memory, in_memory_name, load_model, prepare_model
        from ._settings import resolve_settings

        device = self._resolve_device(self.device)
        compute_dtype = training_dtype(self.dtype, device)
        # The pretrained model is shared (on CPU) by every clone; each fit trains a copy.
        template = load_model(
            self.model_name_or_path,
            device=torch.device("cpu"),
            revision=self.revision,
            cache_dir=self.cache_dir,
            local_files_only=self.local_files_only,
            token_env=self.token_env,
        )
        params = self.get_params(deep=False)
        if params["max_length"] is None:
            params["max_length"] = min(DEFAULT_MAX_LENGTH, template.max_length)
        settings = resolve_settings(
            {**params, "layers": -1, "max_tokens_per_batch": "auto"},
            template,
            estimator_name=type(self).__name__,
            compute_dtype=dtype_name(compute_dtype),
            device=device,
        )
        windows = cut_windows(tokenize(template.tokenizer, texts), template, settings)
        ids, n_truncated = windows.ids, int(windows.truncated.sum())
        if n_truncated and self.max_length is None:  # a limit the user chose: no warning
            warn_at_caller(
                f"{n_truncated} of {len(texts)} training texts are longer than max_length="
                f"{settings.max_length} tokens and were truncated. Raise max_length to keep "
                "more."
            )

        rng = check_random_state(self.random_state)
        train_rows, validation_rows = self._validation_split(targets, rng)
        validation = None
        if validation_rows is not None:
            validation = ([ids[i] for i in validation_rows], targets[validation_rows])
        torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(torch_seed)
            network = build_network(
                template.model, len(classes), pooling=self.pooling, device=device
            )
            history, best_epoch = train(
                network,
                [ids[i] for i in train_rows],
                targets[train_rows],
                validation=validation,
                epochs=self.epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                weight_decay=self.weight_decay,
                warmup=self.warmup,
                class_weight=class_weight,
                compute_dtype=compute_dtype,
                early_stopping=self.early_stopping,
                n_iter_no_change=self.n_iter_no_change,
                pad_id=template.pad_id,
                rng=rng,
                verbose=self.verbose,
            )
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        tuned = prepare_model(network.encoder, template.tokenizer, device)
        self._network = network
        self._loaded = hold_in_memory(in_memory_name(tuned), tuned)
        self.settings_ = replace(settings, model_fingerprint=tuned.fingerprint)
        self.classes_ = classes
        self.history_ = history
        self.n_iter_ = len(history)
        self.best_epoch_ = best_epoch
        self.n_truncated_ = n_truncated
        self.hidden_size_ = template.hidden_size
        return self

    # ------------------------------------------------------------------ prediction

    def decision_function(self, X):
        """Class scores (logits) of each text.

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes), float32
            For two classes, the log-odds of ``classes_[1]``; else one logit per class.
        """
        logits = self._logits(X)
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Probability of each class for each text.

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Columns follow ``classes_``; rows sum to 1.
        """
        logits = self._logits(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float64
        """
        logits = self._logits(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X):
        """The most probable class of each text.

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits = self._logits(X)
        return self.classes_[logits.argmax(axis=1)]

    def _logits(self, X):
        """Class scores through the engine: the tuned encoder pooled as the head reads it."""
        check_is_fitted(self)
        texts = validate_texts(X)
        from ._engine import encode_summaries, runner_for
        from ._pooling import features_from

        settings = self.settings_
        pooled = np.empty((len(texts), self.hidden_size_), dtype=np.float32)
        n_truncated = 0
        for indices, encodings in encode_summaries(
            self._loaded, runner_for(self._loaded, settings), texts, settings
        ):
            pooled[indices] = features_from(encodings, settings)
            n_truncated += int(encodings.truncated.sum())
        if n_truncated and self.max_length is None:  # a limit the user chose: no warning
            warn_at_caller(
                f"{n_truncated} of {len(texts)} texts are longer than max_length_="
                f"{settings.max_length} tokens and were truncated before prediction."
            )
        head = self._network.head
        weight = head.weight.detach().to("cpu", dtype=_float32()).numpy()
        bias = head.bias.detach().to("cpu", dtype=_float32()).numpy()
        return pooled @ weight.T + bias

    # ------------------------------------------------------------------ embeddings

    def to_vectorizer(self, save_to=None, **params):
        """An :class:`AlbertVectorizer` over the fine-tuned encoder, already fitted.

        Parameters
        ----------
        save_to : str or path-like, default=None
            A new (or empty) folder to save the tuned encoder and tokenizer in
            (``save_pretrained``); a folder with files in it, or a link, is refused, so
            that no other checkpoint is overwritten. The files appear together or not at
            all. The vectorizer then loads from that folder like from any checkpoint:
            clones, grid searches, other processes and small pickles all work while the
            folder exists.
            None keeps the weights in memory: the vectorizer's ``model_name_or_path`` is
            an ``"in-memory:<fingerprint>"`` name that clones and refits in this process
            resolve, and its pickle carries the weights.
        **params
            :class:`AlbertVectorizer` parameters (``pooling``, ``layers``,
            ``layer_aggregation``, ``normalize``, ...). Unless given, ``pooling`` is this
            classifier's ``pooling`` (what its head reads), ``max_length`` its
            ``max_length_``, ``device`` and ``dtype`` its ``device_`` and ``dtype_``,
            ``batch_size`` and ``verbose`` its own, and ``store_weights_in_pickle`` is
            True without ``save_to`` (False with it).

        Returns
        -------
        vectorizer : AlbertVectorizer
            A fitted vectorizer whose embeddings come from the tuned weights.
        """
        check_is_fitted(self)
        from ._loading import in_memory_name
        from ._vectorizer import AlbertVectorizer

        if "model_name_or_path" in params:
            raise TypeError(
                "to_vectorizer() sets model_name_or_path itself (the tuned encoder); "
                f"got model_name_or_path={params['model_name_or_path']!r}. Use "
                "save_to=folder to choose where the tuned weights are saved."
            )
        if save_to is None:
            source = in_memory_name(self._loaded)
        else:
            _write_checkpoint(self._loaded, Path(save_to))
            source = os.fspath(save_to)
        settings = {
            "pooling": self.pooling,
            "max_length": self.max_length_,
            "device": self.device_,
            "dtype": self.dtype_,
            "batch_size": self.batch_size,
            "verbose": self.verbose,
            "store_weights_in_pickle": save_to is None,
            **params,
        }
        return AlbertVectorizer(source, **settings).fit([])

    # ------------------------------------------------------------------ options

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    def _validated_class_weight(self, classes, y):
        if self.class_weight is None:
            return None
        try:
            return compute_class_weight(self.class_weight, classes=classes, y=y)
        except ValueError as error:
            raise ValueError(
                f"Got class_weight={self.class_weight!r}, which does not fit the labels "
                f"{classes.tolist()!r}: {error} Use a dict keyed by those labels, "
                "'balanced' or None."
            ) from None

    def _validation_split(self, targets, rng):
        """Row indices to train on and to validate on (None when not validating)."""
        fraction = self.validation_fraction
        if fraction is None and self.early_stopping:
            fraction = 0.1
        rows = np.arange(len(targets))
        if fraction is None:
            return rows, None
        from sklearn.model_selection import train_test_split

        n_validation = int(np.ceil(fraction * len(rows)))
        if n_validation >= len(rows):
            raise ValueError(
                f"Got validation_fraction={fraction} with {len(rows)} training texts, which "
                "leaves none to train on. Use a smaller fraction or more texts."
            )
        counts = np.bincount(targets)
        # A stratified split needs every class twice, and room for each class on both sides.
        can_stratify = counts.min() >= 2 and len(counts) <= n_validation <= len(rows) - len(counts)
        stratify = targets if can_stratify else None
        train_rows, validation_rows = train_test_split(
            rows, test_size=n_validation, stratify=stratify, random_state=rng
        )
        return np.sort(train_rows), np.sort(validation_rows)

    @staticmethod
    def _resolve_device(device):
        from ._devices import resolve_device

        try:
            return resolve_device(device)
        except ValueError as error:
            raise InvalidParameterError(str(error)) from None

    # ------------------------------------------------------------------ persistence hooks
    # Pickling, save() and load() live in EncoderPersistence (_persistence.py); a fitted
    # classifier's tuned weights are its state, so they always travel.

    _TRANSIENT = ("_loaded", "_network")
    #: What fit may set; load() refuses any other name a saved folder lists as fitted.
    _FITTED_ATTRIBUTES = (
        "settings_",
        "classes_",
        "history_",
        "n_iter_",
        "best_epoch_",
        "n_truncated_",
        "hidden_size_",
        "n_features_in_",
        "feature_names_in_",
    )

    def _weights_travel(self):
        return True

    def _weights_are_fitted_state(self):
        return True

    def _model_to_save(self):
        return self._loaded

    def _extra_weights(self):
        return self._network.head.state_dict()

    def _attach_model(self, loaded, head):
        """Rebuild the network from a restored encoder and its head weights."""
        import torch

        from ._finetuning import EncoderClassifier
        from ._loading import hold_in_memory, in_memory_name, is_legacy_fingerprint

        if (
            head is None
            or set(head) != {"weight", "bias"}
            or head["bias"].shape != (len(self.classes_),)
        ):
            found = {} if head is None else {k: tuple(v.shape) for k, v in head.items()}
            raise ValueError(
                f"The classification head holds {found}; expected a weight and a bias for "
                f"{len(self.classes_)} classes."
            )
        self._loaded = hold_in_memory(in_memory_name(loaded), loaded)
        if is_legacy_fingerprint(self.model_fingerprint_):
            # Written by an older sklearn_albert: the weights it was saved with, re-keyed.
            self.settings_ = replace(self.settings_, model_fingerprint=loaded.fingerprint)
        network = EncoderClassifier(
            self._loaded.model, len(self.classes_), pooling=self.pooling, dropout=0.0
        )
        network.head.load_state_dict(head)
        self._network = network.to(torch.device(self.device_)).eval()
        for parameter in self._network.parameters():
            parameter.requires_grad_(False)

    def _dtype_on(self, device):
        from ._devices import dtype_name

        return dtype_name(training_dtype(self.dtype, device))


def _write_checkpoint(loaded, path):
    """Save ``loaded``'s model and tokenizer as a checkpoint folder at ``path``, whole.

    Refuses a link, a file, or a folder with anything in it (another checkpoint, perhaps
    the pretrained one, would be overwritten); a failed write leaves nothing at ``path``.
    """
    from ._model_files import staged_folder

    if path.is_symlink() or (path.exists() and not path.is_dir()):
        what = "a symbolic link" if path.is_symlink() else "a file"
        raise FileExistsError(
            f"Cannot save the tuned encoder to save_to={str(path)!r}: it is {what}. Give "
            "the path of a new or empty folder."
        )
    if path.is_dir() and any(path.iterdir()):
        raise FileExistsError(
            f"Cannot save the tuned encoder to save_to={str(path)!r}: the folder is not "
            "empty, and its files (another checkpoint, perhaps) would be overwritten. Give "
            "the path of a new or empty folder."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(path) as staging:
        loaded.model.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)


def training_dtype(dtype, device):
    """The compute precision for fine-tuning ``dtype`` on ``device``, as a ``torch.dtype``.

    "auto" is bfloat16 on CUDA where supported (float16 otherwise) and float32 on CPU and
    MPS. AlbertVectorizer's "auto" uses bfloat16 on CPUs with native bfloat16 instructions;
    for fine-tuning, bfloat16 autocast on such a CPU (AVX512-BF16) was only 10-20 % faster
    per epoch, at the same accuracy and with 15 % more peak memory
    (benchmarks/finetune_sst2.py with ``--set dtype=bfloat16``). float32 stays the default so
    that what a fit learns does not depend on the CPU's instruction set.
    """
    import torch

    from ._devices import resolve_dtype

    if dtype == "auto" and device.type != "cuda":
        return torch.float32
    return resolve_dtype(dtype, device)


def _float32():
    import torch

    return torch.float32
