"""Pins from the second spiking/capsules mutation audit (results/audits/mutants_spiking_capsules_2.yaml): the
coupling figure's maps are, per parent, the mean over primary capsule types of each position's coupling, with
the children in (type, row, column) order; and the Figure-4 grid shows the first channel of a multi-channel
reconstruction."""

from __future__ import annotations

import matplotlib.axes
import numpy as np
import pytest
import torch

from overlooked.capsules.demo import perturbation_grid
from overlooked.plots.capsules import couplings_figure


@pytest.fixture
def drawn(monkeypatch):
    """The arrays (and colour limits) every ``imshow`` of a figure is given, in call order."""
    seen = []
    real = matplotlib.axes.Axes.imshow

    def spy(self, X, *args, **kwargs):
        seen.append((np.array(X, dtype=np.float64), kwargs.get("vmin"), kwargs.get("vmax")))
        return real(self, X, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
    return seen


def test_coupling_maps_average_over_types_at_each_grid_position(tmp_path, drawn):
    """2 types on a 2 x 2 grid, 2 parents. Child i = type * 4 + row * 2 + column couples to parent 0 with
    0.1 (2 row + column) + 0.01 type and to parent 1 with the rest, so the map of parent 0 is, by hand,
    [[0.005, 0.105], [0.205, 0.305]] (the type mean adds 0.005) and that of parent 1 is 1 minus it."""
    couplings = np.zeros((8, 2))
    for t in range(2):
        for r in range(2):
            for c in range(2):
                couplings[t * 4 + r * 2 + c, 0] = 0.1 * (2 * r + c) + 0.01 * t
    couplings[:, 1] = 1.0 - couplings[:, 0]
    couplings_figure(couplings, 2, label=0, path=tmp_path / "c.png")
    parent0 = np.array([[0.005, 0.105], [0.205, 0.305]])
    assert len(drawn) == 2
    np.testing.assert_allclose(drawn[0][0], parent0, atol=1e-12)
    np.testing.assert_allclose(drawn[1][0], 1.0 - parent0, atol=1e-12)
    for _, vmin, vmax in drawn:  # one colour scale shared by the parents, stretched to the maps' range
        assert vmin == pytest.approx(0.005) and vmax == pytest.approx(0.995)


class _TwoChannelDecoder:
    """A stand-in for a two-channel CapsNet's ``decode``: channel 0 of each 3 x 3 reconstruction is filled with the
    sum of the masked class capsule it is given, channel 1 with 100."""

    image_size = 3

    def decode(self, v, index):
        n = len(v)
        first = v[torch.arange(n), index].sum(-1)[:, None].expand(n, 9)
        return torch.cat([first, torch.full((n, 9), 100.0)], 1)  # [N, C * S * S], channel-major


def test_perturbation_grid_shows_the_first_channel_of_a_multichannel_reconstruction():
    """Row d, column o of the grid is channel 0 of the reconstruction with v_kd moved by offsets[o]: here
    sum(v_k) + offsets[o] everywhere (channel 1, all 100, must not appear)."""
    poses = torch.arange(12, dtype=torch.float32).view(3, 4) / 10  # J = 3 capsules of D = 4
    offsets = [-0.25, 0.0, 0.5]
    grid = perturbation_grid(_TwoChannelDecoder(), poses, k=1, offsets=offsets)
    assert grid.shape == (4, 3, 3, 3)
    for d in range(4):
        for o, delta in enumerate(offsets):
            torch.testing.assert_close(grid[d, o], torch.full((3, 3), float(poses[1].sum()) + delta))
