"""Neurons: a hand-computed LIF trajectory, resets, cell-in-a-loop = sequence, functional = module."""

from __future__ import annotations

import pytest
import torch

from overlooked.spiking import modules as M
from overlooked.spiking import neurons as N
from overlooked.spiking.surrogate import ATan


def test_hand_computed_lif_trajectory():
    # tau_mem = 4 ms, dt = 1 ms: v <- v + 0.25 (0 - v + 1 * 1.2) = 0.75 v + 0.3; threshold 1, reset to 0
    p = N.LIFParameters(tau_mem=4e-3, v_threshold=1.0, reset="zero")
    state, vs, zs = N.VState(torch.zeros(1)), [], []
    for _ in range(8):
        z, state = N.lif_step(torch.tensor([1.2]), state, p, 1e-3, ATan(2.0))
        vs.append(round(float(state.v), 6))
        zs.append(int(z))
    v, expected_v, expected_z = 0.0, [], []
    for _ in range(8):
        v = 0.75 * v + 0.3
        spike = v > 1.0
        expected_z.append(int(spike))
        v = 0.0 if spike else v
        expected_v.append(round(v, 6))
    assert zs == expected_z and vs == expected_v
    assert 1 in zs  # the drive pulls v towards 1.2, above threshold


def test_hand_computed_cuba_lif_trajectory():
    """CubaLIF, dt = 1 ms, tau_syn = 2 ms, tau_mem = 4 ms (dt/tau 0.5 and 0.25), inputs 1, 0, 0 from rest, no
    spike: v charges with the old current, then i decays by dt/tau_syn and takes the input. Step 1: v = 0, i = 1;
    step 2: v = 0.25 (1 - 0) * 1 = 0.25, i = 0.5; step 3: v = 0.25 + 0.25 (0.5 - 0.25) = 0.3125, i = 0.25. (The
    fused kernel is checked against this path elsewhere; this pins the path itself, where no compiler is.)"""
    p = N.CubaLIFParameters(tau_syn=2e-3, tau_mem=4e-3, v_threshold=10.0)
    state, vs, currents = N.CubaState(torch.zeros(1), torch.zeros(1)), [], []
    for x in (1.0, 0.0, 0.0):
        z, state = N.cuba_lif_step(torch.tensor([x]), state, p, 1e-3, ATan(2.0))
        assert float(z) == 0.0
        vs.append(float(state.v))
        currents.append(float(state.i))
    assert vs == pytest.approx([0.0, 0.25, 0.3125], abs=1e-7) and currents == pytest.approx([1.0, 0.5, 0.25], abs=1e-7)
    seq = M.CubaLIF(tau_syn=2e-3, tau_mem=4e-3, v_threshold=10.0, backend="reference")
    spikes, final = seq(torch.tensor([[1.0], [0.0], [0.0]]))
    assert not spikes.any() and float(final.v) == pytest.approx(0.3125, abs=1e-7) and float(final.i) == pytest.approx(0.25, abs=1e-7)


