"""Spiking speed figures: event-driven vs dense simulation time against input activity."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from overlooked.plots.common import save_figure  # noqa: E402


def event_crossover_figure(figures: Sequence[dict[str, Any]] | str | Path, path: str | Path) -> Path:
    """Time per simulation of the event-driven and the dense path against input activity (log-log),
    with the crossover marked.

    Args:
        figures: the ``figures`` of ``overlooked bench spiking`` (or its ``bench.json``): rows carrying
            ``activity`` (fraction), ``path`` ("event" or "dense") and ``value`` (ms), plus the row whose
            name contains "crossover" (value in %).
        path: PNG to write.
    """
    if isinstance(figures, str | Path):
        figures = json.loads(Path(figures).read_text())["figures"]
    rows = [f for f in figures if "activity" in f and "path" in f]
    if not rows:
        raise ValueError("no event-simulator rows (activity, path) in these figures")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind, style in (("event", "o-"), ("dense", "s--")):
        pts = sorted((100 * f["activity"], f["value"]) for f in rows if f["path"] == kind)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{kind}-driven" if kind == "event" else "dense (clock-driven)")
    cross = [f for f in figures if "crossover" in f["name"]]
    if cross and cross[0]["value"] > 0:
        ax.axvline(cross[0]["value"], color="grey", lw=1)
        ax.text(cross[0]["value"], ax.get_ylim()[0], f" crossover {cross[0]['value']:.2g}%", va="bottom", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input activity (% of inputs spiking per step)")
    ax.set_ylabel("time per simulation (ms)")
    title = rows[0]["name"].split(" activity")[0]
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)
