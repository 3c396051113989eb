"""Attention that picks the faster kernel for the sequence length at hand.

PyTorch's fused attention kernel for CPU (``scaled_dot_product_attention``, flash attention
in blocks) is built for long sequences. Sentence embedding runs batches of tens of tokens,
where two batched matmuls and a float32 softmax do the same work 2-2.5x faster (bfloat16,
12 heads of 64, batches of 16-64 texts of 20-80 tokens, 2-core AVX512-BF16 machine); from
about 128 tokens the fused kernel wins again. :func:`length_aware_attention` runs the
matmuls for short sequences on CPU and hands everything else to transformers' own SDPA
function, so the result is the same attention either way, up to rounding.

It plugs into transformers' attention registry (``AttentionInterface``) under
:data:`NAME`, with SDPA's mask format, and is only switched on in the inference copies
that ``LoadedModel.model_for`` builds, for checkpoints that dispatch their attention
through that registry and were loaded with SDPA. ``SKLEARN_ALBERT_CPU_ATTENTION=0`` turns it
off.
"""

import torch  # imported lazily by packed_linear.py, never at package import

#: The name under which transformers' registries know this attention.
NAME = "sklearn_albert_length_aware"

#: Longest key sequence, in tokens, that runs as plain matmuls on CPU. Measured crossover:
#: matmuls 2-2.5x faster at 20-80 tokens, 1.2x slower at 128, 2x slower at 512.
MATMUL_MAX_TOKENS = 96

#: Keyword arguments that leave the attention's arithmetic as it is. Any other one given a
#: value (a sliding window, a logit soft-cap, attention sinks, ...) sends the call to SDPA.
NEUTRAL_KWARGS = frozenset(
    {"position_ids", "output_hidden_states", "output_attentions", "encoder_hidden_states"}
)


def length_aware_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs
):
    """Attention for one layer, in transformers' ``AttentionInterface`` signature.

    Parameters
    ----------
    module : torch.nn.Module
        The attention layer; only one whose ``is_causal`` is False runs as matmuls.
    query, key, value : torch.Tensor of shape (batch, heads, tokens, head_dim)
    attention_mask : torch.Tensor or None
        SDPA's mask: boolean (True = attend) or additive float, broadcastable to
        (batch, heads, query tokens, key tokens); None attends to every token.
    scaling : float, default=None
        Score scale; None is ``head_dim ** -0.5``.
    dropout : float, default=0.0
        Attention dropout; any non-zero value goes to the SDPA path.

    Returns
    -------
    output : torch.Tensor of shape (batch, tokens, heads, head_dim)
    weights : None
    """
    short = key.shape[-2] <= MATMUL_MAX_TOKENS
    # A layer that does not say it attends both ways is left to transformers' SDPA path,
    # which treats it as causal.
    causal = getattr(module, "is_causal", True)
    plain = all(value is None or name in NEUTRAL_KWARGS for name, value in kwargs.items())
    if query.device.type != "cpu" or not short or dropout or causal or not plain:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    output = torch.matmul(weights, value)
    return output.transpose(1, 2).contiguous(), None


def use_length_aware_attention(model):
    """Switch ``model`` (an inference copy) to :func:`length_aware_attention` where it can.

    Only checkpoints that dispatch attention through transformers' registry and were set to
    SDPA are switched, so a user's explicit choice (eager, flash attention) stands.

    Returns
    -------
    switched : bool
    """
    config = getattr(model, "config", None)
    if (
        config is None
        or getattr(config, "_attn_implementation", None) != "sdpa"
        or not getattr(type(model), "_supports_attention_backend", False)
        or not _register()
    ):
        return False
    config._attn_implementation = NAME
    return True


def _register():
    """Make :data:`NAME` known to transformers' attention and mask registries."""
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        from transformers.modeling_utils import AttentionInterface
    except ImportError:  # transformers too old for pluggable attention: keep SDPA
        return False
    AttentionInterface.register(NAME, length_aware_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return True
