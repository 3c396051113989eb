import pytest
import torch
from transformers import AutoModel

from sklearn_albert._cpu import attention as _attention
from sklearn_albert._cpu.attention import NAME, length_aware_attention
from sklearn_albert._cpu.packed_linear import PackedLinear, inference_copy


def sdpa_reference(query, key, value, mask):
    """What transformers' SDPA path returns: (batch, tokens, heads, head_dim)."""
    output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return output.transpose(1, 2)


def random_heads(n_tokens, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, n_tokens, 8, generator=generator).to(dtype) for _ in range(3)]


def encoder_attention_layer():
    """What the attention function reads of a layer: encoders attend both ways."""
    layer = torch.nn.Module()
    layer.is_causal = False
    return layer


def padding_mask(n_tokens):
    """SDPA's boolean mask: the second text's last three tokens are padding."""
    mask = torch.ones(3, 1, n_tokens, n_tokens, dtype=torch.bool)
    mask[1, :, :, n_tokens - 3 :] = False
    return mask


@pytest.mark.parametrize("mask_kind", ["boolean", "additive", "none"])
@pytest.mark.parametrize("n_tokens", [9, _attention.MATMUL_MAX_TOKENS + 5])
def test_length_aware_attention_equals_sdpa(mask_kind, n_tokens):
    query, key, value = random_heads(n_tokens)
    boolean = padding_mask(n_tokens)
    mask = {
        "boolean": boolean,
        "additive": torch.zeros(boolean.shape).masked_fill(~boolean, float("-inf")),
        "none": None,
    }[mask_kind]
    output, weights = length_aware_attention(
        encoder_attention_layer(), query, key, value, mask, scaling=None
    )

    assert weights is None
    assert output.shape == (3, n_tokens, 4, 8) and output.is_contiguous()
    torch.testing.assert_close(output, sdpa_reference(query, key, value, mask))


