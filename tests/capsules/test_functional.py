"""Capsule maths: squash, routing couplings, margin loss, gradcheck, parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from overlooked.capsules import functional as CF
from overlooked.capsules.models import CapsuleLoss, capsnet, capsnet_multimnist


def test_squash_norm_below_one_and_monotone():
    torch.manual_seed(0)
    lengths = torch.linspace(0.0, 20.0, 201)
    s = lengths[:, None] * torch.nn.functional.normalize(torch.randn(201, 8), dim=-1)
    norms = CF.squash(s).norm(dim=-1)
    assert (norms < 1).all()
    assert (norms[1:] > norms[:-1]).all()
    torch.testing.assert_close(norms, lengths**2 / (1 + lengths**2), atol=1e-4, rtol=1e-4)
    v = CF.squash(torch.tensor([1.0, 0.0]))  # |s| = 1 -> length 1/2, same direction
    torch.testing.assert_close(v, torch.tensor([0.5, 0.0]))


def test_squash_of_a_long_fp16_vector_is_a_unit_vector_not_nan():
    """|s|^2 overflowed fp16 from |s| = 256 on and squash returned NaN (inf / inf; the capsule audit: |s| = 283)."""
    s = torch.full((2, 8), 100.0, dtype=torch.float16)
    v = CF.squash(s)
    assert v.dtype == torch.float16 and torch.isfinite(v).all()
    torch.testing.assert_close(v.float().norm(dim=-1), torch.ones(2), atol=1e-3, rtol=0)
    small = torch.tensor([[3.0, 4.0]], dtype=torch.float16)  # within range: the float32 result, rounded
    assert torch.equal(CF.squash(small), CF.squash(small.float()).half())


def test_couplings_of_each_child_sum_to_one_over_its_parents():
    torch.manual_seed(0)
    u_hat = torch.randn(2, 7, 5, 4)  # [B, I, J, D]
    for iterations in (1, 2, 3):
        v, c = CF.dynamic_routing(u_hat, iterations)
        torch.testing.assert_close(c.sum(dim=2), torch.ones(2, 7))  # over parents j
        assert not torch.allclose(c.sum(dim=1), torch.ones(2, 5))  # not over children
        assert v.shape == (2, 5, 4)
    _, c1 = CF.dynamic_routing(u_hat, 1)
    torch.testing.assert_close(c1, torch.full((2, 7, 5), 1 / 5))  # b = 0 at the first iteration


def test_routing_by_agreement_hand_example():
    """Two children agree on parent 0 and disagree on parent 1: routing shifts their coupling to parent 0."""
    u_hat = torch.zeros(1, 2, 2, 2)
    u_hat[0, :, 0] = torch.tensor([2.0, 0.0])  # both predict the same vector for parent 0
    u_hat[0, 0, 1] = torch.tensor([0.0, 2.0])
    u_hat[0, 1, 1] = torch.tensor([0.0, -2.0])  # opposite predictions for parent 1
    _, c = CF.dynamic_routing(u_hat, 3)
    assert (c[0, :, 0] > 0.5).all()
    # first iteration by hand: s_0 = 0.5*2 + 0.5*2 = 2 -> v_0 = 0.8 * e_x; s_1 = 0 -> v_1 = 0
    v1, _ = CF.dynamic_routing(u_hat, 1)
    torch.testing.assert_close(v1[0, 0], torch.tensor([0.8, 0.0]))
    torch.testing.assert_close(v1[0, 1], torch.zeros(2))


def test_gradcheck_routing_and_squash():
    torch.manual_seed(0)
    u_hat = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    # the exact gradient; detach_intermediate=True deliberately drops part of it (tested below)
    assert gradcheck(lambda x: CF.dynamic_routing(x, 3)[0], (u_hat,))
    assert gradcheck(lambda x: CF.dynamic_routing(x, 3)[1], (u_hat,))
    s = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(CF.squash, (s,))


def test_detach_changes_only_the_gradient():
    torch.manual_seed(1)
    u_hat = torch.randn(2, 4, 3, 3, requires_grad=True)
    a, _ = CF.dynamic_routing(u_hat, 3, False)
    b, _ = CF.dynamic_routing(u_hat, 3, True)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.sum(), u_hat)[0]
    gb = torch.autograd.grad(b.sum(), u_hat)[0]
    assert not torch.allclose(ga, gb)


def test_margin_loss_hand_values():
    lengths = torch.tensor([[0.5, 0.3, 0.05]])
    # class 0 present: (0.9 - 0.5)^2 = 0.16; absent: 0.5 * (0.3 - 0.1)^2 = 0.02; 0.05 < m- -> 0
    torch.testing.assert_close(CF.margin_loss(lengths, torch.tensor([0])), torch.tensor([0.18]))
    two = CF.margin_loss(lengths, torch.tensor([[1.0, 1.0, 0.0]]))  # MultiMNIST: two digits present
    torch.testing.assert_close(two, torch.tensor([0.16 + 0.36]))


def test_capsule_loss_adds_scaled_reconstruction():
    out = {"logits": torch.tensor([[0.9, 0.05]]), "reconstruction": torch.zeros(1, 4)}
    batch = {"label": torch.tensor([0]), "image": torch.ones(1, 1, 2, 2)}
    torch.testing.assert_close(CapsuleLoss()(out, batch), torch.tensor(0.0005 * 4))


@pytest.mark.parametrize("kwargs, expected", [({}, 8_215_568), ({"decoder": False}, 6_804_224), ({"image_size": 36}, 11_361_808)])
def test_published_parameter_counts(kwargs, expected):
    assert sum(p.numel() for p in capsnet(**kwargs).parameters()) == expected


def test_capsnet_forward_backward_no_nan_and_masking():
    torch.manual_seed(0)
    model = capsnet()
    image, label = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    out = model(image, label)
    assert out["logits"].shape == (2, 10) and out["reconstruction"].shape == (2, 784)
    torch.testing.assert_close(out["couplings"].sum(-1), torch.ones(2, 1152))
    loss = CapsuleLoss()(out, {"label": label, "image": image})
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    seen = []
    hook = model.decoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        ev = model(image, label)
        longest = ev["logits"].argmax(-1)
        by_length = model.decoder(CF.mask_capsules(ev["poses"], longest))
    hook.remove()
    assert (longest != label).all()  # so the two choices differ
    # evaluation decodes the longest capsule, not the label. Exact comparisons: at initialisation the capsules are
    # short and the two reconstructions differ by only about 1e-6, inside assert_close's float32 tolerance
    torch.testing.assert_close(seen[0], CF.mask_capsules(ev["poses"], longest), rtol=0, atol=0)
    torch.testing.assert_close(ev["reconstruction"], by_length, rtol=0, atol=0)


def test_training_decodes_the_labelled_capsule_not_the_longest():
    """§4.1: in training the label masks the decoder's input. With labels that differ from the longest capsule,
    the decoder sees only the labelled capsule and the reconstruction is the decoder of the label-masked
    capsules, not of the argmax-masked ones (which evaluation decodes); the same for the two-digit MultiMNIST
    variant with its ``[B, 2]`` labels. (At initialisation the capsules are short, so the two reconstructions
    differ only by about 1e-6: the decoder's input is where the choice shows clearly.)"""

    def run(model, image, labels):
        seen = []
        hook = model.decoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
        with torch.no_grad():
            out = model(image, labels)
        hook.remove()
        return out, seen

    torch.manual_seed(0)
    model = capsnet().train()  # CapsNet has no dropout or batch norm: train() changes only the masking
    image = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        longest = model(image)["logits"].argmax(-1)
    label = (longest + 1 + torch.arange(3)) % 10  # never the longest capsule
    out, seen = run(model, image, label)
    assert (out["logits"].argmax(-1) == longest).all()
    torch.testing.assert_close(seen[0], CF.mask_capsules(out["poses"], label), rtol=0, atol=0)
    assert seen[0].view(3, 10, 16)[torch.arange(3), label].norm(dim=-1).gt(0).all()  # the labelled capsule, not zeros
    with torch.no_grad():
        by_label = model.decoder(CF.mask_capsules(out["poses"], label))
        by_length = model.decoder(CF.mask_capsules(out["poses"], longest))
    torch.testing.assert_close(out["reconstruction"], by_label, rtol=0, atol=0)
    assert ((out["reconstruction"] - by_length).abs().amax(-1) > 0).all()  # every example differs

    torch.manual_seed(0)
    multi = capsnet_multimnist().train()
    image = torch.rand(2, 1, 36, 36)
    with torch.no_grad():
        top2 = multi(image)["logits"].topk(2, dim=-1).indices  # [B, 2]
    # two classes per example, neither among its two longest capsules
    labels = torch.stack([torch.tensor([k for k in range(10) if k not in row][:2]) for row in top2.tolist()])
    out, seen = run(multi, image, labels)
    assert len(seen) == 2
    for r in range(2):  # one decoder call per digit, each fed only its labelled capsule
        fed = seen[r].view(2, 10, 16)
        torch.testing.assert_close(fed, CF.mask_capsules(out["poses"], labels[:, r]).view(2, 10, 16), rtol=0, atol=0)
        assert fed[torch.arange(2), labels[:, r]].norm(dim=-1).gt(0).all()
    with torch.no_grad():
        expected = torch.stack([multi.decoder(CF.mask_capsules(out["poses"], labels[:, r])) for r in range(2)], 1)
        by_length = torch.stack([multi.decoder(CF.mask_capsules(out["poses"], top2[:, r])) for r in range(2)], 1)
    torch.testing.assert_close(out["reconstruction_classes"], labels, rtol=0, atol=0)
    torch.testing.assert_close(out["reconstruction"], expected, rtol=0, atol=0)
    assert ((out["reconstruction"] - by_length).abs().amax(-1) > 0).all()


def test_dynamic_routing_names_the_expected_shape():
    """Was: "not enough values to unpack (expected 4, got 3)" for one example's predictions."""
    u_hat = torch.randn(2, 7, 5, 4)
    with pytest.raises(ValueError, match=r"dynamic_routing takes predictions u_hat \[B, I, J, D\] \(batch, child capsules, parent capsules, parent dimension\); got \[7, 5, 4\]: add the batch dimension with u_hat.unsqueeze\(0\)"):
        CF.dynamic_routing(u_hat[0])
    with pytest.raises(ValueError, match=r"got \[1, 2, 7, 5, 4\]$"):
        CF.dynamic_routing(u_hat[None])
    v, c = CF.dynamic_routing(u_hat[0].unsqueeze(0))  # the fix the message names
    torch.testing.assert_close(v, CF.dynamic_routing(u_hat)[0][:1])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_targets_of_any_integer_dtype_are_class_indices(dtype):
    """Was: "one_hot is only applicable to index tensor of type LongTensor" for an int32 target."""
    lengths = torch.tensor([[0.5, 0.3, 0.05], [0.2, 0.95, 0.4]])
    target = torch.tensor([0, 2], dtype=dtype)
    expected = CF.margin_loss(lengths, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))  # the same as a multi-hot
    torch.testing.assert_close(CF.margin_loss(lengths, target), expected, rtol=0, atol=0)
    torch.testing.assert_close(CF.margin_loss(lengths, target), CF.margin_loss(lengths, target.long()), rtol=0, atol=0)
    torch.testing.assert_close(CF.spread_loss(lengths, target, 0.5), CF.spread_loss(lengths, target.long(), 0.5), rtol=0, atol=0)
    v = torch.randn(2, 3, 4)
    torch.testing.assert_close(CF.mask_capsules(v, target), CF.mask_capsules(v, target.long()), rtol=0, atol=0)


