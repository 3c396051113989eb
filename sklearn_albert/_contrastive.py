"""Contrastive adaptation: tune an encoder so that texts of one class embed close together.

The idea is SetFit's (Tunstall et al., 2022, "Efficient Few-Shot Learning Without
Prompts"): with a few labelled texts per class, fine-tune the encoder body on pairs of
texts, pulling the pooled embeddings of a same-class pair together (cosine 1) and pushing a
different-class pair apart (cosine 0), then fit any classifier on the adapted embeddings.
SetFit feeds a loader of pairs and encodes both texts of every pair. Here each batch of
texts is encoded once and every pair inside it counts: ``B`` texts give ``B (B - 1) / 2``
pairs for one forward pass. Batches are class-balanced (every class spread evenly over the
epoch), and the loss weighs the mean over same-class pairs and the mean over
different-class pairs equally, as SetFit's sampler balances positive and negative pairs.

Data flows one way: token ids (``_engine.cut_windows``) -> class-balanced batches ->
encoder (autocast at the estimator's precision) -> the vectorizer's own pooling, in torch ->
cosine of every in-batch pair -> loss -> backward -> ``_finetuning.apply_gradients``. The
estimator (``_vectorizer.py``) prepares the ids and labels and keeps the adapted encoder.

A batch that runs out of memory is not made smaller (every pair shares one loss: a smaller
batch is another loss). The step is retried in chunks with gradient caching, the idea of
Gao et al. (2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup"): encode the chunks without gradients, take the loss's gradient with respect to
the batch's embeddings, then encode each chunk again with gradients and backpropagate its
share. The loss and gradients are the whole batch's, for about one more forward pass (with
dropout, each chunk replays its own masks in the second pass; they are other draws than
one pass over the batch would make, so only a model without dropout matches the unchunked
step up to rounding).

This module imports torch at import time; the estimator imports it lazily, in ``fit``.
"""

import copy
import logging
import math
import time

import numpy as np
import torch
from torch import nn

from ._batching import collate
from ._engine import is_out_of_memory
from ._finetuning import apply_gradients, finite_loss, make_optimization, progress_bar
from ._pooling import SUMMARY_INDEX, pool_hidden_states

logger = logging.getLogger("sklearn_albert")

#: Fraction of all optimizer steps over which the learning rate rises from 0 to its peak.
WARMUP = 0.1

#: AdamW's weight decay for adaptation (biases and normalisation weights are not decayed).
WEIGHT_DECAY = 0.01

#: ``fine_tune_epochs="auto"``: enough epochs for every pair of texts to share a batch about
#: this many times on average, and at least ``MIN_EPOCHS``, at most ``MAX_EPOCHS``.
PAIR_VISITS = 5
MIN_EPOCHS = 5
MAX_EPOCHS = 20

#: ``fine_tune_learning_rate="auto"``: the peak rate times the epochs, so that more epochs
#: take smaller steps (1.5e-4 at 5 epochs, 3.75e-5 at 20).
RATE_TIMES_EPOCHS = 7.5e-4


def resolve_schedule(n_texts, batch_size, epochs, learning_rate):
    """The epochs and peak learning rate of one adaptation, with "auto" values resolved.

    A batch of ``B`` texts holds ``B (B - 1) / 2`` of the ``n (n - 1) / 2`` pairs of ``n``
    texts, so an epoch shows each pair ``(B - 1) / (n - 1)`` times on average. With
    ``epochs="auto"`` each pair is seen about ``PAIR_VISITS`` times: 5 epochs when all the
    texts fit in one batch, 10 for twice as many, and at most ``MAX_EPOCHS``. Then
    ``learning_rate="auto"`` is ``RATE_TIMES_EPOCHS / epochs``.

    Parameters
    ----------
    n_texts : int
        Labelled texts (at least 2).
    batch_size : int
        Texts per step (at least 2).
    epochs : int or "auto"
    learning_rate : float or "auto"

    Returns
    -------
    epochs : int
    learning_rate : float
    """
    if epochs == "auto":
        visits_per_epoch = (min(batch_size, n_texts) - 1) / (n_texts - 1)
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(PAIR_VISITS / visits_per_epoch)))
    if learning_rate == "auto":
        learning_rate = RATE_TIMES_EPOCHS / epochs
    return int(epochs), float(learning_rate)


