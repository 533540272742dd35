"""fp8 matrix multiplication for scaled-fp8 weights, chosen at run time.

A scaled-fp8 file stores ``w8`` (fp8) and a per-tensor ``scale_weight`` (``w = w8 * scale_weight``); the
Comfy-Org repacks may add a per-tensor activation scale ``scale_input`` (second generation:
``input_scale``). By default the pack's layers upcast ``w8`` to the compute dtype and multiply in bf16.
On GPUs with fp8 tensor cores (NVIDIA compute capability 8.9 and up: Ada, Hopper, Blackwell) the layer can
instead quantize its input to fp8 and call ``torch._scaled_mm`` with both scales, as ComfyUI's fp8 layers
do (``comfy/ops.py`` ``fp8_linear``): ``x8 = clamp(x / scale_input, +-448)``, ``y = (x8 @ w8.T) *
scale_input * scale_weight + bias``. A layer without ``scale_input`` uses 1 (ComfyUI's choice: the input
is clamped to the fp8 range, not rescaled). The input's quantization costs precision (about 2-3 % relative
per layer on random data), so it is a speed switch, not a default outside the GPUs that have the units.

Modes (sampler input ``fp8_matmul``, CLI ``--fp8-matmul``): ``auto`` (the default) uses ``_scaled_mm``
where the device has fp8 tensor cores and upcasts elsewhere; ``off`` always upcasts; ``on`` uses it on any
device whose torch runs ``_scaled_mm`` (torch's CPU kernel too, for tests), refusing a device that has none.
Inside ComfyUI the host's own layers decide (0.8+: its mixed-precision ops use fp8 matmul whenever
``supports_fp8_compute``; 0.3.x: its scaled-fp8 ops upcast unless ``fp8_optimizations``).
"""
from __future__ import annotations

import logging
from functools import lru_cache

import torch
from torch import nn

from ..errors import InputError, first_line

log = logging.getLogger(__name__)

FP8_MATMUL_MODES = ("auto", "off", "on")
MATMUL_FP8 = (torch.float8_e4m3fn,)  # _scaled_mm takes e4m3 for both operands (e5m2 weights upcast)
_FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


def has_fp8_tensor_cores(device: torch.device | str) -> bool:
    """True on CUDA devices of compute capability 8.9 or newer."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


@lru_cache(maxsize=None)
def _scaled_mm_runs(device: str) -> str | None:
    """None when ``torch._scaled_mm`` runs on ``device``, else the reason it does not."""
    try:
        a = torch.zeros(16, 16, device=device).to(torch.float8_e4m3fn)
        one = torch.ones((), device=device)
        torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except Exception as error:  # RuntimeError / NotImplementedError from a torch without the kernel
        return first_line(error)
    return None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, scale_weight: torch.Tensor | None,
               scale_input: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight * scale_weight, bias)`` computed by ``torch._scaled_mm`` on fp8 operands."""
    shape, dtype, device = x.shape, x.dtype, x.device
    one = torch.ones((), device=device, dtype=torch.float32)
    a_scale = one if scale_input is None else scale_input.to(device=device, dtype=torch.float32).reshape(())
    b_scale = one if scale_weight is None else scale_weight.to(device=device, dtype=torch.float32).reshape(())
    flat = x.reshape(-1, shape[-1])
    if scale_input is not None:
        flat = flat.float() / a_scale
    x8 = flat.clamp(-_FP8_MAX, _FP8_MAX).to(torch.float8_e4m3fn).contiguous()
    w8 = weight.to(device)
    out = torch._scaled_mm(x8, w8.t(), scale_a=a_scale, scale_b=b_scale, out_dtype=dtype,
                           bias=None if bias is None else bias.to(device=device, dtype=dtype))
    if isinstance(out, tuple):  # torch < 2.5 also returned the amax
        out = out[0]
    return out.reshape(*shape[:-1], weight.shape[0])


def set_fp8_matmul(model: nn.Module, mode: str, device: torch.device | str) -> int:
    """Switch every pack layer of ``model`` holding an e4m3 weight to fp8 matmul (or back); returns how many.

    ``mode`` is one of :data:`FP8_MATMUL_MODES` (see the module docstring); ``device`` is where the model
    computes. Layers of other classes (the host's) are left to the host.
    """
    if mode not in FP8_MATMUL_MODES:
        raise InputError("fp8_matmul", f"'{mode}' is not a mode", f"one of {', '.join(FP8_MATMUL_MODES)}")
    device = torch.device(device)
    enable = mode == "on" or (mode == "auto" and has_fp8_tensor_cores(device))
    if mode == "on":
        reason = _scaled_mm_runs(str(device))
        if reason is not None:
            raise InputError("fp8_matmul", f"is 'on' but torch {torch.__version__} cannot run fp8 matrix "
                             f"multiplication on {device} ({reason})",
                             "'auto' (fp8 matmul on GPUs of compute capability 8.9+, upcast elsewhere) or 'off'")
    switched = 0
    for module in model.modules():
        if hasattr(type(module), "fp8_matmul") and getattr(module, "weight", None) is not None:
            use = enable and module.weight.dtype in MATMUL_FP8
            module.fp8_matmul = use
            switched += int(use)
    if switched:
        log.info("PoseAnimate: %d fp8 layers compute with torch._scaled_mm on %s", switched, device)
    return switched
