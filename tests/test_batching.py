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
