"""Capsule figures are drawn from their arrays; the Figure-4 grid moves one dimension at a time; the demo runs on
a tiny budget on the real MNIST and reports what an independent evaluation of its model gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

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


def test_perturbation_grid_adds_the_offset_to_the_pose_not_replaces_it():
    """Sabour et al. 2017, Figure 4: dimension d of capsule k becomes v_kd + offset, every other entry stays v."""
    torch.manual_seed(0)
    model = capsnet(iterations=1).eval()
    poses = torch.randn(10, 16)  # non-zero entries everywhere
    calls = []
    real = model.decoder.forward
    model.decoder.forward = lambda x: calls.append(x.clone()) or real(x)
    perturbation_grid(model, poses, k=3, offsets=[-0.25, 0.1])
    masked = calls[0].view(16, 2, 10, 16)  # [dimension moved, offset, capsule, dimension]
    for d in range(16):
        for o, delta in enumerate([-0.25, 0.1]):
            expected = poses[3].clone()
            expected[d] = poses[3, d] + delta
            torch.testing.assert_close(masked[d, o, 3], expected)


def test_perturbation_grid_stays_on_the_poses_device():
    """The offsets, indices and mask were built on the CPU whatever the device of the model and poses.
    Checked without a GPU on the ``meta`` device: PyTorch lets some ops mix a CPU tensor into meta ones (CUDA
    would not), so a dispatch mode refuses any op that meets both a meta tensor and a CPU tensor of 1+ dims."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class NoCpuBesideMeta(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
            if any(t.device.type == "meta" for t in tensors) and any(t.device.type == "cpu" and t.dim() > 0 for t in tensors):
                raise AssertionError(f"{func} mixes a CPU tensor into meta ones")
            return func(*args, **(kwargs or {}))

    model = capsnet(iterations=1).eval().to("meta")
    with NoCpuBesideMeta():
        grid = perturbation_grid(model, torch.zeros(10, 16, device="meta"), k=3)
    assert grid.device.type == "meta" and grid.shape == (16, 11, 28, 28)


def _pixels(path):
    """A written PNG as RGB floats in [0, 1]: it is an image of a sensible size with something drawn on it."""
    img = imread(path)[..., :3]
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, img.shape
    assert img.std() > 0.05, f"{path}: a blank canvas"
    return img


def test_figures_are_written(tmp_path):
    """Each figure is a non-blank PNG, and the arrays reach its pixels: different data draws a different figure
    of the same size (axes frames and titles alone would draw the same one)."""
    rng = np.random.default_rng(0)
    img, other = rng.random((3, 28, 28)), rng.random((3, 28, 28))
    grid, other_grid = rng.random((2, 3, 28, 28)), rng.random((2, 3, 28, 28))
    c, other_c = rng.random((1152, 10)), rng.random((1152, 10)) ** 4

    def pair(draw, a, b, name):
        first, second = _pixels(draw(a, tmp_path / f"{name}1.png")), _pixels(draw(b, tmp_path / f"{name}2.png"))
        assert first.shape == second.shape
        assert (np.abs(first - second).max(-1) > 0.05).mean() > 0.02, f"{name}: the data does not reach the pixels"

    pair(lambda x, path: reconstructions_figure(x, x, [1, 2, 3], [1, 2, 4], path), img, other, "r")
    pair(lambda g, path: perturbation_figure(g, [-0.05, 0.0, 0.05], path), grid, other_grid, "p")
    pair(lambda x, path: couplings_figure(x / x.sum(1, keepdims=True), 6, 4, path), c, other_c, "c")


