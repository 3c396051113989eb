"""What one namespace's entries look like: the row layout, and float16 rounding.

A text's entry is one row of ``n_columns`` vectors of ``dim`` values: the cls, mean and max
of every hidden state, summary-major (all cls first), then the pooler output. Stores keep
them column by column, so that a lookup reads only the (summary, hidden state) columns a
candidate asks for. Float16 storage rounds each value to nearest (ties to even); the engine
applies the same rounding where it encodes (:func:`rounded_batch`), so that a transform's
output never depends on what the cache held.
"""

import sys
from typing import NamedTuple

import numpy as np

from .._pooling import Encodings

#: The precisions vectors may be kept in (see the module docstring for the error bound).
STORAGE_DTYPES = ("float16", "float32")


class Layout(NamedTuple):
    """The shape of one namespace's entries: one column per (summary, hidden state)."""

    n_hidden_states: int
    dim: int
    has_pooler: bool
    storage_dtype: str

    @classmethod
    def of(cls, encodings, storage_dtype):
        _, _, n_hidden_states, dim = encodings.summaries.shape
        return cls(int(n_hidden_states), int(dim), encodings.pooler is not None, storage_dtype)

    @property
    def dtype(self):
        return np.dtype(self.storage_dtype)

    @property
    def n_columns(self):
        return 3 * self.n_hidden_states + int(self.has_pooler)

    @property
    def row_bytes(self):
        return self.n_columns * self.dim * self.dtype.itemsize

    def columns_for(self, layers, wanted):
        """Column indices of the wanted summaries of ``layers`` (then the pooler's)."""
        summary_ids, with_pooler = wanted
        columns = [s * self.n_hidden_states + layer for s in summary_ids for layer in layers]
        if self.has_pooler and with_pooler:
            columns.append(3 * self.n_hidden_states)
        return columns


#: The names ``lookup(kinds=...)`` accepts: the three summaries, in their order, and the pooler.
KINDS = ("cls", "mean", "max", "pooler")


def wanted_columns(kinds):
    """``(summary indices, pooler wanted)`` for a ``kinds`` argument of ``lookup``."""
    if kinds is None:
        return (0, 1, 2), True
    kinds = set(kinds)
    if not kinds <= set(KINDS):
        raise ValueError(f"Got kinds={sorted(kinds)!r} but expected a subset of {KINDS}.")
    return tuple(i for i, kind in enumerate(KINDS[:3]) if kind in kinds), "pooler" in kinds


def check_storage_dtype(storage_dtype):
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(
            f"Got storage_dtype={storage_dtype!r} but expected one of {STORAGE_DTYPES}."
        )
    return np.dtype(storage_dtype)


#: Below this many values a numpy conversion is as quick as handing the array to torch.
TORCH_CAST_MIN_SIZE = 4096


