"""N-MNIST frames reach a spiking conv net time-first, as 0/1 spikes when asked."""

from __future__ import annotations

import torch

from overlooked import catalog
from overlooked.data.nmnist import Events, to_frames
from overlooked.registry import ENCODERS
from overlooked.spiking.models import spiking_cnn


def test_time_first_transposes_and_binarises():
    catalog.load_all()
    frames = torch.zeros(2, 3, 2, 34, 34)  # [B, T, P, H, W]
    frames[1, 2, 0, 5, 7] = 3.0  # three events of example 1, step 2, OFF polarity, y=5, x=7
    out = ENCODERS.create("time_first", key="frames", binary=True)({"frames": frames, "label": torch.tensor([4, 2])}, torch.Generator())
    assert out["frames"].shape == (3, 2, 2, 34, 34) and out["frames"].sum() == 1 and out["frames"][2, 1, 0, 5, 7] == 1
    assert out["label"].tolist() == [4, 2]
    counts = ENCODERS.create("time_first", key="frames")({"frames": frames}, torch.Generator())["frames"]
    assert counts[2, 1, 0, 5, 7] == 3.0


def test_binned_events_feed_spiking_cnn_time_first():
    # two events at t = 0 and 299,999 us: bins 0 and T-1 of a 300 ms window
    e = Events(x=torch.tensor([1, 2]).numpy(), y=torch.tensor([3, 4]).numpy(), p=torch.tensor([0, 1]).numpy(), t=torch.tensor([0, 299_999]).numpy())
    f = to_frames(e, bins=4)  # [T, 2, 34, 34]
    assert f[0, 0, 3, 1] == 1 and f[3, 1, 4, 2] == 1 and f.sum() == 2
    batch = ENCODERS.create("time_first", key="frames", binary=True)({"frames": torch.stack([f, f, f])}, torch.Generator())
    net = spiking_cnn(in_channels=2, image_size=34, channels=(4, 8), hidden=16, steps=4)
    out = net(batch["frames"])  # [T=4, B=3, 2, 34, 34]
    assert out["logits"].shape == (3, 10) and out["spike_counts"].shape == (3,)
