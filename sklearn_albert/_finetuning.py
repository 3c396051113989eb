"""Fine-tuning: an encoder with a classification head, its training loop and its inference.

Data flows one way, as in the encode loop: token ids (from ``_batching.tokenize``) ->
length-grouped batches -> encoder -> pooled vector -> dropout -> linear head -> logits. The
estimator (``_classifier.py``) only prepares the ids and labels and keeps the results.

This module imports torch at import time; the estimator imports it lazily, in ``fit``.
"""

import copy
import math
import time

import numpy as np
import torch
from torch import nn

from ._batching import collate, plan_batches

#: Gradients are clipped to this global L2 norm before each optimizer step.
MAX_GRAD_NORM = 1.0

#: Training batches are cut from pools of this many batches sorted by token length, so that
#: a batch pads to similar lengths (as ``group_by_length`` does in transformers' Trainer).
BATCHES_PER_LENGTH_POOL = 50

#: Valid values of the classifier's ``pooling``: what the head reads from the encoder.
HEAD_POOLING_NAMES = ("mean", "cls", "pooler")


class EncoderClassifier(nn.Module):
    """An encoder, a pooling of its last layer, dropout and a linear layer to class scores.

    Parameters
    ----------
    encoder : transformers.PreTrainedModel
        A base model (``AutoModel``) returning ``last_hidden_state``.
    n_classes : int
        Number of outputs.
    pooling : {"mean", "cls", "pooler"}
        ``"mean"``: masked mean of the last layer (what ``AlbertVectorizer`` computes by
        default); ``"cls"``: its first token; ``"pooler"``: the model's pooler output.
    dropout : float
        Dropout probability before the linear layer.
    """

    def __init__(self, encoder, n_classes, *, pooling, dropout):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def reset_head(self):
        """Initialise the head as transformers initialises classification heads."""
        std = getattr(self.encoder.config, "initializer_range", 0.02)
        nn.init.normal_(self.head.weight, mean=0.0, std=std)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = pool_last_layer(output, attention_mask, self.pooling)
        return self.head(self.dropout(pooled))


def pool_last_layer(output, attention_mask, pooling):
    """One float32 vector per text from an encoder output (differentiable, never in place)."""
    if pooling == "pooler":
        return output.pooler_output.to(torch.float32)
    hidden = output.last_hidden_state.to(torch.float32)
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def head_dropout(config):
    """The dropout a checkpoint's config asks for in front of a classification head."""
    for name in ("classifier_dropout_prob", "classifier_dropout", "hidden_dropout_prob"):
        value = getattr(config, name, None)
        if value is not None:
            return float(value)
    return 0.1


def build_network(template, n_classes, *, pooling, device):
    """A trainable copy of ``template``'s encoder with a freshly initialised head.

    The template is the shared, frozen model of the registry: it is copied, never changed,
    so every clone in a grid search starts from the same pretrained weights.
    """
    encoder = copy.deepcopy(template)
    network = EncoderClassifier(
        encoder, n_classes, pooling=pooling, dropout=head_dropout(encoder.config)
    )
    network.reset_head()
    network.to(device)
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    return network


