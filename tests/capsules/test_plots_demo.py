"""Capsule figures are written from arrays; the Figure-4 grid moves one dimension at a time; the demo runs on a
tiny budget on the real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from overlooked.capsules.demo import PERTURBATIONS, demo_capsules, perturbation_grid
from overlooked.capsules.models import capsnet
from overlooked.plots.capsules import couplings_figure, perturbation_figure, reconstructions_figure


def test_perturbation_offsets_are_the_papers():
    assert PERTURBATIONS[0] == -0.25 and PERTURBATIONS[-1] == 0.25 and len(PERTURBATIONS) == 11
    assert np.allclose(np.diff(PERTURBATIONS), 0.05)


def test_perturbation_grid_moves_one_dimension_per_row():
    torch.manual_seed(0)
    model = capsnet().eval()
    poses = torch.zeros(10, 16)
    calls = []
    real = model.decoder.forward

    def spy(x):
        calls.append(x.clone())
        return real(x)

    model.decoder.forward = spy
    grid = perturbation_grid(model, poses, k=3)
    assert grid.shape == (16, 11, 28, 28)
    masked = calls[0].view(16, 11, 10, 16)
    assert masked[:, :, [0, 1, 2, 4, 5, 6, 7, 8, 9]].abs().sum() == 0  # only capsule 3 reaches the decoder
    for d in range(16):
        torch.testing.assert_close(masked[d, :, 3, d], torch.tensor(PERTURBATIONS))
        others = [e for e in range(16) if e != d]
        assert masked[d, :, 3, others].abs().sum() == 0


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((3, 28, 28))
    assert reconstructions_figure(img, img, [1, 2, 3], [1, 2, 4], tmp_path / "r.png").stat().st_size > 0
    assert perturbation_figure(rng.random((2, 3, 28, 28)), [-0.05, 0.0, 0.05], tmp_path / "p.png").stat().st_size > 0
    c = rng.random((1152, 10))
    assert couplings_figure(c / c.sum(1, keepdims=True), 6, 4, tmp_path / "c.png").stat().st_size > 0


@pytest.mark.data
def test_demo_runs_on_a_tiny_budget(data_dir, tmp_path):
    torch.set_num_threads(1)
    result = demo_capsules(tmp_path, data_dir=str(data_dir), steps=2, batch_size=4, test_examples=8)
    assert result["params"] == 8_215_568 and result["detach_intermediate"] is False
    assert 0.0 <= result["test_accuracy"] <= 1.0 and len(result["figures"]) == 3