def test_float_class_indices_and_wrong_shapes_are_refused_clearly():
    """margin_loss takes integer class indices [B] or a multi-hot [B, K]: a float [B] is neither."""
    lengths = torch.rand(2, 3)
    with pytest.raises(ValueError, match=r"margin_loss takes class indices \[B\] \(B=2\) or a multi-hot \[B, K\] \(K=3\); got dtype torch.float32 with shape \[2\]: class indices must be integers, convert with .long\(\)"):
        CF.margin_loss(lengths, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"got dtype torch.bool"):
        CF.margin_loss(lengths, torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"margin_loss takes class indices \[B\] \(B=2\) or a multi-hot \[B, K\] \(K=3\); got shape \[2, 2\]"):
        CF.margin_loss(lengths, torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"got shape \[3\]"):
        CF.margin_loss(lengths, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"spread_loss takes class indices \[B\]; got dtype torch.float32"):
        CF.spread_loss(lengths, torch.tensor([0.0, 1.0]), 0.5)
    for one_hot in (torch.eye(3, dtype=torch.long)[:2], torch.eye(3)[:2]):  # integer or float: named, with the fix
        with pytest.raises(ValueError, match=r"spread_loss takes class indices \[B\] \(B=2\); got shape \[2, 3\]: a one-hot \[B, K\] target becomes its indices with target.argmax\(1\)"):
            CF.spread_loss(lengths, one_hot, 0.5)
    with pytest.raises(ValueError, match=r"got shape \[2, 3\]: the spread loss .* take one class per example"):  # several classes: argmax would drop some
        CF.spread_loss(lengths, torch.ones(2, 3, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match=r"spread_loss takes class indices \[B\] \(B=2\); got shape \[1\]"):  # would broadcast
        CF.spread_loss(lengths, torch.tensor([0]), 0.5)
    for target in ([0, 7], [-1, 0]):  # an IndexError from gather before, as margin_loss words it now
        with pytest.raises(ValueError, match=rf"spread_loss got class index {min(target) if min(target) < 0 else max(target)} but has 3 classes \(0..2\)"):
            CF.spread_loss(lengths, torch.tensor(target), 0.5)
    torch.testing.assert_close(CF.margin_loss(lengths, torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.int32)), CF.margin_loss(lengths, torch.tensor([[1.0, 0, 1], [0, 1, 0]])))  # a multi-hot of any dtype


