"""Spiking networks trained with surrogate gradients: a spiking MLP and a spiking conv net for MNIST.

Conventions shared by both (stated here once, and in docs/spiking.md):

- **Input**: *direct encoding* by default: the real-valued image is the input current of the first layer at
  every step, so only the first layer sees real values (its conv/linear + batch norm is computed once and
  repeated over the ``T`` steps, since the input does not change). A time-first spike tensor
  ``[T, B, ...]`` (from a rate/latency encoder) is accepted as well. The rule, checked on every call: a
  static input is ``[B, *input_shape]``, a sequence is ``[T, B, *input_shape]`` with ``T = steps`` (the
  trainer refuses a run whose encoder or event bins set another T, so the model does too); anything else
  raises a ``ValueError`` naming both layouts. A batch-first ``[B, T, ...]`` tensor with ``B = T = steps``
  cannot be told apart from a time-first one: time-first is the convention.
- **Hidden layers** emit binary spikes only (LIF or PLIF neurons, forward Euler, see ``neurons.py``).
  Pooling, where used, is average pooling of *currents* before the neuron, so what leaves a layer is
  always a 0/1 spike tensor and every op maps to NIR (Conv2d, AvgPool2d, Affine, LIF).
- **Readout**: the only non-spiking layer. Its output current is averaged over the ``T`` steps, which is the
  membrane potential of a non-leaky integrator divided by ``T`` (the logits).
- Batch norm through time (one BN shared over all steps, statistics over ``T x B``) sits between the
  synaptic layer and the neuron; :func:`fold_batchnorm` folds it into the synaptic weights for export.
- Neurons run on ``backend="auto"``: the fused C++ scan on CPU when a compiler works (spikes bit-identical to
  the reference loop, tested in ``tests/spiking/test_kernels.py``), else the reference loop; each run's
  summary records what ran (``neuron_backends``).

The model returns ``{"logits": [B, C], "spike_counts": [L], "neurons": [L]}``; the counts let the
``spiking_cross_entropy`` objective add a firing-rate regulariser and let evaluation report firing rates.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from overlooked.checks import autocast_enabled, is_count, reads_values
from overlooked.errors import InputError
from overlooked.objectives import CrossEntropy
from overlooked.registry import MODELS, OBJECTIVES
from overlooked.spiking import modules as M

Tensor = torch.Tensor


def _neuron(kind: str, dt: float, tau_mem: float, surrogate: str, detach_reset: bool, backend: str, surrogate_alpha: float | None = None) -> nn.Module:
    """A sequence neuron layer over ``[T, B, ...]`` (``kind``: "lif" or "plif", PLIF learning its tau)."""
    extra: dict[str, Any] = {"backend": backend} if backend != "reference" else {}
    if kind == "plif":
        return M.PLIF(dt=dt, surrogate=surrogate, surrogate_alpha=surrogate_alpha, init_tau=tau_mem / dt, detach_reset=detach_reset, **extra)
    if kind == "lif":
        return M.LIF(dt=dt, surrogate=surrogate, surrogate_alpha=surrogate_alpha, tau_mem=tau_mem, detach_reset=detach_reset, **extra)
    raise ValueError(f"neuron must be 'lif' or 'plif', got {kind!r}")


class TimeDistributed(nn.Module):
    """Applies a per-step module to ``[T, B, ...]`` by folding time into the batch (one call, not T)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        y = self.module(x.flatten(0, 1))  # [T*B, ...]
        return y.view(t, b, *y.shape[1:])


class SpikingBlock(nn.Module):
    """synapse (conv or linear) -> [avg pool] -> batch norm through time -> spiking neuron.

    Called with ``steps=T`` (the first block under direct encoding), its input is the same at every step, so
    the synapse, pool and BN run once on ``[B, ...]`` and the current is repeated ``T`` times.
    """

    def __init__(self, synapse: nn.Module, neuron: nn.Module, norm: nn.Module | None = None, pool: nn.Module | None = None):
        super().__init__()
        self.synapse, self.pool, self.norm, self.neuron = synapse, pool, norm, neuron

    def current(self, x: Tensor) -> Tensor:
        """Synaptic current for a ``[N, ...]`` input."""
        y = self.synapse(x)
        if self.pool is not None:
            y = self.pool(y)
        if self.norm is not None:
            y = self.norm(y)
        return y

    def forward(self, x: Tensor, steps: int | None = None) -> Tensor:
        """``x``: ``[T, B, ...]`` spikes, or ``[B, ...]`` static input with ``steps`` given -> ``[T, B, ...]`` spikes."""
        if steps is not None:  # static input: compute once, repeat over time
            cur = self.current(x)
            cur = cur.unsqueeze(0).expand(steps, *cur.shape)  # [T, B, ...]
        else:
            t, b = x.shape[:2]
            cur = self.current(x.flatten(0, 1))
            cur = cur.view(t, b, *cur.shape[1:])
        z, _ = self.neuron(cur)
        return z


