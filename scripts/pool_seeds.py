"""Pool the seeds of several `--each KEY=... --repeats N` runs of one recipe, each launched with its own
`train.seed`, and choose per value among all of them by the rules of `--repeats` (`overlooked.api.aggregate`:
lowest training error, the MemN2N paper's rule, and highest validation accuracy; seeds are ordered by number,
whatever the order of the runs, and ties go to the lower seed). Test accuracy never enters the choice.

    python scripts/pool_seeds.py OUT_DIR data.tasks RUN [RUN ...]
    python scripts/pool_seeds.py OUT_DIR - RUN [RUN ...]

For example the paper's best of 10 from a best-of-3 run (seeds 0-2) and a run with `train.seed=3
--repeats 7` (seeds 3-9). KEY `-` pools plain `--repeats N` runs (no `--each`), e.g. the seeds of one
recipe trained in two processes side by side (`--repeats 5` and `--repeats 5 train.seed=5`): the seeds go
to OUT_DIR/seed<S>/ and OUT_DIR/summary.json is their `--repeats` summary. A value that only some runs cover keeps the seeds it has: the summary's
`pooled_seeds` lists them per value, and `repeats` says "A to B" when values differ in count.

Refuses runs whose per-value configs differ in anything but `name`, `train.seed` and `train.repeats` (it
would pool different recipes), a seed that two runs share, an unfinished run (a run or sub-run whose
summary.json is missing or lists other seeds than its seed folders), seeds that do not follow on (the
pooled config names them by `train.seed` and `train.repeats`) and an OUT_DIR among the runs. A MemN2N
config without `linear_start.hold_lr` ran with the LS lr halved where LS outlasted the lr step if made
before commit c980107, held from then on: the configs alone cannot tell, so check the runs' commits. Copies the small files of every seed (never
checkpoints) into OUT_DIR/<key>=<value>/seed<S>/ and writes the per-value and merged summaries as `--each`
does.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from overlooked import api
from overlooked.config import ExperimentConfig, apply_overrides, dump_yaml, load_yaml
from overlooked.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_each import SMALL_FILES  # noqa: E402


def _recipe(config: dict) -> dict:
    """A per-value config without the keys that may differ between pooled runs. Keys the config format gained
    since a run was made read as their defaults (``ExperimentConfig``), and a linear start recorded without
    ``hold_lr`` reads as ``hold_lr: true`` where the two behaviours cannot differ (:func:`_ls_ends_before_a_step`)."""
    try:
        full = ExperimentConfig.from_dict(config).to_dict()
    except ConfigError:  # a config of a format this code no longer reads: compared as written
        full = config
    out = {k: v for k, v in full.items() if k != "name"}
    out["train"] = {k: v for k, v in full.get("train", {}).items() if k not in ("seed", "repeats")}
    for cb in out.get("callbacks") or []:
        if cb.get("name") == "linear_start" and "hold_lr" not in (cb.get("kwargs") or {}) and _ls_ends_before_a_step(cb.get("kwargs") or {}, out["train"]):
            cb["kwargs"] = {**(cb.get("kwargs") or {}), "hold_lr": True}
    return out


def _ls_ends_before_a_step(ls: dict, train: dict) -> bool:
    """Whether linear start ends before the lr schedule first changes the lr: a step schedule whose first step
    (``step_epochs``) comes no earlier than LS's cap (``max_epochs``), without warmup. Before commit c980107 the
    schedule also ran inside LS (``hold_lr`` did not exist); in this case it changed nothing there, so such a
    run and one with ``hold_lr: true`` trained alike."""
    cap = ls.get("max_epochs")
    return train.get("schedule") == "step" and cap is not None and float(cap) <= float(train.get("step_epochs") or 0) and not train.get("warmup_steps")


PLAIN = "-"  # KEY for plain --repeats runs: the run folder itself holds the seed* folders


def _subs(run: Path, key: str) -> list[Path]:
    """The folders of ``run`` that hold seed* folders: its ``name=*`` sub-runs, or the run itself for KEY ``-``."""
    if key == PLAIN:
        if any(run.glob("*=*/seed*")):
            raise ValueError(f"{run} was made with --each: pass its KEY (e.g. data.tasks), not {PLAIN}")
        return [run]
    name = key.split(".")[-1]
    subs = sorted(run.glob(f"{name}=*"))
    if not subs:
        raise ValueError(f"{run} has no {name}=* sub-runs: pass the folders `overlooked train --each {key}=... --repeats N` wrote")
    return subs


def _labels(runs: list[str | Path]) -> dict[str, str]:
    """How each run is named in the summaries: its folder name, or the path as given when two runs share a
    folder name (the same run name under two --out folders)."""
    names = [Path(r).name for r in runs]
    return {str(Path(r)): (Path(r).name if names.count(Path(r).name) == 1 else str(Path(r))) for r in runs}


def pool(key: str, runs: list[str | Path]) -> dict[str, list[tuple[str, Path, dict]]]:
    """Per value folder name (``tasks=7``; ``""`` for KEY ``-``): the pooled seeds as (run name, seed folder,
    seed summary)."""
    found: dict[str, list[tuple[str, Path, dict]]] = {}
    recipes: dict[str, tuple[str, dict]] = {}
    names = _labels(runs)
    for run in map(Path, runs):
        label = names[str(run)]
        for sub in _subs(run, key):
            group = "" if key == PLAIN else sub.name
            recipe = _recipe(load_yaml((sub / "config.yaml").read_text()))
            first = recipes.setdefault(group, (label, recipe))
            if first[1] != recipe:
                raise ValueError(f"{sub} was trained with another recipe than {'/'.join(filter(None, (first[0], group)))} (configs differ beyond name, train.seed, train.repeats): pool only seeds of one recipe")
            seeds = api.seed_folders(sub)
            if not seeds:
                raise ValueError(f"{sub} has no seed* folders: pool runs made with --repeats")
            numbers = [int(p.name[4:]) for p in seeds]
            listed = json.loads((sub / "summary.json").read_text()).get("seeds") if (sub / "summary.json").is_file() else None
            if listed is None or sorted(listed) != numbers:
                raise ValueError(f"{sub} is not a finished --repeats run (its summary.json {'is missing' if listed is None else f'lists seeds {listed}'}, its folders hold seeds {numbers}): pool only finished runs")
            for seed in seeds:
                taken = [r for r, p, _ in found.get(group, []) if p.name == seed.name]
                if taken:
                    where = f" of {group}" if group else ""
                    raise ValueError(f"{seed.name}{where} is in both {taken[0]} and {label}: pooled runs must use different seeds")
                if not (seed / "summary.json").is_file():
                    raise ValueError(f"{seed} has no summary.json: pool only finished runs")
                found.setdefault(group, []).append((label, seed, json.loads((seed / "summary.json").read_text())))
    return found


def _copy_seeds(seeds: list[tuple[str, Path, dict]], target: Path) -> None:
    """The small files of each seed folder (never checkpoints) into ``target/seed<S>/``."""
    for _, seed, _ in seeds:
        for src in seed.rglob("*"):
            if src.is_file() and src.name in SMALL_FILES and "checkpoints" not in src.parts:
                dest = target / seed.name / src.relative_to(seed)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)


def _aggregate(seeds: list[tuple[str, Path, dict]]) -> dict:
    agg = api.aggregate([s for _, _, s in seeds])
    agg["pooled_seeds"] = [f"{r}/{p.name}" for r, p, _ in seeds]
    return agg


def _pooled(key: str, out: str, runs: list[str]) -> dict[str, list[tuple[str, Path, dict]]]:
    """:func:`pool` with the seeds of each value ordered by number; refuses an OUT among the runs and seeds
    that do not follow on."""
    if any(Path(out).resolve() == Path(r).resolve() for r in runs):
        raise ValueError(f"OUT_DIR {out} is one of the runs: write the pooled run to a new folder")
    found = {group: sorted(seeds, key=lambda t: t[2]["seed"]) for group, seeds in pool(key, runs).items()}
    for group, seeds in found.items():
        numbers = [s["seed"] for _, _, s in seeds]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            where = f" of {group}" if group else ""
            raise ValueError(f"seeds {numbers}{where} are not consecutive: the pooled config (train.seed, train.repeats) could not name them; pool runs whose seeds follow on")
    return found


def main_plain(out: str, runs: list[str]) -> None:
    """Pool plain ``--repeats`` runs into OUT: seed folders and the ``--repeats`` summary over all of them."""
    out_dir = Path(out)
    seeds = _pooled(PLAIN, out, runs)[""]
    _copy_seeds(seeds, out_dir)
    cfg = ExperimentConfig.from_dict(load_yaml((Path(runs[0]) / "config.yaml").read_text()))  # the first run's name
    cfg = apply_overrides(cfg, [f"train.seed={seeds[0][2]['seed']}", f"train.repeats={len(seeds)}"])
    api.write_run_files(out_dir, cfg, _aggregate(seeds), argv=["python", "scripts/pool_seeds.py", out, PLAIN, *runs], pooled_from=list(_labels(runs).values()))
    print(f"wrote {out_dir}")


def main(out: str, key: str, runs: list[str]) -> None:
    if key == PLAIN:
        return main_plain(out, runs)
    found = _pooled(key, out, runs)
    out_dir, name = Path(out), key.split(".")[-1]
    subs, values = {}, []
    for value_dir, seeds in found.items():
        target = out_dir / value_dir
        _copy_seeds(seeds, target)
        source = next(Path(r) / value_dir for r in runs if (Path(r) / value_dir).is_dir())
        sub_cfg = load_yaml((source / "config.yaml").read_text())
        sub_cfg["train"]["seed"], sub_cfg["train"]["repeats"] = seeds[0][2]["seed"], len(seeds)
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.yaml").write_text(dump_yaml(sub_cfg))
        agg = _aggregate(seeds)
        (target / "summary.json").write_text(json.dumps(agg, indent=2, sort_keys=True, default=str) + "\n")
        value = json.loads(value_dir.split("=", 1)[1])
        values.append(value)
        subs[str(value)] = agg
    values.sort()
    cfg = ExperimentConfig.from_dict({**load_yaml((Path(runs[0]) / "config.yaml").read_text()), "name": out_dir.name.split("-each-")[0]})
    counts = sorted({len(found[f"{name}={v}"]) for v in values})
    cfg = apply_overrides(cfg, [f"{key}={json.dumps(values)}", f"train.repeats={counts[-1]}"])
    merged = api.merge_each({str(v): subs[str(v)] for v in values}, cfg, key, values)
    merged["repeats"] = counts[0] if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    merged["pooled_seeds"] = {str(v): len(found[f"{name}={v}"]) for v in values}
    api.write_run_files(out_dir, cfg, merged, argv=["python", "scripts/pool_seeds.py", out, key, *runs], pooled_from=list(_labels(runs).values()))
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