def adapt_encoder(
    template,
    ids,
    targets,
    *,
    settings,
    epochs,
    batch_size,
    learning_rate,
    compute_dtype,
    pad_id,
    rng,
    verbose,
):
    """A copy of ``template`` tuned contrastively on labelled texts, and its history.

    Parameters
    ----------
    template : transformers.PreTrainedModel
        The pretrained encoder. It is shared by every estimator that loaded the same
        checkpoint: it is copied, never changed.
    ids : list of list of int
        Token ids per training text, special tokens included.
    targets : ndarray of int
        Class index per training text.
    settings : EncodeSettings
        The vectorizer's settings: training pools the embeddings as ``transform`` does
        (``pooling``, ``layers``, ``layer_aggregation``).
    epochs, batch_size, learning_rate : see ``AlbertVectorizer``'s ``fine_tune_*``.
    compute_dtype : torch.dtype
        float32, or the reduced precision used under autocast (weights and the optimizer
        stay float32; float16 adds loss scaling).
    pad_id : int
    rng : numpy.random.RandomState
        Draws the batches.
    verbose : bool
        Show a progress bar per epoch.

    Returns
    -------
    encoder : transformers.PreTrainedModel
        The adapted copy, in eval mode, on the template's device, with gradients off.
    history : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``learning_rate``, ``seconds`` and
        ``chunk_size`` (texts per chunk of a gradient-cached step at the epoch's end, None
        while whole batches fit in memory).
    """
    encoder = copy.deepcopy(template)
    for parameter in encoder.parameters():
        parameter.requires_grad_(True)
    targets = torch.as_tensor(targets, dtype=torch.long)
    n_steps = steps_per_epoch(len(ids), batch_size)
    optimization = make_optimization(
        encoder,
        learning_rate=learning_rate,
        weight_decay=WEIGHT_DECAY,
        warmup=WARMUP,
        total_steps=n_steps * epochs,
        compute_dtype=compute_dtype,
    )
    history = []
    chunk_size = None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        batches = class_balanced_batches(targets.numpy(), batch_size, rng)
        progress = progress_bar(len(batches), epoch, epochs) if verbose else None
        encoder.train()
        loss_sum = 0.0
        try:
            for batch in batches:
                loss, chunk_size = train_step(
                    encoder,
                    optimization,
                    collate(ids, batch, pad_id),
                    targets[batch],
                    settings=settings,
                    compute_dtype=compute_dtype,
                    batch_size=batch_size,
                    chunk_size=chunk_size,
                )
                loss_sum += loss
                if progress is not None:
                    progress.update()
                    progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
        finally:
            if progress is not None:
                progress.close()
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum / len(batches),
                "learning_rate": float(optimization[1].get_last_lr()[0]),
                "seconds": time.perf_counter() - started,
                "chunk_size": chunk_size,
            }
        )
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder, history


