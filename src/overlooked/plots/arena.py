"""Arena figures: accuracy against cost, one point per case of an arena."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overlooked.plots.common import plt, save_figure


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


def energy_bars_figure(items: Sequence[tuple[str, float, float]], path: str | Path) -> Path:
    """Estimated energy per example (µJ, log scale) of each spiking model beside the same layers as an ANN.

    Args:
        items: ``(label, snn_uj, ann_uj)`` per model.
    """
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(items), 3.6))
    x = np.arange(len(items))
    ax.bar(x - 0.2, [i[1] for i in items], 0.4, label="SNN (E_MAC MACs + E_AC SOPs)", color="C0")
    ax.bar(x + 0.2, [i[2] for i in items], 0.4, label="same layers as ANN (E_MAC MACs)", color="C3")
    ax.set_xticks(x, labels=[i[0] for i in items], fontsize=8, rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("µJ per example")
    ax.set_title("compute-only energy estimate, 45 nm (Horowitz 2014)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
