"""The spiking model matrix, generated from the registry, and the promises of ``spiking/models.py``:
binary hidden spikes, direct encoding = the same image fed at every step, BN folding, the rate term."""

from __future__ import annotations

import pytest
import torch

from overlooked import catalog
from overlooked.errors import RegistryError
from overlooked.registry import MODELS, OBJECTIVES
from overlooked.spiking.models import SpikingBlock, fold_batchnorm

catalog.load_all()
SPIKING = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "spiking"]
SMALL = {"spiking_mlp": {"hidden": (32, 24), "steps": 3}, "spiking_cnn": {"channels": (4, 8), "hidden": 16, "steps": 3}}


def test_spiking_models_are_registered():
    assert {"spiking_mlp", "spiking_cnn"} <= set(SPIKING)


@pytest.mark.parametrize("name", SPIKING)
def test_forward_backward_no_nan(name, every_parameter_learns):
    torch.manual_seed(0)
    model = MODELS.create(name, **SMALL.get(name, {}))
    out = model(torch.rand(8, 1, 28, 28) * 3)
    assert out["logits"].shape == (8, 10) and torch.isfinite(out["logits"]).all()
    torch.nn.functional.cross_entropy(out["logits"], torch.arange(8) % 10).backward()
    every_parameter_learns(model)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", SPIKING)
def test_an_empty_batch_gives_empty_logits(name, train):
    """B = 0, static or time-first, as any PyTorch module takes it (was: "cannot reshape tensor of 0 elements
    into shape [T, 0, -1]" at the readout)."""
    model = MODELS.create(name, **SMALL.get(name, {})).train(train)
    for x in (torch.rand(0, 1, 28, 28), torch.rand(model.steps, 0, 1, 28, 28)):
        out = model(x)
        assert out["logits"].shape == (0, 10) and out["spike_counts"].shape == out["neurons"].shape == (len(model.blocks),)
        out["logits"].sum().backward()


@pytest.mark.parametrize("name", SPIKING)
def test_unknown_kwargs_raise(name):
    with pytest.raises(RegistryError, match="unknown argument"):
        MODELS.create(name, not_an_argument=1)


@pytest.mark.parametrize("name", SPIKING)
def test_hidden_layers_emit_binary_spikes(name):
    torch.manual_seed(0)
    model = MODELS.create(name, **SMALL.get(name, {}))
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: seen.append(out))
    out = model(torch.rand(4, 1, 28, 28) * 3)
    assert len(seen) == len(model.blocks)
    for z in seen:
        assert z.shape[0] == model.steps
        assert set(z.unique().tolist()) <= {0.0, 1.0}
    assert out["spike_counts"].sum() > 0  # the test input is strong enough to make spikes
    torch.testing.assert_close(out["spike_counts"], torch.stack([z.sum() for z in seen]))
    torch.testing.assert_close(out["neurons"], torch.tensor([float(z.numel()) for z in seen]))


@pytest.mark.parametrize("name", SPIKING)
def test_direct_encoding_equals_image_repeated_over_time(name):
    """A static ``[B, ...]`` input is computed once and repeated; feeding ``[T, B, ...]`` copies gives the same."""
    torch.manual_seed(0)
    model = MODELS.create(name, **SMALL.get(name, {})).eval()
    x = torch.rand(5, 1, 28, 28) * 3
    with torch.no_grad():
        a = model(x)["logits"]
        b = model(x.unsqueeze(0).expand(model.steps, *x.shape))["logits"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", SPIKING)
def test_batch_independence(name):
    torch.manual_seed(0)
    model = MODELS.create(name, **SMALL.get(name, {})).eval()
    x = torch.rand(4, 1, 28, 28) * 3
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"][:1], model(x[:1])["logits"], atol=1e-5, rtol=1e-5)


def test_spiking_cnn_mirrors_small_cnn_layers():
    # small_cnn minus conv biases (BN holds them), plus BN affine/PLIF tau: conv 1->32 5x5 800, conv 32->64
    # 51,200, fc 3136->256 802,816 (no bias), readout 2,570; BN 2*(32+64+256) = 704; 3 PLIF taus.
    model = MODELS.create("spiking_cnn")
    assert sum(p.numel() for p in model.parameters()) == 800 + 51_200 + 802_816 + 2_570 + 704 + 3


@pytest.mark.parametrize("pool", [False, True])
def test_fold_batchnorm_equals_eval_block(pool):
    torch.manual_seed(0)
    from overlooked.spiking.modules import LIF

    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 2.0)
    bn.bias.data.uniform_(-0.5, 0.5)
    block = SpikingBlock(conv, LIF(tau_mem=2e-3), bn, torch.nn.AvgPool2d(2) if pool else None).eval()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    folded = fold_batchnorm(block)
    assert folded.norm is None
    x = (torch.rand(4, 2, 2, 6, 6) < 0.4).float()
    with torch.no_grad():
        torch.testing.assert_close(block.current(x.flatten(0, 1)), folded.current(x.flatten(0, 1)), atol=1e-5, rtol=1e-5)
    for k, v in block.state_dict().items():  # the input block is untouched
        assert torch.equal(v, before[k]), k


