"""Launch-configuration sweep of the Triton neuron scans on a GPU (run by ``SWEEP=1 scripts/gpu_spiking.sh``).

For each (block, unroll, min_programs) it first checks the kernels against the reference loop on CUDA (IF, LIF,
PLIF with a learned decay, CubaLIF; both resets; T = 1..8 and 37; spikes, v, i exactly, gradients, the initial
state's included, to 1e-4) and then times the
LIF alone (``neuron_only_figures``: forward keeping h, inference, backward, each against a copy) at T = 500, B = 16,
n = 512 and 4096. It prints one JSON object: every configuration's check and times, and the one with the least
forward + backward time at n = 512 that passed its checks (ties to the earlier; none is chosen on a failed check).
"""

from __future__ import annotations

import json
import sys

import torch

from overlooked.bench.spiking import neuron_only_figures
from overlooked.spiking import modules as M
from overlooked.spiking.kernels import triton_lif

CONFIGS = [(256, 1, 0), (256, 8, 0), (256, 4, 264), (256, 8, 132), (256, 8, 264)]
NEURONS = {
    "if": (M.IF, {"r": 250.0}),
    "lif": (M.LIF, {"tau_mem": 5e-3, "v_leak": 0.1, "v_reset": -0.2}),
    "plif": (M.PLIF, {}),
    "cuba": (M.CubaLIF, {"w_in": 0.7}),
}


def check(device: str) -> str:
    """'' when every kind and reset equals the reference loop on ``device``, else what differed: spikes, v and i
    exactly, every gradient (the initial state's too) to 1e-4, at T = 1..8 (the last block ending on each of its
    steps) and 37."""
    for kind, (cls, params) in NEURONS.items():
        for reset in ("zero", "subtract"):
            torch.manual_seed(0)
            ref = cls(**params, reset=reset).to(device)
            fast = cls(**params, reset=reset, backend="triton").to(device)
            fast.load_state_dict(ref.state_dict())
            for T in (*range(1, 9), 37):
                x = (torch.randn(T, 3, 301, device=device) * 3 + 1).requires_grad_()
                state = type(ref.cell.initial_state(x[0]))(*(torch.randn(3, 301, device=device).requires_grad_() for _ in range(1 + (kind == "cuba"))))
                gz, gv, gi = torch.randn_like(x), torch.randn(3, 301, device=device), torch.randn(3, 301, device=device)
                out = []
                for m in (ref, fast):
                    z, s = m(x, state)
                    loss = (z * gz).sum() + (s.v * gv).sum() + ((s.i * gi).sum() if kind == "cuba" else 0)
                    out.append((z, s, torch.autograd.grad(loss, [x, *state, *m.parameters()])))
                (z1, s1, g1), (z2, s2, g2) = out
                if not (torch.equal(z1, z2) and torch.equal(s1.v, s2.v)):
                    return f"{kind} {reset} T={T}: spikes or v differ"
                if kind == "cuba" and not torch.equal(s1.i, s2.i):
                    return f"{kind} {reset} T={T}: i differs"
                for a, b in zip(g1, g2):
                    if not torch.allclose(b, a, rtol=1e-4, atol=1e-4 * max(1.0, a.abs().max().item())):
                        return f"{kind} {reset} T={T}: gradient differs by {(b - a).abs().max().item():.3g}"
    return ""


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    rows = []
    for block, unroll, min_programs in CONFIGS:
        triton_lif.BLOCK, triton_lif.UNROLL, triton_lif.MIN_PROGRAMS = block, unroll, min_programs
        row = {"block": block, "unroll": unroll, "min_programs": min_programs, "check": check(device)}
        for n in (512, 4096):
            row[f"n{n}_launch"] = triton_lif.launch_config(16 * n)
            figs = neuron_only_figures(500, 16, n, device=device, repeats=20)
            row[f"n{n}"] = {f["name"]: round(f["value"], 2) for f in figs}
            best = {k: f["value"] for f in figs for k in ("fwd", "bwd") if f"LIF-only {k} (" in f["name"]}
            row[f"n{n}_fwd_bwd_us"] = round(best["fwd"] + best["bwd"], 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    passed = [r for r in rows if not r["check"]]
    chosen = min(passed, key=lambda r: r["n512_fwd_bwd_us"]) if passed else None
    print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else device, "rows": rows, "chosen": chosen}, indent=1))


if __name__ == "__main__":
    main()