def input_is_static(x: Tensor, input_shape: tuple[int, ...], steps: int, name: str = "SpikingNet") -> bool:
    """True for a static ``[B, *input_shape]`` input (direct encoding), False for a time-first sequence
    ``[T=steps, B, *input_shape]``; any other shape raises a ``ValueError`` that names both layouts (shape
    checks only: no device sync). The rule of :class:`SpikingNet` and of its event-driven layout."""
    shape, n = tuple(x.shape), len(input_shape)
    if x.dim() == n + 1 and shape[1:] == input_shape:
        return True
    if x.dim() == n + 2 and shape[2:] == input_shape and shape[0] == steps:
        return False
    dims = ", ".join(map(str, input_shape))
    if x.dim() == n + 2 and shape[2:] == input_shape:
        why = (
            f"a sequence must be time-first with T = steps = {steps} in dim 0, but dim 0 is {shape[0]}; "
            f"if the tensor is batch-first [B, T, {dims}], pass x.transpose(0, 1); to run at another T, set model.steps = T"
        )
    else:
        why = f"its trailing dimensions must be input_shape ({dims})"
    raise ValueError(
        f"{name} (input_shape=({dims}), steps={steps}) takes a static input [B, {dims}] "
        f"(direct encoding: fed at each of the {steps} steps) or a time-first sequence [T={steps}, B, {dims}]; "
        f"got {list(shape)}: {why}"
    )


