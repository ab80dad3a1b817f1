"""The spread over seeds and the comparison rule the book's sentences are checked with."""

import math

import numpy as np
import pytest

from course_lib.spread import ClaimNotSupported, claim_above, claim_within, separates, spread_of


def test_mean_and_std_match_numpy():
    """The mean and the sample standard deviation (ddof=1) are numpy's."""
    values = [80.3, 81.6, 79.0]
    s = spread_of(values)
    assert s.mean == pytest.approx(np.mean(values)) and s.std == pytest.approx(np.std(values, ddof=1))
    assert s.text() == "80.3 ± 1.3" and s.text(2) == "80.30 ± 1.30"


def test_a_single_value_has_no_spread_and_prints_alone():
    """One seed (quick mode): standard deviation 0 and no "±" in the text."""
    assert spread_of([86.06]).std == 0.0 and spread_of([86.06]).text() == "86.1"


@pytest.mark.parametrize("values", [[], [1.0, math.nan], [math.inf]])
def test_no_spread_of_nothing_or_of_non_finite_values(values):
    """A diverged quantity (nan, inf) or no value at all is refused, not averaged."""
    with pytest.raises(ValueError):
        spread_of(values)


def test_two_runs_separate_only_beyond_the_sum_of_their_spreads():
    """83.1 ± 0.1 against 80.3 ± 1.3 separates; 88.7 ± 0.1 against 88.3 ± 0.4 does not."""
    assert separates(spread_of([83.0, 83.2, 83.0]), spread_of([80.3, 81.6, 79.0]))
    assert not separates(spread_of([88.6, 88.9, 88.7]), spread_of([87.9, 88.5, 88.7]))


def test_claims_raise_when_the_runs_do_not_support_them(capsys):
    """claim_above needs the right order and a separation; claim_within needs none; non-strict only prints."""
    high, low, close = spread_of([83.0, 83.2, 83.0]), spread_of([80.3, 81.6, 79.0]), spread_of([80.0, 80.4, 81.0])
    claim_above(high, low, "residual beats plain")
    claim_within(low, close, "the two do not separate")
    with pytest.raises(ClaimNotSupported, match="plain beats residual"):
        claim_above(low, high, "plain beats residual")
    with pytest.raises(ClaimNotSupported):
        claim_above(low, close, "a difference inside the spread")
    with pytest.raises(ClaimNotSupported):
        claim_within(high, low, "no difference")
    claim_above(low, high, "printed only", strict=False)
    assert "not supported by these runs: 'printed only'" in capsys.readouterr().out
