"""Capsule layers and the CapsNet of Sabour et al. 2017: parameters here, maths in ``functional``."""

from __future__ import annotations

import torch
from torch import nn

from overlooked.capsules import functional as CF
from overlooked.capsules.fftconv import fft_conv2d
from overlooked.capsules.fused import DEFAULT_CHUNK, autocast_off, check_chunk, check_routing_inputs, fused_routing
from overlooked.checks import autocast_enabled, in_torch_func, is_count
from overlooked.errors import InputError

BACKENDS = ("reference", "fused")  # see RoutingCaps


def check_image(image: torch.Tensor, model: str, in_channels: int, size: int | None = None, min_size: int | None = None, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
    """Raise a ``ValueError`` unless ``image`` is a floating-point batch ``[B, in_channels, size, size]`` (or, with
    ``min_size``, ``[B, in_channels, H, W]`` with both sides at least ``min_size``), naming what was expected,
    what was given and the likely fix. Shape and dtype checks only: no device sync, negligible cost.

    >>> check_image(torch.zeros(2, 1, 28, 28), "CapsNet", 1, 28)
    >>> check_image(torch.zeros(2, 28, 28), "CapsNet", 1, 28)
    Traceback (most recent call last):
    ...
    overlooked.errors.InputError: CapsNet takes images [B, 1, 28, 28] (in_channels=1, image_size=28); got [2, 28, 28]: add the channel dimension with image.unsqueeze(1)
    """
    shape = list(image.shape)
    side = f"{size}, {size}" if size is not None else "H, W"
    want = f"[B, {in_channels}, {side}]" + (f" (in_channels={in_channels}, image_size={size})" if size is not None else f" with H, W >= {min_size} (in_channels={in_channels})")
    fix = ""
    if image.dim() == 4 and image.shape[1] == in_channels:
        h, w = shape[2], shape[3]
        if size is not None and (h, w) != (size, size):
            fix = f"the model was built for {size}x{size} images: build it with image_size={h}" if h == w else f"the model takes square {size}x{size} images"
            fix += " (its layer sizes depend on it), or resize/pad the images"
        elif min_size is not None and min(h, w) < min_size:
            fix = f"each side must be at least {min_size} so that every layer keeps one position; pad or resize the images"
    elif image.dim() == 3 and in_channels == 1:
        fix = "add the channel dimension with image.unsqueeze(1)"
    elif image.dim() == 4 and image.shape[-1] == in_channels and image.shape[1] != in_channels:
        fix = "channels come second: image.permute(0, 3, 1, 2) for a channels-last [B, H, W, C] batch"
    elif image.dim() == 4:
        fix = f"the model was built with in_channels={in_channels}"
    else:
        fix = f"a batch of images has 4 dimensions, this has {image.dim()}"
    if fix:
        raise InputError(f"{model} takes images {want}; got {shape}: {fix}")
    if not image.is_floating_point():
        raise InputError(f"{model} takes floating-point images; got dtype {image.dtype}: convert with image.float() (and scale, e.g. / 255 for uint8 pixels)")
    if dtype is not None and image.dtype != dtype and not autocast_enabled(image):
        raise InputError(f"{model}'s weights are {dtype} but the images are {image.dtype}: cast them with image.to({dtype}) (or the model with model.to({image.dtype}))")
    if device is not None and image.device != device:  # CPU weights with meta images gave CPU zeros, not an error
        raise InputError(f"{model}'s weights are on {device}; got images on {image.device}: move them with image.to({str(device)!r}) (or the model with model.to(...))")


class PrimaryCaps(nn.Module):
    """Convolutional capsules: a conv whose ``channels * dim`` maps are grouped into ``dim``-D vectors and
    squashed (§4: 32 channels of 8D capsules, 9x9 kernels, stride 2).

    ``fft=True`` computes the same convolution in the frequency domain (:mod:`overlooked.capsules.fftconv`,
    tested equal) outside autocast; under bf16 autocast oneDNN's direct bf16 convolution is faster here.
    """

    def __init__(self, in_channels: int = 256, channels: int = 32, dim: int = 8, kernel_size: int = 9, stride: int = 2, fft: bool = False):
        super().__init__()
        self.channels, self.dim, self.fft = channels, dim, fft
        self.conv = nn.Conv2d(in_channels, channels * dim, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> capsules ``[B, channels * H' * W', dim]``."""
        if x.dim() != 4 or x.shape[1] != self.conv.in_channels:
            raise InputError(f"PrimaryCaps takes feature maps [B, C={self.conv.in_channels}, H, W]; got {list(x.shape)} (a single example: x.unsqueeze(0))")
        if self.fft and not autocast_enabled(x):
            y = fft_conv2d(x, self.conv.weight, self.conv.bias, self.conv.stride[0])  # [B, channels*dim, H', W']
        else:
            y = self.conv(x)  # [B, channels*dim, H', W']
        B, _, H, W = y.shape
        y = y.view(B, self.channels, self.dim, H, W).permute(0, 1, 3, 4, 2)  # [B, channels, H', W', dim]
        return CF.squash(y.reshape(B, self.channels * H * W, self.dim))


class RoutingCaps(nn.Module):
    """Fully connected capsule layer with dynamic routing: ``u_hat_{j|i} = W_ij u_i`` then Procedure 1.

    Args:
        in_caps: ``I`` child capsules (1152 on 28x28 MNIST).
        in_dim: child dimension (8).
        out_caps: ``J`` parents (10).
        out_dim: parent dimension (16).
        iterations: routing iterations (3).
        detach_intermediate: see :func:`overlooked.capsules.functional.dynamic_routing`.
        init_std: W drawn from N(0, init_std).
        backend: ``"reference"`` (plain PyTorch: :meth:`predictions` then
            :func:`~overlooked.capsules.functional.dynamic_routing`) or ``"fused"`` (the same maths as one
            autograd function routed a few examples at a time, :mod:`overlooked.capsules.fused`; about 3x
            faster on CPU). Both route in :func:`~overlooked.capsules.functional.compute_dtype` (float32 for
            float32, bf16 and fp16 inputs or weights, also under autocast; float64 for a float64 model). Tests
            prove the two equal, gradients included.
        chunk: examples routed at a time by the fused backend (speed only).

    A subclass that overrides :meth:`predictions` runs on the reference backend (the fused one refuses it).
    """

    def __init__(self, in_caps: int = 1152, in_dim: int = 8, out_caps: int = 10, out_dim: int = 16, iterations: int = 3, detach_intermediate: bool = False, init_std: float = 0.01, backend: str = "reference", chunk: int = DEFAULT_CHUNK):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not is_count(iterations):  # 2.5 passed this check and failed inside the fused kernel
            raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
        if backend == "fused" and type(self).predictions is not RoutingCaps.predictions:
            raise ValueError(
                f"{type(self).__name__} overrides predictions(), which the fused backend never calls (it computes W u inside its "
                "own autograd function); use backend='reference', which routes whatever predictions() returns"
            )
        self.iterations, self.detach_intermediate, self.backend, self.chunk = iterations, detach_intermediate, backend, check_chunk(chunk)
        self.W = nn.Parameter(init_std * torch.randn(in_caps, in_dim, out_caps * out_dim))  # W_ij stacked over j
        self.out_caps, self.out_dim = out_caps, out_dim

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` ``[B, I, in_dim]`` -> ``u_hat`` ``[B, I, J, D]``, one ``[in_dim, D]`` matrix per pair (i, j), in
        :func:`~overlooked.capsules.functional.compute_dtype` of ``u`` and ``W``."""
        check_routing_inputs(u, self.W, self.out_caps, type(self).__name__)
        B, I, _ = u.shape
        dtype = CF.compute_dtype(u, self.W)  # the fused backend's rule: bf16 -> float32, float64 stays
        u_hat = torch.bmm(u.transpose(0, 1).to(dtype), self.W.to(dtype))  # [I, B, J*D]: I batched [B, in] @ [in, J*D]
        return u_hat.transpose(0, 1).view(B, I, self.out_caps, self.out_dim)

    def extra_repr(self) -> str:
        return f"in_caps={self.W.shape[0]}, in_dim={self.W.shape[1]}, out_caps={self.out_caps}, out_dim={self.out_dim}, iterations={self.iterations}, backend={self.backend!r}"

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``u`` ``[B, I, in_dim]`` -> parents ``[B, J, D]`` and couplings ``[B, I, J]``."""
        if self.backend == "fused" and not (in_torch_func(u) or in_torch_func(self.W)):  # a torch.func transform: the reference maths below
            return fused_routing(u, self.W, self.out_caps, self.iterations, self.detach_intermediate, self.chunk)
        with autocast_off(u):  # routing in float32 or wider on both backends, also under bf16 autocast
            return CF.dynamic_routing(self.predictions(u), self.iterations, self.detach_intermediate)


MIN_IMAGE_SIZE = 17  # (17 - 8 - 9) // 2 + 1 = 1: the smallest side that leaves one PrimaryCaps position


class CapsNet(nn.Module):
    """CapsNet (Sabour, Frosst, Hinton 2017, §4): Conv1 256@9x9 ReLU, PrimaryCaps 32x8D 9x9/2, DigitCaps
    10x16D with 3 routing iterations, and a 512-1024-(H*W) sigmoid decoder fed by the masked capsules.

    In training the decoder reads the true class's capsule; in evaluation the longest one (§4.1). With
    ``reconstruct=2`` (MultiMNIST, §6) it reconstructs each of two digits separately from its own capsule:
    the two labelled classes in training, the two longest capsules in evaluation. That variant has the same
    parameters (11,361,808 on 36x36 input): one decoder, called once per digit.

    Args:
        in_channels: input channels (1).
        image_size: square input side (28 for MNIST, 36 for MultiMNIST).
        num_classes: parent capsules (10).
        iterations: routing iterations.
        decoder: build the reconstruction decoder.
        detach_intermediate: routing speed-up switch (off by default).
        reconstruct: how many capsules the decoder reconstructs, each on its own (1 for MNIST, 2 for MultiMNIST).
        backend: ``"reference"`` or ``"fused"``; the fused one runs conv1 channels-last (a memory layout
            only), the PrimaryCaps conv in the frequency domain (:mod:`overlooked.capsules.fftconv`; the
            direct oneDNN conv under bf16 autocast) and routes with :mod:`overlooked.capsules.fused`. Same maths
            either way, tested equal.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, iterations: int = 3, decoder: bool = True, detach_intermediate: bool = False, backend: str = "reference", reconstruct: int = 1):
        super().__init__()
        if not 1 <= reconstruct <= num_classes:
            raise ValueError(f"reconstruct must be between 1 and num_classes={num_classes}, got {reconstruct}")
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE} (conv1 9x9 then PrimaryCaps 9x9 stride 2 leave no capsule below it), got {image_size}")
        self.reconstruct = reconstruct
        self.channels_last = backend == "fused"
        self.image_size, self.in_channels, self.num_classes = image_size, in_channels, num_classes
        self.conv1 = nn.Conv2d(in_channels, 256, 9)
        self.primary = PrimaryCaps(256, 32, 8, 9, 2, fft=backend == "fused")
        side = ((image_size - 8) - 9) // 2 + 1  # conv1 (valid 9x9) then 9x9 stride 2
        self.digits = RoutingCaps(32 * side * side, 8, num_classes, 16, iterations, detach_intermediate, backend=backend)
        self.decoder = (
            nn.Sequential(
                nn.Linear(16 * num_classes, 512),
                nn.ReLU(),
                nn.Linear(512, 1024),
                nn.ReLU(),
                nn.Linear(1024, in_channels * image_size * image_size),
                nn.Sigmoid(),
            )
            if decoder
            else None
        )
        if self.channels_last:  # conv weights channels-last too, so oneDNN skips the layout reorders
            self.conv1.to(memory_format=torch.channels_last)
            self.primary.conv.to(memory_format=torch.channels_last)  # the bf16 path runs it with oneDNN

    def decode(self, v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The decoder's reconstruction ``[B, C*S*S]`` from capsule ``index`` ``[B]`` of ``v`` ``[B, K, 16]``.
        Routing returns at least float32, so its output is cast to the decoder's dtype (a no-op unless the
        model itself is bf16 or fp16)."""
        return self.decoder(CF.mask_capsules(v, index).to(self.decoder[0].weight.dtype))  # [B, K*16] -> [B, C*S*S]

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``image`` ``[B, C, S, S]``, ``label`` ``[B]`` class indices (``[B, R]`` with ``reconstruct=R > 1``;
        used for masking in training only) -> ``{"logits": capsule lengths [B, K], "poses": [B, K, 16],
        "couplings": [B, I, K], "reconstruction": [B, C*S*S]}``; with ``R > 1`` the reconstruction is
        ``[B, R, C*S*S]``, one per capsule, and ``"reconstruction_classes"`` ``[B, R]`` says which."""
        check_image(image, type(self).__name__, self.in_channels, self.image_size, device=self.conv1.weight.device, dtype=self.conv1.weight.dtype)
        if self.channels_last:  # oneDNN's preferred layout; values are unchanged
            image = image.contiguous(memory_format=torch.channels_last)
        x = torch.relu(self.conv1(image))  # [B, 256, S-8, S-8]
        u = self.primary(x)  # [B, I, 8]
        v, c = self.digits(u)  # [B, K, 16], [B, I, K]
        lengths = v.norm(dim=-1)  # [B, K]
        out = {"logits": lengths, "poses": v, "couplings": c}
        if self.decoder is None:
            return out
        if self.reconstruct == 1:
            index = label if (self.training and label is not None) else lengths.argmax(-1)
            out["reconstruction"] = self.decode(v, index)
            return out
        if self.training and label is not None:
            if label.dim() != 2 or label.shape[1] != self.reconstruct:
                raise InputError(f"with reconstruct={self.reconstruct} the label must be class indices [B, {self.reconstruct}], got {tuple(label.shape)}")
            classes = label
        else:
            classes = lengths.topk(self.reconstruct, dim=-1).indices  # [B, R]
        out["reconstruction"] = torch.stack([self.decode(v, classes[:, r]) for r in range(self.reconstruct)], 1)
        out["reconstruction_classes"] = classes
        return out