def length_grouped_batches(lengths, batch_size, rng):
    """Shuffled batches of indices whose texts have similar token counts.

    Indices are shuffled, cut into pools of ``BATCHES_PER_LENGTH_POOL`` batches, sorted by
    length inside each pool, cut into batches, and the batches shuffled again.
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    pool_size = batch_size * BATCHES_PER_LENGTH_POOL
    batches = []
    for start in range(0, len(order), pool_size):
        pool = order[start : start + pool_size]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches.extend(pool[i : i + batch_size] for i in range(0, len(pool), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def warmup_then_linear_decay(warmup_steps, total_steps):
    """Learning-rate factor: 0 -> 1 over ``warmup_steps``, then 1 -> 0 at ``total_steps``."""

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def make_optimizer(network, *, learning_rate, weight_decay):
    """AdamW; biases and normalisation weights (1-D parameters) get no weight decay."""
    decay = [p for p in network.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in network.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        # The fused kernel updates every tensor in one pass (CPU from torch 2.4, CUDA): a
        # tenth of MiniLM's step time on 2 CPU cores. Older builds and other devices
        # refuse it at construction, and use the per-tensor loop.
        return torch.optim.AdamW(groups, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=learning_rate)


def train(
    network,
    ids,
    targets,
    *,
    validation,
    epochs,
    batch_size,
    learning_rate,
    weight_decay,
    warmup,
    class_weight,
    compute_dtype,
    early_stopping,
    n_iter_no_change,
    pad_id,
    rng,
    verbose,
):
    """Fine-tune ``network`` in place and return its per-epoch history.

    Parameters
    ----------
    network : EncoderClassifier
        On its device, trainable.
    ids : list of list of int
        Token ids per training text, special tokens included.
    targets : ndarray of int
        Class index per training text.
    validation : tuple (ids, targets) or None
        Held-out texts scored after each epoch.
    epochs, batch_size, learning_rate, weight_decay, warmup : see ``AlbertClassifier``.
    class_weight : ndarray of float or None
        Loss weight per class.
    compute_dtype : torch.dtype
        float32, or the reduced precision used under autocast (float16 adds loss scaling).
    early_stopping : bool
        Stop when the validation score has not improved for ``n_iter_no_change`` epochs,
        and restore the weights of the best epoch.
    pad_id : int
    rng : numpy.random.RandomState
        Draws the batch order.
    verbose : bool
        Show a progress bar per epoch.

    Returns
    -------
    history : list of dict
        One entry per epoch run.
    best_epoch : int or None
        The epoch whose weights are kept when early stopping, else None.
    """
    device = next(network.parameters()).device
    lengths = np.array([len(row) for row in ids])
    total_steps = math.ceil(len(ids) / batch_size) * epochs
    optimization = make_optimization(
        network,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup=warmup,
        total_steps=total_steps,
        compute_dtype=compute_dtype,
    )
    scheduler = optimization[1]
    weight = None
    if class_weight is not None:
        weight = torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    targets = torch.as_tensor(targets, dtype=torch.long)

    history, best = [], {"score": -np.inf, "epoch": None, "state": None}
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        batches = length_grouped_batches(lengths, batch_size, rng)
        progress = progress_bar(len(batches), epoch, epochs) if verbose else None
        try:
            train_loss = _run_epoch(
                network,
                optimization,
                ids,
                batches,
                targets,
                weight=weight,
                compute_dtype=compute_dtype,
                pad_id=pad_id,
                progress=progress,
            )
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "validation_loss": None,
                "validation_score": None,
                "learning_rate": float(scheduler.get_last_lr()[0]),
            }
            if validation is not None:
                record.update(
                    _evaluate(network, *validation, batch_size, compute_dtype, pad_id, weight)
                )
            record["seconds"] = time.perf_counter() - started
            if progress is not None:
                progress.set_postfix(_summary(record))
        finally:
            if progress is not None:
                progress.close()
        history.append(record)
        if early_stopping and record["validation_score"] > best["score"]:
            best.update(score=record["validation_score"], epoch=epoch, state=_copy_state(network))
        if early_stopping and epoch - best["epoch"] >= n_iter_no_change:
            break
    if early_stopping and best["epoch"] != len(history):
        network.load_state_dict(best["state"])
    network.eval()
    return history, best["epoch"]


def _run_epoch(
    network, optimization, ids, batches, targets, *, weight, compute_dtype, pad_id, progress
):
    """One pass over ``batches``; returns the mean training loss per text."""
    network.train()
    loss_sum = 0.0
    for batch in batches:
        loss = _training_step(
            network,
            optimization,
            collate(ids, batch, pad_id),
            targets[batch],
            weight=weight,
            compute_dtype=compute_dtype,
        )
        loss_sum += loss * len(batch)
        if progress is not None:
            progress.update()
            progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
    return loss_sum / sum(len(batch) for batch in batches)


def _training_step(network, optimization, tensors, targets, *, weight, compute_dtype):
    """One optimizer step on one padded batch; returns the batch's mean loss."""
    device = next(network.parameters()).device
    input_ids, attention_mask = tensors
    with torch.autocast(device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32):
        logits = network(input_ids.to(device), attention_mask.to(device))
    loss = nn.functional.cross_entropy(logits.to(torch.float32), targets.to(device), weight=weight)
    return optimizer_step(network, optimization, loss)


