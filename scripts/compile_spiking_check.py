"""Whole-model ``torch.compile`` training of ``spiking_cnn`` against eager: outputs and every gradient.

Trains two copies of one small ``spiking_cnn`` (PLIF neurons, the default ``backend="auto"``, which takes the
C++ scan on CPU; dropout off so both copies see the same function) for a few SGD steps at two batch sizes,
one eager and one under ``torch.compile(model, dynamic=...)``, and prints the largest differences. A check
to run by hand (compiling takes minutes on a small CPU), not a test.

    python scripts/compile_spiking_check.py            # dynamic=False: compiles once per batch size
    python scripts/compile_spiking_check.py --dynamic  # torch.compile's default (dynamic=None): a second batch
                                                       # size recompiles once with dynamic shapes

Until 2026-12-07 the C++ scan was an ``autograd.Function`` around a ctypes call: Dynamo broke the graph at every
neuron layer and Inductor failed with dynamic shapes. As a ``torch.library`` custom operator it stays in one graph.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from overlooked.spiking.kernels import resolved_backends
from overlooked.spiking.models import spiking_cnn


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((x.double() - y.double()).abs().max().item() for x, y in zip(a, b) if x.numel()), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dynamic", action="store_true", help="compile with dynamic shapes (torch.compile's dynamic=None)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    eager = spiking_cnn(channels=(4, 8), hidden=16, steps=2, image_size=12, dropout=0.0)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, dynamic=None if args.dynamic else False)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (eager, compiled_model)]
    print(f"torch {torch.__version__}, dynamic={'None' if args.dynamic else 'False'}")
    start = time.perf_counter()
    for step in range(args.steps):
        batch = 3 if step % 2 == 0 else 5
        x, y = torch.rand(batch, 1, 12, 12), torch.randint(0, 10, (batch,))
        outs = []
        for model, opt, run in ((eager, opts[0], eager), (compiled_model, opts[1], compiled)):
            opt.zero_grad()
            logits = run(x)["logits"]
            torch.nn.functional.cross_entropy(logits, y).backward()
            outs.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
            opt.step()
        print(f"step {step} (batch {batch}, {time.perf_counter() - start:.0f} s): max |logits diff| "
              f"{_max_diff([outs[0][0]], [outs[1][0]]):.2e}, max |grad diff| {_max_diff(outs[0][1], outs[1][1]):.2e}, "
              f"after the step max |param diff| {_max_diff(list(eager.parameters()), list(compiled_model.parameters())):.2e}, "
              f"max |buffer diff| (BatchNorm statistics) {_max_diff(list(eager.buffers()), list(compiled_model.buffers())):.2e}")
    eager.eval(), compiled_model.eval()
    with torch.no_grad():
        x = torch.rand(4, 1, 12, 12)
        print(f"eval forward after training: max |logits diff| {_max_diff([eager(x)['logits']], [compiled(x)['logits']]):.2e}")
    print(f"neuron backends: eager {sorted(set(resolved_backends(eager).values()))}, compiled {sorted(set(resolved_backends(compiled_model).values()))}")
    counters = torch._dynamo.utils.counters
    print(f"dynamo: {counters['stats'].get('unique_graphs', 0)} graphs, {sum(counters['graph_break'].values())} graph breaks "
          f"({len(counters['graph_break'])} kinds)")


if __name__ == "__main__":
    main()
