"""``overlooked bench memory``: MemN2N training and inference throughput in stories/s.

The setting of the memory issue: PE, temporal encoding, adjacent tying, d = 50, K = 3, memory padded to
50 slots, batch 32, on the real bAbI 1k joint data. One training step is the trainer's own
:func:`overlooked.train.trainer.train_step`: forward, summed cross-entropy, backward, clipping, SGD step.
"""

from __future__ import annotations

from typing import Any

import torch

from overlooked.bench.timing import full_float32, time_call
from overlooked.config import TrainConfig
from overlooked.memory import models as _memory_models  # noqa: F401  (registers memn2n)
from overlooked.objectives import CrossEntropy
from overlooked.registry import BENCHMARKS, MODELS
from overlooked.train import trainer


def memn2n_throughput(
    splits: Any, *, batch_size: int = 32, embed_dim: int = 50, hops: int = 3, steps: int = 200, repeats: int = 5, device: str = "cpu", bf16: bool = False, **model_kwargs: Any
) -> list[dict[str, Any]]:
    """Training and inference stories/s of MemN2N over ``steps`` batches drawn from the training split.

    ``device`` places the model and the batches (moved there before timing, so the figure is the step, not
    the copy); ``bf16`` runs the step under the trainer's bf16 autocast (``train.bf16``); ``model_kwargs``
    go to the model (e.g. ``fused=False`` for the autograd path).
    """
    torch.manual_seed(0)
    model = MODELS.create("memn2n", vocab_size=splits.meta["vocab_size"], memory_size=splits.meta["memory_size"], embed_dim=embed_dim, hops=hops, **model_kwargs).to(device)
    cfg = TrainConfig(optimizer="sgd", lr=0.01, grad_clip=40.0, grad_clip_per_tensor=True, batch_size=batch_size, bf16=bf16)
    optimizer = trainer.build_optimizer(cfg, model.parameters())
    objective = CrossEntropy(target_key=splits.target_key, reduction="sum")
    gen = torch.Generator().manual_seed(0)
    batches = [splits.train[torch.randint(0, len(splits.train), (batch_size,), generator=gen)] for _ in range(steps)]
    batches = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
    keys = splits.input_keys

    def train_epoch() -> None:
        for batch in batches:
            trainer.train_step(model, batch, keys, objective, optimizer, cfg)

    def infer_epoch() -> None:
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            for batch in batches:
                model(*(batch[k] for k in keys))

    model.train()
    train = time_call(train_epoch, warmup=1, repeats=repeats, device=device)
    model.eval()
    infer = time_call(infer_epoch, warmup=1, repeats=repeats, device=device)
    n = steps * batch_size
    where = "" if device == "cpu" and not bf16 else f" {torch.device(device).type}{' bf16' if bf16 else ''}"
    where += "".join(f" {k}={v}" for k, v in sorted(model_kwargs.items()))  # e.g. " fused=False": figures apart by name
    return [
        {"name": f"memn2n d={embed_dim} K={hops} batch {batch_size} train{where}", "value": n / train["median_s"], "unit": "stories/s", **train},
        {"name": f"memn2n d={embed_dim} K={hops} batch {batch_size} infer{where}", "value": n / infer["median_s"], "unit": "stories/s", **infer},
    ]


@BENCHMARKS.register("memory", datasets={"babi": None})
def bench_memory(quick: bool = False, data_dir: str | None = None, device: str = "cpu") -> list[dict[str, Any]]:
    """MemN2N (PE, temporal, adjacent, d=50, K=3, M=50, batch 32) on bAbI 1k, all 20 tasks, on ``device`` (TF32
    off, so a GPU's figures are of the same float32 arithmetic as the CPU's)."""
    from overlooked.data.babi import load_babi

    splits = load_babi(tasks="all", size="en", data_dir=data_dir, memory_size=50)
    with full_float32(device):
        return memn2n_throughput(splits, steps=50 if quick else 200, repeats=3 if quick else 5, device=device)
