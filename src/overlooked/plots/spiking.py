"""Spiking-network figures: spike rasters, membrane-potential traces, firing-rate histograms, accuracy vs T.

Pure functions from arrays to :class:`matplotlib.figure.Figure` (Agg backend, no screen needed); they never
run a model. Write a figure with :func:`save_figure`. Arrays are time-first like the rest of the spiking
family: ``spikes[t, i]`` is neuron ``i`` at step ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from overlooked.plots.common import save_figure  # noqa: E402  (one PNG writer for every figure)

__all__ = ["accuracy_vs_steps_figure", "firing_rate_figure", "membrane_figure", "raster_figure", "save_figure"]


def _as_layers(data: np.ndarray | Mapping[str, np.ndarray], default: str) -> dict[str, np.ndarray]:
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("need at least one layer")
        return {str(k): np.asarray(v) for k, v in data.items()}
    return {default: np.asarray(data)}


def _time_axis(steps: int, dt: float | None) -> tuple[np.ndarray, str]:
    if dt is None:
        return np.arange(steps), "time step"
    return np.arange(steps) * dt * 1e3, "time (ms)"


def raster_figure(spikes: np.ndarray | Mapping[str, np.ndarray], dt: float | None = None, max_neurons: int = 200, title: str = "") -> plt.Figure:
    """Spike raster: one panel per layer, a dot at ``(t, i)`` for every spike.

    Args:
        spikes: ``[T, N]`` 0/1 spikes, or layer name -> ``[T, N]`` (one panel each, top to bottom).
        dt: step length in seconds (the x axis is then in ms); None labels steps.
        max_neurons: at most this many neurons (the first ones) are drawn per layer.
        title: figure title.

    Returns:
        The figure, with one axes per layer.
    """
    layers = _as_layers(spikes, "spikes")
    fig, axes = plt.subplots(len(layers), 1, figsize=(7, 1.0 + 1.8 * len(layers)), sharex=True, squeeze=False)
    for ax, (name, z) in zip(axes[:, 0], layers.items()):
        if z.ndim != 2:
            raise ValueError(f"layer {name!r}: spikes must be [T, N], got shape {z.shape}")
        z = z[:, :max_neurons]
        time, label = _time_axis(z.shape[0], dt)
        t_idx, n_idx = np.nonzero(z > 0)
        ax.scatter(time[t_idx], n_idx, s=4, marker="|", color="black", linewidths=0.8)
        ax.set_ylim(-0.5, z.shape[1] - 0.5)
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_title(f"{name}: {int((z > 0).sum())} spikes, {z.shape[1]} neurons shown", fontsize=8)
    axes[-1, 0].set_xlabel(label)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def membrane_figure(
    v: np.ndarray, spikes: np.ndarray | None = None, v_threshold: float | None = None, dt: float | None = None, labels: Sequence[str] | None = None, title: str = ""
) -> plt.Figure:
    """Membrane-potential traces, one panel per neuron, with the threshold and the spike times.

    Args:
        v: ``[T, K]`` membrane potential of ``K`` neurons (before reset, so a crossing shows).
        spikes: ``[T, K]`` 0/1 spikes of the same neurons, drawn as ticks above the trace; optional.
        v_threshold: drawn as a dashed line; optional.
        dt: step length in seconds (x axis in ms); None labels steps.
        labels: one name per neuron.
        title: figure title.

    Returns:
        The figure, with ``K`` axes.
    """
    v = np.asarray(v)
    if v.ndim != 2:
        raise ValueError(f"v must be [T, K], got shape {v.shape}")
    steps, k = v.shape
    if spikes is not None and np.asarray(spikes).shape != v.shape:
        raise ValueError(f"spikes shape {np.asarray(spikes).shape} differs from v shape {v.shape}")
    time, xlabel = _time_axis(steps, dt)
    fig, axes = plt.subplots(k, 1, figsize=(7, 0.8 + 1.3 * k), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(time, v[:, i], drawstyle="steps-post" if steps < 50 else "default", color="tab:blue", lw=1.2)
        if v_threshold is not None:
            ax.axhline(v_threshold, color="tab:red", ls="--", lw=0.8)
        if spikes is not None:
            fired = np.nonzero(np.asarray(spikes)[:, i] > 0)[0]
            top = max(float(v[:, i].max()), v_threshold or 0.0)
            ax.scatter(time[fired], np.full(len(fired), top * 1.1 + 0.05), marker="v", color="black", s=12)
        ax.set_ylabel(labels[i] if labels is not None else f"v[{i}]", fontsize=8)
    axes[-1, 0].set_xlabel(xlabel)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def firing_rate_figure(rates: Mapping[str, np.ndarray], bins: int = 20, title: str = "") -> plt.Figure:
    """Histogram of per-neuron firing rates (spikes per neuron per step, in [0, 1]), one panel per layer.

    Args:
        rates: layer name -> ``[N]`` firing rate of each neuron (averaged over steps and examples).
        bins: histogram bins over [0, 1].
        title: figure title.

    Returns:
        The figure, with one axes per layer.
    """
    layers = _as_layers(rates, "rates")
    fig, axes = plt.subplots(1, len(layers), figsize=(1.5 + 3.0 * len(layers), 2.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], layers.items()):
        r = r.ravel()
        ax.hist(r, bins=bins, range=(0.0, 1.0), color="tab:gray", edgecolor="black", lw=0.4)
        ax.set_title(f"{name}: mean {r.mean():.3f}, silent {np.mean(r == 0):.0%}", fontsize=8)
        ax.set_xlabel("firing rate (spikes / step)")
    axes[0, 0].set_ylabel("neurons")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def accuracy_vs_steps_figure(steps: Sequence[int], accuracy: Sequence[float], ann_accuracy: float | None = None, title: str = "") -> plt.Figure:
    """Accuracy of a converted SNN against the number of simulation steps ``T`` (log x), beside its ANN.

    Args:
        steps: the ``T`` values.
        accuracy: accuracy (fraction) at each ``T``.
        ann_accuracy: the source ANN's accuracy, drawn as a dashed line; optional.
        title: figure title.

    Returns:
        The figure, with one axes.
    """
    if len(steps) != len(accuracy) or not len(steps):
        raise ValueError(f"steps and accuracy must be equally long and non-empty, got {len(steps)} and {len(accuracy)}")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, 100 * np.asarray(accuracy), marker="o", label="SNN")
    if ann_accuracy is not None:
        ax.axhline(100 * ann_accuracy, color="tab:red", ls="--", label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("simulation steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def save_all(figures: Mapping[str, plt.Figure], folder: str | Path) -> list[Path]:
    """Write each figure as ``folder/<name>.png``; returns the paths."""
    return [save_figure(fig, Path(folder) / f"{name}.png") for name, fig in figures.items()]
