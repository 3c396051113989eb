"""ALBERT on CPU without padding: every Linear and normalisation on the real tokens only.

A batch of texts is a padded rectangle: each text is filled with pad tokens up to the
batch's longest, and a transformer computes every one of them. Sorting by length keeps
that waste small in a large call, but a server's call of a few dozen texts of mixed
lengths must choose between few wide batches (much padding) and many narrow ones (a
forward pass of a few hundred token rows costs more per token than one of a thousand).
:class:`UnpaddedAlbert` takes neither: it packs the batch's real tokens into one matrix
(``tokens x hidden``), runs the embedding projection, every Linear, GELU, residual and
LayerNorm on it, and pads only for attention, in groups of texts whose lengths round up
to the same multiple of :data:`~sklearn_albert._cpu.attention.KEY_MULTIPLE` (each group
padded to its own longest text). The engine then cuts a call into a few passes of about
``_batching.PASS_TOKENS`` real tokens, as many as the CPU streams (or a multiple), of
equal tokens each (``_batching.plan_real_token_batches``).

The same text, the same vector: the outputs are bit-identical to the padded model's (the
tests compare them). A Linear's, LayerNorm's and GELU's row does not depend on the other
rows of its matrix, and attention runs through the same batch-invariant
:func:`~sklearn_albert._cpu.attention.length_aware_attention`, whose result for a text
does not depend on how far its keys are padded. The hidden states come back in the padded
layout (zeros at the padding), so pooling, token vectors and every caller are unchanged.

It wraps only the inference copies that ``packed_linear.inference_copy`` builds for CPU,
of ALBERT checkpoints whose attention runs as length-aware attention
(:func:`supports`); any other model keeps the padded forward pass.
``SKLEARN_ALBERT_CPU_UNPADDED=0`` turns it off (read at each call: the copy then runs
padded batches, planned as for any other model).

Measured (2-core AVX512-BF16 AMD EPYC, ALBERT-base in bfloat16, 1,000 SST-2 sentences,
``benchmarks/bench_call_sizes.py``): see ``benchmarks/README.md``.
"""

import torch  # imported lazily by packed_linear.py, never at package import
from transformers.modeling_outputs import BaseModelOutputWithPooling

from . import UNPADDED_SWITCH, switched_on
from .attention import KEY_MULTIPLE, NAME, length_aware_attention

#: The packed token matrix is filled with zero rows up to a height of this many
#: significant bits (at least :data:`MIN_ROW_STEP` rows apart): at most 1/16 more rows
#: from 128 tokens, 16 heights per doubling. oneDNN builds a kernel for each matrix
#: height it meets and keeps it in a cache of up to 1,024 per thread; with heights of
#: every token count, a server's inference worker kept building kernels and grew by
#: 329 MB in 30 s of overload, against 126 MB with these heights
#: (``benchmarks/bench_serve.py``).
HEIGHT_BITS = 5
MIN_ROW_STEP = 8


