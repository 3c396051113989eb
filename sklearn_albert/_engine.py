"""The encode pipeline, written once: texts in, per-text results out, in input order.

tokenize -> special tokens and windows -> length-sorted token-budget batches -> forward
(one place that runs the model under ``inference_mode`` and autocast, with the one
out-of-memory backoff) -> reduce on the device (pool, or keep token vectors) -> reassemble
long texts -> results by input index.

``AlbertVectorizer.transform``, ``transform_tokens``, ``AlbertClassifier``'s predictions, the
keyword extractor and the command line all run through here, with the
:class:`~sklearn_albert._settings.EncodeSettings` their estimator resolved in ``fit``.

Texts are tokenized once, without special tokens and without truncation, so that the
number of cropped texts is known exactly and long texts can be cut into windows instead.
They go through in groups of :data:`ENCODE_GROUP`, sorted and batched within each group;
on CUDA a worker tokenizes the next group, and pads and pins the next batch, while the GPU
computes. On CPU everything stays on the calling thread: a worker would only take cores
from the matmuls.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ._batching import add_special_tokens, collate, plan_batches
from ._devices import resolve_dtype
from ._long_texts import merge_windows, split_into_windows
from ._pooling import Encodings, pool_hidden_states

logger = logging.getLogger("sklearn_albert")

#: Texts per call of the tokenizer.
TOKENIZE_CHUNK = 4096

#: Texts tokenized, sorted and encoded together. Sorting within groups this large pads as
#: little as sorting everything; on CUDA the next group is tokenized during this one's encoding.
ENCODE_GROUP = 16384

#: Substrings of the messages devices raise when memory runs out: CUDA's, MPS's and the
#: CPU allocator's ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ...").
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


# ---------------------------------------------------------------------- tokenizing


def tokenize(tokenizer, texts):
    """Token ids of each text without special tokens and without truncation.

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


def tokenized_groups(tokenizer, texts, *, overlap, group_size=None):
    """Consecutive groups of ``texts`` with their token ids, tokenized one group ahead.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    texts : list of str
    overlap : bool
        Tokenize the next group in a worker thread while the caller encodes this one
        (fast tokenizers release the GIL). Worth it on a GPU only.
    group_size : int, default=None
        Texts per group; None means :data:`ENCODE_GROUP`.

    Yields
    ------
    start : int
        Position in ``texts`` of the group's first text.
    content_ids : list of list of int
        As :func:`tokenize` returns them for ``texts[start : start + len(content_ids)]``.
    """
    group_size = group_size or ENCODE_GROUP
    starts = range(0, len(texts), group_size)
    if not overlap or len(starts) < 2:
        for start in starts:
            yield start, tokenize(tokenizer, texts[start : start + group_size])
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sklearn_albert_tokenize") as pool:
        pending = pool.submit(tokenize, tokenizer, texts[: starts[0] + group_size])
        try:
            for position, start in enumerate(starts):
                content = pending.result()
                if position + 1 < len(starts):
                    following = starts[position + 1]
                    pending = pool.submit(
                        tokenize, tokenizer, texts[following : following + group_size]
                    )
                yield start, content
        finally:
            pending.cancel()


class Windows(NamedTuple):
    """The token-id sequences to encode for a group of texts."""

    ids: list  # one list of ids per window, special tokens included
    owner: np.ndarray  # (n_windows,) index of the text each window belongs to
    n_windows: np.ndarray  # (n_texts,) windows per text
    n_tokens: np.ndarray  # (n_texts,) tokens the text is encoded with (all windows' text)
    truncated: np.ndarray  # (n_texts,) bool: tokens past max_length were dropped


def cut_windows(content, loaded, settings, *, long_text=None):
    """One window per text (cropped to ``settings.max_length``), or several for long texts.

    Parameters
    ----------
    content : list of list of int
        Token ids from :func:`tokenize`.
    loaded : LoadedModel
        Its special tokens go around every window.
    settings : EncodeSettings
    long_text : {"truncate", "chunk"}, default=None
        Overrides ``settings.long_text`` (token vectors are always truncated).

    Returns
    -------
    windows : Windows
    """
    prefix, suffix = loaded.special_prefix, loaded.special_suffix
    max_length = settings.max_length
    room = max(max_length - len(prefix) - len(suffix), 0)
    lengths = np.fromiter((len(ids) for ids in content), dtype=np.intp, count=len(content))
    if (long_text or settings.long_text) == "chunk":
        ids, owner = [], []
        for index, text_ids in enumerate(content):
            for window in split_into_windows(text_ids, room, settings.stride):
                ids.append([*prefix, *window, *suffix])
                owner.append(index)
        owner = np.asarray(owner, dtype=np.intp)
        n_tokens = lengths + len(prefix) + len(suffix)
        truncated = np.zeros(len(content), dtype=bool)
    else:
        ids = [add_special_tokens(text_ids, prefix, suffix, max_length) for text_ids in content]
        owner = np.arange(len(content))
        n_tokens = np.minimum(lengths, room) + len(prefix) + len(suffix)
        truncated = lengths > room
    n_windows = np.bincount(owner, minlength=len(content))
    return Windows(ids, owner, n_windows, n_tokens.astype(np.int64), truncated)


