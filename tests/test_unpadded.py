"""ALBERT on the real tokens only (``_cpu/unpadded.py``): the same bits as padded batches.

The inference copy of an ALBERT on CPU runs every Linear and normalisation on the packed
real tokens of a batch and pads only within attention groups. Its outputs must equal, bit
for bit, those of the padded forward pass (``SKLEARN_ALBERT_CPU_UNPADDED=0``) for every
pooling, layer and token vector, at lengths on both sides of the 16-key blocks and of the
96-token switch to per-text SDPA; and the engine's plan for it must keep every budget.
"""

import random

import numpy as np
import pytest
import torch
from _tiny_model import WORDS, build_tiny_albert, generated_sentences

from sklearn_albert import AlbertVectorizer
from sklearn_albert._batching import PASS_TOKENS, STREAM_MIN_TOKENS, plan_real_token_batches
from sklearn_albert._cpu import UNPADDED_SWITCH
from sklearn_albert._cpu.packed_linear import inference_copy, packing_works
from sklearn_albert._cpu.unpadded import UnpaddedAlbert, packed_height, supports
from sklearn_albert._devices import cpu_supports_bfloat16

needs_packing = pytest.mark.skipif(
    not packing_works(torch.float32), reason="this PyTorch build has no oneDNN packing"
)


def _long(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 150))) for _ in range(n)]


TEXTS = generated_sentences(40, seed=11) + _long(6, seed=11) + ["", "bad", "a b c d e f g h"]


def _dtypes():
    bfloat16 = pytest.mark.skipif(
        not cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 (AVX512-BF16/AMX)"
    )
    return ["float32", pytest.param("bfloat16", marks=bfloat16)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_albert(
        tmp_path_factory.mktemp("models") / "tiny-160", max_position_embeddings=160
    )


@needs_packing
@pytest.mark.parametrize("dtype", _dtypes())
def test_features_and_token_vectors_equal_the_padded_ones_bit_for_bit(
    model_path, dtype, monkeypatch
):
    vectorizer = AlbertVectorizer(
        str(model_path),
        dtype=dtype,
        device="cpu",
        embedding_cache=None,
        pooling=["cls", "mean", "max", "pooler"],
        layers=[-1, -2, 0],
        layer_aggregation="concat",
    ).fit(TEXTS)
    runner = vectorizer._runner()
    assert isinstance(runner, UnpaddedAlbert) and runner.unpadded

    unpadded = vectorizer.transform(TEXTS)
    tokens = vectorizer.transform_tokens(TEXTS)
    monkeypatch.setenv(UNPADDED_SWITCH, "0")
    assert not runner.unpadded
    padded = vectorizer.transform(TEXTS)
    padded_tokens = vectorizer.transform_tokens(TEXTS)

    np.testing.assert_array_equal(unpadded, padded)
    for mine, theirs in zip(tokens, padded_tokens):
        np.testing.assert_array_equal(mine.embeddings, theirs.embeddings)


def _batch(tokenizer_ids, texts):
    rows = [tokenizer_ids(text) for text in texts]
    width = max(map(len, rows))
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


@needs_packing
def test_the_copy_leaves_padding_rows_zero_and_falls_back_on_a_mask_with_holes(model_path):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_path).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    variant = inference_copy(model, torch.float32, cpu=True)
    assert isinstance(variant, UnpaddedAlbert)
    assert variant.get_input_embeddings().weight is model.get_input_embeddings().weight
    input_ids, attention_mask = _batch(
        lambda text: tokenizer(text)["input_ids"], TEXTS[:5] + TEXTS[40:42]
    )
    with torch.inference_mode():
        output = variant(input_ids=input_ids, attention_mask=attention_mask)
        expected = model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
    tokens = attention_mask.bool()
    assert len(output.hidden_states) == len(expected.hidden_states)
    assert not output.last_hidden_state[~tokens].any()  # padding rows: zeros
    torch.testing.assert_close(
        output.last_hidden_state[tokens], expected.last_hidden_state[tokens], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(output.pooler_output, expected.pooler_output, atol=1e-5, rtol=1e-4)

    # Every layer, read in the padded layout when asked (and a slice of them).
    for layer in (0, 3, -1):
        assert not output.hidden_states[layer][~tokens].any()
        torch.testing.assert_close(
            output.hidden_states[layer][tokens],
            expected.hidden_states[layer][tokens],
            atol=1e-5,
            rtol=1e-4,
        )
    assert [state.shape for state in output.hidden_states[-2:]] == [input_ids.shape + (32,)] * 2
    torch.testing.assert_close(output.hidden_states[-1], output.last_hidden_state)

    holes = attention_mask.clone()
    holes[0, 1] = 0  # not left-aligned padding: the model's own forward pass runs
    with torch.inference_mode():
        fallback = variant(input_ids=input_ids, attention_mask=holes)
        direct = variant.model(input_ids=input_ids, attention_mask=holes)
    torch.testing.assert_close(fallback.last_hidden_state, direct.last_hidden_state)


def test_only_packed_albert_copies_are_wrapped(tiny_albert_path, monkeypatch):
    from transformers import AutoModel, BertConfig, BertModel

    model = AutoModel.from_pretrained(tiny_albert_path).eval().requires_grad_(False)
    bert = BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).eval()
    assert not supports(inference_copy(bert, torch.float32, cpu=True))
    assert not isinstance(inference_copy(bert, torch.float32, cpu=True), UnpaddedAlbert)
    assert not isinstance(inference_copy(model, torch.float32, cpu=False), UnpaddedAlbert)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_ATTENTION", "0")  # SDPA kept: not run unpadded
    assert not isinstance(inference_copy(model, torch.float32, cpu=True), UnpaddedAlbert)


