"""Event-driven inference of a trained spiking run (``snn_mlp_mnist``, ``snn_conv_mnist``) against the model's own
forward on the first N test images: predictions, logits, spikes per block, synaptic updates against
``energy_report``'s SOPs, and one-thread wall times of both. A run of a ReLU CNN (``cnn_mnist``) is first
converted (``overlooked.spiking.convert``: p99.9 norm, 1,000 training images, T = 64) and compared with the
converted network's own simulation.

    python scripts/event_trained.py RUN [N] [OUT.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from overlooked import api
from overlooked.spiking.event import EventNetwork
from overlooked.spiking.synops import energy_report
from overlooked.train.environment import environment


def converted(run: str, n: int, out: str | None) -> dict:
    """The converted network of a CNN run against its own simulation."""
    from overlooked.spiking.convert import convert

    _, splits, ann = api.load_run(run)
    snn = convert(ann.eval(), splits.train.tensors["image"][:1000], norm="p99.9", steps=64)
    x, y = splits.test.tensors["image"][:n], splits.test.tensors["label"][:n]
    torch.set_num_threads(1)
    start = time.perf_counter()
    sim = snn.simulate(x)
    simulate_s = time.perf_counter() - start
    start = time.perf_counter()
    result = EventNetwork.from_model(snn).run(x)
    event_s = time.perf_counter() - start
    report = energy_report(snn, x)
    logits = sim.readout[-1] / snn.steps
    record = {
        "run": str(run), "converted": {"norm": "p99.9", "calibration": 1000, "steps": snn.steps}, "images": int(x.shape[0]),
        "simulate_accuracy": float((logits.argmax(1) == y).float().mean()),
        "event_accuracy": float((result.logits.argmax(1) == y).float().mean()),
        "prediction_agreement": float((result.logits.argmax(1) == logits.argmax(1)).float().mean()),
        "max_abs_logit_difference": float((result.logits - logits).abs().max()),
        "spike_counts_differing_per_stage": [int((s.sum(0) != r * snn.steps).sum()) for s, r in zip(result.spikes, sim.rates)],
        "spikes_per_stage": [int(s.sum()) for s in result.spikes],
        "synaptic_updates": result.synaptic_updates, "energy_report_sops": report["totals"]["sops"] * report["examples"],
        "macs": result.macs, "dense_updates": result.dense_updates, "per_layer_updates_dense": result.per_layer,
        "simulate_s_1_thread": simulate_s, "event_driven_s_1_thread": event_s, "environment": environment(),
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(run: str, n: int = 1000, out: str | None = None) -> dict:
    _, splits, model = api.load_run(run)
    if not hasattr(model, "blocks"):  # not a SpikingNet: a ReLU network to convert first
        return converted(run, n, out)
    model.eval()
    x, y = splits.test.tensors["image"][:n], splits.test.tensors["label"][:n]
    torch.set_num_threads(1)  # the event simulator runs on one thread; time the model alike
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, z: seen.append(z)) for b in model.blocks]
    with torch.no_grad():
        start = time.perf_counter()
        logits = model(x)["logits"]
        model_s = time.perf_counter() - start
    for h in hooks:
        h.remove()
    events = EventNetwork.from_model(model)
    start = time.perf_counter()
    result = events.run(x)
    event_s = time.perf_counter() - start
    report = energy_report(model, x)
    record = {
        "run": str(run),
        "images": int(x.shape[0]),
        "steps": model.steps,
        "model_accuracy": float((logits.argmax(1) == y).float().mean()),
        "event_accuracy": float((result.logits.argmax(1) == y).float().mean()),
        "prediction_agreement": float((result.logits.argmax(1) == logits.argmax(1)).float().mean()),
        "max_abs_logit_difference": float((result.logits - logits).abs().max()),
        "spikes_differing_per_block": [int((a != b).sum()) for a, b in zip(result.spikes, seen)],
        "spikes_per_block": [int(b.sum()) for b in seen],
        "synaptic_updates": result.synaptic_updates,
        "energy_report_sops": report["totals"]["sops"] * report["examples"],
        "macs": result.macs,
        "dense_updates": result.dense_updates,
        "per_layer_updates_dense": result.per_layer,
        "model_forward_s_1_thread": model_s,
        "event_driven_s_1_thread": event_s,
        "environment": environment(),
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    rec = main(args[0], int(args[1]) if len(args) > 1 else 1000, args[2] if len(args) > 2 else None)
    print(json.dumps({k: v for k, v in rec.items() if k != "environment"}, indent=1))
