"""Synaptic operations, MACs, firing rates and the compute-only energy estimate of a spiking network.

Counting rules (one table per network, per example, averaged over the examples seen):

- **SOPs** (SynOps, Sorbaro et al. 2020): every spike costs one accumulate per synapse it reaches, so
  ``SOPs = sum over input positions of spikes(position) x fan-out(position)``. Fan-out is counted exactly
  from the layer's structure, with zero weights still counted: for a convolution, the number of output
  positions whose kernel touches the input position, times ``out_channels`` (so border positions reach
  fewer outputs than the centre); for a Linear layer, ``out_features``. Linear operations between the
  spikes and the synapse (average pooling, flatten) pass the spike on: a spike reaching a pooled position
  costs that position's fan-out (the 1/k^2 is folded into the weights).
- **MACs**: layers whose input is real-valued (the first layer under direct encoding) cost one
  multiply-accumulate per connection, once per example when the input is static (its current is computed
  once and repeated over the ``T`` steps). Connections to zero padding are not counted, for the ANN either.
- The readout receives spikes, so its synapses are counted as SOPs, like every layer fed with spikes.
- Not counted, in the SNN or the ANN: biases, batch norm (folded), pooling adds, and the membrane update
  of every neuron at every step (``neuron_updates`` reports how many there are).
- **The same architecture as a plain ANN** costs one MAC per connection of every layer.

Energy uses :data:`overlooked.spiking.energy.HOROWITZ_45NM`: ``E_SNN = E_MAC MACs + E_AC SOPs`` and
``E_ANN = E_MAC MACs``. **It is a compute-only estimate**: memory traffic, addressing and keeping state
resident are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overlooked.spiking.energy import HOROWITZ_45NM, ann_energy_pj, snn_energy_pj

Tensor = torch.Tensor
LABEL = "compute-only estimate (Horowitz 2014, 45 nm): E_SNN = E_MAC*MACs + E_AC*SOPs, E_ANN = E_MAC*MACs; memory traffic, addressing and state are left out"


def as_pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """A pooling layer's ``kernel_size``, ``stride`` or ``padding`` (an int, or a tuple or list of two, as
    ``nn.AvgPool2d`` keeps what it was given) as a pair.

    >>> as_pair(2), as_pair([2, 3])
    ((2, 2), (2, 3))
    """
    return (value[0], value[1]) if isinstance(value, tuple | list) else (value, value)


def _structural(module: nn.Module, x: Tensor) -> Tensor:
    """``module`` with every weight set to 1 and no bias; average pooling becomes sum pooling. Only the weights'
    shape is read, so the layer may sit on any device (a GPU run's): the ones are made where ``x`` is."""
    if isinstance(module, nn.Conv2d):
        ones = torch.ones(module.weight.shape, dtype=x.dtype, device=x.device)
        return F.conv2d(x, ones, None, module.stride, module.padding, module.dilation, module.groups)
    if isinstance(module, nn.Linear):
        return F.linear(x, torch.ones(module.weight.shape, dtype=x.dtype, device=x.device))
    if isinstance(module, nn.AvgPool2d):
        k = as_pair(module.kernel_size)
        return F.avg_pool2d(x, module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=True) * (k[0] * k[1])
    if isinstance(module, (nn.Flatten, nn.Identity, nn.Dropout)):
        return module(x)
    if isinstance(module, nn.Sequential):
        for m in module:
            x = _structural(m, x)
        return x
    raise TypeError(f"cannot count the connections of {type(module).__name__}")


def fanout(modules: list[nn.Module] | nn.Module, in_shape: tuple[int, ...]) -> Tensor:
    """Number of synapses each input position reaches through ``modules`` ``[*in_shape]`` (exact at borders).

    It is ``J^T 1`` for the all-ones version ``J`` of the (linear) layers, computed by autograd.

    >>> fanout(nn.Conv2d(1, 2, 3, padding=1), (1, 3, 3))[0]  # corner 4 x 2, edge 6 x 2, centre 9 x 2
    tensor([[ 8., 12.,  8.],
            [12., 18., 12.],
            [ 8., 12.,  8.]])
    """
    seq = nn.Sequential(*modules) if isinstance(modules, list) else modules
    x = torch.zeros(1, *in_shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = _structural(seq, x)
        (grad,) = torch.autograd.grad(y.sum(), x)
    return grad[0].float()


def connections(modules: list[nn.Module] | nn.Module, in_shape: tuple[int, ...]) -> int:
    """Total synapses (= MACs for one dense real-valued input) of the layers at input shape ``in_shape``."""
    if isinstance(modules, nn.Linear) and in_shape and in_shape[-1] == modules.in_features:
        return math.prod(in_shape) * modules.out_features  # every input reaches every output: no autograd over an all-ones copy
    return int(round(float(fanout(modules, in_shape).double().sum())))


def synops(counts: Tensor, fan: Tensor) -> float:
    """``sum(counts x fan)``: spikes per input position (summed over time and batch) times their fan-out (on the
    CPU, where :func:`fanout` is; the counts of a GPU run are copied there)."""
    return float((counts.detach().double().cpu() * fan.double().cpu()).sum())


@dataclass
class LayerOps:
    """One synaptic layer's operation counts, summed over ``examples`` examples and ``steps`` steps."""

    name: str
    input: str  # "real" (MACs) or "spikes" (SOPs)
    macs: float
    sops: float
    ann_macs: float  # the same layer in the plain ANN, per example
    neurons: int  # spiking neurons after this layer (0 for the readout)
    spikes: float  # spikes those neurons emitted


def summarise(layers: list[LayerOps], examples: int, steps: int, precision: str = "fp32") -> dict[str, Any]:
    """Per-example table (firing rates, SOPs, MACs) and the energy estimate of the SNN and the ANN."""
    table = HOROWITZ_45NM[precision]
    rows = []
    for layer in layers:
        rows.append(
            {
                "layer": layer.name,
                "input": layer.input,
                "macs": layer.macs / examples,
                "sops": layer.sops / examples,
                "ann_macs": layer.ann_macs,
                "neurons": layer.neurons,
                "spikes": layer.spikes / examples,
                "firing_rate": (layer.spikes / (examples * steps * layer.neurons)) if layer.neurons else None,
            }
        )
    macs, sops, ann_macs = (sum(r[k] for r in rows) for k in ("macs", "sops", "ann_macs"))
    neurons = sum(r["neurons"] for r in rows)
    e_snn, e_ann = snn_energy_pj(macs, sops, precision), ann_energy_pj(ann_macs, precision)
    return {
        "label": LABEL,
        "precision": precision,
        "e_mac_pj": table.mac_pj,
        "e_ac_pj": table.ac_pj,
        "source": table.source,
        "steps": steps,
        "examples": examples,
        "layers": rows,
        "totals": {
            "macs": macs,
            "sops": sops,
            "ann_macs": ann_macs,
            "spikes": sum(r["spikes"] for r in rows),
            "mean_firing_rate": (sum(r["spikes"] for r in rows) / (steps * neurons)) if neurons else None,
            "neuron_updates": neurons * steps,
            "snn_energy_pj": e_snn,
            "ann_energy_pj": e_ann,
            "snn_over_ann": e_snn / e_ann if e_ann else None,
        },
    }


# ---- the converted network (overlooked.spiking.convert) ------------------------------------------------


def converted_layers(snn: Any, in_shape: tuple[int, ...], position_counts: list[Tensor], spikes: list[float]) -> list[LayerOps]:
    """Operation counts of a :class:`~overlooked.spiking.convert.ConvertedSNN` from recorded spike counts.

    Args:
        snn: the converted network.
        in_shape: one input image's shape, e.g. ``(1, 28, 28)``.
        position_counts: per spiking stage, spikes per neuron summed over examples and steps.
        spikes: per spiking stage, total spikes (the same sums).
    """
    layers, shape, counts = [], tuple(in_shape), None
    for k, stage in enumerate(snn.stages):
        seq = [*stage.pre, stage.synapse]
        dtype = stage.synapse.weight.dtype  # shapes only, but in the network's dtype (a float64 one too)
        with torch.no_grad():
            pre_shape = tuple(stage.pre(torch.zeros(1, *shape, dtype=dtype)).shape[1:])
            out_shape = tuple(stage.synapse(torch.zeros(1, *pre_shape, dtype=dtype)).shape[1:])
        ann = connections(stage.synapse, pre_shape)
        if k == 0:  # direct encoding: real-valued static input, current computed once per example
            macs, sops, kind = float(connections(seq, shape)), 0.0, "real"
        else:
            macs, sops, kind = 0.0, synops(counts, fanout(seq, shape)), "spikes"
        name = f"{k}: {type(stage.synapse).__name__}" + ("" if stage.spiking else " (readout)")
        neurons = int(torch.Size(out_shape).numel()) if stage.spiking else 0
        layers.append(LayerOps(name, kind, macs, sops, ann, neurons, float(spikes[k]) if stage.spiking else 0.0))
        if stage.spiking:
            counts = position_counts[k]
        shape = out_shape
    return layers


def _scale_macs(layers: list[LayerOps], examples: int) -> list[LayerOps]:
    """Real-input MACs above are per example; make them totals like the spike sums."""
    for layer in layers:
        layer.macs *= examples
    return layers


# ---- the surrogate-trained SpikingNet (overlooked.spiking.models) --------------------------------------


def _spikingnet_counts(model: nn.Module, batches: Iterable[Tensor]) -> tuple[list[LayerOps], int, int]:
    """Run ``model`` (a ``SpikingNet``) over the batches with hooks on its blocks and readout."""
    blocks = list(model.blocks)
    rec: dict[int, dict[str, Any]] = {i: {"in_counts": None, "out_counts": None, "spikes": 0.0} for i in range(len(blocks))}
    meta: dict[str, Any] = {"examples": 0, "steps": None}
    hooks = []

    def pre_hook(i: int):
        def fn(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0]
            static = kwargs.get("steps") is not None or (len(args) > 1 and args[1] is not None)
            rec[i]["static"] = static
            rec[i]["in_shape"] = tuple(x.shape[1:]) if static else tuple(x.shape[2:])
            if not static and i == 0:
                c = x.detach().sum((0, 1))
                rec[i]["in_counts"] = c if rec[i]["in_counts"] is None else rec[i]["in_counts"] + c
                # spikes, or event counts per time bin, are whole numbers >= 0: each event is a synaptic operation.
                # Any other value (a real-valued sequence) drives every synapse at every step: multiply-accumulates.
                events = bool(((x >= 0) & (x == torch.round(x))).all())
                rec[i]["events"] = rec[i].get("events", True) and events

        return fn

    def post_hook(i: int):
        def fn(module: nn.Module, args: tuple, kwargs: dict, z: Tensor) -> None:
            c = z.detach().sum((0, 1))  # [...] spikes per neuron over time and batch
            rec[i]["out_counts"] = c if rec[i]["out_counts"] is None else rec[i]["out_counts"] + c
            rec[i]["spikes"] += float(c.sum())
            rec[i]["out_shape"] = tuple(z.shape[2:])
            meta["steps"] = z.shape[0]
            if i == 0:
                meta["examples"] += z.shape[1]

        return fn

    for i, block in enumerate(blocks):
        hooks.append(block.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        hooks.append(block.register_forward_hook(post_hook(i), with_kwargs=True))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    steps, examples = int(meta["steps"]), int(meta["examples"])
    layers = []
    for i, block in enumerate(blocks):
        r = rec[i]
        ann = connections(block.synapse, r["in_shape"])
        neurons = int(torch.Size(r["out_shape"]).numel())
        if i == 0 and r["static"]:
            layers.append(LayerOps(f"{i}: block", "real", float(ann) * examples, 0.0, ann, neurons, r["spikes"]))
        elif i == 0 and not r.get("events", True):  # a real-valued input sequence: dense at every step
            layers.append(LayerOps(f"{i}: block", "real", float(ann) * examples * steps, 0.0, ann, neurons, r["spikes"]))
        else:
            counts = r["in_counts"] if i == 0 else rec[i - 1]["out_counts"]
            layers.append(LayerOps(f"{i}: block", "spikes", 0.0, synops(counts, fanout(block.synapse, r["in_shape"])), ann, neurons, r["spikes"]))
    last = rec[len(blocks) - 1]
    ann = connections(model.readout, last["out_shape"])
    layers.append(LayerOps("readout", "spikes", 0.0, synops(last["out_counts"], fanout(model.readout, last["out_shape"])), ann, 0, 0.0))
    return layers, examples, steps


def _batches(batch_or_loader: Any, input_key: str) -> Iterable[Tensor]:
    if isinstance(batch_or_loader, Tensor):
        yield batch_or_loader
        return
    if isinstance(batch_or_loader, dict):
        yield batch_or_loader[input_key]
        return
    for batch in batch_or_loader:
        if isinstance(batch, dict):
            yield batch[input_key]
        elif isinstance(batch, (tuple, list)):
            yield batch[0]
        else:
            yield batch


def energy_report(model: nn.Module, batch_or_loader: Any, *, steps: int | None = None, precision: str = "fp32", input_key: str = "image") -> dict[str, Any]:
    """Per-layer firing rates, SOPs, MACs and the estimated energy of the SNN and of the same ANN.

    Args:
        model: a ``SpikingNet`` (from :mod:`overlooked.spiking.models`) or a ``ConvertedSNN``.
        batch_or_loader: an input tensor, a batch dict, or an iterable of them (or of ``(x, y)`` pairs).
        steps: simulation steps for a ``ConvertedSNN`` (default its own); a ``SpikingNet`` uses its own.
        precision: "fp32", "fp16" or "int8" row of the 45 nm table.
        input_key: batch key of the input when batches are dicts.

    Returns:
        :func:`summarise`'s dict: per-example rows and totals, labelled a compute-only estimate.
    """
    from overlooked.spiking.convert import ConvertedSNN

    if isinstance(model, ConvertedSNN):
        steps = model._steps(steps)
        n, counts, spikes, in_shape = 0, None, None, None
        for x in _batches(batch_or_loader, input_key):
            sim = model.simulate(x, steps)
            c = sim.position_counts[steps]
            s = [float(r.sum() * steps) for r in sim.rates]
            counts = c if counts is None else [a + b for a, b in zip(counts, c)]
            spikes = s if spikes is None else [a + b for a, b in zip(spikes, s)]
            n, in_shape = n + x.shape[0], tuple(x.shape[1:])
        return summarise(_scale_macs(converted_layers(model, in_shape, counts, spikes), n), n, steps, precision)
    if hasattr(model, "blocks") and hasattr(model, "readout"):
        layers, n, steps = _spikingnet_counts(model, _batches(batch_or_loader, input_key))
        return summarise(layers, n, steps, precision)
    raise TypeError(f"energy_report takes a SpikingNet or a ConvertedSNN, got {type(model).__name__}")
