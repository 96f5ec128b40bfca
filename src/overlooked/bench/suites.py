"""The arena: benchmark suites as data. Each suite is a YAML file in ``overlooked/suites/`` listing arenas
(bAbI 1k, MNIST, affNIST-style, MultiMNIST, energy); each arena names its data, a training budget in
examples shared by every case (the fair-comparison rule, docs/fair_comparison.md) and its cases: a
packaged config (family model or the baseline that won) plus overrides.

``run_suite`` trains every case on its budget and writes one run folder with a row per case: accuracy,
parameters, FLOPs per example, training wall time, inference latency and, for spiking models, SynOps and
estimated energy (read from the case run's summary). For a suite marked ``estimate_only`` (the ``full``
suite, which reproduces the papers) it does not train: it measures each case's throughput over a few
steps, computes the expected time, and marks every row ``not run``; no accuracy is ever filled in.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from overlooked.config import _build, load_config, load_yaml
from overlooked.errors import ConfigError, OverlookedError

SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"


@dataclass
class Case:
    """One model in an arena: a packaged config (or a conversion of another case's run) with overrides."""

    name: str
    role: Literal["family", "baseline"] = "family"
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    convert_from: str | None = None  # name of an earlier case in the arena whose ANN run is converted
    convert_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Arena:
    """Cases compared on the same data under the same budget (training examples)."""

    name: str
    data: str
    budget_examples: int
    cases: list[Case] = field(default_factory=list)
    reference: str = ""  # what the paper reports, in words, with its section in paper_numbers.md
    eval_limit: int | None = None  # evaluate each split on its first N examples only (stated in the table)


@dataclass
class Suite:
    name: str
    description: str = ""
    estimate_only: bool = False  # the full suite: throughput-based time estimates, nothing trained
    arenas: list[Arena] = field(default_factory=list)


def suite_names() -> list[str]:
    """Names of the packaged suites."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    """Load and check a suite (packaged name or YAML path): unknown keys, missing configs and a case
    converting a case that does not precede it are errors that name the case."""
    from overlooked import catalog

    catalog.load_all()  # the cases name registered datasets and models
    path = Path(name_or_path)
    if not path.is_file():
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown suite {name_or_path!r}; packaged suites: {', '.join(suite_names())}")
    suite = _build(Suite, load_yaml(path.read_text()), "")
    for arena in suite.arenas:
        seen: list[str] = []
        for case in arena.cases:
            where = f"suite {suite.name}, arena {arena.name}, case {case.name}"
            if case.convert_from is not None:
                if case.convert_from not in seen:
                    raise ConfigError(f"{where}: convert_from {case.convert_from!r} must name an earlier case of the arena ({', '.join(seen) or 'none'})")
            else:
                try:
                    load_config(case.config, case.overrides)
                except OverlookedError as err:
                    raise ConfigError(f"{where}: {err}") from err
            seen.append(case.name)
    return suite


def case_config(case: Case, arena: Arena, data_dir: str | None = None):
    """The experiment config of a training case, cut to the arena's budget (``train.max_steps``)."""
    from overlooked.api import build_data

    cfg = load_config(case.config, case.overrides)
    n_train = len(build_data(cfg, data_dir).train)
    steps = math.ceil(arena.budget_examples / cfg.train.batch_size)
    cfg.train.epochs = max(1, math.ceil(arena.budget_examples / n_train))
    cfg.train.max_steps = steps
    cfg.train.progress = False
    cfg.train.repeats = 1
    cfg.train.eval_limit = arena.eval_limit
    return cfg


def inference_latency_ms(run: Path, data_dir: str | None, batch_size: int = 256, repeats: int = 3) -> float:
    """Milliseconds per example of a trained run's model on a test batch (best of ``repeats``, no grad)."""
    import torch

    from overlooked.api import load_run

    cfg, splits, model = load_run(run, data_dir=data_dir)
    model.eval()
    n = min(batch_size, len(splits.test))
    batch = splits.test[torch.arange(n)]
    inputs = [batch[k] for k in splits.input_keys]
    best = math.inf
    with torch.no_grad():
        model(*inputs)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(*inputs)
            best = min(best, time.perf_counter() - t0)
    return 1000 * best / n


def _row(case: Case, arena: Arena, run: Path | None, summary: dict[str, Any] | None, status: str) -> dict[str, Any]:
    s = dict(summary or {})
    energy = s.get("energy") or {}
    if s.get("kind") == "ann_to_snn_conversion":  # report the converted network at its simulated T
        steps = str(s["steps"])
        s["test_accuracy"] = s["snn_test_accuracy"][steps]
        energy = energy.get(steps, {})
    totals = energy.get("totals", {})
    return {
        "arena": arena.name,
        "case": case.name,
        "role": case.role,
        "status": status,
        "model": s.get("model"),
        "test_accuracy": s.get("test_accuracy"),
        "params": s.get("params"),
        "flops_per_example": s.get("flops_per_example"),
        "examples_seen": s.get("examples_seen"),
        "train_time_s": s.get("train_time_s"),
        "latency_ms": s.get("latency_ms"),
        "synops_per_example": totals.get("sops"),
        "energy_uj_per_example": None if totals.get("snn_energy_pj") is None else totals["snn_energy_pj"] / 1e6,
        "ann_energy_uj_per_example": None if totals.get("ann_energy_pj") is None else totals["ann_energy_pj"] / 1e6,
        "run": str(run) if run else None,
    }


def fair_verdict(summaries: list[dict[str, Any]], budget: int) -> str:
    """``"met"`` when the trained cases of one arena obey the fair-comparison rule
    (:func:`overlooked.bench.fair.check_fair`), else the broken conditions as the rule names them."""
    from overlooked.bench.fair import UnfairComparisonError, check_fair

    try:
        check_fair(summaries, budget)
    except UnfairComparisonError as exc:
        return f"NOT met: {exc}"
    return "met"


def run_suite(name: str, *, out: str | Path = "runs", data_dir: str | None = None, arenas: list[str] | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Run (or, for ``estimate_only`` suites, estimate) every case of suite ``name``; return the folder and rows."""
    from overlooked import api
    from overlooked.train.environment import environment

    suite = load_suite(name)
    unknown = sorted(set(arenas or []) - {a.name for a in suite.arenas})
    if unknown:  # before any folder: a misspelt arena ran nothing and exited 0
        raise ConfigError(f"suite {suite.name!r} has no arena {', '.join(map(repr, unknown))}; its arenas: {', '.join(a.name for a in suite.arenas)}")
    started = time.perf_counter()
    folder = api.new_run_dir(out, f"suite-{suite.name}")
    rows: list[dict[str, Any]] = []
    fairness: dict[str, str] = {}
    for arena in suite.arenas:
        if arenas and arena.name not in arenas:
            continue
        runs: dict[str, Path] = {}
        trained: list[dict[str, Any]] = []  # the summaries the fair-comparison rule judges (conversions train nothing)
        for case in arena.cases:
            if suite.estimate_only:
                rows.append(_estimate_row(case, arena, data_dir))
                continue
            if case.convert_from is not None:
                limit = {"limit": arena.eval_limit} if arena.eval_limit else {}
                run, summary = api.convert(runs[case.convert_from], out=folder / "cases", data_dir=data_dir, **limit, **case.convert_args)
                source = json.loads((runs[case.convert_from] / "summary.json").read_text())
                summary = {**summary, "params": source["params"], "examples_seen": source["examples_seen"]}  # the ANN it was converted from
            else:
                cfg = case_config(case, arena, data_dir)
                run, summary = api.train(cfg, data_dir=data_dir, out=folder / "cases")
                summary = {**summary, "latency_ms": inference_latency_ms(run, data_dir)}
                trained.append({**summary, "run": case.name})
            runs[case.name] = run
            rows.append(_row(case, arena, run, summary, "measured"))
            print(_format_row(rows[-1]), flush=True)
        if trained:
            fairness[arena.name] = fair_verdict(trained, arena.budget_examples)
            print(f"{arena.name}: fair-comparison rule: {fairness[arena.name]}", flush=True)
    env = environment("cpu")
    record = {
        "suite": suite.name,
        "description": suite.description,
        "budgets": {a.name: a.budget_examples for a in suite.arenas if not arenas or a.name in arenas},
        "eval_limits": {a.name: a.eval_limit for a in suite.arenas if not arenas or a.name in arenas},
        "command": "overlooked bench --suite " + name + "".join(f" --arena {a}" for a in arenas or []),
        "date": env["date"][:10],
        "wall_time_s": round(time.perf_counter() - started, 1),  # the whole suite, data loading included
        "environment": {"cpu": env["cpu"], "threads": env["torch_threads"], "torch": env["torch"], "git_commit": env["git_commit"], "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "fairness": fairness,  # per arena: "met", or the broken conditions (recorded, never a reason to lose the suite's runs)
        "rows": rows,
    }
    (folder / "suite.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
    print(f"run folder: {folder}")
    return folder, rows


def train_throughput(cfg, data_dir: str | None, probe_steps: int = 5) -> float:
    """Training examples per second of ``cfg``'s model, timing the trainer's own ``train_step`` on real
    training batches (one warm-up step, then ``probe_steps``)."""
    import torch

    from overlooked import api
    from overlooked.train.trainer import build_optimizer, train_step

    splits = api.build_data(cfg, data_dir)
    model = api.build_model(cfg, splits.meta).train()
    objective = api.build_objective(cfg, splits)
    optimizer = build_optimizer(cfg.train, model.parameters())
    g = torch.Generator().manual_seed(0)
    batches = [splits.train[torch.randint(len(splits.train), (cfg.train.batch_size,), generator=g)] for _ in range(probe_steps + 1)]
    train_step(model, batches[0], splits.input_keys, objective, optimizer, cfg.train)
    t0 = time.perf_counter()
    for batch in batches[1:]:
        train_step(model, batch, splits.input_keys, objective, optimizer, cfg.train)
    return probe_steps * cfg.train.batch_size / (time.perf_counter() - t0)


def _estimate_row(case: Case, arena: Arena, data_dir: str | None) -> dict[str, Any]:
    """Measured throughput and the expected training time of the case's full budget (nothing trained)."""
    row = _row(case, arena, None, None, "not run")
    if case.convert_from is not None:
        row["note"] = f"conversion of {case.convert_from}: inference only, time not estimated"
        return row
    rate = train_throughput(case_config(case, arena, data_dir), data_dir)
    row["train_examples_per_s"] = rate
    row["expected_hours"] = arena.budget_examples / rate / 3600
    row["note"] = "expected time from measured training throughput; evaluation not included"
    print(f"{arena.name:<12} {case.name:<22} not run: {rate:,.0f} examples/s -> {row['expected_hours']:.1f} h expected", flush=True)
    return row


def _format_row(r: dict[str, Any]) -> str:
    acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
    return f"{r['arena']:<12} {r['case']:<22} {r['role']:<8} acc {acc:>7}  params {r['params'] or 0:>10,}  train {r['train_time_s'] or 0:>6.0f} s"
