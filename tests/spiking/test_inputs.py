"""SpikingNet's input rule: static ``[B, *input_shape]`` (repeated over ``steps``) or time-first
``[T=steps, B, *input_shape]``; any other shape is refused with a message naming both layouts."""

from __future__ import annotations

import pytest
import torch

from overlooked.spiking.models import spiking_cnn, spiking_mlp

BUILDERS = {
    "spiking_mlp": lambda: spiking_mlp(hidden=(8,), steps=4, backend="reference"),
    "spiking_cnn": lambda: spiking_cnn(channels=(2,), kernel_size=3, hidden=6, steps=4, backend="reference"),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_static_and_time_first_inputs_are_accepted(name):
    torch.manual_seed(0)
    net = BUILDERS[name]().eval()
    assert net.input_shape == (1, 28, 28)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert net(x)["logits"].shape == (3, 10)
        assert net(x.unsqueeze(0).expand(4, *x.shape))["logits"].shape == (3, 10)


@pytest.mark.parametrize("name", BUILDERS)
def test_batch_first_sequence_is_refused_not_misread(name):
    """[B=3, T=4, 1, 28, 28] used to return logits [4, 10] (read as T=3, B=4)."""
    net = BUILDERS[name]()
    with pytest.raises(ValueError, match=r"got \[3, 4, 1, 28, 28\].*T = steps = 4.*x\.transpose\(0, 1\)"):
        net(torch.rand(3, 4, 1, 28, 28))


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize(
    "shape",
    [
        (3, 28, 28),  # no channel dimension: used to fail inside the first Linear / conv
        (3, 1, 32, 32),  # another image size
        (4, 3, 1, 32, 32),  # a sequence of another image size
        (3, 784),  # flattened
        (2, 4, 3, 1, 28, 28),  # one dimension too many
    ],
)
def test_wrong_shapes_name_both_layouts(name, shape):
    net = BUILDERS[name]()
    expected = r"static input \[B, 1, 28, 28\].*time-first sequence \[T=4, B, 1, 28, 28\]; got \[" + ", ".join(map(str, shape)) + r"\].*input_shape \(1, 28, 28\)"
    with pytest.raises(ValueError, match=expected):
        net(torch.rand(*shape))


def test_feature_vector_model_takes_b_f_and_t_b_f():
    net = spiking_mlp(input_shape=(5,), hidden=(4,), steps=3, backend="reference").eval()
    with torch.no_grad():
        assert net(torch.rand(2, 5))["logits"].shape == (2, 10)
        assert net(torch.rand(3, 2, 5))["logits"].shape == (2, 10)
    with pytest.raises(ValueError, match=r"got \[2, 3, 5\].*T = steps = 3"):
        net(torch.rand(2, 3, 5))  # batch-first
    with pytest.raises(ValueError, match=r"got \[5\]"):
        net(torch.rand(5))  # no batch


def test_another_T_runs_after_setting_steps():
    """The error's advice works: set model.steps to run a sequence of another length."""
    net = spiking_mlp(hidden=(8,), steps=4, backend="reference").eval()
    x = torch.rand(6, 2, 1, 28, 28)
    with pytest.raises(ValueError, match="set model.steps = T"):
        net(x)
    net.steps = 6
    with torch.no_grad():
        assert net(x)["logits"].shape == (2, 10)


def test_an_input_of_another_float_dtype_than_the_weights_is_named():
    from overlooked.errors import InputError

    m = spiking_mlp(steps=4).eval()
    with pytest.raises(InputError, match=r"SpikingNet's weights are torch.float32 but the input is torch.float64; cast one to the other"):
        m(torch.rand(2, 1, 28, 28, dtype=torch.float64))
    assert m.double()(torch.rand(2, 1, 28, 28, dtype=torch.float64))["logits"].dtype == torch.float64
