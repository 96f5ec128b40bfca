"""Add the keys a newer `merge_each` writes to the summary of an older `--each` run folder.

    python scripts/remerge_each.py RUN [RUN ...]

Rebuilds the merged summary from the folder's own config.yaml and its per-value summaries with
`overlooked.api.merge_each`, refuses to write when any key the folder already has would change, and
otherwise adds only the missing keys (e.g. `data_fingerprint`, `flops_per_example` and `trials`, which
`bench compare` needs). Nothing is retrained; metrics and per-value folders are untouched.
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


def remerge(run: Path) -> list[str]:
    """Add the missing merged keys to ``run``'s summary.json; return their names."""
    old = json.loads((run / "summary.json").read_text())
    if "each" not in old:
        raise SystemExit(f"{run} is not an --each run folder (its summary has no 'each')")
    cfg = ExperimentConfig.from_dict(load_yaml((run / "config.yaml").read_text()))
    key, values = old["each"]["key"], old["each"]["values"]
    field = key.split(".")[-1]
    subs = {str(v): json.loads((run / f"{field}={v}" / "summary.json").read_text()) for v in values}
    new = api.merge_each(subs, cfg, key, values)
    changed = [k for k in old if k in new and not _same(old[k], new[k])]
    if changed:
        raise SystemExit(f"{run}: merging again would change {changed}; not written")
    added = [k for k in new if k not in old]
    (run / "summary.json").write_text(json.dumps({**old, **{k: new[k] for k in added}}, indent=2, sort_keys=True, default=str) + "\n")
    return added


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg, "added", remerge(Path(arg)))