def test_capsnet_takes_int32_labels():
    """Was: the training forward's decoder mask failed inside ``F.one_hot`` for int32 labels."""
    torch.manual_seed(0)
    model = capsnet(iterations=1).train()
    image, label = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    with torch.no_grad():
        expected = model(image, label)
        got = model(image, label.int())
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    loss = CapsuleLoss()(got, {"image": image, "label": label.int()})
    torch.testing.assert_close(loss, CapsuleLoss()(expected, {"image": image, "label": label}), rtol=0, atol=0)


def test_capsule_loss_keeps_float64_and_computes_bf16_in_float32():
    """The objective used to cast the lengths and reconstructions to float32 always: a float64 model lost its
    precision in the loss. It computes in float32 for bf16 outputs and float64 for float64 ones."""
    lengths = torch.tensor([[0.5, 0.3, 0.05]], dtype=torch.float64)
    out = {"logits": lengths, "reconstruction": torch.full((1, 4), 1.0 / 3.0, dtype=torch.float64)}
    batch = {"label": torch.tensor([0]), "image": torch.zeros(1, 1, 2, 2)}
    loss = CapsuleLoss()(out, batch)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, CF.margin_loss(lengths, batch["label"])[0] + 0.0005 * 4 / 9, rtol=1e-15, atol=0)
    bf16 = CapsuleLoss()({k: v.bfloat16() for k, v in out.items()}, batch)
    assert bf16.dtype == torch.float32


