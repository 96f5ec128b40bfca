"""Event-driven inference for feed-forward IF/LIF networks: work only for the synapses of neurons that spiked.

A network is a list of modules in which every synapse (``nn.Linear``, ``nn.Conv2d``, or ``nn.AvgPool2d``
taken as the linear map it is) is followed by a neuron (``IFCell``/``LIFCell``/``PLIFCell`` or the
``IF``/``LIF``/``PLIF`` sequence module); ``nn.Flatten`` may sit anywhere. :meth:`EventNetwork.from_model`
lays out a trained ``SpikingNet`` (``spiking_mlp``, ``spiking_cnn``) the same way, with what those models add:
batch norm folded into the synapse, average pooling of the synaptic currents before the neuron, a
real-valued first layer under direct encoding (computed once, densely, as the model does) and the
non-spiking readout averaged over the steps (the logits); and a ``ConvertedSNN`` (``overlooked convert``),
whose pooling of spikes it folds into the next synapse. Time is clock-stepped at the cells' ``dt`` as in
the reference (forward Euler; leak is applied to every neuron every step), but synaptic input is event
driven: at each step the spikes of the previous layer are listed and each spike's outgoing weights (a
weight row for a linear layer, a kernel slice per valid offset for a convolution) are scattered into the
targets' currents. The count of those scattered weights is the exact number of synaptic updates, and
equals the sum over spikes of each neuron's fan-out (:func:`overlooked.spiking.synops.fanout`).

:func:`run_clock` is the dense clock-driven simulation of the same network (each synapse as its dense
PyTorch op). With float64 state and dyadic weights both sum exactly, so their spike times are identical.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overlooked.checks import is_count
from overlooked.spiking import modules as M
from overlooked.spiking.synops import as_pair, connections

Tensor = torch.Tensor
SYNAPSES = (nn.Linear, nn.Conv2d, nn.AvgPool2d)
SEQUENCES = (M.IF, M.LIF, M.PLIF)  # sequence modules whose cell steps one time step
NEURONS = (M.IFCell, M.LIFCell, *SEQUENCES)  # PLIFCell is a LIFCell (the same step, tau from its learned w)


@dataclass
class EventResult:
    """Outputs of :func:`run_events`.

    Attributes:
        spikes: per neuron layer, spikes ``[T, B, ...]``.
        synaptic_updates: weights scattered (one per spike per target), summed over layers, steps, batch.
        dense_updates: what the dense path multiplies-and-adds for the same synapses (all inputs, all steps; a
            direct-encoded first layer's ``macs`` included, the same on either path).
        per_layer: ``(synaptic_updates, dense_updates)`` per synapse layer (the readout last, for a model).
        macs: multiply-accumulates of a real-valued first layer (a model under direct encoding): its
            connections, once per example, as the input does not change over the steps; 0 otherwise.
        logits: a model's readout averaged over the steps ``[B, C]`` (None for a plain layer list).
    """

    spikes: list[Tensor]
    synaptic_updates: int = 0
    dense_updates: int = 0
    per_layer: list[tuple[int, int]] = field(default_factory=list)
    macs: int = 0
    logits: Tensor | None = None


def _stages(layers: list[nn.Module]) -> list[tuple[list[nn.Module], nn.Module, nn.Module]]:
    """Group ``layers`` into ``(reshapes before the synapse, synapse, neuron cell)``; Flatten only reshapes."""
    stages, pending, synapse = [], [], None
    for layer in layers:
        if isinstance(layer, nn.Flatten):
            if not _plain_flatten(layer):
                raise ValueError("event simulation supports nn.Flatten() with start_dim=1, end_dim=-1 only")
            pending.append(layer)
        elif isinstance(layer, SYNAPSES):
            if synapse is not None:
                raise ValueError(f"{type(synapse).__name__} must be followed by an IF/LIF neuron before {type(layer).__name__}")
            synapse = layer
        elif isinstance(layer, (M.RecurrentLIFCell, M.RecurrentLIF)):  # a LIFCell subclass: refused before NEURONS matches it
            raise ValueError(
                f"event simulation runs feed-forward layers; {type(layer).__name__}'s recurrent weights would run dense inside the cell "
                "and go uncounted in synaptic_updates. Simulate a recurrent network clock-driven, with the modules themselves (RecurrentLIF over [T, B, N])"
            )
        elif isinstance(layer, NEURONS):
            if synapse is None:
                raise ValueError(f"neuron {type(layer).__name__} has no synapse before it")
            stages.append((pending, synapse, layer.cell if isinstance(layer, SEQUENCES) else layer))
            pending, synapse = [], None
        else:
            raise ValueError(f"event simulation supports {[c.__name__ for c in (*SYNAPSES, nn.Flatten, *NEURONS)]}, got {type(layer).__name__}")
    if synapse is not None or pending:
        raise ValueError("the network must end with a neuron layer")
    return stages


def _conv_geometry(syn: nn.Module, in_channels: int) -> tuple[Tensor, int, int, int, int]:
    """``(weight [O, C/groups, K, K], stride, padding, groups, K)`` of a Conv2d or an AvgPool2d as a depthwise conv."""
    if isinstance(syn, nn.Conv2d):
        if syn.dilation != (1, 1) or syn.padding_mode != "zeros" or isinstance(syn.padding, str):
            raise ValueError("event Conv2d needs dilation 1, zero padding given as numbers")
        (k, k2), (s, s2), (p, p2) = syn.kernel_size, syn.stride, syn.padding
        if k != k2 or s != s2 or p != p2:
            raise ValueError("event Conv2d needs square kernels, strides and paddings")
        return syn.weight, s, p, syn.groups, k
    (k, k2), (s, s2) = as_pair(syn.kernel_size), as_pair(syn.stride)
    if syn.padding not in (0, (0, 0)) or syn.ceil_mode or syn.divisor_override is not None:
        raise ValueError("event AvgPool2d needs padding 0, ceil_mode False, no divisor_override")
    if k != k2 or s != s2:
        raise ValueError(f"event AvgPool2d needs a square kernel and stride, got kernel_size={syn.kernel_size} stride={syn.stride}")
    return torch.full((in_channels, 1, k, k), 1.0 / (k * k)), s, 0, in_channels, k


def _out_side(side: int, k: int, s: int, p: int) -> int:
    return (side + 2 * p - k) // s + 1


def _scatter_linear(syn: nn.Linear, s: Tensor, weight_rows: Tensor) -> tuple[Tensor, int]:
    """``s`` ``[B, n_in]`` binary -> current ``[B, n_out]``; ``weight_rows`` is ``W^T`` ``[n_in, n_out]``."""
    b_idx, i_idx = s.nonzero(as_tuple=True)  # [S], [S]: one entry per spike
    current = (syn.bias.to(weight_rows.dtype) if syn.bias is not None else weight_rows.new_zeros(())).expand(s.shape[0], syn.out_features).clone()
    current.index_add_(0, b_idx, weight_rows[i_idx])  # each spike adds its weight row to its sample's targets
    return current, int(i_idx.numel()) * syn.out_features


def _scatter_conv(syn: nn.Module, s: Tensor, rows: Tensor, geometry: tuple[int, int, int, int]) -> tuple[Tensor, int]:
    """``s`` ``[B, C, H, W]`` binary -> current ``[B, O, H', W']``. ``rows`` ``[G, C/G, K, K, O/G]``."""
    stride, pad, groups, k = geometry
    bsz, c, h, w = s.shape
    ho, wo = _out_side(h, k, stride, pad), _out_side(w, k, stride, pad)
    per_group, cg = rows.shape[-1], c // groups
    b, ch, y, x = s.nonzero(as_tuple=True)  # [S] each
    g, cl = ch // cg, ch % cg
    current = rows.new_zeros(bsz * ho * wo * groups, per_group)  # targets as (b, y', x', g) rows of O/G channels
    updates = 0
    for ky in range(k):  # one pass per kernel offset: the spikes whose target lands inside the output
        ty = y + pad - ky
        oky = (ty >= 0) & (ty % stride == 0) & (ty // stride < ho)
        for kx in range(k):
            tx = x + pad - kx
            ok = oky & (tx >= 0) & (tx % stride == 0) & (tx // stride < wo)
            if not bool(ok.any()):
                continue
            target = ((b[ok] * ho + ty[ok] // stride) * wo + tx[ok] // stride) * groups + g[ok]  # [S_ok]
            current.index_add_(0, target, rows[g[ok], cl[ok], ky, kx])  # [S_ok, O/G]
            updates += int(ok.sum()) * per_group
    current = current.view(bsz, ho, wo, groups * per_group).permute(0, 3, 1, 2)  # [B, O, H', W']
    if getattr(syn, "bias", None) is not None:
        current = current + syn.bias.to(current.dtype)[None, :, None, None]
    return current.contiguous(), updates


def _prepare(syn: nn.Module, in_shape: tuple[int, ...], dtype: torch.dtype):
    """Weights laid out so that one spike reads one contiguous row per target group."""
    if isinstance(syn, nn.Linear):
        return syn.weight.detach().to(dtype).t().contiguous(), None  # [n_in, n_out]
    weight, stride, pad, groups, k = _conv_geometry(syn, in_shape[0])
    o, cg = weight.shape[0], weight.shape[1]
    rows = weight.detach().to(dtype).reshape(groups, o // groups, cg, k, k).permute(0, 2, 3, 4, 1).contiguous()  # [G, C/G, K, K, O/G]
    return rows, (stride, pad, groups, k)


class EventNetwork:
    """A feed-forward network laid out for event-driven simulation (weights rearranged once, per dtype,
    so that one spike reads one contiguous row per target group).

    Args:
        layers: synapse, [Flatten], neuron, synapse, ... (see the module docstring).
    """

    def __init__(self, layers: list[nn.Module]):
        self.stages: list[tuple[list[nn.Module], nn.Module, nn.Module | None, nn.Module]] = [(r, s, None, c) for r, s, c in _stages(layers)]
        self.readout: nn.Linear | None = None  # a model's non-spiking readout
        self.steps: int | None = None  # a model's steps (direct encoding runs this many)
        self.input_shape: tuple[int, ...] | None = None  # a model's input, one example at one step
        self.readout_pre: list[nn.Module] = []  # what the readout's spikes pass through first (Flatten, ...)
        self.images_only = False  # a converted network: static images only
        self._dense_of: dict[int, tuple[list[nn.Module], nn.Module]] = {}  # stage -> the network's own (pre ops, synapse) where pooling was folded
        self._rows: dict[tuple[int, torch.dtype], tuple[Tensor, tuple[int, int, int, int] | None]] = {}
        self._dense_count: dict[tuple[int, tuple[int, ...], tuple[int, ...]], int] = {}  # _dense's counts: the shapes fix them

    @classmethod
    def from_model(cls, net: nn.Module) -> EventNetwork:
        """A trained ``SpikingNet`` (:mod:`overlooked.spiking.models`) laid out for event-driven inference (a
        ``ConvertedSNN`` too: see :meth:`_from_converted`).

        Each block's batch norm is folded into its synapse with the running statistics
        (:func:`~overlooked.spiking.models.fold_batchnorm`, as in eval mode); a block's average pooling is
        applied to the scattered currents before its neuron (pooling adds are not synaptic updates, as in
        :mod:`overlooked.spiking.synops`); dropout is left out (inference). :meth:`run` then takes what the
        model takes: a static image (direct encoding) or a time-first spike sequence, and returns the logits
        too. The network is copied: later changes to ``net`` do not reach it.

        Raises:
            TypeError: ``net`` is not a ``SpikingNet``.
            ValueError: a block or readout this simulator cannot step (named, with what it supports).
        """
        from overlooked.spiking.convert import ConvertedSNN
        from overlooked.spiking.models import SpikingNet, fold_batchnorm

        if isinstance(net, ConvertedSNN):
            return cls._from_converted(net)
        if not isinstance(net, SpikingNet):
            raise TypeError(f"EventNetwork.from_model takes a SpikingNet (spiking_mlp, spiking_cnn) or a ConvertedSNN, got {type(net).__name__}; build a layer list for other networks")
        if net.training:
            warnings.warn(
                "EventNetwork.from_model: the model is in training mode, but the event network runs it as model.eval() does "
                "(batch norm with its running statistics, no dropout); call model.eval() before comparing the two",
                stacklevel=2,
            )
        self = cls([])  # the defaults of a layer list, filled in below
        self.readout_pre = [nn.Flatten()]
        for i, block in enumerate(net.blocks):
            folded = fold_batchnorm(block)  # a copy with the running statistics folded into the synapse
            *reshapes, synapse = list(folded.synapse) if isinstance(folded.synapse, nn.Sequential) else [folded.synapse]
            if not isinstance(synapse, nn.Linear | nn.Conv2d) or not all(_plain_flatten(r) for r in reshapes):
                raise ValueError(f"block {i}: event simulation steps a Linear or Conv2d synapse (after nn.Flatten() at most), got {folded.synapse}")
            if isinstance(synapse, nn.Conv2d):
                _conv_geometry(synapse, synapse.in_channels)  # refuses what the scatter cannot do
            if folded.pool is not None and not isinstance(folded.pool, nn.AvgPool2d):
                raise ValueError(f"block {i}: event simulation pools currents with nn.AvgPool2d only, got {type(folded.pool).__name__}")
            if not isinstance(folded.neuron, SEQUENCES):
                raise ValueError(f"block {i}: event simulation steps IF, LIF and PLIF neurons, got {type(folded.neuron).__name__}")
            self.stages.append((list(reshapes), synapse, folded.pool, folded.neuron.cell))
        if not isinstance(net.readout, nn.Linear):
            raise ValueError(f"event simulation reads out through an nn.Linear, got {type(net.readout).__name__}")
        self.readout = copy.deepcopy(net.readout)
        self.steps, self.input_shape = net.steps, tuple(net.input_shape)
        return self

    @classmethod
    def _from_converted(cls, snn: nn.Module) -> EventNetwork:
        """:meth:`from_model` for a ``ConvertedSNN`` (``overlooked convert``): IF neurons with reset by
        subtraction in steps of 1, the first stage dense on the image, the readout an integrator. A stage's
        average pooling acts on the incoming spikes (kernel = stride p), so it is folded into the synapse: a
        convolution of kernel p k and stride p s with each weight spread over its p x p inputs as w / p^2 (a
        Linear likewise over the unpooled positions), after keeping the p floor(S / p) rows and columns the
        pooling reads. A spike then reaches exactly the targets of pooling and synapse composed."""
        if float(snn.v_init) != 0.0:
            raise ValueError(f"event simulation starts every membrane at 0; this converted network starts at v_init = {snn.v_init}: convert with v_init=0")
        stages = list(snn.stages)
        if not stages or not stages[0].spiking:
            raise ValueError("event simulation needs a spiking stage before the readout; this converted network is its readout alone (a linear model): run it as snn(x)")
        self = cls([])  # the defaults of a layer list, filled in below
        self.images_only = True
        for i, stage in enumerate(stages):
            pre, syn = copy.deepcopy(list(stage.pre)), copy.deepcopy(stage.synapse)  # later changes to snn do not reach it
            if i > 0 or not stage.spiking:
                own = (pre, syn)
                pre, syn = _fold_pooling(pre, syn, i)
                if syn is not own[1]:  # a pooling was folded: the dense work is the network's own synapse's
                    self._dense_of[i if stage.spiking else -1] = own
            if not stage.spiking:
                if i != len(stages) - 1 or not isinstance(syn, nn.Linear):
                    raise ValueError(f"stage {i}: event simulation reads out through a final nn.Linear, got {type(stage.synapse).__name__}")
                self.readout_pre, self.readout = pre, syn
                break
            cell = M.IFCell(dt=1.0, r=1.0, v_threshold=1.0, v_reset=0.0, reset="subtract")  # the conversion's neuron (convert.py)
            self.stages.append((pre, syn, None, cell))
        self.steps = int(snn.steps)
        return self

    def _layout(self, k: int, syn: nn.Module, in_shape: tuple[int, ...], dtype: torch.dtype):
        if (k, dtype) not in self._rows:
            self._rows[(k, dtype)] = _prepare(syn, in_shape, dtype)
        return self._rows[(k, dtype)]

    @torch.no_grad()
    def run(self, spikes: Tensor, steps: int | None = None) -> EventResult:
        """Simulate on input spikes ``[T, B, *in_shape]`` (0/1 values); a network made by :meth:`from_model`
        also takes the model's static input ``[B, *input_shape]`` (direct encoding: the first layer's current,
        computed once, drives its neurons for the model's ``steps``; a converted network's images only, for
        ``steps`` steps, its own by default, as ``ConvertedSNN(x, steps)``).

        The scatters are many tiny ops, so this runs on one intra-op thread: with two OpenMP threads on
        the 2-core dev machine a T=20 run of a 4096x4096 layer at 0.5 % activity took 1.78 s instead of
        13 ms (fork/join per tiny op, and ``index_add_`` switching to a parallel ``scatter_add_``).

        Returns:
            :class:`EventResult` with each neuron layer's spikes ``[T, B, ...]`` and the update counts.
        """
        direct = False
        if steps is not None and not self.images_only:
            raise ValueError("steps is for a converted network's images; a SpikingNet runs its own steps (set model.steps before from_model), a spike sequence its own length")
        if self.readout is not None:  # a model's layout: the model's own input rules (shape, T = steps, dtype)
            from overlooked.spiking.models import input_is_static

            if self.images_only:  # a converted network: static images, as ConvertedSNN.simulate takes
                direct = True
                if spikes.dim() < 2 or not spikes.is_floating_point():
                    raise ValueError(f"a converted network reads a batch of images [B, ...] in its weights' dtype, got {spikes.dtype} {list(spikes.shape)}")
            else:
                direct = input_is_static(spikes, self.input_shape or (), int(self.steps or 0), "the event-driven model")
            if spikes.is_floating_point():
                M.check_weight_dtype(self.readout, spikes)
        run_steps = int(self.steps or 0) if steps is None else steps
        if direct and not is_count(run_steps):
            raise ValueError(f"steps must be a whole number >= 1 (time steps to simulate), got {steps!r}")
        run_steps = int(run_steps)
        if not direct and not bool(((spikes == 0) | (spikes == 1)).all()):
            odd = spikes[(spikes != 0) & (spikes != 1)].flatten()[:3].tolist()
            fix = "run the model itself (model(x)) for count-valued input, or bin the events to 0/1 (time_first(binary=True))" if self.readout is not None else "run analog input with run_clock"
            raise ValueError(
                f"event-driven simulation takes binary input spikes (0 or 1), got values such as {odd}: each nonzero "
                f"entry would count as one spike. Encode the input as spikes first (overlooked.spiking.encode), or {fix}"
            )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(spikes, direct, run_steps)
        finally:
            torch.set_num_threads(threads)

    def _run(self, spikes: Tensor, direct: bool = False, steps: int = 0) -> EventResult:
        result = EventResult(spikes=[])
        s_in = spikes
        for k, (reshapes, syn, pool, cell) in enumerate(self.stages):
            counted = [0]  # weights scattered by this stage
            if k == 0 and direct:  # a real-valued input: one dense current per example, the same at every step
                x = s_in
                for r in reshapes:
                    x = r(x)
                constant = _as_dtype(syn, x.dtype)(x)
                constant = pool(constant) if pool is not None else constant
                result.macs = dense = connections([*reshapes, syn], tuple(s_in.shape[1:])) * s_in.shape[0]
                currents: Any = (constant for _ in range(steps))
            else:
                before = tuple(s_in.shape[2:])
                for r in reshapes:
                    s_in = _per_step(r, s_in)  # e.g. Flatten(1), or the crop of a pooling folded into the synapse
                in_shape = tuple(s_in.shape[2:])
                dense = self._dense(k, syn, before, in_shape) * s_in.shape[0] * s_in.shape[1]
                currents = (self._scatter(k, syn, in_shape, s_t, pool, counted) for s_t in s_in)
            state, out = None, []
            for current in currents:
                z, state = cell(current, state)
                out.append(z)
            s_in = torch.stack(out)
            result.spikes.append(s_in)
            result.per_layer.append((counted[0], dense))
            result.synaptic_updates += counted[0]
            result.dense_updates += dense
        if self.readout is not None:  # the model's non-spiking readout: each step's spikes scattered, averaged over time
            before = tuple(s_in.shape[2:])
            for r in self.readout_pre:
                s_in = _per_step(r, s_in)
            counted, total = [0], None
            for s_t in s_in:
                current = self._scatter(len(self.stages), self.readout, tuple(s_in.shape[2:]), s_t, None, counted)
                total = current if total is None else total + current
            result.logits = total / s_in.shape[0]
            dense = self._dense(-1, self.readout, before, tuple(s_in.shape[2:])) * s_in.shape[0] * s_in.shape[1]
            result.per_layer.append((counted[0], dense))
            result.synaptic_updates += counted[0]
            result.dense_updates += dense
        return result

    def _dense(self, k: int, syn: nn.Module, before: tuple[int, ...], in_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of stage ``k`` (-1: the readout) run densely for one example at one step: its
        synapse's connections, or, where a pooling was folded into it, the network's own synapse's on the pooled
        map (pooling adds are not counted, as in :mod:`overlooked.spiking.synops`)."""
        key = (k, before, in_shape)
        if key not in self._dense_count:  # counted once per shape: autograd over all-ones layers is not free (a 4096^2 Linear: ~0.1 s)
            if k not in self._dense_of:
                count = connections(syn, in_shape)
            else:
                pre, own = self._dense_of[k]
                with torch.no_grad():
                    pooled = tuple(nn.Sequential(*pre)(torch.zeros(1, *before, dtype=own.weight.dtype)).shape[1:])
                count = connections(own, pooled)
            self._dense_count[key] = count
        return self._dense_count[key]

    def _scatter(self, k: int, syn: nn.Module, in_shape: tuple[int, ...], s: Tensor, pool: nn.Module | None, counted: list[int]) -> Tensor:
        """One step's synaptic current from the spikes ``s`` ``[B, *in_shape]`` (pooled if the stage pools),
        adding the weights scattered to ``counted[0]``."""
        rows, geometry = self._layout(k, syn, in_shape, s.dtype)
        current, n = _scatter_linear(syn, s, rows) if isinstance(syn, nn.Linear) else _scatter_conv(syn, s, rows, geometry)
        counted[0] += n
        return pool(current) if pool is not None else current


