"""Export to and import from NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0.8).

**Time.** NIR neurons are continuous-time (``nir/ir/neuron.py``): LIF is ``tau dv/dt = (v_leak - v) + r I``,
IF is ``dv/dt = r I``, CubaLIF adds ``tau_syn dI/dt = -I + w_in S``. Our neurons are these equations under
**forward Euler at step dt** (``neurons.py``), so a layer exports with the *same* ``tau``, ``r``, ``v_leak``,
``v_threshold`` and ``v_reset``, and a reader that integrates NIR with forward Euler at the same ``dt``
reproduces it. One scaling is needed: our CubaLIF adds ``w_in x`` to the synaptic current per step, where
forward Euler of NIR's equation adds ``(dt / tau_syn) w_in x``; so NIR's ``w_in`` is ours times
``tau_syn / dt`` (and back on import). For a reader that integrates the leak exactly instead,
:func:`to_exact_decay` rewrites LIF time constants so that it computes the same network. ``dt`` is written to
the graph's metadata as information only: :func:`from_nir` reads standard fields (and one metadata field,
``discretisation``, to map a graph :func:`to_exact_decay` wrote back) and takes ``dt`` as an argument. It checks that argument: ``dt``
must be a positive finite number; a graph whose metadata records another ``dt`` (ours do) still runs, since
its neurons are continuous-time, but with a :class:`NIRDtWarning` (a different discretisation gives other
outputs than the exported model); and a neuron whose ``tau`` (LIF ``tau``, CubaLIF ``tau_mem`` and
``tau_syn``) is below ``dt`` is refused with :class:`NIRImportError` naming the node, tau and dt, because
forward Euler with ``dt / tau > 1`` makes the leak overshoot (oscillation for ``dt / tau`` up to 2,
divergence beyond).

**Reset.** nir 1.0.8 defines one reset for IF, LIF and CubaLIF: ``v = v_reset`` when ``z = 1``
(reset to a value; there is no reset-by-subtraction field). A neuron with ``reset="subtract"`` (the
conversion's IF neuron) is therefore refused with :class:`NIRExportError`, never exported with the wrong
reset. ``detach_reset`` only changes gradients, so it is dropped. The spike condition ``v > v_threshold``
is strict in NIR and here.

**What maps.** ``nn.Linear`` -> ``nir.Affine`` (``nir.Linear`` without bias), ``nn.Conv2d`` -> ``nir.Conv2d``
(with its input shape), ``nn.AvgPool2d`` -> ``nir.AvgPool2d`` (``divisor_override=1``: ``nir.SumPool2d``; another
divisor is refused), ``nn.Flatten`` -> ``nir.Flatten`` (with its
input shape; dimensions exclude the batch), IF / LIF / PLIF (its learned tau frozen) / CubaLIF ->
``nir.IF`` / ``nir.LIF`` / ``nir.CubaLIF``, RecurrentLIF -> ``nir.LIF`` plus a ``nir.Linear`` edge back into
it (a graph cycle, which :func:`from_nir` runs with a one-step delay, as :class:`RecurrentLIFCell` does).
ALIF has no NIR node and is refused. Batch norm is folded into the synapse first
(:func:`overlooked.spiking.models.fold_batchnorm`).

A :class:`~overlooked.spiking.models.SpikingNet` exports as: input (the image, fed as the input current at
every step: direct encoding) -> blocks -> readout ``Affine`` -> output. The graph's output is the readout
current at each step; the model's logits are its mean over the ``T`` steps. The graph's metadata says so
beside ``dt``: ``steps`` (the model's ``T``), ``input`` (how the input is fed: direct encoding, or the
encoder's name and arguments when the caller passes them; the model alone does not know) and ``readout``.

**Import.** :func:`from_nir` runs graphs made of ``Input``, ``Output``, ``Affine``, ``Linear``, ``Conv2d``,
``AvgPool2d``, ``SumPool2d``, ``Flatten``, ``IF``, ``LIF`` and ``CubaLIF`` nodes (any other node type is
refused by name), with exactly one Input and one Output and every node on a path from the Input to the
Output (a disconnected or unused node is refused by name; so is an edge into the Input, which has no meaning
here, and an ``Affine``, ``Linear`` or ``Conv2d`` node whose weight and bias do not fit together, by
:func:`check_weights`). :class:`NIRNetwork` takes time-first input
``[T, B, *input_shape]``. :func:`read_nir` reads a file, turning h5py's errors on a file that is not a NIR
graph into a :class:`NIRImportError` that says what a NIR file is.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from overlooked.errors import OverlookedError
from overlooked.spiking import modules as M
from overlooked.spiking import neurons as N
from overlooked.spiking.synops import as_pair

Tensor = torch.Tensor


class NIRExportError(OverlookedError):
    """The model holds something NIR cannot express faithfully."""


class NIRImportError(OverlookedError, ValueError):
    """The NIR file or graph cannot be run here: not a NIR file, an unsupported or disconnected node, a bad dt."""


class NIRDtWarning(UserWarning):
    """:func:`from_nir` runs a graph at another ``dt`` than the one its metadata says it was exported at."""


# ---- export --------------------------------------------------------------------------------------------


def _np(x: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` as float32 numpy; with ``shape``, one value per neuron of a layer of that shape. A neuron
    parameter may broadcast to ``[B, *shape]`` (e.g. ``[1, n]``): leading batch dimensions of size 1 go."""
    arr = np.asarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float32)
    if shape is None:
        return arr
    extra = arr.ndim - len(shape)
    if extra > 0:
        if any(d != 1 for d in arr.shape[:extra]):
            raise NIRExportError(f"a neuron parameter of shape {arr.shape} differs along the batch; NIR holds one value per neuron of the layer {shape}")
        arr = arr.reshape(arr.shape[extra:])
    try:
        return np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise NIRExportError(f"a neuron parameter of shape {arr.shape} does not broadcast to its layer's shape {shape}") from None


def _neuron_cell(module: nn.Module) -> nn.Module | None:
    """The cell of a sequence neuron module (or the cell itself)."""
    if isinstance(module, M._Cell):
        return module
    cell = getattr(module, "cell", None)
    return cell if isinstance(cell, M._Cell) else None


