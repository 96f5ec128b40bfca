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
