"""Memory figures are written as real PNG images of a sensible size."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from overlooked.plots.memory import attention_figure, task_error_figure


def test_attention_and_task_figures(tmp_path):
    a = attention_figure(["mary went home", "john left"], np.array([[0.9, 0.1], [0.2, 0.8]]), "where is mary", "home", "home", tmp_path / "a.png")
    t = task_error_figure({1: [1.0, 3.0], 2: [20.0, 22.0]}, {1: 0.0, 2: 11.4}, tmp_path / "sub" / "t.png", "demo")
    for path in (a, t):
        img = imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 200
        assert img[..., :3].std() > 0.05  # not a blank canvas


def test_task_figure_marks_the_reported_run_and_draws_no_spread_for_one_run(tmp_path):
    """Repeats: bars from the lowest to the highest run and a marker on the run the rule reported (what
    compares with a paper's best-of-N column); one run: the bar alone, labelled so (spread_label's doctest)."""
    errors = {1: [0.0, 30.0, 2.0], 2: [10.0, 12.0, 11.0]}
    plain = imread(task_error_figure(errors, None, tmp_path / "plain.png"))
    marked = imread(task_error_figure(errors, None, tmp_path / "marked.png", chosen={1: 2.0, 2: 10.0}))
    assert plain.shape == marked.shape and np.abs(plain - marked).max() > 0.5  # the markers (and their legend entry) are drawn
    one = imread(task_error_figure({1: [3.0], 2: [20.0]}, None, tmp_path / "one.png"))
    assert one[..., :3].std() > 0.05
