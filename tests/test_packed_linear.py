import copy

import pytest
import torch
from transformers import AutoModel

from sklearn_albert._cpu import packed_linear as _packed_linear
from sklearn_albert._cpu.packed_linear import PackedLinear, inference_copy, packing_works

needs_packing = pytest.mark.skipif(
    not packing_works(torch.float32) or not packing_works(torch.bfloat16),
    reason="this PyTorch build has no working oneDNN Linear packing (plain layers are used)",
)


@pytest.fixture(scope="module")
def tiny_model(tiny_albert_path):
    return AutoModel.from_pretrained(tiny_albert_path).eval().requires_grad_(False)


def hidden_states(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    with torch.inference_mode():
        output = model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
    # Rows at padding positions are no output: the unpadded ALBERT copy leaves them zero.
    tokens = attention_mask[None, :, :, None]
    return torch.stack(output.hidden_states) * tokens, output.pooler_output


@needs_packing
@pytest.mark.parametrize("gelu", [None, "tanh", "none"])
def test_packed_linear_computes_what_linear_computes(gelu):
    linear = torch.nn.Linear(40, 24)
    inputs = torch.randn(2, 7, 40, generator=torch.Generator().manual_seed(1))
    activation = {
        None: lambda x: x,
        "tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
        "none": torch.nn.functional.gelu,
    }[gelu]
    with torch.inference_mode():
        expected = activation(linear(inputs))
        packed = PackedLinear(linear, torch.float32, gelu=gelu)(inputs)
        reduced = PackedLinear(linear, torch.bfloat16, gelu=gelu)(inputs)

    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)
    assert reduced.dtype == torch.bfloat16
    torch.testing.assert_close(reduced.float(), expected, atol=3e-2, rtol=3e-2)


# ALBERT-base's Linear shapes (embedding projection, fused query/key/value, attention
# output, feed-forward in and out): oneDNN picks its kernels by shape, so the tiny model's
# layers alone would not exercise the kernels a real checkpoint runs through.
BASE_SHAPES = [(128, 768), (768, 2304), (768, 768), (768, 3072), (3072, 768)]


