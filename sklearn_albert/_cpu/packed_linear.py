"""Faster CPU inference: Linear layers whose weights oneDNN lays out once.

A plain ``nn.Linear`` on CPU lets the matmul library re-block its weight matrix on every
call. For the short sequences of sentence embedding (a batch is a few hundred to a few
thousand token rows) that re-blocking is a large share of each matmul: packing the
weights once made the encoder's matmuls 10-35% faster on a 2-core AVX512-BF16 machine, in
float32 and bfloat16 alike (``benchmarks/bench_encode.py`` measures the whole effect).

`inference_copy` builds the model that ``LoadedModel.model_for`` runs at reduced
precision on any device, and in float32 on CPU. It shares every parameter with the
original model (no copy of embeddings or norms) and replaces the composite tanh-GELU of
BERT-era checkpoints with PyTorch's single-kernel version of the same formula. On CPU it
swaps each ``nn.Linear`` for a :class:`PackedLinear` holding the packed weight (one extra
copy of the Linear weights, at the compute precision), runs each attention's query, key
and value projections as one matmul (``fused_projections.py``) and, in float32, the
feed-forward GELU of ALBERT and BERT layers inside the same oneDNN call. In bfloat16 the
GELU runs on its own, as exact GELU where the checkpoint uses the tanh approximation
(:func:`_swap_tanh_gelu`): oneDNN's fused GELU cost more than the matmul's own time
there. Elsewhere each Linear gets its own copy of the weights at the compute precision.

The packing uses ``torch.ops.mkldnn`` operators, which PyTorch builds use for their own
compiled CPU graphs but does not document. Each copy is probed against ``nn.Linear``
when it is built; where the operators are missing or disagree, the plain layers are kept.
On CPU the copy also runs short sequences' attention as plain matmuls
(``attention.py``). ``SKLEARN_ALBERT_CPU_PACKING=0`` in the environment turns packing and
fusion off, ``SKLEARN_ALBERT_CPU_ATTENTION=0`` that attention (models already loaded keep
their copy).
"""

import copy
import logging

import torch  # imported lazily by _loading.py, never at package import

from .._devices import cpu_has_amx
from .._threads import one_torch_thread
from . import (
    ATTENTION_SWITCH,
    BATCH_INVARIANT_SWITCH,
    ERF_GELU_SWITCH,
    PACKING_SWITCH,
    switched_on,
)
from .attention import use_length_aware_attention
from .fused_projections import fuse_projections

logger = logging.getLogger("sklearn_albert")


def inference_copy(model, dtype, *, cpu):
    """A copy of ``model`` for inference at ``dtype``, sharing its parameters.

    Parameters
    ----------
    model : torch.nn.Module
        A frozen model, in float32.
    dtype : torch.dtype
        The precision of the Linear layers.
    cpu : bool
        Whether the copy runs on CPU: then the Linear weights are packed for oneDNN
        (float32 and bfloat16) when this PyTorch build supports it, and short sequences'
        attention runs as matmuls; each behind its switch (see ``_cpu/__init__.py``).

    Returns
    -------
    copy : torch.nn.Module
        With packed Linear layers when ``cpu`` and the build allow, else with plain
        Linear layers holding their own ``dtype`` copy of the weights. A packed ALBERT
        copy comes wrapped in ``unpadded.UnpaddedAlbert``, which runs only the real
        tokens of each batch (its rows at padding positions are zeros).
    """
    # Deep-copy the module tree but not the tensors: the copy reuses every parameter.
    shared = {id(tensor): tensor for tensor in [*model.parameters(), *model.buffers()]}
    variant = copy.deepcopy(model, memo=shared)
    use_packing = cpu and dtype in (torch.float32, torch.bfloat16) and packing_works(dtype)
    if use_packing:
        fuse_projections(variant, dtype, PackedLinear)
        if dtype == torch.float32:
            _fuse_feed_forward_gelu(variant, dtype)
    if cpu and switched_on(ATTENTION_SWITCH):
        use_length_aware_attention(variant)
    _swap_tanh_gelu(variant, exact=cpu and dtype == torch.bfloat16 and switched_on(ERF_GELU_SWITCH))
    for parent in list(variant.modules()):
        if isinstance(parent, PackedLinear):
            continue  # its ``source`` Linear is what it packed
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                if use_packing:
                    setattr(parent, name, PackedLinear(child, dtype))
                elif dtype != torch.float32:
                    setattr(parent, name, _cast_linear(child, dtype))
    if use_packing:
        from .unpadded import UnpaddedAlbert, supports

        if supports(variant):
            return UnpaddedAlbert(variant)  # on real tokens only, unless switched off
    return variant


