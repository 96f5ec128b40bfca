"""Recompute ``flops_per_example`` in finished run folders with the current counter (no training; the count
does not depend on the weights): rebuild each leaf run's data and model from its config.yaml and call
``overlooked.api.flops_per_example``; a parent takes what --repeats (its first seed) and --each (the mean over
values) write. Nothing else in the summaries changes.

    OVERLOOKED_DATA=../shared/data python scripts/refresh_flops.py RUN [RUN ...]

Used once, after commit 19f29b2 made MemN2N's packed hops count (they had been invisible to the counter).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

from overlooked import api, catalog
from overlooked.config import ExperimentConfig, load_yaml

catalog.load_all()
cache: dict[str, int | None] = {}


def flops_for(folder: Path) -> int | None:
    """The FLOP count of the run in ``folder`` (one validation example), built from its config."""
    cfg = ExperimentConfig.from_dict(load_yaml((folder / "config.yaml").read_text()))
    d = cfg.to_dict()
    key = json.dumps([d["data"], d["model"], d.get("encoder")], sort_keys=True, default=str)
    if key not in cache:
        splits = api.build_data(cfg, os.environ.get("OVERLOOKED_DATA"))
        cache[key] = api.flops_per_example(api.build_model(cfg, splits.meta), splits, api.build_encoder(cfg))
    return cache[key]


def refresh(folder: Path) -> float | int | None:
    """Rewrite ``flops_per_example`` in ``folder``'s summary.json and below; return the folder's value."""
    summ = folder / "summary.json"
    s = json.loads(summ.read_text())
    subs = sorted((p for p in folder.iterdir() if p.is_dir() and (p / "summary.json").is_file()), key=lambda p: p.name)
    if subs:
        child = {p.name: refresh(p) for p in subs}
        seeds = [p for p in subs if p.name.startswith("seed")]
        new = child[seeds[0].name] if seeds else statistics.fmean(child.values())
    else:
        new = flops_for(folder)
    print(folder, s.get("flops_per_example"), "->", new)
    s["flops_per_example"] = new
    summ.write_text(json.dumps(s, indent=2, sort_keys=True, default=str) + "\n")
    return new


if __name__ == "__main__":
    for run in sys.argv[1:]:
        refresh(Path(run))
