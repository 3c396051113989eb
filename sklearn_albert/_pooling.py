"""Pooling: from token vectors to one vector per text.

Two halves live here, both pure (they never write into the arrays they are given):

* :func:`pool_hidden_states` runs on the device after each forward pass and reduces every
  hidden layer to its ``cls``, masked ``mean`` and masked ``max`` vectors at once. Keeping all
  three for all layers is what lets a grid search over ``pooling`` and ``layers`` reuse one
  forward pass (see ``_cache/``).
* :func:`combine_pooled` runs on numpy and builds the user's feature vector from those
  per-layer summaries: the chosen poolings, the chosen layers, averaged or concatenated.

``POOLING_NAMES`` is the one table of valid ``pooling`` values.
"""

from typing import NamedTuple

import numpy as np

#: Valid values of ``pooling``, in documentation order.
POOLING_NAMES = ("cls", "mean", "max", "mean_sqrt_len", "pooler")

# Position of each per-layer summary in the ``summaries`` array of shape (n, 3, n_layers, dim).
SUMMARY_INDEX = {"cls": 0, "mean": 1, "max": 2}


class Encodings(NamedTuple):
    """What forward passes tell about a batch of texts (rows align with a list of texts).

    This is what the engine yields, what the embedding cache keeps, and what features are
    built from (:func:`features_from`).
    """

    summaries: np.ndarray  # (n, 3, n_hidden_states, dim) float32 (float16 on its way to a
    # cache, see _cache.rounded_batch): cls, mean, max per state
    pooler: object  # (n, dim) float32 ndarray (or float16, as summaries), or None: no pooler
    n_tokens: np.ndarray  # (n,) int64: attended tokens, special tokens included
    truncated: np.ndarray  # (n,) bool: cropped to max_length

    def select_layers(self, layers):
        """The same encodings with summaries of the hidden states ``layers`` only."""
        return self._replace(summaries=self.summaries[:, :, list(layers)])


def features_from(encodings, settings, *, layers_selected=False):
    """Feature rows (float32, before normalisation) from encodings under ``settings``.

    Parameters
    ----------
    encodings : Encodings
    settings : EncodeSettings
        Its ``pooling``, ``layers`` and ``layer_aggregation`` apply.
    layers_selected : bool, default=False
        Whether ``encodings`` already holds only the summaries of ``settings.layers``
        (as the cache returns them).
    """
    if not layers_selected:
        encodings = encodings.select_layers(settings.layers)
    pooler = encodings.pooler
    return combine_pooled(
        # float32 arithmetic for float16 summaries too (as the engine hands them to a cache)
        encodings.summaries.astype(np.float32, copy=False),
        None if pooler is None else pooler.astype(np.float32, copy=False),
        encodings.n_tokens,
        pooling=settings.pooling,
        layers=range(len(settings.layers)),
        layer_aggregation=settings.layer_aggregation,
    )


def pool_hidden_states(hidden_states, attention_mask):
    """Summarise every hidden layer by its cls, masked mean and masked max vectors.

    Parameters
    ----------
    hidden_states : sequence of torch.Tensor of shape (batch, seq_len, dim)
        One tensor per layer, embedding output first.
    attention_mask : torch.Tensor of shape (batch, seq_len)
        1 for real tokens, 0 for padding.

    Returns
    -------
    summaries : torch.Tensor of shape (batch, 3, n_layers, dim), float32
        ``summaries[:, 0]`` is the first token, ``[:, 1]`` the masked mean and ``[:, 2]``
        the masked max of each layer.
    """
    import torch

    # Autocast is off: inside the forward pass's bfloat16 context the mean would otherwise
    # run in bfloat16. Layer by layer, each hidden state is read in place rather than
    # stacked into one more copy of every token vector.
    with torch.autocast(device_type=attention_mask.device.type, enabled=False):
        mask = attention_mask.to(torch.float32)
        # Clamped so that a fully masked row yields zeros instead of NaN.
        n_tokens = mask.sum(dim=1).clamp(min=1)
        mean_weights = (mask / n_tokens[:, None])[:, :, None]  # (batch, seq_len, 1)
        padding = ~attention_mask.bool()[:, :, None]
        per_layer = []
        for layer in hidden_states:
            layer = layer.to(torch.float32)
            cls = layer[:, 0]
            mean = _masked_mean(layer, mean_weights)
            maximum = layer.masked_fill(padding, float("-inf")).amax(dim=1)
            per_layer.append(torch.stack((cls, mean, maximum), dim=1))  # (batch, 3, dim)
        return torch.stack(per_layer, dim=2)