def run_events(layers: list[nn.Module], spikes: Tensor) -> EventResult:
    """Event-driven simulation of ``layers`` on input spikes ``[T, B, ...]``: ``EventNetwork(layers).run(spikes)``."""
    return EventNetwork(layers).run(spikes)


@torch.no_grad()
def run_clock(layers: list[nn.Module], spikes: Tensor) -> list[Tensor]:
    """The dense clock-driven simulation of the same network: each synapse as its PyTorch op every step.

    Returns:
        Each neuron layer's spikes ``[T, B, ...]``.
    """
    out_layers, s_in = [], spikes
    for reshapes, syn, cell in _stages(layers):
        for _ in reshapes:
            s_in = s_in.flatten(2)  # [T, B, features]: Flatten(1) per step
        syn_d = _as_dtype(syn, s_in.dtype)
        state, out = None, []
        for t in range(s_in.shape[0]):
            z, state = cell(syn_d(s_in[t]), state)
            out.append(z)
        s_in = torch.stack(out)
        out_layers.append(s_in)
    return out_layers


def _as_dtype(syn: nn.Module, dtype: torch.dtype) -> nn.Module:
    if isinstance(syn, nn.AvgPool2d) or all(p.dtype == dtype for p in syn.parameters()):
        return syn
    if isinstance(syn, nn.Linear):
        return lambda s: F.linear(s, syn.weight.to(dtype), None if syn.bias is None else syn.bias.to(dtype))  # type: ignore[return-value]
    return lambda s: F.conv2d(s, syn.weight.to(dtype), None if syn.bias is None else syn.bias.to(dtype), syn.stride, syn.padding, syn.dilation, syn.groups)  # type: ignore[return-value]


