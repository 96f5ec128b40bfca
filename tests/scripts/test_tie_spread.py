"""scripts/tie_spread.py: the spread that ties in the selection rules leave, read from seed summaries."""

from __future__ import annotations

import json

import pytest


def _seed(folder, seed, train, val, test):
    (folder / f"seed{seed}").mkdir(parents=True)
    (folder / f"seed{seed}" / "summary.json").write_text(json.dumps({"seed": seed, "train_accuracy": train, "val_accuracy": val, "test_accuracy": test}))


def test_ties_are_counted_and_their_spread_computed_by_hand(tmp_path, load_script, capsys):
    spread = load_script("tie_spread")
    run = tmp_path / "run"
    _seed(run / "tasks=1", 0, 1.0, 0.90, 0.90)  # tied on training accuracy with seed 1; seed 1 validates better
    _seed(run / "tasks=1", 1, 1.0, 0.95, 0.98)
    _seed(run / "tasks=1", 2, 0.9, 0.99, 0.50)
    _seed(run / "tasks=2", 0, 0.8, 0.80, 0.96)  # no tie
    _seed(run / "tasks=2", 1, 0.9, 0.70, 0.94)
    s = spread.spread(spread.seeds_per_value(str(run)), "train")
    # task 1: first tied seed 10% error, tie range 2-10%, broken by validation 2%; task 2: seed 1, 6%
    assert s["tied_values"] == 1 and s["first"] == pytest.approx(8.0) and (s["low"], s["high"]) == (pytest.approx(4.0), pytest.approx(8.0))
    assert s["broken_by_other"] == pytest.approx(4.0) and s["failed_first"] == 2 and s["failed_broken"] == 1
    assert spread.main([str(run)]) == 0 and "rule=train: ties on 1/2; first seed 8.000% (2 failed)" in capsys.readouterr().out
