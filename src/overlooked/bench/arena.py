"""Arena tables for the report, from committed suite results (``results/suites/*.json``, the
``suite.json`` that ``overlooked bench --suite NAME`` writes, copied there by hand when worth keeping)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overlooked.bench.report import read_json
from overlooked.errors import OverlookedError


def _fmt(x: Any, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def render_arenas(folder: Path, figures: Path | None = None, made: list[Path] | None = None) -> list[str]:
    """Markdown for every suite result in ``folder`` (a table per arena; an accuracy-against-cost figure
    per arena written into ``figures`` when given, and appended to ``made``). Rows never run say so; nothing
    is filled in."""
    made = [] if made is None else made
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return []
    lines = ["## Arena: each family beside what won (same data, same budget)", ""]
    for path in files:
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("suite"), str) or not isinstance(data.get("rows"), list):
            raise OverlookedError(f"{path} is not a suite result (`overlooked bench --suite NAME` writes one with suite and rows); restore it from git or remove it")
        env = data.get("environment", {})
        lines += [f"### Suite `{data['suite']}` ({path.name})", "", data.get("description", ""), ""]
        if env:
            lines += [f"Hardware: {env.get('cpu', '?')} CPU, {env.get('threads', '?')} threads; torch {env.get('torch', '?')}; commit {str(env.get('git_commit', '?'))[:10]}; date {data.get('date', '?')}; command `{data.get('command', '?')}`"
                      + (f"; load average {env['load_average_1min_at_end']} at the end" if "load_average_1min_at_end" in env else "")
                      + (f"; the whole suite took {data['wall_time_s'] / 60:.1f} min" if data.get("wall_time_s") is not None else "") + ".", ""]
        suite_notes = data.get("annotations", {}).get("suite", [])  # by hand, about the whole run
        lines += [f"- Note: {note}" for note in suite_notes] + ([""] if suite_notes else [])
        arenas: dict[str, list[dict[str, Any]]] = {}
        for row in data["rows"]:
            arenas.setdefault(row["arena"], []).append(row)
        for arena, rows in arenas.items():
            lines += [
                f"**{arena}** (budget: {data.get('budgets', {}).get(arena, '?')} training examples per model"
                + (f"; accuracy on the first {data['eval_limits'][arena]} test examples" if data.get("eval_limits", {}).get(arena) else "; full test set")
                + ")",
                "",
                "| case | role | status | test acc % | params | FLOPs/example | train s (loop) | ms/example (batch 256, best of 3) | SynOps/example | energy µJ/example (est.) |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for r in rows:
                acc = None if r.get("test_accuracy") is None else 100 * r["test_accuracy"]
                status = r["status"] if r["status"] != "not run" else f"not run (expected {r.get('expected_hours', float('nan')):.1f} h)"
                lines.append(
                    f"| {r['case']} | {r['role']} | {status} | {_fmt(acc, '.2f')} | {_fmt(r.get('params'), ',')} | {_fmt(r.get('flops_per_example'), ',')} | "
                    f"{_fmt(r.get('train_time_s'), '.0f')} | {_fmt(r.get('latency_ms'), '.3f')} | {_fmt(r.get('synops_per_example'), ',.0f')} | {_fmt(r.get('energy_uj_per_example'), '.2f')} |"
                )
            lines.append("")
            if arena in data.get("fairness", {}):  # judged by run_suite on the trained cases (suites run before 2026-12-06 lack it)
                lines += [f"- Fair-comparison rule (docs/fair_comparison.md), judged when the suite ran: {data['fairness'][arena]}", ""]
            for note in data.get("annotations", {}).get(arena, []):  # written by hand beside the measured rows
                lines += [f"- Note: {note}", ""]
            if figures is not None and any(r.get("test_accuracy") is not None for r in rows):
                from overlooked.plots.arena import accuracy_cost_figure

                # named by the suite's file: two files of one suite (a later rerun kept beside) draw two figures
                fig = accuracy_cost_figure(rows, figures / f"arena_{path.stem}_{arena}.png", f"{data['suite']} ({path.name}) / {arena}: accuracy against training time")
                made.append(fig)
                lines += [f"![{arena} accuracy against cost](figures/{fig.name})", ""]
    return lines


def render_figure_index(figures: Path, base: Path, made: list[Path] | None = None) -> list[str]:
    """A "Figures" section showing every PNG under ``figures`` (sorted by name), linked relative to ``base``.
    Those in ``made`` (this report wrote them) are said to be regenerated; any other is said to be a copy
    this command did not make (a demo's figure, one left from a run no longer reported, your own)."""
    pngs = sorted(figures.glob("*.png")) if figures.is_dir() else []
    if not pngs:
        return []
    made_here = {Path(p).resolve() for p in (made or [])}
    lines = ["## Figures", "", "Figures marked *regenerated* were written by this `overlooked report` from committed results; the others "
             "were copied into the figures folder (by the command named in their section, or by hand) and are shown as they are.", ""]
    for png in pngs:
        caption = png.stem.replace("_", " ")
        lines += [f"### {caption}", ""]
        if png.resolve() in made_here:
            lines += ["*Regenerated* by `overlooked report`.", ""]
        elif png.stem.startswith("demo_"):
            lines += ["Written by `overlooked demo` (the three-family tour) into its run folder and copied here; not regenerated by `overlooked report`.", ""]
        else:
            lines += ["Not written by this report (copied here, or left from a run it no longer reads).", ""]
        lines += [f"![{caption}]({png.relative_to(base).as_posix()})", ""]
    return lines