def make_optimization(network, *, learning_rate, weight_decay, warmup, total_steps, compute_dtype):
    """The optimizer, its learning-rate schedule and the loss scaler of one training run.

    Returns
    -------
    optimization : tuple (optimizer, scheduler, scaler)
        AdamW (:func:`make_optimizer`); a linear warmup over the fraction ``warmup`` of
        ``total_steps`` then a linear decay to 0; a gradient scaler enabled for float16
        only. Pass it to :func:`optimizer_step`.
    """
    device = next(network.parameters()).device
    optimizer = make_optimizer(network, learning_rate=learning_rate, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_then_linear_decay(int(round(warmup * total_steps)), total_steps)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=compute_dtype == torch.float16)
    return optimizer, scheduler, scaler


def optimizer_step(network, optimization, loss):
    """Backpropagate ``loss``, clip, step the optimizer and the schedule; return the loss.

    A loss that is not finite stops training with an error naming what to change.
    """
    value = finite_loss(loss, optimization)
    optimization[2].scale(loss).backward()
    apply_gradients(network, optimization)
    return value


def finite_loss(loss, optimization):
    """``loss`` as a float; a loss that is not finite raises an error naming what to change."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"The training loss became {value} at step {optimization[1].last_epoch + 1}. "
            "Lower learning_rate, or use dtype='float32' if reduced precision was in use."
        )
    return value


def apply_gradients(network, optimization):
    """Clip the accumulated (scaled) gradients, step the optimizer and the schedule.

    The gradients are those of ``optimization``'s scaler: ``scaler.scale(loss)`` was
    backpropagated, in one pass or in pieces that add up to it.
    """
    optimizer, scheduler, scaler = optimization
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(network.parameters(), MAX_GRAD_NORM)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _evaluate(network, ids, targets, batch_size, compute_dtype, pad_id, weight):
    """Loss and accuracy on held-out texts."""
    logits = predict_logits(
        network, ids, batch_size=batch_size, compute_dtype=compute_dtype, pad_id=pad_id
    )
    logits = torch.from_numpy(logits)
    targets = torch.as_tensor(targets, dtype=torch.long)
    weight = None if weight is None else weight.cpu()
    loss = nn.functional.cross_entropy(logits, targets, weight=weight)
    accuracy = (logits.argmax(dim=1) == targets).to(torch.float64).mean()
    return {"validation_loss": float(loss), "validation_score": float(accuracy)}


def predict_logits(network, ids, *, batch_size, compute_dtype, pad_id):
    """Class scores for each text, in input order, as a float32 array.

    Texts run in length-sorted batches (padding only to each batch's longest text) under
    ``torch.inference_mode``; dropout is off.
    """
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    logits = np.empty((len(ids), network.head.out_features), dtype=np.float32)
    batches = plan_batches([len(row) for row in ids], batch_size=batch_size, max_tokens=1 << 62)
    try:
        with (
            torch.inference_mode(),
            torch.autocast(
                device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32
            ),
        ):
            for batch in batches:
                input_ids, attention_mask = collate(ids, batch, pad_id)
                scores = network(input_ids.to(device), attention_mask.to(device))
                logits[batch] = scores.to(torch.float32).cpu().numpy()
    finally:
        network.train(was_training)
    return logits


def _copy_state(network):
    return {
        name: tensor.detach().to("cpu", copy=True) for name, tensor in network.state_dict().items()
    }


def _summary(record):
    return {
        name: f"{value:.4f}"
        for name, value in record.items()
        if name.endswith(("loss", "score")) and value is not None
    }


def progress_bar(total, epoch, epochs):
    """A tqdm bar over one epoch's ``total`` batches."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"Epoch {epoch}/{epochs}", unit="batch")
