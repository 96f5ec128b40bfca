"""scripts/best_of_k.py: the distribution of a best-of-k result over the k-subsets of the trained seeds,
checked against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def best_of_k(load_script):
    return load_script("best_of_k")


def _run(root: Path, seeds: dict[int, dict[int, tuple[float, float, float]]]) -> Path:
    """seeds: {task: {seed: (train, val, test)}}."""
    for task, per_seed in seeds.items():
        for seed, (train, val, test) in per_seed.items():
            folder = root / f"tasks={task}" / f"seed{seed}"
            folder.mkdir(parents=True)
            summary = {"seed": seed, "wall_time_s": 1.0, "train_accuracy": train, "val_accuracy": val, "test_accuracy": test, "test_group_accuracy": {str(task): test}}
            (folder / "summary.json").write_text(json.dumps(summary))
    return root


def test_distribution_matches_hand_enumeration(best_of_k, tmp_path):
    # task 1, k = 2: {0,1} -> train picks 1 (40%), val 0 (20%); {0,2} -> train 0 (20%), val 2 (0%);
    # {1,2} -> train 1 (40%), val 2 (0%). Task 2 has exactly 2 seeds: train and val pick seed 0, 5.0% (not failed).
    run = _run(tmp_path / "r", {1: {0: (0.90, 0.90, 0.80), 1: (0.95, 0.80, 0.60), 2: (0.80, 0.95, 1.00)}, 2: {0: (1.0, 1.0, 0.95), 1: (0.9, 0.9, 0.5)}})
    per = best_of_k.per_value(run, 2)
    assert per["tasks=1"]["best_by_train"] == pytest.approx({40.0: 2 / 3, 20.0: 1 / 3})
    assert per["tasks=1"]["best_by_val"] == pytest.approx({20.0: 1 / 3, 0.0: 2 / 3})
    assert per["tasks=2"]["best_by_train"] == {5.0: 1.0}
    report = best_of_k.analyse(run, 2, bar_mean=15.0, bar_failed=1)
    train = report["best_by_train"]  # means 22.5 (p 2/3) and 12.5 (p 1/3); task 1 always fails, task 2 never
    assert train["expected_mean_error"] == pytest.approx(22.5 * 2 / 3 + 12.5 / 3)
    assert train["expected_failed"] == pytest.approx(1.0)
    assert train["p_bar_met"] == pytest.approx(1 / 3) and train["quantiles"]["0.5"] == 22.5
    val = report["best_by_val"]  # means 12.5 (p 1/3) and 2.5 (p 2/3); failed 1 then 0
    assert val["expected_mean_error"] == pytest.approx(12.5 / 3 + 2.5 * 2 / 3)
    assert val["expected_failed"] == pytest.approx(1 / 3)
    assert val["p_mean_at_most_bar"] == pytest.approx(1.0) and val["p_bar_met"] == pytest.approx(1.0)


def test_k_equal_to_seeds_is_the_run_itself(best_of_k, tmp_path):
    run = _run(tmp_path / "r", {1: {0: (0.9, 0.7, 0.6), 1: (0.8, 0.9, 0.9)}})
    report = best_of_k.analyse(run, 2)
    assert report["best_by_train"]["expected_mean_error"] == pytest.approx(40.0)
    assert report["best_by_val"]["expected_mean_error"] == pytest.approx(10.0)
    assert report["best_by_train"]["std_mean_error"] == 0.0


def test_too_few_seeds_or_no_values_is_a_clear_error(best_of_k, tmp_path):
    run = _run(tmp_path / "r", {1: {0: (0.9, 0.9, 0.9)}})
    with pytest.raises(ValueError, match="1 seeds, fewer than k=2"):
        best_of_k.per_value(run, 2)
    twice = _run(tmp_path / "twice", {1: {0: (0.9, 0.9, 0.9), 1: (0.8, 0.8, 0.8)}})
    (twice / "tasks=1" / "seed1" / "summary.json").write_text((twice / "tasks=1" / "seed0" / "summary.json").read_text())
    with pytest.raises(ValueError, match="lists a seed twice"):
        best_of_k.per_value(twice, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <key>=<value> sub-runs"):
        best_of_k.per_value(tmp_path / "empty", 1)