def _plain_flatten(module: nn.Module) -> bool:
    """An ``nn.Flatten()`` of everything but the batch (``start_dim=1, end_dim=-1``), the one reshape the
    simulation applies per step."""
    return isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1


def _per_step(module: nn.Module, s: Tensor) -> Tensor:
    """``module`` (a per-example op: Flatten, a crop) applied to each step of ``[T, B, ...]``."""
    t, b = s.shape[:2]
    y = module(s.flatten(0, 1))
    return y.view(t, b, *y.shape[1:])


def _fold_pooling(pre: list[nn.Module], syn: nn.Module, stage: int) -> tuple[list[nn.Module], nn.Module]:
    """``pre`` ops (at most one AvgPool2d, kernel = stride, then at most a Flatten) and ``syn`` as reshapes and
    one synapse on the unpooled spikes (see :meth:`EventNetwork._from_converted`)."""
    pools = [m for m in pre if isinstance(m, nn.AvgPool2d)]
    flats = [m for m in pre if isinstance(m, nn.Flatten)]
    if len(pools) + len(flats) != len(pre) or len(pools) > 1 or len(flats) > 1 or (pools and flats and pre.index(flats[0]) < pre.index(pools[0])):
        raise ValueError(f"stage {stage}: event simulation folds one AvgPool2d (then a Flatten) into the synapse, got {[type(m).__name__ for m in pre]}")
    if flats and not _plain_flatten(flats[0]):
        raise ValueError(f"stage {stage}: event simulation supports nn.Flatten() with start_dim=1, end_dim=-1 only")
    if not isinstance(syn, nn.Linear | nn.Conv2d) or (isinstance(syn, nn.Conv2d) and flats):
        raise ValueError(f"stage {stage}: event simulation steps a Conv2d or a Linear after Flatten, got {type(syn).__name__}")
    if not pools:
        return list(pre), syn
    pool = pools[0]
    pair = lambda v: tuple(v) if isinstance(v, tuple | list) else (v, v)  # noqa: E731
    p = pair(pool.kernel_size)[0]
    if pair(pool.kernel_size) != (p, p) or pair(pool.stride) != (p, p) or pair(pool.padding) != (0, 0) or pool.ceil_mode or pool.divisor_override is not None:
        raise ValueError(f"stage {stage}: event simulation folds an AvgPool2d with a square kernel equal to its stride, no padding, ceil_mode False, got {pool}")
    w = syn.weight.detach()
    with torch.no_grad():
        if isinstance(syn, nn.Conv2d):
            _, s_c, pad, _, k = _conv_geometry(syn, syn.in_channels)  # refuses what the scatter cannot do
            folded: nn.Module = nn.Conv2d(syn.in_channels, syn.out_channels, p * k, stride=p * s_c, padding=p * pad, groups=syn.groups, bias=syn.bias is not None, dtype=w.dtype, device=w.device)
            folded.weight.copy_(w.repeat_interleave(p, 2).repeat_interleave(p, 3) / (p * p))
        else:  # its input width is known once the spikes' side is: _PoolCrop spreads the weights then
            folded = nn.Linear(syn.in_features, syn.out_features, bias=syn.bias is not None, dtype=w.dtype, device=w.device)
            folded.weight.copy_(w)
        if syn.bias is not None:
            folded.bias.copy_(syn.bias.detach())
    return [_PoolCrop(p, folded)] + ([nn.Flatten()] if flats else []), folded