def _check_reset(p: Any, kind: str) -> None:
    if p.reset != "zero":
        raise NIRExportError(
            f"{kind} with reset={p.reset!r} cannot be exported: nir 1.0.8 defines the reset of IF, LIF and CubaLIF as "
            "v <- v_reset after a spike (reset to a value), with no reset by subtraction; use reset='zero' or keep the model in torch"
        )


def _check_library_dynamics(cell: nn.Module) -> None:
    """A neuron of the user's own built on a library cell (``class MyLIF(LIFCell)``) is exported as that cell
    only if it keeps the library's step and forward: one with its own dynamics would be written as a plain
    ``nir.LIF`` / ``nir.IF`` whose spikes differ from the trained network's."""
    bases = (M.RecurrentLIFCell, M.PLIFCell, M.CubaLIFCell, M.ALIFCell, M.IFCell, M.LIFCell)
    kind = type(cell)
    if kind in bases:
        return
    base = next((b for b in bases if isinstance(cell, b)), None)
    if base is None:
        return  # not a library cell: refused below as having no mapping
    own = [name for name in ("step_fn", "forward", "params") if getattr(kind, name) is not getattr(base, name)]
    if own:
        raise NIRExportError(
            f"{kind.__name__} subclasses {base.__name__} but defines its own {', '.join(own)}: its dynamics are not "
            f"{base.__name__.removesuffix('Cell')}'s, so a nir.{base.__name__.removesuffix('Cell').removeprefix('Recurrent').removeprefix('P')} node would not spike as it does. "
            f"Export a library neuron, or write the NIR node for it yourself"
        )


def neuron_nodes(cell: nn.Module, shape: tuple[int, ...], dt: float) -> dict[str, nir.NIRNode]:
    """NIR node(s) for one neuron layer of ``shape`` (``{"": neuron}``, plus ``"rec"`` for a recurrent LIF)."""
    if abs(cell.dt - dt) > 1e-12 * max(1.0, abs(dt)):
        raise NIRExportError(f"the neuron layer runs at dt={cell.dt} but the export was asked for dt={dt}; time constants are only meaningful at the model's own dt")
    p = cell.params()
    _check_library_dynamics(cell)
    if isinstance(cell, M.ALIFCell):
        raise NIRExportError("ALIF (adaptive threshold) has no NIR node in nir 1.0.8; it cannot be exported")
    if isinstance(cell, M.IFCell):
        _check_reset(p, "IF")
        return {"": nir.IF(r=_np(p.r, shape), v_threshold=_np(p.v_threshold, shape), v_reset=_np(p.v_reset, shape))}
    if isinstance(cell, M.CubaLIFCell):
        _check_reset(p, "CubaLIF")
        w_in = _np(p.w_in, shape) * _np(p.tau_syn, shape) / dt  # our per-step jump -> NIR's continuous w_in
        return {
            "": nir.CubaLIF(
                tau_syn=_np(p.tau_syn, shape), tau_mem=_np(p.tau_mem, shape), r=_np(p.r, shape), v_leak=_np(p.v_leak, shape),
                v_threshold=_np(p.v_threshold, shape), v_reset=_np(p.v_reset, shape), w_in=w_in,
            )
        }
    if isinstance(cell, M.LIFCell):  # LIF, PLIF (tau frozen at its learned value), recurrent LIF
        _check_reset(p, type(cell).__name__.removesuffix("Cell"))
        lif = nir.LIF(tau=_np(p.tau_mem, shape), r=_np(p.r, shape), v_leak=_np(p.v_leak, shape), v_threshold=_np(p.v_threshold, shape), v_reset=_np(p.v_reset, shape))
        if isinstance(cell, M.RecurrentLIFCell):
            return {"": lif, "rec": nir.Linear(weight=_np(cell.recurrent.weight))}
        return {"": lif}
    raise NIRExportError(f"no NIR mapping for neuron {type(cell).__name__}")


def _synapse_node(module: nn.Module, shape: tuple[int, ...]) -> nir.NIRNode:
    if isinstance(module, nn.Linear):
        if module.bias is None:
            return nir.Linear(weight=_np(module.weight))
        return nir.Affine(weight=_np(module.weight), bias=_np(module.bias))
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise NIRExportError("only zero padding given as numbers exports to nir.Conv2d")
        k = module.kernel_size
        if module.groups != 1 or k[0] != k[1]:
            # nir's Conv2d infers its shapes from weight.shape[1] as the input channels and kernel_size[0] for both
            # sides: a file with such a layer fails nir's own type check on nir.read (its error was raised raw)
            what = f"groups={module.groups}" if module.groups != 1 else f"a {k[0]}x{k[1]} kernel"
            raise NIRExportError(f"Conv2d with {what} cannot be exported: nir {getattr(nir, '__version__', '')} infers a Conv2d's shapes as if ungrouped and square, so nir.read would refuse the file; use groups=1 and a square kernel")
        bias = module.bias if module.bias is not None else torch.zeros(module.out_channels)
        return nir.Conv2d(input_shape=tuple(shape[1:]), weight=_np(module.weight), stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups, bias=_np(bias))
    if isinstance(module, nn.AvgPool2d):
        k, s, pad = as_pair(module.kernel_size), as_pair(module.stride), as_pair(module.padding)
        if module.ceil_mode:
            raise NIRExportError("AvgPool2d with ceil_mode=True has no NIR equivalent; use ceil_mode=False (pad the input instead)")
        divisor = module.divisor_override  # every window divided by it, padded or not
        if divisor is not None and divisor not in (1, k[0] * k[1]):
            raise NIRExportError(
                f"AvgPool2d(divisor_override={divisor}) divides each window's sum by {divisor}, which no NIR node expresses "
                f"(nir.AvgPool2d divides by the window size {k[0] * k[1]}, nir.SumPool2d by 1); use divisor_override=None or 1, "
                "or fold the factor into the next layer's weights"
            )
        if divisor == 1:
            return nir.SumPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(pad))
        if divisor is None and any(pad) and not module.count_include_pad:
            raise NIRExportError("AvgPool2d with padding and count_include_pad=False has no NIR equivalent (its border windows divide by fewer cells); use count_include_pad=True")
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(pad))
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise NIRExportError("only Flatten(start_dim=1, end_dim=-1) (flatten everything but the batch) is exported")
        return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    raise NIRExportError(f"no NIR mapping for {type(module).__name__}")


