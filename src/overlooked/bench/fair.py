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
        rows: one summary per compared model, each with the keys in ``REQUIRED``, ``trials``
            (hyper-parameter trials run; a row without it is refused) and ``model``.
        max_examples: the budget: most training examples any row may have seen.

    >>> a = {"model": "a", "params": 1, "flops_per_example": 2, "wall_time_s": 1.0, "examples_seen": 10, "data_fingerprint": "x", "trials": 1}
    >>> check_fair([a, {**a, "model": "b"}], max_examples=10)
    >>> check_fair([a, {**a, "model": "b", "examples_seen": 11}], max_examples=10)
    Traceback (most recent call last):
    ...
    overlooked.bench.fair.UnfairComparisonError: b saw 11 training examples, over the budget of 10
    """
    problems = []
    for row in rows:
        name = f"{row.get('model', '?')} ({row['run']})" if row.get("run") else row.get("model", "?")
        missing = [k for k in REQUIRED if row.get(k) is None and k != "flops_per_example"]
        if missing:
            problems.append(f"{name} does not report {', '.join(missing)} (a summary written before it was recorded: `python scripts/remerge_each.py` adds it to --each folders, a re-run to others)")
        before = (row.get("init_from") or {}).get("examples_seen") or 0  # a run started from another run's weights
        if row.get("init_from") and (row["init_from"].get("examples_seen") is None):
            problems.append(f"{name} started from the weights of {row['init_from'].get('run')}, whose examples seen are not recorded")
        counted = examples_counted(row)
        if counted > max_examples:
            here = "none recorded" if row.get("examples_seen") is None else row["examples_seen"]  # absent: named above
            split = f" ({here} here, {before} in the run it started from)" if before else ""
            problems.append(f"{name} saw {counted} training examples{split}, over the budget of {max_examples}")
        if _trials(row) is None:
            problems.append(
                f"{name} does not record its hyper-parameter trials (a run from before they were recorded): state how many "
                "settings were tried on this split for it, `bench compare --trials RUN=N`"
            )
        elif _trials(row) > MAX_TRIALS:
            problems.append(f"{name} used {_trials(row)} hyper-parameter trials, more than {MAX_TRIALS}")
    def label(row: dict[str, Any]) -> str:
        return row.get("run") or row.get("model", "?")

    if len({row.get("data_fingerprint") for row in rows}) > 1:
        each = ", ".join(f"{label(r)}: {r.get('data_fingerprint')}" for r in rows)
        problems.append(f"the rows were trained on different data splits (data_fingerprint: {each}); train them on the same data.* settings")
    scored = {row.get("test_fingerprint") for row in rows if row.get("test_fingerprint") is not None}
    if len(scored) > 1:  # recorded since 2026-12-06; older rows are held to the count of test examples only
        each = ", ".join(f"{label(r)}: {r.get('test_fingerprint')}" for r in rows)
        problems.append(f"the rows were scored on different test examples (test_fingerprint: {each}); score them on the same test split")
    tested = {row.get("test_examples") for row in rows if row.get("test_examples") is not None}
    if len(tested) > 1:
        each = ", ".join(f"{label(r)}: {r.get('test_examples')}" for r in rows)
        problems.append(f"the rows were scored on different numbers of test examples ({each}; train.eval_limit differs); train them with the same train.eval_limit")
    limited = [label(r) for r in rows if isinstance(r.get("test_examples_available"), int) and isinstance(r.get("test_examples"), int) and r["test_examples"] < r["test_examples_available"]]
    unknown = [label(r) for r in rows if r.get("test_examples") is None]
    if limited and unknown:  # a row scored on part of its test split beside one whose count is not recorded
        problems.append(
            f"{', '.join(limited)} {'was' if len(limited) == 1 else 'were'} scored on part of the test split (train.eval_limit) and "
            f"{', '.join(unknown)} {'does' if len(unknown) == 1 else 'do'} not record how many test examples scored {'it' if len(unknown) == 1 else 'them'} "
            "(a summary from before test_examples was recorded): score every row on the whole test split"
        )
    if len({_trials(row) for row in rows if _trials(row) is not None}) > 1:
        each = ", ".join(f"{label(r)}: {_trials(r)}" for r in rows)
        problems.append(f"the rows used different numbers of hyper-parameter trials ({each})")
    if problems:
        raise UnfairComparisonError("; ".join(problems))


def examples_counted(row: dict[str, Any]) -> int:
    """The training examples the budget counts for a run summary: its own ``examples_seen`` plus those of the
    run it started from (``init_from``), absent values as 0 (``check_fair`` names them as missing)."""
    return (row.get("examples_seen") or 0) + ((row.get("init_from") or {}).get("examples_seen") or 0)


def _trials(row: dict[str, Any]) -> int | None:
    """A row's hyper-parameter trials, None when its summary does not say (a run from before ``trials`` was
    recorded): never taken as 1, which would let a recipe tuned over many runs pass as one trial."""
    return row.get("trials")
