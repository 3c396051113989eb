"""The settings an estimator encodes with: resolved and validated once, in ``fit``.

``fit`` turns the estimator's parameters and the facts of the loaded checkpoint into one
frozen :class:`EncodeSettings`. ``transform`` (and token embeddings, classifier
predictions, the command line and every distributed worker) reads it instead of the live
parameters, so a fitted estimator always produces what ``fit`` validated, and the settings
name the cache namespace of the model that runs them. The checks that need the checkpoint
(layer indices, the pooler, the token limit, the stride) live here once for every
estimator.
"""

import hashlib
import os
from dataclasses import dataclass, replace
from numbers import Integral

from sklearn.utils._param_validation import InvalidParameterError

from ._batching import AUTO_TOKEN_BUDGET
from ._output import output_width
from ._pooling import POOLING_NAMES, n_pooled_features

#: ``embedding_cache`` values that look like a misspelt option rather than a folder name.
_CACHE_OPTION_LOOKALIKES = {"memory", "mem", "ram", "none", "null", "disk", "true", "false"}


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides an estimator's encodings, fixed when it was fitted.

    Attributes
    ----------
    model_fingerprint : str
        Content hash of the checkpoint fitted with (config, tokenizer, weights). The cache
        namespace hashes the checkpoint actually loaded instead (:meth:`cache_namespace`).
    pooling : tuple of str
        Names from ``POOLING_NAMES``, concatenated in this order.
    layers : tuple of int
        Non-negative indices into the hidden states (0 = embedding output).
    layer_aggregation : {"mean", "concat"}
    normalize : bool
    max_length : int
        Tokens per window, special tokens included.
    long_text : {"truncate", "chunk"}
    stride : int
    chunk_aggregation : {"mean", "max", "weighted"}
    compute_dtype : {"float32", "float16", "bfloat16", "int8"}
    device : str
    batch_size : int
    max_tokens : int
        Padded tokens per forward pass.
    calibration_id : str or None
        Identity of the int8 calibration fitted with, when ``compute_dtype="int8"``.
    prompt : str or None
        The instruction prefix of every text (``"query: "``), as given.
    prompt_ids : tuple of int
        The prompt's token ids (tokenized on its own, without special tokens): they follow
        the model's leading special tokens in every window. Empty without a prompt.
    truncate_dim : int or None
        Output dimensions kept (the first ones), normalised after the cut when
        ``normalize``; None keeps them all.
    output_dtype : {"float32", "int8", "uint8", "binary", "ubinary"}
        How the finished vectors are stored (``_output.py``); int8 and uint8 use the
        ranges the estimator fitted (``quantization_ranges_``).
    """

    model_fingerprint: str
    pooling: tuple
    layers: tuple
    layer_aggregation: str
    normalize: bool
    max_length: int
    long_text: str
    stride: int
    chunk_aggregation: str
    compute_dtype: str
    device: str
    batch_size: int
    max_tokens: int
    calibration_id: str = None
    prompt: str = None
    prompt_ids: tuple = ()
    truncate_dim: int = None
    output_dtype: str = "float32"

    def cache_namespace(self, loaded, *, numerics, calibration_id=None):
        """A short stable hash naming the computation that produces the cached summaries.

        It hashes the model that actually runs in this process, not the one recorded at
        fit (``model_fingerprint``): ``loaded.fingerprint`` (config, tokenizer and weights,
        see ``_loading.fingerprint``), or for ``compute_dtype="int8"`` the calibrated
        encoder that runs (``calibration_id``) and the tokenizer in use
        (``loaded.tokenizer_fingerprint``). An estimator whose checkpoint changed since fit
        therefore writes and reads its own entries, never those of the model it was fitted
        with. With it: ``max_length``, the compute dtype, the device type and, for
        ``long_text="chunk"``, the stride and the window aggregation, and the prompt's
        token ids when there is a prompt (so prompted and plain vectors of a text never
        mix), and ``numerics``: what else the bits depend on (the sklearn_albert numerics
        version, PyTorch's version, the kind of CPU or GPU, the CPU switches turned off),
        so that a cache folder shared between versions or machines never mixes their
        vectors.

        Pooling, layers, their aggregation, normalisation, ``truncate_dim`` and
        ``output_dtype`` are not part of it: they are computed from the cached summaries,
        so every grid-search candidate shares them.

        Parameters
        ----------
        loaded : LoadedModel
            The checkpoint the estimator encodes with now.
        numerics : str
            ``_devices.numerics_identity`` of the device and precision that run.
        calibration_id : str, default=None
            The ``calibration_id`` of the int8 encoder that runs; required for int8.

        Returns
        -------
        namespace : str
        """
        if self.compute_dtype == "int8":
            if calibration_id is None:
                raise ValueError(
                    "A dtype='int8' cache namespace names the calibrated encoder that runs; "
                    "got calibration_id=None. Fit the estimator to calibrate it."
                )
            model = ("int8", loaded.tokenizer_fingerprint, calibration_id)
        else:
            model = loaded.fingerprint
        chunking = (self.stride, self.chunk_aggregation) if self.long_text == "chunk" else None
        key = repr(
            (
                model,
                self.max_length,
                self.compute_dtype,
                self.device.split(":")[0],
                chunking,
                *((self.prompt_ids,) if self.prompt_ids else ()),
                numerics,
            )
        )
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def n_features(self, hidden_size):
        """Number of pooled features (before ``truncate_dim``) for ``hidden_size``."""
        return n_pooled_features(
            hidden_size,
            pooling=self.pooling,
            n_layers=len(self.layers),
            layer_aggregation=self.layer_aggregation,
        )

    def n_features_out(self, hidden_size):
        """Number of output features: the pooled ones, cut to ``truncate_dim``, packed
        eight to a byte for binary output."""
        n_features = self.n_features(hidden_size)
        if self.truncate_dim is not None:
            n_features = min(self.truncate_dim, n_features)
        return output_width(n_features, self.output_dtype)

    def on_device(self, device, compute_dtype):
        """The same settings on another device (a pickle or folder loaded elsewhere)."""
        return replace(
            self,
            device=str(device),
            compute_dtype=compute_dtype,
            max_tokens=self.max_tokens
            if self.device.split(":")[0] == str(device).split(":")[0]
            else AUTO_TOKEN_BUDGET.get(str(device).split(":")[0], 4096),
        )


def validated_pooling(pooling, estimator_name, *, has_pooler=True, allowed=POOLING_NAMES):
    """``pooling`` as a non-empty tuple of known names, or an error naming what works."""
    names = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    bad = [name for name in names if not isinstance(name, str) or name not in allowed]
    if not names or bad:
        raise InvalidParameterError(
            f"The 'pooling' parameter of {estimator_name} must be one of "
            f"{tuple(allowed)} or a non-empty list of them. Got {pooling!r}."
        )
    if "pooler" in names and not has_pooler:
        raise InvalidParameterError(
            f"Got pooling={pooling!r} but the checkpoint has no pooler. Use one of "
            f"{tuple(name for name in allowed if name != 'pooler')}."
        )
    return names


def validated_layers(layers, n_hidden_states, estimator_name):
    """``layers`` as a non-empty tuple of non-negative hidden-state indices."""
    selected = (layers,) if isinstance(layers, Integral) else tuple(layers)
    valid = all(
        isinstance(layer, Integral)
        and not isinstance(layer, bool)
        and -n_hidden_states <= layer < n_hidden_states
        for layer in selected
    )
    if not selected or not valid:
        raise InvalidParameterError(
            f"The 'layers' parameter of {estimator_name} must be an int or a non-empty tuple "
            f"of ints in [-{n_hidden_states}, {n_hidden_states - 1}] (this checkpoint has "
            f"{n_hidden_states} hidden states, 0 = embeddings). Got {layers!r}."
        )
    return tuple(int(layer) % n_hidden_states for layer in selected)


def validated_max_length(max_length, model_limit):
    """The token limit in use: ``max_length``, or the model's when None; never above it."""
    if max_length is not None and max_length > model_limit:
        raise InvalidParameterError(
            f"Got max_length={max_length} but the checkpoint accepts at most {model_limit} "
            "tokens. Use max_length=None for the model's limit, or a smaller value."
        )
    return int(max_length or model_limit)


def validated_stride(stride, room):
    """``stride`` for chunked long texts: fewer tokens than a window holds."""
    if stride >= room:
        raise InvalidParameterError(
            f"Got stride={stride} but a window holds only {room} text tokens "
            f"(max_length minus special tokens). Use a stride below {room}."
        )
    return int(stride)


def validated_prompt(prompt, prompt_ids, room, *, long_text, stride):
    """``prompt_ids`` if they leave room for text in a window, else an error naming why.

    ``room`` is a window's room for tokens besides the special ones (``max_length`` minus
    the special tokens); the prompt takes ``len(prompt_ids)`` of it in every window.
    """
    chunking = long_text == "chunk"
    needed = 1 + (stride if chunking else 0)
    if room - len(prompt_ids) < needed:
        why = (
            f", and long_text='chunk' needs more than stride={stride} for text" if chunking else ""
        )
        raise InvalidParameterError(
            f"Got prompt={prompt!r}, {len(prompt_ids)} tokens, but a window holds only "
            f"{room} tokens besides the special ones{why}. Use a shorter prompt or a larger "
            "max_length."
        )
    return tuple(int(token) for token in prompt_ids)


def validated_truncate_dim(truncate_dim, n_features):
    """``truncate_dim`` if the pooled vectors have at least that many dimensions."""
    if truncate_dim is not None and truncate_dim > n_features:
        raise InvalidParameterError(
            f"Got truncate_dim={truncate_dim} but this vectorizer's vectors have "
            f"{n_features} dimensions (the checkpoint's width with this pooling and "
            f"layers). Use an int in [1, {n_features}], or None to keep them all."
        )
    return None if truncate_dim is None else int(truncate_dim)


def validated_embedding_cache(value):
    """``embedding_cache`` as "memory", None or a folder path; typos of options refused.

    A string other than "memory" names a folder; one that reads like a misspelt option
    ("Memory", "none", "disk") is refused rather than created as a folder of that name.
    """
    if value is None or (isinstance(value, str) and value == "memory"):
        return value
    if isinstance(value, str) and value.strip().lower() in _CACHE_OPTION_LOOKALIKES:
        raise InvalidParameterError(
            f"Got embedding_cache={value!r}, which reads like an option, not a folder. Use "
            "'memory' (lower case) for the in-memory cache, None for no cache, or a folder "
            "path such as './embedding_cache' for a disk cache shared by processes."
        )
    if isinstance(value, str | os.PathLike):
        return value
    raise InvalidParameterError(
        f"Got embedding_cache={value!r}; use 'memory', None or a folder path."
    )


def resolved_normalize(normalize, fine_tune):
    """``normalize`` with "auto" resolved: unit rows for an encoder tuned by ``fine_tune``.

    Contrastive adaptation trains the cosine of pooled vectors, so only their directions
    carry what it learned; their lengths are a by-product. Without ``fine_tune`` "auto"
    keeps the pooled vectors as they are.
    """
    if isinstance(normalize, str) and normalize == "auto":
        return fine_tune is not None
    return bool(normalize)


def token_budget(max_tokens_per_batch, device):
    """Padded tokens per forward pass: the parameter, or the device's default for "auto"."""
    if max_tokens_per_batch == "auto":
        return AUTO_TOKEN_BUDGET.get(str(device).split(":")[0], 4096)
    return int(max_tokens_per_batch)


def resolve_settings(
    params, loaded, *, estimator_name, compute_dtype, device=None, calibration_id=None
):
    """Validate an estimator's parameters against a loaded checkpoint.

    Parameters
    ----------
    params : dict
        The estimator's ``get_params()``; the encoding ones are read.
    loaded : LoadedModel
    estimator_name : str
        For error messages.
    compute_dtype : str
        The resolved precision name ("float32", "bfloat16", ...).
    device : torch.device, default=None
        Where the estimator computes; None means where ``loaded`` is.
    calibration_id : str, default=None

    Returns
    -------
    settings : EncodeSettings
    """
    device = loaded.device if device is None else device
    pooling = validated_pooling(params["pooling"], estimator_name, has_pooler=loaded.has_pooler)
    layers = validated_layers(params.get("layers", -1), loaded.n_hidden_states, estimator_name)
    max_length = validated_max_length(params["max_length"], loaded.max_length)
    long_text = params.get("long_text", "truncate")
    stride = params.get("stride", 0)
    room = max_length - len(loaded.special_prefix) - len(loaded.special_suffix)
    prompt = params.get("prompt")
    prompt_ids = ()
    if prompt:
        prompt_ids = validated_prompt(
            prompt,
            loaded.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"],
            room,
            long_text=long_text,
            stride=stride,
        )
    if long_text == "chunk":
        stride = validated_stride(stride, room - len(prompt_ids))
    settings = EncodeSettings(
        model_fingerprint=loaded.fingerprint,
        pooling=pooling,
        layers=layers,
        layer_aggregation=params.get("layer_aggregation", "mean"),
        normalize=resolved_normalize(params.get("normalize", False), params.get("fine_tune")),
        max_length=max_length,
        long_text=long_text,
        stride=int(stride),
        chunk_aggregation=params.get("chunk_aggregation", "mean"),
        compute_dtype=compute_dtype,
        device=str(device),
        batch_size=int(params["batch_size"]),
        max_tokens=token_budget(params.get("max_tokens_per_batch", "auto"), device),
        calibration_id=calibration_id,
        prompt=prompt,
        prompt_ids=prompt_ids,
        output_dtype=params.get("output_dtype", "float32"),
    )
    truncate_dim = params.get("truncate_dim")
    if truncate_dim is None:
        return settings
    truncate_dim = validated_truncate_dim(truncate_dim, settings.n_features(loaded.hidden_size))
    return replace(settings, truncate_dim=truncate_dim)
