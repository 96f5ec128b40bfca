"""``overlooked demo spiking``: train a small spiking MLP on a slice of real MNIST and look inside it.

It trains with the shared trainer (surrogate gradients, best-on-validation weights), then on a slice of the
test set reports accuracy, the firing rate of every spiking layer and a compute-only energy estimate, and
draws a spike raster, membrane-potential traces and firing-rate histograms into the run folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from overlooked.registry import DEMOS
from overlooked.spiking import neurons as N

HIDDEN = (256, 128)
STEPS = 8


def slice_splits(splits: Any, train: int, val: int, test: int) -> Any:
    """The first ``train`` / ``val`` / ``test`` examples of each split (the split is already seeded)."""
    from dataclasses import replace

    take = lambda ds, n: ds.subset(torch.arange(min(n, len(ds))))  # noqa: E731
    return replace(splits, train=take(splits.train, train), val=take(splits.val, val), test=take(splits.test, test))


@torch.no_grad()
def record(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Run a ``SpikingNet`` on ``x`` and record, per spiking block, its input current and output spikes.

    Returns:
        ``{"logits": [B, C], "current": [[T, B, N_l]], "spikes": [[T, B, N_l]], "v": [[T, B, N_l]]}`` where
        ``v`` is the membrane potential after charging and before reset (so threshold crossings show),
        recomputed from the recorded current with the block's own neuron parameters.
    """
    currents, spikes, hooks = [], [], []

    def keep(module: nn.Module, args: tuple, out: tuple) -> None:  # returns None: the output is untouched
        currents.append(args[0].flatten(2))  # [T, B, N]
        spikes.append(out[0].flatten(2))  # [T, B, N]

    for block in model.blocks:
        hooks.append(block.neuron.register_forward_hook(keep))
    was = model.training
    model.eval()
    try:
        logits = model(x)["logits"]
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    voltages = []
    for block, cur in zip(model.blocks, currents):
        cell = block.neuron.cell
        p, state, vs = cell.params(), None, []
        for t in range(cur.shape[0]):
            v_prev = state.v if state is not None else torch.zeros_like(cur[t])
            vs.append(N.leaky_charge(v_prev, cur[t], p.tau_mem, p.v_leak, p.r, cell.dt))  # [B, N] before reset
            _, state = cell(cur[t], state)
        voltages.append(torch.stack(vs))
    return {"logits": logits, "current": currents, "spikes": spikes, "v": voltages}


def energy(model: nn.Module, x: torch.Tensor, rec: dict[str, Any]) -> dict[str, Any]:
    """Per-example compute-only energy estimate of the SNN and of the same MLP as an ANN.

    Uses :func:`overlooked.spiking.synops.energy_report` where it exists; otherwise the simple count for an
    MLP: the first layer's real-valued input costs ``in x out`` MACs once per image (direct encoding), and
    every later spike costs ``out_features`` accumulates (SOPs) in the next layer or the readout.
    """
    try:
        from overlooked.spiking.synops import energy_report
    except ImportError:
        energy_report = None
    if energy_report is not None:
        rep = energy_report(model, x)
        t = rep["totals"]
        return {"counter": "synops.energy_report", "label": rep["label"], "sops": t["sops"], "macs": t["macs"], "ann_macs": t["ann_macs"], "snn_energy_pj": t["snn_energy_pj"], "ann_energy_pj": t["ann_energy_pj"], "snn_over_ann": t["snn_over_ann"]}
    from overlooked.spiking.energy import ann_energy_pj, snn_energy_pj

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]  # synapses in order, readout last
    n = x.shape[0]
    macs = float(linears[0].in_features * linears[0].out_features)
    sops = sum(float(z.sum()) * nxt.out_features for z, nxt in zip(rec["spikes"], linears[1:])) / n
    ann_macs = float(sum(m.in_features * m.out_features for m in linears))
    e_snn, e_ann = snn_energy_pj(macs, sops), ann_energy_pj(ann_macs)
    label = "compute-only estimate (Horowitz 2014, 45 nm, fp32): spikes x fan-out, simple count"
    return {"counter": "simple", "label": label, "sops": sops, "macs": macs, "ann_macs": ann_macs, "snn_energy_pj": e_snn, "ann_energy_pj": e_ann, "snn_over_ann": e_snn / e_ann}