class _PoolCrop(nn.Module):
    """The rows and columns a pooling of kernel = stride ``p`` reads (``p floor(S / p)`` of a side ``S``), and,
    for a folded Linear, its pooled weights spread over them (``w / p^2`` at each of a pooled position's
    ``p x p`` inputs) on the first call, when the side is known; another side later is refused."""

    def __init__(self, p: int, folded: nn.Module):
        super().__init__()
        self.p, self.side = p, None
        object.__setattr__(self, "_folded", folded)  # not a submodule: the stage holds it as its synapse

    def forward(self, x: Tensor) -> Tensor:
        c, h, w = x.shape[1:]
        if h != w:
            raise ValueError(f"event simulation folds pooling of square maps, got {h} x {w}")
        if self.side is None:
            keep = h // self.p
            lin = self._folded
            if isinstance(lin, nn.Linear):
                if lin.in_features != c * keep * keep:
                    raise ValueError(f"the Linear after pooling reads {lin.in_features} inputs, but {c} x {keep} x {keep} pooled positions arrive")
                with torch.no_grad():
                    spread = lin.weight.view(-1, c, keep, keep).repeat_interleave(self.p, 2).repeat_interleave(self.p, 3) / (self.p * self.p)
                    lin.weight = nn.Parameter(spread.reshape(spread.shape[0], -1).contiguous(), requires_grad=False)
                    lin.in_features = lin.weight.shape[1]
            self.side = h  # laid out for this side, once the checks above have passed
        elif h != self.side:
            raise ValueError(f"this event network was laid out for {self.side} x {self.side} maps here, got {h} x {h}; build another for other image sizes")
        size = self.p * (h // self.p)
        return x[..., :size, :size]
