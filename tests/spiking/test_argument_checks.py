"""Bad arguments and inputs to the spiking modules are refused with a message that names the problem, and
the fused kernels read the same states the reference loop reads (broadcast ones included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.errors import InputError
from overlooked.spiking import modules as M
from overlooked.spiking import neurons as N
from overlooked.spiking.convert import ConversionError, convert
from overlooked.spiking.event import run_clock, run_events
from overlooked.spiking.kernels import _build
from overlooked.spiking.nir import NIRExportError, export_layers
from overlooked.spiking.synops import energy_report

needs_cpp = pytest.mark.skipif(_build.compiler() is None, reason="no C++ compiler")


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(12, 2, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


@needs_cpp
@pytest.mark.parametrize("v0", [torch.tensor(0.5), torch.full((1, 4), 0.5), torch.full((4,), 0.5), torch.rand(2, 4)])
def test_fused_kernel_takes_broadcast_states_as_the_reference_does(v0):
    x = _x()
    v0 = v0.double()
    ref_z, ref_s = M.LIF(tau_mem=4e-3, backend="reference")(x, N.VState(v0))
    z, s = M.LIF(tau_mem=4e-3, backend="cpp")(x, N.VState(v0))
    assert 0 < z.mean() < 1
    assert torch.equal(z, ref_z) and torch.equal(s.v, ref_s.v) and s.v.shape == (2, 4)
    # the gradient reaches a broadcast state summed over the neurons it fed, as autograd's broadcasting does
    leaf_ref, leaf = v0.clone().requires_grad_(), v0.clone().requires_grad_()
    surrogate_ref = M.LIF(tau_mem=4e-3, backend="reference")(x, N.VState(leaf_ref))[1].v.sum()
    surrogate = M.LIF(tau_mem=4e-3, backend="cpp")(x, N.VState(leaf))[1].v.sum()
    (g_ref,), (g,) = torch.autograd.grad(surrogate_ref, leaf_ref), torch.autograd.grad(surrogate, leaf)
    assert g.shape == v0.shape
    torch.testing.assert_close(g, g_ref)


@needs_cpp
@pytest.mark.parametrize("shape", [(4, 2), (50, 4), (3, 2, 4), (8,)])
def test_fused_kernel_refuses_a_state_of_another_shape(shape):
    with pytest.raises(ValueError, match=r"state\.v has shape .* does not broadcast to the input's per-step shape \(2, 4\)"):
        M.LIF(backend="cpp")(_x(), N.VState(torch.zeros(shape, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"state\.i has shape"):
        M.CubaLIF(backend="cpp")(_x(), N.CubaState(torch.zeros(2, 4, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)))


@needs_cpp
def test_fused_kernel_refuses_a_state_on_another_device():
    with pytest.raises(ValueError, match="state.v is on meta but the input on cpu"):
        M.LIF(backend="cpp")(_x(), N.VState(torch.zeros(2, 4, device="meta")))


@pytest.mark.parametrize("backend", ["reference", "cpp"] if _build.compiler() else ["reference"])
def test_an_empty_sequence_gives_no_spikes_and_keeps_the_state(backend):
    x = torch.rand(0, 2, 3)
    z, s = M.LIF(backend=backend)(x)
    assert z.shape == (0, 2, 3) and torch.equal(s.v, torch.zeros(2, 3))
    v = torch.rand(2, 3)
    assert torch.equal(M.LIF(backend=backend)(x, N.VState(v))[1].v, v)


def test_neuron_parameters_are_keywords():
    with pytest.raises(TypeError, match=r"LIF takes its parameters by keyword, got positional 0\.005; write e\.g\. LIF\(tau_mem=0\.01, dt=0\.001\)"):
        M.LIF(5e-3)
    with pytest.raises(TypeError, match=r"PLIF takes its parameters by keyword, got positional 0\.001; write e\.g\. PLIF\(init_tau=2\.0, dt=0\.001\)"):
        M.PLIF(1e-3)
    with pytest.raises(TypeError, match=r"IF takes its parameters by keyword, got positional 1\.0; write e\.g\. IF\(v_threshold=1\.0, dt=0\.001\)"):
        M.IF(1.0)
    with pytest.raises(TypeError, match=r"RecurrentLIF takes its parameters by keyword, got positional 0\.001; write e\.g\. RecurrentLIF\(size, tau_mem"):
        M.RecurrentLIF(4, 1e-3)
    assert M.IF(v_threshold=1.0, dt=0.001).cell.dt == M.PLIF(init_tau=2.0, dt=0.001).cell.dt == 0.001  # the suggested calls build
    assert M.RecurrentLIF(4, dt=2e-3).cell.dt == 2e-3  # size stays positional


def test_reset_surrogate_and_tau_are_checked_when_built():
    with pytest.raises(ValueError, match=r"reset must be one of \('zero', 'subtract'\), got 'foo'"):
        M.LIF(reset="foo")
    for alpha in (-2.0, 0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="alpha = .* must be a positive, finite number"):
            M.LIF(surrogate_alpha=alpha)
    for tau in (float("inf"), torch.tensor([5e-3, float("inf")])):  # one neuron that never charges is enough
        with pytest.raises(ValueError, match="tau_mem = inf: the membrane would never charge"):
            M.LIF(tau_mem=tau)
    M.CubaLIF(tau_syn=float("inf"))  # a synaptic current that never decays is an integrator: allowed


def test_a_loaded_time_constant_is_held_to_the_constructor_rule():
    m = M.LIF(tau_mem=torch.full((3,), 5e-3))
    with pytest.raises(ValueError, match=r"dt / tau_mem = 10"):
        m.load_state_dict({"cell.tau_mem": torch.full((3,), 1e-4)})
    assert torch.equal(m.cell.tau_mem, torch.full((3,), 5e-3))  # refused before it replaced the buffer
    m.load_state_dict({"cell.tau_mem": torch.full((3,), 2e-3)})
    assert torch.equal(m.cell.tau_mem, torch.full((3,), 2e-3))


def test_non_float_input_is_refused():
    spikes = torch.rand(3, 2, 4) > 0.5
    for module in (M.LIF(), M.LIFCell(), M.RecurrentLIF(4)):
        with pytest.raises(InputError, match=r"takes a floating-point input current, got torch\.bool; cast it first"):
            module(spikes if not isinstance(module, M._Cell) else spikes[0])
    with pytest.raises(ValueError, match="RecurrentLIFCell has 4 neurons, so the input's last dimension must be 4; got shape"):
        M.RecurrentLIF(4)(torch.rand(3, 2, 5))


def test_event_simulation_refuses_analog_input():
    gen = torch.Generator().manual_seed(0)
    layers = [nn.Linear(20, 30), M.LIF(tau_mem=5e-3), nn.Linear(30, 10), M.LIF(tau_mem=5e-3)]
    with pytest.raises(ValueError, match="takes binary input spikes"):
        run_events(layers, torch.rand(15, 4, 20, generator=gen))
    binary = (torch.rand(15, 4, 20, generator=gen) < 0.3).float()
    ran = run_events(layers, binary)
    assert all(torch.equal(a, b) for a, b in zip(ran.spikes, run_clock(layers, binary)))


def test_export_takes_a_batch_broadcast_parameter():
    lin = nn.Linear(3, 4)
    per_neuron = export_layers([lin, M.LIF(tau_mem=torch.linspace(2e-3, 5e-3, 4))], (3,), 1e-3)
    batch_one = export_layers([lin, M.LIF(tau_mem=torch.linspace(2e-3, 5e-3, 4)[None])], (3,), 1e-3)
    assert (per_neuron.nodes["1_lif"].tau == batch_one.nodes["1_lif"].tau).all() and batch_one.nodes["1_lif"].tau.shape == (4,)
    with pytest.raises(NIRExportError, match=r"shape \(2, 4\) differs along the batch"):
        export_layers([lin, M.LIF(tau_mem=torch.full((2, 4), 5e-3))], (3,), 1e-3)
    with pytest.raises(NIRExportError, match=r"shape \(3,\) does not broadcast to its layer's shape \(4,\)"):
        export_layers([lin, M.LIF(tau_mem=torch.full((3,), 5e-3))], (3,), 1e-3)


def test_converted_network_checks_its_steps_and_names_functional_relu():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    snn = convert(ann, torch.rand(32, 4), steps=8)
    x = torch.rand(2, 4)
    assert torch.equal(snn(x)["logits"], snn(x, steps=8)["logits"])
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
            snn(x, steps=steps)
        with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
            energy_report(snn, x, steps=steps)
    # simulation records no graph, even for weights or an input that require gradients
    for p in snn.parameters():
        p.requires_grad_(True)
    out = snn(x.clone().requires_grad_(True))
    assert out["logits"].grad_fn is None and not out["logits"].requires_grad

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    with pytest.raises(ConversionError, match="if its forward applies functions such as torch.relu, pass an nn.Sequential"):
        convert(Functional(), torch.rand(32, 4))


def test_networks_name_an_input_of_another_dtype():
    from overlooked.spiking.nir import NIRNetwork

    torch.manual_seed(0)
    snn = convert(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), torch.rand(32, 4), steps=4)
    net = NIRNetwork(export_layers([nn.Linear(3, 4), M.LIF(tau_mem=5e-3)], (3,), 1e-3), dt=1e-3)
    for model, x in ((snn, torch.rand(2, 4)), (net, torch.rand(5, 2, 3))):
        with pytest.raises(ValueError, match=r"weights are torch\.float32 but the input is torch\.float64; cast one to the other"):
            model(x.double())
        with pytest.raises(InputError, match=r"takes a floating-point input current, got torch\.bool"):
            model(x > 0.5)
        model(x)  # float32 runs


def test_the_reference_step_names_a_state_of_another_kind_or_shape():
    """The cpp backend refused a misshapen state by name; the reference one failed inside the step
    (a broadcast error, "'str' object has no attribute 'v'", ALIF given a VState: "no attribute 'a'")."""
    x = _x()
    for module, state, said in [
        (M.LIF(), N.VState(torch.zeros(3, 4, dtype=torch.float64)), r"LIFCell: state\.v has shape \(3, 4\), which does not broadcast to the input's shape \(2, 4\)"),
        (M.LIF(), "v", r"LIFCell takes its state as VState\(v\); got str"),
        (M.ALIF(), N.VState(torch.zeros(2, 4, dtype=torch.float64)), r"ALIFCell takes its state as ALIFState\(v, a\); got VState"),
        (M.CubaLIF(), N.CubaState(torch.zeros(2, 4, dtype=torch.float64), None), r"state\.i has NoneType"),
    ]:
        with pytest.raises(ValueError, match=said + ".*pass the state the previous call returned, or None to start from rest"):
            module(x, state)
    for v0 in (torch.tensor(0.5, dtype=torch.float64), torch.full((1, 4), 0.5, dtype=torch.float64)):  # broadcast states still run
        assert M.LIF()(x, N.VState(v0))[1].v.shape == (2, 4)
    # but not a state wider than the input (an adversarial review's): a batch-1 input with a batch-3 state came
    # out as a batch of 3, silently, on the reference backend (the cpp backend refused it)
    _, s3 = M.LIF()(torch.rand(5, 3, 4))
    for backend in ("reference", "auto"):
        with pytest.raises(InputError, match=r"state\.v has shape \(3, 4\), which does not broadcast to the input's (per-step )?shape \(1, 4\)"):
            M.LIF(backend=backend)(torch.rand(5, 1, 4), s3)
    with pytest.raises(InputError, match=r"does not broadcast to the input's shape \(4,\)"):
        M.LIF(tau_mem=2e-3)(torch.rand(3, 4, dtype=torch.float64), N.VState(torch.rand(2, 4, dtype=torch.float64)))
    for bad in (float("nan"), float("inf")):  # v_threshold=nan built a neuron that never spikes
        with pytest.raises(ValueError, match=r"v_threshold = (nan|inf) is not a finite number"):
            M.LIF(v_threshold=bad)
    with pytest.raises(ValueError, match=r"v_reset = nan is not a finite number"):
        M.IF(v_reset=torch.tensor([0.0, float("nan")]))


def test_torch_func_transforms_run_through_the_neurons():
    """torch.func.grad / vmap failed on every neuron ("must override the setup_context staticmethod"): the spike
    function now supports them, backend='auto' runs the reference loop inside a transform, and an explicit
    fused backend says it cannot. Per-sample gradients of a spiking MLP equal a loop over the examples."""
    from torch.func import functional_call, grad, vmap

    from overlooked import create_model
    from overlooked.spiking.kernels import UnsupportedBackend

    x = _x()
    for backend in ("auto", "reference"):
        leaf = x.clone().requires_grad_()
        M.LIF(tau_mem=4e-3, backend=backend)(leaf)[0].sum().backward()
        torch.testing.assert_close(grad(lambda v, b=backend: M.LIF(tau_mem=4e-3, backend=b)(v)[0].sum())(x), leaf.grad)
    if _build.compiler() is not None:
        with pytest.raises(UnsupportedBackend, match=r"backend='cpp' cannot run inside a torch.func transform"):
            grad(lambda v: M.LIF(tau_mem=4e-3, backend="cpp")(v)[0].sum())(x)
    torch.manual_seed(0)
    net = create_model("spiking_mlp", hidden=(8,), steps=2, batch_norm=False).double().eval()
    params = {k: v.detach() for k, v in net.named_parameters()}
    images, labels = torch.rand(3, 1, 28, 28, dtype=torch.float64), torch.tensor([1, 2, 3])

    def loss(p, image, label):
        return torch.nn.functional.cross_entropy(functional_call(net, p, (image[None],))["logits"], label[None])

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, images, labels)
    for i in range(3):
        one = torch.autograd.grad(loss({k: v.requires_grad_() for k, v in net.named_parameters()}, images[i], labels[i]), list(net.parameters()))
        for (name, _), g in zip(net.named_parameters(), one):
            torch.testing.assert_close(per_sample[name][i], g)


def test_plif_and_the_default_spiking_models_build_on_the_meta_device():
    """PLIF's initial w was read with .item(), which the meta device refuses, so the meta-init -> to_empty ->
    load_state_dict route (accelerate's init_empty_weights) failed for the default spiking_mlp / spiking_cnn."""
    from overlooked import create_model

    real = create_model("spiking_mlp", hidden=(8,), steps=2)
    with torch.device("meta"):
        empty = create_model("spiking_mlp", hidden=(8,), steps=2)
    assert all(p.is_meta for p in empty.parameters())
    empty.to_empty(device="cpu").load_state_dict(real.state_dict())
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(empty.eval()(x)["logits"], real.eval()(x)["logits"], rtol=0, atol=0)
    assert torch.equal(M.PLIF(init_tau=3.7).cell.w.detach(), torch.tensor(-torch.log(torch.tensor(2.7)).item()))  # the same initial bits


def test_cells_point_to_their_arguments_and_recurrent_lif_names_a_dtype_mismatch():
    """help(LIFCell) listed no arguments (*args, **params); RecurrentLIF given float64 input with float32
    weights failed inside its matmul."""
    for seq in (M.IF, M.LIF, M.CubaLIF, M.ALIF, M.PLIF, M.RecurrentLIF):
        assert f"One step of :class:`{seq.__name__}`, with the same keyword arguments but ``backend`` (``help({seq.__name__})``" in seq.cell_cls.__doc__
        assert seq.cell_cls.__doc__.count(f"help({seq.__name__})") == 1
    with pytest.raises(ValueError, match=r"RecurrentLIFCell's weights are torch.float32 but the input is torch.float64; cast one to the other"):
        M.RecurrentLIF(4)(_x())
    assert M.RecurrentLIF(4).double()(_x())[0].shape == (12, 2, 4)


def test_neuron_arguments_of_the_wrong_type_and_nan_input_are_named():
    """An adversarial review's: LIF(tau_mem=None / "0.01"), v_threshold="1" built and failed at the first step
    ("unsupported operand"); detach_reset="no" was read as True; a NaN image gave finite logits from the
    readout's bias alone (no neuron spikes on NaN)."""
    from overlooked.spiking.models import spiking_mlp

    for kwargs, says in ((dict(tau_mem=None), r"tau_mem must be a number or a numeric tensor / array, got NoneType None"), (dict(tau_mem="0.01"), r"tau_mem must be a number or a numeric tensor / array, got str"),
                         (dict(v_threshold="1"), r"v_threshold must be a number or a numeric tensor / array"), (dict(v_threshold=torch.tensor([True, False])), r"v_threshold must be a number or a numeric tensor / array"),
                         (dict(detach_reset="no"), r"detach_reset must be True or False, got 'no'")):
        with pytest.raises(ValueError, match=says):
            M.LIF(**kwargs)
    M.LIF(v_threshold=torch.tensor([1.0, 2.0]), tau_mem=2e-2, detach_reset=True)  # numbers, float tensors and bools build
    import numpy as np

    M.LIF(v_threshold=torch.tensor(1), tau_mem=np.array([0.01, 0.02]))  # and integer tensors and numpy arrays, as before
    net = spiking_mlp(hidden=(16,), steps=4)
    with pytest.raises(InputError, match=r"the input holds NaN or inf; no neuron would spike"):
        net(torch.full((2, 1, 28, 28), float("nan")))
    assert torch.isfinite(net(torch.rand(2, 1, 28, 28))["logits"]).all()


def test_recurrent_lif_sizes_and_states_and_a_0d_sequence_are_named():
    """An adversarial review's: RecurrentLIF(-1 / 4.5 / "4") were nn.Linear's raw errors; a state that was not
    the (VState, z) pair, or a z of another batch, failed in unpacking or a matmul; LIF()(tensor(1.)) an IndexError."""
    for size in (-1, 4.5, "4"):
        with pytest.raises(ValueError, match=r"RecurrentLIFCell: size must be an int >= 1"):
            M.RecurrentLIF(size)
    rec = M.RecurrentLIF(4, backend="reference")
    _, state = rec(torch.rand(3, 2, 4))
    for bad, says in (([1, 2], r"takes its state as \(VState\(v\), z\), the pair a previous call returned; got list"), ((state[0],), r"got tuple"),
                      ((state[0], torch.zeros(5, 4)), r"the state's spikes z have shape \(5, 4\), which does not broadcast to the input's shape \(2, 4\)")):
        with pytest.raises(InputError, match=says):
            rec(torch.rand(3, 2, 4), bad)
    assert rec(torch.rand(3, 2, 4), state)[0].shape == (3, 2, 4)
    with pytest.raises(InputError, match=r"LIF takes a sequence x \[T, \.\.\.\] with time first; got a 0-D tensor"):
        M.LIF()(torch.tensor(1.0))


def test_a_spiking_cnn_image_too_small_for_its_pooling_is_refused_when_built():
    from overlooked.spiking.models import spiking_cnn

    with pytest.raises(ValueError, match=r"spiking_cnn: image_size=3 is too small for 2 pooling blocks .*image_size >= 4"):
        spiking_cnn(image_size=3)
    assert spiking_cnn(image_size=4, channels=(4, 4), hidden=8)(torch.rand(2, 1, 4, 4))["logits"].shape == (2, 10)


def test_a_parameter_wider_than_one_input_step_is_named_by_the_sequence():
    """A review's: v_threshold [1, N] with an unbatched [T, N] sequence widened the state at step 1 and was then
    refused at step 2 with a message about state.v, which the user never passed."""
    neuron = M.LIF(v_threshold=torch.ones(1, 4), backend="reference")
    with pytest.raises(InputError, match=r"LIF: the neuron's parameters v_threshold \(1, 4\) broadcast one step of the input \(4,\) to \(1, 4\)"):
        neuron(torch.rand(3, 4))
    assert neuron(torch.rand(3, 2, 4))[0].shape == (3, 2, 4)
