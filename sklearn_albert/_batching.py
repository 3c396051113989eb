"""Batches: length-sorted groups of texts within a text and a token budget, and their padding.

Texts are sorted by token count (longest first, so that an out-of-memory error shows up on
the first batch) and cut into batches that hold at most ``batch_size`` texts and at most
``max_tokens_per_batch`` padded tokens; each batch is padded only to its own longest text.
The encode loop (``_engine.py``) and fine-tuning (``_finetuning.py``) both batch this way.
"""

import numpy as np

#: Padded tokens per batch when ``max_tokens_per_batch="auto"``.
AUTO_TOKEN_BUDGET = {"cpu": 4096, "cuda": 65536, "mps": 16384}


def add_special_tokens(content, prefix, suffix, max_length):
    """``prefix + content + suffix``, cropping ``content`` to fit ``max_length`` tokens."""
    room = max(max_length - len(prefix) - len(suffix), 0)
    return [*prefix, *content[:room], *suffix]


def plan_batches(lengths, *, batch_size, max_tokens):
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

    Returns
    -------
    batches : list of ndarray of int
        Indices into ``lengths``, longest texts first.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(batch_size, max_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


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
