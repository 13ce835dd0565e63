"""The drift tests, on a prepared reference: SciPy's numbers without SciPy's repeated sorting.

Each test gives what SciPy (and Evidently, which calls SciPy) gives on the same
values, but reads the reference from its sorted values or counts:

- ``ks``: the two-sample Kolmogorov-Smirnov statistic of ``scipy.stats.ks_2samp``
  (two-sided), exact: only the window is sorted, and the reference ECDF is read
  by binary search at the window's distinct values and just below them, where
  the largest gaps lie. The p-value follows ``method="auto"``: the exact
  distribution when both sides have at most 10,000 values (SciPy itself is
  called then, cheap at that size), else ``kstwo.sf(D, round(n*m/(n+m)))``,
  in which the one-sided Smirnov tail (SciPy's O(n) scalar loop, seconds at a
  million rows) is summed here in log space with numpy instead.
- ``wasserstein``: ``scipy.stats.wasserstein_distance`` divided by the
  reference's population std (at least 0.001), as Evidently norms it; the two
  sorted sides are merged in linear time instead of sorted together.
- ``chi2``: ``scipy.stats.chisquare`` of the window's category counts against
  the reference's, scaled to the window's size (Evidently's expected counts).
- ``jensenshannon`` and ``psi``: on Evidently's bins (Sturges' rule over both
  sides for numbers with more than 20 distinct reference values, else one bin
  per value), with ``scipy.spatial.distance.jensenshannon`` and Evidently's
  PSI formula with its small-value floor for empty bins.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special, stats
from scipy.spatial import distance

from mlcycle.monitor._frames import Numbers

__all__ = [
    "EXACT_KS_LIMIT",
    "align_counts",
    "chi2",
    "histogram_shares",
    "jensenshannon",
    "ks",
    "ks_statistic",
    "kstwo_sf",
    "psi",
    "smirnov",
    "wasserstein",
]

EXACT_KS_LIMIT = 10_000  # scipy.stats.ks_2samp's MAX_AUTO_N
_SMALL_N = 140  # below this SciPy's own kstwo is exact and cheap
_SMIRNOV_FROM = 2.2  # SciPy's cut-over to 2 * smirnov(n, x) for the tail
_ZERO_FROM = 370.0  # ... and to a p-value of exactly 0
_WASSERSTEIN_FLOOR = 0.001
_SEPARATE_BINS = 20  # Evidently bins numbers with more distinct values than this


def ks(reference: Numbers, current: Numbers) -> tuple[float, float]:
    """KS statistic and p-value of sorted ``reference`` against unsorted ``current``."""
    window = np.sort(current)
    n1, n2 = reference.size, window.size
    if max(n1, n2) <= EXACT_KS_LIMIT:
        with warnings.catch_warnings():  # SciPy falls back to its asymptotic method, and says so
            warnings.simplefilter("ignore", RuntimeWarning)
            exact = stats.ks_2samp(reference, window)
        return float(exact.statistic), float(exact.pvalue)
    d = ks_statistic(reference, window)
    m, n = sorted((float(n1), float(n2)), reverse=True)
    return d, kstwo_sf(d, round(m * n / (m + n)))


def ks_statistic(reference: Numbers, window: Numbers) -> float:
    """The two-sided KS statistic D of two sorted samples, from the window's distinct values.

    The reference ECDF is read at each distinct window value and just below
    it: the largest gaps between two step functions lie there.
    """
    n1, n2 = reference.size, window.size
    starts = np.flatnonzero(window[1:] != window[:-1]) + 1
    if starts.size + 1 < n2:  # ties: the window's ECDF steps only at its distinct values
        distinct = window[np.concatenate(([0], starts))]
        window_cdf = np.concatenate((starts, [n2])) / n2
    else:
        distinct, window_cdf = window, np.arange(1, n2 + 1) / n2
    after = np.searchsorted(reference, distinct, side="right")
    before = after.copy()  # differs only where the reference holds the window value itself
    shared = np.flatnonzero(reference[np.maximum(after - 1, 0)] == distinct)
    before[shared] = np.searchsorted(reference, distinct[shared], side="left")
    at, below = after / n1, before / n1
    above = float(np.max(at - window_cdf))  # reference ahead, at a window value
    ahead = float(below[0])  # reference ahead, just below the first window value
    if distinct.size > 1:
        ahead = max(ahead, float(np.max(below[1:] - window_cdf[:-1])))
    behind = float(np.max(window_cdf - at))
    return min(max(above, ahead, behind, 0.0), 1.0)


def kstwo_sf(x: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(x, n)``, with the slow one-sided tail computed by :func:`smirnov`."""
    if x <= 0.0 or x >= 1.0 or n <= _SMALL_N or n * x <= 1.0 or n * x >= n - 1:
        return float(np.clip(stats.kstwo.sf(x, n), 0.0, 1.0))
    nxx = n * x * x
    if x >= 0.5 or _SMIRNOV_FROM <= nxx < _ZERO_FROM:
        return float(np.clip(2.0 * smirnov(n, x), 0.0, 1.0))
    if nxx >= _ZERO_FROM:
        return 0.0
    return float(np.clip(stats.kstwo.sf(x, n), 0.0, 1.0))


