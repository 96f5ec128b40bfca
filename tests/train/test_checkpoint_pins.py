"""Pins from the mutation audit of train/checkpoint.py (results/audits/mutants_memory_ckpt_store.yaml): what a
checkpoint refuses, and what it saves and restores (weights, the weight average, RNG states, the sidecar)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from overlooked.errors import CheckpointError
from overlooked.train.checkpoint import load_checkpoint, move_checkpoint, read_checkpoint, save_checkpoint


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def _average_of(model: torch.nn.Module, offset: float) -> AveragedModel:
    ema = AveragedModel(model, use_buffers=True)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(offset)  # the average differs from the raw weights, so a mix-up shows
    return ema


def test_a_model_weight_of_the_same_count_but_transposed_is_refused(tmp_path):
    """A [4, 3] weight stored as [3, 4] (same number of values) is another model's tensor, named as a shape
    mismatch: not loaded, not a raw torch error."""
    path = save_checkpoint(tmp_path / "c.safetensors", _model())
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors["model.0.weight"] = tensors["model.0.weight"].T.contiguous()
    save_file(tensors, str(path), metadata=meta)
    target = _model(1)
    before = target[0].weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"shape mismatch \['0\.weight'\]"):
        load_checkpoint(path, target)
    assert torch.equal(target[0].weight, before)


def test_weights_from_the_average_load_the_averaged_weights_not_the_raw_ones(tmp_path):
    model = _model()
    ema = _average_of(model, 0.5)
    path = save_checkpoint(tmp_path / "c.safetensors", model, ema=ema)
    fresh = _model(7)
    load_checkpoint(path, fresh, weights_from="ema.module")
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, ema.module.state_dict()[name]), name
        assert not torch.equal(value, model.state_dict()[name]), name
    raw = _model(7)
    load_checkpoint(path, raw)  # the default still reads the raw weights
    for name, value in raw.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_resuming_with_an_average_restores_the_stored_average(tmp_path):
    model = _model()
    ema = _average_of(model, 0.25)
    ema.n_averaged.fill_(5)
    path = save_checkpoint(tmp_path / "c.safetensors", model, ema=ema)
    model2 = _model(3)
    ema2 = AveragedModel(model2, use_buffers=True)
    load_checkpoint(path, model2, ema=ema2)
    assert int(ema2.n_averaged) == 5
    for name, value in ema2.module.state_dict().items():
        assert torch.equal(value, ema.module.state_dict()[name]), name


def test_rng_states_come_back_under_the_names_they_were_saved_with(tmp_path):
    state = torch.Generator().manual_seed(11).get_state()
    path = save_checkpoint(tmp_path / "c.safetensors", _model(), rng={"torch": torch.get_rng_state(), "augment": state})
    rng, _ = load_checkpoint(path, _model())
    assert sorted(rng) == ["augment", "torch"]
    assert torch.equal(rng["augment"], state)
    assert sorted(k for k in read_checkpoint(path)[0] if k.startswith("rng.")) == ["rng.augment", "rng.torch"]


def test_moving_a_checkpoint_without_a_sidecar_removes_the_destinations_old_sidecar(tmp_path):
    """``best.json`` must describe ``best.safetensors``: a move of a checkpoint that has no readable sidecar may
    not leave the destination's old one (another step's info) beside the new tensors."""
    src = save_checkpoint(tmp_path / "last.safetensors", _model(), info={"step": 9})
    src.with_suffix(".json").unlink()
    dst = tmp_path / "best.safetensors"
    save_checkpoint(dst, _model(), info={"step": 3})
    assert json.loads(dst.with_suffix(".json").read_text()) == {"step": 3}
    move_checkpoint(src, dst)
    assert not src.exists() and not dst.with_suffix(".json").exists()
    assert read_checkpoint(dst)[1]["info"] == {"step": 9}


def test_moving_a_checkpoint_with_its_sidecar_moves_both(tmp_path):
    src = save_checkpoint(tmp_path / "last.safetensors", _model(), info={"step": 9})
    dst = tmp_path / "best.safetensors"
    move_checkpoint(src, dst)
    assert json.loads(dst.with_suffix(".json").read_text()) == {"step": 9}
    assert not src.exists() and not src.with_suffix(".json").exists()
