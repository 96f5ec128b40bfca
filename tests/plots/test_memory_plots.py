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
