"""Every fast backend equals the reference loop (spikes exactly, gradients to tolerance) and really ran."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import pytest
import torch

from overlooked.registry import SURROGATES as SURROGATE_REGISTRY
from overlooked.spiking import kernels
from overlooked.spiking import modules as M
from overlooked.spiking.kernels import _build, cpu
from overlooked.spiking.kernels.cpu import CppNeuronScan
from overlooked.spiking.neurons import VState
from overlooked.spiking.surrogate import FastSigmoid

pytestmark = pytest.mark.skipif(_build.compiler() is None, reason="no C++ compiler: the cpp backend cannot be built here")

NEURONS = {
    "if": (M.IF, {"r": 250.0}),  # dt r = 0.25
    "lif": (M.LIF, {"tau_mem": 5e-3, "v_leak": 0.1, "v_reset": -0.2}),
    "plif": (M.PLIF, {}),
    "cuba": (M.CubaLIF, {"w_in": 0.7}),
    # Every parameter away from its default, so that a kernel reading a threshold of 1, r = 1 or v_reset = 0
    # in place of the neuron's own value (forward or backward) differs from the reference.
    "if_p": (M.IF, {"r": 250.0, "v_threshold": 0.7, "v_reset": -0.1}),
    "lif_p": (M.LIF, {"tau_mem": 5e-3, "r": 1.3, "v_threshold": 1.2, "v_leak": -0.05, "v_reset": 0.1}),
    "plif_p": (M.PLIF, {"r": 1.2, "v_threshold": 0.8, "v_leak": 0.05, "v_reset": -0.1}),
    "cuba_p": (M.CubaLIF, {"w_in": 0.7, "r": 1.5, "v_leak": 0.1, "v_threshold": 1.3, "v_reset": -0.2, "tau_syn": 4e-3}),
}


def _base(kind: str) -> str:
    """The neuron kind of a NEURONS entry ("cuba_p" -> "cuba")."""
    return kind.split("_")[0]
SURROGATES = ("fast_sigmoid", "atan", "sigmoid", "triangle", "rectangle")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(kind: str, backend: str, dtype: torch.dtype, **kw):
    cls, params = NEURONS[kind]
    ref = cls(**params, **kw).to(dtype)
    fast = cls(**params, **kw, backend=backend).to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _grads(module, x, state, gz, gv):
    z, s = module(x, state)
    inputs = [x, *(t for t in (state or ()) if t.requires_grad), *module.parameters()]
    loss = (z * gz).sum() + (s.v * gv).sum()
    return z, s, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("kind", list(NEURONS))
def test_cpp_equals_reference(kind, reset, detach, dtype):
    torch.manual_seed(0)
    surrogate = SURROGATES[(4 * list(NEURONS).index(kind) + 2 * (reset == "zero") + detach) % len(SURROGATES)]  # each in several settings
    for sur in {surrogate, "atan"}:
        ref, fast = _pair(kind, "cpp", dtype, reset=reset, detach_reset=detach, surrogate=sur)
        x = (torch.randn(25, 3, 41, dtype=dtype) * 3 + 1).requires_grad_()  # [T, B, n]
        gz, gv = torch.randn_like(x), torch.randn(3, 41, dtype=dtype)
        before = dict(kernels.CALLS)
        z1, s1, g1 = _grads(ref, x, None, gz, gv)
        z2, s2, g2 = _grads(fast, x, None, gz, gv)
        assert kernels.CALLS["cpp_forward"] == before.get("cpp_forward", 0) + 1
        assert kernels.CALLS["cpp_backward"] == before.get("cpp_backward", 0) + 1
        assert 0.02 < z1.mean() < 0.9  # spikes and silences both happen
        assert torch.equal(z1, z2) and torch.equal(s1.v, s2.v)
        if _base(kind) == "cuba":
            assert torch.equal(s1.i, s2.i)
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        for a, b in zip(g1, g2):
            torch.testing.assert_close(b, a, rtol=tol, atol=tol * max(1.0, a.abs().max().item()))


@pytest.mark.parametrize("kind, loss", [(k, loss) for k in NEURONS for loss in ("v.sum", "i.sum", "z.sum", "transposed") if loss != "i.sum" or _base(k) == "cuba"])
def test_cpp_gradients_with_non_contiguous_incoming_gradients(kind, loss):
    """Autograd hands the backward expanded (``v.sum()``: stride 0) or transposed gradients; the C++ code
    reads raw pointers, so each must be a contiguous tensor kept alive through the call (a copy freed before
    the call gave input gradients off by 0.2 for ``v.sum()``)."""
    torch.manual_seed(2)
    ref, fast = _pair(kind, "cpp", torch.float64)
    x = (torch.randn(25, 3, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    grads = []
    for module in (ref, fast):
        z, s = module(x)
        assert 0.02 < z.mean() < 0.9
        if loss == "v.sum":
            value = s.v.sum()
        elif loss == "i.sum":
            value = s.i.sum()
        elif loss == "z.sum":
            value = z.sum() + s.v.sum()
        else:  # a transposed (non-contiguous) gradient of v
            value = (s.v.t() * torch.arange(15.0, dtype=torch.float64).view(5, 3)).sum()
        grads.append(torch.autograd.grad(value, [x, *module.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", list(NEURONS))
def test_cpp_chunked_path_with_two_threads_equals_reference(kind, dtype, monkeypatch):
    """The autouse fixture's one thread makes ``chunk_size(123, 1)`` one chunk of 128; here 16 neurons per
    chunk over 2 threads: 8 chunks, the last one ragged (11 neurons), and PLIF's learned-decay gradient is
    one partial sum per chunk that the Python side must add up."""
    sizes = []

    def sixteen(n: int, threads: int) -> int:  # looked up as cpu.chunk_size at every forward and backward call
        sizes.append((n, threads))
        return 16

    monkeypatch.setattr(cpu, "chunk_size", sixteen)
    torch.set_num_threads(2)  # the autouse fixture restores the caller's count
    torch.manual_seed(4)
    ref, fast = _pair(kind, "cpp", dtype, reset="subtract" if _base(kind) == "if" else "zero")
    x = (torch.randn(25, 3, 41, dtype=dtype) * 3 + 1).requires_grad_()  # n = 3 x 41 = 123 = 7 x 16 + 11
    v0 = (torch.randn(3, 41, dtype=dtype) * 0.3).requires_grad_()
    state = type(ref.cell.initial_state(x[0]))(v0, *(torch.randn(3, 41, dtype=dtype).requires_grad_() for _ in range(_base(kind) == "cuba")))
    gz, gv = torch.randn_like(x), torch.randn(3, 41, dtype=dtype)
    before = kernels.CALLS["cpp_backward"]
    z1, s1, g1 = _grads(ref, x, state, gz, gv)
    z2, s2, g2 = _grads(fast, x, state, gz, gv)
    assert sizes == [(123, 2), (123, 2)] and kernels.CALLS["cpp_backward"] == before + 1  # the chunked kernels really ran
    assert 0.02 < z1.mean() < 0.9 and z1[:, 2, 30:].sum() > 0  # the ragged last chunk (flat 112..122) spikes too
    assert torch.equal(z1, z2) and torch.equal(s1.v, s2.v)
    if _base(kind) == "cuba":
        assert torch.equal(s1.i, s2.i)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert len(g1) == len(g2) == 2 + (_base(kind) == "cuba") + (_base(kind) == "plif")  # x, v0, [i0], [PLIF's w]
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol * max(1.0, a.abs().max().item()))
    if _base(kind) == "plif":
        assert g1[-1].abs() > 0.1  # a learned-decay gradient large enough that a lost chunk would show


@pytest.mark.parametrize("kind", list(NEURONS))
def test_state_carries_across_calls_and_gets_gradients(kind):
    torch.manual_seed(1)
    ref, fast = _pair(kind, "cpp", torch.float64)
    x = torch.randn(20, 2, 7, dtype=torch.float64) * 3 + 1
    z_all, _ = fast(x)
    z_a, s = fast(x[:8])
    z_b, _ = fast(x[8:], s)
    assert torch.equal(torch.cat([z_a, z_b]), z_all)
    s0 = type(s)(*(t.detach().clone().requires_grad_() for t in s))
    gz, gv = torch.randn_like(x[8:]), torch.randn_like(s.v)
    _, _, g_ref = _grads(ref, x[8:].clone().requires_grad_(), s0, gz, gv)
    _, _, g_fast = _grads(fast, x[8:].clone().requires_grad_(), s0, gz, gv)
    for a, b in zip(g_ref, g_fast):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("kind", list(NEURONS))
def test_gradcheck_where_the_surrogate_is_the_true_derivative(kind, reset):
    """With a rectangle surrogate of support |v - threshold| < 0.01 and no membrane that close to the
    threshold, the surrogate gradient is the exact derivative, so finite differences must agree."""
    cls, params = NEURONS[kind]
    fast = cls(**params, reset=reset, surrogate="rectangle", surrogate_alpha=50.0, backend="cpp").double()
    spec, decay = kernels.scan_spec(fast.cell)
    gen = torch.Generator().manual_seed(3)
    for _ in range(200):  # find an input whose membranes all stay clear of the threshold
        x = torch.randn(6, 2, 3, generator=gen, dtype=torch.float64) * 2 + 0.5
        v0 = torch.randn(2, 3, generator=gen, dtype=torch.float64) * 0.3
        i0 = torch.randn(2, 3, generator=gen, dtype=torch.float64) * 0.3 if _base(kind) == "cuba" else None
        h = _membranes(fast, x, v0, i0)
        threshold = fast.cell.params().v_threshold
        if (h - threshold).abs().min() > 0.05 and 0 < (h > threshold).double().mean() < 1:
            break
    else:
        pytest.fail("no clear input found")
    a = decay.detach().clone().requires_grad_() if decay is not None else None
    inputs = [x.requires_grad_(), v0.requires_grad_()] + ([i0.requires_grad_()] if i0 is not None else []) + ([a] if a is not None else [])

    def f(x, v0, *rest):
        i = rest[0] if i0 is not None else None
        dec = rest[-1] if a is not None else None
        z, v, i_t = CppNeuronScan.apply(x, v0, i, dec, spec)
        return (z, v, i_t) if i0 is not None else (z, v)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def _membranes(fast, x, v0, i0):
    """Pre-reset membranes of the reference step loop (what the kernel saves)."""
    from overlooked.spiking import neurons as N

    cell, p = fast.cell, fast.cell.params()
    state = N.CubaState(v0, i0) if i0 is not None else N.VState(v0)
    hs = []
    for t in range(x.shape[0]):
        if i0 is not None:
            hs.append(N.leaky_charge(state.v, state.i, p.tau_mem, p.v_leak, p.r, cell.dt))
        elif isinstance(p, N.IFParameters):
            hs.append(state.v + cell.dt * p.r * x[t])
        else:
            hs.append(N.leaky_charge(state.v, x[t], p.tau_mem, p.v_leak, p.r, cell.dt))
        _, state = cell(x[t], state)
    return torch.stack(hs).detach()


def test_auto_resolves_and_reports(tmp_path):
    from overlooked.spiking.models import spiking_mlp

    model = spiking_mlp(input_shape=(1, 4, 4), hidden=(8,), steps=3, backend="auto")
    assert set(kernels.resolved_backends(model).values()) == {"cpp"}
    before = kernels.CALLS["cpp_forward"]
    model(torch.rand(2, 1, 4, 4))
    assert kernels.CALLS["cpp_forward"] == before + 1
    assert set(kernels.resolved_backends(spiking_mlp(input_shape=(1, 4, 4), hidden=(8,), steps=3, backend="reference")).values()) == {"reference"}
    assert set(kernels.resolved_backends(spiking_mlp(input_shape=(1, 4, 4), hidden=(8,), steps=3)).values()) == {"cpp"}  # the models default to auto


def test_unsupported_requests_fail_clearly_and_auto_falls_back():
    with pytest.raises(ValueError, match="backend must be one of"):
        M.LIF(backend="fast")
    with pytest.raises(kernels.UnsupportedBackend, match="no fused kernel for ALIFCell"):
        M.ALIF(backend="cpp")
    alif = M.ALIF(backend="auto")
    assert alif.resolved_backend == "reference"
    alif(torch.rand(3, 2, 4))
    assert alif.resolved_backend == "reference"
    with pytest.raises(kernels.UnsupportedBackend, match="tensors"):
        M.LIF(backend="cpp", v_threshold=torch.ones(4))
    assert M.LIF(backend="auto", v_threshold=torch.ones(4)).resolved_backend == "reference"
    with pytest.raises(kernels.UnsupportedBackend, match="float32/float64 CPU"):
        M.LIF(backend="cpp")(torch.rand(3, 2, 4, dtype=torch.bfloat16))


class _ScaledFastSigmoid(FastSigmoid):
    """A user's surrogate: the library's class, its derivative five times larger (name inherited)."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return 5.0 * super().derivative(x)


