"""The named objectives by hand: reductions, label smoothing, and how evaluate reads an objective's reduction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from overlooked.data.base import ArrayDataset
from overlooked.objectives import CrossEntropy, MultiLabelBCE
from overlooked.train.evaluate import evaluate


def test_multilabel_bce_sums_over_the_batch_when_asked():
    """Logits 0 against targets [1, 0]: each of the 3 x 2 entries costs log 2; an example's loss sums its two
    labels (2 log 2), so the batch's sum is 6 log 2 and its mean 2 log 2."""
    target = {"label": torch.tensor([[1.0, 0.0]] * 3)}
    assert MultiLabelBCE(reduction="sum")(torch.zeros(3, 2), target).item() == pytest.approx(6 * math.log(2), abs=1e-6)
    assert MultiLabelBCE()(torch.zeros(3, 2), target).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_cross_entropy_applies_label_smoothing_by_hand():
    """Logits [2, 0], target 0: CE = log(1 + e^-2) = 0.126928; with eps = 0.1 the loss is
    0.9 CE + 0.1 x the mean over both classes of -log p = 0.9 CE + 0.1 (CE + CE + 2) / 2 = 0.226928."""
    loss = CrossEntropy(label_smoothing=0.1)(torch.tensor([[2.0, 0.0]]), {"label": torch.tensor([0])})
    ce = math.log1p(math.exp(-2))
    assert loss.item() == pytest.approx(0.9 * ce + 0.1 * (ce + ce + 2) / 2, abs=1e-6) and round(loss.item(), 6) == 0.226928


def test_evaluate_takes_an_objective_without_a_reduction_for_a_mean():
    """A user's own objective (a plain function, a mean, no ``reduction`` attribute) on logits 0 over two
    classes: the reported loss is log 2, not 4 log 2 (a sum over the batch of 4)."""
    ds = ArrayDataset({"x": torch.zeros(4, 2), "label": torch.tensor([0, 1, 0, 1])})
    result = evaluate(torch.nn.Identity(), ds, ("x",), "label", lambda out, batch: F.cross_entropy(out, batch["label"]), batch_size=4)
    assert result["loss"] == pytest.approx(math.log(2), abs=1e-6)
