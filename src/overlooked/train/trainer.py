"""The one training loop, shared by every family.

``fit`` never asks which family it trains: a family plugs in through its dataset (an :class:`ArrayDataset`
with named input keys), its model, its objective, an optional encoder and augmentation, and callbacks.

What the loop guarantees:
- data order is a pure function of ``(seed, epoch)`` (a :class:`DistributedSampler` permutation), so a
  resumed run replays the same batches; the global torch RNG (dropout) and the augmentation generator are
  saved in every checkpoint, so a resumed run ends bitwise equal to an uninterrupted one;
- the best checkpoint is chosen on the validation split, never on test;
- a NaN or infinite loss stops the run with :class:`NonFiniteLossError`;
- under ``torchrun`` it trains with DDP, rank 0 alone logging and writing files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler

from overlooked.checks import is_real
from overlooked.config import ConfigWarning, TrainConfig
from overlooked.data.base import Splits
from overlooked.errors import CheckpointError, ConfigError, NonFiniteLossError, OverlookedError
from overlooked.objectives import hits_of, sums_over_batch
from overlooked.registry import METRICS
from overlooked.stats import error_percent
from overlooked.train.callbacks import Callback
from overlooked.train.checkpoint import (
    load_checkpoint,
    move_checkpoint,
    read_checkpoint_doc,
    save_checkpoint,
    storage_errors,
    write_text_atomic,
)
from overlooked.train.distributed import DistInfo, init_distributed, rank_device
from overlooked.train.evaluate import Transform, evaluate, forward, to_device
from overlooked.train.runlock import training_lock
from overlooked.train.schedules import lr_factor


@dataclass
class TrainState:
    """Progress of a run: everything besides tensors that a resume needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    examples_seen: int = 0
    best_metric: float | None = None
    best_step: int = -1
    train_time_s: float = 0.0
    wall_time_s: float = 0.0  # wall seconds of fit() up to the last checkpoint, over every process of the run (resumes add theirs)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    # the training examples, loss sum and hits since the last validation pass (the next metrics record's
    # train_loss / train_accuracy), so a resume between passes logs the same record as an uninterrupted run
    window: list[float] = field(default_factory=lambda: [0, 0.0, 0, 0.0])  # + its wall seconds (examples_per_s)
    # what callbacks set on the Context to steer the lr (lr_scale, lr_hold, schedule_start), so a resume
    # continues with it (a callback that set it once would otherwise find it back at its default)
    lr_control: list[Any] = field(default_factory=lambda: [1.0, None, 0])  # restored after the callbacks' on_train_start
    # True in the `last` checkpoint a train.max_minutes stop writes between two validation passes: written
    # before the extra pass that stop makes, so a resume drops that pass's record and goes on as a run never
    # stopped (the best weights before the pass are kept as best_before_stop.safetensors when it chose others)
    stop_pass: bool = False


