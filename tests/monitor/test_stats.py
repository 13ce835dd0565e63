"""Each drift test gives SciPy's numbers (and Evidently's formulas) on the same values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial import distance

from mlcycle.monitor import _stats

RNG_SEED = 20_240_601


def sample(size: int, *, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, size)


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (200_000, 200_000, 0.0),  # no drift: SciPy's Pelz-Good branch
        (200_000, 150_000, 0.01),  # moderate drift: the one-sided Smirnov tail
        (200_000, 50_000, 0.3),  # strong drift: a p-value of exactly 0
        (30_000, 9_000, 0.02),  # one side above the exact limit
        (5_000, 3_000, 0.05),  # both sides small: SciPy's exact distribution
    ],
)
def test_ks_matches_scipy(n1: int, n2: int, shift: float) -> None:
    reference, current = np.sort(sample(n1, seed=1)), sample(n2, shift=shift, seed=2)
    statistic, p_value = _stats.ks(reference, current)
    expected = stats.ks_2samp(reference, current)
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-9, rel=1e-7)


def test_ks_with_ties_on_both_sides_matches_scipy() -> None:
    rng = np.random.default_rng(RNG_SEED)
    reference = np.sort(rng.integers(0, 10, 40_000).astype(float))
    current = rng.integers(0, 11, 30_000).astype(float)
    statistic, p_value = _stats.ks(reference, current)
    expected = stats.ks_2samp(reference, current)
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-20, 20), min_size=1, max_size=60),
    st.lists(st.integers(-20, 20), min_size=1, max_size=60),
)
def test_ks_statistic_is_scipys_for_any_samples(left: list[int], right: list[int]) -> None:
    reference, current = np.sort(np.array(left, float)), np.sort(np.array(right, float))
    with warnings.catch_warnings():  # SciPy's p-value of tiny samples warns; D is all we read
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ks_2samp(reference, current, method="asymp").statistic
    assert _stats.ks_statistic(reference, current) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1_000, 5_000, 60_000])
@pytest.mark.parametrize("nxx", [2.3, 8.0, 60.0, 300.0])
def test_smirnov_matches_scipy(n: int, nxx: float) -> None:
    x = float(np.sqrt(nxx / n))
    assert _stats.smirnov(n, x) == pytest.approx(special.smirnov(n, x), rel=1e-8)


@pytest.mark.parametrize(("n", "x"), [(100, 0.2), (50_000, 0.0001), (50_000, 0.6), (50_000, 0.01)])
def test_kstwo_sf_matches_scipy_in_every_branch(n: int, x: float) -> None:
    assert _stats.kstwo_sf(x, n) == pytest.approx(stats.kstwo.sf(x, n), rel=1e-8, abs=1e-300)


def test_wasserstein_is_scipys_normed_by_the_reference_std() -> None:
    reference, current = np.sort(sample(50_000, seed=3)), sample(20_000, shift=0.2, seed=4)
    std = float(np.std(reference))
    expected = stats.wasserstein_distance(reference, current) / std
    assert _stats.wasserstein(reference, current, std=std) == pytest.approx(expected, rel=1e-12)


def test_wasserstein_of_a_constant_reference_uses_evidentlys_floor() -> None:
    reference, current = np.full(100, 2.0), np.full(50, 2.5)
    assert _stats.wasserstein(reference, current, std=0.0) == pytest.approx(0.5 / 0.001)


def test_chi2_matches_scipy_chisquare_on_scaled_reference_counts() -> None:
    reference, current = np.array([500.0, 300.0, 200.0]), np.array([40.0, 35.0, 25.0])
    expected = stats.chisquare(current, reference * current.sum() / reference.sum())
    statistic, p_value = _stats.chi2(reference, current)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-12)


def test_chi2_of_a_category_the_reference_never_saw_is_infinite() -> None:
    assert _stats.chi2(np.array([10.0, 0.0]), np.array([5.0, 5.0])) == (np.inf, 0.0)


def test_jensenshannon_is_scipys() -> None:
    left, right = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.2, 0.6])
    assert _stats.jensenshannon(left, right) == pytest.approx(distance.jensenshannon(left, right))


def test_psi_floors_empty_bins_as_evidently_does() -> None:
    reference, current = np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2])
    floored = np.array([0.5, 0.5, 0.0001])
    expected = float(np.sum((floored - current) * np.log(floored / current)))
    assert _stats.psi(reference, current) == pytest.approx(expected)


def test_histogram_shares_match_numpy_on_sturges_bins_over_both_sides() -> None:
    reference, current = np.sort(sample(10_000, seed=5)), sample(4_000, shift=0.5, seed=6)
    edges = np.histogram_bin_edges(np.concatenate((reference, current)), bins="sturges")
    ref_shares, cur_shares = _stats.histogram_shares(reference, current)
    np.testing.assert_array_equal(ref_shares, np.histogram(reference, edges)[0] / reference.size)
    np.testing.assert_array_equal(cur_shares, np.histogram(current, edges)[0] / current.size)
