"""Layers that keep weights in their storage dtype and compute in the input's.

A 14B DiT stored in fp8 or bf16 must not be copied to float32 to run: each
layer casts its own weight (and, for "scaled" fp8 files, multiplies in the
per-weight ``scale_weight``) at the moment it is used. Inside ComfyUI the host
seam hands the DiT ComfyUI's own ``comfy.ops`` instead, which do the same and
also stream weights in low-VRAM mode; both expose the same class names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cast_weight(module: nn.Module, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The module's weight and bias on ``like``'s device and dtype, fp8 scale applied."""
    weight = module.weight.to(device=like.device, dtype=like.dtype)
    scale = getattr(module, "scale_weight", None)
    if scale is not None:
        weight = weight * scale.to(device=like.device, dtype=like.dtype)
    bias = module.bias
    if bias is not None:
        bias = bias.to(device=like.device, dtype=like.dtype)
    return weight, bias


class CastLinear(nn.Linear):
    scale_weight: torch.Tensor | None = None
    scale_input: torch.Tensor | None = None  # the activation scale of a scaled-fp8 file (fp8 matmul only)
    fp8_matmul: bool = False  # set by models/fp8_matmul.py: multiply fp8 x fp8 with torch._scaled_mm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp8_matmul and x.dtype != self.weight.dtype:
            from .fp8_matmul import fp8_linear
            return fp8_linear(x, self.weight, self.scale_weight, self.scale_input, self.bias)
        return F.linear(x, *cast_weight(self, x))


class CastConv2d(nn.Conv2d):
    scale_weight: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *cast_weight(self, x))


class CastConv3d(nn.Conv3d):
    scale_weight: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *cast_weight(self, x))


class CastConv1d(nn.Conv1d):
    """The Conv1d the pack's modules use where ``operations`` has none (``CastOps`` does not list one)."""

    scale_weight: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *cast_weight(self, x))


class CastLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        return F.layer_norm(x, self.normalized_shape, *cast_weight(self, x), self.eps)


class CastOps:
    """The plain-torch operations namespace (same names as ``comfy.ops`` classes)."""

    Linear = CastLinear
    Conv2d = CastConv2d
    Conv3d = CastConv3d
    LayerNorm = CastLayerNorm
