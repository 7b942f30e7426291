"""Intervals for final accuracies that respect [0, 1] and the pairing of a comparison.

The data of one preset is a matrix ``C [S, I]``: seed s, held-out item i, and the item's score in
that run (greedy correctness 0/1, or the item's unbiased pass@k estimate). Every run and the base
model are evaluated on the same items, and runs with the same seed share the training prompts'
order and the sampler's seed, so two presets are compared *paired*: on the same items and seeds.

Two-level bootstrap (Davison & Hinkley 1997, sec. 3.8, resampling both random factors):
each replicate draws S seeds with replacement and I items with replacement and takes the mean of
``C`` over the drawn (seed, item) cells; the 95% interval is the 2.5th and 97.5th percentiles over
``n_boot`` replicates (percentile bootstrap). A mean of scores in [0, 1] stays in [0, 1], so the
interval does too. For a paired difference A - B the *same* draws of items and of seeds are used
for both (the seed draw is over the seeds both have), so what is shared cancels. With 2-3 seeds the
seed level is coarse (few distinct draws); the interval is then mostly the items' uncertainty plus
the spread between the few seeds, and it is reported as such, not as a t interval with 1-2 degrees
of freedom.
"""
from __future__ import annotations

import math

import numpy as np


def _draws(n_boot: int, S: int, I: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicities of each seed [B, S] and each item [B, I] in every bootstrap replicate."""
    seeds = rng.multinomial(S, np.full(S, 1.0 / S), size=n_boot).astype(np.float64)
    items = rng.multinomial(I, np.full(I, 1.0 / I), size=n_boot).astype(np.float64)
    return seeds, items


def _replicates(C: np.ndarray, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mean of ``C [S, I]`` under each replicate's multiplicities -> [B]."""
    S, I = C.shape
    return np.einsum("bs,si,bi->b", seeds, C, items) / (S * I)


def bootstrap_mean(C, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): mean of ``C [S, I]`` and its 95% two-level percentile-bootstrap interval."""
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 1:
        C = C[None]
    if C.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    reps = _replicates(C, *_draws(n_boot, *C.shape, rng))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(C.mean()), float(lo), float(hi)


def bootstrap_paired_diff(A, B, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi) of mean(A) - mean(B) for ``A [S, I]`` and ``B [S, I]`` (row s of both = the
    same seed, column i = the same item), with the same bootstrap draws for both.

    ``B`` may have a single row (the base model, evaluated once): it is then shared by every seed
    of ``A`` and only the item draws apply to it.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    A, B = (A[None] if A.ndim == 1 else A), (B[None] if B.ndim == 1 else B)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"paired difference needs the same items: {A.shape[1]} vs {B.shape[1]}")
    if B.shape[0] not in (1, A.shape[0]):
        raise ValueError(f"paired difference needs the same seeds: {A.shape[0]} vs {B.shape[0]}")
    rng = np.random.default_rng(seed)
    seeds, items = _draws(n_boot, A.shape[0], A.shape[1], rng)
    if B.shape[0] == 1:
        diff = _replicates(A, seeds, items) - _replicates(B, np.ones((n_boot, 1)), items)
    else:
        diff = _replicates(A - B, seeds, items)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(A.mean() - B.mean()), float(lo), float(hi)


def significant(lo: float, hi: float) -> bool:
    """True when a 95% interval of a difference excludes 0."""
    return math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)
