"""fp8 weights, plain and "scaled" (ComfyUI's ``*_fp8_scaled`` files).

A scaled fp8 file stores each quantized Linear weight as ``w8`` in fp8 plus a
float32 ``<module>.scale_weight`` so that the real weight is ``w8 * scale``,
and marks itself with an empty ``scaled_fp8`` tensor whose dtype is the fp8
format (ComfyUI's model_detection reads it the same way; a float32 marker
means e4m3fn). Some files also carry ``scale_input`` (an activation scale for
fp8 matrix multiplication; it plays no part in the weight's value).

Kept in fp8, the scale rides on the layer (``models/ops.py`` multiplies it in
when the layer runs); converted to another storage dtype, the weight is
dequantized here, once, per tensor.
"""
from __future__ import annotations

import torch
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_NAMES = ("scale_weight", "scale_input")


def is_fp8(dtype: object) -> bool:
    return dtype in FP8_DTYPES


def marker_dtype(marker: torch.Tensor | torch.dtype) -> torch.dtype:
    """The fp8 format a ``scaled_fp8`` marker announces."""
    dtype = marker if isinstance(marker, torch.dtype) else marker.dtype
    return dtype if is_fp8(dtype) else torch.float8_e4m3fn


def split_scale_key(key: str) -> tuple[str, str] | None:
    """``('blocks.0.ffn.0', 'scale_weight')`` for a scale key, else None."""
    module, _, name = key.rpartition(".")
    return (module, name) if name in SCALE_NAMES and module else None


def dequantize(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``weight * scale`` computed in float32, stored as ``dtype``."""
    out = weight.to(torch.float32)
    if scale is not None:
        out = out * scale.to(device=out.device, dtype=torch.float32)
    return out.to(dtype)


def set_module_tensor(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    """Put ``value`` on ``module`` as ``name``, replacing a parameter, buffer or attribute.

    A slot the layer class declared as a parameter (ComfyUI's scaled ops) stays
    a parameter. A name the class declares as a plain attribute
    (``CastLinear.scale_weight = None``) can only be shadowed by an instance
    attribute: a buffer of that name would never be found by attribute lookup.
    Otherwise the scale becomes a buffer, so ``model.to(device)`` moves it.
    """
    if name in module._parameters:
        module._parameters[name] = None if value is None else nn.Parameter(value, requires_grad=False)
    elif name in module._buffers:
        module._buffers[name] = value
    elif hasattr(type(module), name):
        object.__setattr__(module, name, value)
    else:
        module.register_buffer(name, value)


def takes_scale(module: nn.Module, name: str = "scale_weight") -> bool:
    """True when the layer applies ``name`` itself (our CastOps, ComfyUI's scaled ops)."""
    return hasattr(module, name)