@needs_packing
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("in_features", "out_features"), BASE_SHAPES)
def test_a_row_gets_the_same_bits_whatever_rows_run_beside_it(dtype, in_features, out_features):
    # The unpadded ALBERT pass runs matrices of 8 rows and up (packed_height); a text's
    # vector must not depend on how many rows of other texts share its matrix, nor on
    # the thread count of the stream that runs it.
    generator = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(in_features, out_features)
    rows = torch.randn(600, in_features, generator=generator)
    packed = PackedLinear(linear, dtype)
    threads = torch.get_num_threads()
    # On AMX, bfloat16 calls run on one thread whatever the caller's count: checked up to
    # 16 threads there (oneDNN split the reduction of calls over 32 rows from 2 threads on).
    counts = [1, 2, 4, 16] if _packed_linear.rows_per_call(dtype) else [1]
    with torch.inference_mode():
        expected = packed(rows)
        other_counts = []
        try:
            for count in counts:
                torch.set_num_threads(count)
                other_counts.append(packed(rows[:40]))
        finally:
            torch.set_num_threads(threads)
        different = [
            height
            # Heights whose last call holds 64 rows (up to 64 left) or 128 (more left).
            for height in (8, 16, 24, 32, 40, 48, 64, 96, 150, 200, 300, 328, 512)
            if not torch.equal(packed(rows[:height]), expected[:height])
        ]
        shifted = packed(torch.cat([rows[500:517], rows[:100]]))[17:]

    assert different == []
    assert all(torch.equal(result, expected[:40]) for result in other_counts)
    assert torch.equal(shifted, expected[:100])
    if _packed_linear.rows_per_call(dtype):
        # The claim behind shorter last calls, on every row of 512: on one thread, calls
        # of each height call_heights mixes compute what calls of AMX_ROWS_PER_CALL do
        # (on the CPUs measured), and the layer's own probe says whether they do here.
        tile = _packed_linear.AMX_ROWS_PER_CALL
        inputs = rows[:512].to(dtype)
        with torch.inference_mode(), _packed_linear.one_torch_thread():
            by_height = {
                height: torch.cat([packed._matmul(part) for part in inputs.split(height)])
                for height in {tile, tile // 2, _packed_linear.AMX_SHORT_CALL_ROWS}
            }
        agree = all(torch.equal(result, by_height[tile]) for result in by_height.values())
        assert packed.heights_agree(tile) == agree


def test_bfloat16_runs_in_tiled_calls_on_amx_only(monkeypatch):
    monkeypatch.setattr(_packed_linear, "cpu_has_amx", lambda: True)
    assert _packed_linear.rows_per_call(torch.bfloat16) == _packed_linear.AMX_ROWS_PER_CALL
    assert _packed_linear.rows_per_call(torch.float32) is None
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_BATCH_INVARIANT", "0")
    assert _packed_linear.rows_per_call(torch.bfloat16) is None
    monkeypatch.delenv("SKLEARN_ALBERT_CPU_BATCH_INVARIANT")
    monkeypatch.setattr(_packed_linear, "cpu_has_amx", lambda: False)
    assert _packed_linear.rows_per_call(torch.bfloat16) is None


@needs_packing
def test_tiled_calls_run_on_one_thread_and_restore_the_callers_count(monkeypatch):
    # On two threads oneDNN's AMX kernels split the reduction of some shapes (3072 to 768
    # at 64 rows and more): each tiled call runs on one thread, whatever the caller's count.
    monkeypatch.setattr(_packed_linear, "cpu_has_amx", lambda: True)
    packed = PackedLinear(torch.nn.Linear(48, 40), torch.bfloat16)
    packed.heights_agree(_packed_linear.AMX_ROWS_PER_CALL)  # its probe's calls, once per shape
    seen = []
    matmul = packed._matmul
    monkeypatch.setattr(
        packed, "_matmul", lambda rows: seen.append(torch.get_num_threads()) or matmul(rows)
    )
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.inference_mode():
            packed(torch.randn(300, 48))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen == [1, 1]  # 300 rows: a call of AMX_ROWS_PER_CALL = 256 rows, one of 64


@needs_packing
def test_a_shape_whose_shorter_calls_differ_runs_every_call_at_full_height(monkeypatch):
    # Where the probe finds that calls of 128 or 64 rows give other bits than calls of
    # AMX_ROWS_PER_CALL (no CPU measured so far), every call holds AMX_ROWS_PER_CALL rows.
    monkeypatch.setattr(_packed_linear, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(_packed_linear, "_HEIGHTS_AGREE", {})
    packed = PackedLinear(torch.nn.Linear(48, 40), torch.bfloat16)
    probes, heights = [], []
    monkeypatch.setattr(packed, "_probe_heights", lambda *args: probes.append(args) or False)
    matmul = packed._matmul
    monkeypatch.setattr(packed, "_matmul", lambda rows: heights.append(len(rows)) or matmul(rows))
    inputs = torch.randn(300, 48, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        whole = packed(inputs)
        alone = packed(inputs[:20])

    tile = _packed_linear.AMX_ROWS_PER_CALL
    assert heights == [tile] * (-(-300 // tile)) + [tile]
    assert len(probes) == 1  # once per shape
    assert whole.shape == (300, 40) and torch.equal(alone, whole[:20])


def test_the_rows_left_after_full_calls_run_in_halved_calls():
    heights = _packed_linear.call_heights
    assert heights(20, 256) == heights(64, 256) == [64]
    assert heights(65, 256) == heights(128, 256) == [128]
    assert heights(150, 256) == heights(192, 256) == [128, 64]
    assert heights(193, 256) == [256]
    assert heights(300, 256) == [256, 64]
    assert heights(600, 256) == [256, 256, 128]
    assert heights(513, 256) == [256, 256, 64]
    assert heights(300, 128) == [128, 128, 64]
    assert heights(40, 32) == [32, 32]  # never taller than the tile
    assert heights(300, 256, mixed=False) == heights(257, 256, mixed=False) == [256, 256]
    for n_rows in range(1, 1100):
        calls = heights(n_rows, 256)
        assert set(calls) <= {64, 128, 256}  # the heights checked for equal bits
        assert n_rows <= sum(calls) < n_rows + 64


@needs_packing
def test_tiled_calls_compute_what_one_call_computes(monkeypatch):
    # Whatever the CPU, the tiled path (zero rows filling the last call) gives the rows
    # and the shape of one call, up to the kernels' rounding.
    linear = torch.nn.Linear(48, 40)
    inputs = torch.randn(3, 25, 48, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        monkeypatch.setattr(_packed_linear, "cpu_has_amx", lambda: False)
        whole = PackedLinear(linear, torch.bfloat16)(inputs)
        monkeypatch.setattr(_packed_linear, "cpu_has_amx", lambda: True)
        tiled = PackedLinear(linear, torch.bfloat16)(inputs)

    assert tiled.shape == whole.shape == (3, 25, 40)
    torch.testing.assert_close(tiled.float(), whole.float(), atol=2e-2, rtol=2e-2)


@needs_packing
def test_the_packed_copy_shares_parameters_and_matches_the_model(tiny_model):
    variant = inference_copy(tiny_model, torch.float32, cpu=True)

    packed = [module for module in variant.modules() if isinstance(module, PackedLinear)]
    sources = {id(module.source) for module in packed}
    plain = [module for module in variant.modules() if type(module) is torch.nn.Linear]
    assert packed and all(id(module) in sources for module in plain)  # each Linear is packed once
    assert not any(isinstance(module.source, PackedLinear) for module in packed)
    original_embeddings = tiny_model.get_input_embeddings().weight
    assert variant.get_input_embeddings().weight is original_embeddings  # shared, not copied
    layer = variant.encoder.albert_layer_groups[0].albert_layers[0]
    assert layer.ffn.gelu == "tanh" and isinstance(layer.activation, torch.nn.Identity)
    # The original model is left as it was.
    assert type(tiny_model.encoder.albert_layer_groups[0].albert_layers[0].ffn) is torch.nn.Linear

    expected, expected_pooler = hidden_states(tiny_model)
    states, pooler = hidden_states(variant)
    torch.testing.assert_close(states, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pooler, expected_pooler, atol=1e-5, rtol=1e-4)


@needs_packing
def test_a_packed_copy_can_be_deep_copied(tiny_model):
    variant = inference_copy(tiny_model, torch.bfloat16, cpu=True)
    twin = copy.deepcopy(variant)
    torch.testing.assert_close(hidden_states(twin)[0], hidden_states(variant)[0])


def test_without_packing_the_copy_keeps_plain_layers(tiny_model, monkeypatch):
    monkeypatch.setattr(_packed_linear, "packing_works", lambda dtype: False)

    float32 = inference_copy(tiny_model, torch.float32, cpu=True)
    bfloat16 = inference_copy(tiny_model, torch.bfloat16, cpu=True)

    linears = [module for module in float32.modules() if type(module) is torch.nn.Linear]
    assert linears and not any(isinstance(module, PackedLinear) for module in float32.modules())
    assert float32.pooler.weight is tiny_model.pooler.weight
    assert bfloat16.pooler.weight.dtype == torch.bfloat16
    assert tiny_model.pooler.weight.dtype == torch.float32
    torch.testing.assert_close(
        hidden_states(float32)[0], hidden_states(tiny_model)[0], atol=1e-6, rtol=1e-5
    )


def test_a_failing_probe_turns_packing_off(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(_packed_linear, "_PROBED", {})
    monkeypatch.setattr(PackedLinear, "_pack", broken)
    assert packing_works(torch.float32) is False


def test_the_vectorizer_builds_its_cpu_copy_once(fitted_tiny_vectorizer):
    loaded = fitted_tiny_vectorizer._ensure_loaded()
    first = loaded.model_for(torch.float32)
    assert loaded.model_for(torch.float32) is first
    assert first is not loaded.model


@pytest.mark.parametrize("value", ["0", "off"])
def test_the_environment_switch_turns_packing_off(monkeypatch, value):
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_PACKING", value)
    assert packing_works(torch.float32) is False


def test_an_unpacked_reduced_copy_casts_only_linear_weights_and_shares_the_rest(tiny_model):
    # The path of float16 and of reduced precision on GPUs (cpu=False).
    variant = inference_copy(tiny_model, torch.float16, cpu=False)

    assert not any(isinstance(module, PackedLinear) for module in variant.modules())
    assert variant.pooler.weight.dtype == torch.float16
    assert variant.get_input_embeddings().weight is tiny_model.get_input_embeddings().weight
    assert tiny_model.pooler.weight.dtype == torch.float32