#: Modules whose forward pass is ``activation(linear(x))`` with these child names:
#: ALBERT's ``AlbertLayer.ff_chunk`` and BERT's ``BertIntermediate`` (and its copies).
FEED_FORWARD_PAIRS = {
    "AlbertLayer": ("ffn", "activation"),
    "BertIntermediate": ("dense", "intermediate_act_fn"),
    "RobertaIntermediate": ("dense", "intermediate_act_fn"),
}


def _fuse_feed_forward_gelu(model, dtype):
    """Run the feed-forward GELU inside the packed matmul of known encoder layers."""
    for module in list(model.modules()):
        names = FEED_FORWARD_PAIRS.get(type(module).__name__)
        if names is None:
            continue
        linear, activation = (getattr(module, name, None) for name in names)
        algorithm = _gelu_algorithm(activation)
        if type(linear) is torch.nn.Linear and algorithm is not None:
            setattr(module, names[0], PackedLinear(linear, dtype, gelu=algorithm))
            setattr(module, names[1], torch.nn.Identity())


def _gelu_algorithm(activation):
    """ "tanh" or "none" (exact erf) for GELU modules oneDNN can fuse, else None."""
    try:
        from transformers.activations import GELUActivation, NewGELUActivation
    except ImportError:  # pragma: no cover - every supported transformers has them
        return None
    if type(activation) is NewGELUActivation:
        return "tanh"
    if type(activation) is GELUActivation and activation.act is torch.nn.functional.gelu:
        return "none"
    if type(activation) is torch.nn.GELU:
        return activation.approximate
    return None


#: Rows per oneDNN call of a bfloat16 :class:`PackedLinear` on a CPU with AMX, so that a
#: row's result does not depend on the rows beside it. oneDNN's AMX kernels choose how to
#: block the reduction from the matrix's height and from the thread count: ALBERT-base's
#: default (bfloat16) features of a sentence embedded alone differed from the same
#: sentence's in a batch of 48 by up to 0.016. In calls of this many rows, or of half or a
#: quarter of it (:func:`call_heights`; the rows past the input are zeros), each on one
#: thread (``_threads.one_torch_thread``), a row's result depends only on the row, at any
#: position of any call, whatever the caller's thread count (tests/test_packed_linear.py).
#: On one thread, calls of 64, 128 and 256 rows give a row the same bits on every Linear
#: shape tried (those of ALBERT-base, MiniLM-L6 and BERT-large, and 312-wide layers, three
#: seeds each); 32, 96, 192 and 512 rows do not (the 3072-to-768 layer differs at each).
#: On two threads calls of 64 and more rows split the reduction of the 3072-to-768 layer,
#: and only 32-row calls kept their bits at any thread count, at half the matmul rate:
#: 545 GFLOP/s for a 768-to-3072 layer over 896 rows in 32-row calls on one thread,
#: against 1,051 in calls of 128 rows (2-core Xeon with AMX); calls of 256 rows ran 1.2x
#: faster than 128 over 1,024 rows (1,420-1,432 against 1,155-1,197 GFLOP/s on the
#: 768-to-2304 and 768-to-3072 layers).
AMX_ROWS_PER_CALL = 256

#: The fewest rows a call holds: the rows left after the full calls are rounded up to a
#: multiple of this and computed in calls of ``AMX_ROWS_PER_CALL`` halved as often as it
#: takes, so that a lone sentence of 20 tokens runs in one call of 64 rows.
AMX_SHORT_CALL_ROWS = 64


def rows_per_call(dtype):
    """Rows per oneDNN call that keep a packed Linear's rows independent, or None (any).

    ``AMX_ROWS_PER_CALL`` for bfloat16 on a CPU with AMX while batch invariance is on
    (``SKLEARN_ALBERT_CPU_BATCH_INVARIANT``, read at each call); None otherwise: the
    AVX512 kernels (float32 everywhere, bfloat16 without AMX) give each row the same bits
    at any matrix height from 8 rows (the heights the unpadded ALBERT pass uses).
    """
    if dtype != torch.bfloat16 or not switched_on(BATCH_INVARIANT_SWITCH):
        return None
    return AMX_ROWS_PER_CALL if cpu_has_amx() else None


