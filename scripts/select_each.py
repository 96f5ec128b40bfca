"""Choose, for each value of an `--each` key, the sub-run with the best validation accuracy among several
`--each` runs (a hyper-parameter choice per value that never looks at test), and gather the chosen sub-runs
into one `--each`-style folder with collect_each.

    python scripts/select_each.py [--force] OUT_DIR data.tasks EACH_RUN [EACH_RUN ...]

The MemNN papers choose hyper-parameters "using the training set" and train one model per task; this is
that choice on the held-out 10% of train. Ties go to the run listed first. Besides what collect_each writes,
OUT_DIR/selection.json lists every candidate's validation accuracy and the chosen run of each value. The
summary is named after OUT_DIR (the part before "-each-"); its wall_time_s is that of every candidate run
(wall_time_s_chosen: the chosen ones); config.yaml is the first chosen run's, selection.json says the rest;
its trials is the number of runs chosen among, or more where a candidate's summary records more settings
tried on the split. An OUT_DIR that exists is refused unless --force.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_each import main as collect  # noqa: E402


def choose(key: str, runs: list[str | Path]) -> dict[str, dict]:
    """Per value of ``key``: the candidates (run, validation accuracy) and the chosen sub-run folder.

    Each value also gets the wall time of all its candidates and of the chosen one.

    Raises ``ValueError`` when a sub-run has no validation accuracy (selection would be blind) or when the
    runs do not cover the same values (a value would be chosen among fewer candidates).
    """
    name = key.split(".")[-1]
    twice = sorted({str(r) for r in runs if sum(Path(q).resolve() == Path(r).resolve() for q in runs) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} listed more than once: each run is one setting, list it once")
    names = [Path(r).name for r in runs]
    label = {Path(r): (Path(r).name if names.count(Path(r).name) == 1 else str(r)) for r in runs}  # folders of one name in two places: their paths
    found: dict[str, list[tuple[str, Path, float, float]]] = {}
    for run in map(Path, runs):
        subs = sorted(run.glob(f"{name}=*"))
        if not subs:
            raise ValueError(f"{run} has no {name}=* sub-runs: pass the folders `overlooked train --each {key}=...` wrote")
        for sub in subs:
            if not (sub / "summary.json").is_file():
                raise ValueError(f"{sub} has no summary.json: it is unfinished (resume it with `overlooked train --resume {sub}`) or damaged")
            summary = json.loads((sub / "summary.json").read_text())
            val = summary.get("val_accuracy")
            if not isinstance(val, (int, float)) or isinstance(val, bool) or not math.isfinite(val):
                raise ValueError(f"{sub}/summary.json has no finite val_accuracy ({val!r}): selection needs a validation split (data.val_fraction > 0) and a run that did not diverge")
            found.setdefault(sub.name, []).append((label[run], sub, float(val), float(summary.get("wall_time_s") or 0.0)))
    short = {v: len(c) for v, c in found.items() if len(c) != len(runs)}
    if short:
        raise ValueError(f"the runs do not all cover the same values of {key} (candidates per value: {short}); pass runs over the same values")
    chosen = {}
    for value, cands in found.items():
        best = max(range(len(cands)), key=lambda i: (cands[i][2], -i))  # highest validation accuracy, first listed on ties
        chosen[value] = {
            "candidates": {run: acc for run, _, acc, _ in cands},
            "chosen": cands[best][0],
            "folder": cands[best][1],
            "wall_time_s": sum(c[3] for c in cands),  # every candidate: the choice needed all of them
            "wall_time_s_chosen": cands[best][3],
        }
    return chosen


def main(out: str, key: str, runs: list[str], force: bool = False) -> None:
    chosen = choose(key, runs)
    # a candidate's summary may record the settings tried on this split in all (train.trials of a tuning
    # campaign): the choice counts at least those, and at least the runs it chose among
    recorded = [json.loads((Path(r) / "summary.json").read_text()).get("trials") if (Path(r) / "summary.json").is_file() else None for r in runs]
    trials = max([len(runs), *(t for t in recorded if isinstance(t, int) and not isinstance(t, bool))])
    collect(
        out,
        key,
        [str(c["folder"]) for c in chosen.values()],
        argv=["python", "scripts/select_each.py", *(["--force"] if force else []), out, key, *map(str, runs)],
        force=force,
        summary_extra={
            "name": Path(out).name.split("-each-")[0],
            "wall_time_s": sum(c["wall_time_s"] for c in chosen.values()),
            "wall_time_s_chosen": sum(c["wall_time_s_chosen"] for c in chosen.values()),
            "trials": trials,  # each value was chosen among this many settings (the fair-comparison rule counts them)
        },
    )
    record = {value: {"candidates": c["candidates"], "chosen": c["chosen"]} for value, c in chosen.items()}
    names = [Path(r).name for r in runs]
    labels = [Path(r).name if names.count(Path(r).name) == 1 else str(r) for r in runs]  # as the candidates are keyed
    (Path(out) / "selection.json").write_text(json.dumps({"rule": "highest validation accuracy per value, first listed on ties", "runs": labels, "values": record}, indent=2) + "\n")



if __name__ == "__main__":
    args = sys.argv[1:]
    force = "--force" in args  # anywhere on the line
    args = [a for a in args if a != "--force"]
    main(args[0], args[1], args[2:], force=force)
