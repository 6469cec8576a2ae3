"""Paired significance tests over per-query scores, in pure Python.

The paired t-test matches ``scipy.stats.ttest_rel`` (two-sided) without needing scipy; the
randomization test is Fisher's sign-flip test, seeded and reproducible; :func:`holm` corrects
several comparisons against one baseline.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITERATIONS = 10_000


def _differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """The pairwise differences ``a[i] - b[i]``, refusing samples of different lengths."""
    if len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    return [float(x) - float(y) for x, y in zip(a, b)]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Numerical Recipes, modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularized incomplete beta function :math:`I_x(a, b)`.

    Parameters
    ----------
    a, b : float
        Positive shape parameters.
    x : float
        The argument, in [0, 1].
    y : float or None
        ``1 - x`` when the caller knows it more precisely than ``1 - x`` computes it (for
        ``x`` close to 1); None computes it.

    Returns
    -------
    float
        :math:`I_x(a, b)`, accurate to about 1e-13.
    """
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def student_t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability :math:`P(|T| \\ge |t|)` of Student's t with ``df`` degrees of freedom.

    Parameters
    ----------
    t : float
        The statistic; infinite gives 0.
    df : float
        Degrees of freedom, positive.

    Returns
    -------
    float
        The two-sided p-value.
    """
    if math.isinf(t):
        return 0.0
    t2 = t * t
    return min(1.0, regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2)))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test of ``a`` against ``b``.

    Equals ``scipy.stats.ttest_rel(a, b).pvalue`` except at its undefined points.

    Parameters
    ----------
    a, b : sequence of float
        Paired samples (per-query scores of two systems), of the same length.

    Returns
    -------
    float
        The p-value. Fewer than two pairs, or all differences zero (identical systems, where
        scipy returns nan), give 1.0; equal non-zero differences give 0.0.

    Raises
    ------
    ValueError
        When the samples differ in length.
    """
    diffs = _differences(a, b)
    n = len(diffs)
    if n < 2 or all(d == 0.0 for d in diffs):
        return 1.0
    mean = math.fsum(diffs) / n
    variance = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
    if variance == 0.0:
        return 0.0
    t = mean / math.sqrt(variance / n)
    return student_t_sf2(t, n - 1)


def randomization_test(a: Sequence[float], b: Sequence[float], *, trials: int = 10_000,
                       seed: int = 0) -> float:
    """Two-sided p-value of Fisher's paired randomization (sign-flip) test on the mean difference.

    Each trial flips the sign of every difference with probability 1/2; the p-value is
    ``(trials whose |mean difference| >= observed - 1e-12, plus 1) / (trials + 1)``.

    Parameters
    ----------
    a, b : sequence of float
        Paired samples, of the same length.
    trials : int
        Number of random sign assignments.
    seed : int
        Seed of the ``random.Random`` drawing the signs: the same inputs and seed give the
        same p-value.

    Returns
    -------
    float
        The p-value, at least ``1 / (trials + 1)``; 1.0 when all differences are zero or there
        are no pairs.

    Raises
    ------
    ValueError
        When the samples differ in length or ``trials`` is not positive.
    """
    if trials < 1:
        raise ValueError(f"trials must be positive, got {trials}")
    diffs = _differences(a, b)
    n = len(diffs)
    if n == 0 or all(d == 0.0 for d in diffs):
        return 1.0
    total = math.fsum(diffs)
    # Flipping the differences in set F turns the sum into total - 2 * sum(F); sums over each
    # byte of the random bits come from 256-entry tables, so a trial costs n / 8 lookups.
    tables = []
    for start in range(0, n, 8):
        chunk = diffs[start:start + 8]
        table = [0.0] * 256
        for mask in range(1, 256):
            low = mask & -mask
            table[mask] = table[mask ^ low] + (chunk[low.bit_length() - 1] if low.bit_length() <= len(chunk) else 0.0)
        tables.append(table)
    threshold = abs(total) / n - 1e-12
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        bits = rng.getrandbits(n)
        flipped = 0.0
        for table in tables:
            flipped += table[bits & 255]
            bits >>= 8
        if abs(total - 2.0 * flipped) / n >= threshold:
            hits += 1
    return (hits + 1) / (trials + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Parameters
    ----------
    p_values : sequence of float
        Raw p-values of a family of tests.

    Returns
    -------
    list of float
        The step-down adjusted p-values: the i-th smallest is multiplied by ``m - i`` (0-based
        i), made monotone non-decreasing in that order, and capped at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def wins_ties_losses(a: Sequence[float], b: Sequence[float],
                     tolerance: float = 1e-9) -> tuple[int, int, int]:
    """Count the pairs where ``a`` beats, ties with and loses to ``b``.

    Parameters
    ----------
    a, b : sequence of float
        Paired samples, of the same length.
    tolerance : float
        Differences within this of zero count as ties.

    Returns
    -------
    tuple of int
        ``(wins, ties, losses)`` of ``a``.

    Raises
    ------
    ValueError
        When the samples differ in length.
    """
    wins = ties = losses = 0
    for d in _differences(a, b):
        if d > tolerance:
            wins += 1
        elif d < -tolerance:
            losses += 1
        else:
            ties += 1
    return wins, ties, losses


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its Student-t confidence interval.

    Parameters
    ----------
    values : sequence of float
        Independent measurements (e.g. one mean per seed).
    confidence : float
        The interval's coverage (0.95).

    Returns
    -------
    tuple of (float, float)
        ``(mean, half_width)``; the half-width is 0 for fewer than two values or no spread.

    Examples
    --------
    >>> mean, half = mean_interval([1.0, 2.0, 3.0])
    >>> mean, round(half, 3)
    (2.0, 2.484)
    """
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0.0:
        return mean, 0.0
    # The t quantile by bisection on the two-sided tail: P(|T| >= t) = 1 - confidence.
    low, high = 0.0, 1e3
    for _ in range(200):
        middle = (low + high) / 2
        if student_t_sf2(middle, n - 1) > 1.0 - confidence:
            low = middle
        else:
            high = middle
    return mean, high * sd / math.sqrt(n)
