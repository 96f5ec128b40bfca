"""Command line: ``overlooked train | evaluate | explain | ask | bench | demo | report | show | list | data | export-nir | convert``.

Each subcommand parses its arguments, loads a config, applies ``key=value`` overrides and calls the function
of the same name in :mod:`overlooked.api`. Errors the user can fix are printed without a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import select
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from overlooked import __version__
from overlooked.config import check_distinct_overrides, dump_yaml, integer_range, load_yaml, packaged_configs, parse_override
from overlooked.data.store import dataset_names
from overlooked.errors import OverlookedError, StorageError


def _top_level_items(values: str, each: str) -> list[str]:
    """``values`` split at the commas outside brackets: ``"1,[2,3],4..6"`` -> ``["1", "[2,3]", "4..6"]``."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(values):
        depth += (c in "[{") - (c in "]}")
        if depth < 0:
            break
        if c == "," and depth == 0:
            items.append(values[start:i])
            start = i + 1
    if depth != 0:
        raise OverlookedError(f"--each {each!r}: its brackets do not balance; write grouped values as [1,2],[3]")
    return [*items, values[start:]]


def _trial_counts(items: list[str] | None) -> dict[str, int] | None:
    """``--trials RUN=N ...`` as ``{RUN: N}``."""
    if items is None:
        return None
    counts = {}
    for item in items:
        run, sep, n = item.rpartition("=")
        if not sep or not run or not (n.isascii() and n.isdigit()):  # isdigit alone admits '²', which int() refuses
            raise OverlookedError(f"--trials takes RUN=N (a run folder and its number of hyper-parameter trials), got {item!r}")
        if run in counts and counts[run] != int(n):  # the last one won, silently
            raise OverlookedError(f"--trials gives {run} two counts ({counts[run]} and {n}); give each run one")
        counts[run] = int(n)
    return counts