def test_routing_iterations_must_be_a_whole_number_and_a_margin_may_be_one_per_example():
    u = torch.randn(2, 6, 3, 4)
    for bad in (2.5, True, 0):
        with pytest.raises(ValueError, match="iterations must be a whole number >= 1"):
            CF.dynamic_routing(u, bad)
    a, t = torch.rand(4, 3), torch.tensor([0, 1, 2, 0])
    margins = torch.tensor([0.2, 0.3, 0.4, 0.5])
    each = torch.stack([CF.spread_loss(a[i : i + 1], t[i : i + 1], float(margins[i]))[0] for i in range(4)])
    assert torch.allclose(CF.spread_loss(a, t, margins), each)  # [B] margins: one per example
    with pytest.raises(ValueError, match=r"one margin per example \(\[B\], B=4\) or one for all; got shape \[3\]"):
        CF.spread_loss(a, t, margins[:3])


def test_capsule_models_name_an_input_of_another_dtype():
    from overlooked.errors import InputError

    with pytest.raises(InputError, match=r"CapsNet's weights are torch.float32 but the images are torch.float64"):
        capsnet().eval()(torch.rand(2, 1, 28, 28, dtype=torch.float64))


def test_the_fused_capsnet_runs_on_the_meta_device_for_shapes():
    """Shape inference without memory (torch's meta device), as the reference backend already allowed: autocast
    has no meta device, so the fused path's autocast guards must not ask it."""
    out = capsnet(backend="fused").to("meta")(torch.empty(2, 1, 28, 28, device="meta"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"logits": (2, 10), "poses": (2, 10, 16), "couplings": (2, 1152, 10), "reconstruction": (2, 784)}
