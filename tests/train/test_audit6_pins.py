"""Pins from the sixth mutation audit (results/audits/mutants_trainer_registry.yaml): the trainer's optimiser
building, its checkpoint cadence and evaluation's model mode, each against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from overlooked.config import TrainConfig
from overlooked.data.base import ArrayDataset, Splits
from overlooked.objectives import CrossEntropy
from overlooked.train import trainer
from overlooked.train.callbacks import Callback
from overlooked.train.evaluate import evaluate

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


def _data(n: int) -> ArrayDataset:
    return ArrayDataset({"x": torch.ones(n, 2), "label": torch.tensor([i % 3 for i in range(n)])})


def _zero_linear() -> nn.Linear:
    model = nn.Linear(2, 3)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


def test_last_checkpoint_follows_eval_every_when_checkpoint_every_is_unset(tmp_path):
    """8 examples, batch 2: 4 steps an epoch; eval_every=2 and checkpoint_every=0 write `last` at step 2 (with the
    pass), so it exists when step 3 ends (at once an epoch it would first appear at step 4)."""

    class Look(Callback):
        def __init__(self):
            self.seen = {}

        def on_step_end(self, ctx, loss):
            self.seen[ctx.state.step] = (ctx.run_dir / "checkpoints" / "last.safetensors").exists()

    look = Look()
    splits = Splits(_data(8), _data(3), _data(3), ("x",), "label", {"num_classes": 3})
    cfg = TrainConfig(epochs=1, batch_size=2, optimizer="sgd", lr=0.0, progress=False, eval_every=2)
    trainer.fit(_zero_linear(), splits, CrossEntropy(), cfg, tmp_path, callbacks=[look])
    assert look.seen == {1: False, 2: False, 3: True, 4: True}  # step 2's hook runs before its pass writes it


@pytest.mark.parametrize("training", [False, True])
def test_evaluate_hands_the_model_back_in_the_mode_it_found_it(training):
    """evaluate switches to eval mode for the pass and back to whichever mode the model was in."""
    model = _zero_linear().train(training)
    res = evaluate(model, _data(3), ("x",), "label", CrossEntropy())
    assert res["loss"] == pytest.approx(math.log(3.0))
    assert model.training is training
