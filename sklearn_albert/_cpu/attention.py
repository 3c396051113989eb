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

The same text, the same vector: by default (``SKLEARN_ALBERT_CPU_BATCH_INVARIANT``, read at
each call, unset or 1) a text's attention does not depend on what it is batched with. A
text of ``n`` tokens in a batch padded to ``w`` sums its attention over ``w`` keys, ``w - n``
of them masked: the masked keys weigh exactly 0, but the matmul and softmax kernels sum in
an order that depends on the number of keys (a bfloat16 text of 15 tokens alone and in a
batch of 44 differed by 2e-3 after one layer, 0.06 after twelve), and SDPA's blocked
kernel depends on it at every length. So up to 96 tokens attention runs as matmuls, with
the keys padded (masked) to a multiple of :data:`KEY_MULTIPLE`: there, the kernels sum a
row's keys in the same order whatever the multiple, and the extra keys add exact zeros
(measured on PyTorch 2.13, AVX512-BF16, every length up to 512 tokens in bfloat16 and
float16, up to 64 in float32). In float32, where the matmul's order changes again beyond
64 keys, the weighted sum over the values runs in blocks of :data:`FLOAT32_KEY_BLOCK` keys,
added one after the other. Past :data:`MATMUL_MAX_TOKENS` keys, where SDPA's fused kernel is about
twice as fast as the matmuls, each text runs through SDPA on its own, at its own length
rounded up to a multiple of :data:`KEY_MULTIPLE`: a width that depends on the text alone,
at which the kernel gives the same bits at 1 and 2 threads and in any batch. The cost:
the padding to 16 keys and, past 96 tokens, one SDPA call per text instead of per batch.
"""

import torch  # imported lazily by packed_linear.py, never at package import

from . import BATCH_INVARIANT_SWITCH, switched_on

#: The name under which transformers' registries know this attention.
NAME = "sklearn_albert_length_aware"

#: Longest key sequence, in tokens, that runs as plain matmuls on CPU. Measured crossover:
#: matmuls 2-2.5x faster at 20-80 tokens, 1.2x slower at 128, 2x slower at 512.
MATMUL_MAX_TOKENS = 96

#: Keyword arguments that leave the attention's arithmetic as it is. Any other one given a
#: value (a sliding window, a logit soft-cap, attention sinks, ...) sends the call to SDPA.
#: Keys are padded (masked) to a multiple of this many when attention is batch-invariant.
KEY_MULTIPLE = 16

#: In float32, the weighted sum of values over more keys than this runs in blocks of it.
FLOAT32_KEY_BLOCK = 64

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
    invariant = switched_on(BATCH_INVARIANT_SWITCH)
    short = invariant or key.shape[-2] <= MATMUL_MAX_TOKENS
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
    if invariant and key.shape[-2] > MATMUL_MAX_TOKENS:
        return _per_text_sdpa(query, key, value, attention_mask, scaling), None
    return _matmul_attention(query, key, value, attention_mask, scaling, invariant), None


def _matmul_attention(query, key, value, attention_mask, scaling, invariant=True):
    """Attention as two matmuls and a float32 softmax, (batch, tokens, heads, head_dim).

    With ``invariant``, keys are padded to :data:`KEY_MULTIPLE` and float32 value sums run
    in :data:`FLOAT32_KEY_BLOCK`-key blocks (see the module's docstring).
    """
    n_queries = query.shape[-2]
    if invariant:
        query, key, value, attention_mask = _padded(query, key, value, attention_mask)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    if invariant and value.dtype == torch.float32 and value.shape[-2] > FLOAT32_KEY_BLOCK:
        output = _blocked_matmul(weights, value, FLOAT32_KEY_BLOCK)
    else:
        output = torch.matmul(weights, value)
    return output[..., :n_queries, :].transpose(1, 2).contiguous()


def _per_text_sdpa(query, key, value, attention_mask, scaling):
    """SDPA's fused kernel run once per text, at that text's own width.

    A text's width is its last attended key rounded up to a multiple of
    :data:`KEY_MULTIPLE`: it depends on the text alone, never on the batch's longest text.
    SDPA's kernel, called on one text at a fixed width, gives the same bits whatever the
    thread count (1 or 2), the inputs' strides and whatever else the process has run
    (PyTorch 2.13, float32, bfloat16 and float16). Texts that fit in
    :data:`MATMUL_MAX_TOKENS` keys run as the padded matmuls, as they would alone. Query
    rows past a text's width come back as zeros (padding tokens, which no pooling reads).
    A mask other than padding (holes in a text, one row per query) sends the batch to the
    matmuls.
    """
    batch, n_keys = key.shape[0], key.shape[-2]
    if attention_mask is None:
        attended = torch.ones(batch, n_keys, dtype=torch.bool, device=key.device)
    elif attention_mask.dtype == torch.bool:
        attended = attention_mask.any(dim=-2).any(dim=-2)
    else:
        attended = (attention_mask > torch.finfo(attention_mask.dtype).min).any(-2).any(-2)
    attended = attended.expand(batch, n_keys)
    positions = torch.arange(1, n_keys + 1, device=key.device)
    lengths = (attended * positions).amax(dim=-1)
    if not torch.equal(attended.sum(dim=-1), lengths) or (
        attention_mask is not None
        and attention_mask.shape[-2] > 1
        and not torch.equal(attention_mask, attention_mask[..., :1, :].expand_as(attention_mask))
    ):  # not a plain padding mask (holes, or rows per query): the matmuls, which take any
        return _matmul_attention(query, key, value, attention_mask, scaling)
    lengths = lengths.tolist()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    pad = torch.nn.functional.pad
    n_queries = query.shape[-2]
    output = query.new_zeros(batch, n_queries, query.shape[1], query.shape[-1])
    for row, length in enumerate(lengths):
        width = max(KEY_MULTIPLE, -(-length // KEY_MULTIPLE) * KEY_MULTIPLE)
        # A text as long as the batch is padded with zero keys (and queries) to its width.
        # No copy otherwise: SDPA's result does not depend on its inputs' strides (the
        # matmuls' does, and _padded makes their inputs contiguous).
        q, k, v = (t[row : row + 1, :, :width] for t in (query, key, value))
        if width > n_keys:
            q, k, v = (pad(t, (0, 0, 0, width - n_keys)) for t in (q, k, v))
        # The same mask whatever the batch: none, or the text's keys then masked ones.
        mask = None
        if width != length:
            mask = (torch.arange(width, device=key.device) < length).view(1, 1, 1, width)
        if width <= MATMUL_MAX_TOKENS:
            text = _matmul_attention(q, k, v, mask, scaling)
        else:
            text = sdpa(q, k, v, attn_mask=mask, scale=scaling).transpose(1, 2)
        output[row, : min(width, n_queries)] = text[0, :n_queries]
    return output


def _padded(query, key, value, attention_mask):
    """Queries, keys and values padded with zeros to a multiple of :data:`KEY_MULTIPLE`.

    The mask hides the added keys (a mask is built when there was none: every key
    attended); the added queries' rows are computed and dropped. Queries are padded too
    because float32 matmuls of a couple of rows (a text of two tokens alone) take another
    path than those of more rows. All three come back contiguous: a float16 matmul of the
    heads' strided views (a batch with no padding to add) sums in another order than one
    of contiguous copies (4e-3 apart on ALBERT-base's vectors).
    """
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    extra_queries, extra_keys = -n_queries % KEY_MULTIPLE, -n_keys % KEY_MULTIPLE
    pad = torch.nn.functional.pad
    query = pad(query, (0, 0, 0, extra_queries)).contiguous()
    key = pad(key, (0, 0, 0, extra_keys)).contiguous()
    value = pad(value, (0, 0, 0, extra_keys)).contiguous()
    if attention_mask is None:
        if not extra_keys:
            return query, key, value, None
        attention_mask = torch.ones(1, 1, 1, n_keys, dtype=torch.bool, device=key.device)
    boolean = attention_mask.dtype == torch.bool
    hidden = False if boolean else torch.finfo(attention_mask.dtype).min
    attended = True if boolean else 0.0
    attention_mask = pad(attention_mask, (0, extra_keys), value=hidden)
    if attention_mask.shape[-2] != 1:  # one row per query: the added queries see every key
        attention_mask = pad(attention_mask, (0, 0, 0, extra_queries), value=attended)
    return query, key, value, attention_mask


def _blocked_matmul(weights, value, block):
    """``weights @ value`` summed over blocks of ``block`` keys, one after the other.

    A block of masked keys adds exact zeros, so the sum for a row is the same over any
    number of trailing masked blocks (one float32 matmul over all keys sums in an order
    that changes with their number).
    """
    output = None
    for start in range(0, value.shape[-2], block):
        part = torch.matmul(
            weights[..., start : start + block], value[..., start : start + block, :]
        )
        output = part if output is None else output.add_(part)
    return output


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
