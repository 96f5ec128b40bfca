"""Re-run chosen seed runs of an `--each --repeats` protocol in place, then re-aggregate the protocol.

    python scripts/rerun_seeds.py PROTOCOL_DIR [--check-only]

For runs made before the fix below. Finds the seed runs under PROTOCOL_DIR (``<key>=<value>/seed<k>/``) whose reported validation accuracy is
not the best validation accuracy their own metrics.jsonl recorded: runs whose best checkpoint was chosen
during MemN2N's linear start and then reported with the softmaxes re-inserted (fixed in the trainer by
``Context.restart_selection``). Each is trained again from its own resolved ``config.yaml`` (same seed, same
data, so the same trajectory), its small files replace the old ones (never checkpoints), and the per-value
and protocol summaries are recomputed. It checks that the new metrics.jsonl equals the old one in every
training and validation number, so only the choice of checkpoint changed; ``--check-only`` lists the
runs it would redo.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from overlooked import api
from overlooked.config import ExperimentConfig, load_yaml

SMALL_FILES = ("config.yaml", "environment.json", "metrics.jsonl", "summary.json")
SAME = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "examples_seen")


FIX = "bf489ee5"  # the trainer's restart of checkpoint selection when linear start ends


def made_after_fix(seed_dir: Path) -> bool:
    """Whether the run's recorded commit (environment.json) contains :data:`FIX`: such a run reports the best
    pass after linear start, legitimately below a linear-start pass (its metrics.jsonl may predate the
    ``linear_start`` field). False when the commit or git is not available."""
    env = seed_dir / "environment.json"
    commit = str(json.loads(env.read_text()).get("git_commit") or "")[:40] if env.is_file() else ""
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return False
    repo = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", FIX, commit], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def mismatched(seed_dir: Path) -> bool:
    """The reported validation accuracy differs from the best one the run could choose: the best of its
    validation passes, leaving out those scored during a linear start that ended later (``"linear_start":
    true``, recorded since 2026-12; before it, a run made at a commit with the fix is never a mismatch)."""
    if made_after_fix(seed_dir):
        return False
    summary = json.loads((seed_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (seed_dir / "metrics.jsonl").read_text().splitlines() if '"val_accuracy"' in line]
    flags = {r.get("linear_start") for r in records}
    ended = True in flags and False in flags  # linear start ended: the passes scored during it can no longer be chosen
    vals = [r["val_accuracy"] for r in records if not (ended and r.get("linear_start") is True)]
    return bool(vals) and abs(max(vals) - summary["val_accuracy"]) > 1e-9


def rerun(seed_dir: Path) -> None:
    cfg = ExperimentConfig.from_dict(load_yaml((seed_dir / "config.yaml").read_text()))
    old = [json.loads(line) for line in (seed_dir / "metrics.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        api.train(cfg, run_dir=run_dir)
        new = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        if [{k: r.get(k) for k in SAME} for r in new] != [{k: r.get(k) for k in SAME} for r in old]:
            raise SystemExit(f"{seed_dir}: the re-run's training differs from the original; not replaced")
        for name in SMALL_FILES:
            shutil.copy2(run_dir / name, seed_dir / name)


def main(protocol: str, check_only: bool) -> None:
    root = Path(protocol)
    todo = [d for d in sorted(root.glob("*=*/seed*")) if mismatched(d)]
    print(f"{len(todo)} seed runs to redo under {root}")
    for d in todo:
        print(f"  {d.relative_to(root)}")
    if check_only or not todo:  # nothing redone: the protocol's summary (pooled seeds and all) is left as it is
        return
    summary = json.loads((root / "summary.json").read_text()) if (root / "summary.json").is_file() else {}
    if summary.get("pooled_seeds") or not isinstance(summary.get("repeats", 1), int):  # re-aggregating would drop the pooling
        raise SystemExit(f"{root} pools seeds from several folders (scripts/pool_seeds.py wrote its summary): rerun the seeds in the folders it pooled, then pool them again")
    for d in todo:
        rerun(d)
        print(f"redone {d.relative_to(root)}", flush=True)
    cfg = ExperimentConfig.from_dict(load_yaml((root / "config.yaml").read_text()))
    each = json.loads((root / "summary.json").read_text())["each"]
    key, values = each["key"], each["values"]
    subs = {value_dir.name.split("=", 1)[1]: api.reaggregate(value_dir) for value_dir in sorted(root.glob("*=*"))}
    merged = api.merge_each({str(v): subs[str(v)] for v in values}, cfg, key, values)
    (root / "summary.json").write_text(json.dumps(merged, indent=2, sort_keys=True, default=str) + "\n")
    print(f"re-aggregated {root}")


if __name__ == "__main__":
    main(sys.argv[1], "--check-only" in sys.argv[2:])
