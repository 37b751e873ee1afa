"""Stratified splits and subsets: every part keeps the class proportions of the whole.

Each class's count in each part is its quota (class size x fraction) rounded down or up, so it is always within
one example of the target. Among those roundings the one chosen makes the part sizes match N x fraction and, where
it can, puts at least one example of every class in every non-empty part. Which examples go where is random but
a pure function of `seed`.
"""

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int | Sequence[int]) -> list[np.ndarray]:
    """Partitions range(len(labels)) into len(fractions) parts with the class proportions of `labels`.

    `fractions` are relative weights (normalised to sum 1); a zero weight gives an empty part. Returns sorted int64
    index arrays that are disjoint and together cover every index.
    """
    labels = np.asarray(labels)
    weights = np.asarray(fractions, dtype=np.float64)
    if weights.ndim != 1 or len(weights) == 0 or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    classes, class_of = np.unique(labels, return_inverse=True)
    class_sizes = np.bincount(class_of, minlength=len(classes))
    counts = _class_counts(class_sizes, weights, rng)

    parts: list[list[np.ndarray]] = [[] for _ in weights]
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(class_of == c))
        bounds = np.cumsum(counts[c])[:-1]
        for k, chunk in enumerate(np.split(members, bounds)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]


def stratified_subset(labels: np.ndarray, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """Sorted indices of `n` examples with the class proportions of `labels` (all of them when n >= len)."""
    total = len(labels)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    return stratified_split(labels, [n, total - n], seed)[0]


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total`, each its quota rounded down or up (Hamilton's method)."""
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _class_counts(class_sizes: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[classes, parts] counts: each entry its quota rounded down or up, rows summing to the class sizes.

    Starts from every quota rounded down; each class then needs `row_need` round-ups, each part `column_need`.
    Classes that would be missing from a part are rounded up there first (while the part still needs examples),
    the other round-ups go greedily to the parts that need the most, and `_rebalance` then moves round-ups between
    parts until every part has its target size (or no move can get closer).
    """
    quotas = class_sizes[:, None] * (weights / weights.sum())[None, :]
    floors = np.floor(quotas).astype(np.int64)
    remainders = quotas - floors
    can_round_up = (remainders > 1e-9) & (weights > 0)  # rounding up a whole quota would overshoot it
    rounded = np.zeros_like(can_round_up)
    row_need = class_sizes - floors.sum(axis=1)
    column_need = _largest_remainder(int(class_sizes.sum()), weights) - floors.sum(axis=0)

    visit = rng.permutation(len(class_sizes))
    for c in visit:
        for k in np.flatnonzero((floors[c] == 0) & can_round_up[c])[: row_need[c]]:
            if column_need[k] > 0:
                rounded[c, k], row_need[c], column_need[k] = True, row_need[c] - 1, column_need[k] - 1
    for c in visit:
        while row_need[c] > 0:
            options = np.flatnonzero(can_round_up[c] & ~rounded[c])
            if len(options) == 0:  # only reachable through float error in the quotas
                options = np.flatnonzero((weights > 0) & ~rounded[c])
            k = options[np.lexsort((-remainders[c, options], -column_need[options]))[0]]
            rounded[c, k], row_need[c], column_need[k] = True, row_need[c] - 1, column_need[k] - 1
    _rebalance(rounded, can_round_up, column_need, floors)
    return floors + rounded


def _rebalance(rounded: np.ndarray, can_round_up: np.ndarray, column_need: np.ndarray, floors: np.ndarray) -> None:
    """Moves round-ups from parts over their size to parts under it, along chains of parts (in place).

    A move takes one class's round-up from part u to part v, keeping the class's total; a chain u -> ... -> v
    found by breadth-first search over the (few) parts passes the surplus on. Moves that would leave a class
    without examples in u are used only when no other move exists.
    """
    while True:
        path = _transfer_path(rounded, can_round_up, column_need)
        if path is None:
            return
        for u, v in zip(path[:-1], path[1:], strict=True):
            movable = np.flatnonzero(rounded[:, u] & can_round_up[:, v] & ~rounded[:, v])
            c = movable[np.argmax(floors[movable, u] > 0)]  # first class that keeps an example in u
            rounded[c, u], rounded[c, v] = False, True
        column_need[path[0]] += 1
        column_need[path[-1]] -= 1


def _transfer_path(rounded: np.ndarray, can_round_up: np.ndarray, column_need: np.ndarray) -> list[int] | None:
    """Shortest chain of parts from one over its size to one under it, each step a possible move; else None."""
    movable = np.einsum("cu,cv->uv", rounded.astype(np.int64), (can_round_up & ~rounded).astype(np.int64)) > 0
    for start in np.flatnonzero(column_need < 0):
        previous = {int(start): -1}
        frontier = [int(start)]
        while frontier:
            u = frontier.pop(0)
            if column_need[u] > 0:
                path = [u]
                while previous[path[-1]] != -1:
                    path.append(previous[path[-1]])
                return path[::-1]
            for v in np.flatnonzero(movable[u]):
                if int(v) not in previous:
                    previous[int(v)] = u
                    frontier.append(int(v))
    return None


def stratified_folds(labels: np.ndarray, folds: int, seed: int | Sequence[int]) -> list[np.ndarray]:
    """`folds` disjoint parts of range(len(labels)) of (nearly) equal size, each with the class proportions.

    For k-fold cross-validation: fold K is the validation set of run K, the other folds its training set.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    return stratified_split(labels, [1.0] * folds, seed)
