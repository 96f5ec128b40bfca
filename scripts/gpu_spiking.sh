#!/usr/bin/env bash
# The spiking-family checks that need a GPU, as one prepared script for a lent H100/H200:
#  1. the `gpu` tests of the neuron kernels (the Triton scans against the reference loop on CUDA);
#  2. `bench spiking` on the GPU (Linear+LIF against snnTorch, SpikingJelly and Norse, the neuron alone),
#     with the peers carried as wheels in .whl (see the device README; without them their rows are left out).
# Run from the repo root:  OUT=/some/folder bash scripts/gpu_spiking.sh
# DEVICE=cpu QUICK=1 rehearses the flow without a GPU. Writes $OUT/bench_spiking.json and $OUT/summary.txt.
set -u
OUT=${OUT:?set OUT to a folder for the results}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
export PYTHONPATH=src PYTHONUNBUFFERED=1 DEVICE QUICK
if ls .whl/*.whl > /dev/null 2>&1 && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=src:/tmp/site
fi
{ nvidia-smi; python3 -c 'import sys, torch; print(sys.version); print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())'; } > "$OUT/env.txt" 2>&1
if [ "$DEVICE" = cuda ]; then
  timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider -o addopts="--import-mode=importlib" tests/spiking/test_kernels.py > "$OUT/pytest_gpu.txt" 2>&1
  echo "pytest rc $?" >> "$OUT/pytest_gpu.txt"
fi
timeout 400 python3 - > "$OUT/bench_spiking.json" 2> "$OUT/bench_spiking.err" <<'PY'
import json, os
from overlooked.bench.spiking import bench_spiking, peers_installed
from overlooked.train.environment import environment

dev = os.environ["DEVICE"]
figures = bench_spiking(quick=os.environ["QUICK"] == "1", device=dev)
print(json.dumps({"environment": environment(dev), "peers": peers_installed(), "figures": figures}, indent=1))
PY
{ cat "$OUT/env.txt" | tail -n 2; tail -n 3 "$OUT/pytest_gpu.txt" 2>/dev/null; tail -n 5 "$OUT/bench_spiking.err"; python3 -c "
import json; r = json.load(open('$OUT/bench_spiking.json'))
print(r['peers'])
for f in r['figures']: print(f\"{f['name']:70s} {f['value']:>14,.1f} {f['unit']}\")" 2>&1; } > "$OUT/summary.txt"
cat "$OUT/summary.txt"
