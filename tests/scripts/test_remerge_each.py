"""scripts/remerge_each.py: an older `--each` summary gains the keys a newer merge writes, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from overlooked.cli import main

NEW_KEYS = ("data_fingerprint", "flops_per_example", "trials")


@pytest.fixture(scope="module")
def remerge_each(load_script):
    return load_script("remerge_each")


def _old_each_run(tmp_path: Path) -> tuple[Path, dict]:
    """A real `--each` run whose summary is stripped back to what merges before these keys wrote."""
    cfg = {
        "name": "tiny_each",
        "data": {"name": "synthetic", "kwargs": {"n_train": 60, "n_test": 20, "num_classes": 3}},
        "model": {"name": "mlp", "kwargs": {"hidden": [8]}},
        "objective": {"name": "cross_entropy"},
        "train": {"epochs": 1, "batch_size": 10, "progress": False},
    }
    (tmp_path / "each.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "each.yaml"), "train.max_steps=2", "--each", "data.seed=1,2", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    full = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({k: v for k, v in full.items() if k not in NEW_KEYS}))
    return run, full


def test_remerge_adds_exactly_the_missing_keys(tmp_path, remerge_each, capsys):
    run, full = _old_each_run(tmp_path)
    assert sorted(remerge_each.remerge(run)) == sorted(NEW_KEYS)
    assert json.loads((run / "summary.json").read_text()) == full


def test_remerge_refuses_when_a_kept_key_would_change(tmp_path, remerge_each, capsys):
    run, _ = _old_each_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary["test_accuracy"] += 0.01  # the folder no longer agrees with its own per-value summaries
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="would change \\['test_accuracy'\\]"):
        remerge_each.remerge(run)
    assert "data_fingerprint" not in json.loads((run / "summary.json").read_text())



def test_remerge_adds_the_spread_over_runs_to_an_each_repeats_run(tmp_path, remerge_each):
    """An `--each data.tasks=1,2 --repeats 2` folder written before the spread over runs existed (seed summaries
    by hand: task 1 errors 10 and 30, task 2 errors 0 and 50): each value's summary gains
    `mean_group_error_by_run` from its seed folders, the parent the mean +- std over the two runs (run means 5
    and 40), and the folder ends as merging afresh writes it."""
    from overlooked import api
    from overlooked.config import ExperimentConfig

    raw = {"name": "each", "data": {"name": "babi", "kwargs": {"tasks": [1, 2]}}, "model": {"name": "memn2n"}, "train": {"repeats": 2}}
    run = tmp_path / "each-run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    subs = {}
    for task, errors in ((1, (10, 30)), (2, (0, 50))):
        seeds = []
        for i, e in enumerate(errors):
            seed = {"seed": i, "test_accuracy": 1 - e / 100, "val_accuracy": 0.5, "train_accuracy": 1.0 - i / 10, "wall_time_s": 1.0, "test_group_accuracy": {str(task): 1 - e / 100}}
            (run / f"tasks={task}" / f"seed{i}").mkdir(parents=True)
            (run / f"tasks={task}" / f"seed{i}" / "summary.json").write_text(json.dumps(seed))
            seeds.append(seed)
        subs[str(task)] = api.aggregate(seeds)
    full = api.merge_each(subs, ExperimentConfig.from_dict(raw), "data.tasks", [1, 2])
    assert full["mean_group_error_by_run"] == pytest.approx([5.0, 40.0])
    new = ("mean_group_error_over_runs", "mean_group_error_by_run")
    # trials written into the parent by hand (a declared plan's count), unrecorded in the seeds: kept as it is
    (run / "summary.json").write_text(json.dumps({**{k: v for k, v in full.items() if k not in new}, "trials": 4}, default=str))
    for task, sub in subs.items():
        (run / f"tasks={task}" / "summary.json").write_text(json.dumps({k: v for k, v in sub.items() if k != "mean_group_error_by_run"}))
    assert sorted(remerge_each.remerge(run)) == sorted(new)
    got = json.loads((run / "summary.json").read_text())
    assert got["mean_group_error_by_run"] == pytest.approx([5.0, 40.0]) and got["mean_group_error_over_runs"]["mean"] == pytest.approx(22.5)
    assert got["trials"] == 4
    assert json.loads((run / "tasks=1" / "summary.json").read_text())["mean_group_error_by_run"] == pytest.approx([10.0, 30.0])
    assert remerge_each.remerge(run) == []  # a second pass has nothing to add