def _expand(layers: list[nn.Module]) -> list[nn.Module]:
    out: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            out += _expand(list(layer))
        elif isinstance(layer, (nn.Dropout, nn.Identity)):
            continue
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            raise NIRExportError("fold batch norm into the preceding synapse first (overlooked.spiking.models.fold_batchnorm)")
        else:
            out.append(layer)
    return out


@torch.no_grad()
def export_layers(layers: list[nn.Module], input_shape: tuple[int, ...], dt: float, metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """A NIR graph for a chain of layers run step by step: synapses (Linear, Conv2d, AvgPool2d, Flatten) and
    sequence or cell neuron modules (IF, LIF, PLIF, CubaLIF, RecurrentLIF).

    Args:
        layers: the chain, in order.
        input_shape: one example's input shape, without batch, e.g. ``(1, 28, 28)``.
        dt: the step of the neuron modules (checked against theirs).
        metadata: extra information written to the graph (readers must not need it).
    """
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(input_shape))}
    edges: list[tuple[str, str]] = []
    prev, shape = "input", tuple(input_shape)
    for i, layer in enumerate(_expand(layers)):
        cell = _neuron_cell(layer)
        if cell is not None:
            made = neuron_nodes(cell, shape, dt)
            name = f"{i}_{type(cell).__name__.removesuffix('Cell').lower()}"
            nodes[name] = made[""]
            edges.append((prev, name))
            if "rec" in made:
                nodes[f"{name}_rec"] = made["rec"]
                edges += [(name, f"{name}_rec"), (f"{name}_rec", name)]
        else:
            name = f"{i}_{type(layer).__name__.lower()}"
            nodes[name] = _synapse_node(layer, shape)
            edges.append((prev, name))
            weight = next(iter(layer.parameters()), None)  # the probe in the layer's own dtype and device
            probe = torch.zeros(1, *shape) if weight is None else torch.zeros(1, *shape, dtype=weight.dtype, device=weight.device)
            try:
                with torch.no_grad():
                    shape = tuple(layer(probe).shape[1:])
            except RuntimeError as err:  # the layer does not take what the chain gives it
                raise NIRExportError(
                    f"layer {i} ({layer}) cannot take one example of shape {list(shape)} (what input_shape={tuple(input_shape)} gives it there): {err}. "
                    "Fix: pass the input_shape of one example, without the batch, that the first layer takes"
                ) from None
        prev = name
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "discretisation": EULER, "exporter": "overlooked", **(metadata or {})})


def _model_dt(model: nn.Module) -> float:
    dts = {m.dt for m in model.modules() if isinstance(m, M._Cell)}
    if len(dts) != 1:
        raise NIRExportError(f"expected one dt across the neuron layers, found {sorted(dts)}")
    return dts.pop()


def export_nir_graph(model: nn.Module, dt: float | None = None, input_shape: tuple[int, ...] | None = None, encoder: str | None = None, encoder_kwargs: dict[str, Any] | None = None, flat_input: bool = False) -> nir.NIRGraph:
    """NIR graph of a :class:`~overlooked.spiking.models.SpikingNet` (batch norm folded; see the module docstring).

    The graph's metadata records ``dt``, ``steps`` (the model's ``T``), ``input`` (how the input is fed) and
    ``readout`` (how the logits come from the output), for people and tools; :func:`from_nir` needs none of it.

    Args:
        model: the trained spiking net, in eval mode (its BN running statistics are folded).
        dt: the neurons' step; defaults to theirs, and must equal it when given.
        input_shape: one input's shape without batch, e.g. ``(1, 28, 28)``; default ``model.input_shape``
            (must equal it when both exist).
        encoder: the registered encoder (``ENCODERS`` name) that fed the model during training, when the caller
            knows it (the model does not); ``None`` records direct encoding, the model's own static input.
        encoder_kwargs: that encoder's keyword arguments, recorded beside its name.
        flat_input: for a network whose first layer flattens its input (the MLPs), leave the Flatten node out
            and declare the input flat (``Input [prod(input_shape)]``; feed ``x.flatten(-len(input_shape))``):
            readers that do not apply NIR's ``Flatten(start_dim=0)`` per example (Norse and snnTorch as of
            this writing) then load the graph.
    """
    from overlooked.spiking.convert import ConvertedSNN
    from overlooked.spiking.models import fold_batchnorm

    if isinstance(model, ConvertedSNN):
        raise NIRExportError(
            "a converted network uses IF neurons with reset by subtraction, which nir 1.0.8 cannot express "
            "(its IF resets v <- v_reset); it is not exported"
        )
    if not (hasattr(model, "blocks") and hasattr(model, "readout")):
        raise NIRExportError(f"export_nir_graph takes a SpikingNet, got {type(model).__name__}; use export_layers for a chain of layers")
    own_shape = getattr(model, "input_shape", None)
    if input_shape is not None and own_shape is not None and tuple(input_shape) != tuple(own_shape):
        raise NIRExportError(f"input_shape={tuple(input_shape)} but the model was built for input_shape={tuple(own_shape)}; leave input_shape out to use the model's")
    input_shape = input_shape or own_shape
    if input_shape is None:
        raise NIRExportError("pass input_shape (one example's shape without batch, e.g. (1, 28, 28)): NIR graphs carry their shapes")
    model_dt = _model_dt(model)
    dt = model_dt if dt is None else dt
    layers: list[nn.Module] = []
    for block in model.blocks:
        folded = fold_batchnorm(block)
        layers += [folded.synapse] + ([folded.pool] if folded.pool is not None else []) + [folded.neuron]
    layers.append(model.readout)
    if flat_input:
        expanded = _expand(layers)
        if not (expanded and isinstance(expanded[0], nn.Flatten)):
            raise NIRExportError(f"flat_input=True leaves out the first layer's Flatten, but this network begins with {type(expanded[0]).__name__ if expanded else 'nothing'}; export it without flat_input")
        _synapse_node(expanded[0], tuple(input_shape))  # the same check of the Flatten as an export with it
        layers, input_shape = expanded[1:], (int(np.prod(input_shape)),)
    steps = int(model.steps)
    dims = ", ".join(str(int(d)) for d in input_shape)
    if encoder is None:
        feed = f"direct: one example [{dims}] is the input current of the first layer at each of the T={steps} steps (the same values every step)"
    else:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted((encoder_kwargs or {}).items()))
        feed = f"encoder {encoder!r}({args}): its spikes, one [{dims}] frame per step for T={steps} steps, are the input at each step"
    meta = {"steps": steps, "input": feed, "readout": f"mean over the T={steps} steps of the output (the logits)"}
    graph = export_layers(layers, tuple(input_shape), dt, meta)
    if model.training:  # as EventNetwork.from_model says it (after the checks: a refused export gives no warning)
        warnings.warn(
            "export_nir_graph: the model is in training mode, but the graph is the network as model.eval() runs it "
            "(batch norm with its running statistics folded in, no dropout); call model.eval() before comparing the two",
            stacklevel=2,
        )
    return graph


