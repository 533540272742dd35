"""Wan2.2-Animate's face motion encoder (LIA's appearance encoder and motion directions).

Each 512x512 face crop (``[-1, 1]``) goes through a StyleGAN2-style
convolutional encoder to a 512-d code, four EqualLinear layers and one more to
a 20-d motion code ``alpha``; the motion vector is ``alpha @ Q.T``, where ``Q``
is the QR-orthogonalised learned basis ``dec.direction.weight`` (``512 x 20``).
One 512-d vector per frame.

The layers keep the official names (``motion_encoder.enc.net_app.convs.1.conv2.1.weight``,
``...enc.fc.4.bias``, ``...dec.direction.weight``), including the blur
``kernel`` buffers the released files carry. "Equalised" layers store
unit-variance weights and scale them by ``1/sqrt(fan_in)`` when run; every
layer casts its weight to the input's dtype (so bf16/fp8 storage runs in the
caller's compute dtype). The QR and the projection run in float32, as in the
reference.

The network's depth follows its input size (``4 * 2**resblocks``): the
released model is the 512 one (seven ResBlocks); smaller ones exist only for
tests, with the same channel table as LIA.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...models.checkpoint.fp8 import is_fp8

STYLE_DIM = 512
MOTION_DIM = 20
FACE_SIZE = 512
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)
QR_STABILISER = 1e-8  # added to every entry of the basis before QR, as the reference does
FC_LAYERS = 5  # four style-to-style EqualLinear layers, then style-to-motion
# LIA's channel width at each feature-map size
CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _cast(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``tensor`` on ``like``'s device and dtype (fp8 storage widened first)."""
    if is_fp8(tensor.dtype):
        tensor = tensor.to(torch.float32)
    return tensor.to(device=like.device, dtype=like.dtype)


def _param(shape: tuple[int, ...], device, dtype) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape, device=device, dtype=dtype), requires_grad=False)


def blur_kernel(device=None, dtype=None) -> torch.Tensor:
    """The normalised 4x4 binomial kernel ``outer([1,3,3,1]) / 64`` of every downsampling blur."""
    taps = torch.tensor(BLUR_TAPS, dtype=torch.float32)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).to(device=device, dtype=dtype or torch.float32)


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.weight = _param((cout, cin, kernel, kernel), device, dtype)
        self.bias = _param((cout,), device, dtype) if bias else None
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else _cast(self.bias, x)
        return F.conv2d(x, _cast(self.weight, x) * self.scale, bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, device=None, dtype=None):
        super().__init__()
        self.weight = _param((cout, cin), device, dtype)
        self.bias = _param((cout,), device, dtype)
        self.scale = 1.0 / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _cast(self.weight, x) * self.scale, _cast(self.bias, x))