def checked_state(state: TrainState) -> TrainState:
    """``state`` as read from a checkpoint, each field checked to be what the trainer writes (counts, times,
    the best metric, the window of four numbers, callback states); TypeError or ValueError naming the first
    field that is not, so that a damaged file fails as such before anything is restored.

    >>> checked_state(TrainState(step=3)).step
    3
    >>> checked_state(TrainState(epoch="x"))
    Traceback (most recent call last):
    TypeError: state.epoch is 'x', not a whole number >= 0
    """
    for name in ("step", "epoch", "batch_in_epoch", "examples_seen"):
        value = getattr(state, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TypeError(f"state.{name} is {value!r}, not a whole number >= 0")
    if not isinstance(state.best_step, int) or isinstance(state.best_step, bool) or state.best_step < -1:
        raise TypeError(f"state.best_step is {state.best_step!r}, not a step (or -1)")
    if state.best_metric is not None and (not isinstance(state.best_metric, (int, float)) or isinstance(state.best_metric, bool)):
        raise TypeError(f"state.best_metric is {state.best_metric!r}, not a number (or null)")
    for name in ("train_time_s", "wall_time_s"):
        if not is_real(getattr(state, name)) or getattr(state, name) < 0:
            raise TypeError(f"state.{name} is {getattr(state, name)!r}, not seconds >= 0")
    if not isinstance(state.window, list) or len(state.window) not in (3, 4) or not all(is_real(x) for x in state.window):  # 3: before 2026-12-05
        raise TypeError(f"state.window is {state.window!r}, not three or four numbers")
    if not isinstance(state.stop_pass, bool):
        raise TypeError(f"state.stop_pass is {state.stop_pass!r}, not true or false")
    if not isinstance(state.callbacks, list) or not all(isinstance(c, dict) for c in state.callbacks):
        raise TypeError(f"state.callbacks is {state.callbacks!r}, not a list of mappings")
    control = state.lr_control
    if not (isinstance(control, list) and len(control) == 3 and is_real(control[0]) and (control[1] is None or is_real(control[1]))
            and isinstance(control[2], int) and not isinstance(control[2], bool)):
        raise TypeError(f"state.lr_control is {control!r}, not [lr_scale, lr_hold or null, schedule_start]")
    return state


@dataclass
class Context:
    """What callbacks see: the (unwrapped) model, the optimiser, the objective, the state and the config."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState
    cfg: TrainConfig
    dist: DistInfo
    run_dir: Path | None = None  # the run's folder (None: none; under DDP every rank sees it, rank 0 writes it)
    objective: nn.Module | None = None  # the loss the trainer minimises (read it; the trainer does not train its parameters)
    stop: bool = False  # a callback may set this to end training early
    lr_scale: float = 1.0  # a callback may scale the scheduled lr (MemN2N linear start uses 0.005 / 0.01)
    lr_hold: float | None = None  # a callback may hold the lr at this value whatever the schedule (linear start)
    schedule_start: int = 0  # the lr schedule counts steps from here (a callback may restart it)
    # A callback sets this when it changes the model so that the validation scores so far no longer describe
    # it (MemN2N linear start re-inserting the softmaxes): the best checkpoint is then chosen again among
    # later evaluations only, and this evaluation, made before the change, is not a candidate.
    restart_selection: bool = False


def build_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The optimiser the config names. With ``weight_decay_1d=false`` the tensors of at most one dimension
    (biases, norm gains, scalars) form a second parameter group without weight decay, as timm groups them."""
    if not cfg.weight_decay_1d and cfg.weight_decay > 0:
        params = list(params)
        params = [{"params": [p for p in params if p.ndim > 1]}, {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


class _Sequence:
    """Index list of one epoch, identical across resumes and consistent across DDP ranks.

    ``sampling="shuffle"``: each epoch is a permutation of the training set (the last batch may be short).
    ``sampling="replacement"``: each epoch is ``n // batch_size`` full batches whose examples are drawn
    uniformly with replacement, as the MemN2N authors' ``train.m`` does (``randi`` over the training range,
    ``floor(N / batch_size)`` batches per epoch); the draw depends only on (seed, epoch), and each DDP rank
    takes its own slice of every global batch (so the global batches do not depend on the
    world size)."""

    def __init__(self, n: int, seed: int, dist: DistInfo, sampling: str, batch_size: int):
        self.n, self.seed, self.dist, self.sampling, self.global_batch = n, seed, dist, sampling, batch_size
        self.per_rank = batch_size // dist.world_size
        shuffled = sampling == "shuffle"  # the replacement draw needs no sampler
        self.sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed, drop_last=False) if shuffled else None

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch."""
        if self.sampling == "replacement":
            return max(self.n // self.global_batch, 1)
        return math.ceil(math.ceil(self.n / self.dist.world_size) / self.per_rank)

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of one epoch, each of ``per_rank`` indices (the shuffled epoch's last may be short)."""
        if self.sampling == "replacement":
            gen = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch)
            idx = torch.randint(self.n, (self.steps_per_epoch(), self.global_batch), generator=gen)  # [steps, global batch]
            mine = idx[:, self.dist.rank * self.per_rank : (self.dist.rank + 1) * self.per_rank]  # this rank's slice
            return list(mine.unbind(0))
        self.sampler.set_epoch(epoch)
        idx = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        return list(idx.split(self.per_rank))


def drop_records_after(path: Path, step: int) -> None:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resume drops what the interrupted process logged
    after its last checkpoint); nothing is written when none is dropped. A last line cut short (the process was
    killed while appending it) is dropped too; any other unreadable line is named."""
    if not path.is_file():
        return
    text = path.read_text()
    lines = text.split("\n")
    cut = lines.pop()  # "" after a final newline; otherwise a line whose writing was interrupted
    kept = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            record_step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise OverlookedError(f"{path}, line {number}, is not a metrics record ({exc}): repair or delete that line, then resume again") from None
        if record_step <= step:
            kept.append(line)
    if cut or len(kept) != sum(1 for line in lines if line):
        write_text_atomic(path, "".join(line + "\n" for line in kept))  # a full disk leaves the records whole


class JsonlLogger:
    """Appends one JSON object per line to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, path: Path | None):
        self.path = path

    def log(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with storage_errors(self.path):  # a full disk: one line from the command (a line cut short is dropped on resume)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")


def clip_groups(net: nn.Module, params: list[torch.Tensor], use_model_groups: bool) -> list[list[torch.Tensor]]:
    """The gradients whose norm per-tensor clipping measures together: one parameter each, except that with
    ``use_model_groups`` a model's ``gradient_groups()`` (views of its gradients; e.g. MemN2N stores several
    embedding matrices side by side in one table, and the authors clip each matrix on its own) replace the
    parameters it covers."""
    model = getattr(net, "module", net)  # under DDP the groups are the wrapped model's
    groups: list[list[torch.Tensor]] = []
    covered: set[int] = set()
    if use_model_groups and hasattr(model, "gradient_groups"):
        groups, owned = model.gradient_groups()
        covered = {id(p) for p in owned}
    return groups + [[p.grad] for p in params if id(p) not in covered]


def group_norm(group: list[torch.Tensor], kind: str = "frobenius") -> torch.Tensor:
    """The norm per-tensor clipping measures for one group of gradients: Frobenius (all entries), or
    ``"spectral"``, the largest singular value of the group's 2-D pieces stacked by rows (what the MemN2N
    authors' Matlab ``norm(M)`` computes on a matrix whose rows are words and time slots); a group that is
    not all 2-D with one width falls back to Frobenius.

    >>> round(float(group_norm([torch.tensor([[3.0, 0.0], [0.0, 4.0]])], "spectral")), 4)
    4.0
    """
    if kind == "spectral" and all(g.dim() == 2 for g in group) and len({g.shape[1] for g in group}) == 1:
        return torch.linalg.matrix_norm(torch.cat(group, 0), ord=2)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(group)))


# The fields the trainer writes into every metrics.jsonl record (the validation pass adds val_loss, val_accuracy, ...).
RECORD_KEYS = ("step", "epoch", "lr", "train_loss", "train_accuracy", "examples_per_s", "examples_seen", "val_loss", "val_accuracy")


