"""Arena figures: accuracy against cost, one point per case of an arena."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overlooked.plots.memory import plt, save_figure


def accuracy_cost_figure(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", cost: str = "train_time_s") -> Path:
    """Test accuracy (%) against a cost (``train_time_s``, ``flops_per_example``...), log-scaled, per case.

    Family models are filled circles, baselines open squares; rows without a measured accuracy are skipped.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for r in rows:
        if r.get("test_accuracy") is None or not r.get(cost):
            continue
        family = r.get("role") == "family"
        ax.scatter(r[cost], 100 * r["test_accuracy"], marker="o" if family else "s", facecolors="C0" if family else "none", edgecolors="C0" if family else "C3", s=50)
        ax.annotate(r["case"], (r[cost], 100 * r["test_accuracy"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel({"train_time_s": "training wall time (s)", "flops_per_example": "FLOPs per example"}.get(cost, cost))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy against cost (circles: overlooked family, squares: baseline)", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