def torch_for(*arrays):
    """torch, when it is loaded and the arrays are large and writable enough to hand over."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    for array in arrays:
        if array.size < TORCH_CAST_MIN_SIZE or not array.flags.writeable:
            return None
    return torch


def cast(values, dtype):
    """``values.astype(dtype)``, through torch's vectorised kernels when torch is loaded.

    numpy converts to and from float16 one value at a time: about 1.8 ms for the summaries
    of 32 ALBERT-base texts, against 0.15 ms in torch. Both round to nearest even (values
    beyond float16's range become inf, NaN stays NaN), so the results are the same bits.
    """
    dtype = np.dtype(dtype)
    if values.dtype == dtype:
        return values
    torch = torch_for(values)
    if torch is None:
        with np.errstate(over="ignore"):  # values beyond the range become inf, as in torch
            return values.astype(dtype)
    source = torch.from_numpy(np.ascontiguousarray(values))
    return source.to(getattr(torch, dtype.name)).numpy()


def cast_into(target, source):
    """``target[...] = source`` with a dtype conversion, through torch when it is loaded."""
    torch = torch_for(target, source)
    if torch is None or not (target.flags.c_contiguous and source.flags.c_contiguous):
        target[...] = source
        return
    torch.from_numpy(target).copy_(torch.from_numpy(source))


def fits_float16(columns):
    """Per text (axis 1), whether none of its float16 values is inf or NaN.

    Read from the exponent bits (all ones for inf and NaN): three times quicker than
    ``np.isfinite`` on float16.
    """
    exponent = np.uint16(0x7C00)
    return ~((columns.view(np.uint16) & exponent) == exponent).any(axis=(0, 2))


def storable(encodings, dtype):
    """``(parts, fits)``: the vectors in ``dtype``, and which rows fit.

    ``parts`` are (n_columns, n, dim) arrays whose concatenation is the block's columns:
    the summaries' (a view, without a copy, when they come from :func:`rounded_batch`),
    then the pooler's, if any.
    """
    n, _, n_hidden_states, dim = encodings.summaries.shape
    summaries = cast(np.moveaxis(encodings.summaries, 0, 2), dtype)
    parts = [summaries.reshape(3 * n_hidden_states, n, dim)]
    if encodings.pooler is not None:
        parts.append(cast(encodings.pooler, dtype)[None])
    fits = np.ones(n, dtype=bool)
    for part in parts:
        if dtype == np.float16:
            fits &= fits_float16(part)
        else:
            fits &= np.isfinite(part).all(axis=(0, 2))  # NaN fails too
    return parts, fits


def joined(parts, rows):
    """The ``rows`` of the columns split in ``parts``, as one (n_columns, k, dim) array."""
    if len(parts) == 1:
        return parts[0][:, rows]
    return np.concatenate([part[:, rows] for part in parts], axis=0)


def rounded_as_stored(values, storage_dtype="float16"):
    """``values`` as the cache keeps them: rounded through ``storage_dtype``, row by row.

    The one definition of the rounding: the engine applies it where it encodes (on the
    GPU, or on the CPU stream of the batch, through :func:`rounded_batch`).

    Parameters
    ----------
    values : torch.Tensor or ndarray, float32
        Rows along the first axis; a tensor may live on any device.
    storage_dtype : {"float16", "float32"}, default="float16"
        The precision given to :meth:`MemoryCache.store`; "float32" changes nothing.

    Returns
    -------
    rounded : torch.Tensor or ndarray (as ``values``), float32
        A new array: each value rounded to the nearest ``storage_dtype`` value (ties to
        even) and back, except the rows holding a value ``storage_dtype`` cannot represent
        (beyond its range, or NaN), which stay unrounded since the cache does not keep them.
    """
    import torch

    dtype = check_storage_dtype(storage_dtype)
    as_numpy = isinstance(values, np.ndarray)
    if as_numpy:
        values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    values = values.to(torch.float32)
    if dtype == np.float32:
        rounded = values.clone()
    else:
        rounded = values.to(getattr(torch, dtype.name)).to(torch.float32)
        unfit = ~torch.isfinite(rounded).flatten(1).all(dim=1)
        if bool(unfit.any()):
            rounded[unfit] = values[unfit]
    return rounded.numpy() if as_numpy else rounded


def rounded_batch(summaries, pooler, storage_dtype="float16"):
    """One batch's summaries and pooler output as the cache keeps them, ready to store.

    What the engine hands over for a batch it has just encoded (on the GPU, or on the
    CPU stream of the batch). When every value fits float16, the arrays are float16
    (exactly the values :func:`rounded_as_stored` gives, at half the size), and
    ``summaries`` lies in memory as the cache's columns, (3, n_hidden_states, n, dim),
    seen as (n, 3, n_hidden_states, dim): :meth:`MemoryCache.store` then copies them into
    a block without a conversion or a transposition. Otherwise each array is
    :func:`rounded_as_stored` (float32).

    Parameters
    ----------
    summaries : torch.Tensor of shape (n, 3, n_hidden_states, dim), float32
    pooler : torch.Tensor of shape (n, dim), float32, or None
    storage_dtype : {"float16", "float32"}, default="float16"

    Returns
    -------
    summaries, pooler : torch.Tensor (or None for no pooler)
        float16 as described, or float32.
    """
    import torch

    if check_storage_dtype(storage_dtype) == np.float16:
        n, n_summaries, n_states, dim = summaries.shape
        columns = torch.empty(
            (n_summaries, n_states, n, dim), dtype=torch.float16, device=summaries.device
        )
        columns.copy_(summaries.permute(1, 2, 0, 3))
        half_pooler = None if pooler is None else pooler.to(torch.float16)
        # inf where a value is beyond float16's range, NaN where it was NaN
        if bool(torch.isfinite(columns).all()) and (
            half_pooler is None or bool(torch.isfinite(half_pooler).all())
        ):
            return columns.permute(2, 0, 1, 3), half_pooler
    return (
        rounded_as_stored(summaries, storage_dtype),
        None if pooler is None else rounded_as_stored(pooler, storage_dtype),
    )


def empty_encodings(n_layers, dim=0, has_pooler=False):
    return Encodings(
        np.empty((0, 3, n_layers, dim), dtype=np.float32),
        np.empty((0, dim), dtype=np.float32) if has_pooler else None,
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=bool),
    )


def assemble(layout, layers, wanted, gathered, n_tokens, truncated):
    """Encodings from the columns gathered for :meth:`Layout.columns_for`.

    ``summaries`` is a (n, 3, n_layers, dim) view of a (3, n_layers, n, dim) array: the
    float32 conversion is then one contiguous pass per summary, and what callers index (a
    summary and some layers of every text) stays cheap. Summaries (and a pooler) not in
    ``wanted`` are left unset, so that a lookup converts only what the caller will read.
    """
    summary_ids, with_pooler = wanted
    n_layers, n_found = len(layers), gathered.shape[1]
    full = np.empty((3, n_layers, n_found, layout.dim), dtype=np.float32)
    for position, summary in enumerate(summary_ids):
        cast_into(full[summary], gathered[position * n_layers : (position + 1) * n_layers])
    pooler = None
    if layout.has_pooler:
        pooler = cast(gathered[-1], np.float32) if with_pooler else np.empty_like(full[0, 0])
    return Encodings(np.moveaxis(full, 2, 0), pooler, n_tokens, truncated)


def groups(block_ids):
    """``(block id, positions)`` pairs: the positions in ``block_ids`` of each block."""
    order = np.argsort(block_ids, kind="stable")
    ids, starts = np.unique(block_ids[order], return_index=True)
    return zip(ids.tolist(), np.split(order, starts[1:]))


def rows_of(encodings, positions):
    """The encodings of the texts at ``positions`` (a view when they are all of them)."""
    if len(positions) == len(encodings.n_tokens):
        return encodings
    return Encodings(
        encodings.summaries[positions],
        None if encodings.pooler is None else encodings.pooler[positions],
        encodings.n_tokens[positions],
        encodings.truncated[positions],
    )
