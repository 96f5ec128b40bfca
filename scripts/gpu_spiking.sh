#!/usr/bin/env bash
# The spiking-family checks that need a GPU, as one prepared script for a lent H100/H200:
#  1. the `gpu` tests of the neuron kernels (the Triton scans against the reference loop on CUDA);
#  1b. with SWEEP=1, the Triton launch-configuration sweep (scripts/gpu_triton_sweep.py: each configuration
#     checked against the reference loop on CUDA, then timed); the bench below then runs the chosen one;
#  2. `bench spiking` on the GPU (Linear+LIF against snnTorch, SpikingJelly and Norse, the neuron alone),
#     with the peers carried as wheels in .whl (see the device README; without them their rows are left out).
# Run from the repo root:  OUT=/some/folder bash scripts/gpu_spiking.sh
# DEVICE=cpu QUICK=1 rehearses the flow without a GPU. Writes $OUT/bench_spiking.json and $OUT/summary.txt.
set -u
OUT=${OUT:?set OUT to a folder for the results}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
export PYTHONPATH=src PYTHONUNBUFFERED=1 DEVICE QUICK OUT
if ls .whl/*.whl > /dev/null 2>&1 && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=src:/tmp/site
fi
{ nvidia-smi; python3 -c 'import sys, torch; print(sys.version); print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())'; } > "$OUT/env.txt" 2>&1
if [ "$DEVICE" = cuda ]; then
  timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider -o addopts="--import-mode=importlib" tests/spiking/test_kernels.py > "$OUT/pytest_gpu.txt" 2>&1
  echo "pytest rc $?" >> "$OUT/pytest_gpu.txt"
fi
if [ "${SWEEP:-0}" = 1 ]; then
  timeout 300 python3 scripts/gpu_triton_sweep.py "$DEVICE" > "$OUT/sweep.json" 2> "$OUT/sweep.err"
  echo "sweep rc $?" >> "$OUT/sweep.err"
fi
timeout 400 python3 - > "$OUT/bench_spiking.json" 2> "$OUT/bench_spiking.err" <<'PY'
import json, os
from overlooked.bench.spiking import bench_spiking, peers_installed
from overlooked.train.environment import environment

from overlooked.spiking.kernels import triton_lif

dev = os.environ["DEVICE"]
chosen = None
if os.path.isfile(os.path.join(os.environ["OUT"], "sweep.json")):
    chosen = json.load(open(os.path.join(os.environ["OUT"], "sweep.json")))["chosen"]
    if chosen:
        triton_lif.BLOCK, triton_lif.UNROLL, triton_lif.MIN_PROGRAMS = chosen["block"], chosen["unroll"], chosen["min_programs"]
launch = {"block": triton_lif.BLOCK, "unroll": triton_lif.UNROLL, "min_programs": triton_lif.MIN_PROGRAMS}
figures = bench_spiking(quick=os.environ["QUICK"] == "1", device=dev)
print(json.dumps({"environment": environment(dev), "peers": peers_installed(), "triton_launch": launch, "figures": figures}, indent=1))
PY
{ cat "$OUT/env.txt" | tail -n 2; tail -n 3 "$OUT/pytest_gpu.txt" 2>/dev/null; cat "$OUT/sweep.err" 2>/dev/null; tail -n 5 "$OUT/bench_spiking.err"; python3 -c "
import json; r = json.load(open('$OUT/bench_spiking.json'))
print(r['peers'], 'triton launch', r['triton_launch'])
for f in r['figures']: print(f\"{f['name']:70s} {f['value']:>14,.1f} {f['unit']}\")" 2>&1; } > "$OUT/summary.txt"
cat "$OUT/summary.txt"
