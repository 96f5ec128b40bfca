"""The capsule configs load, name registered components with accepted arguments, and say what they claim."""

from __future__ import annotations

import pytest

from overlooked import api
from overlooked.capsules.models import StopAtValAccuracy

CONFIGS = ["capsnet_mnist", "capsnet_affnist", "capsnet_baseline_affnist", "capsule_em_mnist", "capsule_em_small_mnist", "capsule_em_affnist", "capsnet_multimnist", "multimnist_baseline"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
    cfg = api.load(name, [])
    assert cfg.name == name


def test_capsnet_mnist_is_the_paper_recipe():
    cfg = api.load("capsnet_mnist", [])
    assert cfg.model.name == "capsnet" and cfg.model.kwargs["iterations"] == 3 and cfg.model.kwargs["decoder"]
    assert cfg.model.kwargs["detach_intermediate"] is False
    assert cfg.augment.name == "random_shift" and cfg.augment.kwargs == {"max_shift": 2}
    assert cfg.train.optimizer == "adam" and cfg.train.select_metric == "val_accuracy"
    assert cfg.data.kwargs["val_fraction"] > 0 and cfg.objective.kwargs["recon_weight"] == 0.0005


def test_stop_at_val_accuracy():
    ctx = type("Ctx", (), {"stop": False})()
    cb = StopAtValAccuracy(0.99)
    cb.on_eval_end(ctx, {"val_accuracy": 0.985})
    assert not ctx.stop
    cb.on_eval_end(ctx, {"val_accuracy": 0.9922})
    assert ctx.stop


def test_multimnist_pair_budget_is_the_same_for_both_models():
    caps, base = api.load("capsnet_multimnist", []), api.load("multimnist_baseline", [])
    assert caps.data == base.data and caps.train.epochs == base.train.epochs and caps.train.batch_size == base.train.batch_size
    assert caps.model.name == "capsnet_multimnist" and base.objective.name == "multilabel_bce"
    assert caps.objective.kwargs["recon_keys"] == ["image_a", "image_b"]


def test_capsule_em_small_mnist_is_the_em_recipe_on_the_small_model():
    small, big = api.load("capsule_em_small_mnist", []), api.load("capsule_em_mnist", [])
    assert small.model.name == "matcaps_em_small" and small.model.kwargs == {"iterations": 2, "routing_backend": "compiled"}
    assert small.train.epochs == 10 and small.data == big.data and small.objective == big.objective and small.callbacks == big.callbacks
    assert (small.train.optimizer, small.train.lr, small.train.batch_size, small.train.grad_clip) == (big.train.optimizer, big.train.lr, big.train.batch_size, big.train.grad_clip)