@pytest.mark.data
def test_demo_runs_on_a_tiny_budget(data_dir, tmp_path, monkeypatch, capsys):
    """The demo trains (its parameters move), reports the accuracy an independent evaluation of its trained
    model gives on the same test digits (the reference backend, MNIST read straight from the files), prints the
    same number, and draws three non-blank figures."""
    from overlooked.capsules import demo
    from overlooked.data.mnist import load_mnist

    built = []

    def spy(**kwargs):  # the demo's own builder, keeping the model and its initial weights
        model = capsnet(**kwargs)
        built.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return model

    monkeypatch.setattr(demo, "capsnet", spy)
    torch.set_num_threads(1)
    examples = 32  # at this budget the model guesses mostly one class: 32 digits give an accuracy strictly inside (0, 1)
    result = demo_capsules(tmp_path, data_dir=str(data_dir), steps=2, batch_size=4, test_examples=examples)
    assert result["params"] == 8_215_568 and result["detach_intermediate"] is False
    assert len(built) == 1
    trained, initial = built[0]
    assert all(not torch.equal(p, initial[name]) for name, p in trained.state_dict().items()), "a parameter did not train"

    images, labels = load_mnist("test", data_dir)  # uint8 [10000, 28, 28], int64 [10000]
    reference = capsnet().eval()
    reference.load_state_dict(trained.state_dict())
    with torch.no_grad():
        logits = reference(images[:examples].float().div(255).unsqueeze(1))["logits"]  # [32, 10]
    top2 = logits.topk(2, dim=-1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-5  # no near-tie that the fused backend's rounding could flip
    accuracy = float((logits.argmax(-1) == labels[:examples]).float().mean())
    assert 0.0 < accuracy < 1.0
    assert result["test_accuracy"] == accuracy
    assert f"{accuracy:.2%} on the first {examples} MNIST test digits" in capsys.readouterr().out

    assert len(result["figures"]) == 3
    for path in result["figures"]:
        _pixels(path)


def _explained(run, index, data_dir):
    """`overlooked explain RUN --index I` for a capsule run: its record, and the run's model's own outputs on
    the 8 test examples from I (loaded afresh, to compare the figures' numbers with)."""
    import json

    from overlooked import api
    from overlooked.cli import main

    assert main(["explain", str(run), "--index", str(index), "--data-dir", str(data_dir)]) == 0
    record = json.loads((run / "explain" / f"capsules_test_{index}.json").read_text())
    _, splits, model = api.load_run(run, data_dir=str(data_dir))
    with torch.no_grad():
        return record, model(splits.test[torch.arange(index, index + 8)]["image"])


def test_explain_draws_a_trained_capsnet_runs_capsules(data_dir, tmp_path, capsys):
    """The demo's three figures for a run of yours (`overlooked explain RUN --index I`), from the run's own weights:
    the figures are of that model's outputs, and a model without a decoder, or a memory-only option, is refused."""

    from overlooked import api
    from overlooked.cli import main
    from overlooked.errors import ConfigError

    cfg = api.load("capsnet_mnist", ["train.max_steps=2", "train.eval_limit=20", "train.progress=false"])
    run, _ = api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    record, out = _explained(run, 3, data_dir)
    assert "test examples 3..10: predicted" in capsys.readouterr().out
    assert record["rows"] == list(range(3, 11)) and record["predicted"] == out["logits"].argmax(-1).tolist()
    for kind in ("reconstructions", "perturbations", "couplings"):
        assert imread(record["figures"][kind]).shape[0] > 50, kind
    assert main(["explain", str(run), "--stats", "--data-dir", str(data_dir)]) == 2
    assert "--task, --stats and data overrides are for memory runs" in capsys.readouterr().err
    assert main(["explain", str(run), "data.name=mnist", "--data-dir", str(data_dir)]) == 2
    assert "--task, --stats and data overrides are for memory runs" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="example index 10000 out of range"):
        api.capsule_figures(run, 10000, data_dir=str(data_dir))
    # A matrix-capsule (EM) run has no decoder: its activations, assignments and a viewpoint sweep instead
    em = api.load("capsule_em_small_mnist", ["train.max_steps=1", "train.eval_limit=10", "train.progress=false", "model.routing_backend=reference"])
    em_run, _ = api.train(em, data_dir=str(data_dir), out=tmp_path / "runs")
    record, out = _explained(em_run, 2, data_dir)
    assert "viewpoint: " in capsys.readouterr().out
    assert record["predicted"] == out["logits"].argmax(-1).tolist()
    view = record["viewpoint"]
    assert view["class"] == record["predicted"][0] and view["angles_deg"] == list(api.VIEWPOINT_ANGLES)
    unrotated = view["angles_deg"].index(0.0)  # the identity warp is the image itself: the model's own numbers
    assert view["activation"][unrotated] == pytest.approx(float(out["logits"][0, view["class"]]), abs=1e-5)
    assert view["pose"][unrotated] == pytest.approx(out["poses"][0, view["class"]].tolist(), abs=1e-5)
    assert len({tuple(p) for p in view["pose"]}) == len(view["angles_deg"])  # each viewpoint its own pose
    for kind in ("activations", "assignments", "viewpoint"):
        assert imread(record["figures"][kind]).shape[0] > 50, kind


def test_explain_of_a_multimnist_run_shows_both_digits(data_dir, tmp_path):
    """An adversarial review's: explain on a capsnet_multimnist run titled each example with its first label
    against the top class alone, so a right second digit read as an error; both are shown and recorded."""
    from overlooked import api

    cfg = api.load("capsnet_multimnist", ["data.n_train=8", "data.n_val=8", "data.n_test=8", "train.max_steps=1", "train.progress=false"])
    run, _ = api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    record = api.capsule_figures(run, 0, data_dir=str(data_dir))
    _, splits, model = api.load_run(run, data_dir=str(data_dir))
    batch = splits.test[torch.arange(0, 8)]
    with torch.no_grad():
        top2 = model(batch["image"])["logits"].topk(2, -1).indices.sort(-1).values
    assert record["predicted_digits"] == ["+".join(map(str, r)) for r in top2.tolist()]
    assert record["labels"] == ["+".join(map(str, sorted(r))) for r in batch["labels"].tolist()]
    assert imread(record["figures"]["reconstructions"]).shape[0] > 50
