"""Pins for what the figures plot (and what the spiking demo hands them): which array lands on which axis, in which unit (audit 5).

Each figure is captured before it is written (``save_figure`` is replaced by a spy) or read from the
returned Figure, and its drawn data compared with values worked out by hand.
"""

from __future__ import annotations

import numpy as np
from matplotlib.container import BarContainer

from overlooked.plots import memory as plots_memory
from overlooked.plots import spiking as plots_spiking
from overlooked.plots import spiking_speed


def _capture(monkeypatch, module) -> list:
    figs = []

    def spy(fig, path, *a, **k):
        figs.append(fig)
        return path

    monkeypatch.setattr(module, "save_figure", spy)
    return figs


def test_attention_map_has_one_row_per_sentence_and_one_column_per_hop(monkeypatch, tmp_path):
    """attention [K=2 hops, n=3 sentences] = [[.1, .2, .7], [.6, .3, .1]]: the image is attention^T, [3, 2],
    so row i (sentence i, the y tick labels) column k (hop k + 1) holds attention[k, i], e.g. [2, 0] = 0.7."""
    figs = _capture(monkeypatch, plots_memory)
    attention = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    plots_memory.attention_figure(["a", "b", "c"], attention, "q", "x", "x", tmp_path / "a.png")
    ax = figs[0].axes[0]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (3, 2)
    np.testing.assert_allclose(image, [[0.1, 0.6], [0.2, 0.3], [0.7, 0.1]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["hop 1", "hop 2"]


def test_task_error_bars_run_from_the_lowest_to_the_highest_run(monkeypatch, tmp_path):
    """Task 1 errors 1, 2, 6 %: mean 3, so the bar's error line runs from 3 - 2 = 1 to 3 + 3 = 6
    (with low and high swapped: 0 to 5)."""
    figs = _capture(monkeypatch, plots_memory)
    plots_memory.task_error_figure({1: [1.0, 2.0, 6.0]}, None, tmp_path / "e.png")
    ax = figs[0].axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert bars.patches[0].get_height() == 3.0
    segment = bars.errorbar.lines[2][0].get_segments()[0]
    assert sorted(segment[:, 1].tolist()) == [1.0, 6.0]


def test_raster_keeps_every_step_and_only_the_first_max_neurons():
    """spikes [T=5, N=4], neuron 0 fires at step 4 and neuron 3 at step 0; with max_neurons=2 the dots are
    (4, 0) only: all five steps are kept, neurons 2 and 3 are cut (y limits -0.5 .. 1.5)."""
    z = np.zeros((5, 4))
    z[4, 0] = 1
    z[0, 3] = 1
    fig = plots_spiking.raster_figure(z, max_neurons=2)
    ax = fig.axes[0]
    assert ax.collections[0].get_offsets().tolist() == [[4.0, 0.0]]
    assert ax.get_ylim() == (-0.5, 1.5)
    assert ax.get_title() == "spikes: 1 spikes, 2 neurons shown"


def test_accuracy_against_steps_plots_accuracy_in_percent():
    """Accuracies 0.5, 0.8, 0.9 at T = 1, 2, 4 are drawn as 50, 80, 90 % (not the error 50, 20, 10);
    the ANN's 0.95 as a line at 95."""
    fig = plots_spiking.accuracy_vs_steps_figure([1, 2, 4], [0.5, 0.8, 0.9], ann_accuracy=0.95)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 4])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [50.0, 80.0, 90.0])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [95.0, 95.0])


def test_event_crossover_figure_puts_activity_in_percent_on_x(monkeypatch, tmp_path):
    """Rows at activity 0.01 and 0.5 (fractions) land at x = 1 and 50 (the axis says %), sorted, with
    their ms on y; the crossover row's 12 (already %) is the vertical line's x."""
    figs = _capture(monkeypatch, spiking_speed)
    rows = [{"name": f"event sim X activity {a}% {k}", "value": v, "unit": "ms", "activity": a / 100, "path": k} for a, k, v in ((50, "event", 9.0), (50, "dense", 2.0), (1, "event", 0.5), (1, "dense", 2.0))]
    rows.append({"name": "event sim X crossover activity (event faster below)", "value": 12.0, "unit": "%"})
    spiking_speed.event_crossover_figure(rows, tmp_path / "x.png")
    ax = figs[0].axes[0]
    event, dense, cross = ax.lines[0], ax.lines[1], ax.lines[2]
    assert list(event.get_xdata()) == [1.0, 50.0] and list(event.get_ydata()) == [0.5, 9.0]
    assert list(dense.get_xdata()) == [1.0, 50.0] and list(dense.get_ydata()) == [2.0, 2.0]
    assert list(cross.get_xdata()) == [12.0, 12.0]


def test_spiking_demo_rate_histogram_gets_one_rate_per_neuron(monkeypatch, tmp_path):
    """Spikes [T=2, B=2, N=3]: neuron 0 fires in all 4 (step, example) cells, neuron 1 in 1, neuron 2 never:
    rates 4/4, 1/4, 0/4 = [1, 0.25, 0] spikes per step, one per neuron (not one per step)."""
    import torch

    from overlooked.spiking import demo

    z = torch.zeros(2, 2, 3)
    z[:, :, 0] = 1
    z[1, 0, 1] = 1
    rec = {"spikes": [z], "v": [z * 0.5]}
    seen = {}
    real = plots_spiking.firing_rate_figure
    monkeypatch.setattr(plots_spiking, "firing_rate_figure", lambda rates, **k: seen.update(rates) or real(rates, **k))
    demo.draw(rec, dt=1e-3, v_threshold=1.0, folder=tmp_path)
    np.testing.assert_allclose(seen["hidden 1"], [1.0, 0.25, 0.0])