def _print_summary(path: Any, summary: dict[str, Any]) -> None:
    keys = ("test_accuracy", "val_accuracy", "train_accuracy", "test_accuracy_mean", "test_accuracy_std", "params", "flops_per_example", "examples_seen", "wall_time_s")
    for key in keys:
        if key in summary and summary[key] is not None:
            value = summary[key]
            split = key.split("_")[0]
            part = ""
            if key.endswith("_accuracy") and _is_number(summary.get(f"{split}_examples_available")):  # train.eval_limit
                part = f" (on the first {summary.get(f'{split}_examples')} of {summary[f'{split}_examples_available']:,} {split} examples: train.eval_limit)"
            print((f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}") + part)
    babi = summary.get("dataset") in (None, "babi")  # failed tasks (error > 5%) are bAbI's measure, not gas sensor batches'
    if summary.get("test_group_accuracy"):
        print(f"groups: {_group_line(summary['test_group_accuracy'], babi)}")
    for rule in ("best_by_val", "best_by_train"):
        if rule in summary:
            r = summary[rule]
            if "test_accuracy" in r:  # summaries of --each written before it was recorded lack it
                print(f"{rule}: test_accuracy {r['test_accuracy']:.4f} (seed {r['seed']}; rule: {r['rule']})")
            if r.get("test_group_accuracy"):
                print(f"{rule} groups: {_group_line(r['test_group_accuracy'], babi)}")
    print(f"run folder: {path}")


def _group_line(groups: dict[str, float], failed: bool = True) -> str:
    """The bAbI papers' two numbers for per-task accuracies: mean test error and tasks failed (error > 5%);
    the mean alone for other grouped data (``failed=False``: the 5% rule is bAbI's).

    >>> _group_line({"1": 1.0, "2": 0.9, "3": 0.95})
    'mean test error 5.00% over 3, 1 failed (error > 5%)'
    >>> _group_line({"1": 1.0, "2": 0.9}, failed=False)
    'mean test error 5.00% over 2'
    """
    from overlooked.bench.report import FAILED_ABOVE, failed_count
    from overlooked.stats import error_percent

    errors = [error_percent(a) for a in groups.values() if _is_number(a)]
    unread = f"; {len(groups) - len(errors)} without a number (a damaged summary)" if len(errors) < len(groups) else ""
    if not errors:
        return f"no group accuracy to average{unread}"
    tasks = f", {failed_count(errors)} failed (error > {FAILED_ABOVE:g}%)" if failed else ""
    return f"mean test error {sum(errors) / len(errors):.2f}% over {len(errors)}{tasks}{unread}"


def import_plugins(modules: list[str]) -> None:
    """Import each ``--import`` module: a ``.py`` file by its path, else a dotted name looked up from the current
    folder first (as ``python -m`` does), then sys.path. Its registrations then serve the command."""
    import importlib
    import importlib.util
    from pathlib import Path

    for name in modules:
        path = Path(name)
        try:
            if name.endswith(".py"):
                if not path.is_file():
                    raise OverlookedError(f"--import {name}: no such file")
                other = sys.modules.get(path.stem)
                if other is not None and Path(getattr(other, "__file__", "") or "").resolve() != path.resolve():
                    raise OverlookedError(f"--import {name}: a module named {path.stem!r} is already imported (from {getattr(other, '__file__', 'built in')}); rename the file")
                spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(path.stem, None)  # no half-built module left behind
                    raise
            else:
                if os.getcwd() not in sys.path and "" not in sys.path:
                    sys.path.insert(0, os.getcwd())
                importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                raise OverlookedError(f"--import {name}: {exc}; give a module importable from the current folder or sys.path, or the path of a .py file") from None
            raise OverlookedError(f"--import {name}: importing it failed: {exc} (a module it imports is missing)") from None


def _announcer(args: argparse.Namespace, every_s: float = 30.0) -> Any:
    """A callback that says on stderr where each run writes, when it starts (so that a long or interrupted run
    can be found and resumed; the folder is remembered in ``args.run_folder`` for the interrupt message) and,
    where no progress bar can show (stderr not a terminal: nohup, a batch job) and ``train.progress`` is on,
    a line after a validation pass, at most one every ``every_s`` seconds."""
    import time

    from overlooked.train.callbacks import Callback

    class Announce(Callback):
        last = -math.inf

        def on_train_start(self, ctx: Any) -> None:
            if ctx.run_dir is not None and ctx.dist.is_main:
                args.run_folder = ctx.run_dir
                print(f"run folder: {ctx.run_dir}", file=sys.stderr, flush=True)

        def on_eval_end(self, ctx: Any, record: dict[str, Any]) -> None:
            if ctx.cfg.progress and ctx.dist.is_main and not sys.stderr.isatty() and time.monotonic() - self.last >= every_s:
                self.last = time.monotonic()
                print(
                    f"step {record['step']} (epoch {record['epoch']:.2f}): train loss {record['train_loss']:.4f} "
                    f"acc {record['train_accuracy']:.4f}, val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}, "
                    f"{record['examples_per_s']:.0f} examples/s",
                    file=sys.stderr,
                    flush=True,
                )

    return Announce()


def _top_of(run: Path) -> Path:
    """The folder to ``--resume`` for a run folder: the --repeats folder above a seed's (``seedN`` under a
    folder whose config has ``train.repeats`` > 1), then the --each folder above a value's (its parent holds
    ``each.json``); the run folder itself otherwise. Only these two containers are climbed."""
    if re.fullmatch(r"seed\d+", run.name) and (run.parent / "config.yaml").is_file():
        try:
            repeats = (load_yaml((run.parent / "config.yaml").read_text()) or {}).get("train", {}).get("repeats", 1)
        except (OSError, yaml.YAMLError, AttributeError):
            repeats = 1
        if isinstance(repeats, int) and repeats > 1:
            run = run.parent
    if (run.parent / "each.json").is_file():
        run = run.parent
    return run


def cmd_train(args: argparse.Namespace) -> int:
    from overlooked import api

    if args.resume:
        given = [a for a in (args.config, *args.overrides) if a] + [f"--{n}" for n in ("each", "repeats", "seed", "out") if getattr(args, n) is not None] + (["--bf16"] if args.bf16 else [])
        if given:
            raise OverlookedError(
                f"--resume continues {args.resume} exactly as it was configured, so it takes no CONFIG, overrides or run options other than --device and --data-dir (got {' '.join(given)}). "
                f"What may change on a resume, train.num_threads, progress, max_minutes and eval_batch_size, is edited in {Path(args.resume) / 'config.yaml'} "
                "(the resume checks that nothing else changed); to train with other settings, start a new run"
            )
        path, summary = api.resume(args.resume, data_dir=args.data_dir, device=args.device, callbacks=[_announcer(args)])
        _print_summary(path, summary)
        return 0
    if not args.config:
        raise OverlookedError("train needs a CONFIG (a packaged name such as cnn_mnist, or a YAML path) or --resume RUN")
    if Path(args.config).is_dir() and (Path(args.config) / "config.yaml").is_file():  # a run folder given as CONFIG
        run = args.config
        raise OverlookedError(
            f"{run} is a run folder, not a config. To continue it where it stopped: overlooked train --resume {run}; "
            f"to train a new run from its weights: overlooked train {Path(run) / 'config.yaml'} train.init_from={run}; "
            f"to run its config again: overlooked train {Path(run) / 'config.yaml'}"
        )
    overrides = list(args.overrides)
    names = [repr(o) for o in overrides]  # how the messages call each setting: as the user gave it
    for flag, key, option in ((args.device, "train.device", "--device"), (args.repeats, "train.repeats", "--repeats"), (args.seed, "train.seed", "--seed")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
            names.append(f"{option} {flag}")
    if args.bf16:
        overrides.append("train.bf16=true")
        names.append("--bf16")
    if args.each:
        if len(args.each) > 1:
            raise OverlookedError(f"--each given {len(args.each)} times ({', '.join(args.each)}); one --each KEY=V1,V2,... per run; the values of another setting are another run")
        key, _, values = args.each[0].partition("=")
        if not key or not values:
            raise OverlookedError(f"--each takes KEY=V1,V2,... (e.g. data.tasks=1,2,3), got {args.each[0]!r}")
        check_distinct_overrides([*overrides, f"{key}=null"], [*names, f"--each {args.each[0]}"])
    check_distinct_overrides(overrides, names)
    cfg = api.load(args.config, overrides)
    if args.each:
        parsed: list[Any] = []
        for i, item in enumerate(_top_level_items(values, args.each[0]), 1):  # 1..20, 1,2,4..20 (inclusive integer ranges), [1,2],[3]
            if not item.strip():
                raise OverlookedError(f"--each {args.each[0]!r}: item {i} is empty (two commas in a row, or one at an end); write KEY=V1,V2,...")
            ranged = integer_range(item)
            try:
                parsed += ranged if ranged is not None else [load_yaml(item)]
            except yaml.YAMLError:
                raise OverlookedError(f"--each {args.each[0]!r}: {item!r} is not a YAML value (a number, a word, or a [list])") from None
        if len(parsed) == 1 and isinstance(parsed[0], list) and len(parsed[0]) > 1:  # `data.tasks=[1,2]`: one joint run
            inner = ",".join(map(str, parsed[0]))
            print(f"overlooked: note: --each {args.each[0]} is one value, the list {parsed[0]}, so one run on all of it; for one run per item write --each {key}={inner}", file=sys.stderr)
        path, summary = api.train_each(cfg, key, parsed, data_dir=args.data_dir, out=args.out, callbacks=[_announcer(args)])
        _print_summary(path, summary)
        return 0
    path, summary = api.train(cfg, data_dir=args.data_dir, out=args.out, callbacks=[_announcer(args)])
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(path, summary)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from overlooked import api

    if args.limit is not None and args.limit < 0:
        raise OverlookedError(f"--limit takes a number of examples N >= 1, or 0 for all of them; got {args.limit}")
    limit = -1 if args.limit is None else (None if args.limit == 0 else args.limit)
    res = api.evaluate(args.run, split=args.split, checkpoint=args.checkpoint, data_dir=args.data_dir, data_overrides=args.overrides, limit=limit, device=args.device)
    res.pop("group_accuracy", None) if not args.groups else None
    if args.groups and res.get("group_accuracy") is None:
        print("overlooked: --groups: this dataset has no groups (bAbI's tasks are groups), so there is no per-group accuracy", file=sys.stderr)
    print(json.dumps(res, indent=2))
    return 0


def _is_override(text: str) -> bool:
    """Whether a command-line word is a ``key=value`` override rather than an option or a value."""
    return "=" in text and not text.startswith("-")


def _index_or_override(text: str) -> int | str:
    """A value of explain's --index: a question number, or a key=value override that followed the numbers
    (``--index 0 3 data.tasks=[6]``; --index takes several values, so argparse hands it those too)."""
    if _is_override(text):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid question number {text!r}: --index takes whole numbers (overrides are key=value)") from None


def cmd_explain(args: argparse.Namespace) -> int:
    from overlooked import api
    from overlooked.memory.explain import format_example, format_stats

    if args.index is not None:  # overrides that followed --index's numbers
        args.overrides = [*args.overrides, *(i for i in args.index if isinstance(i, str))]
        args.index = [i for i in args.index if isinstance(i, int)]
        if not args.index:
            raise OverlookedError("--index needs at least one question number before any override, e.g. --index 0 3 data.tasks=[6]")
    keys = [".".join(parse_override(o)[0]) for o in args.overrides]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:  # the words come from three places (before options, after them, after --index), so no order is "last"
        raise OverlookedError(f"override {', '.join(twice)} given more than once ({' '.join(args.overrides)}); give each key once")

    if api.is_capsule_run(args.run):  # a capsule model: its reconstructions, Figure-4 grid and couplings
        if args.stats or args.task is not None or (args.index is not None and len(args.index) > 1) or args.overrides:
            raise OverlookedError("for a capsule run, explain takes one --index (the first example shown), --split, --checkpoint and --out; --task, --stats and data overrides are for memory runs")
        record = api.capsule_figures(args.run, (args.index or [0])[0], split=args.split, checkpoint=args.checkpoint, data_dir=args.data_dir, out=args.out)
        print(f"{args.split} examples {record['rows'][0]}..{record['rows'][-1]}: predicted {record['predicted']}")
        for kind, path in record["figures"].items():
            print(f"{kind}: {path}")
        return 0
    if args.stats:
        stats = api.explain_stats(args.run, task=args.task, split=args.split, checkpoint=args.checkpoint, data_dir=args.data_dir, out=args.out, data_overrides=args.overrides)
        on = f" of the data of {' '.join(args.overrides)}" if args.overrides else ""
        print(f"hops against the supporting facts, {args.split} split{on}:")
        print(format_stats(stats))
        if args.index is None:
            return 0
        print()
    shown = api.explain(args.run, args.index, task=args.task, split=args.split, checkpoint=args.checkpoint, data_dir=args.data_dir, out=args.out, data_overrides=args.overrides)
    for example in shown:
        print(format_example(example))
        print(f"figure: {example['figure']}\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from overlooked import api
    from overlooked.memory.explain import format_example

    story = sys.stdin.read() if args.story == "-" else args.story
    result = api.ask(args.run, story, args.question, answer=args.answer, checkpoint=args.checkpoint, data_dir=args.data_dir, out=args.out)
    print(format_example(result))
    if result["figure"]:
        print(f"figure: {result['figure']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print CONFIG with its overrides applied and checked, as a run would write it to config.yaml; or, for a
    finished run folder, what the run reported."""
    from overlooked import api

    folder = Path(args.config)
    if folder.is_dir() and any((folder / f).is_file() for f in ("summary.json", "config.yaml")):  # a run folder, finished or not
        if args.overrides:
            raise OverlookedError(f"{args.config} is a run folder: `show RUN` prints what the run reported and takes no overrides (they apply to configs)")
        from overlooked.train.runlock import is_training

        if (folder / "summary.json").is_file() and not is_training(folder):
            _show_run(folder)
        else:  # unfinished, or a stopped run a process is resuming now (its summary is the stop's)
            _show_progress(folder)
        return 0
    packaged = args.config in packaged_configs()  # a packaged name wins over a folder of that name in the current directory
    if not packaged and (folder.is_dir() or (not folder.exists() and ("/" in args.config or os.sep in args.config) and folder.suffix not in (".yaml", ".yml"))):
        what = "is a folder but not a run folder (no config.yaml or summary.json)" if folder.is_dir() else "does not exist"
        raise OverlookedError(f"{args.config} {what}; show takes a run folder (the one `overlooked train` printed), a packaged config name (`overlooked list configs`) or a YAML file")
    cfg = api.load(args.config, list(args.overrides))  # loaded and fully checked
    for caught in api.model_warnings(cfg):  # what building the model would warn of, said before a run
        warnings.warn(caught.message, caught.category, stacklevel=1)
    print(dump_yaml(cfg.to_dict()), end="")
    return 0


def _read_json(path: Any) -> dict[str, Any]:
    """A run's small JSON file as a dict (:func:`overlooked.api.read_run_file`); an empty one when it is
    missing or damaged (shown as unknown)."""
    from overlooked import api

    try:
        value = api.read_run_file(path) if path.is_file() else {}
    except (OSError, OverlookedError):
        return {}
    return value if isinstance(value, dict) else {}


def _is_number(value: Any) -> bool:
    """An int or float from a summary (not a bool): what a damaged file may not hold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _progress_lines(progress: dict[str, Any], run: Path) -> list[str]:
    """The lines `show` prints for an unfinished run (see :func:`overlooked.api.run_progress`)."""
    if progress["finished"]:
        return [f"{run}: finished (overlooked show {run})"]
    if "runs" in progress:  # a --repeats / --each folder (a --repeats folder inside an --each one too)
        return [line for name, sub in progress["runs"].items() for line in [f"{name}:", *("  " + x for x in _progress_lines(sub, run / name))]]
    lines = []
    total, seen, total_ex = progress["total_steps"], progress["examples_seen"], progress["total_examples"]
    if progress["step"] == 0:
        now = "being trained now" if progress.get("training_now") else "started, or killed before its first validation pass"
        return [f"{run}: unfinished, no step recorded yet ({now})"]
    of_steps = f" of {total:,}" if total else ""
    epoch = progress.get("epoch")
    epochs = f" (epoch {epoch:.2f} of {progress['epochs']})" if _is_number(epoch) else ""
    share = f" of {total_ex:,} examples ({100.0 * seen / total_ex:.1f}%)" if total_ex else " examples"
    lines.append(f"progress: step {progress['step']:,}{of_steps}{epochs}, {seen:,}{share}")
    last = progress["last"]
    if last:
        scores = ", ".join(f"{k} {last[k]:.4f}" for k in ("val_accuracy", "val_loss", "train_accuracy") if _is_number(last.get(k)))
        lines.append(f"last validation pass: step {last['step']:,}: {scores} (metrics.jsonl written {progress.get('updated', 'at an unknown time')})")
    if _is_number(progress.get("best_metric")) and _is_number(progress.get("best_step")) and progress["best_step"] >= 0:
        metric = "val_accuracy" if progress["select_metric"] == "last" else progress["select_metric"]
        lines.append(f"best so far ({metric}): {progress['best_metric']:.4f} at step {progress['best_step']:,}")
    if _is_number(progress.get("minutes_left")) and _is_number(last.get("examples_per_s")):
        lines.append(f"speed: {last['examples_per_s']:,.0f} examples/s at the last pass: about {progress['minutes_left']:.0f} min of training left at that speed")
    if progress.get("checkpoint_problem"):
        lines.append(f"its checkpoint's record cannot be read: {progress['checkpoint_problem']}")
    if progress.get("training_now"):
        lines.append("being trained now by a process that holds the folder's lock (a resume would be refused until it ends)")
    elif _is_number(progress.get("checkpoint_step")):
        how = "stopped by train.max_minutes (a resume drops the extra validation pass of that stop)" if progress["stopped_by_clock"] else "the last checkpoint"
        now = "no process is training it now" if progress.get("training_now") is False else "if no process is training it now"
        lines.append(f"resumable from step {progress['checkpoint_step']:,} ({how}; {now}): overlooked train --resume {run}")
    return lines


def _show_progress(run: Path) -> None:
    """An unfinished run: how far it has come, its last and best validation scores, and how to continue it."""
    from overlooked import api

    progress = api.run_progress(run)
    print(f"{progress['name']}: model {progress['model']} on {progress['dataset']}, unfinished")
    for line in _progress_lines(progress, run):  # a --repeats / --each folder: each seed's or value's, indented
        print(line)
    print(f"config: {run / 'config.yaml'}")


def _show_run(run: Any) -> None:
    """What a finished run reported: model, data, budget, where and when it ran, its headline numbers and,
    for grouped data (bAbI tasks), accuracy and error per group."""
    from overlooked import api

    summary = api.read_summary(run)
    if not (run / "config.yaml").is_file():  # not a training run (a demo's folder): its summary as it is
        print(f"{run}: no config.yaml, so not a training run (a demo's folder?); its summary.json:")
        print(json.dumps(summary, indent=1))
        return
    env, meta = _read_json(run / "environment.json"), _read_json(run / "data_meta.json")
    conversion = summary.get("kind") == "ann_to_snn_conversion"  # `overlooked convert`: no training, T time steps
    budget = ", ".join(f"{summary[k]:g} {k}" for k in ("steps", "epochs") if isinstance(summary.get(k), (int, float)))
    if conversion:
        budget = f"simulated for up to T = {summary.get('steps')} time steps, {summary.get('norm')} norm from {summary.get('calibration')} calibration images, of {summary.get('source_run')}"
    seeds = f", {summary['repeats']} seeds" if isinstance(summary.get("repeats"), int) and summary["repeats"] > 1 else ""  # --repeats
    each = summary.get("each") if isinstance(summary.get("each"), dict) else None
    per = f", one model per {each.get('key')} in {each.get('values')}" if each else ""  # --each
    print(f"{summary.get('name', run.name)}: model {summary.get('model', 'unknown')} on {summary.get('dataset', 'unknown')}" + (f", {budget}" if budget else "") + seeds + per)
    where = env.get("cpu") if env.get("device", "cpu") == "cpu" else env.get("gpu", env.get("device"))
    print(f"ran {env.get('date', 'at an unknown date')} on {where or 'unknown hardware'}, torch {env.get('torch', 'unknown')}, git {str(env.get('git_commit', 'unknown'))[:12]}")
    if summary.get("selection"):
        averaged = summary.get("weights") not in (None, "as trained")  # train.ema_decay: the average is what was scored
        print(f"reported weights: {summary['selection']}" + (f"; {summary['weights']}" if averaged else ""))
    if conversion:
        curve = summary.get("snn_test_accuracy") if isinstance(summary.get("snn_test_accuracy"), dict) else {}
        print(f"ann_test_accuracy: {summary.get('ann_test_accuracy')}")
        for t, acc in sorted(curve.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0):
            print(f"snn_test_accuracy at T = {t}: {acc}")
    _print_summary(run, summary)
    if summary.get("stopped_by") == "max_minutes":
        print(f"stopped by train.max_minutes after {summary.get('epochs', 0):.2f} epochs; to train it on: overlooked train --resume {run} (after raising or removing train.max_minutes in its config.yaml)")
    groups = summary.get("test_group_accuracy")
    if isinstance(groups, dict) and groups:
        splits = [k for k in ("test", "val", "train") if isinstance(summary.get(f"{k}_group_accuracy"), dict)]
        name = meta.get("group_key", "group")
        print(f"{name:>6}  " + "  ".join(f"{k + ' acc':>9}" for k in splits) + f"  {'test err %':>10}")
        from overlooked.stats import error_percent

        order = sorted(groups, key=lambda g: (0, int(g), "") if str(g).isdigit() else (1, 0, str(g)))  # bAbI tasks 1..20, not 1, 10, 11, ...
        for g in order:  # a damaged value prints as -
            acc = groups[g]
            row = [summary[f"{k}_group_accuracy"].get(g) for k in splits]
            error = f"{error_percent(acc):>10.2f}" if _is_number(acc) else f"{'-':>10}"
            print(f"{g:>6}  " + "  ".join(f"{v:>9.4f}" if _is_number(v) else f"{'-':>9}" for v in row) + f"  {error}")
    print(f"config: {run / 'config.yaml'}")
    if isinstance(env.get("argv"), list) and env["argv"]:
        from overlooked.bench.report import command_of

        print(f"command: {command_of(env)}")  # as it was typed, in the folder it ran from


def cmd_list(args: argparse.Namespace) -> int:
    from overlooked import api
    from overlooked.config import packaged_configs

    regs = api.registries()
    regs["configs"] = sorted(packaged_configs())
    from overlooked.bench.suites import suite_names

    regs["suites"] = suite_names()
    kinds = [args.kind] if args.kind else list(regs)
    for kind in kinds:
        if kind not in regs:
            raise OverlookedError(f"unknown kind {kind!r}; choose from {', '.join(regs)}")
        print(f"{kind}: {', '.join(regs[kind]) or '(none yet)'}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from overlooked.data import store

    if args.name and args.name not in store.dataset_names():
        args.name = _download_name(args.name)
    if args.action == "path":  # the data root, or with NAME that dataset's folder under it
        root = store.resolve_data_dir(args.data_dir)
        print(root / store.dataset_files(args.name)[0].path.split("/")[0] if args.name else root)
        return 0
    if not args.name:
        raise OverlookedError(f"data {args.action} needs a dataset NAME: one of {', '.join(store.dataset_names())}")
    if args.action != "fetch" and (args.mirror or args.force):
        raise OverlookedError(f"--mirror and --force are options of `overlooked data fetch`; `data {args.action}` downloads nothing")
    if args.action == "fetch":
        said: list[str] = []  # fetch reports each download it starts; none means every file was there and verified
        path = store.fetch(args.name, args.data_dir, mirrors=args.mirror, force=args.force, progress=lambda line: (said.append(line), print(line)))
        print(f"{args.name}: {'fetched and verified' if said else 'already present and verified'} under {path}")
        return 0
    report = store.verify(args.name, args.data_dir)
    print(report)
    if not report.complete:
        print(f"Fix: `overlooked data fetch {args.name}` downloads and verifies what is missing or corrupt, keeping a file that fails its checksum as NAME.replaced (exit status 1: incomplete)")
    return 0 if report.complete else 1


def _download_name(name: str) -> str:
    """The download a config's dataset name reads (``gas_drift`` -> ``uci_gas_sensor_drift``), for
    ``overlooked data``; a name with no single download is refused, naming what it reads."""
    from overlooked import catalog
    from overlooked.data import store
    from overlooked.registry import DATASETS

    catalog.load_all()
    if name not in DATASETS:
        raise OverlookedError(f"unknown dataset {name!r}: one of {', '.join(store.dataset_names())}")
    downloads = DATASETS.tags(name).get("downloads")
    if downloads is None:
        raise OverlookedError(f"{name} is a dataset of your own (it names no downloads); `overlooked data` handles the library's downloads: {', '.join(store.dataset_names())}")
    downloads = tuple(downloads)
    if len(downloads) == 1:
        print(f"{name} (a config's dataset) reads the download {downloads[0]}", file=sys.stderr)
        return downloads[0]
    reads = f"reads the downloads {' and '.join(downloads)}" if downloads else "downloads nothing (it is made in code)"
    raise OverlookedError(f"{name} is a config's dataset name; it {reads}. `overlooked data` takes a download's name: one of {', '.join(store.dataset_names())}")


def cmd_bench(args: argparse.Namespace) -> int:
    from overlooked import api

    compare_only = [flag for flag, given in (("--runs", args.runs is not None), ("--max-examples", args.max_examples is not None), ("--trials", args.trials is not None), ("--unfair", args.unfair)) if given]
    if compare_only and (args.suite or args.family != "compare"):
        raise OverlookedError(f"{' and '.join(compare_only)} {'belong' if len(compare_only) > 1 else 'belongs'} to `bench compare`; `bench {args.suite and '--suite ' + args.suite or args.family}` would ignore {'them' if len(compare_only) > 1 else 'it'}")
    if args.quick and (args.suite or args.family == "compare"):  # it would be ignored: a suite's size is its own
        raise OverlookedError(f"--quick is for a family's benchmark (`bench memory --quick`); {'a suite runs its arenas at their own sizes (the quick suite: --suite quick)' if args.suite else '`bench compare` reads finished runs'}")
    if args.arena and not args.suite:
        raise OverlookedError("--arena chooses arenas of a --suite; give --suite too (see `overlooked list suites`)")
    if args.device != "cpu" and (args.suite or args.family == "compare"):
        raise OverlookedError(f"--device is for a family's benchmark (`bench memory --device {args.device}`); {'a suite trains its arenas on the CPU' if args.suite else '`bench compare` reads finished runs'}")
    if args.suite:
        from overlooked.bench.suites import run_suite

        run_suite(args.suite, out=args.out or "runs", data_dir=args.data_dir, arenas=args.arena)
        return 0
    if args.family == "compare":
        if not args.runs or args.max_examples is None:
            raise OverlookedError("bench compare needs --runs RUN [RUN ...] and --max-examples N (the shared budget)")
        api.compare(args.runs, args.max_examples, trials=_trial_counts(args.trials), unfair=args.unfair)
        return 0
    api.bench(args.family, out=args.out, data_dir=args.data_dir, quick=args.quick, device=args.device)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from overlooked import api

    api.demo(args.family, out=args.out, data_dir=args.data_dir)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from overlooked import api

    written = api.report(runs=args.runs, output=args.output, force=args.force)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_export_nir(args: argparse.Namespace) -> int:
    from overlooked import api

    path = api.export_nir(args.run, args.output, checkpoint=args.checkpoint, data_dir=args.data_dir, force=args.force, dt=args.dt, flat_input=args.flat_input, discretisation=args.discretisation)
    print(f"wrote {path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from overlooked import api

    if args.limit is not None and args.limit < 0:
        raise OverlookedError(f"--limit takes a number of test images N >= 1, or 0 for all of them; got {args.limit}")
    path, s = api.convert(args.run, norm=args.norm, steps=args.steps, calibration=args.calibration, out=args.out, checkpoint=args.checkpoint, data_dir=args.data_dir, limit=args.limit or None)
    print(f"ann_test_accuracy: {s['ann_test_accuracy']:.4f}")
    for t, acc in s["snn_test_accuracy"].items():
        e = s["energy"][t]["totals"]
        print(f"snn_test_accuracy T={t}: {acc:.4f}  SOPs/example {e['sops']:,.0f}  MACs/example {e['macs']:,.0f}  energy {e['snn_energy_pj'] / 1e6:.3f} uJ vs ANN {e['ann_energy_pj'] / 1e6:.3f} uJ (compute-only estimate)")
    print(f"run folder: {path}")
    return 0


CHECKPOINT_OPTION = {"default": "best", "choices": ["best", "last"], "help": "the reported weights (best, the default) or the final ones (last)"}
SPLIT_OPTION = {"default": "test", "choices": ["train", "val", "test"], "help": "which split (default: test)"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(prog="overlooked", description="Memory, spiking and capsule networks, measured against what won.")
    parser.add_argument("--version", action="version", version=f"overlooked {__version__}")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (a dotted name found from the current folder or sys.path, or a .py file) before the command, so the models, datasets, objectives or callbacks it registers can be named; repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, out: bool = True) -> None:
        p.add_argument("--data-dir", default=None, help="data folder (default: $OVERLOOKED_DATA, else ~/.cache/overlooked)")
        if out:
            p.add_argument("--out", default=None, help="parent folder of run folders (default ./runs)")

    p = sub.add_parser("train", help="train a model from a config", description="Train CONFIG (packaged name or YAML path) with key=value overrides, e.g. `overlooked train cnn_mnist train.epochs=2`.")
    p.add_argument("config", nargs="?", help="packaged config name (see `overlooked list configs`) or a YAML file")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=0.01 model.hidden=[256]")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    p.add_argument("--repeats", type=int, default=None, help="train N seeds; report best-of-N (rule named) and mean +- std")
    p.add_argument("--seed", type=int, default=None, help="train.seed (with --repeats, the first seed; the others follow it)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue RUN exactly from its last checkpoint")
    p.add_argument("--each", action="append", default=None, metavar="KEY=V1,V2", help="one independent run per value, in one folder, e.g. data.tasks=1..20 (bAbI independent training), data.tasks=1,2,4..20 (ranges inclusive) or data.seed=1,2")
    common(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's checkpoint on a split")
    p.add_argument("run", help="run folder written by `overlooked train`")
    p.add_argument("overrides", nargs="*", help="data.* overrides to evaluate on other data, e.g. data.name=affnist_style")
    p.add_argument("--split", **SPLIT_OPTION)
    p.add_argument("--checkpoint", **CHECKPOINT_OPTION)
    p.add_argument("--groups", action="store_true", help="also print per-group (e.g. per-task) accuracy")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N examples of the split (default: the run's own train.eval_limit, as its summary reports, on its own data; all examples on other data; 0: all)")
    p.add_argument("--device", default=None, help="where to evaluate (default: the device the run trained on), e.g. cpu")
    common(p, out=False)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("explain", help="show what a trained memory network read (attention per hop) or what a capsule network's capsules hold", description="For bAbI questions of a MemN2N, KV-MemNN or MemNN run: the story, the addressing of every hop over the memories (* marks the dataset's supporting facts), the answer and the prediction, printed and drawn as PNG (default into RUN/explain). For a CapsNet run: reconstructions of 8 examples from --index, the Figure-4 pose perturbations and the coupling coefficients of that example, as PNGs. For a matrix-capsule (EM) run: the class-capsule activations of 8 examples, that example's routing assignments, and its predicted class capsule's pose and activation as the example is rotated by -45..45 degrees.")
    p.add_argument("run", help="run folder of a memory model on bAbI or of a CapsNet (one seed of a --repeats run: RUN/seedN)")
    p.add_argument("overrides", nargs="*", help="data.* overrides to explain questions of other data, read with the run's vocabulary and sizes, e.g. data.tasks=[6]")
    p.add_argument("--index", type=_index_or_override, nargs="+", default=None, help="questions to show (default 0); with --task, counted within that task")
    p.add_argument("--task", type=int, default=None, help="only questions of this bAbI task")
    p.add_argument("--split", **SPLIT_OPTION)
    p.add_argument("--checkpoint", **CHECKPOINT_OPTION)
    p.add_argument("--stats", action="store_true", help="per task over the split (only task T with --task T): how often each hop's strongest memory is a supporting fact, the weight on them, questions with every supporting fact retrieved (add --index to also show questions)")
    p.add_argument("--out", default=None, help="folder for the PNGs and explain.json (default RUN/explain)")
    common(p, out=False)
    p.set_defaults(fn=cmd_explain)

    p = sub.add_parser("ask", help="ask a trained bAbI model a question of your own about a story of your own", description="Encodes STORY and QUESTION with the run's vocabulary and sizes (words it was never trained on are refused and named) and prints the prediction; for a memory network also what each hop read, drawn as PNG (default into RUN/explain).")
    p.add_argument("run", help="run folder of a model trained on bAbI (one seed of a --repeats run: RUN/seedN)")
    p.add_argument("story", help="the statements, oldest first, each ending with '.' or a line break; '-' reads them from stdin")
    p.add_argument("question", help="the question, e.g. 'Where is Mary?'")
    p.add_argument("--answer", default=None, help="the expected answer, if you know it: the output then says right or wrong")
    p.add_argument("--checkpoint", **CHECKPOINT_OPTION)
    p.add_argument("--out", default=None, help="folder for the PNG (default RUN/explain)")
    common(p, out=False)
    p.set_defaults(fn=cmd_ask)

    p = sub.add_parser("show", help="print a config with its overrides applied and checked (what a run writes to config.yaml), or what a finished run reported")
    p.add_argument("config", help="packaged config name (see `overlooked list configs`), a YAML file, or a run folder")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.kwargs.hops=2")
    p.set_defaults(fn=cmd_show)

    p = sub.add_parser("list", help="list registered models, datasets, objectives, ... and packaged configs")
    p.add_argument("kind", nargs="?", help="models, datasets, encoders, objectives, surrogates, augmentations, callbacks, benchmarks, demos, configs, suites")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("data", help="fetch, verify or locate datasets")
    p.add_argument("action", choices=["fetch", "verify", "path"], help="path: the data root, or with NAME the dataset's folder")
    p.add_argument("name", nargs="?", help=", ".join(dataset_names()))
    p.add_argument("--force", action="store_true", help="download again even when files verify")
    p.add_argument("--mirror", action="append", default=None, metavar="URL", help="with fetch: try this mirror instead of the official sources, a URL or a local path: for a dataset downloaded file by file (mnist, ...) a folder holding its files, for one downloaded as an archive (babi, uci_gas_sensor_drift) the archive itself (repeatable, tried in order)")
    common(p, out=False)
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("bench", help="speed benchmarks (one line per figure, JSON in the run folder)")
    p.add_argument("family", nargs="?", default="baselines", help="which benchmark (baselines, memory, spiking, capsules; default baselines), or `compare` for a same-budget table of runs")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--suite", default=None, help="run an arena suite instead (quick, full: see `overlooked list`)")
    p.add_argument("--arena", action="append", default=None, help="with --suite: only this arena (repeatable)")
    p.add_argument("--runs", nargs="*", default=None, help="with `compare`: finished run folders to put side by side; A,B,C names one row's hyper-parameter trials (the row is the trial with the best validation accuracy, counted as that many trials)")
    p.add_argument("--max-examples", type=int, default=None, help="with `compare`: the shared budget of training examples seen")
    p.add_argument("--trials", nargs="*", default=None, metavar="RUN=N", help="with `compare`: the hyper-parameter trials of runs whose summary does not record them (or records fewer than were tried on the split)")
    p.add_argument("--unfair", action="store_true", help="with `compare`: print the table with the broken fair-comparison conditions named, instead of refusing it")
    p.add_argument("--device", default="cpu", help="where the benchmark runs: cpu, cuda, cuda:1 ... (each family's own benchmark)")
    common(p)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("demo", help="a short tour on the real data")
    p.add_argument("family", nargs="?", default="all", help="which tour (memory, spiking, capsules, baselines), or all of them (default)")
    common(p)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("report", help="generate docs/results.md from committed run summaries")
    p.add_argument("--runs", nargs="*", default=None, help="folders of run summaries (default results/runs)")
    p.add_argument("--output", default="docs/results.md", help="the Markdown file; results.html and figures/ are written beside it")
    p.add_argument("--force", action="store_true", help="overwrite a .md / .html there that `overlooked report` did not write, and PNGs in figures/ beside it that no overlooked command wrote")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("export-nir", help="export a trained spiking model to NIR")
    p.add_argument("run", help="run folder of a spiking model")
    p.add_argument("output", help="target .nir file (missing folders are made)")
    p.add_argument("--checkpoint", **CHECKPOINT_OPTION)
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--dt", type=float, default=None, help="write the same network for a reader stepping at DT seconds (time constants rescaled; e.g. 0.03 for N-MNIST's 30 ms bins in real time)")
    p.add_argument("--discretisation", choices=["euler", "exact"], default="euler", help="euler (default): the network as trained, for a reader stepping NIR's equations with forward Euler at the graph's dt; exact: the same network for a reader that integrates the leak exactly (LIF taus rewritten; CubaLIF refused)")
    p.add_argument("--flat-input", action="store_true", help="an MLP without its Flatten node, fed flat examples (Input [784] for MNIST): what Norse's and snnTorch's NIR importers load")
    common(p, out=False)
    p.set_defaults(fn=cmd_export_nir)

    p = sub.add_parser("convert", help="convert a trained ReLU/AvgPool CNN run to a spiking (IF) network and measure it", description="ANN-to-SNN conversion (Diehl 2015, Rueckauer 2017): accuracy after every step up to --steps, energy estimate, in a new run folder.")
    p.add_argument("run", help="run folder of a trained ReLU/average-pooling network (e.g. small_cnn)")
    p.add_argument("--norm", default="p99.9", choices=["max", "p99.9"], help="layer-wise normalisation statistic of the activations on calibration data (default p99.9)")
    p.add_argument("--steps", type=int, default=256, help="simulation steps; accuracy is recorded after every step (default 256)")
    p.add_argument("--calibration", type=int, default=1000, help="training images used for the activation statistics (default 1000)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images (default, or 0: all)")
    p.add_argument("--checkpoint", **CHECKPOINT_OPTION)
    common(p)
    p.set_defaults(fn=cmd_convert)
    return parser


def _imports_first(argv: list[str]) -> list[str]:
    """``argv`` with every ``--import MODULE`` moved before the command, where argparse reads top-level options:
    ``overlooked train CONFIG --import my_models`` means ``overlooked --import my_models train CONFIG``.

    >>> _imports_first(["train", "c.yaml", "--import", "m", "train.lr=0.1", "--import=n.py"])
    ['--import', 'm', '--import=n.py', 'train', 'c.yaml', 'train.lr=0.1']
    """
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--":  # everything after it is an argument, not an option
            rest += argv[i:]
            break
        if argv[i] == "--import" and i + 1 < len(argv):
            moved += argv[i : i + 2]
            i += 2
            continue
        (moved if argv[i].startswith("--import=") else rest).append(argv[i])
        i += 1
    return moved + rest


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``overlooked`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(_imports_first(sys.argv[1:] if argv is None else list(argv)))
    if extra:  # `train CONFIG --repeats 3 train.lr=0.1`: overrides may follow options
        if args.command in ("train", "evaluate", "show", "explain") and all(_is_override(e) for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}{_setting_hint(extra, args.command)}")
    formatwarning = warnings.formatwarning
    ours = warnings.formatwarning = functools.partial(_format_warning, formatwarning)
    try:
        return _run(args)
    finally:  # Python's format again when main returns (tests and notebooks call main in-process), unless a plugin installed its own meanwhile
        if warnings.formatwarning is ours:
            warnings.formatwarning = formatwarning


_PACKAGE_DIR = Path(__file__).resolve().parent


def _format_warning(fallback: Any, message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """The command prints the library's own warnings (ConfigWarning, NIRDtWarning, a kernel's fallback) as
    one line, ``overlooked: warning: ... (ConfigWarning)``, without the source file and code line Python
    shows, which name the library's internals rather than anything the user wrote; other warnings keep
    ``fallback``'s format (Python's, or whatever was installed before). Only the printed text changes: filters and ``pytest.warns`` / ``catch_warnings(record=True)``
    see the same warnings."""
    if category.__module__.split(".")[0] == "overlooked" or Path(filename).resolve().is_relative_to(_PACKAGE_DIR):
        return f"overlooked: warning: {message} ({category.__name__})\n"
    return fallback(message, category, filename, lineno, line)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; a user's error is one line on stderr, never a traceback."""
    try:
        import_plugins(args.imports)
        status = int(args.fn(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone before Python's own flush at exit is handled below
        return status
    except OverlookedError as exc:
        print(f"overlooked: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run = getattr(args, "run_folder", None)
        if run is not None and args.command == "train":
            run = Path(args.resume) if args.resume else _top_of(run)
            if run.is_dir():
                print(f"overlooked: interrupted; continue with `overlooked train --resume {run}`", file=sys.stderr)
            else:  # stopped before anything worth keeping was written: the run took its folder away
                print("overlooked: interrupted before the run's first checkpoint; nothing was kept (its folder was removed)", file=sys.stderr)
        else:
            print("overlooked: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if _stdout_reader_gone():  # our output's reader went away (`... | head`)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise again
            return 141  # quietly, as other tools stopped by SIGPIPE
        raise  # another pipe (a plugin's, a subprocess's): a genuine error
    except StorageError as exc:  # a run's own write failed (full or read-only disk); other OSErrors keep their traceback
        print(f"overlooked: error: {exc}. Checkpoints and run files are written to a temporary file and renamed, so those "
              "written before are whole (a metrics line cut short is dropped on resume); free space or fix the permissions, "
              "then rerun (a train run: `overlooked train --resume RUN`)", file=sys.stderr)
        return 2
    finally:
        _end_distributed()


def _setting_hint(extra: list[str], command: str) -> str:
    """For ``--epochs 2`` (a training script's habit): the override that sets it, ``train.epochs=2``."""
    from overlooked.config import TrainConfig

    fields = {form: f for f in TrainConfig.__dataclass_fields__ for form in (f, f.replace("_", "-"))}  # --batch-size, --batch_size
    for i, word in enumerate(extra):
        name, _, value = word.removeprefix("--").partition("=")
        if word.startswith("--") and name in fields and command in ("train", "show"):
            value = value or (extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("-") else "...")
            return f" (settings are key=value overrides: for {word.partition('=')[0]} write train.{fields[name]}={value})"
    return ""


def _stdout_reader_gone() -> bool:
    """Whether standard output's reader has gone. Buffered output still holds the text that could not be
    written, so flushing fails again; unbuffered output (``PYTHONUNBUFFERED=1``) holds none, so the pipe itself
    is asked: polling a pipe whose readers have all closed reports an error (POLLERR; POLLHUP on some
    systems)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or a stdout with no file behind it
        return False


def _end_distributed() -> None:
    """Under torchrun the trainer joined a process group: leave it before the process exits (a rank that exits
    with the group's threads still running can abort: "terminate called without an active exception"). Every
    run ends with the ranks agreeing that rank 0 wrote it (:func:`overlooked.api.train`), so no rank leaves while
    another still uses the group; no barrier here, which would hang the others if one rank failed after that."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            import gc

            gc.collect()  # free what still holds the group (a DDP wrapper in a reference cycle) while Python is whole
            dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
