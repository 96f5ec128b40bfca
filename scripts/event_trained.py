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


def compared(run: str, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, result, report: dict) -> dict:
    """What both comparisons record: accuracies, agreement, logits, counts and the environment."""
    return {
        "run": str(run),
        "images": int(x.shape[0]),
        "reference_accuracy": float((logits.argmax(1) == y).float().mean()),
        "event_accuracy": float((result.logits.argmax(1) == y).float().mean()),
        "prediction_agreement": float((result.logits.argmax(1) == logits.argmax(1)).float().mean()),
        "max_abs_logit_difference": float((result.logits - logits).abs().max()),
        "synaptic_updates": result.synaptic_updates,
        "energy_report_sops": report["totals"]["sops"] * report["examples"],
        "macs": result.macs,
        "dense_updates": result.dense_updates,
        "per_layer_updates_dense": result.per_layer,
        "environment": environment(),
    }


def timed(fn):
    """``fn()`` and the seconds it took."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def converted(run: str, splits, ann: torch.nn.Module, n: int) -> dict:
    """The converted network of a CNN run against its own simulation."""
    from overlooked.spiking.convert import convert

    snn = convert(ann.eval(), splits.train.tensors["image"][:1000], norm="p99.9", steps=64)
    x, y = splits.test.tensors["image"][:n], splits.test.tensors["label"][:n]
    torch.set_num_threads(1)
    sim, simulate_s = timed(lambda: snn.simulate(x))
    result, event_s = timed(lambda: EventNetwork.from_model(snn).run(x))
    record = compared(run, x, y, sim.readout[-1] / snn.steps, result, energy_report(snn, x))
    record["simulate_accuracy"] = record.pop("reference_accuracy")
    return {
        **record,
        "converted": {"norm": "p99.9", "calibration": 1000, "steps": snn.steps},
        "spike_counts_differing_per_stage": [int((s.sum(0) != r * snn.steps).sum()) for s, r in zip(result.spikes, sim.rates)],
        "spikes_per_stage": [int(s.sum()) for s in result.spikes],
        "simulate_s_1_thread": simulate_s,
        "event_driven_s_1_thread": event_s,
    }


def main(run: str, n: int = 1000, out: str | None = None) -> dict:
    _, splits, model = api.load_run(run)
    if hasattr(model, "blocks"):  # a SpikingNet against its own forward
        record = spiking(run, splits, model, n)
    else:  # a ReLU network, converted first
        record = converted(run, splits, model, n)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1) + "\n")
    return record


def spiking(run: str, splits, model: torch.nn.Module, n: int) -> dict:
    """A trained SpikingNet against its own forward."""
    model.eval()
    x, y = splits.test.tensors["image"][:n], splits.test.tensors["label"][:n]
    torch.set_num_threads(1)  # the event simulator runs on one thread; time the model alike
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, z: seen.append(z)) for b in model.blocks]
    with torch.no_grad():
        logits, model_s = timed(lambda: model(x)["logits"])
    for h in hooks:
        h.remove()
    events = EventNetwork.from_model(model)
    result, event_s = timed(lambda: events.run(x))
    record = compared(run, x, y, logits, result, energy_report(model, x))
    record["model_accuracy"] = record.pop("reference_accuracy")
    return {
        **record,
        "steps": model.steps,
        "spikes_differing_per_block": [int((a != b).sum()) for a, b in zip(result.spikes, seen)],
        "spikes_per_block": [int(b.sum()) for b in seen],
        "model_forward_s_1_thread": model_s,
        "event_driven_s_1_thread": event_s,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    rec = main(args[0], int(args[1]) if len(args) > 1 else 1000, args[2] if len(args) > 2 else None)
    print(json.dumps({k: v for k, v in rec.items() if k != "environment"}, indent=1))
