"""Spiking figures: each writes a real PNG and has one axes per layer / neuron."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from overlooked.plots.spiking import accuracy_vs_steps_figure, firing_rate_figure, membrane_figure, raster_figure, save_figure


def _png_ok(path) -> None:
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 200
    assert img[..., :3].std() > 0.02  # something was drawn, not a blank canvas


def test_raster_one_panel_per_layer(tmp_path):
    rng = np.random.default_rng(0)
    spikes = {"conv1": (rng.random((10, 50)) < 0.2).astype(np.float32), "fc": (rng.random((10, 20)) < 0.1).astype(np.float32)}
    fig = raster_figure(spikes, dt=1e-3, title="raster")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title().startswith(f"conv1: {int(spikes['conv1'].sum())} spikes")
    _png_ok(save_figure(fig, tmp_path / "raster.png"))
    assert len(raster_figure(spikes["fc"]).axes) == 1
    with pytest.raises(ValueError, match=r"must be \[T, N\]"):
        raster_figure(np.zeros((2, 3, 4)))


def test_membrane_one_panel_per_neuron(tmp_path):
    v = np.cumsum(np.full((12, 3), 0.3), axis=0) % 1.2  # [T, K] saw-tooth
    z = (v > 1.0).astype(np.float32)
    fig = membrane_figure(v, z, v_threshold=1.0, labels=["a", "b", "c"])
    assert len(fig.axes) == 3 and fig.axes[1].get_ylabel() == "b"
    _png_ok(save_figure(fig, tmp_path / "v.png"))
    with pytest.raises(ValueError, match="differs from v shape"):
        membrane_figure(v, z[:, :2])


def test_firing_rate_histogram_per_layer(tmp_path):
    rates = {"l1": np.array([0.0, 0.0, 0.5, 1.0]), "l2": np.linspace(0, 0.3, 30), "l3": np.zeros(5)}
    fig = firing_rate_figure(rates)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_title() == "l1: mean 0.375, silent 50%"  # (0 + 0 + 0.5 + 1) / 4; 2 of 4 silent
    _png_ok(save_figure(fig, tmp_path / "rates.png"))


def test_accuracy_vs_steps(tmp_path):
    fig = accuracy_vs_steps_figure([1, 2, 4, 8], [0.2, 0.5, 0.9, 0.98], ann_accuracy=0.99)
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    _png_ok(save_figure(fig, tmp_path / "acc.png"))
    with pytest.raises(ValueError, match="equally long"):
        accuracy_vs_steps_figure([1, 2], [0.5])
