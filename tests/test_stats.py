"""Binomial confidence intervals: hand-computed values, symmetry, and bad input."""

from __future__ import annotations

import math

import pytest

from overlooked.stats import accuracy_interval, clopper_pearson_interval, wilson_interval

Z95 = 1.959963984540054  # standard normal quantile at 0.975


def test_wilson_matches_the_formula_by_hand():
    # k = 90, n = 100: centre (0.9 + z^2/200) / (1 + z^2/100), half z sqrt(0.0009 + z^2/40000) / (1 + z^2/100)
    d = 1 + Z95**2 / 100
    centre, half = (0.9 + Z95**2 / 200) / d, Z95 * math.sqrt(0.0009 + Z95**2 / 40000) / d
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(centre - half, abs=1e-12) and high == pytest.approx(centre + half, abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.8256, 0.9448)
    # k = 0: the upper end is z^2/n / (1 + z^2/n)
    assert wilson_interval(0, 10) == (0.0, pytest.approx((Z95**2 / 10) / (1 + Z95**2 / 10), abs=1e-12))


def test_clopper_pearson_closed_forms_at_the_edges():
    # k = 0: P(X <= 0) = (1 - p)^n = alpha/2  =>  p = 1 - (alpha/2)^(1/n); k = n is the mirror image.
    assert clopper_pearson_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** 0.1, abs=1e-9))
    assert clopper_pearson_interval(10, 10) == (pytest.approx(0.025 ** 0.1, abs=1e-9), 1.0)
    # k = 1, n = 1: P(X >= 1) = p = alpha/2 at the lower end.
    assert clopper_pearson_interval(1, 1)[0] == pytest.approx(0.025, abs=1e-9)


def test_intervals_are_symmetric_and_exact_is_wider():
    for k, n in ((3, 17), (90, 100), (50, 100)):
        lo, hi = wilson_interval(k, n)
        lo2, hi2 = wilson_interval(n - k, n)
        assert lo == pytest.approx(1 - hi2, abs=1e-12) and hi == pytest.approx(1 - lo2, abs=1e-12)
        cl, ch = clopper_pearson_interval(k, n)
        assert cl < lo < k / n < hi < ch


def test_accuracy_interval_and_bad_input():
    r = accuracy_interval(0.87, 100, method="clopper_pearson")
    assert (r["k"], r["n"]) == (87, 100) and (r["low"], r["high"]) == clopper_pearson_interval(87, 100)
    with pytest.raises(ValueError, match="not a whole number"):
        accuracy_interval(0.875, 100)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=1.0)
    with pytest.raises(ValueError, match="method must be"):
        accuracy_interval(0.5, 10, method="wald")


def test_clopper_pearson_on_a_large_test_set():
    """n = 10,000 (MNIST's test set): math.comb as a float overflowed from n = 1030. The ends equal the beta
    quantiles Beta(k, n - k + 1).ppf(0.025) and Beta(k + 1, n - k).ppf(0.975) (scipy.stats.beta, computed once:
    0.8939531000964005, 0.9058127882662164; 0.9934133735709201, 0.9962866938204445)."""
    assert clopper_pearson_interval(9000, 10000) == (pytest.approx(0.8939531000964005, abs=1e-10), pytest.approx(0.9058127882662164, abs=1e-10))
    assert accuracy_interval(0.995, 10000, method="clopper_pearson")["low"] == pytest.approx(0.9934133735709201, abs=1e-10)
    assert clopper_pearson_interval(9950, 10000)[1] == pytest.approx(0.9962866938204445, abs=1e-10)


def test_wilson_lower_end_at_one_success_by_hand():
    """k = 1 of n = 10 (only k = 0 has a lower end of exactly 0): ((p + z^2/2n) - z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    low = ((0.1 + Z95**2 / 20) - Z95 * math.sqrt(0.009 + Z95**2 / 400)) / (1 + Z95**2 / 10)
    assert wilson_interval(1, 10)[0] == pytest.approx(low, abs=1e-12) and round(low, 4) == 0.0179


def test_no_trials_is_a_value_error_and_an_accuracy_rounds_to_its_count():
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="n > 0"):
        accuracy_interval(0.0, 0)
    assert 0.29 * 100 < 29  # 28.999999999999996: the count is rounded, not truncated
    r = accuracy_interval(0.29, 100)
    assert r["k"] == 29 and r["low"] == wilson_interval(29, 100)[0]