# ---- import --------------------------------------------------------------------------------------------


class SumPool2d(nn.Module):
    """Sum pooling (``nir.SumPool2d``): average pooling times the window size."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=True)
        self.window = kernel_size[0] * kernel_size[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x) * self.window


def _t(x: Any) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def _pair(x: Any) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(x)).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


def first_nonfinite(graph: nir.NIRGraph, attrs: tuple[str, ...] | None = None, recurse: bool = True) -> tuple[str, nir.NIRNode, str] | None:
    """``(node name, node, attribute)`` of the first float array of ``graph`` holding NaN or inf (only the
    ``attrs`` named, when given; nested graphs too with ``recurse``), or None: what export refuses to write and
    import refuses to build.

    >>> g = nir.NIRGraph(nodes={"a": nir.Affine(np.array([[np.nan]]), np.zeros(1))}, edges=[], type_check=False)
    >>> first_nonfinite(g)[0::2]
    ('a', 'weight')
    """
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            found = first_nonfinite(node, attrs, recurse) if recurse else None
            if found is not None:
                return found
            continue
        for attr, value in vars(node).items():
            if attrs is not None and attr not in attrs:
                continue
            if isinstance(value, np.ndarray):
                array = value
            elif attrs is not None:  # a named attribute, whatever array-like holds it
                array = np.asarray(value)
            else:
                continue
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                return name, node, attr
    return None


def _node_module_named(name: str, node: nir.NIRNode, dt: float) -> nn.Module:
    """:func:`node_module`, its failures on a malformed node (groups=0, stride=0, a NaN neuron parameter,
    start_dim > end_dim) named with the node, as :class:`NIRImportError`."""
    try:
        module = node_module(node, dt)
    except NIRImportError:
        raise
    except (ValueError, RuntimeError, OverflowError, TypeError, ZeroDivisionError) as err:
        raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}) cannot be built: {err}. Fix that node's parameters") from None
    if isinstance(module, nn.Flatten) and module.start_dim >= 0 and module.end_dim >= 0 and module.start_dim > module.end_dim:
        raise NIRImportError(f"NIR node {name!r} (Flatten) has start_dim {int(node.start_dim)} > end_dim {int(node.end_dim)}; fix that node")
    return module


def node_module(node: nir.NIRNode, dt: float) -> nn.Module:
    """Our torch module for one NIR node (neurons as one-step cells running at ``dt``)."""
    if isinstance(node, (nir.Input, nir.Output)):
        return nn.Identity()
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _t(node.weight)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(w)
            if isinstance(node, nir.Affine):
                lin.bias.copy_(_t(node.bias).reshape(-1))
        return lin
    if isinstance(node, nir.Conv2d):
        w = _t(node.weight)
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), _pair(node.stride), padding, _pair(node.dilation), int(node.groups))
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(_t(node.bias).reshape(-1))
        return conv
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding), count_include_pad=True)
    if isinstance(node, nir.SumPool2d):
        return SumPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
    if isinstance(node, nir.Flatten):  # NIR dimensions exclude the batch
        start, end = int(node.start_dim), int(node.end_dim)
        return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if isinstance(node, nir.IF):
        return M.IFCell(dt=dt, r=_t(node.r), v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset), reset="zero")
    if isinstance(node, nir.LIF):
        return M.LIFCell(dt=dt, tau_mem=_t(node.tau), r=_t(node.r), v_leak=_t(node.v_leak), v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset), reset="zero")
    if isinstance(node, nir.CubaLIF):
        w_in = _t(node.w_in) * dt / _t(node.tau_syn)  # NIR's continuous w_in -> our per-step jump
        return M.CubaLIFCell(dt=dt, tau_syn=_t(node.tau_syn), tau_mem=_t(node.tau_mem), r=_t(node.r), v_leak=_t(node.v_leak), v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset), w_in=w_in)
    raise NIRImportError(f"NIR node {type(node).__name__} is not supported (IF, LIF, CubaLIF, Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, Input, Output are)")


_TIMELESS = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten)  # nodes retime leaves as they are


def retime(graph: nir.NIRGraph, dt: float) -> nir.NIRGraph:
    """The same network for a reader stepping at ``dt`` instead of the graph's exported dt (its metadata's).

    Forward Euler depends on the time constants only through ``dt / tau``, so multiplying every ``tau`` (LIF),
    ``tau_mem`` and ``tau_syn`` (CubaLIF) by ``s = dt / dt_exported`` and dividing IF's ``r`` by ``s`` gives a
    graph that, run at ``dt``, computes exactly what the original computes at its own dt (CubaLIF's ``w_in`` and
    LIF's ``r`` are unchanged). Use it when one input step stands for a stretch of real time other than the
    training dt: an N-MNIST model's step is a 30 ms event bin (metadata ``step_duration_s``), so a chip fed events
    in real time wants ``retime(graph, 0.03)``. A new graph is returned (nodes without time in them are shared);
    its metadata's ``dt`` becomes ``dt``. A node type whose meaning depends on dt and that this function does not
    rescale (``LI``, ``Integrator``, ``CubaLI``, ``Delay``, a nested graph, ...) is refused by name.
    """
    dt = check_dt(dt)
    exported = exported_dt(graph)
    if exported is None:
        raise NIRImportError("the graph's metadata records no dt it was exported at, so there is nothing to rescale from; pass the graph overlooked exported")
    s = dt / exported
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.LIF):
            node = nir.LIF(tau=node.tau * s, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=dict(node.metadata))
        elif isinstance(node, nir.CubaLIF):
            node = nir.CubaLIF(tau_syn=node.tau_syn * s, tau_mem=node.tau_mem * s, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset, w_in=node.w_in, metadata=dict(node.metadata))
        elif isinstance(node, nir.IF):
            node = nir.IF(r=node.r / s, v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=dict(node.metadata))
        elif not isinstance(node, _TIMELESS):
            raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}) is not one retime rescales (LIF, CubaLIF, IF, and nodes without time: {', '.join(t.__name__ for t in _TIMELESS)})")
        nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata={**graph.metadata, "dt": dt})


EULER = "forward Euler"  # the metadata's `discretisation` of the graphs export writes
EXACT_DECAY = "exact decay (zero-order hold)"  # ... and of those to_exact_decay rewrites for an exact-decay reader
EXACT_DECAY_EQUATIONS = (
    "per step of dt, with the step's input current I held over the step: LIF v <- v_leak + r I + (v - v_leak - r I) "
    "exp(-dt / tau), IF v <- v + dt r I; then a spike where v > v_threshold, and v <- v_reset"
)


def to_exact_decay(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same network for a reader that integrates the leak exactly at the graph's dt (its metadata's).

    Our neurons step NIR's equations with forward Euler, whose LIF leak factor per step is ``1 - dt / tau``. A
    reader that solves the equation exactly over each step with the step's input held (zero-order hold:
    ``v <- v_leak + r I + (v - v_leak - r I) exp(-dt / tau)``, common on hardware and in event simulators) has the
    factor ``exp(-dt / tau)``, and both the leak and the input term match Euler's when its ``tau`` is
    ``tau' = -dt / ln(1 - dt / tau)``: every LIF ``tau`` is replaced by that (``tau' < tau``; the rest unchanged),
    IF is the same under both (no leak), and the metadata's ``discretisation`` becomes
    :data:`EXACT_DECAY` with the equations beside it. :func:`from_nir` maps such a graph back, so export then
    import still gives the trained network. A CubaLIF is refused: exactly integrated, its decaying synaptic
    current feeds the membrane inside the step, which no choice of time constants turns into our step. Run the
    graph at its dt; for a reader at another dt, :func:`retime` first.
    """
    if not isinstance(graph.metadata, dict) or graph.metadata.get("discretisation") != EULER:
        said = graph.metadata.get("discretisation") if isinstance(graph.metadata, dict) else None
        raise NIRExportError(f"to_exact_decay rewrites a graph for forward Euler (metadata discretisation {EULER!r}, as overlooked exports it); this one says {said!r}")
    dt = exported_dt(graph)
    if dt is None:
        raise NIRExportError("the graph's metadata records no dt, and exact decay depends on it; pass the graph overlooked exported")
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.LIF):
            tau = np.asarray(node.tau, dtype=np.float64)
            if not (tau > dt).all():
                bad = float(tau[~(tau > dt)].flat[0])
                raise NIRExportError(f"NIR node {name!r} (LIF) has tau = {bad:g} s, not above dt = {dt:g} s: its Euler leak factor 1 - dt/tau is not in (0, 1), so no exact decay equals it")
            tau_exact = -dt / np.log1p(-dt / tau)  # float64: the reader's exp(-dt/tau') then equals 1 - dt/tau to its own precision
            node = nir.LIF(tau=tau_exact, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=dict(node.metadata))
        elif isinstance(node, nir.CubaLIF):
            raise NIRExportError(
                f"NIR node {name!r} is a CubaLIF: integrated exactly, its synaptic current decays inside the step while it charges "
                "the membrane, which no choice of time constants turns into our forward-Euler step; export it for forward Euler "
                "(the default) and run it at the graph's dt"
            )
        elif not isinstance(node, (nir.IF, *_TIMELESS)):
            raise NIRExportError(f"NIR node {name!r} ({type(node).__name__}) is not one to_exact_decay rewrites (LIF, IF, and nodes without time)")
        nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata={**graph.metadata, "discretisation": EXACT_DECAY, "equations": EXACT_DECAY_EQUATIONS})