def test_reset_modes_and_detach():
    v, z = torch.tensor([1.5], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    assert N.reset(v, z, 1.0, 0.0, "zero", False).item() == 0.0
    assert N.reset(v, z, 1.0, 0.0, "subtract", False).item() == 0.5
    out = N.reset(v, z, 1.0, 0.0, "zero", True)
    out.backward()
    assert z.grad is None  # detached reset: no gradient through the spike
    with pytest.raises(ValueError, match="reset must be"):
        N.reset(v, z, 1.0, 0.0, "hard", False)


def test_if_integrates_without_leak():
    p = N.IFParameters(v_threshold=1.0, reset="subtract")
    state, count = N.VState(torch.zeros(1)), 0
    for _ in range(10):
        z, state = N.if_step(torch.tensor([0.3]), state, p, 1.0, ATan(2.0))
        count += int(z)
    assert count == 3 and abs(float(state.v) - 0.0) < 1e-6  # 3.0 of charge, 3 spikes, nothing left


CELLS = [
    (M.IFCell, M.IF, {"dt": 1.0}),
    (M.LIFCell, M.LIF, {"tau_mem": 5e-3}),
    (M.CubaLIFCell, M.CubaLIF, {"tau_mem": 5e-3, "tau_syn": 3e-3}),
    (M.ALIFCell, M.ALIF, {"tau_mem": 5e-3}),
    (M.PLIFCell, M.PLIF, {}),
]


@pytest.mark.parametrize("cell_cls, seq_cls, params", CELLS)
def test_cell_in_a_loop_equals_sequence_module(cell_cls, seq_cls, params):
    torch.manual_seed(0)
    x = torch.rand(12, 3, 5) * 3  # [T, B, N]
    params = {"dt": 1e-3, **params}
    seq = seq_cls(**params)
    cell = cell_cls(**params)
    cell.load_state_dict(seq.cell.state_dict())
    z_seq, s_seq = seq(x)
    state, zs = None, []
    for t in range(x.shape[0]):
        z, state = cell(x[t], state)
        zs.append(z)
    assert torch.equal(torch.stack(zs), z_seq)
    for a, b in zip(state, s_seq):
        assert torch.equal(a, b)
    assert z_seq.sum() > 0 and set(z_seq.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("cell_cls, seq_cls, params", CELLS + [(M.RecurrentLIFCell, M.RecurrentLIF, {"tau_mem": 5e-3, "size": 5})])
def test_forward_mode_jacobian_equals_reverse_mode(cell_cls, seq_cls, params):
    """jacfwd (forward-mode AD through the surrogate spike's jvp) and jacrev agree on every neuron sequence."""
    torch.manual_seed(0)
    seq = seq_cls(**{"dt": 1e-3, **params}).double()
    x = torch.rand(7, 2, 5, dtype=torch.float64) * 3
    forward, reverse = (jac(lambda v: seq(v)[0])(x) for jac in (torch.func.jacfwd, torch.func.jacrev))
    assert reverse.abs().sum() > 0
    torch.testing.assert_close(forward, reverse)


def test_functional_equals_module_and_state_is_a_value():
    x = torch.rand(6, 2, 4, generator=torch.Generator().manual_seed(0)) * 3
    mod = M.LIF(dt=1e-3, tau_mem=5e-3)
    z1, _ = mod(x)
    assert 0 < z1.sum() < z1.numel(), "spikes and silences must both happen for the comparisons to mean anything"
    assert z1[3:].sum() > 0  # the continued half (second call from the returned state) spikes too
    z2, _ = mod(x)  # a second call starts from rest again
    assert torch.equal(z1, z2)
    state, zs = N.VState(torch.zeros(2, 4)), []
    for t in range(6):
        z, state = N.lif_step(x[t], state, N.LIFParameters(tau_mem=5e-3), 1e-3, mod.cell.spike_fn)
        zs.append(z)
    assert torch.equal(torch.stack(zs), z1)
    # continuing from a returned state = one long call
    za, sa = mod(x[:3])
    zb, _ = mod(x[3:], sa)
    assert torch.equal(torch.cat([za, zb]), z1)


def test_surrogate_gradient_reaches_input_and_plif_tau():
    x = (torch.rand(8, 2, 3, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_(True)
    mod = M.PLIF(dt=1e-3, init_tau=2.0)
    z, _ = mod(x)
    assert 0 < z.sum() < z.numel()
    z.sum().backward()
    assert x.grad.abs().sum() > 0 and mod.cell.w.grad is not None and mod.cell.w.grad != 0
    assert abs(float(mod.cell.params().tau_mem.detach()) - 2e-3) < 1e-9


def test_recurrent_lif_uses_previous_spikes():
    torch.manual_seed(0)
    mod = M.RecurrentLIF(4, dt=1e-3, tau_mem=5e-3)
    x = torch.rand(10, 2, 4) * 3
    z, _ = mod(x)
    with torch.no_grad():
        mod.cell.recurrent.weight.zero_()
    z0, _ = mod(x)
    lif, _ = M.LIF(dt=1e-3, tau_mem=5e-3)(x)
    assert torch.equal(z0, lif) and not torch.equal(z, z0)


# ---- construction checks: forward Euler, names; tensor parameters are buffers; docs; exports ------------


@pytest.mark.parametrize(
    "build, field, shown",
    [
        (lambda: M.LIFCell(tau_mem=0.4e-3), "tau_mem", "0.0004 s"),  # dt / tau = 2.5: the leak diverges
        (lambda: M.LIF(tau_mem=torch.tensor([5e-3, 0.8e-3])), "tau_mem", "0.0008 s"),  # the smallest element
        (lambda: M.LIF(dt=20e-3), "tau_mem", "0.01 s"),  # the default tau_mem (10 ms) at a coarse dt
        (lambda: M.CubaLIF(tau_syn=0.5e-3), "tau_syn", "0.0005 s"),
        (lambda: M.ALIF(tau_adapt=0.9e-3), "tau_adapt", "0.0009 s"),
        (lambda: M.RecurrentLIF(3, tau_mem=0.5e-3), "tau_mem", "0.0005 s"),
    ],
)
def test_a_time_constant_below_dt_is_refused_when_built(build, field, shown):
    with pytest.raises(ValueError, match=rf"{field} = {shown}, so dt / {field} = .* at dt = 0\.0\d+ s; forward Euler needs dt / tau <= 1.*Give {field} >= dt"):
        build()


@pytest.mark.parametrize("tau", [0.0, -1e-3, float("nan"), torch.tensor([1e-2, float("nan")])])
def test_a_non_positive_time_constant_is_refused(tau):
    with pytest.raises(ValueError, match="tau_mem = .*a time constant must be positive"):
        M.LIF(tau_mem=tau)


def test_a_time_constant_equal_to_dt_is_the_allowed_memoryless_limit():
    x = torch.rand(5, 2, 3) * 3
    for tau in (1e-3, torch.tensor(1e-3, dtype=torch.float32)):  # float32 rounding of dt is within the slack
        z, _ = M.LIF(dt=1e-3, tau_mem=tau)(x)
        assert torch.isfinite(z).all()


@pytest.mark.parametrize("dt", [0.0, -1e-3, float("inf"), float("nan"), True])
def test_dt_must_be_a_positive_number(dt):
    with pytest.raises(ValueError, match="dt must be a positive, finite number of seconds"):
        M.LIFCell(dt=dt)


@pytest.mark.parametrize("init_tau", [0.5, 1.0, float("inf"), float("nan")])
def test_plif_init_tau_must_keep_w_finite(init_tau):
    # w = -log(init_tau - 1): NaN below 1, inf at 1; before this check both built and trained silently
    with pytest.raises(ValueError, match=rf"PLIF init_tau = {init_tau!r} .* must be one finite number > 1.*w = -log\(init_tau - 1\).*init_tau > 1, i\.e\. tau_mem > dt"):
        M.PLIF(init_tau=init_tau)


def test_plif_checks_its_init_tau_not_the_unused_record_tau_at_a_coarse_dt():
    mod = M.PLIF(dt=20e-3, init_tau=2.0)  # the record's default tau_mem (10 ms) is replaced by the learned one
    assert abs(float(mod.cell.params().tau_mem.detach()) - 40e-3) < 1e-9 and bool(torch.isfinite(mod.cell.w))


@pytest.mark.parametrize(
    "build, unknown, cls",
    [
        (lambda: M.LIF(tau=5e-3), "'tau'", N.LIFParameters),
        (lambda: M.CubaLIFCell(tau_synapse=5e-3, thr=1.0), "'tau_synapse', 'thr'", N.CubaLIFParameters),
        (lambda: M.IF(tau_mem=5e-3), "'tau_mem'", N.IFParameters),
    ],
)
def test_unknown_neuron_keywords_are_named_with_the_allowed_fields(build, unknown, cls):
    with pytest.raises(TypeError, match=rf"unknown keyword argument\(s\) \[{unknown}\]; its {cls.__name__} fields are {', '.join(cls._fields)}, and its other arguments dt, surrogate, surrogate_alpha"):
        build()


def test_plif_refuses_tau_mem_since_it_is_learned():
    with pytest.raises(TypeError, match=r"\['tau_mem'\].*fields are r, v_leak, .*\(tau_mem is learned, not an argument\).*init_tau"):
        M.PLIF(tau_mem=5e-3)


def test_tensor_parameters_are_buffers_that_follow_to_and_the_state_dict():
    tau = torch.full((5,), 5e-3)
    mod = M.LIF(tau_mem=tau, v_threshold=torch.tensor(0.8))
    assert set(mod.state_dict()) == {"cell.tau_mem", "cell.v_threshold"} and mod.cell.params().tau_mem is mod.cell.tau_mem
    x = torch.rand(4, 2, 5) * 3
    z, _ = mod(x)
    # dtype and device move with .to()
    half = M.LIF(tau_mem=tau.clone()).to(torch.bfloat16)
    assert half.cell.params().tau_mem.dtype == torch.bfloat16
    meta = M.LIF(tau_mem=tau.clone(), v_threshold=torch.tensor(0.8)).to("meta")
    zm, sm = meta(torch.empty(4, 2, 5, device="meta"))
    assert zm.device.type == "meta" and sm.v.shape == (2, 5)
    # the state_dict carries the values: a module built with other tensors loads them and computes the same
    other = M.LIF(tau_mem=torch.full((5,), 9e-3), v_threshold=torch.tensor(2.0))
    other.load_state_dict(mod.state_dict())
    assert torch.equal(other(x)[0], z)


def test_number_parameters_stay_attributes_so_old_state_dicts_still_load():
    mod = M.LIF(tau_mem=5e-3, v_threshold=0.8)
    assert dict(mod.state_dict()) == {} and mod.cell.params() == N.LIFParameters(tau_mem=5e-3, v_threshold=0.8)
    plif = M.PLIF()
    assert list(plif.state_dict()) == ["cell.w"]  # as before: only the learned w


SEQUENCES = [(M.IF, N.IFParameters, ()), (M.LIF, N.LIFParameters, ()), (M.CubaLIF, N.CubaLIFParameters, ()), (M.ALIF, N.ALIFParameters, ()), (M.PLIF, N.LIFParameters, ("tau_mem",)), (M.RecurrentLIF, N.LIFParameters, ())]


@pytest.mark.parametrize("seq, record, learned", SEQUENCES)
def test_sequence_docstrings_list_every_parameter_with_its_default(seq, record, learned):
    import re

    doc = seq.__doc__ or ""
    defaults = {f: record._field_defaults[f] for f in record._fields if f not in learned}
    defaults.update(dt=0.001, surrogate="atan", surrogate_alpha=None, backend="reference")
    if seq is M.PLIF:
        defaults["init_tau"] = 2.0
    for name, default in defaults.items():
        assert re.search(rf"^\s+{name} \((?:[^()]*, )?default {re.escape(repr(default))}\):", doc, re.M), f"{seq.__name__}: {name} (default {default!r}) not documented"
    assert "[T, B, ...]" in doc and "(spikes [T, B, ...], state)" in doc
    for name in learned:
        assert not re.search(rf"^\s+{name} \(", doc, re.M)
    # the documented defaults are the code's (the cell's signature for dt and the surrogate)
    import inspect

    sig = inspect.signature(seq.cell_cls.__init__).parameters
    assert (sig["dt"].default, sig["surrogate"].default, sig["surrogate_alpha"].default) == (0.001, "atan", None)


def test_the_package_exports_the_modules_networks_are_built_from():
    import subprocess
    import sys

    import overlooked.spiking as S
    from overlooked.spiking import models

    assert S.LIF is M.LIF and S.PLIFCell is M.PLIFCell and S.SpikingNet is models.SpikingNet
    assert all(getattr(S, name) is not None for name in S.__all__)
    assert {"IF", "LIF", "CubaLIF", "ALIF", "PLIF", "RecurrentLIF", "IFCell", "LIFCell", "CubaLIFCell", "ALIFCell", "PLIFCell", "RecurrentLIFCell", "SpikingBlock", "SpikingNet"} <= set(S.__all__)
    # a fresh interpreter: importing the package pulls in neither NIR nor a peer library
    code = "import sys, overlooked.spiking; from overlooked.spiking import LIF; print(sorted(m for m in ('nir', 'snntorch', 'norse', 'spikingjelly', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_a_users_sequence_over_their_own_cell_gets_a_docstring_too():
    """The generated help() must not fail on arguments the library's table does not know."""

    class GainCell(M.LIFCell):
        def __init__(self, gain: float = 2.0, **kwargs):
            super().__init__(**kwargs)
            self.gain = gain

    class GainLIF(M.LIF):
        """A LIF with a gain."""

        cell_cls = GainCell

    assert GainLIF.__doc__.startswith("A LIF with a gain.") and "gain (default 2.0): see :class:`GainCell`." in GainLIF.__doc__
    z, _ = GainLIF(tau_mem=5e-3)(torch.ones(3, 2, 4))
    assert z.shape == (3, 2, 4)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpp", marks=pytest.mark.skipif(__import__("overlooked.native", fromlist=["compiler"]).compiler() is None, reason="no C++ compiler"))])
def test_state_records_broadcast_shapes_and_dtypes_alike_on_both_backends(backend):
    """A CubaLIF state that broadcasts to the input (a [1, N] row) gives spikes of the input's shape (the cell
    gave [1, N] spikes, the loop blamed the parameters); the fused backend checks the state's kind as the
    loop does (a tuple or bare tensor was an AttributeError, another neuron's record was accepted); a float64
    state with float32 input runs in float64 on both backends."""
    from overlooked.errors import InputError
    from overlooked.spiking.modules import CubaLIF, CubaLIFCell
    from overlooked.spiking.neurons import CubaState, VState

    torch.manual_seed(0)
    x = torch.rand(3, 4, 5) * 3
    row = CubaState(torch.zeros(1, 5), torch.full((1, 5), 2.0))
    z, state = CubaLIF(backend=backend)(x, row)
    full = CubaState(torch.zeros(4, 5), torch.full((4, 5), 2.0))
    z_full, state_full = CubaLIF(backend=backend)(x, full)
    assert z.shape == x.shape and torch.equal(z, z_full) and torch.equal(state.v, state_full.v)
    zc, sc = CubaLIFCell()(x[0], row)
    assert zc.shape == x[0].shape and sc.v.shape == x[0].shape
    for bad, name in (((torch.zeros(4, 5),), "tuple"), (torch.zeros(4, 5), "Tensor"), (full, "CubaState")):
        with pytest.raises(InputError, match=f"LIFCell takes its state as VState\\(v\\); got {name}"):
            M.LIF(backend=backend)(x, bad)
    z64, s64 = M.LIF(backend=backend)(x, VState(torch.zeros(4, 5, dtype=torch.float64)))
    assert z64.dtype == s64.v.dtype == torch.float64
    zc64, _ = CubaLIF(backend=backend)(x, CubaState(torch.zeros(4, 5), torch.zeros(4, 5, dtype=torch.float64)))  # i alone float64
    assert zc64.dtype == torch.float64


def test_a_parameter_given_as_nn_parameter_is_learned():
    """v_threshold=nn.Parameter(...) is registered as a parameter (an optimiser updates it); a plain tensor
    stays a buffer (it had a gradient no optimiser ever saw)."""
    from torch import nn

    learned = M.LIF(v_threshold=nn.Parameter(torch.ones(5)))
    assert [n for n, _ in learned.named_parameters()] == ["cell.v_threshold"] and not list(learned.named_buffers())
    z, _ = learned(torch.rand(4, 3, 5) * 2)
    z.sum().backward()
    assert learned.cell.v_threshold.grad is not None and bool(learned.cell.v_threshold.grad.abs().sum() > 0)
    fixed = M.LIF(v_threshold=torch.ones(5))
    assert not list(fixed.parameters()) and [n for n, _ in fixed.named_buffers()] == ["cell.v_threshold"]


def _alif_run(reset: str, steps: int = 5) -> tuple[list[int], list[float], list[float]]:
    """Five steps of alif_step at tau_mem 2 ms, tau_adapt 4 ms, beta_adapt 0.5, dt 1 ms, constant x = 4."""
    p = N.ALIFParameters(tau_mem=2e-3, tau_adapt=4e-3, beta_adapt=0.5, v_threshold=1.0, reset=reset)
    state, zs, vs, as_ = N.ALIFState(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)), [], [], []
    for _ in range(steps):
        z, state = N.alif_step(torch.tensor([4.0], dtype=torch.float64), state, p, 1e-3, ATan(2.0))
        zs.append(int(z))
        vs.append(float(state.v))
        as_.append(float(state.a))
    return zs, vs, as_


def test_alif_trajectory_with_zero_reset_by_hand():
    """ALIF, zero reset: threshold 1 + 0.5 a, a <- 0.75 a + z, by hand (every value a dyadic fraction, exact)."""
    # dt / tau_mem = 0.5: v <- 0.5 v + 0.5 * 4 = 0.5 v + 2; dt / tau_adapt = 0.25: a <- 0.75 a + z
    # t0: v 2 > 1 + 0.5*0 = 1        spike, v 0, a 1
    # t1: v 2 > 1 + 0.5*1 = 1.5      spike, v 0, a 0.75 + 1 = 1.75
    # t2: v 2 > 1 + 0.875 = 1.875    spike, v 0, a 1.3125 + 1 = 2.3125
    # t3: v 2 <= 1 + 1.15625         silent, v 2, a 1.734375
    # t4: v 1 + 2 = 3 > 1 + 0.8671875 spike, v 0, a 1.30078125 + 1 = 2.30078125
    zs, vs, as_ = _alif_run("zero")
    assert zs == [1, 1, 1, 0, 1]
    assert vs == [0.0, 0.0, 0.0, 2.0, 0.0]
    assert as_ == [1.0, 1.75, 2.3125, 1.734375, 2.30078125]


def test_alif_subtract_reset_subtracts_the_adapted_threshold_by_hand():
    """ALIF, subtract reset: a spike removes the adapted threshold 1 + 0.5 a (not the base 1), by hand."""
    # t0: v 2     > 1        spike, v 2 - 1 = 1,            a 1
    # t1: v 2.5   > 1.5      spike, v 2.5 - 1.5 = 1,        a 1.75
    # t2: v 2.5   > 1.875    spike, v 2.5 - 1.875 = 0.625,  a 2.3125
    # t3: v 2.3125 > 2.15625 spike, v 0.15625,              a 1.734375 + 1 = 2.734375
    # t4: v 2.078125 <= 2.3671875 silent, v 2.078125,       a 2.05078125
    zs, vs, as_ = _alif_run("subtract")
    assert zs == [1, 1, 1, 1, 0]
    assert vs == [1.0, 1.0, 0.625, 0.15625, 2.078125]
    assert as_ == [1.0, 1.75, 2.3125, 2.734375, 2.05078125]
    # the sequence module runs the same step: its spikes and final state are these
    z, state = M.ALIF(dt=1e-3, tau_mem=2e-3, tau_adapt=4e-3, beta_adapt=0.5, reset="subtract")(torch.full((5, 1, 1), 4.0, dtype=torch.float64))
    assert z.flatten().tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert (float(state.v), float(state.a)) == (2.078125, 2.05078125)


def test_recurrent_lif_spike_of_neuron_1_drives_neuron_0_one_step_later_by_hand():
    """W_rec = [[0, 3], [0, 0]]: neuron 1's spike at t adds 3 to neuron 0's current at t + 1 (row = target)."""
    mod = M.RecurrentLIF(2, dt=1e-3, tau_mem=2e-3).double()
    with torch.no_grad():
        mod.cell.recurrent.weight.copy_(torch.tensor([[0.0, 3.0], [0.0, 0.0]]))
    x = torch.tensor([[0.5, 3.0], [0.5, 0.0], [0.5, 0.0], [0.5, 3.0], [0.5, 0.0], [0.5, 0.0]], dtype=torch.float64)[:, None]  # [T, 1, 2]
    z, (vstate, z_last) = mod(x)
    # v <- 0.5 v + 0.5 (x + W z_prev), spike when v > 1, reset to 0.
    # neuron 1 (x 3, 0, 0, 3, 0, 0; no recurrent input): v 1.5 spike, 0, 0, 1.5 spike, 0, 0
    # neuron 0 (x 0.5, plus 3 z1[t-1]): v 0.25; 0.125 + 0.25 + 1.5 = 1.875 spike -> 0; 0.25; 0.375;
    #   0.1875 + 0.25 + 1.5 = 1.9375 spike -> 0; 0.25
    assert z[:, 0, 1].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert z[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert vstate.v[0].tolist() == [0.25, 0.0] and z_last[0].tolist() == [0.0, 0.0]


def test_recurrent_lif_gradient_flows_back_through_the_recurrent_spikes():
    """BPTT through W_rec z_{t-1}: the input gradient equals a hand-unrolled loop's, and reaches neuron 0 from x_1."""
    torch.manual_seed(0)
    mod = M.RecurrentLIF(2, dt=1e-3, tau_mem=2e-3).double()
    w = torch.tensor([[0.0, 3.0], [0.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        mod.cell.recurrent.weight.copy_(w)
    x = torch.tensor([[0.5, 3.0], [0.5, 0.0], [0.5, 0.0], [0.5, 3.0], [0.5, 0.0], [0.5, 0.0]], dtype=torch.float64)[:, None]
    weights = torch.rand(6, 1, 2, dtype=torch.float64)  # a loss that reads every spike
    x1 = x.clone().requires_grad_(True)
    (mod(x1)[0] * weights).sum().backward()
    # the same network unrolled by hand: v <- v + 0.5 (-v + x + W z_prev), z = spike(v - 1), v <- v - z v
    x2 = x.clone().requires_grad_(True)
    v, z, zs = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64), []
    for t in range(6):
        v = v + 0.5 * (-v + x2[t] + z @ w.T)
        z = mod.cell.spike_fn(v - 1.0)
        v = v - z * v
        zs.append(z)
    (torch.stack(zs) * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    # neuron 0 sees x_1 only through the recurrence: d z0[4] / d x1[3] is nonzero only if the spikes are not detached
    x3 = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mod(x3)[0][4, 0, 0], x3)
    assert g[3, 0, 1] != 0 and g[:, 0, 1].abs().sum() > 0
