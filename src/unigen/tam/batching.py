"""How a batch of texts is cut into forward passes by token length (no torch: the ONNX loader uses it too).

A right-padded batch costs ``rows x longest`` token positions, so one long review among short tweets makes
every tweet pay for its length. :func:`length_groups` cuts a batch of known token lengths into groups of
similar length, at the minimum of ``sum over groups (overhead + rows_g * longest_g)``; the overhead stands
for the fixed cost of a forward pass (measured in token positions), so a batch of equal lengths stays one
pass and only a mixed one is split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_PASS_ROWS", "PASS_OVERHEAD_TOKENS", "length_groups", "padding_groups"]

#: fixed cost of one forward pass in token positions: splitting must save at least this much padding
PASS_OVERHEAD_TOKENS = 512
#: most rows in one pass (bounds the search to O(N * MAX_PASS_ROWS) for a caller's very large batch)
MAX_PASS_ROWS = 512


def length_groups(lengths: Sequence[int] | np.ndarray, overhead: int | None = None) -> list[np.ndarray]:
    """Indices into ``lengths`` (token counts of one batch), grouped for separate forward passes.

    Sorted by length, the groups are the contiguous runs of at most :data:`MAX_PASS_ROWS` rows that
    minimise ``C = sum_g (overhead + n_g * max_len_g)`` (exact, by dynamic programming over the sorted
    lengths: ``best[j] = min_i best[i] + overhead + (j - i) * len_(j-1)``). Every index appears once;
    each group is in ascending length order, and groups are returned shortest first. ``overhead``:
    default :data:`PASS_OVERHEAD_TOKENS`.
    """
    overhead = PASS_OVERHEAD_TOKENS if overhead is None else overhead
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(lengths, kind="stable")
    sorted_len = lengths[order]
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        first = max(0, j - MAX_PASS_ROWS)
        starts = np.arange(first, j)
        costs = best[first:j] + overhead + (j - starts) * sorted_len[j - 1]
        best_start = int(costs.argmin())
        cut[j], best[j] = first + best_start, costs[best_start]
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def padding_groups(mask: np.ndarray, overhead: int | None = None) -> list[tuple[np.ndarray, int]]:
    """``[(rows, width)]``: the forward passes of a right-padded batch with attention mask ``mask``
    ``(N, L)``: ``inputs[rows, :width]`` for each group of :func:`length_groups`. A batch that is not
    right-padded (some row's mask is not ones then zeros) stays one pass at its full width."""
    mask = np.asarray(mask)
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask != 0, np.arange(mask.shape[1])[None, :] < lengths[:, None]):
        return [(np.arange(len(mask)), mask.shape[1])]
    return [(rows, max(int(lengths[rows].max()), 1)) for rows in length_groups(lengths, overhead)]