def from_exact_decay(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The inverse of :func:`to_exact_decay`: each LIF ``tau'`` back to the forward-Euler ``tau = dt / (1 - exp(-dt / tau'))``
    at the graph's dt, the metadata's ``discretisation`` back to :data:`EULER`."""
    dt = exported_dt(graph)
    if dt is None:
        raise NIRImportError(f"the graph's metadata says {EXACT_DECAY!r} but records no dt, which its time constants depend on; add metadata dt (seconds)")
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.LIF):
            tau = np.asarray(node.tau, dtype=np.float64)
            if not (tau > 0).all():
                raise NIRImportError(f"NIR node {name!r} (LIF) has tau = {float(tau[~(tau > 0)].flat[0])!r}, not a positive time constant")
            node = nir.LIF(tau=dt / -np.expm1(-dt / tau), r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=dict(node.metadata))
        elif isinstance(node, nir.CubaLIF):
            raise NIRImportError(f"NIR node {name!r} is a CubaLIF in a graph marked {EXACT_DECAY!r}, which overlooked never writes; it has no forward-Euler equivalent")
        nodes[name] = node
    meta = {k: v for k, v in graph.metadata.items() if k != "equations"}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata={**meta, "discretisation": EULER})


def exported_dt(graph: nir.NIRGraph) -> float | None:
    """The dt the graph's metadata says it was exported at (ours write it; other exporters may not), or None."""
    value = graph.metadata.get("dt") if isinstance(graph.metadata, dict) else None
    return None if N.dt_error(value) is not None else float(value)


