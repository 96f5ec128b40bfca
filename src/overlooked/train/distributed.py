"""Data parallelism with PyTorch's own engine (DDP): set-up read from the ``torchrun`` environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes, if any (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):  # this rank's GPU first, so that NCCL's communicator is made on it
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        if device.startswith("cuda"):
            dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local))
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def rank_device(device: str, info: DistInfo) -> str:
    """The device this rank trains on: under torchrun each rank takes its own GPU, ``cuda:LOCAL_RANK``, whatever
    index ``train.device`` names (``cuda:0`` on every rank would put every rank's model on one GPU)."""
    return f"cuda:{info.local_rank}" if info.enabled and device.startswith("cuda") else device