def token_counts(loaded, texts):
    """Tokens each whole text takes, special tokens included (tokenizes only).

    Returns
    -------
    counts : ndarray of shape (len(texts),), int64
        A text is truncated (or chunked) when its count exceeds ``max_length``.
    """
    specials = len(loaded.special_prefix) + len(loaded.special_suffix)
    content = tokenize(loaded.tokenizer, texts)
    return np.fromiter((len(ids) + specials for ids in content), dtype=np.int64, count=len(texts))


# ---------------------------------------------------------------------- the forward pass


def runner_for(loaded, settings):
    """The module that runs ``settings.compute_dtype`` on the loaded checkpoint.

    Not for ``"int8"``: its calibrated encoder is fitted state the estimator holds.
    """
    import torch

    return loaded.model_for(resolve_dtype(settings.compute_dtype, torch.device(settings.device)))


def forward(runner, input_ids, attention_mask, compute_dtype, step):
    """One forward pass and what the caller keeps of it, as numpy arrays.

    Parameters
    ----------
    runner : callable
        A Hugging Face encoder, or a drop-in such as the static int8 encoder, called as
        ``runner(input_ids=..., attention_mask=..., output_hidden_states=True)``.
    input_ids, attention_mask : torch.Tensor of shape (batch, seq_len), on the device
    compute_dtype : torch.dtype or "int8"
        float16 and bfloat16 run under autocast; anything else as the runner is.
    step : callable
        ``step(runner, input_ids, attention_mask)`` -> tuple of tensors (or None
        entries): runs the runner and reduces its output on the device, inside this
        inference context, e.g. :func:`pool_summaries`.

    Returns
    -------
    results : tuple of ndarray or None
    """
    import torch

    use_autocast = compute_dtype in (torch.float16, torch.bfloat16)
    with (
        torch.inference_mode(),
        torch.autocast(
            device_type=input_ids.device.type,
            dtype=compute_dtype if use_autocast else torch.float32,
            enabled=use_autocast,
        ),
    ):
        results = step(runner, input_ids, attention_mask)
        return tuple(
            None if result is None else result.to(torch.float32).cpu().numpy() for result in results
        )


def _hidden_states(runner, input_ids, attention_mask):
    return runner(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)


def pool_summaries(runner, input_ids, attention_mask):
    """Every hidden state's cls, mean and max, and the pooler output, for one batch.

    A runner that pools by itself (the static int8 encoder pools inside its runtime,
    instead of copying every hidden state out) does so through its ``pooled`` method.
    """
    if hasattr(runner, "pooled"):
        return runner.pooled(input_ids, attention_mask)
    output = _hidden_states(runner, input_ids, attention_mask)
    return (
        pool_hidden_states(output.hidden_states, attention_mask),
        getattr(output, "pooler_output", None),
    )


def token_vectors(layers, layer_aggregation):
    """A step keeping the token vectors of ``layers``, averaged or concatenated."""

    def step(runner, input_ids, attention_mask):
        import torch

        output = _hidden_states(runner, input_ids, attention_mask)
        selected = [output.hidden_states[layer].to(torch.float32) for layer in layers]
        if layer_aggregation == "mean":
            return (torch.stack(selected).mean(dim=0),)
        return (torch.cat(selected, dim=-1),)

    return step