def check_dt(dt: Any) -> float:
    """``dt`` as a float, or :class:`NIRImportError` when it is not a positive finite number of seconds."""
    why = N.dt_error(dt)
    if why is not None:
        raise NIRImportError(f"{why}: the step the graph runs at")
    return float(dt)


_TAUS = {nir.LIF: ("tau",), nir.CubaLIF: ("tau_mem", "tau_syn")}  # the time constants forward Euler divides dt by


def check_euler_steps(graph: nir.NIRGraph, dt: float) -> None:
    """Refuse a neuron whose time constant makes forward Euler at ``dt`` unfaithful.

    Each LIF ``tau`` and CubaLIF ``tau_mem`` / ``tau_syn`` must be positive and at least ``dt``: the rule of
    :func:`overlooked.spiking.neurons.euler_step_error`, which the neuron modules apply when built.
    """
    found: list[tuple[str, str, float]] = []  # (node, field, smallest tau)
    for name, node in graph.nodes.items():
        for field in _TAUS.get(type(node), ()):
            tau = np.asarray(getattr(node, field), dtype=np.float64)
            if tau.size == 0:
                continue
            if not (tau > 0).all():
                bad = float(tau[~(tau > 0)].flat[0])
                raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}) has {N.euler_step_error(field, bad, dt)}")
            found.append((name, field, float(tau.min())))
    for name, field, tau in found:
        why = N.euler_step_error(field, tau, dt)
        if why is not None:
            safe = min(t for _, _, t in found)
            raise NIRImportError(f"NIR node {name!r} ({type(graph.nodes[name]).__name__}) has {why}: run the graph at dt <= {safe:g} s, its smallest time constant")


