"""Stratified splits keep every class's share within one example of its target, for any seed."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from dl4cv_jax.data.splits import stratified_split, stratified_subset

IMBALANCED = np.repeat(np.arange(5), [53, 7, 120, 3, 31])
FRACTIONS = [(0.6, 0.2, 0.2), (0.9, 0.1), (0.7, 0.0, 0.3), (0.5, 0.25, 0.15, 0.1)]


def shuffled(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("fractions", FRACTIONS)
def test_parts_are_disjoint_cover_everything_and_keep_class_shares(fractions):
    labels = shuffled(IMBALANCED)
    parts = stratified_split(labels, fractions, seed=3)
    assert len(parts) == len(fractions)
    everything = np.concatenate(parts)
    assert np.array_equal(np.sort(everything), np.arange(len(labels)))  # disjoint and complete
    for part, fraction in zip(parts, fractions, strict=True):
        assert abs(len(part) - fraction * len(labels)) < 1
        for c in np.unique(labels):
            target = fraction * np.sum(labels == c)
            assert abs(np.sum(labels[part] == c) - target) < 1, (c, fraction)


def test_class_counts_agree_with_sklearn_stratified_split():
    labels = shuffled(IMBALANCED, seed=1)
    _, sk_test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=0)
    _, ours = stratified_split(labels, [0.75, 0.25], seed=0)
    assert abs(len(ours) - len(sk_test)) <= 1
    for c in np.unique(labels):
        assert abs(np.sum(labels[ours] == c) - np.sum(labels[sk_test] == c)) <= 1


def test_deterministic_for_a_seed_and_different_for_another():
    labels = shuffled(IMBALANCED)
    first = stratified_split(labels, [0.6, 0.2, 0.2], seed=7)
    again = stratified_split(labels, [0.6, 0.2, 0.2], seed=7)
    other = stratified_split(labels, [0.6, 0.2, 0.2], seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_every_class_in_every_part_when_possible():
    labels = shuffled(np.repeat(np.arange(6), 5))  # quotas 3 / 1 / 1 per class
    for seed in range(5):
        for part in stratified_split(labels, [0.6, 0.2, 0.2], seed):
            assert set(labels[part]) == set(range(6))


def test_zero_weight_gives_an_empty_part():
    parts = stratified_split(shuffled(IMBALANCED), [0.8, 0.0, 0.2], seed=0)
    assert len(parts[1]) == 0 and len(parts[0]) + len(parts[2]) == len(IMBALANCED)


@pytest.mark.parametrize("n", [1, 10, 57, 213])
def test_subset_has_exact_size_and_class_shares(n):
    labels = shuffled(IMBALANCED)
    subset = stratified_subset(labels, n, seed=2)
    assert len(subset) == n and len(np.unique(subset)) == n
    for c in np.unique(labels):
        assert abs(np.sum(labels[subset] == c) - n * np.mean(labels == c)) < 1


def test_subset_larger_than_the_data_is_everything():
    assert np.array_equal(stratified_subset(IMBALANCED, 10_000, seed=0), np.arange(len(IMBALANCED)))


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(IMBALANCED, [0.5, -0.1], seed=0)


def test_stratified_folds_partition_with_class_shares_and_depend_on_the_seed():
    from dl4cv_jax.data.splits import stratified_folds

    labels = shuffled(IMBALANCED)
    folds = stratified_folds(labels, 5, seed=(1, 2))
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(labels)))
    for fold in folds:
        assert abs(len(fold) - len(labels) / 5) < 1
        for c in np.unique(labels):
            assert abs(np.sum(labels[fold] == c) - np.sum(labels == c) / 5) < 1
    again = stratified_folds(labels, 5, seed=(1, 2))
    other = stratified_folds(labels, 5, seed=(1, 3))
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other, strict=True))
    with pytest.raises(ValueError, match="folds must be >= 2"):
        stratified_folds(labels, 1, seed=0)
