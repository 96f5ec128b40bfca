"""``overlooked demo capsules``: train the exact CapsNet briefly on MNIST, then show what its capsules hold:
reconstructions, the Figure-4 pose perturbations and the coupling coefficients of one input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from overlooked.capsules.models import CapsuleLoss, capsnet
from overlooked.registry import DEMOS

PERTURBATIONS = [round(-0.25 + 0.05 * k, 2) for k in range(11)]  # Sabour et al. 2017, Figure 4: [-0.25, 0.25] by 0.05


def perturbation_grid(model: torch.nn.Module, poses: torch.Tensor, k: int, offsets: list[float] = PERTURBATIONS) -> torch.Tensor:
    """Reconstructions as each dimension of capsule ``k`` of one input is moved by each offset.

    Args:
        poses: one input's parent capsules ``[J, D]``.

    Returns:
        ``[D, len(offsets), S, S]``.
    """
    J, D = poses.shape
    v = poses.unsqueeze(0).repeat(D * len(offsets), 1, 1)  # [D*K, J, D]
    delta = torch.tensor(offsets, dtype=poses.dtype, device=poses.device)
    rows = torch.arange(D, device=poses.device).repeat_interleave(len(offsets))
    v[torch.arange(len(v), device=poses.device), k, rows] += delta.repeat(D)
    with torch.no_grad():
        recon = model.decode(v, torch.full((len(v),), k, device=poses.device))  # [D*K, S*S]
    side = model.image_size
    return recon.view(D, len(offsets), -1, side, side)[:, :, 0]  # the first channel of a multi-channel image


@DEMOS.register("capsules", datasets={"mnist": None})
def demo_capsules(run_dir: Path, data_dir: str | None = None, steps: int = 120, batch_size: int = 32, test_examples: int = 1000) -> dict[str, Any]:
    """CapsNet (8,215,568 parameters, 3 routing iterations, fused CPU backend) after a short MNIST training."""
    from overlooked.config import TrainConfig
    from overlooked.data.mnist import mnist
    from overlooked.plots.capsules import couplings_figure, perturbation_figure, reconstructions_figure
    from overlooked.train import trainer

    t0 = time.perf_counter()
    torch.manual_seed(0)
    splits = mnist(data_dir=data_dir)
    model = capsnet(backend="fused")
    cfg = TrainConfig(optimizer="adam", lr=1e-3)
    optimizer = trainer.build_optimizer(cfg, model.parameters())
    objective = CapsuleLoss()
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = splits.train[torch.randint(0, len(splits.train), (batch_size,), generator=gen)]
        trainer.train_step(model, batch, ("image", "label"), objective, optimizer, cfg)
    model.eval()
    test = splits.test[torch.arange(test_examples)]
    with torch.no_grad():
        out = model(test["image"])
    predicted = out["logits"].argmax(-1)
    accuracy = float((predicted == test["label"]).float().mean())
    run_dir.mkdir(parents=True, exist_ok=True)
    show = list(range(8))
    side = model.image_size
    figures = [
        reconstructions_figure(test["image"][show, 0].numpy(), out["reconstruction"][show].view(-1, side, side).numpy(), test["label"][show].tolist(), predicted[show].tolist(), run_dir / "capsnet_reconstructions.png"),
        perturbation_figure(perturbation_grid(model, out["poses"][0], int(predicted[0])).numpy(), PERTURBATIONS, run_dir / "capsnet_perturbations.png",
                            title=f"test digit 0, capsule of class {int(predicted[0])} (predicted): rows pose dimension 0-15, columns offset added"),
        couplings_figure(out["couplings"][0].numpy(), 6, int(test["label"][0]), run_dir / "capsnet_couplings.png", predicted=int(predicted[0])),
    ]
    print(f"CapsNet after {steps} steps of {batch_size}: {accuracy:.2%} on the first {test_examples} MNIST test digits")
    for figure in figures:
        print(f"figure: {figure}")
    return {
        "what": f"CapsNet, {steps} steps x {batch_size}, {test_examples} test digits",
        "test_accuracy": accuracy,
        "params": sum(p.numel() for p in model.parameters()),
        "detach_intermediate": False,
        "wall_time_s": time.perf_counter() - t0,
        "figures": [str(f) for f in figures],
    }