def _scaled_fast_sigmoid(alpha: float = 10.0) -> _ScaledFastSigmoid:
    return _ScaledFastSigmoid(alpha)


def test_a_subclass_of_a_library_surrogate_runs_its_own_derivative(register_for_test):
    """It inherits the name ``fast_sigmoid``, which the kernels looked up: auto then ran the library's
    derivative on the C++ path, silently (gradient norm 0.44 against the subclass's 1.31 in the audit)."""
    register_for_test(SURROGATE_REGISTRY, "test_scaled_fast_sigmoid", _scaled_fast_sigmoid)
    with pytest.raises(kernels.UnsupportedBackend, match=r"_ScaledFastSigmoid\) has no fused backward.*not subclasses"):
        M.LIF(surrogate="test_scaled_fast_sigmoid", backend="cpp")
    x = torch.rand(8, 2, 5) * 3
    grads = {}
    for backend in ("reference", "auto"):
        xb = x.clone().requires_grad_()
        lif = M.LIF(surrogate="test_scaled_fast_sigmoid", backend=backend)
        z, _ = lif(xb)
        z.sum().backward()
        assert lif.resolved_backend == "reference"
        grads[backend] = xb.grad
    assert torch.equal(grads["auto"], grads["reference"]) and grads["reference"].abs().sum() > 0
    own = M.LIF(surrogate="fast_sigmoid", backend="auto")
    own(x)
    assert own.resolved_backend == "cpp"  # the library's own class keeps its kernel