def call_heights(n_rows, tile, *, mixed=True):
    """Rows of each oneDNN call that computes ``n_rows`` rows in calls of at most ``tile``.

    Full calls of ``tile`` rows; the rows left, rounded up to a multiple of
    :data:`AMX_SHORT_CALL_ROWS` (or of ``tile`` if smaller), in calls of ``tile`` halved
    (the longest first): with a tile of 256, 300 rows run as calls of 256 and 64 rows,
    150 as calls of 128 and 64, 20 as one call of 64 (the rows past ``n_rows`` are zeros).
    With ``mixed=False``, every call holds ``tile`` rows (for a layer whose calls of
    other heights give other bits on this CPU: ``PackedLinear``'s probe).
    """
    if not mixed:
        return [tile] * -(-int(n_rows) // tile)
    short = min(AMX_SHORT_CALL_ROWS, tile)
    full, rest = divmod(int(n_rows), tile)
    heights = [tile] * full
    rest = -(-rest // short) * short
    size = tile
    while rest:
        if size <= rest or size // 2 < short:
            heights.append(size)
            rest = max(rest - size, 0)
        else:
            size //= 2
    return heights


def packing_works(dtype):
    """Whether to pack Linear weights at ``dtype`` on CPU: allowed, and correct in this build."""
    if not switched_on(PACKING_SWITCH):
        return False
    key = str(dtype)
    if key not in _PROBED:
        _PROBED[key] = _probe(dtype)
    return _PROBED[key]


_PROBED = {}

#: ``PackedLinear.heights_agree``'s answer per layer shape, dtype, GELU and heights.
_HEIGHTS_AGREE = {}


def _probe(dtype):
    if not (
        torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    ):
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        linear = torch.nn.Linear(64, 48)
        inputs = torch.randn(3, 5, 64, generator=generator)
        with torch.inference_mode():
            expected = torch.nn.functional.linear(
                inputs.to(dtype), linear.weight.to(dtype), linear.bias.to(dtype)
            ).float()
            packed = PackedLinear(linear, dtype)(inputs).float()
            fused = PackedLinear(linear, dtype, gelu="tanh")(inputs).float()
        tolerance = 1e-4 if dtype == torch.float32 else 5e-2
        works = all(
            result.shape == reference.shape
            and bool(torch.allclose(result, reference, atol=tolerance, rtol=tolerance))
            for result, reference in [
                (packed, expected),
                (fused, torch.nn.functional.gelu(expected, approximate="tanh")),
            ]
        )
    except (RuntimeError, AttributeError, TypeError) as error:
        logger.debug("Packed CPU Linear layers unavailable (%s); using plain ones.", error)
        return False
    if not works:
        logger.debug("Packed CPU Linear layers disagree with nn.Linear; using plain ones.")
    return works


def _cast_linear(linear, dtype):
    """A Linear with its own ``dtype`` copy of the weights (the original stays float32)."""
    cast = copy.copy(linear)
    cast._parameters = {
        name: None if value is None else type(value)(value.detach().to(dtype), requires_grad=False)
        for name, value in linear._parameters.items()
    }
    return cast


def _swap_tanh_gelu(model, *, exact=False):
    """Replace transformers' composite tanh-GELU with a one-kernel GELU.

    ``gelu_new`` (ALBERT, GPT-2 era) is written as five tensor operations; under
    autocast its ``pow`` runs in float32 and drags the rest with it. PyTorch's
    ``GELU(approximate="tanh")`` computes the same formula in one pass.

    With ``exact=True`` (bfloat16 on CPU) every tanh-GELU, PyTorch's own included, becomes
    the exact (erf) GELU it approximates, because PyTorch's CPU tanh is slow: on 864 x 3072
    bfloat16 activations, tanh-GELU took 5.4 ms against 1.3 ms for exact GELU (3.5 ms when
    fused into oneDNN's matmul). The two functions differ by at most 4.7e-4 (at x = -2.70,
    where GELU is -0.0094); in bfloat16 they give the same value for 73% of inputs drawn
    from a normal distribution of scale 3, and neighbouring values for the rest.
    """
    from transformers.activations import NewGELUActivation

    replacement = "none" if exact else "tanh"
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            tanh_gelu = type(child) is NewGELUActivation or (
                exact and type(child) is torch.nn.GELU and child.approximate == "tanh"
            )
            if tanh_gelu:
                setattr(parent, name, torch.nn.GELU(approximate=replacement))


class PackedLinear(torch.nn.Module):
    """A frozen ``nn.Linear`` whose weight oneDNN has laid out once, for CPU inference.

    Parameters
    ----------
    linear : torch.nn.Linear
        The layer to run; kept (not copied) so that the packing can be rebuilt.
    dtype : torch.dtype
        Precision of the matmul; inputs are cast to it, as autocast would.
    gelu : {None, "tanh", "none"}, default=None
        Apply GELU (tanh approximation, or exact with "none") to the output inside the
        same oneDNN call.

    Notes
    -----
    Where :func:`rows_per_call` says so (bfloat16 on a CPU with AMX), the rows run in
    calls of that many rows on one thread (the last call shorter where it can be, see
    :func:`call_heights`), so that a row's result does not depend on its neighbours nor
    on the caller's thread count. Parallelism then comes from the CPU
    streams (``streams.py``), which run whole batches side by side on one thread each.
    """

    def __init__(self, linear, dtype, gelu=None):
        super().__init__()
        self.source = linear
        self.dtype = dtype
        self.gelu = gelu
        self._pack()

    def _pack(self):
        weight = self.source.weight.detach().to(self.dtype)
        self.out_features, self.in_features = weight.shape  # the source may be dropped
        bias = self.source.bias
        self._packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self._bias = None if bias is None else bias.detach().to(self.dtype)

    def forward(self, inputs):
        inputs = inputs.to(self.dtype)
        tile = rows_per_call(self.dtype)
        if tile is None:
            return self._matmul(inputs.contiguous())
        rows = inputs.reshape(-1, inputs.shape[-1]).contiguous()
        heights = call_heights(len(rows), tile, mixed=self.heights_agree(tile))
        outputs, start = [], 0
        with one_torch_thread():
            for height in heights:
                part = rows[start : start + height]  # a view: no copy of the input
                if len(part) < height:  # only the last call is filled up with zero rows
                    filled = torch.cat([part, part.new_zeros(height - len(part), part.shape[1])])
                    outputs.append(self._matmul(filled)[: len(part)])
                else:
                    outputs.append(self._matmul(part))
                start += height
        # One call, the common case of a short batch, needs no copy into a joined result.
        joined = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return joined.reshape(*inputs.shape[:-1], joined.shape[-1])

    def heights_agree(self, tile):
        """Whether calls of the heights :func:`call_heights` mixes give a row the same bits.

        Checked once per process for each layer shape (oneDNN picks its kernels by shape,
        not by the weights' values), on one thread: 256 random rows through calls of
        ``tile`` rows and through calls of each shorter height. On the CPUs measured they
        agree (``AMX_ROWS_PER_CALL``); where they do not, the layer runs every call at
        ``tile`` rows, which keeps each row's bits at any position (slower for short
        inputs), and says so in the ``sklearn_albert`` log.
        """
        short = min(AMX_SHORT_CALL_ROWS, tile)
        key = (self.in_features, self.out_features, str(self.dtype))
        key += (self.gelu, tile, short)
        agree = _HEIGHTS_AGREE.get(key)
        if agree is None:
            agree = _HEIGHTS_AGREE.setdefault(key, self._probe_heights(tile, short))
        return agree

    def _probe_heights(self, tile, short):
        generator = torch.Generator().manual_seed(0)
        rows = torch.randn(tile, self.in_features, generator=generator).to(self.dtype)
        heights = [tile >> shift for shift in range(1, tile.bit_length()) if tile >> shift >= short]
        with torch.inference_mode(), one_torch_thread():
            reference = self._matmul(rows)
            for height in heights:
                if not torch.equal(
                    torch.cat([self._matmul(p) for p in rows.split(height)]), reference
                ):
                    logger.info(
                        "bfloat16 Linear %d->%d: calls of %d rows give other bits than calls "
                        "of %d on this CPU; every call of this shape holds %d rows.",
                        self.in_features,
                        self.out_features,
                        height,
                        tile,
                        tile,
                    )
                    return False
        return True

    def _matmul(self, inputs):
        return torch.ops.mkldnn._linear_pointwise(
            inputs,
            self._packed_weight,
            self._bias,
            "none" if self.gelu is None else "gelu",
            [],
            "" if self.gelu is None else self.gelu,
        )

    def __deepcopy__(self, memo):
        # oneDNN's opaque tensors cannot be copied; pack the copied source again.
        return type(self)(copy.deepcopy(self.source, memo), self.dtype, self.gelu)

    def extra_repr(self):
        gelu = "" if self.gelu is None else f", gelu={self.gelu!r}"
        return f"{self.in_features}, {self.out_features}, dtype={self.dtype}{gelu}"
