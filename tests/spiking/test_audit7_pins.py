"""Pins for the survivors of mutation audit 7 (results/audits/mutants_nir_spiking_modules.yaml): NIR Conv2d export
and import of stride, padding, dilation and groups; the refusal of a pool that excludes padding on one axis; and
detach_reset's type check."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from overlooked.spiking import modules as M
from overlooked.spiking.nir import NIRExportError, export_layers, from_nir, node_module, strip_metadata

DT = 1e-3


def _through_file(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    path = tmp_path / "g.nir"
    nir.write(str(path), strip_metadata(graph))
    return nir.read(str(path))


def test_a_strided_dilated_asymmetrically_padded_conv_keeps_each_setting_through_a_file(tmp_path):
    """Conv2d(stride=(2, 1), padding=(1, 0), dilation=(1, 2)) on a 7x8 input: every setting differs per axis and
    from the others, so a dropped dilation, a padding copied to both axes or stride and dilation swapped each
    change the output shape. Output size per axis: floor((n + 2p - d (k - 1) - 1) / s) + 1, i.e.
    H: (7 + 2 - 2 - 1) / 2 + 1 = 4 and W: (8 + 0 - 4 - 1) / 1 + 1 = 4. The imported network's currents (the
    conv node's trace) equal torch's conv of the same input at every step."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    graph = export_layers([conv, M.LIF(dt=DT, tau_mem=2e-3)], (2, 7, 8), DT)
    node = graph.nodes["0_conv2d"]
    assert tuple(np.atleast_1d(node.stride)) == (2, 1)
    assert tuple(np.atleast_1d(node.padding)) == (1, 0)
    assert tuple(np.atleast_1d(node.dilation)) == (1, 2)
    x = torch.rand(3, 2, 2, 7, 8)
    with torch.no_grad():
        _, _, trace = from_nir(_through_file(graph, tmp_path), dt=DT)(x, record=True)
        want = torch.stack([conv(x[t]) for t in range(3)])
    assert trace["0_conv2d"].shape == (3, 2, 3, 4, 4)
    assert torch.allclose(trace["0_conv2d"], want, atol=1e-6)


def test_a_grouped_conv_node_imports_with_all_its_input_channels():
    """nir.Conv2d with groups=2 and weight [4, 1, 1, 1] (in_channels / groups = 1): the torch layer takes
    1 * 2 = 2 input channels. With weights 1, 2, 3, 4 and bias 0, output channels 0, 1 read input channel 0
    (times 1 and 2) and 2, 3 read channel 1 (times 3 and 4): for input channels (5, 7), outputs 5, 10, 21, 28."""
    w = np.arange(1, 5, dtype=np.float32).reshape(4, 1, 1, 1)
    node = nir.Conv2d(input_shape=None, weight=w, stride=1, padding=0, dilation=1, groups=2, bias=np.zeros(4, np.float32))
    conv = node_module(node, DT)
    assert conv.in_channels == 2 and conv.groups == 2
    x = torch.tensor([5.0, 7.0]).reshape(1, 2, 1, 1)
    with torch.no_grad():
        assert conv(x).flatten().tolist() == [5.0, 10.0, 21.0, 28.0]


def test_a_pool_excluding_padding_on_one_axis_only_is_refused():
    """AvgPool2d(2, padding=(1, 0), count_include_pad=False): the border windows of the padded axis divide by
    fewer cells (a corner window of a 2x2 pool over one real row divides by 2, not 4), which nir.AvgPool2d cannot
    say; padding on one axis is as much padding as on both."""
    with pytest.raises(NIRExportError, match="count_include_pad=False"):
        export_layers([nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, 2, (1, 0), count_include_pad=False), M.LIF(dt=DT)], (1, 8, 8), DT)


@pytest.mark.parametrize("value", [0, 1])
def test_detach_reset_refuses_an_integer(value):
    """detach_reset is True or False: an int 0 / 1 is refused, as "no" is, not read by its truthiness."""
    with pytest.raises(ValueError, match="detach_reset must be True or False"):
        M.LIF(dt=DT, detach_reset=value)


def test_a_grouped_padded_conv_node_imports_as_torchs_grouped_conv():
    """Cross-check of the grouped import against F.conv2d with the node's own weight (random values)."""
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = np.arange(4, dtype=np.float32)
    node = nir.Conv2d(input_shape=None, weight=w, stride=1, padding=1, dilation=1, groups=2, bias=b)
    conv = node_module(node, DT)
    x = torch.rand(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.allclose(conv(x), F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1, groups=2), atol=1e-5)