def class_balanced_batches(targets, batch_size, rng):
    """Batches of indices that spread every class evenly over the epoch.

    Each class is shuffled and its texts placed at evenly spaced, randomly offset
    positions of the epoch, so that every batch holds about ``batch_size / n_classes``
    texts of each class (in proportion to the class sizes). A last batch of one text
    joins the one before it: a single text makes no pair.
    """
    targets = np.asarray(targets)
    keys = np.empty(len(targets))
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        keys[members] = (np.arange(len(members)) + rng.uniform(size=len(members))) / len(members)
    order = np.argsort(keys, kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return batches


def pooled_embeddings(output, attention_mask, settings):
    """The features ``transform`` computes, as a differentiable float32 tensor.

    The torch counterpart of ``_pooling.combine_pooled`` over the selected layers (its
    feature order: the cosine of two vectors does not depend on it anyway).
    """
    summaries = pool_hidden_states(
        [output.hidden_states[layer] for layer in settings.layers], attention_mask
    )
    n_tokens = attention_mask.sum(dim=1).clamp(min=1).to(torch.float32)
    parts = []
    for name in settings.pooling:
        if name == "pooler":
            parts.append(output.pooler_output.to(torch.float32))
            continue
        selected = summaries[:, SUMMARY_INDEX["mean" if name == "mean_sqrt_len" else name]]
        if name == "mean_sqrt_len":
            selected = selected * n_tokens.sqrt()[:, None, None]
        if settings.layer_aggregation == "mean":
            parts.append(selected.mean(dim=1))
        else:
            parts.append(selected.reshape(len(selected), -1))
    return torch.cat(parts, dim=1)


def pair_cosine_loss(embeddings, targets):
    """Squared error of every in-batch pair's cosine to 1 (same class) or 0 (different).

    The mean over same-class pairs and the mean over different-class pairs weigh equally
    (a batch with only one kind of pair uses that kind's mean). This is SetFit's
    ``CosineSimilarityLoss`` with its labels, over all ``B (B - 1) / 2`` pairs of a batch.
    """
    unit = nn.functional.normalize(embeddings.to(torch.float32), dim=1)
    cosine = unit @ unit.T
    same = targets[:, None] == targets[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    terms = []
    for kind, target in ((same & upper, 1.0), (~same & upper, 0.0)):
        if kind.any():
            terms.append((cosine[kind] - target).square().mean())
    return torch.stack(terms).mean()


def train_step(
    encoder, optimization, tensors, targets, *, settings, compute_dtype, batch_size, chunk_size
):
    """One optimizer step on the pairs of one batch, in chunks if memory runs out.

    Parameters
    ----------
    encoder : transformers.PreTrainedModel
        In train mode, trainable.
    optimization : tuple (optimizer, scheduler, scaler)
        From ``_finetuning.make_optimization``.
    tensors : tuple (input_ids, attention_mask)
        The padded batch.
    targets : torch.Tensor of int
        Class index per text of the batch.
    settings : EncodeSettings
        The pooling the loss is computed on.
    compute_dtype : torch.dtype
    batch_size : int
        ``fine_tune_batch_size``, named in messages.
    chunk_size : int or None
        Texts per chunk of a gradient-cached step; None tries the whole batch at once.

    Returns
    -------
    loss : float
        The batch's loss.
    chunk_size : int or None
        The chunk size to use from now on: ``chunk_size`` as given, or the one that fitted
        after running out of memory (halved from the batch's size until a step fits).

    Raises
    ------
    MemoryError
        When even one text at a time runs out of memory.
    """
    device = next(encoder.parameters()).device
    input_ids, attention_mask = (tensor.to(device) for tensor in tensors)
    targets = targets.to(device)
    n_texts = len(input_ids)
    started_from = _rng_state(device)
    size = n_texts if chunk_size is None else chunk_size
    while True:
        try:
            if size >= n_texts:
                loss = _batch_gradients(
                    encoder,
                    optimization,
                    input_ids,
                    attention_mask,
                    targets,
                    settings=settings,
                    compute_dtype=compute_dtype,
                )
            else:
                loss = _cached_gradients(
                    encoder,
                    optimization,
                    input_ids,
                    attention_mask,
                    targets,
                    settings=settings,
                    compute_dtype=compute_dtype,
                    chunk_size=size,
                )
            break
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            if min(size, n_texts) == 1:
                optimization[0].zero_grad(set_to_none=True)
                raise MemoryError(
                    f"Out of memory adapting the encoder even one text at a time "
                    f"(fine_tune_batch_size={batch_size}, this batch padded to "
                    f"{input_ids.shape[1]} tokens). Use a smaller max_length, or a device "
                    "with more memory."
                ) from error
        # Out of the except block, the failed attempt's activations are freed.
        optimization[0].zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        _set_rng_state(device, started_from)  # a retry stays reproducible
        size = max(1, min(size, n_texts) // 2)
    apply_gradients(encoder, optimization)
    if size == chunk_size or size >= n_texts:
        return loss, chunk_size
    logger.warning(
        "Out of memory adapting the encoder on a batch of %d texts x %d tokens "
        "(fine_tune_batch_size=%d); each step now runs in chunks of %d texts with gradient "
        "caching: the same loss over every pair, for about one more forward pass per step. "
        "Lower fine_tune_batch_size or max_length to avoid the recompute (a smaller batch "
        "is a different loss).",
        n_texts,
        input_ids.shape[1],
        batch_size,
        size,
    )
    return loss, size


def _embed(encoder, input_ids, attention_mask, settings, compute_dtype):
    """The pooled embeddings of a padded batch, under autocast at ``compute_dtype``."""
    device = input_ids.device
    with torch.autocast(device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32):
        output = encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
    return pooled_embeddings(output, attention_mask, settings)


def _batch_gradients(
    encoder, optimization, input_ids, attention_mask, targets, *, settings, compute_dtype
):
    """Backpropagate the batch's loss in one pass; return the loss."""
    embeddings = _embed(encoder, input_ids, attention_mask, settings, compute_dtype)
    loss = pair_cosine_loss(embeddings, targets)
    value = finite_loss(loss, optimization)
    optimization[2].scale(loss).backward()
    return value


def _cached_gradients(
    encoder,
    optimization,
    input_ids,
    attention_mask,
    targets,
    *,
    settings,
    compute_dtype,
    chunk_size,
):
    """Backpropagate the batch's loss chunk by chunk (gradient caching); return the loss.

    Pass 1 encodes each chunk without a graph and keeps its embeddings; the loss over the
    whole batch gives the (scaled) gradient of every embedding; pass 2 encodes each chunk
    again, with the random state it had in pass 1 (the same dropout masks), and
    backpropagates that chunk's embedding gradient. The parameter gradients add up to the
    one-pass gradients of the same embeddings.
    """
    device = input_ids.device
    chunks = [slice(start, start + chunk_size) for start in range(0, len(input_ids), chunk_size)]
    states, pieces = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(device))
            pieces.append(
                _embed(encoder, input_ids[chunk], attention_mask[chunk], settings, compute_dtype)
            )
    finished = _rng_state(device)
    embeddings = torch.cat(pieces).requires_grad_(True)
    loss = pair_cosine_loss(embeddings, targets)
    value = finite_loss(loss, optimization)
    (gradient,) = torch.autograd.grad(optimization[2].scale(loss), embeddings)
    del pieces, embeddings, loss
    for chunk, state in zip(chunks, states):
        _set_rng_state(device, state)
        recomputed = _embed(
            encoder, input_ids[chunk], attention_mask[chunk], settings, compute_dtype
        )
        recomputed.backward(gradient[chunk])
    _set_rng_state(device, finished)
    return value


def _rng_state(device):
    """The random state that dropout on ``device`` draws from (CPU, and CUDA's if used)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device, state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def steps_per_epoch(n_texts, batch_size):
    """Optimizer steps in one epoch over ``n_texts`` texts."""
    n_batches = math.ceil(n_texts / batch_size)
    return n_batches - 1 if n_batches > 1 and n_texts % batch_size == 1 else n_batches
