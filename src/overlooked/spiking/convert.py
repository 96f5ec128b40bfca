"""ANN-to-SNN conversion of ReLU / average-pooling / Linear / Conv2d networks (rate coding).

The route of Cao et al. 2015, Diehl et al. 2015 and Rueckauer et al. 2017:

1. The ANN's layers are read in forward order (``nn.Sequential`` children, recursively) and grouped into
   *stages*: ``[pre ops] -> synapse (Conv2d / Linear, bias kept) -> ReLU``. Pre ops are average pooling
   and Flatten (both linear, so they act on the incoming spikes); Dropout is removed (it is the identity at
   inference). The last synapse, with no ReLU after it, is the *readout*. Anything else (max pooling,
   batch norm, other activations) is refused with an error that says what to change.
2. **Layer-wise normalisation from activation statistics** (Diehl 2015 "data-based", Rueckauer 2017
   §2.2.2): on calibration images from the *training* split, ``lambda_l`` is the maximum ("max") or the
   99.9th percentile ("p99.9", of the positive activations: silent ReLUs are left out) of stage ``l``'s ReLU
   output. Weights become ``W_l lambda_{l-1} / lambda_l`` and biases ``b_l / lambda_l`` (``lambda_0 = 1``:
   the image is the input current as it is), so the normalised activation ``a_l / lambda_l`` is a firing
   rate per step that the threshold 1 bounds: rates saturate at 1, so the SNN computes
   ``clip(a_l / lambda_l, 0, 1)``. The readout gets ``W_L lambda_{L-1}`` and its bias unchanged, so its
   time-averaged input equals the ANN's logits.
3. **IF neurons with reset by subtraction** (Rueckauer 2017, Eq. 2-3): ``v <- v + W s + b`` (the bias is a
   constant input current every step), a spike when ``v > 1``, then ``v <- v - 1``. Time is counted in
   steps (``dt = 1``, ``r = 1``, ``v_threshold = 1``); the membrane starts at 0 (``v_init``).
4. **Input**: direct (analog) current: the first synapse sees the real-valued image, its current is
   computed once and injected at every step. **Output**: the membrane potential of the readout, a
   non-spiking integrator (no threshold, no leak) that accumulates ``W s_t + b``; the prediction after
   ``t`` steps is the argmax of that accumulated membrane, and ``logits`` is it divided by ``T``.

The input network is never modified (it is deep-copied).

>>> ann = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> snn = convert(ann, torch.rand(64, 4), norm="max")
>>> snn(torch.rand(5, 4), steps=16)["logits"].shape
torch.Size([5, 3])
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from overlooked.checks import is_count
from overlooked.errors import OverlookedError
from overlooked.spiking import modules as M
from overlooked.spiking import neurons as N

Tensor = torch.Tensor
Norm = Literal["max", "p99.9"]
NORMS = ("max", "p99.9")
_PRE = (nn.AvgPool2d, nn.Flatten)
_DROP = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_SYNAPSE = (nn.Conv2d, nn.Linear)


def heaviside(x: Tensor) -> Tensor:
    """Spikes ``x > 0`` (conversion needs no surrogate gradient)."""
    return (x > 0).to(x.dtype)


def if_subtract_step_inplace(x: Tensor, v: Tensor, z: Tensor) -> None:
    """Fast path of :func:`overlooked.spiking.neurons.if_step` for the conversion's neuron only
    (``dt = r = v_threshold = 1``, ``v_reset = 0``, reset by subtraction), updating ``v`` and writing the
    spikes into ``z`` in place. Bit-identical to the reference: ``v + 1.0 x`` is ``v + x``, ``v - 1 > 0`` is
    ``v > 1`` in floating point, and ``v - 1.0 z`` is ``v - z`` (a test checks it)."""
    v.add_(x)
    torch.gt(v, 1.0, out=z)
    v.sub_(z)


BACKENDS = ("reference", "inplace")


class ConversionError(OverlookedError):
    """The network holds a layer that rate-coded IF neurons cannot reproduce."""


def leaf_layers(model: nn.Module) -> list[nn.Module]:
    """The network's layers in forward order: ``nn.Sequential`` children recursively, and, for any other
    container, its children in registration order (checked against ``model(x)`` by :func:`convert`)."""
    children = list(model.children())
    if not children:
        return [model]
    return [leaf for child in children for leaf in leaf_layers(child)]


class Stage(nn.Module):
    """One converted layer: linear ``pre`` ops on the incoming spikes, then the (normalised) synapse.

    ``spiking`` stages feed IF neurons; the last stage is the readout integrator.
    """

    def __init__(self, pre: list[nn.Module], synapse: nn.Module, spiking: bool, scale: float):
        super().__init__()
        self.pre = nn.Sequential(*pre)
        self.synapse = synapse
        self.spiking = spiking
        self.scale = scale  # lambda_l used for this stage's normalisation (1 for the readout)

    def current(self, x: Tensor) -> Tensor:
        """Input current ``[B, ...]`` for spikes (or, in the first stage, the image) ``x``."""
        return self.synapse(self.pre(x))


@dataclass
class Simulation:
    """What one simulation pass recorded.

    Attributes:
        readout: accumulated readout membrane after every step ``[T, B, C]``.
        spikes: per spiking stage, the spike count summed over the batch at every step, ``[T]`` each.
        position_counts: ``{t: [per spiking stage, spikes per neuron summed over the batch and the first t
            steps, [C, H, W] or [F]]}`` for each ``t`` in ``snapshots`` and the last step (for exact
            synaptic-operation counts, whose fan-out depends on the position at conv borders).
        rates: per spiking stage, each neuron's firing rate per sample ``[B, ...]`` over the ``T`` steps.
    """

    readout: Tensor
    spikes: list[Tensor]
    position_counts: dict[int, list[Tensor]]
    rates: list[Tensor]


class ConvertedSNN(nn.Module):
    """IF network produced by :func:`convert` (see the module docstring for the conventions).

    Args:
        stages: the converted stages; all but the last are spiking.
        steps: default number of simulation steps.
        v_init: initial membrane potential of every IF neuron (0 in Diehl 2015 and Rueckauer 2017).
    """

    def __init__(self, stages: list[Stage], steps: int = 64, v_init: float = 0.0, norm: str = "max", backend: str = "reference"):
        super().__init__()
        if backend not in BACKENDS:
            raise ConversionError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.fast_steps = 0  # sentinel: neuron-steps taken by the in-place path
        self.stages = nn.ModuleList(stages)
        self.steps = steps
        self.v_init = v_init
        self.norm = norm
        self.neuron = N.IFParameters(r=1.0, v_threshold=1.0, v_reset=0.0, reset="subtract")
        self.dt = 1.0  # time in steps
        self.spike_fn = heaviside

    def _steps(self, steps: int | None) -> int:
        """``steps``, or the network's default when None; a whole number >= 1."""
        steps = self.steps if steps is None else steps
        if not is_count(steps):
            raise ValueError(f"steps must be a whole number >= 1 (time steps to simulate), got {steps!r}")
        return int(steps)

    @torch.no_grad()
    def simulate(self, x: Tensor, steps: int | None = None, snapshots: tuple[int, ...] = ()) -> Simulation:
        """Run ``steps`` steps on a static image batch ``x`` ``[B, ...]`` (direct input current)."""
        steps = self._steps(steps)
        M.check_input_dtype(self, x)
        marks = {t for t in snapshots if t <= steps} | {steps}
        snaps: dict[int, list[Tensor]] = {}
        first = self.stages[0].current(x)  # [B, ...], computed once: the input does not change
        states: list[N.VState | None] = [None] * (len(self.stages) - 1)
        counts: list[Tensor | None] = [None] * (len(self.stages) - 1)
        per_step = [torch.zeros(steps) for _ in states]
        membrane = None
        readout = []
        for t in range(steps):
            s = None
            for i, stage in enumerate(self.stages):
                cur = first if i == 0 else stage.current(s)  # [B, ...]
                if not stage.spiking:
                    membrane = cur if membrane is None else membrane + cur  # [B, C]
                    readout.append(membrane)
                    break
                if states[i] is None:
                    states[i] = N.VState(torch.full_like(cur, self.v_init))
                    counts[i] = torch.zeros_like(cur)
                if self.backend == "inplace":
                    s = torch.empty_like(cur)
                    if_subtract_step_inplace(cur, states[i].v, s)
                    self.fast_steps += 1
                else:
                    s, states[i] = N.if_step(cur, states[i], self.neuron, self.dt, self.spike_fn)
                counts[i].add_(s)  # [B, ...]
                per_step[i][t] = s.sum()
            if t + 1 in marks:
                snaps[t + 1] = [c.sum(0) for c in counts]  # type: ignore[union-attr]
        return Simulation(
            readout=torch.stack(readout),  # [T, B, C]
            spikes=per_step,
            position_counts=snaps,
            rates=[c / steps for c in counts],
        )

    def forward(self, x: Tensor, steps: int | None = None) -> dict[str, Tensor]:
        """Image ``[B, ...]`` -> ``{"logits": readout membrane / T [B, C], "spike_counts": [L], "neurons": [L]}``."""
        steps = self._steps(steps)
        sim = self.simulate(x, steps)
        logits = sim.readout[-1] / steps
        neurons = [float(r.numel() * steps) for r in sim.rates]
        return {"logits": logits, "spike_counts": torch.stack([s.sum() for s in sim.spikes]), "neurons": torch.tensor(neurons)}

    @torch.no_grad()
    def accuracy_curve(self, x: Tensor, labels: Tensor, steps: int | None = None, snapshots: tuple[int, ...] = ()) -> tuple[Tensor, Simulation]:
        """Correct predictions after each step ``[T]`` (argmax of the accumulated readout) in one pass."""
        sim = self.simulate(x, steps, snapshots)
        correct = (sim.readout.argmax(-1) == labels.unsqueeze(0)).sum(1)  # [T]
        return correct, sim


