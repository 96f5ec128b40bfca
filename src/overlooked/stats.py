"""Confidence intervals for an accuracy measured on ``n`` test examples (a binomial proportion ``k / n``).

On a small test set (N-MNIST's 100 recordings, a gas batch of 161) the sampling error of an accuracy is
large: 90 of 100 right is anything from about 82.6% to 94.5% at 95% confidence. Two standard intervals:

- :func:`wilson_interval` (Wilson 1927): inverts the normal approximation's score test. Never leaves
  [0, 1] and keeps close to nominal coverage even for small ``n`` or ``k`` near 0 or ``n``; the default.
- :func:`clopper_pearson_interval` (Clopper and Pearson 1934): inverts two one-sided exact binomial tests.
  Guaranteed coverage of at least the nominal level, so it is wider (conservative).

Both are computed with the standard library only (no scipy).
"""

from __future__ import annotations

import math
from statistics import NormalDist


def _check(k: int, n: int, confidence: float) -> None:
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials.

    ``(p + z^2 / 2n  ±  z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n)`` with ``p = k / n`` and ``z`` the
    standard normal quantile at ``(1 + confidence) / 2`` (1.95996 for 95%).

    Args:
        k: successes (correctly classified examples).
        n: trials (test examples).
        confidence: coverage of the interval.

    Returns:
        ``(low, high)`` as fractions in [0, 1].

    >>> low, high = wilson_interval(90, 100)
    >>> round(low, 4), round(high, 4)
    (0.8256, 0.9448)
    >>> wilson_interval(0, 10)[0], round(wilson_interval(0, 10)[1], 4)  # z^2/n / (1 + z^2/n)
    (0.0, 0.2775)
    """
    _check(k, n, confidence)
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the lower (upper) end is exactly 0 (1); rounding would leave it 1e-17 off.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term with each term formed in logarithms (``math.comb``
    as a float overflows from n = 1030, below MNIST's 10,000 test examples).

    >>> round(_binom_cdf(5000, 10000, 0.5), 6)
    0.503989
    """
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    lf = math.lgamma(n + 1)
    return min(1.0, math.fsum(math.exp(lf - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq) for i in range(k + 1)))


def _bisect(f, lo: float, hi: float, iterations: int = 100) -> float:
    """Root of the decreasing-in-p function ``f`` on [lo, hi] by bisection (f(lo) > 0 > f(hi))."""
    for _ in range(iterations):
        mid = (lo + hi) / 2.0
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for ``k`` successes in ``n`` trials.

    The lower end is the ``p`` with ``P(X >= k | p) = alpha / 2`` (0 when ``k = 0``), the upper end the ``p``
    with ``P(X <= k | p) = alpha / 2`` (1 when ``k = n``), ``alpha = 1 - confidence``; found by bisection on
    the exact binomial tail, so no beta-quantile library is needed.

    >>> round(clopper_pearson_interval(0, 10)[1], 4)  # 1 - 0.025 ** (1/10)
    0.3085
    >>> low, high = clopper_pearson_interval(90, 100)
    >>> round(low, 4), round(high, 4)
    (0.8238, 0.951)
    """
    _check(k, n, confidence)
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else _bisect(lambda p: tail - (1.0 - _binom_cdf(k - 1, n, p)), 0.0, 1.0)
    high = 1.0 if k == n else _bisect(lambda p: _binom_cdf(k, n, p) - tail, 0.0, 1.0)
    return low, high


def accuracy_interval(accuracy: float, n: int, confidence: float = 0.95, method: str = "wilson") -> dict[str, float | int | str]:
    """Interval for an accuracy reported as a fraction of ``n`` examples (``k = round(accuracy * n)``).

    >>> accuracy_interval(0.9, 100)["low"] == wilson_interval(90, 100)[0]
    True
    """
    k = round(accuracy * n)
    if abs(k - accuracy * n) > 1e-6 * n:
        raise ValueError(f"accuracy {accuracy} is not a whole number of correct answers out of n={n}")
    methods = {"wilson": wilson_interval, "clopper_pearson": clopper_pearson_interval}
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    low, high = methods[method](k, n, confidence)
    return {"k": k, "n": n, "accuracy": k / n, "low": low, "high": high, "confidence": confidence, "method": method}


def error_percent(accuracy: float) -> float:
    """Test error in %, rounded to 1e-6 so that 95.0% accuracy is exactly 5.0 (not failed), not 5.000000000000004.

    >>> error_percent(0.95), error_percent(0.9499)
    (5.0, 5.01)
    """
    return round(100.0 * (1.0 - accuracy), 6)