def _check_structure(graph: nir.NIRGraph) -> tuple[str, str]:
    """The graph's one Input and one Output, after checking every edge names a node and every node lies on a
    path from the Input to the Output (so each node gets an input and its output is used)."""
    names = list(graph.nodes)
    unknown = sorted({n for e in graph.edges for n in e if n not in graph.nodes})
    if unknown:
        raise NIRImportError(f"the NIR graph's edges name nodes it does not have: {unknown} (its nodes: {names})")
    inputs = [n for n in names if isinstance(graph.nodes[n], nir.Input)]
    outputs = [n for n in names if isinstance(graph.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        # nir's type check gives a node without incoming (outgoing) edges an Input "input_<node>" (Output "output_<node>")
        lone = sorted({n.split("_", 1)[1] for n in inputs + outputs if n.startswith(("input_", "output_")) and n.split("_", 1)[1] in graph.nodes})
        hint = f"; nir's type check adds an Input 'input_<node>' (Output 'output_<node>') for a node with no incoming (outgoing) edge, so these nodes look disconnected: {lone}" if lone else ""
        raise NIRImportError(f"from_nir runs graphs with exactly one Input and one Output node; found Inputs {inputs} and Outputs {outputs}{hint}")
    into_input = [tuple(e) for e in graph.edges if e[1] == inputs[0]]
    if into_input:
        raise NIRImportError(
            f"the NIR graph has edges into its Input node {inputs[0]!r}: {into_input}; from_nir does not support them (the Input "
            "takes the external signal only, and such an edge would be dropped). Remove them, or lead them into a node after the Input"
        )
    succ: dict[str, list[str]] = {n: [] for n in names}
    pred: dict[str, list[str]] = {n: [] for n in names}
    for a, b in graph.edges:
        succ[a].append(b)
        pred[b].append(a)

    def reach(start: str, nxt: dict[str, list[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for m in nxt[todo.pop()]:
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    from_input, to_output = reach(inputs[0], succ), reach(outputs[0], pred)
    cut = [n for n in names if n not in from_input]
    dead = [n for n in names if n in from_input and n not in to_output]
    if cut or dead:
        parts = ([f"not reachable from the Input {inputs[0]!r} (no input would reach them): {cut}"] if cut else []) + (
            [f"not leading to the Output {outputs[0]!r} (their output is unused): {dead}"] if dead else []
        )
        raise NIRImportError(f"every node of the NIR graph must lie on a path from the Input to the Output; these do not: {'; '.join(parts)}. Remove them or connect them")
    return inputs[0], outputs[0]


_WEIGHT_LAYOUT = {nir.Affine: "[out, in]", nir.Linear: "[out, in]", nir.Conv2d: "[out_channels, in_channels / groups, kH, kW]"}


def check_weights(graph: nir.NIRGraph) -> None:
    """Refuse an ``Affine``, ``Linear`` or ``Conv2d`` node whose weight is not 2-D (4-D for ``Conv2d``) or whose
    bias does not hold one value per output (a single value, shared by every output, also fits).

    ``nir.read`` accepts such a file; without this check it fails inside torch while the network is built, with
    a message that names neither the node nor NIR. Shapes only: no parameter value is read.
    """
    for name, node in graph.nodes.items():
        layout = _WEIGHT_LAYOUT.get(type(node))
        if layout is None:
            continue
        kind, w = type(node).__name__, tuple(int(d) for d in np.shape(node.weight))
        if len(w) != layout.count(",") + 1:
            raise NIRImportError(f"NIR node {name!r} ({kind}) has a weight of shape {list(w)}; from_nir runs {kind} weights of shape {layout}. Fix that node's weight")
        if isinstance(node, nir.Linear):
            continue
        b = tuple(int(d) for d in np.shape(node.bias))
        size = math.prod(b)
        if size not in (1, w[0]) or len([d for d in b if d != 1]) > 1:
            raise NIRImportError(
                f"NIR node {name!r} ({kind}) has a bias of shape {list(b)} ({size} values), but its weight {list(w)} has {w[0]} outputs: "
                f"the bias must hold one value per output, shape [{w[0]}]. Fix that node's bias (or weight) so the two agree"
            )


_NEURON_FIELDS = {
    nir.IF: ("r", "v_threshold", "v_reset"),
    nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
}


def check_neuron_sizes(graph: nir.NIRGraph) -> None:
    """Refuse an ``IF``, ``LIF`` or ``CubaLIF`` node whose parameters hold different numbers of values (one per
    neuron, or one for all; nir's constructor keeps them one shape, a node edited afterwards may not), or whose
    neuron count differs from the outputs of an ``Affine`` or ``Linear`` node feeding it. Such a graph (a file
    written with ``type_check=False``) imported, and then failed at the first step with a broadcast error naming
    neither node. Shapes only: no parameter value is read."""
    for name, node in graph.nodes.items():
        fields = _NEURON_FIELDS.get(type(node), ())
        sizes = {f: int(np.size(getattr(node, f))) for f in fields if getattr(node, f, None) is not None}
        n = max(sizes.values(), default=1)
        uneven = {f: k for f, k in sizes.items() if k not in (1, n)}
        if uneven:  # nir's constructor keeps them one shape; a node edited after it was built may not be
            raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}) has parameters of different sizes ({', '.join(f'{f} {k}' for f, k in sizes.items())}): each holds one value per neuron, or one for all. Fix that node's parameters so they agree")
        if n == 1:
            continue
        for src_name, dst in graph.edges:
            src = graph.nodes.get(src_name)
            if dst == name and isinstance(src, (nir.Affine, nir.Linear)) and int(np.shape(src.weight)[0]) != n:
                raise NIRImportError(
                    f"NIR node {name!r} ({type(node).__name__}) has {n} neurons (its parameters hold {n} values each), but node {src_name!r} "
                    f"({type(src).__name__}, weight {list(np.shape(src.weight))}) feeds it {int(np.shape(src.weight)[0])} outputs. Fix one of the two so they agree"
                )


def _schedule(nodes: list[str], edges: list[tuple[str, str]], inputs: list[str]) -> tuple[list[str], set[tuple[str, str]]]:
    """A topological order of the graph with its back edges (cycles) removed, and those back edges."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done

    def visit(n: str) -> None:
        state[n] = 1
        for m in succ[n]:
            if state.get(m) == 1:
                back.add((n, m))
            elif m not in state:
                visit(m)
        state[n] = 2

    for n in inputs + nodes:
        if n not in state:
            visit(n)
    indeg = {n: 0 for n in nodes}
    for a, b in edges:
        if (a, b) not in back:
            indeg[b] += 1
    order, ready = [], [n for n in nodes if indeg[n] == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            if (n, m) not in back:
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
    return order, back


class NIRNetwork(nn.Module):
    """A NIR graph run step by step with this library's modules.

    Each node's input is the sum of its predecessors' outputs at the same step; an edge that closes a cycle
    carries the previous step's output (zero at the first step). ``forward(x [T, B, *input_shape], state=None)``
    returns ``(output [T, B, ...], state)``; with ``record=True`` also every node's outputs. The input must be
    time-first: a static ``[B, *input_shape]`` is refused, not read as ``T = B`` (repeat it yourself with
    ``x.unsqueeze(0).expand(T, *x.shape)`` for direct encoding).

    The constructor checks ``dt`` (see :func:`check_dt`, :func:`check_euler_steps`), warns with
    :class:`NIRDtWarning` when the graph's metadata records another ``dt``, and refuses a graph with a
    disconnected or unused node, an edge into its Input, a weight and bias that do not fit (:func:`check_weights`),
    or a neuron node whose size disagrees with itself or with the Affine / Linear node feeding it
    (:func:`check_neuron_sizes`).
    """

    def __init__(self, graph: nir.NIRGraph, dt: float):
        super().__init__()
        dt = check_dt(dt)
        if isinstance(graph.metadata, dict) and graph.metadata.get("discretisation") == EXACT_DECAY:
            graph = from_exact_decay(graph)  # written for an exact-decay reader: its forward-Euler twin at its dt
        input_name, output_name = _check_structure(graph)
        check_weights(graph)
        check_neuron_sizes(graph)
        check_euler_steps(graph, dt)
        exported = exported_dt(graph)
        if exported is not None and not math.isclose(exported, dt, rel_tol=N.EULER_RTOL):  # a float32 copy of dt is dt
            warnings.warn(
                f"the NIR graph's metadata says it was exported at dt = {exported:.9g} s, and it is being run at dt = {dt:.9g} s: "
                "its neurons are continuous-time, so this is another forward-Euler discretisation and its outputs will differ "
                f"from the exported model's; pass dt={exported:g} to reproduce them",
                NIRDtWarning,
                stacklevel=3,
            )
        self.dt = dt
        names = list(graph.nodes)
        self.node_names = names
        damaged = first_nonfinite(graph, ("weight", "bias"), recurse=False)
        if damaged is not None:
            name, node, attr = damaged
            raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}) has NaN or inf in its {attr}; the graph is damaged: re-export it")
        self.layers = nn.ModuleDict({n.replace(".", "_"): _node_module_named(n, graph.nodes[n], dt) for n in names})
        self.inputs, self.outputs = [input_name], [output_name]
        in_type = getattr(graph.nodes[input_name], "input_type", None) or {}
        shape = np.asarray(in_type.get("input", []) if isinstance(in_type, dict) else [])
        self.input_shape: tuple[int, ...] | None = tuple(int(d) for d in shape.reshape(-1)) if shape.size else None  # one example at one step
        self.edges = [tuple(e) for e in graph.edges]
        self.order, self.back = _schedule(names, self.edges, self.inputs)
        self.preds = {n: [a for a, b in self.edges if b == n] for n in names}
        if self.input_shape is not None:  # one step of one zero example: layer sizes that do not chain are named now, not at the first forward
            try:
                with torch.no_grad():
                    self.step(torch.zeros(1, *self.input_shape), {})
            except RuntimeError as err:
                raise NIRImportError(f"the NIR graph's layers do not fit together for its Input shape {list(self.input_shape)} ({str(err).splitlines()[0]}); fix the node whose input size disagrees with what feeds it") from None

    def _layer(self, name: str) -> nn.Module:
        return self.layers[name.replace(".", "_")]

    def step(self, x: Tensor, state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One step: ``x`` ``[B, ...]`` -> every node's output, and the new state."""
        prev_out = state.get("_outputs", {})
        out: dict[str, Tensor] = {}
        new_state: dict[str, Any] = {}
        for n in self.order:
            if n in self.inputs:
                inp = x
            else:
                terms = []
                for a in self.preds[n]:
                    if (a, n) in self.back:
                        if a in prev_out:
                            terms.append(prev_out[a])
                    else:
                        terms.append(out[a])
                inp = terms[0] if len(terms) == 1 else torch.stack(terms).sum(0)
            layer = self._layer(n)
            if isinstance(layer, M._Cell):
                out[n], new_state[n] = layer(inp, state.get(n))
            else:
                out[n] = layer(inp)
        new_state["_outputs"] = {a: out[a] for a, _ in self.back}
        return out, new_state

    def check_input(self, x: Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is time-first ``[T, B, *input_shape]`` (shape checks only)."""
        shape = tuple(x.shape)
        if self.input_shape is None:
            if x.dim() >= 2:
                return
            want = "[T, B, ...]"
        else:
            if x.dim() == len(self.input_shape) + 2 and shape[2:] == self.input_shape:
                return
            want = f"[T, B, {', '.join(map(str, self.input_shape))}] (the graph's Input shape {self.input_shape} with time and batch in front)"
        raise ValueError(
            f"NIRNetwork takes time-first input {want}; got {list(shape)}. A static input [B, ...] is not repeated for you: "
            "pass x.unsqueeze(0).expand(T, *x.shape) for T steps of direct encoding; a batch-first [B, T, ...] tensor: x.transpose(0, 1)"
        )

    def forward(self, x: Tensor, state: dict[str, Any] | None = None, record: bool = False) -> Any:
        self.check_input(x)
        M.check_input_dtype(self, x)
        if x.shape[0] == 0:
            raise ValueError("NIRNetwork takes T >= 1 time steps; got T = 0")
        if state is not None and not isinstance(state, dict):
            raise ValueError(f"NIRNetwork takes the state as the dict a previous call returned (or None to start from rest); got {type(state).__name__}")
        state = state or {}
        outs, trace = [], []
        for t in range(x.shape[0]):
            o, state = self.step(x[t], state)
            outs.append(o[self.outputs[0]])
            if record:
                trace.append(o)
        y = torch.stack(outs)
        if record:
            return y, state, {n: torch.stack([o[n] for o in trace]) for n in self.order}
        return y, state


def read_nir(path: str | Path) -> nir.NIRGraph:
    """``nir.read(path)``, with a :class:`NIRImportError` that names NIR and the fix when ``path`` is missing or
    is not a NIR file (a text file, another HDF5 file, a graph this nir version cannot build)."""
    path = Path(path)
    if not path.is_file():
        raise NIRImportError(f"{path}: no such NIR file; write one with `overlooked export-nir RUN {path.name}` (or nir.write)")
    try:
        return nir.read(str(path))
    except Exception as err:  # h5py's OSError / KeyError, nir's ValueError / AssertionError for foreign graphs
        why = _unreadable_because(path)
        if why is None:  # not a NIR file at all
            raise NIRImportError(
                f"{path} is not a NIR graph that nir {getattr(nir, '__version__', '')} can read ({type(err).__name__}: {err}). "
                "A .nir file is the HDF5 file nir.write makes, with the graph under the group 'node'; export one with "
                "`overlooked export-nir RUN out.nir`, or check that the file is the one you meant"
            ) from err
        raise NIRImportError(f"{path} is a NIR file, but {why} ({type(err).__name__}: {err or 'no message'}); re-export it, or mend that part") from err


def _unreadable_because(path: Path) -> str | None:
    """Which part of a NIR file (an HDF5 file with a 'node' group) keeps nir from building its graph: the first
    node that does not build, named with its type, or else the edges and shapes; None when it is no NIR file."""
    import h5py
    from nir.serialization import hdf2dict

    try:
        with h5py.File(str(path), "r") as f:
            if "node" not in f:
                return None
            data = hdf2dict(f["node"])
    except Exception:  # not HDF5, or 'node' is no group: not a NIR file
        return None
    if not data.get("nodes"):
        return "its graph has no nodes"
    for name, node in data["nodes"].items():
        kind = node.get("type", "?") if isinstance(node, dict) else "?"
        try:
            nir.dict2NIRNode(dict(node))
        except Exception as exc:  # an unknown type, a missing or misshapen field
            return f"its node {name!r} (type {kind!r}) does not build: {type(exc).__name__}: {exc or 'no message'}"
    return "every node builds and the graph does not: its edges or the shapes they join do not fit"


def from_nir(graph: nir.NIRGraph | str | Path, dt: float) -> NIRNetwork:
    """A runnable torch module from a NIR graph (or a ``.nir`` file), reading standard NIR fields. A graph whose
    metadata says :func:`to_exact_decay` wrote it for an exact-decay reader is mapped back first, at the dt its
    metadata records: the trained network, which a ``dt`` other than that one then runs as any graph (with a
    :class:`NIRDtWarning`).

    Args:
        graph: the graph, or a path to read it from (:func:`read_nir`).
        dt: the forward-Euler step, in seconds, to run the continuous-time neurons at. It is never read from
            the metadata, but checked against it: a different ``dt`` warns (:class:`NIRDtWarning`); a ``dt``
            that is not positive, or above a neuron's time constant, raises :class:`NIRImportError`.

    Returns:
        a :class:`NIRNetwork`, taking time-first ``[T, B, *input_shape]``.
    """
    if isinstance(graph, str) or hasattr(graph, "__fspath__"):
        graph = read_nir(graph)
    return NIRNetwork(graph, dt)


def strip_metadata(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph with every non-standard (metadata) field emptied, in place; returned for chaining."""
    graph.metadata = {}
    for node in graph.nodes.values():
        node.metadata = {}
        if isinstance(node, nir.NIRGraph):
            strip_metadata(node)
    return graph
