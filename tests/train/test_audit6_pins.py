"""Pins from the sixth mutation audit (results/audits/mutants_trainer_registry.yaml): the trainer's optimiser
building against numbers worked out by hand (its checkpoint cadence and evaluation's model mode: in
test_trainer_by_hand.py, beside the data and model helpers they share)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.config import TrainConfig
from overlooked.train import trainer

pytestmark = pytest.mark.filterwarnings("ignore:train.lr=0")


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor([value]))


def test_sgd_momentum_carries_the_previous_step():
    """SGD, lr 1, momentum 0.5, gradient 1 at both steps, from 0: buffer 1 then 0.5 * 1 + 1 = 1.5, so the
    parameter goes to -1, then -1 - 1.5 = -2.5 (plain SGD would reach -2)."""
    p = _scalar(0.0)
    opt = trainer.build_optimizer(TrainConfig(optimizer="sgd", lr=1.0, momentum=0.5), [p])
    for _ in range(2):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
    assert p.item() == pytest.approx(-2.5)


@pytest.mark.parametrize("name, want", [("adam", 0.99), ("adamw", 0.999)])
def test_adam_adds_weight_decay_to_the_gradient_and_adamw_decouples_it(name, want):
    """lr 0.01, weight decay 0.1, parameter 1, zero loss gradient, one step.
    Adam: the gradient becomes 0.1 * 1 = 0.1; the first bias-corrected step is lr * g / |g| = 0.01, so 0.99.
    AdamW: the parameter shrinks by lr * wd = 0.001 to 0.999 and the zero gradient moves it no further."""
    p = _scalar(1.0)
    opt = trainer.build_optimizer(TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1), [p])
    p.grad = torch.zeros(1)
    opt.step()
    assert p.item() == pytest.approx(want, abs=1e-6)
    assert type(opt) is (torch.optim.Adam if name == "adam" else torch.optim.AdamW)