def test_no_compiler_cpp_raises_auto_warns_once_and_runs_reference(monkeypatch):
    monkeypatch.setattr(_build, "compiler", lambda: None)
    monkeypatch.setattr(_build.LIBRARY, "lib", None)
    monkeypatch.setattr(_build.LIBRARY, "error", None)
    monkeypatch.setattr(kernels, "_warned", set())
    with pytest.raises(kernels.UnsupportedBackend, match="needs a C\\+\\+ compiler"):
        M.LIF(backend="cpp")
    lif = M.LIF(backend="auto")
    assert lif.resolved_backend == "reference"
    x = torch.rand(5, 2, 3) * 3
    before = kernels.CALLS["cpp_forward"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Python's own once-per-location filter must not hide a second warning
        z, _ = lif(x)
        z2, _ = lif(x)  # a second call (and a second layer) stays quiet: the fallback was already reported
        M.LIF(backend="auto")(x)
    fallback = [w for w in caught if issubclass(w.category, RuntimeWarning) and "falls back to 'reference'" in str(w.message)]
    assert len(fallback) == 1, [str(w.message) for w in caught]
    assert torch.equal(z, M.LIF()(x)[0]) and torch.equal(z2, z) and kernels.CALLS["cpp_forward"] == before
    assert lif.resolved_backend == "reference"


OPCHECK_CASES = {  # (kind, reset, surrogate, learned decay, synaptic current)
    "if": (cpu.KIND_IF, 1, 3, False, False),
    "lif": (cpu.KIND_LIF, 0, 0, False, False),
    "plif": (cpu.KIND_LIF, 1, 1, True, False),
    "cuba": (cpu.KIND_CUBA, 0, 2, False, True),
}


@pytest.mark.parametrize("case", list(OPCHECK_CASES))
def test_the_cpp_scan_is_a_well_formed_custom_operator(case):
    """``torch.library.opcheck``: the schema, the autograd registration, the fake (meta) implementation's
    shapes, strides and dtypes against the real kernel, and the AOTAutograd trace with dynamic shapes, which
    ``torch.compile`` relies on to run the kernel inside its graph."""
    kind, reset, surrogate, learned, cuba = OPCHECK_CASES[case]
    torch.manual_seed(3)
    x = (torch.randn(7, 2, 5, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    v0 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    i0 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True) if cuba else None
    a = torch.tensor(0.3, dtype=torch.float64, requires_grad=True) if learned else None
    params = [0.0 if learned else 0.2, 0.25, 1.0, 0.05, 0.9, -0.1, 1.0, 0.3, 0.7, 2.0]
    result = torch.library.opcheck(cpu.neuron_scan_forward, (x, v0, i0, a, kind, reset, surrogate, False, params, True))
    assert set(result.values()) == {"SUCCESS"}, result
    no_grad = (x.detach(), v0.detach(), None if i0 is None else i0.detach(), None if a is None else a.detach(), kind, reset, surrogate, True, params, False)
    result = torch.library.opcheck(cpu.neuron_scan_forward, no_grad)  # no membrane trace kept: an empty h
    assert set(result.values()) == {"SUCCESS"}, result
    assert cpu.neuron_scan_forward(*no_grad)[3].numel() == 0


@pytest.mark.parametrize("kind", ["lif_p", "plif_p", "cuba_p", "if_p"])
def test_compiled_layer_runs_the_cpp_kernel_in_one_graph_with_dynamic_shapes(kind):
    """``torch.compile(fullgraph=True, dynamic=True)`` of a fused layer: no graph break (``fullgraph`` would
    raise), the C++ kernel runs forward and backward, spikes, state and every gradient equal eager at two
    batch sizes and two lengths with one compiled graph. ``aot_eager`` traces as Inductor does (Dynamo, then
    AOTAutograd through the operator's fake implementation) without generating code."""
    torch.manual_seed(5)
    ref, fast = _pair(kind, "cpp", torch.float64, reset="subtract" if _base(kind) == "if" else "zero")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(fast, backend="aot_eager", fullgraph=True, dynamic=True)
    for steps, batch in ((9, 3), (6, 4)):
        x = (torch.randn(steps, batch, 11, dtype=torch.float64) * 3 + 1).requires_grad_()
        gz, gv = torch.randn_like(x), torch.randn(batch, 11, dtype=torch.float64)
        before = dict(kernels.CALLS)
        z1, s1, g1 = _grads(ref, x, None, gz, gv)
        z2, s2, g2 = _grads(compiled, x, None, gz, gv)
        assert kernels.CALLS["cpp_forward"] == before.get("cpp_forward", 0) + 1
        assert kernels.CALLS["cpp_backward"] == before.get("cpp_backward", 0) + 1
        assert 0.02 < z1.mean() < 0.9 and torch.equal(z1, z2)
        torch.testing.assert_close(s2.v, s1.v, rtol=1e-12, atol=1e-12)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_a_tensor_tau_mem_held_as_a_buffer_is_a_value_not_a_learned_decay():
    """A one-element tensor tau_mem (a buffer) reaches the kernel as a tensor decay; its gradient is not asked for,
    so CubaLIF (whose kernel has no decay gradient) trains, and LIF keeps no copy of its input for it. A CubaLIF
    decay that does require a gradient goes to the reference loop (auto) or is refused (cpp): the Triton
    kernel's backward would have returned zero for it."""
    torch.manual_seed(0)
    for cls, kw in ((M.CubaLIF, {"w_in": 0.7}), (M.LIF, {})):
        ref, fast = (cls(tau_mem=torch.tensor(5e-3), **kw, backend=b).double() for b in ("reference", "cpp"))
        x = (torch.randn(20, 3, 7, dtype=torch.float64) * 3 + 1).requires_grad_()
        gz, gv = torch.randn_like(x), torch.randn(3, 7, dtype=torch.float64)
        z1, s1, g1 = _grads(ref, x, None, gz, gv)
        before = kernels.CALLS["cpp_backward"]
        z2, s2, g2 = _grads(fast, x, None, gz, gv)
        assert kernels.CALLS["cpp_backward"] == before + 1 and torch.equal(z1, z2)
        torch.testing.assert_close(g2, g1, rtol=1e-10, atol=1e-10)
    cuba = M.CubaLIF(tau_mem=torch.tensor(5e-3), backend="auto")
    cuba.cell.tau_mem.requires_grad_()
    assert "learned tau_mem of CubaLIF" in kernels.scan_spec(cuba.cell)
    x = torch.rand(6, 2, 4) * 3
    z, _ = cuba(x)
    assert cuba.resolved_backend == "reference"
    with pytest.raises(kernels.UnsupportedBackend, match="learned tau_mem of CubaLIF"):
        kernels.run_fused("cpp", cuba.cell, x, None)


@pytest.mark.parametrize("bad", ["cuba_without_i0", "v0_shape", "i0_shape", "kind", "surrogate", "params", "a_shape", "dtype", "gradient_shape"])
def test_a_direct_call_of_the_operator_with_bad_arguments_is_refused_not_run(bad):
    """The operator hands raw pointers to C++: a wrong shape or constant must raise before the call (an
    unchecked CubaLIF call without i0 or a short v0 crashed the process), and the fake implementation refuses
    the same, so a traced call fails at trace time."""
    x, v0 = torch.rand(5, 4, 3), torch.zeros(4, 3)
    args = dict(x=x, v0=v0, i0=None, a=None, kind=cpu.KIND_LIF, reset=0, surrogate=0, detach=False, params=[0.2] * 10, keep_h=False)
    args.update({
        "cuba_without_i0": {"kind": cpu.KIND_CUBA},
        "v0_shape": {"v0": torch.zeros(3)},
        "i0_shape": {"kind": cpu.KIND_CUBA, "i0": torch.zeros(4, 2)},
        "kind": {"kind": 7},
        "surrogate": {"surrogate": 9},
        "params": {"params": [0.2] * 3},
        "a_shape": {"a": torch.ones(2)},
        "dtype": {"x": x.half(), "v0": v0.half()},
    }.get(bad, {}))
    if bad == "gradient_shape":
        h = torch.rand(5, 4, 3)
        with pytest.raises(ValueError, match="do not match h"):
            cpu.neuron_scan_backward(torch.rand(5, 4, 3), torch.rand(4), None, h, None, None, None, False, cpu.KIND_LIF, 0, 0, False, [0.2] * 10)
        return
    with pytest.raises(ValueError, match="overlooked::neuron_scan_cpu: "):
        cpu.neuron_scan_forward(**args)
    fake = {k: (v.to("meta") if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    with pytest.raises(ValueError, match="overlooked::neuron_scan_cpu: "):
        cpu.neuron_scan_forward(**fake)


def test_the_operator_runs_on_meta_tensors_with_the_real_kernels_shapes():
    x, v0, i0 = torch.rand(5, 4, 3), torch.zeros(4, 3), torch.zeros(4, 3)
    real = cpu.neuron_scan_forward(x, v0, i0, None, cpu.KIND_CUBA, 0, 0, False, [0.2] * 10, True)
    meta = cpu.neuron_scan_forward(x.to("meta"), v0.to("meta"), i0.to("meta"), None, cpu.KIND_CUBA, 0, 0, False, [0.2] * 10, True)
    assert [(t.shape, t.stride(), t.dtype) for t in meta] == [(t.shape, t.stride(), t.dtype) for t in real]
    assert all(t.is_meta for t in meta)


def test_second_derivatives_through_the_cpp_scan_fail_with_a_message():
    """A double backward (a gradient penalty) has no C++ formula: it raises and names the way out, where the
    autograd.Function version silently dropped the second-order term."""
    layer = M.PLIF(backend="cpp").double()
    x = (torch.randn(8, 2, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    z, _ = layer(x)
    (gx,) = torch.autograd.grad(z.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="backend='reference'"):
        gx.pow(2).sum().backward()


def test_forward_mode_ad_is_not_sent_to_the_fused_kernels():
    """The kernels have no forward-mode rule and PyTorch would drop the tangent without a word: under a
    forward-AD level (or torch.func.jvp) an explicit fused backend refuses, ``auto`` takes the reference loop."""
    import torch.autograd.forward_ad as fwAD

    x = torch.rand(6, 2, 5, dtype=torch.float64) * 3
    v0 = torch.randn(2, 5, dtype=torch.float64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(v0, torch.ones_like(v0))
        with pytest.raises(kernels.UnsupportedBackend, match="forward-mode AD"):
            M.LIF(tau_mem=5e-3, backend="cpp").double()(x, VState(dual))
        auto = M.LIF(tau_mem=5e-3, backend="auto").double()
        z, _ = auto(x, VState(dual))
        assert auto.resolved_backend == "reference"
        tangent = fwAD.unpack_dual(z).tangent
    # the tangent carried through the reference loop is the Jacobian-vector product reverse mode gives
    reference = M.LIF(tau_mem=5e-3, backend="reference").double()
    jacobian = torch.func.jacrev(lambda v: reference(x, VState(v))[0])(v0)  # [T, 2, 5, 2, 5]
    assert tangent.abs().sum() > 0
    torch.testing.assert_close(tangent, torch.einsum("tbnij,ij->tbn", jacobian, torch.ones_like(v0)))


def test_compiled_layers_without_a_compiler_or_inside_torch_func_take_the_reference_loop(monkeypatch):
    """Under torch.compile the backend choice asks its questions without breaking the graph; its answers must
    stay right: without a C++ compiler ``auto`` falls back to the reference loop (it raised inside the compiled
    operator), and inside a compiled ``torch.func.grad`` it takes the reference loop as in eager."""
    x = torch.rand(5, 2, 3, dtype=torch.float64) * 3
    eager = M.LIF(tau_mem=4e-3).double()(x)[0]
    expected = torch.func.grad(lambda v: M.LIF(tau_mem=4e-3).double()(v)[0].sum())(x)
    layer = M.LIF(tau_mem=4e-3, backend="auto").double()
    torch._dynamo.reset()
    got = torch.compile(torch.func.grad(lambda v: layer(v)[0].sum()), backend="aot_eager")(x)
    assert layer.resolved_backend == "reference"
    torch.testing.assert_close(got, expected)
    monkeypatch.setattr(_build, "compiler", lambda: None)
    monkeypatch.setattr(_build.LIBRARY, "lib", None)
    monkeypatch.setattr(_build.LIBRARY, "error", None)
    monkeypatch.setattr(kernels, "_warned", set())
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z, _ = torch.compile(layer, backend="aot_eager")(x)
    assert layer.resolved_backend == "reference" and torch.equal(z, eager)


NO_TRITON = importlib.util.find_spec("triton") is None


@pytest.mark.skipif(NO_TRITON, reason="triton not installed (CI installs it: `make triton`): the Triton kernels cannot run, not even under TRITON_INTERPRET=1")
def test_triton_interpreter_equals_reference_on_cpu():
    """Triton's interpreter runs the GPU kernels on CPU tensors. Whether triton interprets is fixed when it is first
    imported, which other tests (torch.compile) may already have done, so the grid runs in a fresh process with
    TRITON_INTERPRET=1 set from the start."""
    import subprocess

    env = {**os.environ, "TRITON_INTERPRET": "1", "OVERLOOKED_TRITON_CHILD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_triton_interpreter_case", f"{__file__}::test_triton_interpreter_tie"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0 and f"{4 * len(NEURONS) + len(TIES)} passed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]


# A membrane exactly on the threshold (h = 1.0) does not spike (the rule is h - threshold > 0): IF with dt r = 0.25
# and x = [4, 0, 4] from v_0 = 0 reaches 1.0 at t = 0 (spikes [0, 0, 1]); PLIF with a = sigmoid(0) = 0.5 and
# x = [2, 0.5, 1] reaches 1.0 at t = 0, the previous membrane its decay gradient rebuilds at t = 1. Random inputs
# never tie, so a kernel firing on >= passed every other test.
TIES = {
    "if_zero": ("if", "zero", [4.0, 0.0, 4.0]), "if_subtract": ("if", "subtract", [4.0, 0.0, 4.0]),
    "plif_zero": ("plif", "zero", [2.0, 0.5, 1.0]), "plif_subtract": ("plif", "subtract", [2.0, 0.5, 1.0]),
}


def _tie_check(case: str, backend: str) -> None:
    kind, reset, xs = TIES[case]
    ref, fast = _pair(kind, backend, torch.float32, reset=reset, surrogate="atan")
    results = []
    for module in (ref, fast):
        x = torch.tensor(xs).view(3, 1).requires_grad_()
        v0 = torch.zeros(1, requires_grad=True)
        z, s = module(x, VState(v0))
        loss = (z.flatten() * torch.tensor([1.0, 2.0, 3.0])).sum() + 3 * s.v.sum()
        results.append((z.detach(), s.v.detach(), torch.autograd.grad(loss, [x, v0, *module.parameters()])))
    (z1, v1, g1), (z2, v2, g2) = results
    assert z1.flatten().tolist() == ([0.0, 0.0, 1.0] if kind == "if" else [0.0, 0.0, 0.0])  # no spike at h = 1.0
    assert torch.equal(z1, z2) and torch.equal(v1, v2) and len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(TIES))
def test_cpp_kernel_at_an_exact_threshold_tie_equals_the_reference(case):
    _tie_check(case, "cpp")


@pytest.mark.skipif(os.environ.get("OVERLOOKED_TRITON_CHILD") != "1", reason="run by test_triton_interpreter_equals_reference_on_cpu in a process of its own")
@pytest.mark.parametrize("case", list(TIES))
def test_triton_interpreter_tie(case):
    assert os.environ.get("TRITON_INTERPRET") == "1"
    _tie_check(case, "triton")


@pytest.mark.skipif(os.environ.get("OVERLOOKED_TRITON_CHILD") != "1", reason="run by test_triton_interpreter_equals_reference_on_cpu in a process of its own")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("kind", list(NEURONS))
def test_triton_interpreter_case(kind, reset, dtype, monkeypatch):
    """One case of the interpreter grid: the cpp test's grid (every neuron kind, each also with all its parameters
    away from their defaults, both resets and dtypes; detach and the five surrogates spread over the cases),
    comparing spikes, v, i and every gradient (the initial v and i's too, with a loss on the final v and i), for
    each unrolling of the time loop at every length T whose last block ends on another of its steps (T = 1..U,
    so a mask off by one at any step of a block shows; float32) and at T = 10, with 2 x 19 = 38 neurons in one
    program of 256 or in two of 32 (the second with 6)."""
    from overlooked.spiking.kernels import triton_lif

    assert os.environ.get("TRITON_INTERPRET") == "1"
    index = 4 * list(NEURONS).index(kind) + 2 * (reset == "zero") + (dtype == torch.float64)
    detach, surrogate = bool(index % 2), SURROGATES[index % len(SURROGATES)]
    torch.manual_seed(0)
    ref, fast = _pair(kind, "triton", dtype, reset=reset, detach_reset=detach, surrogate=surrogate)
    cuba = _base(kind) == "cuba"
    cases = {}
    for T in range(1, 11):
        x = (torch.randn(T, 2, 19, dtype=dtype) * 3 + 1).requires_grad_()
        state = type(ref.cell.initial_state(x[0]))(*(torch.randn(2, 19, dtype=dtype).requires_grad_() for _ in range(1 + cuba)))
        cases[T] = (x, state, torch.randn_like(x), torch.randn(2, 19, dtype=dtype), torch.randn(2, 19, dtype=dtype))

    def grads(module, T):
        x, state, gz, gv, gi = cases[T]
        z, s = module(x, state)
        loss = (z * gz).sum() + (s.v * gv).sum() + ((s.i * gi).sum() if cuba else 0)
        return z, s, torch.autograd.grad(loss, [x, *state, *module.parameters()])

    expected = {T: grads(ref, T) for T in cases}
    assert 0.02 < expected[10][0].mean() < 0.9
    for unroll, block in [(1, 256), (2, 32), (4, 256), (8, 32)]:
        monkeypatch.setattr(triton_lif, "UNROLL", unroll)
        monkeypatch.setattr(triton_lif, "BLOCK", block)
        # Every tail in float32; float64 (the same masks and indices) at a short and a long T only, to keep CI short.
        for T in [*range(1, unroll + 1), 10] if dtype == torch.float32 else [3, 10]:
            z1, s1, g1 = expected[T]
            before = kernels.CALLS["triton_backward"]
            z2, s2, g2 = grads(fast, T)
            assert kernels.CALLS["triton_backward"] == before + 1
            assert torch.equal(z1, z2) and torch.equal(s1.v, s2.v), (T, unroll, block)
            if cuba:
                assert torch.equal(s1.i, s2.i), (T, unroll, block)
            tol = 1e-4 if dtype == torch.float32 else 1e-10
            for a, b in zip(g1, g2):
                torch.testing.assert_close(b, a, rtol=tol, atol=tol * max(1.0, a.abs().max().item()), msg=lambda m, u=unroll, k=block, t=T: f"T {t}, unroll {u}, block {k}: {m}")


def test_triton_launch_config_shrinks_blocks_for_small_layers(monkeypatch):
    """launch_config: the block shrinks by halves (not below 32) until the grid has MIN_PROGRAMS programs, with
    a warp per 64 neurons (at least one, at most eight); the unroll is UNROLL."""
    from overlooked.spiking.kernels import triton_lif

    monkeypatch.setattr(triton_lif, "BLOCK", 256)
    monkeypatch.setattr(triton_lif, "UNROLL", 8)
    monkeypatch.setattr(triton_lif, "MIN_PROGRAMS", 0)
    assert triton_lif.launch_config(8192) == (256, 8, 4)
    for bad in ({"UNROLL": 3}, {"UNROLL": 16}, {"UNROLL": 8, "BLOCK": 100}, {"UNROLL": 8, "BLOCK": 16}):
        with monkeypatch.context() as m:
            for key, value in bad.items():
                m.setattr(triton_lif, key, value)
            with pytest.raises(ValueError, match="UNROLL must be 1, 2, 4 or 8 and BLOCK a power of two >= 32"):
                triton_lif.launch_config(8192)
    monkeypatch.setattr(triton_lif, "MIN_PROGRAMS", 132)
    assert triton_lif.launch_config(8192) == (32, 8, 1)  # 256 programs of 32; 64 would give 128 < 132
    assert triton_lif.launch_config(65536) == (256, 8, 4)  # 256 programs already
    assert triton_lif.launch_config(20000) == (128, 8, 2)  # 79 programs of 256, 157 of 128
    assert triton_lif.launch_config(10) == (32, 8, 1)


@pytest.mark.skipif(NO_TRITON, reason="triton not installed")
def test_the_triton_kernel_refuses_inputs_past_its_32_bit_indexing():
    """The kernels index ``t * N + offs`` in 32-bit integers: T x N >= 2**31 would wrap around silently."""
    from overlooked.errors import InputError
    from overlooked.spiking.kernels.triton_lif import TritonNeuronScan

    _, fast = _pair("lif", "triton", torch.float32)
    spec, _ = kernels.scan_spec(fast.cell)
    x = torch.empty(2**16, 2**15, device="meta")  # nothing is allocated
    with pytest.raises(InputError, match=r"\(T \+ 8\) x N must stay below 2\*\*31; this input has T x N = 65536 x 32768"):
        TritonNeuronScan.apply(x, torch.empty(2**15, device="meta"), None, None, spec)
    x = torch.empty(2**16 - 1, 2**15, device="meta")  # T x N < 2**31, but the last block's masked lanes reach past it
    with pytest.raises(InputError, match=r"must stay below 2\*\*31; this input has T x N = 65535 x 32768"):
        TritonNeuronScan.apply(x, torch.empty(2**15, device="meta"), None, None, spec)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_triton_equals_reference_on_gpu(reset):
    pytest.importorskip("triton", reason="triton not installed")
    torch.manual_seed(0)
    ref, fast = _pair("lif", "triton", torch.float32, reset=reset)
    ref, fast = ref.cuda(), fast.cuda()
    x = (torch.randn(25, 3, 41, device="cuda") * 3 + 1).requires_grad_()
    gz, gv = torch.randn_like(x), torch.randn(3, 41, device="cuda")
    before = kernels.CALLS["triton_forward"]
    z1, s1, g1 = _grads(ref, x, None, gz, gv)
    z2, s2, g2 = _grads(fast, x, None, gz, gv)
    assert kernels.CALLS["triton_forward"] == before + 1
    assert torch.equal(z1, z2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_auto_says_once_when_the_input_dtype_sends_it_to_the_reference_loop(monkeypatch):
    """Under bf16 autocast the neurons get bf16 input; auto used to switch to the slow loop without a word."""
    monkeypatch.setattr(kernels, "_warned", set())
    x = torch.rand(4, 2, 3, dtype=torch.bfloat16) * 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lif = M.LIF(backend="auto")
        z, _ = lif(x)
        lif(x)
        M.LIF(backend="auto")(torch.rand(4, 2, 3))  # float32: no word
    said = [str(w.message) for w in caught if "runs the reference loop" in str(w.message)]
    assert len(said) == 1 and "for torch.bfloat16" in said[0]  # once, and for the bf16 input only
    assert lif.resolved_backend == "reference" and torch.equal(z, M.LIF()(x)[0])


@pytest.mark.skipif(NO_TRITON, reason="triton not installed: backend='triton' accepts no CPU tensor to test with")
def test_an_explicit_triton_backend_refuses_half_precision_input(monkeypatch):
    """backend='triton' sent bf16/fp16 input to a kernel whose constants and gradients would then be rounded to
    that dtype; it is refused with the fix (auto keeps its documented reference-loop fallback, with a warning)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # lets choose() accept CPU tensors for the triton backend
    cell = M.LIF().cell
    for dtype in (torch.bfloat16, torch.float16):
        with pytest.raises(kernels.UnsupportedBackend, match=rf"backend='triton' runs float32/float64 tensors, got torch.{'bfloat16' if dtype == torch.bfloat16 else 'float16'}; cast"):
            kernels.choose("triton", cell, torch.zeros(3, 2, dtype=dtype))
    assert kernels.choose("triton", cell, torch.zeros(3, 2)) == "triton"


@pytest.mark.skipif(NO_TRITON, reason="triton not installed")
@pytest.mark.parametrize("unroll", [1, 8])
def test_triton_kernels_compile_for_hopper_with_a_blocks_loads_before_its_stores(unroll):
    """No GPU is needed to compile: the forward and backward scans build for sm_90 (PTX and cubin, through ptxas), and
    in the forward's time loop every load of the block's UNROLL inputs is issued before the first store, which is
    what lets one memory latency cover UNROLL steps (stores may alias the input, so the compiler cannot hoist
    loads above them itself)."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from overlooked.spiking.kernels import triton_lif

    fwd = {n: "*fp32" for n in ("x_ptr", "z_ptr", "h_ptr", "v_ptr", "i_ptr", "p_ptr")} | {"T": "i32", "N": "i32"}
    fwd |= dict.fromkeys(("KIND", "RESET", "SAVE", "BLOCK_N", "UNROLL"), "constexpr")
    bwd = {n: "*fp32" for n in ("gz_ptr", "h_ptr", "x_ptr", "v0_ptr", "gvT_ptr", "giT_ptr", "gx_ptr", "gv0_ptr", "gi0_ptr", "ga_ptr", "p_ptr")}
    bwd |= {"T": "i32", "N": "i32", "detach_keep": "fp32"} | dict.fromkeys(("KIND", "RESET", "SURR", "LEARN", "BLOCK_N", "UNROLL"), "constexpr")
    target, options = GPUTarget("cuda", 90, 32), {"enable_fp_fusion": False, "num_warps": 4}
    try:
        k = triton.compile(ASTSource(fn=triton_lif._forward, signature=fwd, constexprs={"KIND": 1, "RESET": 0, "SAVE": True, "BLOCK_N": 256, "UNROLL": unroll}), target=target, options=options)
    except RuntimeError as exc:  # e.g. a triton build without its bundled ptxas
        pytest.skip(f"triton cannot compile for sm_90 here: {exc}")
    consts = {"KIND": 1, "RESET": 1, "SURR": 1, "LEARN": True, "BLOCK_N": 256, "UNROLL": unroll}  # PLIF, learned decay
    kb = triton.compile(ASTSource(fn=triton_lif._backward, signature=bwd, constexprs=consts), target=target, options=options)
    assert kb.asm["cubin"]

    def loop_order(ptx: str) -> tuple[list[int], list[int]]:
        loop = re.search(r"\$L__BB0_\d+:\s+// %\.lr\.ph\n(.*?)bra", ptx, re.S)  # the time loop's body, up to its back branch
        assert loop is not None, ptx[:2000]
        body = [line for line in loop.group(1).splitlines() if "ld.global" in line or "st.global" in line]
        return [i for i, line in enumerate(body) if "ld.global" in line], [i for i, line in enumerate(body) if "st.global" in line]

    loads, stores = loop_order(k.asm["ptx"])
    assert len(loads) == 2 * unroll and len(stores) == 2 * 2 * unroll  # 2 neurons per thread; z and h per step
    assert max(loads) < min(stores)
    loads, stores = loop_order(kb.asm["ptx"])  # h, spike gradient and x per step, and the h before the block
    assert len(loads) == 2 * (3 * unroll + 1) and len(stores) == 2 * unroll and max(loads) < min(stores)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_learned_decay_gradient_with_an_initial_state_above_threshold(reset):
    """A given v_0 above the threshold is not reset at t = 0 (no spike precedes it): the C++ kernel's PLIF decay
    gradient equals the reference's when every v_0 is 1.5 against a threshold of 0.8."""
    torch.manual_seed(6)
    ref, fast = _pair("plif_p", "cpp", torch.float64, reset=reset)
    x = (torch.randn(7, 2, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    state = type(ref.cell.initial_state(x[0]))(torch.full((2, 5), 1.5, dtype=torch.float64, requires_grad=True))
    gz, gv = torch.randn_like(x), torch.randn(2, 5, dtype=torch.float64)
    z1, s1, g1 = _grads(ref, x, state, gz, gv)
    z2, s2, g2 = _grads(fast, x, state, gz, gv)
    assert torch.equal(z1, z2) and len(g1) == len(g2) == 3  # x, v_0, PLIF's decay parameter
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["plif", "plif_p"])
def test_learned_decay_gradient_when_the_input_asks_for_none(kind):
    """Raw data or a frozen layer before a PLIF: only the decay parameter asks for a gradient, so the C++ scan
    must still keep its membrane trace (it once kept it only when x, v_0 or i_0 asked), and the decay
    gradient equals the reference's."""
    torch.manual_seed(7)
    ref, fast = _pair(kind, "cpp", torch.float64)
    x = torch.randn(10, 2, 6, dtype=torch.float64) * 3 + 1  # no requires_grad
    grads = []
    for layer in (ref, fast):
        z, s = layer(x)
        (z.sum() + s.v.sum()).backward()
        grads.append(layer.cell.w.grad)
    assert grads[0] is not None and grads[0].abs() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_a_membrane_exactly_at_the_threshold_does_not_spike(backend):
    """The rule is h - threshold > 0, strictly: IF with dt r = 0.25 and input 4 reaches h = 1.0, the
    threshold, at t = 0 (no spike), then h = 2.0 at t = 1 (spike, subtract reset to 1.0) and again at t = 2."""
    layer = M.IF(r=250.0, reset="subtract", backend=backend).double()
    z, s = layer(torch.full((3, 1, 1), 4.0, dtype=torch.float64))
    assert z.flatten().tolist() == [0.0, 1.0, 1.0] and s.v.item() == 1.0
    torch.manual_seed(8)  # dyadic inputs make exact hits common; both backends agree bit for bit on them
    x = torch.randint(-8, 9, (40, 3, 7)).double() / 4
    ref, fast = _pair("if", "cpp", torch.float64, reset="subtract")
    (z1, s1), (z2, s2) = ref(x), fast(x)
    assert torch.equal(z1, z2) and torch.equal(s1.v, s2.v)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_the_rectangle_surrogate_is_zero_on_its_edge(backend):
    """Rectangle with alpha = 1 is 1 on |h - threshold| < 1/2 and 0 outside, its edge included: IF with
    dt r = 0.25 and input 6 has h - threshold = 0.5 exactly, so the input's gradient is 0 (0.25 inside)."""
    for value, expected in ((6.0, 0.0), (5.9, 0.25)):
        layer = M.IF(r=250.0, surrogate="rectangle", surrogate_alpha=1.0, backend=backend).double()
        x = torch.full((1, 1, 1), value, dtype=torch.float64, requires_grad=True)
        z, _ = layer(x)
        z.sum().backward()
        assert x.grad.item() == pytest.approx(expected, abs=1e-15)