def with_record_fields(record: dict[str, Any], callbacks: list[Callback] | tuple[Callback, ...]) -> dict[str, Any]:
    """``record`` with every callback's :meth:`~overlooked.train.callbacks.Callback.record_fields` added; a field
    that the trainer or an earlier callback writes is refused (a ConfigError naming both), never overwritten."""
    owners = dict.fromkeys(record, "the trainer")
    out = dict(record)
    for cb in callbacks:
        extra = cb.record_fields()
        clash = sorted(k for k in extra if k in owners)
        if clash:
            raise ConfigError(f"callback {type(cb).__name__} adds record fields {clash} that {owners[clash[0]]} writes too; rename them in its record_fields()")
        owners.update(dict.fromkeys(extra, f"callback {type(cb).__name__}"))
        out.update({k: _record_value(cb, k, v) for k, v in extra.items()})
    return out


def _record_value(cb: Callback, key: str, value: Any) -> Any:
    """A callback's record field as metrics.jsonl holds it: a one-element tensor or a NumPy scalar as its
    number; anything JSON cannot write is a ConfigError naming the callback and the field (it failed after the
    epoch, inside json, leaving a run without its summary)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "shape", None) == ():  # a NumPy scalar
        value = value.item()
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"callback {type(cb).__name__}'s record field {key!r} is {type(value).__name__} ({exc}), which metrics.jsonl cannot hold; "
            "return numbers, strings, lists or dicts of them from record_fields() (a one-element tensor is read with .item())"
        ) from None
    return value


def train_step(
    net: nn.Module,
    batch: dict[str, torch.Tensor],
    input_keys: tuple[str, ...],
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    loss_scale: float = 1.0,
) -> tuple[float, Any]:
    """One optimiser step: forward (bf16 autocast if asked), loss, finite check, backward, clipping, update.

    The benchmarks time this very function, so a reported training throughput is the trainer's own.

    Returns:
        ``(loss, model_output)``.
    """
    dev_type = batch[input_keys[0]].device.type
    with torch.autocast(device_type=dev_type, dtype=torch.bfloat16, enabled=cfg.bf16):
        out = forward(net, batch, input_keys)
        loss = objective(out, batch)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = list(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        name = getattr(objective, "__name__", type(objective).__name__)
        raise ConfigError(
            f"objective {name} returned {shape}; the trainer needs one scalar loss per batch: reduce it "
            "(mean, or sum with a `reduction = 'sum'` attribute so that DDP and the logged loss treat it as a summed cost)"
        )
    loss = loss.reshape(())
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"loss is {loss_value}. Lower train.lr, set train.grad_clip, or check the data for NaN/inf.")
    optimizer.zero_grad(set_to_none=True)
    (loss * loss_scale).backward()
    if cfg.grad_clip is not None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if cfg.grad_clip_per_tensor:  # MemN2N: "the gradient of each weight matrix is measured separately"
            groups = clip_groups(net, params, cfg.grad_clip_groups)
            if cfg.grad_clip_norm == "frobenius" and all(len(g) == 1 for g in groups):  # one batched norm per step (hot path)
                grads = [g[0] for g in groups]
                norms = torch._foreach_norm(grads)
                torch._foreach_mul_(grads, [torch.clamp(cfg.grad_clip / (n + 1e-6), max=1.0) for n in norms])
            else:
                for group in groups:
                    norm = group_norm(group, cfg.grad_clip_norm)
                    torch._foreach_mul_(group, torch.clamp(cfg.grad_clip / (norm + 1e-6), max=1.0))
        else:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    optimizer.step()
    return loss_value, out


def build_ema(model: nn.Module, cfg: TrainConfig) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights (and buffers) that ``train.ema_decay`` asks for:
    after every optimiser step ``w_ema <- decay * w_ema + (1 - decay) * w`` (the first step copies ``w``), by
    PyTorch's own :class:`~torch.optim.swa_utils.AveragedModel`. None when the setting is off. Buffers a
    module declares settings (:func:`setting_buffers`) are copied from the model wherever the average is read
    (:func:`follow_settings`)."""
    if cfg.ema_decay is None:
        return None
    if not 0.0 < cfg.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must lie strictly between 0 and 1 (e.g. 0.999), got {cfg.ema_decay}; leave it unset for no averaging")
    avg = _warmed_ema(cfg.ema_decay) if cfg.ema_warmup else _plain_ema(cfg.ema_decay)
    ema = AveragedModel(model, multi_avg_fn=avg, use_buffers=True)
    ema.follows = setting_buffers(model)  # resolved once: reading the average costs nothing where none is declared
    return ema


def setting_buffers(model: nn.Module) -> list[str]:
    """Names (as ``get_buffer`` takes them) of the buffers ``model`` declares settings rather than learned state:
    a module's ``ema_follows`` names, e.g. the spread-loss margin a callback schedules. A declared name that is
    not a buffer of its module is a ConfigError."""
    names = []
    for prefix, module in model.named_modules():
        for name in getattr(module, "ema_follows", ()):
            if name not in dict(module.named_buffers(recurse=False)):
                raise ConfigError(f"{type(module).__name__}.ema_follows names {name!r}, which is not one of its buffers; register it with register_buffer, or drop it from ema_follows")
            names.append(f"{prefix}.{name}" if prefix else name)
    return names


@torch.no_grad()
def follow_settings(model: nn.Module, ema: AveragedModel) -> None:
    """Copy ``model``'s setting buffers into the average, which averages them with the weights: read as
    averaged, validation scored the spread loss at a lagging margin (0.24 where the schedule had reached
    0.90). Called where the average is read: validation, the checkpoints, the final report."""
    for name in getattr(ema, "follows", ()):
        ema.module.get_buffer(name).copy_(model.get_buffer(name))


def _plain_ema(decay: float) -> Any:
    """``AveragedModel``'s ``multi_avg_fn`` for a fixed decay; integer buffers (batch-norm step counters,
    which the average cannot take) follow the model, as under warm-up."""
    average = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if averaged[0].is_floating_point():
            average(averaged, current, n_averaged)
        else:
            torch._foreach_copy_(averaged, current)

    return update


