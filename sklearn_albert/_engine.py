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
computes. On CPU, torch encoders run whole batches side by side, one per worker thread of
one intra-op thread each (``_cpu/streams.py``), and the caller's thread collects them.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ._batching import add_special_tokens, collate, plan_batches, plan_real_token_batches
from ._cache import rounded_as_stored, rounded_batch
from ._devices import resolve_dtype
from ._long_texts import merge_windows, split_into_windows
from ._pooling import Encodings, pool_hidden_states

logger = logging.getLogger("sklearn_albert")

#: Texts per call of the tokenizer.
TOKENIZE_CHUNK = 4096

#: Texts tokenized, sorted and encoded together. Sorting within groups this large pads as
#: little as sorting everything; on CUDA the next group is tokenized during this one's encoding.
ENCODE_GROUP = 16384

#: On a CPU, what one batch costs beyond its padded tokens, in tokens (the Python and the
#: operator launches of a forward pass: about what ALBERT-base spends on 30 tokens). A CPU
#: computes every padded token, so batches are cut where padding plus this is least
#: (``plan_batches``): a served batch of 54 SST-2 sentences, cut as 32 + 22 by
#: ``batch_size``, was padded to 1.55x its tokens; cut this way, 1.10x, and encoded 1.3x
#: more texts per CPU second (24 against 32). Large calls, sorted, pad little either way.
CPU_BATCH_COST = 32

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

    Every window starts with the model's leading special tokens and the prompt's tokens
    (``settings.prompt_ids``), and ends with its trailing special tokens.

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
    # A prompt's tokens lead every window, right after the model's own leading tokens.
    prefix = [*loaded.special_prefix, *settings.prompt_ids]
    suffix = loaded.special_suffix
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


def token_counts(loaded, texts, *, tally=None, prompt_ids=()):
    """Tokens each whole text takes, special tokens included (tokenizes only).

    Parameters
    ----------
    loaded : LoadedModel
    texts : list of str
    tally : UnknownTokenTally, default=None
        Also counts the unknown tokens among the ids (``_unknown_tokens.py``).
    prompt_ids : tuple of int, default=()
        A prompt's token ids, counted with every text (as :func:`cut_windows` adds them).

    Returns
    -------
    counts : ndarray of shape (len(texts),), int64
        A text is truncated (or chunked) when its count exceeds ``max_length``.
    """
    specials = len(loaded.special_prefix) + len(prompt_ids) + len(loaded.special_suffix)
    content = tokenize(loaded.tokenizer, texts)
    if tally is not None:
        tally.add(content)
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
        float32, except float16 results (those of :func:`rounded_summaries`), which stay
        float16, in their own memory layout.
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
        return tuple(None if result is None else _to_numpy(result) for result in results)


def _to_numpy(result):
    import torch

    if result.dtype != torch.float16:
        result = result.to(torch.float32)
    return result.cpu().numpy()


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


