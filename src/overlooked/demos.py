"""Demos: short tours on the real data, registered by name. ``overlooked demo`` runs them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overlooked.registry import DEMOS


@DEMOS.register("baselines", datasets={"mnist": None})
def demo_baselines(run_dir: Path, data_dir: str | None = None) -> dict[str, Any]:
    """Train the small ReLU/average-pooling CNN on MNIST for one short epoch and report its test accuracy."""
    from overlooked import api

    # The demo reports test accuracy: scoring all 54,000 training images as well would double its time.
    cfg = api.load("cnn_mnist", ["train.epochs=1", "train.max_steps=200", "train.eval_every=200", "train.report_train=false"])
    path, summary = api.train(cfg, data_dir=data_dir, run_dir=run_dir / "cnn_mnist")
    return {
        "what": "small CNN on MNIST, 200 steps of batch 128",
        "test_accuracy": summary["test_accuracy"],
        "params": summary["params"],
        "wall_time_s": summary["wall_time_s"],
        "run": str(path),
    }
