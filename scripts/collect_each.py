"""Gather independently launched runs (one per value of a config key) into one `--each`-style folder.

    python scripts/collect_each.py [--force] OUT_DIR data.tasks RUN [RUN ...]

Copies each run's small files (config, environment, metrics, summary; never checkpoints) into
OUT_DIR/<key>=<value>/ and writes the merged summary exactly as `overlooked train --each` does.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from overlooked import api
from overlooked.config import ExperimentConfig, apply_overrides, load_yaml

SMALL_FILES = ("config.yaml", "environment.json", "metrics.jsonl", "summary.json", "notes.md")


def main(out: str, key: str, runs: list[str], argv: list[str] | None = None, summary_extra: dict | None = None, force: bool = False) -> None:
    """Gather ``runs`` into ``out``. ``argv``: the command recorded in environment.json (default: the first
    run's); ``summary_extra``: keys that replace or join the merged summary's (e.g. a gathered run's name).
    An ``out`` that exists and holds anything is refused unless ``force`` (its run files would be replaced)."""
    out_dir = Path(out)
    inputs = {Path(r).resolve() for r in runs}
    if out_dir.resolve() in inputs or any(out_dir.resolve() in p.parents for p in inputs):
        raise SystemExit(f"{out_dir} is one of the runs gathered (or holds one): name a new folder")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise SystemExit(f"{out_dir} exists and is not empty: its run files would be replaced. Name a new folder, or pass --force")
    subs, values, cfg = {}, [], None
    for run in map(Path, runs):
        run_cfg = ExperimentConfig.from_dict(load_yaml((run / "config.yaml").read_text()))
        node = run_cfg.to_dict()
        for part in key.split(".")[:-1]:
            node = node[part] if part in node else node["kwargs"]
        node = node.get("kwargs", node) if key.split(".")[-1] not in node else node
        value = node[key.split(".")[-1]]
        value = value[0] if isinstance(value, list) and len(value) == 1 else value
        values.append(value)
        target = out_dir / f"{key.split('.')[-1]}={value}"
        for src in run.rglob("*"):  # the small files of the run and of its seed sub-runs, never checkpoints
            if src.is_file() and src.name in SMALL_FILES and "checkpoints" not in src.parts:
                dest = target / src.relative_to(run)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        subs[str(value)] = json.loads((run / "summary.json").read_text())
        cfg = cfg or run_cfg
    order = sorted(range(len(values)), key=lambda i: values[i])
    values = [values[i] for i in order]
    cfg = apply_overrides(cfg, [f"{key}={json.dumps(values)}"])
    merged = {**api.merge_each({str(v): subs[str(v)] for v in values}, cfg, key, values), **(summary_extra or {})}
    argv = argv if argv is not None else json.loads((Path(runs[0]) / "environment.json").read_text()).get("argv", [])
    api.write_run_files(out_dir, cfg, merged, argv=argv, collected_from=[Path(r).name for r in runs])
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    args = sys.argv[1:]
    force = "--force" in args  # anywhere on the line
    args = [a for a in args if a != "--force"]
    main(args[0], args[1], args[2:], force=force)