def _hint(layer: nn.Module) -> str:
    if isinstance(layer, nn.MaxPool2d):
        return "use average pooling (a max of spikes is not a sum of spikes)"
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return "fold batch norm into the preceding layer first"
    return "conversion supports Conv2d, Linear, ReLU, AvgPool2d, Flatten and Dropout, and only the last synapse may lack a ReLU"


def _stages(layers: list[nn.Module]) -> list[tuple[list[nn.Module], nn.Module, bool]]:
    """Group layers into ``(pre ops, synapse, followed by ReLU)``; refuse what conversion cannot express."""
    out, pre, i = [], [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, _DROP):
            i += 1
            continue
        if isinstance(layer, _PRE):
            if isinstance(layer, nn.AvgPool2d) and (layer.padding != 0 or layer.ceil_mode):
                raise ConversionError("AvgPool2d with padding or ceil_mode is not supported; use plain average pooling")
            pre.append(layer)
            i += 1
            continue
        if isinstance(layer, _SYNAPSE):
            j = i + 1
            while j < len(layers) and isinstance(layers[j], _DROP):
                j += 1
            relu = j < len(layers) and isinstance(layers[j], nn.ReLU)
            out.append((pre, layer, relu))
            pre, i = [], (j + 1 if relu else j)
            if not relu and i < len(layers):
                raise ConversionError(f"{type(layer).__name__} is followed by {type(layers[j]).__name__} (layer {j}), not ReLU: {_hint(layers[j])}")
            continue
        raise ConversionError(f"cannot convert layer {i} ({type(layer).__name__}): {_hint(layer)}")
    if not out or out[-1][2]:
        raise ConversionError("the network must end in a Conv2d/Linear readout without ReLU")
    if pre:
        raise ConversionError(f"layers after the readout ({[type(p).__name__ for p in pre]}) cannot be converted")
    return out


