"""Contrastive adaptation out of memory: gradient caching keeps the whole batch's loss."""

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _tiny_model import build_tiny_albert, generated_sentences

from sklearn_albert._batching import collate
from sklearn_albert._contrastive import pair_cosine_loss, pooled_embeddings, train_step
from sklearn_albert._finetuning import apply_gradients

#: What ``pooled_embeddings`` reads from the settings: two poolings over two layers.
SETTINGS = SimpleNamespace(pooling=("mean", "cls"), layers=(2, 3), layer_aggregation="mean")

LABELS = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])


def encoder_and_ids(path, dropout):
    from transformers import AlbertModel, AlbertTokenizer

    encoder = AlbertModel.from_pretrained(
        path, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout
    ).train()
    tokenizer = AlbertTokenizer.from_pretrained(path)
    ids = tokenizer(generated_sentences(len(LABELS), seed=5))["input_ids"]
    return encoder, collate(ids, list(range(len(ids))), tokenizer.pad_token_id)


def plain_sgd(encoder):
    """SGD with rate 1 and no schedule: the update is the (clipped) gradient itself."""
    optimizer = torch.optim.SGD(encoder.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False)


def update(template, step, seed=0):
    """The parameter change and loss of ``step(encoder, optimization)`` from ``template``."""
    encoder = copy.deepcopy(template)
    before = [p.detach().clone() for p in encoder.parameters()]
    torch.manual_seed(seed)
    loss = step(encoder, plain_sgd(encoder))
    change = torch.cat([(p.detach() - b).ravel() for p, b in zip(encoder.parameters(), before)])
    return change, loss


def train_step_with(tensors, chunk_size):
    def step(encoder, optimization):
        loss, kept = train_step(
            encoder,
            optimization,
            tensors,
            LABELS,
            settings=SETTINGS,
            compute_dtype=torch.float32,
            batch_size=len(LABELS),
            chunk_size=chunk_size,
        )
        assert kept == chunk_size
        return loss

    return step


@pytest.mark.parametrize("chunk_size", [1, 3, 4])
def test_a_chunked_step_makes_the_update_of_the_whole_batch(tiny_albert_path, chunk_size):
    # Without dropout the forward pass is a function of the weights: one pass over the
    # batch and gradient caching over chunks must agree up to rounding.
    encoder, tensors = encoder_and_ids(tiny_albert_path, dropout=0.0)
    whole, whole_loss = update(encoder, train_step_with(tensors, None))
    chunked, chunked_loss = update(encoder, train_step_with(tensors, chunk_size))
    assert torch.linalg.vector_norm(whole) > 0.1
    assert chunked_loss == pytest.approx(whole_loss, rel=1e-6)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-6)


def test_chunks_are_recomputed_with_the_dropout_masks_they_were_cached_with(tiny_albert_path):
    # With dropout, chunks draw other masks than one pass over the batch would, so the
    # reference is the batch's loss over the same chunk-by-chunk forward passes, with a
    # graph: pass 2 of gradient caching must reproduce pass 1's masks to match it.
    encoder, (input_ids, attention_mask) = encoder_and_ids(tiny_albert_path, dropout=0.3)

    def one_graph_over_chunks(encoder, optimization):
        pieces = [
            pooled_embeddings(
                encoder(
                    input_ids=input_ids[start : start + 3],
                    attention_mask=attention_mask[start : start + 3],
                    output_hidden_states=True,
                ),
                attention_mask[start : start + 3],
                SETTINGS,
            )
            for start in range(0, len(input_ids), 3)
        ]
        loss = pair_cosine_loss(torch.cat(pieces), LABELS)
        loss.backward()
        apply_gradients(encoder, optimization)
        return float(loss.detach())

    expected, expected_loss = update(encoder, one_graph_over_chunks)
    chunked, chunked_loss = update(encoder, train_step_with((input_ids, attention_mask), 3))
    without_dropout, _ = update(encoder.eval(), train_step_with((input_ids, attention_mask), 3))
    assert not torch.allclose(expected, without_dropout, atol=1e-3)  # dropout is at work
    assert chunked_loss == pytest.approx(expected_loss, rel=1e-6)
    torch.testing.assert_close(chunked, expected, rtol=1e-4, atol=1e-6)


#: A child process that adapts a vectorizer, optionally under an address-space limit set
#: after a warm-up fit (libraries loaded, model held), and saves what it got.
CHILD = textwrap.dedent(
    """
    import json, logging, resource, sys
    import numpy as np
    import torch
    from sklearn_albert import AlbertVectorizer
    from sklearn_albert._engine import is_out_of_memory

    model, out, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    texts = json.loads(sys.argv[4])
    torch.set_num_threads(1)
    logging.basicConfig()

    def vm(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    def vectorizer():
        return AlbertVectorizer(
            model, dtype="float32", max_length=512, fine_tune="contrastive",
            fine_tune_epochs=2, fine_tune_batch_size=16, fine_tune_learning_rate=1e-3,
            random_state=0,
        )

    labels = np.arange(len(texts)) % 2
    vectorizer().fit(["a b", "c d", "e f", "g h"], labels[:4])  # warm-up
    base, report = vm("VmSize"), {}
    if budget:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (base + budget, hard))
        try:
            torch.empty(budget // 2, dtype=torch.float32)  # 2 x budget bytes
        except RuntimeError as error:
            report["error"] = str(error).splitlines()[0]
            report["is_out_of_memory"] = is_out_of_memory(error)
    vect = vectorizer().fit(texts, labels)
    report["need"] = vm("VmPeak") - base
    if budget:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    report["history"] = vect.fine_tune_history_
    torch.save(vect._ensure_loaded().model.state_dict(), out)
    print(json.dumps(report))
    """
)


def adapt_in_child(model, out, texts, budget=0):
    env = dict(os.environ)
    root = str(Path(__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(out), str(budget), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), done.stderr, torch.load(out)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc (Linux)"
)
def test_a_fit_that_runs_out_of_memory_trains_the_same_weights(tmp_path):
    # A tiny ALBERT on 512-token texts: attention scores dominate the memory of a step, so
    # an address-space limit can refuse a whole batch of 16 and still admit a few texts.
    model = build_tiny_albert(tmp_path / "long-albert", max_position_embeddings=512)
    sentences = generated_sentences(32 * 60, seed=1)
    texts = [" ".join(sentences[i * 60 : (i + 1) * 60]) for i in range(32)]

    free, _, expected = adapt_in_child(model, tmp_path / "free.pt", texts)
    assert [record["chunk_size"] for record in free["history"]] == [None, None]
    limited, log, weights = adapt_in_child(
        model, tmp_path / "limited.pt", texts, budget=free["need"] // 3
    )

    # torch's CPU allocator refuses in its own words, which the step recognises.
    assert "DefaultCPUAllocator: can't allocate memory" in limited["error"]
    assert limited["is_out_of_memory"]
    chunk_sizes = [record["chunk_size"] for record in limited["history"]]
    # Halved from 16 until a step fits, then kept (or halved again) for the rest of the
    # fit; one warning for each size reached. How far it goes varies from run to run.
    assert chunk_sizes[0] in (8, 4, 2, 1) and chunk_sizes[1] <= chunk_sizes[0]
    assert 1 <= log.count("with gradient caching") <= 4
    assert "fine_tune_batch_size=16" in log and f"chunks of {chunk_sizes[1]} texts" in log
    for free_record, limited_record in zip(free["history"], limited["history"]):
        assert limited_record["train_loss"] == pytest.approx(free_record["train_loss"], rel=1e-5)
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
