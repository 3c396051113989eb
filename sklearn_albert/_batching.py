"""The encode loop: tokenize once, length-sorted token-budget batches, results by input index.

Texts are tokenized without padding, sorted by token count (longest first, so that an
out-of-memory error shows up on the first batch) and cut into batches that hold at most
``batch_size`` texts and at most ``max_tokens_per_batch`` padded tokens. Each batch is
padded only to its own longest text, run under ``torch.inference_mode`` (and autocast for
reduced precision), pooled on the device, and handed back with the input indices it holds,
so callers can write rows straight into their output without keeping token states.

Texts arrive in groups of :data:`ENCODE_GROUP` (:func:`tokenized_groups`), sorted and
batched within each group; on CUDA a worker tokenizes the next group, and pads and pins the
next batch, while the GPU computes.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._pooling import pool_hidden_states

logger = logging.getLogger("sklearn_albert")

#: Padded tokens per batch when ``max_tokens_per_batch="auto"``.
AUTO_TOKEN_BUDGET = {"cpu": 4096, "cuda": 65536, "mps": 16384}

TOKENIZE_CHUNK = 4096


def tokenize(tokenizer, texts):
    """Token ids of each text without special tokens and without truncation.

    Truncation (or chunking) happens afterwards, on ids, so that every text is tokenized
    exactly once and the number of cropped texts is known exactly.

    Returns
    -------
    content_ids : list of list of int
    """
    content_ids = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        content_ids.extend(
            tokenizer(
                texts[start : start + TOKENIZE_CHUNK],
                add_special_tokens=False,
                truncation=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )["input_ids"]
        )
    return content_ids


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


def run_model(model, input_ids, attention_mask, compute_dtype):
    """One forward pass, pooled on the device: (summaries, pooler or None)."""
    import torch

    device = input_ids.device
    use_autocast = compute_dtype in (torch.float16, torch.bfloat16)
    with (
        torch.inference_mode(),
        torch.autocast(
            device_type=device.type,
            dtype=compute_dtype if use_autocast else torch.float32,
            enabled=use_autocast,
        ),
    ):
        output = model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        summaries = pool_hidden_states(output.hidden_states, attention_mask)
        pooler = getattr(output, "pooler_output", None)
        if pooler is not None:
            pooler = pooler.to(torch.float32)
    return summaries, pooler


def is_out_of_memory(error):
    """Whether ``error`` is a device out-of-memory error worth a smaller retry."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(error, oom_type) or "out of memory" in str(error).lower()


#: Texts tokenized, sorted and encoded together. Sorting within groups this large pads as
#: little as sorting everything; on CUDA the next group is tokenized during this one's encoding.
ENCODE_GROUP = 16384


def tokenized_groups(tokenizer, texts, *, overlap, group_size=None):
    """Consecutive groups of ``texts`` with their token ids, tokenized one group ahead.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    texts : list of str
    overlap : bool
        Tokenize the next group in a worker thread while the caller encodes this one
        (fast tokenizers release the GIL). Worth it on a GPU; on a CPU the worker would
        only take cores from the matmuls.
    group_size : int, default=None
        Texts per group; None means :data:`ENCODE_GROUP`.

    Yields
    ------
    group : list of str
    content_ids : list of list of int
        As :func:`tokenize` returns them for ``group``.
    """
    group_size = group_size or ENCODE_GROUP
    groups = [texts[start : start + group_size] for start in range(0, len(texts), group_size)]
    if not overlap or len(groups) < 2:
        for group in groups:
            yield group, tokenize(tokenizer, group)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sklearn_albert_tokenize") as pool:
        pending = pool.submit(tokenize, tokenizer, groups[0])
        try:
            for position, group in enumerate(groups):
                content = pending.result()
                if position + 1 < len(groups):
                    pending = pool.submit(tokenize, tokenizer, groups[position + 1])
                yield group, content
        finally:
            pending.cancel()


def encode(loaded, ids, *, batch_size, max_tokens, compute_dtype):
    """Encode token ids batch by batch.

    Parameters
    ----------
    loaded : LoadedModel
    ids : list of list of int
        Token ids per text, as returned by :func:`tokenize`.
    batch_size, max_tokens : int
        Budgets, see :func:`plan_batches`.
    compute_dtype : torch.dtype

    Yields
    ------
    indices : ndarray of int
        Positions in ``ids`` of the texts in this batch.
    summaries : ndarray of shape (len(indices), 3, n_layers, dim), float32
    pooler : ndarray of shape (len(indices), dim) or None
    """
    import torch

    device = loaded.device
    pad_id = loaded.tokenizer.pad_token_id or 0
    on_cuda = device.type == "cuda"
    batches = plan_batches([len(row) for row in ids], batch_size=batch_size, max_tokens=max_tokens)

    def prepare(batch):
        return batch, collate(ids, batch, pad_id, pin_memory=on_cuda)

    # On CUDA the next batch is padded (and pinned) by a worker while the GPU computes;
    # on CPU the worker would only compete with the matmuls for the same cores.
    prefetcher = ThreadPoolExecutor(max_workers=1) if on_cuda else None
    try:
        pending = _prefetch(prefetcher, prepare, batches, 0)
        for position in range(len(batches)):
            batch, tensors = pending.result() if prefetcher else pending
            pending = _prefetch(prefetcher, prepare, batches, position + 1)
            yield from _encode_with_backoff(loaded, batch, tensors, compute_dtype, ids, pad_id)
    finally:
        if prefetcher is not None:
            prefetcher.shutdown(wait=True, cancel_futures=True)
        if on_cuda:
            torch.cuda.empty_cache()


def _prefetch(prefetcher, prepare, batches, position):
    if position >= len(batches):
        return None
    if prefetcher is None:
        return prepare(batches[position])
    return prefetcher.submit(prepare, batches[position])


def _encode_with_backoff(loaded, batch, tensors, compute_dtype, ids, pad_id):
    """Run one batch; on out-of-memory, halve it and retry each half."""
    device = loaded.device
    input_ids, attention_mask = tensors
    try:
        summaries, pooler = run_model(
            loaded.model_for(compute_dtype),
            input_ids.to(device, non_blocking=True),
            attention_mask.to(device, non_blocking=True),
            compute_dtype,
        )
        result = (
            batch,
            summaries.cpu().numpy(),
            None if pooler is None else pooler.cpu().numpy(),
        )
    except Exception as error:
        if len(batch) == 1 or not is_out_of_memory(error):
            raise
        result = None
        logger.warning(
            "Out of memory on a batch of %d texts x %d tokens; retrying as two batches of "
            "about %d. Lower batch_size or max_tokens_per_batch to avoid the retry.",
            len(batch),
            input_ids.shape[1],
            len(batch) // 2,
        )
    if result is not None:
        yield result
        return
    _release_device_memory(device)
    half = len(batch) // 2
    for part in (batch[:half], batch[half:]):
        part_tensors = collate(ids, part, pad_id, pin_memory=device.type == "cuda")
        yield from _encode_with_backoff(loaded, part, part_tensors, compute_dtype, ids, pad_id)


def _release_device_memory(device):
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
