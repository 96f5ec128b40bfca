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