class FusedLeakyReLU(nn.Module):
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with a per-channel bias ``[1, C, 1, 1]``."""

    def __init__(self, channels: int, device=None, dtype=None):
        super().__init__()
        self.bias = _param((1, channels, 1, 1), device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + _cast(self.bias, x), LEAKY_SLOPE) * LEAKY_GAIN


class Blur(nn.Module):
    """Zero-pad by ``pad`` on every side, then filter each channel with the 4x4 binomial kernel."""

    def __init__(self, pad: tuple[int, int], device=None, dtype=None):
        super().__init__()
        self.pad = pad
        self.register_buffer("kernel", blur_kernel(device, dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        kernel = torch.flip(_cast(self.kernel, x), (0, 1))
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return F.conv2d(x, kernel.expand(channels, 1, *kernel.shape), groups=channels)


def conv_layer(cin: int, cout: int, kernel: int, downsample: bool = False, bias: bool = True,
               activate: bool = True, device=None, dtype=None) -> nn.Sequential:
    """LIA's ConvLayer: [blur,] conv [, activation], as an nn.Sequential (its indices are the key names)."""
    layers: list[nn.Module] = []
    if downsample:
        p = (len(BLUR_TAPS) - 2) + (kernel - 1)
        layers.append(Blur(((p + 1) // 2, p // 2), device, dtype))
        stride, padding = 2, 0
    else:
        stride, padding = 1, kernel // 2
    layers.append(EqualConv2d(cin, cout, kernel, stride, padding, bias=bias and not activate, device=device,
                              dtype=dtype))
    if activate:
        layers.append(FusedLeakyReLU(cout, device, dtype) if bias else nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, device=None, dtype=None):
        super().__init__()
        self.conv1 = conv_layer(cin, cin, 3, device=device, dtype=dtype)
        self.conv2 = conv_layer(cin, cout, 3, downsample=True, device=device, dtype=dtype)
        self.skip = conv_layer(cin, cout, 1, downsample=True, bias=False, activate=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


@dataclass(frozen=True)
class MotionEncoderConfig:
    """Input size (a power of two, 8..1024), code widths, and the conv widths (default: LIA's table)."""

    size: int = FACE_SIZE
    style_dim: int = STYLE_DIM
    motion_dim: int = MOTION_DIM
    widths: tuple[int, ...] | None = None

    @property
    def resblocks(self) -> int:
        return int(math.log2(self.size)) - 2

    @property
    def channels(self) -> tuple[int, ...]:
        """Widths from the input conv's output down to the last ResBlock's."""
        if self.widths is not None:
            return self.widths
        return tuple(CHANNELS[self.size // 2 ** i] for i in range(self.resblocks + 1))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> "MotionEncoderConfig":
        """The config a state dict was saved from (``prefix``: e.g. ``motion_encoder.``)."""
        convs = prefix + "enc.net_app.convs."
        count = 1 + max(int(k[len(convs):].split(".")[0]) for k in state_dict if k.startswith(convs))
        widths = [int(state_dict[f"{convs}0.0.weight"].shape[0])]
        widths += [int(state_dict[f"{convs}{i}.conv2.1.weight"].shape[0]) for i in range(1, count - 1)]
        direction = state_dict[f"{prefix}dec.direction.weight"]
        config = cls(size=4 * 2 ** (count - 2), style_dim=int(direction.shape[0]), motion_dim=int(direction.shape[1]))
        return config if tuple(widths) == config.channels else cls(config.size, config.style_dim,
                                                                    config.motion_dim, tuple(widths))


class _AppearanceEncoder(nn.Module):
    def __init__(self, config: MotionEncoderConfig, device=None, dtype=None):
        super().__init__()
        widths = config.channels
        layers: list[nn.Module] = [conv_layer(3, widths[0], 1, device=device, dtype=dtype)]
        layers += [ResBlock(cin, cout, device, dtype) for cin, cout in zip(widths[:-1], widths[1:])]
        layers.append(EqualConv2d(widths[-1], config.style_dim, 4, bias=False, device=device, dtype=dtype))
        self.convs = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.convs:
            x = layer(x)
        return x.flatten(1)  # [B, style_dim, 1, 1] -> [B, style_dim]


class _Encoder(nn.Module):
    def __init__(self, config: MotionEncoderConfig, device=None, dtype=None):
        super().__init__()
        self.net_app = _AppearanceEncoder(config, device, dtype)
        dims = [config.style_dim] * FC_LAYERS + [config.motion_dim]
        self.fc = nn.Sequential(*(EqualLinear(a, b, device, dtype) for a, b in zip(dims[:-1], dims[1:])))


class _Direction(nn.Module):
    def __init__(self, config: MotionEncoderConfig, device=None, dtype=None):
        super().__init__()
        self.weight = _param((config.style_dim, config.motion_dim), device, dtype)

    def basis(self, device) -> torch.Tensor:
        """The orthonormal directions ``Q`` ``[style_dim, motion_dim]`` (float32)."""
        weight = self.weight.to(device=device, dtype=torch.float32) + QR_STABILISER
        return torch.linalg.qr(weight)[0]


class _Synthesis(nn.Module):
    def __init__(self, config: MotionEncoderConfig, device=None, dtype=None):
        super().__init__()
        self.direction = _Direction(config, device, dtype)


class MotionEncoder(nn.Module):
    """Face crops ``[B, 3, size, size]`` in ``[-1, 1]`` -> motion vectors ``[B, style_dim]`` (float32)."""

    def __init__(self, config: MotionEncoderConfig = MotionEncoderConfig(), device=None, dtype=None):
        super().__init__()
        self.config = config
        self.enc = _Encoder(config, device, dtype)
        self.dec = _Synthesis(config, device, dtype)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        size = self.config.size
        if faces.dim() != 4 or tuple(faces.shape[1:]) != (3, size, size):
            raise ValueError(f"face crops must be [B, 3, {size}, {size}], got {list(faces.shape)}")
        alpha = self.enc.fc(self.enc.net_app(faces)).float()
        return alpha @ self.dec.direction.basis(alpha.device).T