def is_out_of_memory(error):
    """Whether ``error`` is a device out-of-memory error worth a smaller retry."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    message = str(error).lower()
    return isinstance(error, oom_type) or any(part in message for part in OUT_OF_MEMORY_MESSAGES)


def run_batches(loaded, runner, ids, settings, step):
    """Run ``ids`` through ``runner`` in length-sorted, token-budget batches.

    On out-of-memory a batch is halved and each half retried, down to one text.

    Parameters
    ----------
    loaded : LoadedModel
    runner : callable
        See :func:`forward`.
    ids : list of list of int
        Token ids per sequence, special tokens included.
    settings : EncodeSettings
        Its ``batch_size``, ``max_tokens``, ``compute_dtype`` and ``device`` apply.
    step : callable
        See :func:`forward`.

    Yields
    ------
    indices : ndarray of int
        Positions in ``ids`` of the sequences in this batch.
    results : tuple of ndarray or None
        ``step``'s results for those sequences, rows in the order of ``indices``.
    """
    import torch

    device = loaded.device
    compute_dtype = resolve_dtype(settings.compute_dtype, device)
    on_cuda = device.type == "cuda"
    batches = plan_batches(
        [len(row) for row in ids], batch_size=settings.batch_size, max_tokens=settings.max_tokens
    )

    def prepare(batch):
        return batch, collate(ids, batch, loaded.pad_id, pin_memory=on_cuda)

    def run(batch, tensors):
        input_ids, attention_mask = tensors
        return forward(
            runner,
            input_ids.to(device, non_blocking=True),
            attention_mask.to(device, non_blocking=True),
            compute_dtype,
            step,
        )

    # On CUDA the next batch is padded (and pinned) by a worker while the GPU computes.
    prefetcher = ThreadPoolExecutor(max_workers=1) if on_cuda else None
    try:
        pending = _prefetch(prefetcher, prepare, batches, 0)
        for position in range(len(batches)):
            batch, tensors = pending.result() if prefetcher else pending
            pending = _prefetch(prefetcher, prepare, batches, position + 1)
            yield from _with_backoff(run, prepare, batch, tensors, device)
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


def _with_backoff(run, prepare, batch, tensors, device):
    """Run one batch; on out-of-memory, halve it and retry each half."""
    try:
        result = run(batch, tensors)
    except Exception as error:
        if len(batch) == 1 or not is_out_of_memory(error):
            raise
        result = None
        logger.warning(
            "Out of memory on a batch of %d texts x %d tokens; retrying as two batches of "
            "about %d. Lower batch_size or max_tokens_per_batch to avoid the retry.",
            len(batch),
            tensors[0].shape[1],
            len(batch) // 2,
        )
    if result is not None:
        yield batch, result
        return
    del tensors
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
    half = len(batch) // 2
    for part in (batch[:half], batch[half:]):
        _, part_tensors = prepare(part)
        yield from _with_backoff(run, prepare, part, part_tensors, device)


# ---------------------------------------------------------------------- what callers ask for


def encode_summaries(loaded, runner, texts, settings, *, progress=None):
    """Encode texts into per-text summaries, handing each text back once it is complete.

    Parameters
    ----------
    loaded : LoadedModel
    runner : callable
        See :func:`forward`.
    texts : list of str
    settings : EncodeSettings
    progress : tqdm-like, default=None
        Advanced by the number of texts finished.

    Yields
    ------
    indices : ndarray of int
        Positions in ``texts``.
    encodings : Encodings
        Rows in the order of ``indices``, every hidden state kept.
    """
    overlap = loaded.device.type == "cuda"
    for start, content in tokenized_groups(loaded.tokenizer, texts, overlap=overlap):
        windows = cut_windows(content, loaded, settings)
        for indices, encodings in _reassemble(loaded, runner, windows, settings):
            if progress is not None:
                progress.update(len(indices))
            yield indices + start, encodings


def _reassemble(loaded, runner, windows, settings):
    """Encode windows; merge the windows of chunked texts once all of theirs are done."""
    partial = {}  # text index -> (summaries, pooler, n_tokens) of its windows so far
    for batch, (summaries, pooler) in run_batches(
        loaded, runner, windows.ids, settings, pool_summaries
    ):
        owners = windows.owner[batch]
        whole = windows.n_windows[owners] == 1
        rows = [
            (int(owners[i]), summaries[i], None if pooler is None else pooler[i])
            for i in np.flatnonzero(whole)
        ]
        for i in np.flatnonzero(~whole):
            text = int(owners[i])
            parts = partial.setdefault(text, [])
            parts.append(
                (summaries[i], None if pooler is None else pooler[i], len(windows.ids[batch[i]]))
            )
            if len(parts) == windows.n_windows[text]:
                merged_summary, merged_pooler = merge_windows(
                    np.stack([part[0] for part in parts]),
                    None if pooler is None else np.stack([part[1] for part in parts]),
                    np.array([part[2] for part in parts]),
                    settings.chunk_aggregation,
                )
                rows.append((text, merged_summary, merged_pooler))
                del partial[text]
        if not rows:
            continue
        indices = np.array([row[0] for row in rows], dtype=np.intp)
        yield (
            indices,
            Encodings(
                summaries=np.stack([row[1] for row in rows]),
                pooler=None if pooler is None else np.stack([row[2] for row in rows]),
                n_tokens=windows.n_tokens[indices],
                truncated=windows.truncated[indices],
            ),
        )


def encode_token_states(loaded, runner, content, settings):
    """The token vectors of each text's single (truncated) window, special tokens included.

    Parameters
    ----------
    loaded : LoadedModel
    runner : callable
    content : list of list of int
        Token ids without special tokens.
    settings : EncodeSettings
        Its ``layers`` and ``layer_aggregation`` choose the vectors.

    Yields
    ------
    indices : ndarray of int
        Positions in ``content``.
    states : list of ndarray of shape (n_tokens, n_features), float32
    """
    windows = cut_windows(content, loaded, settings, long_text="truncate")
    step = token_vectors(settings.layers, settings.layer_aggregation)
    for batch, (states,) in run_batches(loaded, runner, windows.ids, settings, step):
        yield batch, [states[row, : len(windows.ids[index])] for row, index in enumerate(batch)]