def smirnov(n: int, x: float) -> float:
    """``scipy.special.smirnov(n, x)``: P(D_n+ >= x), by the Birnbaum-Tingey sum in log space.

    Every term is positive, so the sum of exponentials is well conditioned;
    the terms are computed with ``gammaln`` at once instead of one by one.

    >>> round(smirnov(1000, 0.05), 10) == round(float(special.smirnov(1000, 0.05)), 10)
    True
    """
    j = np.arange(0, math.floor(n * (1.0 - x)) + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_base = np.log(np.maximum((n - j - n * x) / n, 0.0))
        terms = (
            special.gammaln(n + 1.0)
            - special.gammaln(j + 1.0)
            - special.gammaln(n - j + 1.0)
            + (n - j) * log_base
            + (j - 1.0) * np.log(x + j / n)
        )
    return float(np.exp(special.logsumexp(terms) + math.log(x)))


def wasserstein(reference: Numbers, current: Numbers, *, std: float) -> float:
    """``wasserstein_distance(reference, current) / max(std, 0.001)``; ``reference`` sorted."""
    window = np.sort(current)
    n1, n2 = reference.size, window.size
    slots = np.searchsorted(reference, window, side="right") + np.arange(n2)
    from_window = np.zeros(n1 + n2, dtype=bool)
    from_window[slots] = True
    merged = np.empty(n1 + n2, dtype=np.float64)
    merged[slots] = window
    merged[~from_window] = reference
    window_seen = np.cumsum(from_window)[:-1]
    reference_seen = np.arange(1, n1 + n2) - window_seen
    gaps = np.abs(reference_seen / n1 - window_seen / n2)
    distance_ = float(np.sum(np.multiply(gaps, np.diff(merged))))
    return distance_ / max(std, _WASSERSTEIN_FLOOR)


def align_counts(
    reference: tuple[npt.NDArray[Any], npt.NDArray[np.int64]],
    current: tuple[npt.NDArray[Any], npt.NDArray[np.int64]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[Any]]:
    """Both sides' counts over the union of their keys; the third item lists window-only keys."""
    ref_keys, ref_counts = reference
    positions = {key: i for i, key in enumerate(ref_keys.tolist())}
    extra: list[Any] = []
    window = np.zeros(len(positions), dtype=np.float64)
    extra_counts: list[int] = []
    for key, count in zip(current[0].tolist(), current[1].tolist(), strict=True):
        slot = positions.get(key)
        if slot is None:
            extra.append(key)
            extra_counts.append(count)
        else:
            window[slot] = count
    ref_all = np.concatenate((ref_counts.astype(np.float64), np.zeros(len(extra))))
    window_all = np.concatenate((window, np.asarray(extra_counts, dtype=np.float64)))
    return ref_all, window_all, extra


def chi2(
    reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """``scipy.stats.chisquare(current, reference * n_current / n_reference)``.

    A category the reference never saw makes the statistic infinite and the
    p-value 0, as in SciPy (without its division warning). With a single
    category on both sides there is nothing to compare: 0 and a p-value of 1
    (SciPy gives NaN there).
    """
    expected = reference * (current.sum() / reference.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        parts = (current - expected) ** 2 / expected
    parts[(current == 0) & (expected == 0)] = 0.0
    statistic = float(np.sum(parts))
    if current.size < 2:
        return statistic, 1.0
    return statistic, float(special.chdtrc(current.size - 1, statistic))


def histogram_shares(
    reference: Numbers, current: Numbers
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Shares of sorted ``reference`` and of ``current`` in Evidently's Sturges bins over both."""
    low = min(float(reference[0]), float(current.min()))
    high = max(float(reference[-1]), float(current.max()))
    width = (high - low) / (np.log2(reference.size + current.size) + 1.0)
    bins = math.ceil((high - low) / width) if width else 1
    edges = np.linspace(low, high, bins + 1)
    cuts = np.concatenate(
        (
            np.searchsorted(reference, edges[:-1], side="left"),
            np.searchsorted(reference, edges[-1:], side="right"),
        )
    )
    ref_counts = np.diff(cuts)
    slots = np.minimum(np.searchsorted(edges, current, side="right") - 1, bins - 1)
    window_counts = np.bincount(slots, minlength=bins)
    return ref_counts / reference.size, window_counts / current.size


def jensenshannon(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> float:
    """``scipy.spatial.distance.jensenshannon`` of two share vectors (natural log)."""
    return float(distance.jensenshannon(reference, current))


def psi(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> float:
    """Evidently's population stability index: empty bins get a small share first."""
    ref, window = _floored(reference), _floored(current)
    return float(np.sum((ref - window) * np.log(ref / window)))


def _floored(shares: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    filled = shares[shares != 0]
    if filled.size in {0, shares.size}:
        return shares
    smallest = float(filled.min())
    floor = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, floor, shares)