def _masked_mean(layer, mean_weights):
    """Weighted sum over the tokens of ``layer`` (batch, seq_len, dim) by ``mean_weights``.

    The same text, the same vector on CPU: alone, a text's hidden states come padded to
    its own length; in a batch, to the batch's longest text. A matmul's reduction over the
    sequence (``bmm``) is blocked by that length on some CPUs (on an AMX Xeon, the same
    tokens pooled to other last bits), so on CPU the tokens are added one position after
    the other, each addition over the whole batch at once: the padding adds exact zeros
    after the last token. GPUs, whose kernels are not batch-invariant anyway, keep one
    ``bmm`` rather than a kernel launch per position.
    """
    import torch

    if layer.device.type != "cpu":
        return torch.bmm(mean_weights.transpose(1, 2), layer)[:, 0]
    weighted = layer * mean_weights
    total = weighted[:, 0].clone()
    for position in range(1, weighted.shape[1]):
        total += weighted[:, position]
    return total


def pool_tokens(token_vectors, attention_mask, pooling):
    """Pool one layer's token vectors with a single named strategy (reference version).

    This is the textbook definition of each strategy, used by tests and by callers who
    hold token vectors already; :func:`pool_hidden_states` computes the same values for
    every layer in one pass.

    Parameters
    ----------
    token_vectors : ndarray of shape (batch, seq_len, dim)
    attention_mask : ndarray of shape (batch, seq_len)
    pooling : {"cls", "mean", "max", "mean_sqrt_len"}

    Returns
    -------
    pooled : ndarray of shape (batch, dim)
    """
    token_vectors = np.asarray(token_vectors, dtype=np.float64)
    mask = np.asarray(attention_mask, dtype=bool)[..., None]
    n_tokens = np.maximum(mask.sum(axis=1), 1)
    if pooling == "cls":
        return token_vectors[:, 0]
    if pooling == "max":
        return np.where(mask, token_vectors, -np.inf).max(axis=1)
    summed = np.where(mask, token_vectors, 0.0).sum(axis=1)
    if pooling == "mean":
        return summed / n_tokens
    if pooling == "mean_sqrt_len":
        return summed / np.sqrt(n_tokens)
    raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLING_NAMES[:-1]}.")


def combine_pooled(summaries, pooler, n_tokens, *, pooling, layers, layer_aggregation):
    """Build feature vectors from per-layer summaries.

    Parameters
    ----------
    summaries : ndarray of shape (n, 3, n_layers, dim)
        Output of :func:`pool_hidden_states`.
    pooler : ndarray of shape (n, dim) or None
        The model's pooler output, when it has a pooler.
    n_tokens : ndarray of shape (n,)
        Number of attended tokens per text (special tokens included).
    pooling : tuple of str
        Names from ``POOLING_NAMES``; their vectors are concatenated in this order.
    layers : tuple of int
        Indices into the hidden states (0 = embedding output, -1 = last layer).
    layer_aggregation : {"mean", "concat"}
        How the pooled vectors of the selected layers are combined. For ``cls``,
        ``mean`` and ``mean_sqrt_len`` averaging pooled vectors equals pooling the
        averaged token vectors; for ``max`` it is the mean of the per-layer maxima.

    Returns
    -------
    features : ndarray of shape (n, n_features), float32
    """
    layers = list(layers)
    parts = []
    for name in pooling:
        if name == "pooler":
            parts.append(pooler)
            continue
        summary = SUMMARY_INDEX["mean" if name == "mean_sqrt_len" else name]
        selected = summaries[:, summary, layers, :]
        if name == "mean_sqrt_len":
            selected = selected * np.sqrt(np.maximum(n_tokens, 1))[:, None, None]
        if layer_aggregation == "mean" and len(layers) == 1:
            parts.append(selected[:, 0])  # the mean of one layer is that layer, exactly
        elif layer_aggregation == "mean":
            parts.append(selected.mean(axis=1))
        else:
            parts.append(selected.reshape(len(selected), -1))
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def n_pooled_features(hidden_size, *, pooling, n_layers, layer_aggregation):
    """Number of output features for the given pooling and layer options."""
    per_layer_factor = n_layers if layer_aggregation == "concat" else 1
    return sum(
        hidden_size if name == "pooler" else hidden_size * per_layer_factor for name in pooling
    )
