"""`overlooked demo spiking` on a tiny budget: it trains, reports, counts and draws."""

from __future__ import annotations

import pytest
import torch
from matplotlib.image import imread

from overlooked import catalog
from overlooked.registry import DEMOS
from overlooked.spiking.demo import record
from overlooked.spiking.models import spiking_mlp


def test_demo_is_registered_with_its_data():
    catalog.load_all()
    assert "spiking" in DEMOS.names() and DEMOS.tags("spiking")["datasets"] == {"mnist": None}


def test_recorded_membrane_matches_the_lif_update_by_hand():
    torch.manual_seed(0)
    net = spiking_mlp(input_shape=(3,), hidden=(2,), steps=3, neuron="lif", batch_norm=False)  # dt/tau = 0.5
    with torch.no_grad():
        net.blocks[0].synapse[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        net.blocks[0].synapse[1].bias.zero_()
    rec = record(net, torch.tensor([[0.8, 3.0, 0.0]]))  # currents 0.8 and 3.0 at every step
    # neuron 0: v = 0.4, 0.6, 0.7 (never reaches 1); neuron 1: v = 1.5 > 1, spike, reset to 0, again each step
    assert rec["v"][0][:, 0, 0].tolist() == pytest.approx([0.4, 0.6, 0.7])
    assert rec["v"][0][:, 0, 1].tolist() == pytest.approx([1.5, 1.5, 1.5])
    assert rec["spikes"][0][:, 0].tolist() == [[0.0, 1.0]] * 3


@pytest.mark.data
def test_demo_tiny_budget(tmp_path, data_dir, capsys):
    torch.set_num_threads(1)
    # 2,000 images x 2 epochs = 40 steps (about 3 s on one thread) is the least that learns: with 300 images x 1
    # epoch (3 steps) the batch norms' running statistics have barely moved, so the evaluated net is silent and
    # at chance (measured: 0.10 accuracy, firing rates below 0.0001); at 40 steps, 0.78 and 7-8 %.
    res = DEMOS.create("spiking", run_dir=tmp_path, data_dir=str(data_dir), train_examples=2000, test_examples=50, epochs=2)
    out = capsys.readouterr().out
    assert "test accuracy on 50 test images" in out and "firing rate hidden 2" in out
    assert res["test_examples"] == 50 and res["test_accuracy"] >= 0.5, "chance is 0.1: the demo must learn"
    rates = res["firing_rates"]
    assert set(rates) == {"hidden 1", "hidden 2"} and all(0.005 < r < 0.5 for r in rates.values()), rates
    # SOPs per image by hand: every hidden-1 spike reaches the 128 hidden-2 units, every hidden-2 spike the 10
    # readout units; spikes per image = rate x T x width
    sops = rates["hidden 1"] * 8 * 256 * 128 + rates["hidden 2"] * 8 * 128 * 10
    assert res["energy"]["sops"] == pytest.approx(sops, rel=1e-5)
    # direct encoding: the first layer's 784 x 256 connections are MACs once per image; the ANN of the same
    # shape costs 784*256 + 256*128 + 128*10 = 234,752 MACs
    assert res["energy"]["macs"] == 784 * 256 and res["energy"]["ann_macs"] == 234_752
    for name in ("spiking_raster", "spiking_membrane", "spiking_rates"):
        path = tmp_path / "spiking" / f"{name}.png"
        assert res["pictures"][name] == str(path) and str(path) in out
        assert imread(path).shape[0] > 100
    assert (tmp_path / "spiking" / "metrics.jsonl").is_file()
