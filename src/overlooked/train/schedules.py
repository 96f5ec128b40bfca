"""Learning-rate schedules as pure functions of the step, so resuming needs no scheduler state."""

from __future__ import annotations

import math

from overlooked.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` for optimiser step ``step`` (0-based).

    'step' multiplies by ``gamma`` every ``step_epochs`` epochs (MemN2N: halve every 25 of 100 epochs);
    'exponential' by ``gamma`` every epoch; 'cosine' anneals to 0 over ``total_steps``. A linear warm-up of
    ``warmup_steps`` multiplies any of them.

    >>> from overlooked.config import TrainConfig
    >>> c = TrainConfig(schedule="step", step_epochs=25, gamma=0.5)
    >>> [lr_factor(c, s, 10, 1000) for s in (0, 249, 250, 500)]
    [1.0, 1.0, 0.5, 0.25]
    """
    epoch = step // max(steps_per_epoch, 1)
    if cfg.schedule == "constant":
        factor = 1.0
    elif cfg.schedule == "step":
        factor = cfg.gamma ** int(step // max(1, round(cfg.step_epochs * steps_per_epoch)))
    elif cfg.schedule == "exponential":
        factor = cfg.gamma**epoch
    elif cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    else:  # config checking makes this unreachable; keep the message for direct callers
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    if cfg.warmup_steps > 0:
        factor *= min(1.0, (step + 1) / cfg.warmup_steps)
    return factor