def ema_decay_at(decay: float, n_averaged: int) -> float:
    """The decay of the ``n_averaged``-th update under warm-up: ``min(decay, (1 + n) / (10 + n))``.

    >>> ema_decay_at(0.999, 1), ema_decay_at(0.999, 10_000)
    (0.18181818181818182, 0.999)
    """
    return min(decay, (1.0 + n_averaged) / (10.0 + n_averaged))


def _warmed_ema(decay: float) -> Any:
    """``AveragedModel``'s ``multi_avg_fn`` for an average whose decay warms up (:func:`ema_decay_at`)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # AveragedModel calls this once per (device, dtype) group, so a group is all floats or all integers
        if averaged[0].is_floating_point():
            get_ema_multi_avg_fn(ema_decay_at(decay, int(n_averaged)))(averaged, current, n_averaged)
        else:  # integer buffers (batch-norm counters) follow the model
            torch._foreach_copy_(averaged, current)

    return update


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state dict (weights and buffers), unaffected by later training."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def averaged_weights(model: nn.Module, ema: AveragedModel | None) -> Iterator[None]:
    """Inside the block ``model`` holds the average's weights; after it, its own again (bit for bit).

    The average is scored through ``model`` itself, not through the average's copy, so whatever a callback
    has set on the model since the copy was made (MemN2N's linear start, the spread-loss margin) applies."""
    if ema is None:
        yield
        return
    trained = state_copy(model)
    follow_settings(model, ema)  # a callback may have set one since the last update
    model.load_state_dict(ema.module.state_dict())
    try:
        yield
    finally:
        model.load_state_dict(trained)


def _rng_states(aug_gen: torch.Generator) -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state(), "augment": aug_gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _selection(select_metric: str, chosen: bool) -> str:
    """How the reported weights were chosen, for the summary.

    >>> _selection("val_accuracy", chosen=False)
    'the final weights: no validation pass chose weights (none ran, or selection restarted at the last one)'
    """
    if select_metric == "last":
        return "the final weights (the last validation pass)"
    if not chosen:
        return "the final weights: no validation pass chose weights (none ran, or selection restarted at the last one)"
    return f"checkpoint with the best {select_metric} (validation split, never test)"


def _stop_reason(stopped_by: str, ctx_stop: bool, step: int, total_steps: int, max_steps: int | None) -> str:
    """Why training ended: ``max_minutes``, ``callback`` (e.g. a target accuracy), ``max_steps`` or ``epochs``."""
    if stopped_by == "max_minutes":
        return stopped_by
    if ctx_stop:
        return "callback"
    return "max_steps" if max_steps is not None and step >= max_steps else "epochs"


def fit(
    model: nn.Module,
    splits: Splits,
    objective: nn.Module,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    *,
    augment: Transform | None = None,
    encoder: Transform | None = None,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    resume: Path | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``splits.train``, select on ``splits.val``, report ``splits.test``.

    Args:
        model: takes the batch's ``splits.input_keys`` positionally, returns logits or a dict with them.
        splits: the data (see :class:`overlooked.data.base.Splits`).
        objective: ``objective(output, batch) -> loss``; its ``reduction`` ('mean'/'sum') is respected
            under DDP.
        cfg: the trainer's settings.
        run_dir: folder for ``metrics.jsonl`` and ``checkpoints/``; None writes nothing.
        augment: training-only batch transform ``(batch, generator) -> batch``.
        encoder: batch transform applied in training and evaluation (e.g. spike encoding).
        callbacks: hooks (see :class:`Callback`).
        resume: a ``last.safetensors`` checkpoint to continue from exactly.

    Returns:
        Final metrics: train/val/test loss and accuracy of the best-on-validation weights, steps, examples
        seen, training wall time, the selection rule.
    """
    with training_lock(run_dir), process_settings(cfg):  # one process writes a run folder at a time
        return _fit(model, splits, objective, cfg, run_dir, augment=augment, encoder=encoder, callbacks=callbacks, resume=resume)


# cuBLAS is deterministic only with a fixed workspace configuration (PyTorch's reproducibility notes); PyTorch
# reads the variable when it first sizes cuBLAS's workspace, so it must be set before the process's first
# CUDA matmul.
CUBLAS_WORKSPACE = ":4096:8"


def cublas_for_determinism(cfg: TrainConfig) -> None:
    """A deterministic CUDA run needs ``CUBLAS_WORKSPACE_CONFIG`` before the process's first cuBLAS call: when
    it is unset, set it to ``:4096:8``. It stays set (PyTorch keeps the workspace it sized from it for the life
    of the process, and DDP workers inherit it). When CUDA has already been started in this process, an earlier
    cuBLAS call may have sized the workspace already: then a warning says how to make sure. :func:`api.train`
    and :func:`api.resume` call this before they touch CUDA; :func:`process_settings` calls it for direct
    users of :func:`fit`. CPU runs leave the environment alone."""
    if not cfg.deterministic or str(cfg.device).split(":")[0] != "cuda" or "CUBLAS_WORKSPACE_CONFIG" in os.environ:
        return
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    if torch.cuda.is_initialized():
        warnings.warn(
            f"train.deterministic: CUBLAS_WORKSPACE_CONFIG was set to {CUBLAS_WORKSPACE} after CUDA had started in this "
            "process, so a cuBLAS call made before may have fixed another workspace and matmuls may differ between "
            f"identical runs; set CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} in the environment before Python starts",
            RuntimeWarning,
            stacklevel=3,
        )


@contextlib.contextmanager
def process_settings(cfg: TrainConfig) -> Iterator[None]:
    """``train.num_threads`` and ``train.deterministic`` for the duration of a run; PyTorch keeps both per
    process, so they are put back afterwards (a later run in the same process, or the caller, is unaffected).
    A deterministic CUDA run also gets ``CUBLAS_WORKSPACE_CONFIG`` (:func:`cublas_for_determinism`)."""
    threads = torch.get_num_threads()
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        cublas_for_determinism(cfg)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


# Training settings a resume may change: where and how it runs, and how long this process may take; every
# other one shapes the run (its batches, its updates, what it reports), so a change would splice two runs.
RESUME_MAY_CHANGE = frozenset({"device", "progress", "num_threads", "max_minutes", "eval_batch_size"})


def changed_settings(now: dict[str, Any], then: dict[str, Any], prefix: str = "", allowed: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, Any, Any]]:
    """``(dotted key, now, then)`` for every setting whose value differs (nested mappings compared key by key),
    except the dotted keys in ``allowed``. A field only one of them holds is another version's and not
    compared, except inside a ``kwargs`` mapping, where every key is the user's (one added or removed is a
    change; ``"(unset)"`` stands for the missing side).

    >>> changed_settings({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}, "e": 0})
    [('b.c', 2, 5)]
    >>> changed_settings({"m": {"kwargs": {"h": 2}}}, {"m": {"kwargs": {}}})
    [('m.kwargs.h', 2, '(unset)')]
    """
    out = []
    users = prefix.endswith("kwargs.")
    for key in [*now, *(k for k in then if k not in now)]:
        if f"{prefix}{key}" in allowed or (not users and (key not in now or key not in then)):
            continue
        a, b = now.get(key, "(unset)"), then.get(key, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_settings(a, b, f"{prefix}{key}.", allowed)
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def check_resumed_config(resume: Path, cfg: TrainConfig) -> None:
    """Refuse to resume from ``resume`` when ``cfg`` (the run folder's config.yaml, as it reads now) sets a
    training value other than the one the checkpoint was written with (its ``info["train"]``, read from the
    file's header), apart from :data:`RESUME_MAY_CHANGE`. Settings one of the two does not know (another
    version) are not compared; a checkpoint that stores none (written elsewhere) is left to the checks that
    read its tensors."""
    stored = read_checkpoint_doc(resume).get("info", {}).get("train")
    if not isinstance(stored, dict):
        return
    now = json.loads(json.dumps(asdict(cfg)))  # as the checkpoint stored it: tuples as lists
    changed = changed_settings(now, stored, "train.", {f"train.{k}" for k in RESUME_MAY_CHANGE})
    if changed:
        said = ", ".join(f"{k}={a!r} (written with {b!r})" for k, a, b in changed)
        raise ConfigError(
            f"{resume} was written with other training settings than the run's config.yaml now holds: {said}. A resume "
            "continues the same run: restore those values in config.yaml, or start a new run from these weights with "
            "train.init_from=<run folder> train.init_checkpoint=last (a fresh optimiser and schedule)"
        )


def _fit(
    model: nn.Module,
    splits: Splits,
    objective: nn.Module,
    cfg: TrainConfig,
    run_dir: Path | None,
    *,
    augment: Transform | None,
    encoder: Transform | None,
    callbacks: list[Callback] | tuple[Callback, ...],
    resume: Path | None,
) -> dict[str, Any]:
    """:func:`fit`'s body, run inside :func:`process_settings`."""
    dist = init_distributed(cfg.device)
    device = rank_device(cfg.device, dist)
    if cfg.batch_size % dist.world_size:
        raise ConfigError(f"train.batch_size={cfg.batch_size} must be divisible by the world size {dist.world_size}")
    torch.manual_seed(cfg.seed)
    trained = [name for name, p in objective.named_parameters() if p.requires_grad] if isinstance(objective, nn.Module) else []
    if trained:
        name = getattr(objective, "__name__", type(objective).__name__)
        raise ConfigError(
            f"objective {name} has trainable parameters ({', '.join(trained)}); the trainer optimises, checkpoints and averages the "
            "model's parameters only, so they would stay at their initial values. Fix: hold them in the model (and hand them to the "
            "objective through the model's output dict), or freeze them with requires_grad_(False)"
        )
    model.to(device)
    if isinstance(objective, nn.Module):
        objective.to(device)  # its buffers (class weights, a margin) meet the outputs on their device
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dist.local_rank] if device.startswith("cuda") else None)
        # The wrap broadcast rank 0's weights; from here each rank draws its own dropout masks (the same seed on
        # every rank would drop the same units for different examples). Rank 0 keeps the run's seed.
        torch.manual_seed(cfg.seed + (dist.rank << 40))  # never equal to an augmentation seed (seed * 1_000_003 + rank)
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    ema = build_ema(model, cfg)
    scored = model if ema is None else ema.module  # the weights validation, selection and the final report score
    aug_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + dist.rank)
    state = TrainState()
    ctx = Context(model=model, optimizer=optimizer, state=state, cfg=cfg, dist=dist, run_dir=run_dir, objective=objective)
    write = run_dir is not None and dist.is_main
    ckpt_dir = run_dir / "checkpoints" if run_dir is not None else None
    logger = JsonlLogger(run_dir / "metrics.jsonl" if write else None)

    fit_start = time.perf_counter()
    if resume is not None:
        check_resumed_config(resume, cfg)  # also for fit(resume=...) called directly, not through api.resume
        rng, info = load_checkpoint(resume, model, optimizer, ema)
        own = lambda key: rng.get(f"{key}.{dist.rank}", rng.get(key))  # noqa: E731  (DDP: this rank's own stream)
        try:  # a damaged document, RNG or callback state, or one a newer version wrote, is named before anything is cut
            loaded = checked_state(TrainState(**info["state"]))
            torch.Generator().set_state(own("augment"))
            torch.Generator().set_state(own("torch"))
            if "cuda" in rng and torch.cuda.is_available() and own("cuda").numel() != torch.cuda.get_rng_state().numel():
                raise RuntimeError(f"the CUDA RNG state has {own('cuda').numel()} bytes, this GPU's {torch.cuda.get_rng_state().numel()}")
            for cb, cb_state in zip(callbacks, loaded.callbacks):
                cb.load_state_dict(cb_state)
        except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{resume}: its training state cannot be restored ({type(exc).__name__}: {exc}); the file is damaged or was "
                "written by another version of overlooked (the run's environment.json names its git commit)"
            ) from None
        state.__dict__.update(loaded.__dict__)
        restored_lr = "lr_control" in info["state"]  # a checkpoint written before 2026-12-07 has none: callbacks set it again
        if write:  # the checkpoint fits: now drop the records the interrupted process wrote after it
            # (and the extra validation pass of a max_minutes stop, at the checkpoint's own step)
            drop_records_after(run_dir / "metrics.jsonl", state.step - 1 if state.stop_pass else state.step)
        torch.set_rng_state(own("torch"))
        aug_gen.set_state(own("augment"))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(own("cuda"))
    else:
        restored_lr = False
    resumed_from = state.step  # the step this process starts from (0 for a fresh run)
    wall_before = state.wall_time_s  # earlier processes' wall time, up to the checkpoint this one resumed from

    n_train = len(splits.train)
    sequence = _Sequence(n_train, cfg.seed, dist, cfg.sampling, cfg.batch_size)
    steps_per_epoch = sequence.steps_per_epoch()
    total_steps = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    if isinstance(cfg.num_threads, int) and cfg.num_threads > (os.cpu_count() or 1):  # said where it runs, not when a saved config is read
        warnings.warn(f"train.num_threads={cfg.num_threads} is more than this machine's {os.cpu_count()} cores: threads then wait on each other (slower, not faster)", ConfigWarning, stacklevel=2)
    if cfg.warmup_steps > total_steps and resume is None:  # the learning rate never reaches train.lr
        warnings.warn(f"train.warmup_steps={cfg.warmup_steps} is longer than the run's {total_steps} steps: the learning rate never reaches train.lr (it ends at {total_steps / cfg.warmup_steps:.2g} of it)", ConfigWarning, stacklevel=2)
    eval_every = cfg.eval_every or steps_per_epoch
    ckpt_every = cfg.checkpoint_every or eval_every
    summed = sums_over_batch(objective)
    metric = splits.meta.get("metric", "top1")  # MultiMNIST: both of the two digits correct
    METRICS.get(metric)  # a name the METRICS registry does not know is named, with the known ones, before the first step
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise ConfigError(f"train.max_minutes must be positive (minutes of training), got {cfg.max_minutes}")
    deadline = None if cfg.max_minutes is None else time.perf_counter() + 60.0 * cfg.max_minutes
    stopped_by = "epochs"
    loss_scale = float(dist.world_size) if summed else 1.0  # DDP averages gradients over ranks: undo it for a summed cost

    def limited(dataset: Any) -> Any:
        """The first ``cfg.eval_limit`` examples of ``dataset`` (all of it when no limit is set)."""
        if cfg.eval_limit is None or len(dataset) <= cfg.eval_limit:
            return dataset
        return dataset.subset(torch.arange(cfg.eval_limit))

    def agreed(*flags: bool) -> list[bool]:
        """Under DDP a decision any rank makes (a callback's stop, running out of time, a restart of the
        selection) is every rank's, or the ranks would part ways and hang in the next all-reduce. All the
        flags travel in one all-reduce."""
        if not dist.enabled:
            return list(flags)
        value = torch.tensor([float(f) for f in flags], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in value.tolist()]

    def run_eval() -> dict[str, Any]:
        if dist.enabled:  # each rank's last training forward moved its own batch-norm statistics: score rank 0's
            for buf in model.buffers():
                torch.distributed.broadcast(buf, 0)
        with averaged_weights(model, ema):
            res = evaluate(model, limited(splits.val), splits.input_keys, splits.target_key, objective, cfg.eval_batch_size, device, encoder, None, cfg.bf16, cfg.seed, metric)
        scores = [float(res["loss"]), float(res["accuracy"])]
        if dist.enabled:  # every rank decides on rank 0's numbers (EMA buffers and GPU kernels may differ per rank)
            value = torch.tensor(scores, dtype=torch.float64, device=device)
            torch.distributed.broadcast(value, 0)
            scores = value.tolist()
        return {"val_loss": scores[0], "val_accuracy": scores[1]}

    def is_better(metrics: dict[str, Any]) -> bool:
        if cfg.select_metric == "last" or state.best_metric is None:
            return True
        value = metrics[cfg.select_metric]
        return value > state.best_metric if cfg.select_metric == "val_accuracy" else value < state.best_metric

    best_weights: dict[str, torch.Tensor] | None = None
    # The run's best checkpoint, if a validation pass chose one (best_step >= 0); a "best" written at the end
    # because no pass chose is not a choice, and the resumed run must not report it as one.
    # ... and only the best the resumed state names: one written after the resume point (best every 5
    # steps, last every 10) belongs to the abandoned continuation, which the replay may not repeat.
    # After a max_minutes stop, the best before its extra pass may sit in best_before_stop.safetensors.
    set_aside = Path(resume).parent / "best_before_stop.safetensors" if resume is not None else None
    best_files = [f for f in (Path(resume).parent / "best.safetensors", set_aside) if f.exists()] if resume is not None and state.best_step >= 0 else []
    chosen_file = None
    if best_files:
        resumed_weights = state_copy(model)
        for best_file in best_files:
            _, best_info = load_checkpoint(best_file, model)
            if best_info.get("state", {}).get("best_step") == state.best_step:
                best_weights, chosen_file = state_copy(model), best_file
                break
        else:  # its weights are gone: the resumed run chooses afresh
            state.best_metric, state.best_step = None, -1
        model.load_state_dict(resumed_weights)  # back to the weights training continues from
    if set_aside is not None and set_aside.exists():
        if dist.enabled:  # every rank has read the files before rank 0 moves them
            torch.distributed.barrier()
        if write:  # the set-aside best is the run's best again, or was not chosen (kept no longer)
            if chosen_file == set_aside:
                move_checkpoint(set_aside, set_aside.with_name("best.safetensors"))
            else:
                set_aside.unlink()
                set_aside.with_suffix(".json").unlink(missing_ok=True)
    state.stop_pass = False

    def checkpoint(name: str, with_optimizer: bool) -> None:
        nonlocal best_weights
        if ema is not None:
            follow_settings(model, ema)  # the average is kept and written as validation reads it
        if name == "best":  # every rank keeps the best weights, so the final report needs no file
            best_weights = state_copy(scored)
        rng = None
        if with_optimizer:  # every rank reaches this at the same steps; each rank's augmentation stream is its own
            rng = _rng_states(aug_gen)
            if dist.enabled:  # each rank's streams (dropout masks, augmentation), rank 0's also under the plain keys
                for key in sorted(rng):
                    mine = rng[key].to(device)
                    every = [torch.empty_like(mine) for _ in range(dist.world_size)]
                    torch.distributed.all_gather(every, mine)
                    rng.update({f"{key}.{r}": t.cpu() for r, t in enumerate(every)})
        if not write or ckpt_dir is None:
            return
        state.callbacks = [cb.state_dict() for cb in callbacks]
        state.window = [window_n, window_loss, window_hits, time.perf_counter() - window_t]
        state.lr_control = [float(ctx.lr_scale), None if ctx.lr_hold is None else float(ctx.lr_hold), int(ctx.schedule_start)]
        state.wall_time_s = wall_before + time.perf_counter() - fit_start
        save_checkpoint(
            ckpt_dir / f"{name}.safetensors",
            scored if name == "best" else model,
            optimizer if with_optimizer else None,
            rng,
            {"state": asdict(state), "train": asdict(cfg)},
            ema if with_optimizer else None,
        )

    def set_aside_best() -> None:
        """Keep the best file a max_minutes stop's extra pass replaces, for a resume of the run (a rename: a
        kill at any point leaves one of the two files whole)."""
        if write and ckpt_dir is not None and (ckpt_dir / "best.safetensors").exists():
            move_checkpoint(ckpt_dir / "best.safetensors", ckpt_dir / "best_before_stop.safetensors")

    progress = None
    if cfg.progress and dist.is_main:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state.step, unit="step", dynamic_ncols=True, leave=False, disable=None)

    for cb in callbacks:
        cb.on_train_start(ctx)
    if restored_lr:  # after on_train_start: a callback there that scales the lr relatively does not compound per resume
        ctx.lr_scale, ctx.lr_hold, ctx.schedule_start = state.lr_control
    with_record_fields(dict.fromkeys(RECORD_KEYS), callbacks)  # a clash of field names is named now, not after the first validation pass
    model.train()
    window_n, window_loss, window_hits = int(state.window[0]), float(state.window[1]), int(state.window[2])
    window_t = time.perf_counter() - (float(state.window[3]) if len(state.window) > 3 else 0.0)  # time already in the window
    while state.step < total_steps and state.epoch < cfg.epochs and not ctx.stop:
        batches = sequence.epoch(state.epoch)
        for i in range(state.batch_in_epoch, len(batches)):
            if state.step >= total_steps or ctx.stop:
                break
            t0 = time.perf_counter()
            batch = splits.train[batches[i]]
            if augment is not None:
                batch = augment(batch, aug_gen)
            if encoder is not None:
                batch = encoder(batch, aug_gen)
            batch = to_device(batch, device)
            if ctx.lr_hold is not None:
                lr = ctx.lr_hold
            else:
                lr = cfg.lr * lr_factor(cfg, state.step - ctx.schedule_start, steps_per_epoch, total_steps - ctx.schedule_start) * ctx.lr_scale
            for group in optimizer.param_groups:
                group["lr"] = lr
            try:
                loss_value, out = train_step(net, batch, splits.input_keys, objective, optimizer, cfg, loss_scale)
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(f"{exc} At step {state.step} (epoch {state.epoch}, lr {lr:g}); training stopped.") from None
            except RuntimeError as exc:
                if dist.enabled and "Expected to have finished reduction" in str(exc):  # DDP's words for an unused parameter
                    raise ConfigError(
                        "under DDP every parameter must reach the loss, and one of this model's did not at the last step "
                        "(e.g. a decoder whose loss weight is 0, or a branch this config never runs): give it a weight, "
                        "drop it from the model, or train in one process"
                    ) from exc
                raise
            if ema is not None:
                ema.update_parameters(model)
            b = int(batch[splits.target_key].shape[0])
            state.step += 1
            state.batch_in_epoch = i + 1
            state.examples_seen += b * dist.world_size
            state.train_time_s += time.perf_counter() - t0
            window_n += b
            window_loss += loss_value if summed else loss_value * b
            with torch.no_grad():
                window_hits += int(hits_of(out, batch, splits.target_key, metric).sum())
            for cb in callbacks:
                cb.on_step_end(ctx, loss_value)
            if progress is not None:
                progress.update(1)
                if state.step % 10 == 0:
                    rate = window_n / max(time.perf_counter() - window_t, 1e-9)
                    progress.set_postfix(loss=f"{window_loss / max(window_n, 1):.4f}", acc=f"{window_hits / max(window_n, 1):.3f}", ex_s=f"{rate:.0f}")
            last_of_epoch = i + 1 == len(batches)
            if last_of_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
                for cb in callbacks:  # before this step's validation and checkpoint, so both include its effect
                    cb.on_epoch_end(ctx)
            out_of_time = deadline is not None and state.step < total_steps and time.perf_counter() >= deadline
            # Callbacks only set ctx.stop (none reads it), so one agreement per step, after all of them, is
            # enough; every rank must stop at the same step, or DDP hangs.
            callback_stop, out_of_time = agreed(ctx.stop, out_of_time)
            ctx.stop = callback_stop or out_of_time
            if out_of_time and not callback_stop:  # train.max_minutes: validate now, keep the best, stop
                stopped_by = "max_minutes"
            regular_pass = state.step % eval_every == 0 or state.step == total_steps
            # (a callback's stop at this step ends the run with its pass as a run without a clock would)
            extra_pass = out_of_time and not regular_pass and not callback_stop
            if extra_pass:
                # A pass a run never stopped would not make: `last` is written before it, as that run would be
                # here (loss window, best so far, RNG, callbacks before they see the pass), and flagged so that
                # a resume drops the pass's record; a best file the pass replaces is kept for that resume.
                state.stop_pass = True
                checkpoint("last", with_optimizer=True)
                state.stop_pass = False
            # A stop (max_minutes, or a callback after this step) validates now and writes `last`, so the
            # report and the checkpoint describe the weights training ended with.
            if regular_pass or out_of_time or ctx.stop:
                elapsed = max(time.perf_counter() - window_t, 1e-9)
                metrics = run_eval()
                record = {
                    "step": state.step,
                    "epoch": state.epoch if last_of_epoch else state.epoch + state.batch_in_epoch / len(batches),
                    "lr": lr,
                    "train_loss": window_loss / max(window_n, 1),
                    "train_accuracy": window_hits / max(window_n, 1),
                    "examples_per_s": window_n * dist.world_size / elapsed,
                    "examples_seen": state.examples_seen,
                    **metrics,
                }
                record = with_record_fields(record, callbacks)  # e.g. linear start: whether this pass was scored without softmaxes
                logger.log(record)
                window_t, window_n, window_loss, window_hits = time.perf_counter(), 0, 0.0, 0
                for cb in callbacks:
                    cb.on_eval_end(ctx, record)
                ctx.stop, ctx.restart_selection = agreed(ctx.stop, ctx.restart_selection)
                if ctx.restart_selection:  # the model changed (e.g. linear start ended): earlier scores no longer apply
                    ctx.restart_selection = False
                    state.best_metric, state.best_step, best_weights = None, -1, None
                    if extra_pass:
                        set_aside_best()
                    elif write and ckpt_dir is not None:
                        (ckpt_dir / "best.safetensors").unlink(missing_ok=True)
                elif is_better(metrics):
                    state.best_metric = float(metrics["val_accuracy" if cfg.select_metric == "last" else cfg.select_metric])
                    state.best_step = state.step
                    if extra_pass:
                        set_aside_best()
                    checkpoint("best", with_optimizer=False)
            if (state.step % ckpt_every == 0 or state.step == total_steps or out_of_time or ctx.stop) and not extra_pass:
                checkpoint("last", with_optimizer=True)
        else:
            continue
        break
    if progress is not None:
        progress.close()

    # Final report: the best-on-validation weights on every split (without train when cfg.report_train is off).
    chosen = best_weights is not None
    if chosen:
        model.load_state_dict(best_weights)
    else:
        if ema is not None:  # no validation pass chose weights: report the average, as validation would have
            follow_settings(model, ema)
            model.load_state_dict(ema.module.state_dict())
        # and write them as ``best`` too, so evaluate / explain find the reported weights (with the
        # callbacks' state of now: e.g. linear start ended at the last pass, the softmaxes in)
        checkpoint("best", with_optimizer=False)
    summary: dict[str, Any] = {
        "steps": state.step,
        **({"resumed_from_step": resumed_from, "wall_time_before_s": wall_before} if resume is not None else {}),  # earlier processes' wall time
        "epochs": state.epoch + state.batch_in_epoch / max(steps_per_epoch, 1),
        "examples_seen": state.examples_seen,
        "train_time_s": state.train_time_s,
        "best_step": state.best_step,
        "stopped_by": _stop_reason(stopped_by, ctx.stop, state.step, total_steps, cfg.max_steps),
        "metric": metric,
        "selection": _selection(cfg.select_metric, chosen=chosen),
        "weights": "as trained" if ema is None else f"exponential moving average of the weights, decay {cfg.ema_decay}",
    }
    group_key = splits.meta.get("group_key")
    for split_name in ("train", "val", "test") if cfg.report_train else ("val", "test"):
        data = limited(splits.scored(split_name))
        summary[f"{split_name}_examples"] = len(data)
        if len(data) < len(getattr(splits, split_name)):  # train.eval_limit: scored on the first examples only
            summary[f"{split_name}_examples_available"] = len(getattr(splits, split_name))
        res = evaluate(model, data, splits.input_keys, splits.target_key, objective, cfg.eval_batch_size, device, encoder, group_key, cfg.bf16, cfg.seed, metric)
        summary[f"{split_name}_loss"] = res["loss"]
        summary[f"{split_name}_accuracy"] = res["accuracy"]
        summary[f"{split_name}_error"] = error_percent(res["accuracy"])
        if "group_accuracy" in res:
            summary[f"{split_name}_group_accuracy"] = res["group_accuracy"]
    for cb in callbacks:
        cb.on_train_end(ctx, summary)
    return summary
