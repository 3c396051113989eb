"""Batches: length-sorted groups of texts within a text and a token budget, and their padding.

Texts are sorted by token count (longest first, so that an out-of-memory error shows up on
the first batch) and cut into batches that hold at most ``batch_size`` texts and at most
``max_tokens_per_batch`` padded tokens; each batch is padded only to its own longest text.
The encode loop (``_engine.py``) and fine-tuning (``_finetuning.py``) both batch this way.
A runner that computes only the real tokens (ALBERT on CPU, ``_cpu/unpadded.py``) gets
batches of about equal real tokens instead (:func:`plan_real_token_batches`).
"""

import numpy as np

#: Padded tokens per batch when ``max_tokens_per_batch="auto"``.
AUTO_TOKEN_BUDGET = {"cpu": 4096, "cuda": 65536, "mps": 16384}


def add_special_tokens(content, prefix, suffix, max_length):
    """``prefix + content + suffix``, cropping ``content`` to fit ``max_length`` tokens."""
    room = max(max_length - len(prefix) - len(suffix), 0)
    return [*prefix, *content[:room], *suffix]


def plan_batches(lengths, *, batch_size, max_tokens, batch_cost=None):
    """Group text indices into length-sorted batches within both budgets.

    Parameters
    ----------
    lengths : array-like of int
        Token count of each text.
    batch_size : int
        At most this many texts per batch.
    max_tokens : int
        At most this many padded tokens (texts x longest text) per batch; a single text
        longer than the budget still gets a batch of its own.
    batch_cost : int, default=None
        None fills each batch up to the budgets. An integer cuts the sorted texts where
        padded tokens plus ``batch_cost`` tokens per batch sum least (see
        :func:`_least_padding_cuts`): a call of a few dozen texts of mixed lengths then
        gets several narrow batches instead of one wide one.

    Returns
    -------
    batches : list of ndarray of int
        Indices into ``lengths``, longest texts first.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    if batch_cost is not None:
        cuts = _least_padding_cuts(lengths[order], batch_size, max_tokens, batch_cost)
        return [order[start:stop] for start, stop in zip(cuts[:-1], cuts[1:])]
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(batch_size, max_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


def _least_padding_cuts(widths, batch_size, max_tokens, batch_cost):
    """Batch boundaries in ``widths`` (sorted longest first) of least padded tokens plus cost.

    A batch costs ``batch_cost`` plus its texts times its longest text: on a CPU, where
    every padded token is computed, ``batch_cost`` stands for what a batch costs beyond its
    tokens (the Python and the operator launches of one forward pass). Dynamic programming
    over the cut points, each batch within ``batch_size`` texts and ``max_tokens`` padded
    tokens (one text alone may exceed them); among equal costs, the longer batch wins, so
    texts of one length still fill whole batches.

    Returns
    -------
    cuts : list of int
        ``0``, each boundary, then ``len(widths)``.
    """
    widths = np.maximum(np.asarray(widths, dtype=np.int64), 1)
    n = len(widths)
    best = np.zeros(n + 1)
    start_of = np.zeros(n + 1, dtype=np.intp)
    for stop in range(1, n + 1):
        sizes = np.arange(min(batch_size, stop), 0, -1)  # longest batch first
        starts = stop - sizes
        padded = sizes * widths[starts]
        cost = best[starts] + batch_cost + padded
        cost[(padded > max_tokens) & (sizes > 1)] = np.inf
        pick = int(np.argmin(cost))
        best[stop], start_of[stop] = cost[pick], starts[pick]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start_of[cuts[-1]]))
    return cuts[::-1]


#: Real tokens per forward pass aimed at when a runner computes only real tokens
#: (``_cpu/unpadded.py``): passes of a few hundred rows cost more per token, and much
#: larger ones leave the L2 cache.
PASS_TOKENS = 1024

#: Fewest real tokens per stream for which such a call is split across the CPU streams: a
#: smaller call runs as one pass on all the threads.
STREAM_MIN_TOKENS = 128


def plan_real_token_batches(lengths, *, batch_size, max_tokens, streams):
    """Cut texts into batches of about equal real tokens, as many as the streams (or more).

    Texts are sorted longest first and filled into batches of at most a token target
    (the call's tokens over a batch count of about :data:`PASS_TOKENS` each, rounded up to
    a multiple of ``streams``), ``batch_size`` texts and ``max_tokens`` padded tokens. When
    the budgets make a count that is not a multiple of ``streams``, the target is lowered
    a little at a time until it is (a few tries; the last batches may then leave a stream
    idle).

    Parameters
    ----------
    lengths : array-like of int
        Token count of each text.
    batch_size : int
        At most this many texts per batch.
    max_tokens : int
        At most this many padded tokens (texts x longest text) per batch, the memory the
        padded hidden states take; one text alone may exceed it.
    streams : int
        The CPU streams a call runs on. A call of fewer than :data:`STREAM_MIN_TOKENS` real
        tokens per stream runs as one batch (within the budgets).

    Returns
    -------
    batches : list of ndarray of int
        Indices into ``lengths``, longest texts first; every index exactly once.
    """
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    if len(lengths) == 0:
        return []
    order = np.argsort(-lengths, kind="stable")
    widths = lengths[order].tolist()
    total = sum(widths)
    streams = max(1, int(streams))
    if total < streams * STREAM_MIN_TOKENS:
        streams = 1
    count = -(-max(-(-total // PASS_TOKENS), 1) // streams) * streams
    target = total / count
    for _ in range(_RETARGETS):
        cuts = _greedy_cuts(widths, target, batch_size, max_tokens)
        if (len(cuts) - 1) % streams == 0 or len(cuts) - 1 >= len(widths):
            break
        target *= 0.95
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


#: Times :func:`plan_real_token_batches` lowers its token target to reach a multiple of
#: the streams.
_RETARGETS = 8


def _greedy_cuts(widths, target, batch_size, max_tokens):
    """Boundaries of batches filled in order up to ``target`` real tokens and the budgets."""
    cuts, tokens = [0], 0
    for position, width in enumerate(widths):
        size = position - cuts[-1]
        if size and (
            size >= batch_size
            or tokens + width > target
            or (size + 1) * widths[cuts[-1]] > max_tokens
        ):
            cuts.append(position)
            tokens = 0
        tokens += width
    cuts.append(len(widths))
    return cuts


def collate(ids, batch, pad_id, pin_memory=False):
    """Pad the token ids of ``batch`` into ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    rows = [ids[i] for i in batch]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        input_ids[position, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[position, : len(row)] = 1
    if pin_memory:
        input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
    return input_ids, attention_mask