def _statistic(acts: Tensor, norm: str) -> float:
    """``max`` of the activations, or the 99.9th percentile of the positive ones."""
    if norm == "max":
        return float(acts.max())
    positive = acts[acts > 0]
    if positive.numel() == 0:
        return 1.0
    return float(np.percentile(positive.double().numpy(), 99.9))


@torch.no_grad()
def activation_scales(layers: list[nn.Module], grouped: list[tuple[list[nn.Module], nn.Module, bool]], calibration: Tensor, norm: str, batch_size: int = 500) -> list[float]:
    """``lambda_l`` of every spiking stage's ReLU output on the calibration images."""
    acts: list[list[Tensor]] = [[] for g in grouped if g[2]]
    for start in range(0, len(calibration), batch_size):
        h = calibration[start : start + batch_size]
        for k, (pre, syn, relu) in enumerate(grouped):
            h = torch.relu(syn(nn.Sequential(*pre)(h))) if relu else syn(nn.Sequential(*pre)(h))
            if relu:
                acts[k].append(h.flatten() if norm == "max" else h[h > 0])
    scales = []
    for a in acts:
        values = torch.cat(a)
        scale = _statistic(values, norm) if values.numel() else 1.0
        scales.append(scale if scale > 0 else 1.0)  # a dead layer: leave its weights as they are
    return scales


@torch.no_grad()
def normalised_activations(snn: ConvertedSNN, x: Tensor) -> list[Tensor]:
    """The ANN activations each spiking stage's firing rates should approach: ``clip(a_l / lambda_l, 0, 1)``,
    computed with the *converted* weights (which carry the normalisation) and rates, not spikes, as input."""
    out, h = [], x
    for stage in snn.stages:
        if not stage.spiking:
            break
        h = torch.clamp(stage.current(h), 0.0, 1.0)
        out.append(h)
    return out


