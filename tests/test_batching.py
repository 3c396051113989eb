import numpy as np

from sklearn_albert._batching import collate, plan_batches


def test_batches_are_sorted_longest_first_and_respect_both_budgets():
    lengths = [5, 50, 7, 50, 3, 20, 20, 1]
    batches = plan_batches(lengths, batch_size=3, max_tokens=100)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100


def test_short_texts_fill_larger_batches_than_long_ones():
    lengths = [500] * 8 + [10] * 64
    sizes = [len(batch) for batch in plan_batches(lengths, batch_size=64, max_tokens=1000)]
    assert sizes[:4] == [2, 2, 2, 2]
    assert sizes[-1] == 64


def test_a_text_longer_than_the_token_budget_still_gets_a_batch():
    assert [len(b) for b in plan_batches([300, 2], batch_size=8, max_tokens=100)] == [1, 1]


def test_collate_pads_to_the_longest_text_of_the_batch():
    input_ids, mask = collate([[5, 6, 7], [8], [9, 9]], np.array([0, 1]), pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _padded_tokens(lengths, batches):
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def test_a_batch_cost_cuts_mixed_lengths_into_narrow_batches():
    # A served batch: a few dozen texts of mixed lengths. Filled up to batch_size they
    # pad to their longest; cut by least padding plus cost, they pad far less.
    lengths = [int(n) for n in np.random.default_rng(0).integers(5, 75, size=54)]
    filled = plan_batches(lengths, batch_size=32, max_tokens=4096)
    cut = plan_batches(lengths, batch_size=32, max_tokens=4096, batch_cost=32)
    flat = np.concatenate(cut)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert all(len(batch) <= 32 for batch in cut)
    assert [len(batch) for batch in filled] == [32, 22]
    assert len(cut) > 2
    assert _padded_tokens(lengths, cut) + 32 * len(cut) < _padded_tokens(lengths, filled) + 64
    assert _padded_tokens(lengths, cut) < 1.2 * sum(lengths)


def test_a_batch_cost_still_fills_whole_batches_of_equal_lengths():
    lengths = [40] * 70 + [12] * 40
    batches = plan_batches(lengths, batch_size=32, max_tokens=1000, batch_cost=32)
    widths = [sorted({lengths[i] for i in batch}) for batch in batches]
    assert widths == [[40]] * 3 + [[12]] * 2  # as few batches as the budgets allow
    assert all(len(batch) * 40 <= 1000 for batch in batches[:3])


def test_a_batch_cost_keeps_both_budgets_and_lone_long_texts():
    lengths = [300, 2, 50, 50, 50, 7]
    batches = plan_batches(lengths, batch_size=2, max_tokens=100, batch_cost=1000)
    assert [lengths[i] for i in np.concatenate(batches)] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) <= 2
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    assert [len(batch) for batch in batches] == [1, 1, 2, 2]  # 4 batches, least padding
