"""Pins from the fourth mutation audit (results/audits/mutants_convert_caps_ls.yaml; the accuracy curve's
pin lives in test_convert.py, beside the net it shares): a Linear layer's connections count every leading input dimension; a
SpikingNet's logits average the readout over the steps; folding batch norm scales the synapse's own bias."""

from __future__ import annotations

import torch
from torch import nn

from overlooked.spiking.synops import connections, fanout


def test_a_linear_layers_connections_count_every_leading_input_dimension():
    """nn.Linear(4, 3) applied to a [2, 4] input per example (e.g. two tokens) has 2 x 4 x 3 = 24 synapses, not
    the 4 x 3 = 12 of one row; the fast path must agree with the autograd fan-out count (3 per input, 8 inputs)."""
    lin = nn.Linear(4, 3)
    assert connections(lin, (2, 4)) == 24
    assert connections(lin, (4,)) == 12
    assert float(fanout(lin, (2, 4)).sum()) == 24.0
    assert connections(nn.Sequential(lin), (5, 2, 4)) == connections(lin, (5, 2, 4)) == 120


def test_spikingnet_logits_are_the_readout_averaged_over_steps_not_summed():
    """Readout Linear(H, 3) with zero weights and bias [1, -2, 0.5]: each step's readout is the bias, so the
    time average over T = 4 steps is the bias itself (a sum would be 4 x bias). With real weights the logits
    equal readout(z_t) averaged over t, z_t the last block's recorded spikes."""
    from overlooked.spiking.models import spiking_mlp

    torch.manual_seed(0)
    net = spiking_mlp(hidden=(6,), num_classes=3, steps=4, batch_norm=False, backend="reference").eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        net.readout.weight.zero_()
        net.readout.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
        assert torch.equal(net(x)["logits"], torch.tensor([[1.0, -2.0, 0.5]] * 2))
    torch.manual_seed(1)
    net = spiking_mlp(hidden=(6,), num_classes=3, steps=4, batch_norm=False, backend="reference").eval()
    with torch.no_grad():
        net.blocks[0].synapse[-1].weight.mul_(20)  # strong enough that the block spikes
    seen = []
    net.blocks[-1].register_forward_hook(lambda m, a, z: seen.append(z))
    with torch.no_grad():
        logits = net(x)["logits"]
    z = seen[0]  # [T=4, B=2, 6]
    assert z.shape == (4, 2, 6) and 0 < float(z.sum()) < z.numel()
    torch.testing.assert_close(logits, net.readout(z).mean(0), rtol=0, atol=1e-6)


def test_folding_batch_norm_scales_the_synapses_own_bias_too():
    """Linear(1, 2) with weight [[2], [4]] and bias [1, 3], then BN with mean [0.5, -1], var [3, 15] (eps 1),
    gamma [2, 1], beta [0.1, 0.2]: scale = gamma / sqrt(var + eps) = [2 / 2, 1 / 4] = [1, 0.25];
    folded weight = [[2], [1]]; folded bias = b scale + beta - mean scale = [1 + 0.1 - 0.5, 0.75 + 0.2 + 0.25]
    = [0.6, 1.2] (leaving b unscaled would give [0.6, 3.45])."""
    from overlooked.spiking.models import SpikingBlock, fold_batchnorm
    from overlooked.spiking.modules import LIF

    lin = nn.Linear(1, 2)
    bn = nn.BatchNorm1d(2, eps=1.0)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0], [4.0]]))
        lin.bias.copy_(torch.tensor([1.0, 3.0]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([3.0, 15.0]))
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2]))
    block = SpikingBlock(lin, LIF(tau_mem=2e-3), bn).eval()
    folded = fold_batchnorm(block)
    torch.testing.assert_close(folded.synapse.weight, torch.tensor([[2.0], [1.0]]))
    torch.testing.assert_close(folded.synapse.bias, torch.tensor([0.6, 1.2]))
    x = torch.tensor([[0.0], [1.0], [-2.0]])
    with torch.no_grad():
        torch.testing.assert_close(folded.current(x), block.current(x))


def test_rate_code_draws_every_step_independently():
    """A pixel of intensity 0.5 spikes at each of 64 steps with probability 0.5, independently: its count is
    Binomial(64, 0.5), so a pixel that spikes at every step or at none has probability 2 / 2^64 (one draw per pixel
    reused at every step would make every pixel such a pixel), and the count's variance over 2000 pixels is
    64 x 0.25 = 16 (a pixel-wide draw: 64^2 x 0.25 = 1024). Successive steps agree half the time (0.5^2 + 0.5^2)."""
    from overlooked.spiking.encode import rate_encode

    z = rate_encode(torch.full((2000,), 0.5), 64, torch.Generator().manual_seed(0))
    counts = z.sum(0)
    assert int(((counts == 0) | (counts == 64)).sum()) == 0
    assert 12.0 < float(counts.var()) < 20.0  # the sample variance of 2000 draws is within about 10% of 16
    agree = (z[1:] == z[:-1]).float().mean().item()
    assert abs(agree - 0.5) < 0.01  # 63 x 2000 pairs: sd about 0.0014
