import numpy as np
import pytest
import torch

from sklearn_albert._pooling import (
    POOLING_NAMES,
    combine_pooled,
    n_pooled_features,
    pool_hidden_states,
    pool_tokens,
)


@pytest.fixture
def hidden_and_mask():
    generator = torch.Generator().manual_seed(0)
    hidden = [torch.randn(3, 5, 4, generator=generator) for _ in range(2)]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    return hidden, mask


def test_summaries_match_the_textbook_definitions(hidden_and_mask):
    hidden, mask = hidden_and_mask
    summaries = pool_hidden_states(hidden, mask).numpy()
    assert summaries.shape == (3, 3, 2, 4)
    for layer, tokens in enumerate(hidden):
        for index, name in enumerate(["cls", "mean", "max"]):
            expected = pool_tokens(tokens.numpy(), mask.numpy(), name)
            np.testing.assert_allclose(summaries[:, index, layer], expected, rtol=1e-6, atol=1e-6)


def test_pooling_stays_float32_inside_reduced_precision_autocast(hidden_and_mask):
    # The encode loop pools inside the forward pass's autocast context; the mean must not
    # silently become a bfloat16 matmul there.
    hidden, mask = hidden_and_mask
    expected = pool_hidden_states(hidden, mask)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        summaries = pool_hidden_states(hidden, mask)
    assert summaries.dtype == torch.float32
    torch.testing.assert_close(summaries, expected, rtol=1e-6, atol=1e-6)


def test_pooling_leaves_its_inputs_untouched(hidden_and_mask):
    hidden, mask = hidden_and_mask
    before = [tensor.clone() for tensor in hidden]
    pool_hidden_states(hidden, mask)
    for original, tensor in zip(before, hidden):
        assert torch.equal(original, tensor)


@pytest.mark.parametrize("n_tokens", [4, 13, 70, 150])
def test_a_text_pools_to_the_same_bits_whatever_padding_and_batch(n_tokens):
    # Alone, a text's hidden states come padded to its own length; in a batch, to the
    # batch's longest text. A matmul's reduction over the sequence (bmm) was blocked by
    # that length on AMX Xeons, and the same tokens pooled to other last bits.
    generator = torch.Generator().manual_seed(n_tokens)
    tokens = torch.randn(n_tokens, 32, generator=generator)
    results = []
    for padded, batch in [(n_tokens, 1), (n_tokens + 2, 14), (n_tokens + 9, 2), (176, 7)]:
        hidden = torch.randn(batch, padded, 32, generator=generator)
        mask = torch.ones(batch, padded, dtype=torch.long)
        hidden[0], mask[0] = 0, 0
        hidden[0, :n_tokens], mask[0, :n_tokens] = tokens, 1
        results.append(pool_hidden_states([hidden], mask)[0])

    assert all(torch.equal(result, results[0]) for result in results[1:])


def test_padding_never_wins_max_pooling():
    hidden = [torch.tensor([[[-5.0], [100.0]]])]
    mask = torch.tensor([[1, 0]])
    assert pool_hidden_states(hidden, mask)[0, 2, 0, 0].item() == -5.0


def test_mean_sqrt_len_is_the_sum_over_root_token_count(hidden_and_mask):
    hidden, mask = hidden_and_mask
    summaries = pool_hidden_states(hidden, mask).numpy()
    n_tokens = mask.sum(dim=1).numpy()
    features = combine_pooled(
        summaries, None, n_tokens, pooling=("mean_sqrt_len",), layers=(1,), layer_aggregation="mean"
    )
    expected = pool_tokens(hidden[1].numpy(), mask.numpy(), "mean_sqrt_len")
    np.testing.assert_allclose(features, expected, rtol=1e-5)


def test_a_list_of_poolings_concatenates_in_order(hidden_and_mask):
    hidden, mask = hidden_and_mask
    summaries = pool_hidden_states(hidden, mask).numpy()
    pooler = np.full((3, 4), 7.0, dtype=np.float32)
    features = combine_pooled(
        summaries,
        pooler,
        mask.sum(1).numpy(),
        pooling=("max", "pooler", "cls"),
        layers=(0, 1),
        layer_aggregation="concat",
    )
    assert features.shape == (3, 4 * 2 + 4 + 4 * 2)
    np.testing.assert_array_equal(features[:, 8:12], pooler)
    np.testing.assert_allclose(features[:, :4], summaries[:, 2, 0])
    assert features.dtype == np.float32


def test_mean_layer_aggregation_of_cls_equals_cls_of_averaged_tokens(hidden_and_mask):
    hidden, mask = hidden_and_mask
    summaries = pool_hidden_states(hidden, mask).numpy()
    features = combine_pooled(
        summaries,
        None,
        mask.sum(1).numpy(),
        pooling=("cls", "mean"),
        layers=(0, 1),
        layer_aggregation="mean",
    )
    averaged = ((hidden[0] + hidden[1]) / 2).numpy()
    expected = np.hstack(
        [pool_tokens(averaged, mask.numpy(), "cls"), pool_tokens(averaged, mask.numpy(), "mean")]
    )
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_feature_count_follows_pooling_and_layers():
    assert n_pooled_features(8, pooling=("mean",), n_layers=3, layer_aggregation="mean") == 8
    assert (
        n_pooled_features(8, pooling=("mean", "pooler"), n_layers=3, layer_aggregation="concat")
        == 32
    )
    assert set(POOLING_NAMES) == {"cls", "mean", "max", "mean_sqrt_len", "pooler"}