def draw(rec: dict[str, Any], dt: float, v_threshold: float, folder: Path, example: int = 0) -> dict[str, Path]:
    """Raster of one example (every layer), traces of five first-layer neurons, rate histograms."""
    from overlooked.plots.spiking import firing_rate_figure, membrane_figure, raster_figure, save_figure

    names = [f"hidden {i + 1}" for i in range(len(rec["spikes"]))]
    raster = {n: z[:, example].numpy() for n, z in zip(names, rec["spikes"])}  # [T, N]
    z0, v0 = rec["spikes"][0][:, example], rec["v"][0][:, example]  # [T, N]
    counts = z0.sum(0)
    # neurons that charge over several steps before firing (0 < spikes < T) show the dynamics best; then
    # the most active one and a silent one, to show the range
    steps = z0.shape[0]
    order = torch.argsort(counts, descending=True, stable=True).tolist()
    charging = [i for i in order if 0 < counts[i] < steps]
    picks = [charging[j] for j in sorted({round(k * (len(charging) - 1) / 2) for k in range(3)})] if charging else []
    picks += [i for i in (order[0], order[-1]) if i not in picks]
    rates = {n: z.mean((0, 1)).numpy() for n, z in zip(names, rec["spikes"])}  # [N] spikes / step
    figures = {
        "spiking_raster": raster_figure(raster, dt=dt, title=f"test example {example}: spikes per layer"),
        "spiking_membrane": membrane_figure(v0[:, picks].numpy(), z0[:, picks].numpy(), v_threshold=v_threshold, dt=dt, labels=[f"neuron {i}" for i in picks], title="hidden 1: membrane potential (before reset)"),
        "spiking_rates": firing_rate_figure(rates, title="firing rate per neuron on the test slice"),
    }
    return {name: save_figure(fig, folder / f"{name}.png") for name, fig in figures.items()}


@DEMOS.register("spiking", datasets={"mnist": None})
def demo_spiking(run_dir: Path, data_dir: str | None = None, train_examples: int = 20_000, test_examples: int = 1_000, epochs: int = 3) -> dict[str, Any]:
    """A spiking MLP (784-256-128-10, PLIF, T=8) trained on a slice of MNIST: accuracy, firing rates, energy, pictures."""
    from overlooked import catalog
    from overlooked.config import TrainConfig
    from overlooked.registry import DATASETS, MODELS, OBJECTIVES
    from overlooked.train.trainer import fit

    t0 = time.perf_counter()
    catalog.load_all()
    splits = slice_splits(DATASETS.create("mnist", data_dir=data_dir), train_examples, test_examples, test_examples)
    torch.manual_seed(0)
    model = MODELS.create("spiking_mlp", input_shape=(1, 28, 28), hidden=HIDDEN, num_classes=10, steps=STEPS, neuron="plif")
    objective = OBJECTIVES.create("spiking_cross_entropy", target_key=splits.target_key)
    train_cfg = TrainConfig(epochs=epochs, batch_size=100, optimizer="adam", lr=2e-3, schedule="cosine", eval_batch_size=1000, seed=0, progress=False, num_threads=torch.get_num_threads())
    folder = Path(run_dir) / "spiking"
    folder.mkdir(parents=True, exist_ok=True)
    summary = fit(model, splits, objective, train_cfg, folder)
    x = splits.test.tensors["image"]  # [N, 1, 28, 28]
    rec = record(model, x)
    rates = {f"hidden {i + 1}": float(z.mean()) for i, z in enumerate(rec["spikes"])}
    energy_estimate = energy(model, x, rec)
    lif = model.blocks[0].neuron.cell
    pictures = draw(rec, lif.dt, float(lif.params().v_threshold), folder)
    accuracy = float((rec["logits"].argmax(-1) == splits.test.tensors["label"]).float().mean())

    print(f"spiking MLP 784-{'-'.join(map(str, HIDDEN))}-10, PLIF, T={STEPS}, direct encoding; {len(splits.train)} training images, {epochs} epochs")
    print(f"test accuracy on {len(x)} test images: {accuracy:.4f}")
    for name, r in rates.items():
        print(f"firing rate {name}: {r:.3f} spikes per neuron per step")
    print(
        f"energy per image ({energy_estimate['label']}): SNN {energy_estimate['snn_energy_pj'] / 1e3:.1f} nJ "
        f"({energy_estimate['macs']:.0f} MACs + {energy_estimate['sops']:.0f} SOPs) vs ANN {energy_estimate['ann_energy_pj'] / 1e3:.1f} nJ "
        f"({energy_estimate['ann_macs']:.0f} MACs): ratio {energy_estimate['snn_over_ann']:.2f}"
    )
    for name, path in pictures.items():
        print(f"{name}: {path}")
    return {
        "what": f"spiking MLP on {len(splits.train)} MNIST images, {epochs} epochs",
        "test_accuracy": accuracy,
        "test_examples": len(x),
        "val_accuracy": summary["val_accuracy"],
        "firing_rates": rates,
        "energy": energy_estimate,
        "pictures": {k: str(v) for k, v in pictures.items()},
        "wall_time_s": time.perf_counter() - t0,
        "run": str(folder),
    }
