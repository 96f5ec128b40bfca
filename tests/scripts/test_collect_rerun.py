"""scripts/collect_each.py gathers separately launched runs as `--each` would have run them;
scripts/rerun_seeds.py redoes the seed runs whose summary does not report their best validation pass."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from overlooked import api

TINY = ["train.max_steps=6", "train.eval_every=2", "train.progress=false", "train.num_threads=1", "data.kwargs.val_fraction=0.1"]


def _strip(summary: dict) -> dict:
    """The merged summary without what differs between two launches of the same runs (times, names)."""
    drop = ("wall_time_s", "train_time_s", "examples_per_s", "run", "name")
    if isinstance(summary, dict):
        return {k: _strip(v) for k, v in summary.items() if k not in drop and not k.endswith("_time_s")}
    if isinstance(summary, list):
        return [_strip(v) for v in summary]
    return summary


@pytest.mark.data
def test_collect_each_equals_train_each(load_script, tmp_path, data_dir):
    cfg = api.load("memn2n_babi1k", TINY)
    each_dir, each = api.train_each(cfg, "data.tasks", [1, 2], data_dir=str(data_dir), out=tmp_path / "each")
    runs = [api.train(api.load("memn2n_babi1k", [*TINY, f"data.tasks=[{t}]"]), data_dir=str(data_dir), out=tmp_path / f"single{t}")[0] for t in (2, 1)]
    load_script("collect_each").main(str(tmp_path / "collected"), "data.tasks", [str(r) for r in runs])
    collected = json.loads((tmp_path / "collected" / "summary.json").read_text())
    assert collected["test_accuracy"] == each["test_accuracy"] and collected["each"]["values"] == [1, 2]
    assert _strip(collected) == _strip(each)
    assert sorted(p.name for p in (tmp_path / "collected").iterdir()) == ["config.yaml", "environment.json", "summary.json", "tasks=1", "tasks=2"]
    assert not list((tmp_path / "collected").rglob("*.safetensors"))


@pytest.mark.data
def test_rerun_seeds_redoes_only_misreported_seeds(load_script, tmp_path, data_dir):
    rerun_seeds = load_script("rerun_seeds")
    cfg = api.load("memn2n_babi1k", [*TINY, "train.repeats=2"])
    root, _ = api.train_each(cfg, "data.tasks", [1], data_dir=str(data_dir), out=tmp_path)
    seed = root / "tasks=1" / "seed1"
    protocol = json.loads((root / "summary.json").read_text())
    good = json.loads((seed / "summary.json").read_text())
    bad = {**good, "val_accuracy": good["val_accuracy"] - 0.25, "test_accuracy": 0.0}  # as if reported from another pass
    (seed / "summary.json").write_text(json.dumps(bad))
    env = json.loads((seed / "environment.json").read_text())
    fix = subprocess.run(["git", "rev-parse", rerun_seeds.FIX], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip() if shutil.which("git") else ""
    if fix:  # a run made at the fix reports the best pass after linear start: never redone (a clone without history skips this)
        (seed / "environment.json").write_text(json.dumps({**env, "git_commit": fix}))
        assert not rerun_seeds.mismatched(seed)
    (seed / "environment.json").write_text(json.dumps({**env, "git_commit": "0" * 40}))  # a commit git does not know: the metrics decide
    (root / "summary.json").write_text(json.dumps({**protocol, "test_accuracy_mean": 0.0, "best_by_train": {}}))  # aggregated from it
    assert [rerun_seeds.mismatched(d) for d in (root / "tasks=1" / "seed0", seed)] == [False, True]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OVERLOOKED_DATA", str(data_dir))
        rerun_seeds.main(str(root), check_only=False)
    redone = json.loads((seed / "summary.json").read_text())
    assert redone["test_accuracy"] == good["test_accuracy"] and not rerun_seeds.mismatched(seed)
    assert _strip(json.loads((root / "summary.json").read_text())) == _strip(protocol)  # re-aggregated as train_each wrote it
    pooled = {**json.loads((root / "summary.json").read_text()), "added_by_hand": "kept"}
    (root / "summary.json").write_text(json.dumps(pooled))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OVERLOOKED_DATA", str(data_dir))
        rerun_seeds.main(str(root), check_only=False)  # nothing to redo: the protocol's summary is left as it is
    assert json.loads((root / "summary.json").read_text()) == pooled
    (seed / "environment.json").write_text(json.dumps({**env, "git_commit": "0" * 40}))
    # a run whose training cannot be reproduced is refused, not replaced
    metrics = (seed / "metrics.jsonl").read_text().splitlines()
    first = json.loads(metrics[0])
    (seed / "metrics.jsonl").write_text("\n".join([json.dumps({**first, "train_loss": first["train_loss"] + 1.0}), *metrics[1:]]) + "\n")
    (seed / "summary.json").write_text(json.dumps(bad))
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit, match="differs from the original; not replaced"):
        mp.setenv("OVERLOOKED_DATA", str(data_dir))
        rerun_seeds.main(str(root), check_only=False)
    assert json.loads((seed / "summary.json").read_text()) == bad


def test_rerun_seeds_refuses_a_pooled_folder(load_script, tmp_path):
    """Re-aggregating a folder that pool_seeds.py wrote would drop its pooling (pooled_seeds, "3 to 10" repeats):
    it is refused before anything is redone."""
    (tmp_path / "summary.json").write_text(json.dumps({"repeats": "3 to 10", "pooled_seeds": {"tasks=1": ["a", "b"]}}))
    seed = tmp_path / "tasks=1" / "seed0"  # a seed to redo: it reports 0.5, its records reached 0.9
    seed.mkdir(parents=True)
    (seed / "summary.json").write_text(json.dumps({"val_accuracy": 0.5}))
    (seed / "metrics.jsonl").write_text(json.dumps({"step": 1, "val_accuracy": 0.9}) + "\n")
    (seed / "environment.json").write_text(json.dumps({"git_commit": "0" * 40}))
    rerun_seeds = load_script("rerun_seeds")
    rerun_seeds.main(str(tmp_path), check_only=True)  # listing what it would redo is harmless
    with pytest.raises(SystemExit, match="pools seeds from several folders"):
        rerun_seeds.main(str(tmp_path), check_only=False)
