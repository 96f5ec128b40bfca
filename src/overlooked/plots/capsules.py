"""Capsule figures: reconstructions beside their inputs, the pose-perturbation grid of Sabour et al. 2017's
Figure 4, and the coupling coefficients of one input. Pure functions from arrays to PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from overlooked.plots.common import save_figure  # noqa: E402


def reconstructions_figure(inputs: np.ndarray, reconstructions: np.ndarray, labels: Sequence[int], predicted: Sequence[int], path: str | Path) -> Path:
    """Inputs (top row) above their reconstructions (bottom row).

    Args:
        inputs, reconstructions: ``[n, S, S]`` in [0, 1].
        labels, predicted: true and predicted class per column.
    """
    n = len(inputs)
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.6), squeeze=False)
    for i in range(n):
        for row, img in ((0, inputs[i]), (1, reconstructions[i])):
            axes[row, i].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
        axes[0, i].set_title(f"{labels[i]} -> {predicted[i]}", fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("recon.", fontsize=8)
    fig.suptitle("true -> predicted class; reconstruction from the predicted class's capsule", fontsize=8)
    return save_figure(fig, path)


def perturbation_figure(grid: np.ndarray, offsets: Sequence[float], path: str | Path, title: str | None = None) -> Path:
    """Figure 4 of Sabour et al. 2017: row ``d`` shows the reconstruction as capsule dimension ``d`` is moved
    by each of ``offsets``.

    Args:
        grid: ``[D, len(offsets), S, S]`` reconstructions.
        offsets: the perturbations (``-0.25 .. 0.25`` in steps of 0.05 in the paper).
    """
    D, K = grid.shape[:2]
    fig, axes = plt.subplots(D, K, figsize=(0.6 * K, 0.6 * D), squeeze=False)
    for d in range(D):
        for k in range(K):
            axes[d, k].imshow(grid[d, k], cmap="gray", vmin=0, vmax=1)
            axes[d, k].set_xticks([])
            axes[d, k].set_yticks([])
        axes[d, 0].set_ylabel(str(d), fontsize=6, rotation=0, labelpad=8)
    for k in range(K):
        axes[0, k].set_title(f"{offsets[k]:+.2f}", fontsize=6)
    fig.suptitle(title or "rows: pose dimension 0.. of the capsule; columns: offset added to it", fontsize=7)
    return save_figure(fig, path)


def couplings_figure(couplings: np.ndarray, grid_side: int, label: int, path: str | Path, predicted: int | None = None, what: str = "coupling") -> Path:
    """Coupling coefficients of one input: for each parent capsule, the mean over the primary capsule types of
    each child position's coupling to it, as a ``grid_side x grid_side`` map.

    The colours share one scale stretched to the maps' own range (which the colour bar and the title state: a
    barely trained model's couplings all sit near the uniform ``1/J``, and the stretch would otherwise read as
    structure).

    Args:
        couplings: ``[I, J]`` with ``I = types * grid_side^2`` children in (type, row, column) order.
        label: the input's class, marked ``*`` in the titles; ``predicted`` (if given) marked ``>``.
        what: the quantity's name for the colour bar ("coupling", or EM's "assignment").
    """
    I, J = couplings.shape
    maps = couplings.reshape(I // (grid_side * grid_side), grid_side, grid_side, J).mean(0)  # [side, side, J]
    fig, axes = plt.subplots(1, J + 1, figsize=(1.3 * J + 0.9, 1.9), squeeze=False, gridspec_kw={"width_ratios": [1.0] * J + [0.08]})
    vmin, vmax = float(maps.min()), float(maps.max())  # one shared scale, so parents compare
    image = None
    for j in range(J):
        image = axes[0, j].imshow(maps[..., j], cmap="viridis", vmin=vmin, vmax=max(vmax, vmin + 1e-6))
        marks = ("*" if j == label else "") + (">" if predicted is not None and j == predicted else "")
        axes[0, j].set_title(f"{j} {marks}".strip(), fontsize=8)
        axes[0, j].set_xticks([])
        axes[0, j].set_yticks([])
    if image is not None:  # in its own narrow column, so the layout keeps it beside the maps
        bar = fig.colorbar(image, cax=axes[0, J])
        bar.set_label(f"mean {what}", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"mean {what} to each class capsule per position (* true class" + (", > predicted" if predicted is not None else "")
                 + f"); range {vmin:.4f}..{vmax:.4f}, uniform 1/{J} = {1 / J:.4f}", fontsize=7)
    return save_figure(fig, path)


def activations_figure(activations: np.ndarray, labels: Sequence[int], predicted: Sequence[int], path: str | Path) -> Path:
    """Class-capsule activations of a few inputs (matrix capsules: the activation is the class score), one
    row per input, titled with its label and prediction.

    Args:
        activations: ``[n, K]`` in [0, 1].
        labels, predicted: true and predicted class per row.
    """
    n, k = activations.shape
    fig, ax = plt.subplots(figsize=(0.45 * k + 1.6, 0.35 * n + 1.0))
    image = ax.imshow(activations, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(k), labels=[str(c) for c in range(k)], fontsize=7)
    ax.set_yticks(range(n), labels=[f"{y} -> {p}" for y, p in zip(labels, predicted)], fontsize=7)
    ax.set_xlabel("class capsule", fontsize=8)
    ax.set_title("class-capsule activations (label -> predicted)", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return save_figure(fig, path)


def viewpoint_figure(images: np.ndarray, angles: Sequence[float], poses: np.ndarray, activations: np.ndarray, label: int, path: str | Path) -> Path:
    """One input seen from several viewpoints (rotated by ``angles``): the images, then the 16 entries of one
    class capsule's 4x4 pose against the angle, each minus its value at the unrotated view (angle 0, else the
    middle one), then that capsule's activation. Matrix capsules should move
    their pose with the viewpoint (equivariance) while the activation holds (invariance; Hinton et al. 2018).

    Args:
        images: ``[A, S, S]`` the rotated inputs.
        poses: ``[A, 16]`` the class capsule's pose at each angle.
        activations: ``[A]`` its activation at each angle.
        label: the class capsule drawn.
    """
    a = len(angles)
    fig = plt.figure(figsize=(max(6.0, 0.8 * a), 5.2))
    grid = fig.add_gridspec(3, a, height_ratios=[1.0, 2.2, 1.1])
    for i in range(a):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{angles[i]:+g}°", fontsize=7)
    ax = fig.add_subplot(grid[1, :])
    base = poses[list(angles).index(0.0)] if 0.0 in list(angles) else poses[len(angles) // 2]  # the unrotated view
    colours = plt.get_cmap("tab20")
    for e in range(poses.shape[1]):
        ax.plot(angles, poses[:, e] - base[e], marker=".", linewidth=1, color=colours(e % 20), label=f"({e // 4},{e % 4})")
    ax.axhline(0.0, color="0.7", linewidth=0.5)
    ax.set_ylabel(f"class {label} pose\nminus unrotated", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=5, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5), title="pose entry", title_fontsize=6)
    ax = fig.add_subplot(grid[2, :])
    ax.plot(angles, activations, marker="o", color="k")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("rotation of the input (degrees)", fontsize=8)
    ax.set_ylabel("activation", fontsize=8)
    ax.tick_params(labelsize=7)
    return save_figure(fig, path)