def packed_height(n_tokens):
    """The rows a pass of ``n_tokens`` packed tokens runs on (tokens, then zero rows)."""
    step = max(MIN_ROW_STEP, 1 << max(0, int(n_tokens).bit_length() - HEIGHT_BITS))
    return -(-int(n_tokens) // step) * step


def supports(model):
    """Whether ``model`` (an inference copy) is an ALBERT this module can run unpadded."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "AlbertModel"
        and config is not None
        and getattr(config, "_attn_implementation", None) == NAME
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not model.training
        and all(hasattr(model, name) for name in ("embeddings", "encoder", "pooler", "config"))
        and hasattr(model.encoder, "embedding_hidden_mapping_in")
        and hasattr(model.encoder, "albert_layer_groups")
    )


class UnpaddedAlbert(torch.nn.Module):
    """An ALBERT inference copy run on the real tokens of each batch (see the module).

    Called as the model is (``input_ids``, ``attention_mask``,
    ``output_hidden_states``); returns what it returns: every hidden state (embedding
    projection first) in the padded layout, the last one, and the pooler output. Rows at
    padding positions are zeros (the model computes values there that no caller reads).
    A batch without padding (a single text), a mask that is not left-aligned padding
    (holes in a text), or the switch turned off, runs the wrapped model as it is. Any
    other attribute is the wrapped model's.

    Parameters
    ----------
    model : transformers.AlbertModel
        An inference copy for which :func:`supports` is True.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def __getattr__(self, name):
        # Everything else (config, get_input_embeddings, encoder, ...) is the model's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    @property
    def unpadded(self):
        """Whether batches run unpadded now: the engine then plans them by real tokens."""
        return switched_on(UNPADDED_SWITCH)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=True):
        model = self.model
        n_texts, width = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(dim=1)
        positions = torch.arange(width, device=input_ids.device)
        aligned = torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None])
        padded = bool((lengths < width).any())
        if not (aligned and padded and bool((lengths > 0).all()) and self.unpadded):
            return model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=output_hidden_states,
            )
        rows = attention_mask.reshape(-1).bool().nonzero().squeeze(1)  # packed -> padded
        embedded = model.embeddings(input_ids=input_ids)
        hidden = embedded.reshape(n_texts * width, -1).index_select(0, rows)
        spare = packed_height(len(rows)) - len(rows)  # a few matrix heights, not all
        if spare:
            hidden = torch.cat((hidden, hidden.new_zeros(spare, hidden.shape[1])))
        encoder = model.encoder
        hidden = encoder.embedding_hidden_mapping_in(hidden)
        groups = _attention_groups(lengths, width)
        states = [_padded_layout(hidden, rows, n_texts, width)]
        config = model.config
        for index in range(config.num_hidden_layers):
            group = int(index / (config.num_hidden_layers / config.num_hidden_groups))
            for layer in encoder.albert_layer_groups[group].albert_layers:
                hidden = _albert_layer(layer, hidden, groups, len(rows))
            states.append(_padded_layout(hidden, rows, n_texts, width))
        last = states[-1]
        pooled = None
        if model.pooler is not None:
            pooled = model.pooler_activation(model.pooler(last[:, 0]))
        return BaseModelOutputWithPooling(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=tuple(states) if output_hidden_states else None,
        )


def _attention_groups(lengths, width):
    """Texts grouped by length rounded up to ``KEY_MULTIPLE``, for attention.

    Returns
    -------
    groups : list of (int, int, Tensor, Tensor, Tensor)
        Per group: its number of texts, its width (its longest text), the packed row of
        each of its ``(text, position)`` cells (row 0 for padding cells), which cells are
        tokens (``texts x width``), and the flat positions of those cells.
    """
    starts = torch.cumsum(lengths, 0) - lengths
    rounded = (lengths + KEY_MULTIPLE - 1) // KEY_MULTIPLE
    groups = []
    for size in torch.unique(rounded).tolist():
        texts = (rounded == size).nonzero().squeeze(1)
        group_lengths = lengths[texts]
        group_width = min(int(group_lengths.max()), width)
        positions = torch.arange(group_width, device=lengths.device)
        valid = positions[None, :] < group_lengths[:, None]
        cells = torch.where(valid, starts[texts][:, None] + positions[None, :], 0)
        tokens = valid.reshape(-1).nonzero().squeeze(1)
        groups.append((len(texts), group_width, cells.reshape(-1), valid, tokens))
    return groups


def _albert_layer(layer, hidden, groups, n_tokens):
    """One ``AlbertLayer`` on packed tokens: the same modules, in the same order.

    ``hidden`` holds the ``n_tokens`` token rows, then zero rows up to
    :func:`packed_height`; those stay out of attention (their context is zeros).
    """
    attention = layer.attention
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    # Three calls on one tensor: fused projections compute them in one matmul.
    query, key, value = attention.query(hidden), attention.key(hidden), attention.value(hidden)
    context = None
    for n_texts, width, cells, valid, tokens in groups:

        def padded(projection, cells=cells, n_texts=n_texts, width=width):
            grid = projection.index_select(0, cells).view(n_texts, width, heads, head_size)
            return grid.transpose(1, 2)

        output, _ = length_aware_attention(
            attention,
            padded(query),
            padded(key),
            padded(value),
            valid[:, None, None, :],
            scaling=attention.scaling,
        )
        output = output.reshape(n_texts * width, heads * head_size)
        if context is None:
            context = output.new_empty(hidden.shape[0], heads * head_size)
            context[n_tokens:] = 0
        context.index_copy_(0, cells.index_select(0, tokens), output.index_select(0, tokens))
    attended = attention.LayerNorm(hidden + attention.dense(context))
    feed_forward = layer.ffn_output(layer.activation(layer.ffn(attended)))
    return layer.full_layer_layer_norm(feed_forward + attended)


def _padded_layout(hidden, rows, n_texts, width):
    """Packed token rows back in a ``(texts, width, hidden)`` tensor, zeros at padding."""
    padded = hidden.new_zeros(n_texts * width, hidden.shape[-1])
    padded.index_copy_(0, rows, hidden[: len(rows)])
    return padded.view(n_texts, width, -1)