def convert(model: nn.Module, calibration: Tensor, norm: Norm = "p99.9", steps: int = 64, v_init: float = 0.0, backend: str = "reference") -> ConvertedSNN:
    """Convert a ReLU/AvgPool/Linear/Conv2d network into an IF network (see the module docstring).

    Args:
        model: the trained ANN (left unchanged: a deep copy is converted).
        calibration: images from the training split ``[N, ...]`` for the activation statistics.
        norm: "max" or "p99.9" (99.9th percentile of the positive activations; Rueckauer 2017).
        steps: default simulation length of the returned network.
        v_init: initial membrane potential (in units of the threshold).
        backend: "reference" (the shared ``if_step``) or "inplace" (the bit-identical fast path).

    Returns:
        A :class:`ConvertedSNN`.
    """
    if norm not in NORMS:
        raise ConversionError(f"norm must be one of {NORMS}, got {norm!r}")
    ann = copy.deepcopy(model).eval()
    layers = leaf_layers(ann)
    try:
        grouped = _stages(layers)  # first: a layer conversion cannot express (e.g. a spiking neuron) is named, not run
    except ConversionError as exc:
        if isinstance(ann, nn.Sequential):
            raise
        raise ConversionError(
            f"{exc} (the layers were read from {type(model).__name__}'s registered children in order; if its forward "
            "applies functions such as torch.relu, pass an nn.Sequential of modules)"
        ) from None
    weight = next(ann.parameters(), None)
    if weight is not None and isinstance(calibration, Tensor) and calibration.is_floating_point() and calibration.dtype != weight.dtype:
        raise ConversionError(
            f"the calibration images are {str(calibration.dtype).removeprefix('torch.')} but {type(model).__name__}'s weights "
            f"{str(weight.dtype).removeprefix('torch.')}; cast one to the other (calibration.to({str(weight.dtype).removeprefix('torch.')}) "
            "or the model)"
        )
    with torch.no_grad():
        probe = calibration[:8]
        if not torch.allclose(nn.Sequential(*layers)(probe), ann(probe), atol=1e-5, rtol=1e-4):
            raise ConversionError(f"{type(model).__name__}'s layers, read in registration order, do not reproduce its forward; pass an nn.Sequential")
    scales = activation_scales(layers, grouped, calibration, norm)
    stages, previous, k = [], 1.0, 0
    for pre, syn, relu in grouped:
        scale = scales[k] if relu else 1.0
        with torch.no_grad():
            syn.weight.mul_(previous / scale)
            if syn.bias is not None:
                syn.bias.div_(scale)
        stages.append(Stage(pre, syn, spiking=relu, scale=scale))
        previous, k = scale, k + relu
    for p in ann.parameters():
        p.requires_grad_(False)
    return ConvertedSNN(stages, steps=steps, v_init=v_init, norm=norm, backend=backend)


def calibration_images(images: Tensor, n: int, seed: int = 0) -> Tensor:
    """A seeded random subset of ``n`` training images for the activation statistics."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:n]
    return images[idx.sort().values]


@torch.no_grad()
def evaluate_curve(snn: ConvertedSNN, images: Tensor, labels: Tensor, steps: int, batch_size: int = 500, snapshots: tuple[int, ...] = (), progress: Callable[[int, Tensor], None] | None = None) -> dict[str, Any]:
    """Accuracy after each of ``steps`` steps, in one simulation pass, plus per-layer spike statistics.

    Returns:
        ``{"accuracy": [T floats], "n": N, "spikes_per_step": [[T] per layer], "position_counts": {t: [...]}}``
        (spike counts summed over the images; see :class:`Simulation`).
    """
    correct = torch.zeros(steps, dtype=torch.long)
    spikes: list[Tensor] | None = None
    counts: dict[int, list[Tensor]] | None = None
    n = len(images)
    for start in range(0, n, batch_size):
        c, sim = snn.accuracy_curve(images[start : start + batch_size], labels[start : start + batch_size], steps, snapshots)
        correct += c
        spikes = sim.spikes if spikes is None else [a + b for a, b in zip(spikes, sim.spikes)]
        counts = sim.position_counts if counts is None else {t: [a + b for a, b in zip(counts[t], sim.position_counts[t])] for t in counts}
        if progress is not None:
            progress(min(start + batch_size, n), correct)
    return {"accuracy": (correct.double() / n).tolist(), "n": n, "spikes_per_step": spikes, "position_counts": counts}
