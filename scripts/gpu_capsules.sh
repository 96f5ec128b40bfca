#!/usr/bin/env bash
# The capsule runs that need a GPU (issue 6), as one prepared script for a lent H100/H200 with a fixed
# wall-clock budget. Every job is an ordinary `overlooked train` of a committed config, moved to CUDA by
# overrides, stopped by train.max_minutes (recorded as stopped_by in its summary) if it has not finished.
# Run from the repo root with the MNIST files in .gpu_data/mnist:
#   OUT=/some/folder MINUTES=6 bash scripts/gpu_capsules.sh
# It writes $OUT/gpu_runs.tar.gz (run folders without checkpoints, logs, nvidia-smi, the GPU bench).
set -u
OUT=${OUT:?set OUT to a folder for the results}
MINUTES=${MINUTES:-6}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu EXTRA="train.max_steps=1 ..." rehearses the flow without a GPU
EXTRA=${EXTRA:-}
export DEVICE PYTHONPATH=src OVERLOOKED_DATA=.gpu_data PYTHONUNBUFFERED=1
RUNS=/tmp/gpu_runs
mkdir -p "$RUNS/logs"
nvidia-smi > "$RUNS/logs/nvidia-smi.txt" 2>&1
python3 -c 'import torch, sys; print(sys.version, torch.__version__, torch.cuda.get_device_name())' > "$RUNS/logs/env.txt" 2>&1
# CapsNet throughput on the GPU (reference backend; the fused backend is the CPU path), fp32 and bf16.
timeout 60 python3 - > "$RUNS/logs/bench_gpu.json" 2> "$RUNS/logs/bench_gpu.err" <<'PY'
import json, os, torch
from overlooked.bench.capsules import capsnet_throughput
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
rows = []
for bf16 in (False, True):
    rows += capsnet_throughput(backend="reference", bf16=bf16, repeats=10, device=os.environ["DEVICE"])
print(json.dumps(rows, indent=1))
PY
common="train.device=$DEVICE $EXTRA train.deterministic=false train.progress=false train.max_minutes=$MINUTES train.num_threads=2"
limit=$(( MINUTES * 60 + 100 ))
job() {  # name, config, overrides...
  local name=$1; shift
  timeout "$limit" python3 -m overlooked train "$@" $common --out "$RUNS" > "$RUNS/logs/$name.log" 2>&1 &
}
job capsnet_mnist_gpu capsnet_mnist model.kwargs.backend=reference train.epochs=40
job capsnet_affnist capsnet_affnist model.kwargs.backend=reference
job baseline_affnist capsnet_baseline_affnist
job capsnet_multimnist capsnet_multimnist model.kwargs.backend=reference
job baseline_multimnist multimnist_baseline
# EM routing through torch.compile (routing_backend=compiled, tested equal to the reference on CPU) is
# untested on CUDA: a 3-step probe decides, and the log says which backend the EM jobs used. A failed
# compile is an error in the library (never a silent fallback), so the fallback is made here, in the open.
EM_BACKEND=compiled
if ! timeout 240 python3 -m overlooked train capsule_em_mnist model.kwargs.routing_backend=compiled train.max_steps=3 train.eval_limit=256 \
    train.eval_batch_size=128 train.device=$DEVICE train.deterministic=false train.progress=false --out /tmp/em_probe \
    > "$RUNS/logs/em_compiled_probe.log" 2>&1; then
  EM_BACKEND=reference
fi
echo "EM routing backend: $EM_BACKEND" | tee "$RUNS/logs/em_backend.txt"
job em_mnist capsule_em_mnist model.kwargs.routing_backend=$EM_BACKEND
job em_affnist capsule_em_affnist model.kwargs.routing_backend=$EM_BACKEND
wait
nvidia-smi >> "$RUNS/logs/nvidia-smi.txt" 2>&1
find "$RUNS" -name checkpoints -type d -prune -exec rm -rf {} +
tar -czf "$OUT/gpu_runs.tar.gz" -C "$RUNS" .
ls -la "$RUNS" "$RUNS/logs"
tail -n 3 "$RUNS"/logs/*.log
