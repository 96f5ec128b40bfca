"""The shared model matrix, generated from the registry: forward shape, backward reaches every parameter,
no NaN, unknown kwargs raise."""

from __future__ import annotations

import pytest
import torch

from overlooked import catalog
from overlooked.errors import RegistryError
from overlooked.registry import MODELS

catalog.load_all()
IMAGE_MODELS = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "baseline" and "text" not in MODELS.tags(n)]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_backward_no_nan(name, every_parameter_learns):
    torch.manual_seed(0)
    model = MODELS.create(name)
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    every_parameter_learns(model)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_unknown_kwargs_raise(name):
    with pytest.raises(RegistryError, match="unknown argument"):
        MODELS.create(name, not_an_argument=1)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_batch_independence(name):
    model = MODELS.create(name).eval()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(model(x)[:1], model(x[:1]), atol=1e-5, rtol=1e-5)


def test_small_cnn_is_convertible_shape():
    """ReLU and average pooling only: no max pooling, no batch norm (the spiking family converts it)."""
    model = MODELS.create("small_cnn")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "AvgPool2d" in kinds and not kinds & {"MaxPool2d", "BatchNorm2d", "BatchNorm1d"}


def test_parameter_counts_by_hand():
    # conv 1->32 5x5: 832; conv 32->64 5x5: 51,264; fc 64*7*7->256: 803,072; fc 256->10: 2,570
    assert sum(p.numel() for p in MODELS.create("small_cnn").parameters()) == 832 + 51_264 + 803_072 + 2_570
    # 784->800: 628,000; 800->800: 640,800; 800->10: 8,010
    assert sum(p.numel() for p in MODELS.create("mlp").parameters()) == 628_000 + 640_800 + 8_010


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_an_empty_batch_gives_empty_logits(name):
    """B = 0 (the tail of a filtered batch): empty logits in train and eval, as PyTorch's own modules give."""
    model = MODELS.create(name)
    for mode in (model.train(), model.eval()):
        assert mode(torch.rand(0, 1, 28, 28)).shape == (0, 10)