@pytest.mark.parametrize("invariant", ["1", "0"])
def test_long_sequences_run_through_sdpa_only_when_batch_invariance_is_off(invariant, monkeypatch):
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_BATCH_INVARIANT", invariant)
    calls = []
    import transformers.integrations.sdpa_attention as sdpa_module

    real_sdpa = sdpa_module.sdpa_attention_forward

    def recording_sdpa(*args, **kwargs):
        calls.append(args[1].shape[-2])
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", recording_sdpa)
    layer = encoder_attention_layer()
    for n_tokens in (_attention.MATMUL_MAX_TOKENS, _attention.MATMUL_MAX_TOKENS + 1):
        query, key, value = random_heads(n_tokens)
        length_aware_attention(layer, query, key, value, None)

    assert calls == ([] if invariant == "1" else [_attention.MATMUL_MAX_TOKENS + 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mask_kind", ["boolean", "additive"])
def test_a_texts_attention_is_the_same_whatever_its_batch_is_padded_to(dtype, mask_kind):
    # A text of n tokens alone (no mask) against the same text padded to a wider batch:
    # widths that cross 16-key blocks, float32's 64-key blocks and the SDPA threshold
    # (beyond it, each text runs through SDPA at its own width).
    layer = encoder_attention_layer()
    for n_tokens in (2, 15, 40, 70, 97, 130):
        query, key, value = (part[:1] for part in random_heads(n_tokens, dtype=dtype))
        alone, _ = length_aware_attention(layer, query, key, value, None)
        for width in (n_tokens + 1, n_tokens + 9, n_tokens + 30, max(140, n_tokens + 50)):
            extra = width - n_tokens
            padded = [
                torch.nn.functional.pad(part, (0, 0, 0, extra), value=0.5)
                for part in (query, key, value)
            ]
            mask = torch.zeros(1, 1, width, width, dtype=torch.bool)
            mask[..., :n_tokens] = True
            if mask_kind == "additive":
                mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
            output, _ = length_aware_attention(layer, *padded, mask)

            assert torch.equal(output[:, :n_tokens], alone), (n_tokens, width)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_long_texts_keep_their_attention_in_a_batch_of_other_lengths(dtype):
    # Beyond the matmul threshold each text runs through SDPA at its own width: texts of
    # 100-200 tokens alone and in one batch with each other and a short one, on 1 and 2
    # threads (corpus batches run on one thread, a lone text on two).
    layer = encoder_attention_layer()
    lengths = [_attention.MATMUL_MAX_TOKENS + 4, 150, 200, 9]
    texts = [
        [part[:1] for part in random_heads(n_tokens, dtype=dtype, seed=seed)]
        for seed, n_tokens in enumerate(lengths)
    ]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        alone = [length_aware_attention(layer, *text, None)[0] for text in texts]
        torch.set_num_threads(1)
        width = max(lengths)
        batch = [
            torch.cat(
                [torch.nn.functional.pad(t[i], (0, 0, 0, width - t[i].shape[-2])) for t in texts]
            )
            for i in range(3)
        ]
        mask = torch.zeros(len(lengths), 1, 1, width, dtype=torch.bool)
        for row, n_tokens in enumerate(lengths):
            mask[row, ..., :n_tokens] = True
        together, _ = length_aware_attention(layer, *batch, mask)
    finally:
        torch.set_num_threads(threads)

    for row, n_tokens in enumerate(lengths):
        assert torch.equal(together[row : row + 1, :n_tokens], alone[row]), n_tokens


def test_reduced_precision_keeps_the_softmax_in_float32():
    query, key, value = random_heads(12, dtype=torch.bfloat16)
    mask = padding_mask(12)

    output, _ = length_aware_attention(encoder_attention_layer(), query, key, value, mask)

    assert output.dtype == torch.bfloat16
    expected = sdpa_reference(query.float(), key.float(), value.float(), mask)
    torch.testing.assert_close(output.float(), expected, atol=2e-2, rtol=2e-2)


@pytest.fixture(scope="module")
def tiny_model(tiny_albert_path):
    return AutoModel.from_pretrained(tiny_albert_path).eval().requires_grad_(False)


def test_the_cpu_inference_copy_switches_attention_and_matches_the_model(tiny_model):
    variant = inference_copy(tiny_model, torch.float32, cpu=True)

    assert variant.config._attn_implementation == NAME
    assert tiny_model.config._attn_implementation == "sdpa"  # the original is left alone
    input_ids = torch.randint(5, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    with torch.inference_mode():
        expected = tiny_model(input_ids=input_ids, attention_mask=attention_mask)
        result = variant(input_ids=input_ids, attention_mask=attention_mask)
    tokens = attention_mask[:, :, None]  # padding rows are no output (zeros in the copy)
    torch.testing.assert_close(
        result.last_hidden_state * tokens, expected.last_hidden_state * tokens, atol=1e-5, rtol=1e-4
    )


def test_an_explicit_attention_choice_is_kept(tiny_albert_path):
    eager = AutoModel.from_pretrained(tiny_albert_path, attn_implementation="eager").eval()

    variant = inference_copy(eager.requires_grad_(False), torch.float32, cpu=True)

    assert variant.config._attn_implementation == "eager"


def test_the_attention_switch_keeps_sdpa(tiny_model, monkeypatch):
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_ATTENTION", "0")

    variant = inference_copy(tiny_model, torch.float32, cpu=True)

    assert variant.config._attn_implementation == "sdpa"


def test_the_packing_switch_leaves_the_attention_on(tiny_model, monkeypatch):
    # Each CPU speed-up has its own switch: turning packing off keeps the attention kernel.
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_PACKING", "0")

    variant = inference_copy(tiny_model, torch.float32, cpu=True)

    assert variant.config._attn_implementation == _attention.NAME
    assert not any(isinstance(module, PackedLinear) for module in variant.modules())


def test_gpu_copies_keep_sdpa(tiny_model):
    # cpu=False is the path of reduced precision on GPUs: SDPA's fused kernels stay.
    variant = inference_copy(tiny_model, torch.float16, cpu=False)

    assert variant.config._attn_implementation == "sdpa"


def test_a_layer_that_may_be_causal_goes_to_sdpa(monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa_module

    calls = []
    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", lambda *a, **k: calls.append(1))
    query, key, value = random_heads(9)

    length_aware_attention(torch.nn.Module(), query, key, value, None)

    assert calls == [1]


@pytest.mark.parametrize("option", [{"sliding_window": 4}, {"softcap": 30.0}])
def test_options_that_change_the_arithmetic_go_to_sdpa(monkeypatch, option):
    import transformers.integrations.sdpa_attention as sdpa_module

    calls = []
    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", lambda *a, **k: calls.append(k))
    query, key, value = random_heads(9)

    length_aware_attention(encoder_attention_layer(), query, key, value, None, **option)
    length_aware_attention(
        encoder_attention_layer(), query, key, value, None, position_ids=None, sliding_window=None
    )

    assert len(calls) == 1 and option.items() <= calls[0].items()