def test_rate_regulariser_adds_weighted_mean_rate():
    out = {"logits": torch.zeros(2, 10), "spike_counts": torch.tensor([3.0, 1.0]), "neurons": torch.tensor([10.0, 30.0])}
    batch = {"label": torch.tensor([0, 1])}
    plain = OBJECTIVES.create("spiking_cross_entropy")(out, batch)
    reg = OBJECTIVES.create("spiking_cross_entropy", rate_weight=2.0)(out, batch)
    torch.testing.assert_close(plain, torch.log(torch.tensor(10.0)))  # uniform logits
    torch.testing.assert_close(reg - plain, torch.tensor(2.0 * 4.0 / 40.0))


@pytest.mark.parametrize("name", SPIKING)
def test_auto_backend_model_equals_reference_model(name):
    """The default (``auto``, the fused scan where it runs) gives the reference loop's logits and gradients."""
    from overlooked.spiking.kernels import resolved_backends

    torch.manual_seed(0)
    fast = MODELS.create(name, **SMALL.get(name, {}))
    ref = MODELS.create(name, **SMALL.get(name, {}), backend="reference")
    ref.load_state_dict(fast.state_dict())
    x = torch.rand(6, 1, 28, 28) * 3
    y = torch.arange(6) % 10
    outs = []
    for model in (fast, ref):
        torch.manual_seed(1)  # the same dropout mask in both
        out = model(x)
        torch.nn.functional.cross_entropy(out["logits"], y).backward()
        outs.append((out, {n: p.grad for n, p in model.named_parameters()}))
    (a, ga), (b, gb) = outs
    torch.testing.assert_close(a["spike_counts"], b["spike_counts"], rtol=0, atol=0)  # spikes exactly
    torch.testing.assert_close(a["logits"], b["logits"])
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-5, msg=n)
    assert set(resolved_backends(ref).values()) == {"reference"}
    assert set(resolved_backends(fast).values()) <= {"cpp", "reference"}


@pytest.mark.parametrize("name", SPIKING)
@pytest.mark.parametrize("neuron", ["plif", "lif"])
@pytest.mark.parametrize("tau_mem", [0.5e-3, 1e-3])
def test_a_membrane_time_constant_at_or_below_dt_is_refused_when_built(name, neuron, tau_mem):
    """Before: PLIF's w = -log(tau_mem / dt - 1) was NaN (0.5 ms) or inf (1 ms) and the model trained dead."""
    kwargs = {**SMALL.get(name, {}), "neuron": neuron, "tau_mem": tau_mem}
    if neuron == "lif" and tau_mem == 1e-3:  # dt / tau_mem = 1: forward Euler's memoryless limit, allowed
        out = MODELS.create(name, **kwargs)(torch.rand(2, 1, 28, 28))
        assert torch.isfinite(out["logits"]).all()
        return
    match = r"PLIF init_tau = .*tau_mem = init_tau \* dt = .* s at dt = 0\.001 s" if neuron == "plif" else r"tau_mem = 0\.0005 s, so dt / tau_mem = 2"
    with pytest.raises(ValueError, match=match):
        MODELS.create(name, **kwargs)


@pytest.mark.parametrize("name", SPIKING)
def test_steps_below_one_and_integer_input_are_refused(name):
    """Before: steps=0 built and gave NaN logits (the trainer then blamed the learning rate); uint8 pixels
    failed inside nn.Linear with a dtype mismatch."""
    from overlooked.errors import InputError

    for steps in (0, -1, 2.0, True):
        with pytest.raises(InputError, match=rf"steps is the number of time steps T, a whole number >= 1; got {steps!r}"):
            MODELS.create(name, **{**SMALL.get(name, {}), "steps": steps})
    net = MODELS.create(name, **{**SMALL.get(name, {}), "steps": 2})
    with pytest.raises(InputError, match="steps is the number of time steps T"):
        net.steps = 0
    assert net.steps == 2
    net.steps = 3  # another T is allowed, and used
    assert net(torch.rand(3, 2, 1, 28, 28))["logits"].shape == (2, 10)
    with pytest.raises(InputError, match=r"floating-point input .* got dtype torch.uint8: convert with x.float\(\)"):
        net((torch.rand(2, 1, 28, 28) * 255).to(torch.uint8))


def test_every_packaged_spiking_config_builds_its_model():
    from overlooked.config import load_config, packaged_configs

    built = 0
    for name in packaged_configs():
        cfg = load_config(name)
        if cfg.model.name in SPIKING:
            model = MODELS.create(cfg.model.name, **cfg.model.kwargs)
            assert not any(k.endswith(("tau_mem", "tau_syn", "v_threshold")) for k in model.state_dict())  # scalar params: old checkpoints load
            built += 1
    assert built >= 4


def test_the_spiking_models_take_the_surrogates_sharpness_from_the_config():
    """surrogate_alpha reached the neuron modules but not the model builders, so a config could not set it."""
    from overlooked import api

    for name, extra in (("snn_mlp_mnist", ["model.hidden=[8]"]), ("snn_conv_mnist", ["model.channels=[2,2]", "model.hidden=8"])):
        cfg = api.load(name, [*extra, "model.surrogate=fast_sigmoid", "model.surrogate_alpha=3.5"])
        model = api.build_model(cfg, {"num_classes": 10, "image_shape": (1, 28, 28)})
        fns = [m.cell.spike_fn for m in model.modules() if hasattr(m, "cell")]
        assert fns and all(type(f).__name__ == "FastSigmoid" and f.alpha == 3.5 for f in fns)
        default = api.build_model(api.load(name, extra), {"num_classes": 10, "image_shape": (1, 28, 28)})
        assert {type(m.cell.spike_fn).__name__ for m in default.modules() if hasattr(m, "cell")} == {"ATan"}
