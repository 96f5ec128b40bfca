"""MemN2N's training schedules and augmentation, plugged into the shared trainer by name.

- ``linear_start`` (callback): the softmaxes of the memory layers are removed and the lr is 0.005 until
  the validation loss stops falling, then the softmaxes are re-inserted (Sukhbaatar et al. 2015, §4.2).
- ``babi_random_time`` (augmentation): "random noise", 10% empty memories inserted into each training
  story's time line (§4.1).
"""

from __future__ import annotations

from typing import Any

import torch

from overlooked.errors import ConfigError
from overlooked.memory.functional import random_time_index
from overlooked.registry import AUGMENTATIONS, CALLBACKS
from overlooked.train.callbacks import Callback


class LinearStart(Callback):
    """Linear start (LS): train without memory softmaxes at ``lr`` until validation loss stops falling.

    Args:
        lr: the learning rate during LS (0.005 in the paper).
        patience: validation passes without a new lowest loss before the softmaxes return.
        max_epochs: end LS at the first validation after this many epochs (fractional ones count as
            trained: 1.5 after half of the second epoch) even if the loss still falls (None: no cap).
        restart_schedule: when LS ends, restart the lr schedule from its first step ("training
            recommenced", §4.2; the authors' Matlab code restarts it too).
        hold_lr: keep the lr at ``lr`` for the whole of LS (the paper's LS learning rate; the authors'
            code sets its LS decay step one past the LS length, ``ls_lrate_decay_step = ls_nepochs + 1``).
            The hold also skips ``train.warmup_steps`` during LS. False lets ``train.schedule`` run
            during LS, scaled by ``lr / train.lr``: what this callback did before commit c980107, so
            that a joint recipe whose LS outlasts ``train.step_epochs`` halved the LS lr; set it to
            rerun such a recipe with its old LS schedule.

    The paper does not say which lr follows LS; this uses the configured ``train.lr`` (0.01). The authors'
    Matlab code instead runs a fixed ``ls_nepochs`` (20 independent, 30 joint) and keeps 0.005 afterwards.
    """

    def __init__(self, lr: float = 0.005, patience: int = 1, max_epochs: float | None = None, restart_schedule: bool = True, hold_lr: bool = True):
        self.lr, self.patience, self.max_epochs, self.restart_schedule = lr, patience, max_epochs, restart_schedule
        self.hold_lr = hold_lr
        self.active = True
        self.best = float("inf")
        self.bad = 0
        self.ended_at_step: int | None = None

    def _apply(self, ctx: Any) -> None:
        ctx.model.set_linear_start(self.active)
        ctx.lr_scale = self.lr / ctx.cfg.lr if self.active else 1.0
        ctx.lr_hold = self.lr if self.active and self.hold_lr else None
        if not self.active and self.restart_schedule and self.ended_at_step is not None:
            ctx.schedule_start = self.ended_at_step

    def on_train_start(self, ctx: Any) -> None:
        if not hasattr(ctx.model, "set_linear_start"):
            raise ConfigError(
                f"the linear_start callback removes the softmaxes of a model that has set_linear_start (memn2n); "
                f"{type(ctx.model).__name__} has none: remove the callback from the config (callbacks=[])"
            )
        self._apply(ctx)

    def on_eval_end(self, ctx: Any, metrics: dict[str, Any]) -> None:
        if not self.active:
            return
        loss = metrics["val_loss"]
        if loss < self.best:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        # Epochs trained, as the trainer's record counts them (fractional at a validation inside an epoch, which
        # once counted as a whole epoch and ended LS up to an epoch early).
        epochs = metrics.get("epoch", ctx.state.epoch)
        if self.bad >= self.patience or (self.max_epochs is not None and epochs >= self.max_epochs):
            self.active = False
            self.ended_at_step = ctx.state.step
            self._apply(ctx)
            ctx.restart_selection = True  # a checkpoint scored without softmaxes must not be reported with them

    def record_fields(self) -> dict[str, Any]:
        """``linear_start``: true for a validation record scored without the memory softmaxes (those
        records are never chosen as the reported checkpoint once LS has ended)."""
        return {"linear_start": self.active}

    def state_dict(self) -> dict[str, Any]:
        return {"active": self.active, "best": self.best, "bad": self.bad, "ended_at_step": self.ended_at_step}

    def restore_model(self, model: Any) -> None:
        model.set_linear_start(self.active)  # a checkpoint saved during LS is scored without softmaxes

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.active, self.best, self.bad, self.ended_at_step = state["active"], state["best"], state["bad"], state["ended_at_step"]


@CALLBACKS.register("linear_start", family="memory")
def linear_start(lr: float = 0.005, patience: int = 1, max_epochs: float | None = None, restart_schedule: bool = True, hold_lr: bool = True) -> LinearStart:
    """MemN2N linear start (§4.2)."""
    return LinearStart(lr=lr, patience=patience, max_epochs=max_epochs, restart_schedule=restart_schedule, hold_lr=hold_lr)


class RandomTime:
    """Random noise: insert ``ratio`` empty memories into each story's time line (training only)."""

    def __init__(self, ratio: float = 0.1):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < float("inf"):
            raise ValueError(f"babi_random_time ratio is the fraction of empty memories inserted, a finite number >= 0 (0.1 in the paper); got {ratio!r}")
        self.ratio = ratio

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        mask = batch["memory_mask"]
        return {**batch, "time": random_time_index(mask, self.ratio, mask.shape[-1] - 1, generator)}


@AUGMENTATIONS.register("babi_random_time", family="memory")
def babi_random_time(ratio: float = 0.1) -> RandomTime:
    """MemN2N random noise (RN): 10% empty memories (§4.1)."""
    return RandomTime(ratio=ratio)