def rounded_summaries(round_to):
    """:func:`pool_summaries`, its results rounded as the embedding cache keeps them.

    Parameters
    ----------
    round_to : {"float16"} or None
        The precision the embedding cache keeps; None leaves the results as they are.

    Returns
    -------
    step : callable
        A step for :func:`forward`, its results passed through ``_cache.rounded_batch``:
        float16 in the cache's layout when they fit (else float32, rounded). Done here,
        the rounding and the transposition run on the GPU, or on the CPU stream that
        encoded the batch, instead of on the thread collecting the results.
    """
    if round_to is None:
        return pool_summaries

    def step(runner, input_ids, attention_mask):
        summaries, pooler = pool_summaries(runner, input_ids, attention_mask)
        return rounded_batch(summaries, pooler, round_to)

    return step


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

    A runner that computes only the real tokens (``runner.unpadded``, ALBERT on CPU:
    ``_cpu/unpadded.py``) gets batches of about equal real tokens, a multiple of the CPU
    streams; any other, batches cut where padding plus a per-batch cost is least
    (``_batching.plan_batches``). On out-of-memory a batch is halved and each half
    retried, down to one text.

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
    lengths = [len(row) for row in ids]
    if device.type == "cpu" and getattr(runner, "unpadded", False):  # read at each call
        batches = plan_real_token_batches(
            lengths,
            batch_size=settings.batch_size,
            max_tokens=settings.max_tokens,
            streams=_cpu_streams(runner, device, len(ids))[0],
        )
    else:
        batches = plan_batches(
            lengths,
            batch_size=settings.batch_size,
            max_tokens=settings.max_tokens,
            batch_cost=CPU_BATCH_COST if device.type == "cpu" else None,
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

    streams, threads_per_stream = _cpu_streams(runner, device, len(batches))
    if threads_per_stream is not None:
        yield from _run_on_streams(run, prepare, batches, device, streams, threads_per_stream)
        return
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


def _cpu_streams(runner, device, n_batches):
    """``(streams, threads_per_stream)`` for a CPU run, or ``(1, None)``: run inline.

    A torch encoder runs whole batches side by side (``_cpu/streams.py``). A runner with
    streams of its own (the static int8 encoder's OpenVINO streams) gets one worker thread
    per stream, each handing it a whole batch, so that its streams never wait for the
    caller handling the last batch.
    """
    import torch

    if device.type != "cpu" or n_batches < 2:
        return 1, None
    if not isinstance(runner, torch.nn.Module):
        if not getattr(runner, "runs_own_streams", False):
            return 1, None
        return max(1, min(int(runner.streams), n_batches)), 1
    from ._cpu.streams import stream_layout
    from ._threads import threads_for_streams

    streams, threads_per_stream = stream_layout(threads_for_streams(), n_batches)
    return (streams, threads_per_stream) if streams > 1 else (1, None)


def _run_on_streams(run, prepare, batches, device, streams, threads_per_stream):
    """Run ``batches`` on ``streams`` worker threads, one batch each; yield them in order.

    At most ``streams + 1`` batches are in flight, so that a worker never waits for the
    caller to take a result, and the results held are bounded. Each batch keeps its own
    out-of-memory backoff. If the caller stops early, batches not started are dropped.
    Each worker runs torch at ``threads_per_stream`` intra-op threads; the calling thread,
    which only collects the results (and caches them), runs its own torch operations on
    one thread until the run ends: with a team of its own it would spin against the
    workers for the cores (a float16 conversion of one batch's summaries took 4.7 ms
    instead of 0.2). ``torch.set_num_threads`` sets the calling thread's count only.
    """
    from collections import deque

    import torch

    from ._cpu.streams import stream_pool

    pool = stream_pool(streams, threads_per_stream)

    def one_batch(batch):
        _, tensors = prepare(batch)
        return list(_with_backoff(run, prepare, batch, tensors, device))

    pending = deque()
    callers_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for batch in batches:
            pending.append(pool.submit(one_batch, batch))
            if len(pending) > streams:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        torch.set_num_threads(callers_threads)
        for future in pending:
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()  # wait: no worker still runs this call's batches


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


def encode_summaries(loaded, runner, texts, settings, *, progress=None, round_to=None, tally=None):
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
    round_to : {"float16"} or None, default=None
        Round the summaries as the embedding cache keeps them (see
        :func:`rounded_summaries`; merged long texts are rounded after merging), so that
        features built from them equal the features the cache gives later.
    tally : UnknownTokenTally, default=None
        Counts the unknown tokens among the texts' ids as they are tokenized.

    Yields
    ------
    indices : ndarray of int
        Positions in ``texts``.
    encodings : Encodings
        Rows in the order of ``indices``, every hidden state kept.
    """
    overlap = loaded.device.type == "cuda"
    for start, content in tokenized_groups(loaded.tokenizer, texts, overlap=overlap):
        if tally is not None:
            tally.add(content)
        windows = cut_windows(content, loaded, settings)
        for indices, encodings in _reassemble(loaded, runner, windows, settings, round_to):
            if progress is not None:
                progress.update(len(indices))
            yield indices + start, encodings


def _reassemble(loaded, runner, windows, settings, round_to):
    """Encode windows; merge the windows of chunked texts once all of theirs are done."""
    partial = {}  # text index -> (summaries, pooler, n_tokens) of its windows so far
    step = rounded_summaries(round_to)
    for batch, (summaries, pooler) in run_batches(loaded, runner, windows.ids, settings, step):
        owners = windows.owner[batch]
        whole = windows.n_windows[owners] == 1
        merged = []  # (text, summaries, pooler) of chunked texts whose last window is here
        for i in np.flatnonzero(~whole):
            text = int(owners[i])
            parts = partial.setdefault(text, [])
            parts.append(  # float32: the merged mean of float16 windows is rounded again
                (
                    summaries[i].astype(np.float32),
                    None if pooler is None else pooler[i].astype(np.float32),
                    len(windows.ids[batch[i]]),
                )
            )
            if len(parts) == windows.n_windows[text]:
                merged_summary, merged_pooler = merge_windows(
                    np.stack([part[0] for part in parts]),
                    None if pooler is None else np.stack([part[1] for part in parts]),
                    np.array([part[2] for part in parts]),
                    settings.chunk_aggregation,
                )
                if round_to is not None:  # a mean of rounded windows needs rounding again
                    merged_summary, merged_pooler = _rounded_rows(
                        round_to, merged_summary, merged_pooler
                    )
                merged.append((text, merged_summary, merged_pooler))
                del partial[text]
        rows = np.flatnonzero(whole)
        indices = np.concatenate([owners[rows], [text for text, _, _ in merged]]).astype(np.intp)
        if not len(indices):
            continue
        kept_summaries = _rows_then(summaries, rows, [summary for _, summary, _ in merged])
        kept_pooler = None
        if pooler is not None:
            kept_pooler = _rows_then(
                pooler, rows, [merged_pooler for _, _, merged_pooler in merged]
            )
        yield (
            indices,
            Encodings(
                summaries=kept_summaries,
                pooler=kept_pooler,
                n_tokens=windows.n_tokens[indices],
                truncated=windows.truncated[indices],
            ),
        )


def _rounded_rows(round_to, *rows):
    """One text's merged arrays, each rounded as the cache keeps a row."""
    return tuple(None if row is None else rounded_as_stored(row[None], round_to)[0] for row in rows)


def _rows_then(values, rows, extra):
    """``values[rows]`` followed by the ``extra`` rows; ``values`` itself (no copy) when
    ``rows`` is every row in order and there is nothing extra, as in most batches."""
    if not extra and len(rows) == len(values):
        return values
    kept = values[rows]
    return np.concatenate([kept, np.stack(extra)]) if extra else kept


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
