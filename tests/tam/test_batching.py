import itertools

import numpy as np
import pytest

from unigen.tam.batching import length_groups, padding_groups


def cost(lengths, groups, overhead):
    return sum(overhead + len(g) * int(lengths[g].max()) for g in groups)


def brute_force_best(lengths, overhead):
    """The cheapest split of the sorted lengths into contiguous runs, by trying every set of cut points."""
    s = np.sort(lengths)
    n, best = len(s), None
    for k in range(n):
        for cuts in itertools.combinations(range(1, n), k):
            bounds = (0, *cuts, n)
            c = sum(overhead + (b - a) * int(s[b - 1]) for a, b in zip(bounds, bounds[1:]))
            best = c if best is None else min(best, c)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_length_groups_is_the_cheapest_split_and_covers_every_index(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 129, size=9)
    groups = length_groups(lengths, overhead=64)
    assert sorted(np.concatenate(groups).tolist()) == list(range(9))
    assert cost(lengths, groups, 64) == brute_force_best(lengths, 64)
    maxima = [int(lengths[g].max()) for g in groups]
    assert maxima == sorted(maxima)


def test_equal_lengths_stay_one_pass_and_mixed_ones_split():
    assert len(length_groups([128] * 64)) == 1
    assert length_groups([]) == []
    mixed = np.array([128] * 12 + [20] * 20)
    groups = length_groups(mixed, overhead=512)
    assert [sorted(set(mixed[g].tolist())) for g in groups] == [[20], [128]]
    # a large overhead keeps the batch whole
    assert len(length_groups(mixed, overhead=10_000)) == 1


def test_padding_groups_trim_each_pass_to_its_longest_row():
    mask = np.zeros((4, 10), dtype=np.int64)
    for row, n in enumerate([10, 2, 3, 9]):
        mask[row, :n] = 1
    groups = padding_groups(mask, overhead=1)
    assert sorted(np.concatenate([r for r, _ in groups]).tolist()) == [0, 1, 2, 3]
    for rows, width in groups:
        assert width == mask[rows].sum(axis=1).max()
        assert mask[rows, width:].sum() == 0  # only padding is cut
    # left padding (or holes) is not cut: one pass at the full width
    left = mask[:, ::-1]
    assert [(r.tolist(), w) for r, w in padding_groups(left, overhead=1)] == [([0, 1, 2, 3], 10)]


def test_a_very_large_batch_is_cut_into_passes_of_bounded_rows():
    from unigen.tam.batching import MAX_PASS_ROWS

    groups = length_groups([7] * (2 * MAX_PASS_ROWS + 3))
    assert max(len(g) for g in groups) <= MAX_PASS_ROWS
    assert sum(len(g) for g in groups) == 2 * MAX_PASS_ROWS + 3
