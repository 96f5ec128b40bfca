"""Add the keys a newer `merge_each` writes to the summary of an older `--each` run folder.

    python scripts/remerge_each.py RUN [RUN ...]

Rebuilds the merged summary from the folder's own config.yaml and its per-value summaries with
`overlooked.api.merge_each`, refuses to write when any key the folder already has would change, and
otherwise adds only the missing keys (e.g. `data_fingerprint`, `flops_per_example` and `trials`, which
`bench compare` needs; for `--each ... --repeats N`, `mean_group_error_over_runs`, the mean +- std over the
N runs of the whole protocol). A per-value summary of a `--repeats` run is first rebuilt the same way from its
seed folders with `overlooked.api.aggregate` (missing top-level keys added, e.g. `mean_group_error_by_run`;
every value it has must agree, and nothing in it changes). Nothing is retrained; metrics and seed folders are untouched.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from overlooked import api
from overlooked.config import ExperimentConfig, load_yaml


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _kept(a, b) -> bool:
    """Whether ``b`` holds every value of ``a``: a dict in ``b`` may have keys ``a``'s lacks (a newer
    aggregate records more, e.g. ``tied_seeds``, which the old summary keeps without), and ``b`` may be None
    where the files merged again do not record it (``trials`` written into an older parent, unrecorded in
    its seeds' summaries): the old value stays."""
    if b is None:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return all(k in b and _kept(a[k], b[k]) for k in a)
    return _same(a, b)


def _with_missing(where: Path, old: dict, new: dict) -> tuple[dict, list[str]]:
    """``old`` plus the keys of ``new`` it lacks, and their names; SystemExit when a key it has would change."""
    changed = [k for k in old if k in new and not _kept(old[k], new[k])]
    if changed:
        raise SystemExit(f"{where}: merging again would change {changed}; not written")
    added = [k for k in new if k not in old and new[k] is not None]
    return {**old, **{k: new[k] for k in added}}, added


def _write(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


def remerge(run: Path) -> list[str]:
    """Add the missing merged keys to ``run``'s summary.json (and its per-value ``--repeats`` summaries'); return
    the names added to the run's own."""
    old = json.loads((run / "summary.json").read_text())
    if "each" not in old:
        raise SystemExit(f"{run} is not an --each run folder (its summary has no 'each')")
    cfg = ExperimentConfig.from_dict(load_yaml((run / "config.yaml").read_text()))
    key, values = old["each"]["key"], old["each"]["values"]
    field = key.split(".")[-1]
    subs, rewritten = {}, {}
    for v in values:  # every check before any file is written
        folder = run / f"{field}={v}"
        sub = json.loads((folder / "summary.json").read_text())
        seeds = sorted(folder.glob("seed*/summary.json"), key=lambda p: int(p.parent.name[4:]))
        if seeds:
            sub, added = _with_missing(folder, sub, api.aggregate([json.loads(p.read_text()) for p in seeds]))
            if added:
                rewritten[folder / "summary.json"] = sub
        subs[str(v)] = sub
    merged, added = _with_missing(run, old, api.merge_each(subs, cfg, key, values))
    for path, summary in rewritten.items():
        _write(path, summary)
    if added:
        _write(run / "summary.json", merged)
    return added


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg, "added", remerge(Path(arg)))