class SpikingNet(nn.Module):
    """Blocks of spiking layers and a non-spiking readout averaged over time (see the module docstring)."""

    def __init__(self, blocks: list[SpikingBlock], readout: nn.Module, steps: int, input_shape: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.readout = readout
        self.steps = steps
        self.input_shape = tuple(int(d) for d in input_shape)  # one example at one step, e.g. (1, 28, 28)

    @property
    def steps(self) -> int:
        """Time steps ``T`` per example (a positive whole number; settable to run at another ``T``)."""
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        if not is_count(value):
            raise InputError(f"{type(self).__name__}.steps is the number of time steps T, a whole number >= 1; got {value!r}")
        self._steps = int(value)

    def is_static(self, x: Tensor) -> bool:
        """True for a static ``[B, *input_shape]`` input, False for a ``[T=steps, B, *input_shape]`` sequence;
        any other shape raises a ``ValueError`` that names both layouts (shape checks only: no device sync)."""
        return input_is_static(x, self.input_shape, self.steps, type(self).__name__)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, steps={self.steps}"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x``: image ``[B, *input_shape]`` (direct encoding) or spikes ``[T=steps, B, *input_shape]`` -> dict
        with ``logits`` ``[B, C]`` (see the module docstring for the rule)."""
        if isinstance(x, Tensor) and not x.is_floating_point():
            raise InputError(
                f"{type(self).__name__} takes floating-point input (images, or spikes as 0.0 / 1.0); got dtype {x.dtype}: "
                "convert with x.float() (and scale 8-bit pixels, / 255)"
            )
        if isinstance(x, Tensor) and not autocast_enabled(x):
            M.check_weight_dtype(self, x)
        if isinstance(x, Tensor) and reads_values(x) and x.numel() and not bool(torch.isfinite(x).all()):
            # a neuron compares v > v_threshold, which NaN never passes: the logits came from the readout's bias alone
            raise InputError(f"{type(self).__name__}: the input holds NaN or inf; no neuron would spike and the logits would be the readout's bias alone. Fix: clean the data (or its normalisation)")
        static = self.is_static(x)
        counts, sizes = [], []
        z = x
        for i, block in enumerate(self.blocks):
            z = block(z, steps=self.steps) if i == 0 and static else block(z)  # [T, B, ...]
            counts.append(z.sum())
            sizes.append(float(z.numel()))
        z = self.dropout(z)
        t, b = z.shape[:2]
        y = self.readout(z.flatten(0, 1))  # [T*B, C]
        logits = y.view(t, b, y.shape[-1]).mean(0)  # [B, C] (not view(t, b, -1): B = 0 leaves -1 undefined)
        return {"logits": logits, "spike_counts": torch.stack(counts), "neurons": torch.tensor(sizes, dtype=logits.dtype, device=logits.device)}


@MODELS.register("spiking_mlp", family="spiking", paper="surrogate-gradient SNN (Neftci et al. 2019)")
def spiking_mlp(input_shape: tuple[int, ...] = (1, 28, 28), hidden: tuple[int, ...] = (800, 800), num_classes: int = 10, steps: int = 8, neuron: str = "plif", tau_mem: float = 2e-3, dt: float = 1e-3, surrogate: str = "atan", detach_reset: bool = True, batch_norm: bool = True, dropout: float = 0.0, backend: str = "auto", surrogate_alpha: float | None = None) -> SpikingNet:
    """Spiking MLP: ``Flatten -> [Linear -> BN -> LIF] x len(hidden) -> Linear readout`` (mean over ``steps``).

    >>> net = spiking_mlp(hidden=(16,), steps=2)
    >>> net(torch.rand(3, 1, 28, 28))["logits"].shape
    torch.Size([3, 10])
    """
    blocks, width = [], math.prod(input_shape)
    for h in hidden:
        synapse = nn.Sequential(nn.Flatten(), nn.Linear(width, h)) if not blocks else nn.Linear(width, h)
        blocks.append(SpikingBlock(synapse, _neuron(neuron, dt, tau_mem, surrogate, detach_reset, backend, surrogate_alpha), nn.BatchNorm1d(h) if batch_norm else None))
        width = h
    return SpikingNet(blocks, nn.Linear(width, num_classes), steps, tuple(input_shape), dropout)


@MODELS.register("spiking_cnn", family="spiking", paper="surrogate-gradient conv SNN (PLIF, Fang et al. 2021, style)")
def spiking_cnn(in_channels: int = 1, image_size: int = 28, channels: tuple[int, ...] = (32, 64), kernel_size: int = 5, hidden: int = 256, num_classes: int = 10, steps: int = 4, neuron: str = "plif", tau_mem: float = 2e-3, dt: float = 1e-3, surrogate: str = "atan", detach_reset: bool = True, dropout: float = 0.25, backend: str = "auto", surrogate_alpha: float | None = None) -> SpikingNet:
    """Spiking conv net: ``[Conv k x k -> AvgPool 2 -> BN -> LIF] x len(channels) -> Linear(hidden) -> BN ->
    LIF -> Dropout -> Linear readout``, averaged over ``steps``. With the defaults it mirrors the
    foundation's ``small_cnn`` layer for layer (the ANN it is compared with).

    >>> net = spiking_cnn(channels=(4, 8), hidden=16, steps=2)
    >>> out = net(torch.rand(3, 1, 28, 28))
    >>> out["logits"].shape, out["spike_counts"].shape
    (torch.Size([3, 10]), torch.Size([3]))
    """
    if isinstance(image_size, int) and not isinstance(image_size, bool) and isinstance(channels, (list, tuple)) and image_size < 2 ** len(channels):
        # each block halves the side: fewer pixels than that failed at the first forward ("Output size is too small")
        raise ValueError(f"spiking_cnn: image_size={image_size} is too small for {len(channels)} pooling blocks (each halves the side); give image_size >= {2 ** len(channels)} or fewer channels")
    blocks, c_in, side = [], in_channels, image_size
    for c in channels:
        conv = nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2, bias=False)  # BN holds the bias
        blocks.append(SpikingBlock(conv, _neuron(neuron, dt, tau_mem, surrogate, detach_reset, backend, surrogate_alpha), nn.BatchNorm2d(c), nn.AvgPool2d(2)))
        c_in, side = c, side // 2
    blocks.append(SpikingBlock(nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden, bias=False)), _neuron(neuron, dt, tau_mem, surrogate, detach_reset, backend, surrogate_alpha), nn.BatchNorm1d(hidden)))
    return SpikingNet(blocks, nn.Linear(hidden, num_classes), steps, (in_channels, image_size, image_size), dropout)


@OBJECTIVES.register("spiking_cross_entropy", family="spiking")
class SpikingCrossEntropy(CrossEntropy):
    """Cross-entropy on the time-averaged readout plus an optional firing-rate regulariser
    ``rate_weight * (mean firing rate over all hidden neurons and steps)``.

    Args:
        rate_weight: weight of the firing-rate term (0 turns it off).
    """

    def __init__(self, target_key: str = "label", reduction: str = "mean", label_smoothing: float = 0.0, rate_weight: float = 0.0):
        super().__init__(target_key, reduction, label_smoothing)
        self.rate_weight = rate_weight

    def forward(self, output: Any, batch: dict[str, Tensor]) -> Tensor:
        loss = super().forward(output, batch)
        if self.rate_weight:
            rate = output["spike_counts"].sum() / output["neurons"].sum()
            loss = loss + self.rate_weight * rate
        return loss


def fold_batchnorm(block: SpikingBlock) -> SpikingBlock:
    """A copy of ``block`` with its (eval-mode) batch norm folded into the synapse's weight and bias.

    BN after pooling is folded into the conv too: average pooling is linear, so scaling channels before or
    after it is the same. The input block is not modified.
    """
    import copy

    if block.norm is None:
        return copy.deepcopy(block)
    bn = block.norm
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{type(bn).__name__} without running statistics (track_running_stats=False) normalises every batch by its own "
            "statistics, which no fixed synapse can do: it cannot be folded. Train with track_running_stats=True"
        )
    new = copy.deepcopy(block)
    syn = new.synapse[-1] if isinstance(new.synapse, nn.Sequential) else new.synapse
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)  # affine=False: 1 and 0
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)  # [C]
    shift = beta - bn.running_mean * scale
    with torch.no_grad():
        shape = (-1,) + (1,) * (syn.weight.dim() - 1)
        syn.weight.mul_(scale.view(shape))
        bias = syn.bias.detach() * scale + shift if syn.bias is not None else shift
        syn.bias = nn.Parameter(bias.clone())
    new.norm = None
    return new
