"""Effective rank of a difference: the exact rule, and the randomized sketch's certified interval."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgit.diff.rank import EXACT_MAX_DIM, nonzero_rows, rank_of_delta
from mgit.diff.stats import compute_stats, estimate_rank

SKETCH_ONLY = {"exact_max_dim": 0, "exact_cheap_macs": 0, "exact_fallback_macs": 0}


def exact_rank(d: np.ndarray, rtol: float = 0.01) -> int:
    s = np.linalg.svd(d.astype(np.float64), compute_uv=False)
    return int(np.count_nonzero(s > rtol * s[0])) if s.size and s[0] > 0 else 0


def low_rank_plus_noise(m: int, n: int, rank: int, noise: float, seed: int) -> np.ndarray:
    """A rank-``rank`` matrix with singular values 1..0.1, plus Gaussian noise of relative size
    ``noise`` (far below the 1% threshold), in float32."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, rank)))
    v, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    s = np.geomspace(1.0, 0.1, rank)
    d = (u * s) @ v.T + noise * rng.standard_normal((m, n)) / np.sqrt(max(m, n))
    return d.astype(np.float32)


@pytest.mark.parametrize(("m", "n", "rank"), [(600, 520, 5), (700, 600, 40), (520, 900, 12)])
def test_sketch_finds_known_rank_of_low_rank_plus_noise(m: int, n: int, rank: int) -> None:
    d = low_rank_plus_noise(m, n, rank, 1e-4, seed=rank)
    est = rank_of_delta(d, **SKETCH_ONLY)
    assert est.method == "randomized"
    assert est.effective == exact_rank(d) == rank
    assert est.effective_min == est.effective_max == rank
    assert est.error == 0 and not est.lower_bound
    assert est.singular_values[0] == pytest.approx(1.0, rel=1e-3)


def test_small_matrices_are_exact_and_the_rule_is_the_smaller_dimension() -> None:
    d = low_rank_plus_noise(2000, EXACT_MAX_DIM, 7, 1e-4, seed=1)
    est = rank_of_delta(d, exact_cheap_macs=0)
    assert est.method == "exact" and est.effective == 7 and est.sketch == EXACT_MAX_DIM
    wide = low_rank_plus_noise(EXACT_MAX_DIM + 1, 1500, 7, 1e-4, seed=2)
    assert rank_of_delta(wide, exact_cheap_macs=0).method == "randomized"
    # cheap enough in multiply-adds: exact whatever the dimensions
    assert rank_of_delta(wide).method == "exact"


def test_zero_rows_are_dropped_before_the_rule() -> None:
    """An embedding of which a finetune changed a few rows is a small matrix."""
    d = np.zeros((20000, 600), np.float32)
    rows = np.arange(0, 20000, 97)
    d[rows] = low_rank_plus_noise(rows.size, 600, 9, 1e-4, seed=3)
    assert nonzero_rows(d).shape == (rows.size, 600)
    est = rank_of_delta(d, exact_cheap_macs=0)
    assert est.method == "exact" and est.effective == 9 and est.sketch == rows.size


def test_full_rank_sketch_reports_an_interval_or_falls_back_to_exact() -> None:
    rng = np.random.default_rng(4)
    d = rng.standard_normal((800, 600)).astype(np.float32)
    capped = rank_of_delta(d, max_sketch=32, **SKETCH_ONLY)
    assert capped.method == "randomized" and capped.lower_bound
    assert capped.effective_min <= exact_rank(d) <= capped.effective_max == 600
    fallback = rank_of_delta(d, exact_max_dim=0, exact_cheap_macs=0)
    assert fallback.method == "exact" and fallback.effective == exact_rank(d)


@settings(max_examples=25, derandomize=True, deadline=None)
@given(
    m=st.integers(40, 160),
    n=st.integers(40, 160),
    decay=st.floats(0.5, 8.0),
    seed=st.integers(0, 2**16),
    k=st.sampled_from([4, 8, 16, 32]),
)
def test_sketch_interval_always_holds_the_exact_rank(
    m: int, n: int, decay: float, seed: int, k: int
) -> None:
    """The interval is a bound, not a guess: it holds for any spectrum and any sketch size."""
    rng = np.random.default_rng(seed)
    r = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = np.exp(-decay * np.linspace(0, 1, r) * rng.uniform(0.5, 2.0))
    d = ((u * s) @ v.T).astype(np.float32)
    est = rank_of_delta(d, sketch_start=k, max_sketch=k, **SKETCH_ONLY)
    assert est.effective_min <= exact_rank(d) <= est.effective_max
    assert est.effective_min <= est.effective <= est.effective_max


def test_estimate_rank_and_compute_stats_agree() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 260)).astype(np.float32)
    b = a + low_rank_plus_noise(300, 260, 6, 1e-5, seed=6)
    assert estimate_rank(a, b).effective == 6
    s = compute_stats(a, b)
    assert s.rank is not None and s.rank.effective == 6 and s.rank.method == "exact"
    j = s.rank.to_json()
    assert j["effective_min"] == j["effective_max"] == 6


def test_rank_of_zero_and_of_huge_differences() -> None:
    assert rank_of_delta(np.zeros((30, 20), np.float32)).effective == 0
    a = np.zeros((4, 4), np.float64)
    b = np.full((4, 4), 1e39)
    s = compute_stats(a, b)  # beyond float32: statistics, no rank
    assert s.rank is None and s.l2_diff == pytest.approx(4e39)
    with pytest.raises(ValueError):
        rank_of_delta(np.zeros(5, np.float32))
