#!/usr/bin/env bash
# The memory-family checks that need a GPU (issue 3), as one prepared script for a lent H100/H200:
#  1. the `gpu` tests of the memory family (the fused MemN2N node's PyTorch backend on CUDA against the dense
#     reference and the CPU, gradcheck, trainer steps and bf16 autocast) and of the spiking Triton kernels;
#  2. host synchronisations per MemN2N training step (torch.cuda.set_sync_debug_mode), with where they come from;
#  3. `bench memory`'s setting (d=50, K=3, M=50, batch 32, the trainer's own step) on the GPU: fused and
#     autograd paths, fp32 and bf16 autocast, and the CPU of that machine beside them;
#  4. the 60-epoch joint 1k run of the speed item, on the GPU (train.max_minutes caps it);
#  5. throughput against the batch size (32 to 4096), GPU and that machine's CPU at 2 threads.
# STEPS="1 5" runs only those steps (default: all five).
# Run from the repo root with bAbI in .gpu_data/babi (git-ignored; carry it):
#   OUT=/some/folder bash scripts/gpu_memory.sh
# DEVICE=cpu EPOCHS=1 rehearses the flow without a GPU. Writes $OUT/gpu_memory.tar.gz and $OUT/summary.txt.
set -u
OUT=${OUT:?set OUT to a folder for the results}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-60}
MINUTES=${MINUTES:-3}
export PYTHONPATH=src OVERLOOKED_DATA=${OVERLOOKED_DATA:-.gpu_data} PYTHONUNBUFFERED=1 DEVICE
STEPS=${STEPS:-1 2 3 4 5}
RUNS=${RUNS:-/tmp/gpu_memory}
want() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }
rm -rf "$RUNS" && mkdir -p "$RUNS/logs"
LOG=$RUNS/logs
{ nvidia-smi; python3 -c 'import sys, torch; print(sys.version); print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())'; git log -1 --format=%H 2>/dev/null; } > "$LOG/env.txt" 2>&1

# 1. the gpu tests (only these files: the rest of the suite needs packages this machine may lack)
if [ "$DEVICE" = cuda ] && want 1; then
  timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider -o addopts="--import-mode=importlib" \
    tests/memory/test_modules.py tests/memory/test_functional.py tests/spiking/test_kernels.py > "$LOG/pytest_gpu.txt" 2>&1
  echo "pytest rc $?" >> "$LOG/pytest_gpu.txt"
fi

# 2 and 3. host syncs per step, and throughput
want 2 || want 3 && timeout 240 python3 - > "$LOG/bench_gpu.json" 2> "$LOG/bench_gpu.err" <<'PY'
import collections, json, os, warnings
import torch
from overlooked.bench.memory import memn2n_throughput
from overlooked.config import TrainConfig
from overlooked.data.babi import load_babi
from overlooked.objectives import CrossEntropy
from overlooked.registry import MODELS
from overlooked.train import trainer

dev = os.environ["DEVICE"]
torch.backends.cuda.matmul.allow_tf32 = False
splits = load_babi(tasks="all", size="en", memory_size=50)
from overlooked.train.environment import environment
result = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__, "environment": environment(dev)}

if dev == "cuda":  # where does a training step wait for the GPU?
    syncs = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = MODELS.create("memn2n", vocab_size=splits.meta["vocab_size"], memory_size=50, embed_dim=50, hops=3, fused=fused).cuda()
        cfg = TrainConfig(optimizer="sgd", lr=0.01, grad_clip=40.0, grad_clip_per_tensor=True, batch_size=32)
        opt = trainer.build_optimizer(cfg, model.parameters())
        obj = CrossEntropy(target_key=splits.target_key, reduction="sum")
        batch = {k: v.cuda() for k, v in splits.train[torch.arange(32)].items()}
        trainer.train_step(model, batch, splits.input_keys, obj, opt, cfg)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step(model, batch, splits.input_keys, obj, opt, cfg)
        torch.cuda.set_sync_debug_mode(0)
        where = collections.Counter(f"{os.path.relpath(w.filename)}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
        syncs[f"fused={fused}"] = {"per_step": sum(where.values()), "where": dict(where)}
    result["host_syncs_per_train_step"] = syncs

rows = []
for kwargs in ({}, {"fused": False}, {"bf16": True}):
    rows += memn2n_throughput(splits, steps=200, repeats=5, device=dev, **kwargs)
    rows[-2]["kwargs"] = rows[-1]["kwargs"] = {k: v for k, v in kwargs.items()}
if dev == "cuda":  # the same machine's CPU, for scale (it has more cores than the 2-core VM of the acceptance)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows += memn2n_throughput(splits, steps=200, repeats=5, device="cpu")
        rows[-2]["kwargs"] = rows[-1]["kwargs"] = {"device": "cpu", "threads": threads}
result["throughput"] = rows
print(json.dumps(result, indent=1))
PY

# 4. the 60-epoch joint 1k run (the speed item's second figure) on the GPU
if want 4; then
  timeout $(( MINUTES * 60 + 90 )) python3 -m overlooked train memn2n_babi1k_joint train.epochs=$EPOCHS callbacks.0.kwargs.max_epochs=null \
  train.progress=false train.device=$DEVICE train.max_minutes=$MINUTES name=memn2n_babi1k_joint_60ep_gpu --out "$RUNS" > "$LOG/joint_60ep.log" 2>&1
  echo "train rc $?" >> "$LOG/joint_60ep.log"
fi

# 5. where the GPU overtakes the CPU: stories/s against the batch size
want 5 && timeout 200 python3 - > "$LOG/batch_sweep.json" 2> "$LOG/batch_sweep.err" <<'PY'
import json, os
import torch
from overlooked.bench.memory import memn2n_throughput
from overlooked.data.babi import load_babi

torch.backends.cuda.matmul.allow_tf32 = False
torch.set_num_threads(2)
splits = load_babi(tasks="all", size="en", memory_size=50)
rows = []
for device in dict.fromkeys([os.environ["DEVICE"], "cpu"]):
    for batch in (32, 128, 512, 4096):
        steps = max(4, 6400 // batch)
        for row in memn2n_throughput(splits, batch_size=batch, steps=steps, repeats=3, device=device):
            rows.append({**row, "device": device, "batch": batch, "cpu_threads": torch.get_num_threads()})
from overlooked.train.environment import environment
print(json.dumps({"environment": environment(os.environ["DEVICE"]), "rows": rows}, indent=1))
PY

find "$RUNS" -name checkpoints -type d -prune -exec rm -rf {} +
tar -czf "$OUT/gpu_memory.tar.gz" -C "$RUNS" .
{ cat "$LOG/env.txt"; tail -n 15 "$LOG/pytest_gpu.txt" 2>/dev/null; [ -f "$LOG/bench_gpu.json" ] && python3 -c "
import json; r = json.load(open('$LOG/bench_gpu.json'))
print(json.dumps(r.get('host_syncs_per_train_step'), indent=1))
for row in r['throughput']: print(f\"{row['name']:50s} {row['value']:>10.0f} {row['unit']} {row.get('kwargs')}\")" 2>&1;
  [ -f "$LOG/batch_sweep.json" ] && python3 -c "
import json
for row in json.load(open('$LOG/batch_sweep.json'))['rows']: print(f\"{row['device']:5s} batch {row['batch']:5d} {row['name']:45s} {row['value']:>10.0f} {row['unit']}\")" 2>&1; tail -n 5 "$LOG/bench_gpu.err" 2>/dev/null; tail -n 6 "$LOG/joint_60ep.log" 2>/dev/null; } > "$OUT/summary.txt"
cat "$OUT/summary.txt"
