"""The fair-comparison rule (docs/fair_comparison.md), enforced on a set of run summaries."""

from __future__ import annotations

from typing import Any

from overlooked.errors import OverlookedError

MAX_TRIALS = 6
REQUIRED = ("params", "flops_per_example", "wall_time_s", "examples_seen", "data_fingerprint")


class UnfairComparisonError(OverlookedError):
    """A comparison table breaks the fair-comparison rule."""


def check_fair(rows: list[dict[str, Any]], max_examples: int) -> None:
    """Raise :class:`UnfairComparisonError` unless ``rows`` (run summaries) obey the rule.

    Args:
        rows: one summary per compared model, each with the keys in ``REQUIRED`` and ``trials``
            (hyper-parameter trials run, default 1) and ``model``.
        max_examples: the budget: most training examples any row may have seen.

    >>> a = {"model": "a", "params": 1, "flops_per_example": 2, "wall_time_s": 1.0, "examples_seen": 10, "data_fingerprint": "x"}
    >>> check_fair([a, {**a, "model": "b"}], max_examples=10)
    >>> check_fair([a, {**a, "model": "b", "examples_seen": 11}], max_examples=10)
    Traceback (most recent call last):
    ...
    overlooked.bench.fair.UnfairComparisonError: b saw 11 training examples, over the budget of 10
    """
    problems = []
    for row in rows:
        name = row.get("model", "?")
        missing = [k for k in REQUIRED if row.get(k) is None and k != "flops_per_example"]
        if missing:
            problems.append(f"{name} does not report {', '.join(missing)}")
        if row.get("examples_seen", 0) > max_examples:
            problems.append(f"{name} saw {row['examples_seen']} training examples, over the budget of {max_examples}")
        if row.get("trials", 1) > MAX_TRIALS:
            problems.append(f"{name} used {row['trials']} hyper-parameter trials, more than {MAX_TRIALS}")
    if len({row.get("data_fingerprint") for row in rows}) > 1:
        problems.append("the rows were trained on different data splits (data_fingerprint differs)")
    if len({row.get("trials", 1) for row in rows}) > 1:
        problems.append("the rows used different numbers of hyper-parameter trials")
    if problems:
        raise UnfairComparisonError("; ".join(problems))
