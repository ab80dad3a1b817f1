"""Tolerance bounds with a known false-alarm rate (Chernoff for normal draws, Hoeffding for bounded ones)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Tuple

# Probability that one bound rejects a correct initializer. A grading run tests a few hundred bounds,
# so a correct solution fails less than once in a million gradings.
FALSE_ALARM_PER_BOUND = 1e-9


def _solve_increasing(f: Callable[[float], float], target: float, high: float) -> float:
    """The x in (0, high) where the increasing function f reaches ``target`` (bisection)."""
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) < target else (low, mid)
    return high


@lru_cache(maxsize=4096)
def second_moment_tolerance(n: int, false_alarm: float = FALSE_ALARM_PER_BOUND) -> Tuple[float, float]:
    """(below, above): relative bounds on mean(w^2) / sigma^2 for n i.i.d. draws of variance sigma^2.

    A correct normal or uniform initializer leaves the bounds with probability below ``false_alarm``
    on each side: Chernoff bounds of the chi-square distribution for normal weights, Hoeffding's bound
    (w^2 lies in [0, 3 sigma^2]) for uniform ones; the wider of the two is used.
    """
    log_term = math.log(1 / false_alarm)
    above = _solve_increasing(lambda e: n / 2 * (e - math.log1p(e)), log_term, 10.0)
    below = _solve_increasing(lambda e: n / 2 * (-e - math.log1p(-e)), log_term, 1 - 1e-12)
    hoeffding = 3 * math.sqrt(log_term / (2 * n))
    return max(below, hoeffding), max(above, hoeffding)


def mean_tolerance(n: int, false_alarm: float = FALSE_ALARM_PER_BOUND) -> float:
    """Bound on |mean(w)| / sigma: Hoeffding for uniform weights (wider than the normal tail)."""
    return math.sqrt(6 * math.log(2 / false_alarm) / n)


def variance_bounds(n: int) -> Tuple[float, float]:
    """Bounds on (centred sample variance) / sigma^2 for a correct initializer: mean^2 widens the lower one."""
    below, above = second_moment_tolerance(n)
    return 1 - below - mean_tolerance(n) ** 2, 1 + above


def fraction_tolerance(n: int, false_alarm: float = FALSE_ALARM_PER_BOUND) -> float:
    """Dvoretzky-Kiefer-Wolfowitz bound: an empirical distribution function of n draws stays this close."""
    return math.sqrt(math.log(2 / false_alarm) / (2 * n))


def normal_within(c: float) -> float:
    """P(|Z| <= c) for a standard normal Z."""
    return math.erf(c / math.sqrt(2))


def uniform_within(c: float) -> float:
    """P(|U| <= c) for U uniform with variance 1 (on [-sqrt 3, sqrt 3])."""
    return min(max(c, 0.0) / math.sqrt(3), 1.0)


def within_one_sd_bounds(n: int, within: Callable[[float], float], mean_ratio: float = 0.0) -> Tuple[float, float]:
    """Bounds on the fraction of |w - mean| <= sd (sample mean and sd) for n draws of a distribution.

    ``mean_ratio`` is the observed |mean| / sd. The sample sd lies within [sqrt(low), sqrt(high)] sigma
    (variance_bounds, each side failing with probability 1e-9); |w - mean| <= sd lies between
    |w| <= sd (1 - mean_ratio) and |w| <= sd (1 + mean_ratio); the fraction of |w| <= t deviates from
    its probability by at most the DKW bound for every t at once (failing with probability 1e-9).
    """
    low, high = variance_bounds(n)
    slack = fraction_tolerance(n)
    return (within(math.sqrt(max(low, 0.0)) * (1 - mean_ratio)) - slack,
            within(math.sqrt(high) * (1 + mean_ratio)) + slack)
