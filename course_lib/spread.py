"""A quantity measured over several seeds, and the rule the book's prose follows when it compares two of them.

A sentence may say that one run beats another only where the difference of their means exceeds the sum of
their standard deviations over seeds; otherwise it may only say that the runs do not separate. The pages
state each comparison with ``claim_above`` or ``claim_within`` next to the sentence, so a build whose runs
do not support a sentence fails instead of printing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Tuple


class ClaimNotSupported(AssertionError):
    """A sentence compares two runs in a way their spread over seeds does not support."""


@dataclass(frozen=True)
class Spread:
    """The values of one quantity over seeds, with their mean and sample standard deviation."""

    values: Tuple[float, ...]

    @property
    def mean(self) -> float:
        """The mean over seeds."""
        return math.fsum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds (0 for a single value)."""
        if len(self.values) < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1))

    def text(self, digits: int = 1) -> str:
        """"mean ± std" rounded to ``digits`` decimals (the mean alone for a single value)."""
        if len(self.values) < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def spread_of(values: Iterable[float]) -> Spread:
    """The spread of ``values`` (at least one, all finite)."""
    values = tuple(float(v) for v in values)
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"a spread needs at least one value, all finite: {values}")
    return Spread(values)


def separates(a: Spread, b: Spread) -> bool:
    """Whether the means of ``a`` and ``b`` differ by more than the sum of their standard deviations."""
    return abs(a.mean - b.mean) > a.std + b.std


def _verdict(holds: bool, sentence: str, detail: str, strict: bool) -> None:
    """Raise (strict) or print that ``sentence`` is not supported; say nothing when it is."""
    if holds:
        return
    message = f"not supported by these runs: {sentence!r} ({detail})"
    if strict:
        raise ClaimNotSupported(message)
    print(message)


def claim_above(high: Spread, low: Spread, sentence: str, strict: bool = True) -> None:
    """Check a sentence saying ``high`` exceeds ``low``: its mean is larger by more than both spreads."""
    detail = f"{high.text(3)} against {low.text(3)}"
    _verdict(high.mean > low.mean and separates(high, low), sentence, detail, strict)


def claim_within(a: Spread, b: Spread, sentence: str, strict: bool = True) -> None:
    """Check a sentence saying ``a`` and ``b`` do not separate: they differ by no more than both spreads."""
    _verdict(not separates(a, b), sentence, f"{a.text(3)} against {b.text(3)}", strict)
