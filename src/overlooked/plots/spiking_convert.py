"""Accuracy of a converted (ANN-to-SNN) network against the number of simulation steps T."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from overlooked.plots.common import save_figure  # noqa: E402


def conversion_curve_figure(curves: dict[str, Sequence[float]], ann_accuracy: float, path: str | Path, title: str = "", marks: Sequence[int] = (32, 64)) -> Path:
    """Test accuracy (%) after each step ``t = 1..T`` for each normalisation, beside the ANN's.

    Args:
        curves: label -> accuracy after each step (fractions, ``T`` values).
        ann_accuracy: the ANN's test accuracy (fraction), drawn as a horizontal line.
        path: PNG to write.
        title: figure title.
        marks: the reported T values, drawn as vertical lines.
    """
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis in (ax, zoom):
        for label, curve in curves.items():
            axis.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=label, lw=1.4)
        axis.axhline(100 * ann_accuracy, color="k", ls="--", lw=1, label=f"ANN {100 * ann_accuracy:.2f}%")
        for t in marks:
            axis.axvline(t, color="grey", ls=":", lw=0.8)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("simulation steps T")
        axis.grid(alpha=0.3)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    zoom.set_ylim(100 * ann_accuracy - 2.0, 100 * ann_accuracy + 0.5)
    zoom.set_title("near the ANN")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
