"""Query, key and value projections computed as one matmul on CPU.

An encoder's attention projects the same hidden states three times (``query``, ``key``,
``value``: three Linear layers of the same input). On CPU each of the three matmuls casts
the float32 input to bfloat16 again and is too narrow for the matrix units to run at
full speed: one matmul with the three weight matrices side by side (768 -> 2304 for
ALBERT-base) did the same work in 3.0 ms instead of 4.2 (864 token rows, one core with
AMX), about 4% of an ALBERT-base forward pass.

Transformers' attention modules call the three layers one after the other, and their code
differs across versions, so the modules are kept and only their three children are
swapped: each becomes a :class:`ProjectionSlice` of one :class:`FusedProjections`. The
first slice called on an input runs the whole matmul and keeps the other two outputs;
a slice called on the same tensor object takes its part (the modules compute the three
projections of one tensor and never write into it in between). A call on
any other input, or a second call for the same part, runs the matmul again, so a module
that calls its projections in another order or on different inputs (cross-attention)
still gets exactly what three separate layers give. The kept outputs are per thread, so
that the CPU streams (``streams.py``) can run one model copy side by side.
"""

import copy
import threading

import torch  # imported lazily by packed_linear.py, never at package import

#: Child names of the projections of one attention module, per model family: BERT,
#: RoBERTa, ALBERT, ELECTRA and most encoders, then DistilBERT.
PROJECTION_NAMES = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"))


def fuse_projections(model, dtype, linear_type):
    """Swap the query/key/value Linear children of every attention module for slices.

    Parameters
    ----------
    model : torch.nn.Module
        The inference copy, changed in place.
    dtype : torch.dtype
        The precision of the fused matmul.
    linear_type : type
        The packed Linear class (``packed_linear.PackedLinear``) that runs the matmul.

    Returns
    -------
    n_fused : int
        Attention modules whose projections now run as one matmul.
    """
    n_fused = 0
    for module in list(model.modules()):
        for names in PROJECTION_NAMES:
            linears = [getattr(module, name, None) for name in names]
            if not _fusable(linears):
                continue
            group = FusedProjections(linears, dtype, linear_type)
            for index, name in enumerate(names):
                setattr(module, name, ProjectionSlice(group, index))
            n_fused += 1
    return n_fused


def _fusable(linears):
    if not all(type(linear) is torch.nn.Linear for linear in linears):
        return False
    first = linears[0]
    return all(
        linear.in_features == first.in_features and (linear.bias is None) == (first.bias is None)
        for linear in linears
    )


class FusedProjections:
    """One packed matmul for several Linear layers of the same input.

    Parameters
    ----------
    linears : list of torch.nn.Linear
        Same ``in_features``, all with a bias or all without; kept (not copied), so that
        the packing can be rebuilt when the model is deep-copied.
    dtype : torch.dtype
    linear_type : type
        Called as ``linear_type(torch.nn.Linear, dtype)`` on the stacked layer.
    """

    def __init__(self, linears, dtype, linear_type):
        self.sources = list(linears)
        self.dtype = dtype
        self.linear_type = linear_type
        self.widths = [linear.out_features for linear in self.sources]
        self.packed = linear_type(_stacked(self.sources), dtype)
        # The stacked float32 weights are not kept (they would double the projections'
        # memory): a deep copy packs its own from the copied sources.
        self.packed.source = None
        self._kept = threading.local()

    def output(self, index, inputs):
        """The output of layer ``index`` on ``inputs``."""
        kept = self._kept
        if getattr(kept, "inputs", None) is not inputs or index in kept.taken:
            kept.inputs, kept.taken = inputs, set()
            kept.parts = torch.split(self.packed(inputs), self.widths, dim=-1)
        kept.taken.add(index)
        part = kept.parts[index]
        if len(kept.taken) == len(self.widths):  # every part handed out: hold nothing
            kept.inputs = kept.parts = None
        return part

    def __deepcopy__(self, memo):
        return type(self)(copy.deepcopy(self.sources, memo), self.dtype, self.linear_type)


def _stacked(linears):
    """A float32 Linear whose output is the concatenated outputs of ``linears``."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    stacked = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=linears[0].bias is not None)
    stacked.weight = torch.nn.Parameter(weight, requires_grad=False)
    if stacked.bias is not None:
        bias = torch.cat([linear.bias.detach() for linear in linears])
        stacked.bias = torch.nn.Parameter(bias, requires_grad=False)
    return stacked


class ProjectionSlice(torch.nn.Module):
    """Stands for one Linear layer of a :class:`FusedProjections` group."""

    def __init__(self, group, index):
        super().__init__()
        self.group = group
        self.index = index

    def forward(self, inputs):
        return self.group.output(self.index, inputs)

    def __deepcopy__(self, memo):
        return type(self)(copy.deepcopy(self.group, memo), self.index)

    def extra_repr(self):
        source = self.group.sources[self.index]
        return (
            f"{source.in_features}, {source.out_features}, part {self.index + 1} of "
            f"{len(self.group.widths)}, dtype={self.group.dtype}"
        )