def _check_plan(lengths, batches, batch_size, max_tokens):
    lengths = np.maximum(np.asarray(lengths), 1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # each text exactly once
    for batch in batches:
        assert len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= max_tokens
    assert (np.diff(lengths[flat]) <= 0).all()  # longest first, as the engine expects


@pytest.mark.parametrize("seed", range(5))
def test_the_plan_keeps_the_budgets_and_shares_a_call_between_the_streams(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 80, size=int(rng.integers(30, 400)))

    batches = plan_real_token_batches(lengths, batch_size=32, max_tokens=4096, streams=2)

    _check_plan(lengths, batches, 32, 4096)
    assert len(batches) % 2 == 0  # both streams busy to the end of the call
    tokens = [int(lengths[batch].sum()) for batch in batches]
    assert max(tokens) <= max(PASS_TOKENS, sum(tokens) / len(tokens)) + lengths.max()


@pytest.mark.parametrize(
    "lengths, batch_size, max_tokens",
    [([5] * 200, 8, 4096), ([300, 2, 2, 2], 32, 64), (list(range(1, 120)), 7, 100), ([1], 1, 1)],
)
def test_tight_budgets_are_kept(lengths, batch_size, max_tokens):
    batches = plan_real_token_batches(
        lengths, batch_size=batch_size, max_tokens=max_tokens, streams=2
    )
    _check_plan(lengths, batches, batch_size, max_tokens)


def test_a_small_call_runs_as_one_batch():
    lengths = [10] * (2 * STREAM_MIN_TOKENS // 10 - 1)
    assert len(plan_real_token_batches(lengths, batch_size=64, max_tokens=4096, streams=2)) == 1
    assert plan_real_token_batches([], batch_size=8, max_tokens=64, streams=2) == []


def test_packed_matrices_take_few_heights_at_little_extra():
    # oneDNN keeps a kernel per matrix height: passes of any token count meet few heights.
    heights = {n: packed_height(n) for n in range(1, 4097)}
    assert all(height >= n and height % 8 == 0 for n, height in heights.items())
    assert max(height / n for n, height in heights.items() if n >= 128) <= 1 + 1 / 16
    assert len(set(heights.values())) <= 16 * 12  # 16 per doubling
    assert len({heights[n] for n in range(512, 1025)}) <= 17
