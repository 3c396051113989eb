import copy
import gc
import threading
import weakref

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from sklearn_albert._cpu.fused_projections import (
    FusedProjections,
    ProjectionSlice,
    fuse_projections,
)
from sklearn_albert._cpu.packed_linear import PackedLinear, inference_copy, packing_works

needs_packing = pytest.mark.skipif(
    not packing_works(torch.float32) or not packing_works(torch.bfloat16),
    reason="this PyTorch build has no working oneDNN Linear packing (plain layers are used)",
)


def three_linears(seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Linear(16, width) for width in (16, 16, 8)]


def random_input(seed):
    return torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(seed))


def separately(linears, inputs):
    with torch.inference_mode():
        return [linear(x) for linear, x in zip(linears, inputs)]


def fused(group, inputs, order=(0, 1, 2)):
    with torch.inference_mode():
        outputs = {index: group.output(index, inputs[index]) for index in order}
    return [outputs[index] for index in range(len(inputs))]


@needs_packing
@pytest.mark.parametrize(
    "order, same_input",
    [((0, 1, 2), True), ((2, 0, 1), True), ((0, 1, 2), False)],
    ids=["in order", "value first", "cross-attention inputs"],
)
def test_each_slice_gives_what_its_own_linear_gives(order, same_input):
    linears = three_linears()
    group = FusedProjections(linears, torch.float32, PackedLinear)
    x, other = random_input(1), random_input(2)
    inputs = [x, x, x] if same_input else [x, other, other]

    for expected, result in zip(separately(linears, inputs), fused(group, inputs, order)):
        torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)


@needs_packing
def test_a_second_call_on_the_same_input_computes_again():
    linears = three_linears()
    group = FusedProjections(linears, torch.float32, PackedLinear)
    calls = []
    real = group.packed.forward
    group.packed.forward = lambda inputs: calls.append(1) or real(inputs)
    x = random_input(1)

    with torch.inference_mode():
        first = group.output(0, x)
        again = group.output(0, x)  # query twice: not a cached key or value
        group.output(1, x)
        group.output(2, x)

    assert len(calls) == 2
    torch.testing.assert_close(again, first)


@needs_packing
def test_nothing_is_held_once_every_part_is_taken():
    group = FusedProjections(three_linears(), torch.float32, PackedLinear)
    x = random_input(1)
    watcher = weakref.ref(x)

    with torch.inference_mode():
        parts = [group.output(index, x) for index in range(3)]
    del x, parts
    gc.collect()

    assert watcher() is None


@needs_packing
def test_threads_sharing_one_group_each_get_their_own_outputs():
    linears = three_linears()
    group = FusedProjections(linears, torch.bfloat16, PackedLinear)
    inputs = {name: random_input(seed) for seed, name in enumerate(["a", "b"])}
    expected = {
        name: [part.float() for part in fused(group, [x] * 3)] for name, x in inputs.items()
    }
    turns = threading.Barrier(2)
    results, errors = {}, []

    def project(name):
        try:
            outputs = []
            with torch.inference_mode():
                for index in range(3):
                    turns.wait()  # both threads hold a half-used group between the calls
                    outputs.append(group.output(index, inputs[name]).float())
            results[name] = outputs
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=project, args=(name,)) for name in inputs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert not errors
    for name in inputs:
        for result, reference in zip(results[name], expected[name]):
            torch.testing.assert_close(result, reference, atol=0, rtol=0)


def test_only_same_width_inputs_are_fused():
    module = torch.nn.Module()
    module.query, module.key = torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)
    module.value = torch.nn.Linear(8, 16)  # another input width: left alone

    assert fuse_projections(module, torch.float32, PackedLinear) == 0
    assert type(module.query) is torch.nn.Linear


@pytest.fixture(scope="module")
def tiny_albert(tiny_albert_path):
    return AutoModel.from_pretrained(tiny_albert_path).eval().requires_grad_(False)


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(config).eval().requires_grad_(False)


def last_hidden_state(model):
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(5, 100, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    with torch.inference_mode():
        output = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    # Rows at padding positions are no output: the unpadded ALBERT copy leaves them zero.
    return output * attention_mask[:, :, None]


@needs_packing
@pytest.mark.parametrize("family", ["albert", "bert"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_cpu_copy_runs_its_projections_fused_and_matches_the_model(tiny_albert, family, dtype):
    model = tiny_albert if family == "albert" else tiny_bert()
    variant = inference_copy(model, dtype, cpu=True)

    slices = [module for module in variant.modules() if isinstance(module, ProjectionSlice)]
    assert slices and len(slices) % 3 == 0
    assert all(type(module.query) is torch.nn.Linear for module in _attention_modules(model))
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        result = last_hidden_state(variant).float()
    torch.testing.assert_close(result, last_hidden_state(model), atol=tolerance, rtol=tolerance)
    twin = copy.deepcopy(variant)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        torch.testing.assert_close(last_hidden_state(twin), last_hidden_state(variant))


def _attention_modules(model):
    return [module for module in model.modules() if hasattr(module, "query")]


@needs_packing
def test_bfloat16_runs_tanh_gelu_as_exact_gelu_and_float32_keeps_it(tiny_albert, monkeypatch):
    reduced = inference_copy(tiny_albert, torch.bfloat16, cpu=True)
    exact = inference_copy(tiny_albert, torch.float32, cpu=True)
    monkeypatch.setenv("SKLEARN_ALBERT_CPU_ERF_GELU", "0")
    switched_off = inference_copy(tiny_albert, torch.bfloat16, cpu=True)

    def layer(model):
        return model.encoder.albert_layer_groups[0].albert_layers[0]

    assert type(layer(reduced).activation) is torch.nn.GELU
    assert layer(reduced).activation.approximate == "none" and layer(reduced).ffn.gelu is None
    assert layer(exact).ffn.gelu == "tanh"  # float32: the checkpoint's tanh GELU, fused
    assert layer(switched_off).activation.approximate == "tanh"
