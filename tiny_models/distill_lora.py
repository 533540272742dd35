"""Tiny step/CFG-distill LoRAs in the layout of the LightX2V files users run.

LightX2V's ``Wan21_*_lightx2v_cfg_step_distill_lora_rank*.safetensors`` and
Kijai's repacks (``lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors``)
are kohya/ComfyUI-style files: per Linear (and the patch embedding)
``diffusion_model.<module>.lora_down.weight`` / ``lora_up.weight`` / ``alpha``;
per bias ``<module>.diff_b``; per norm weight ``<module>.diff``; per
modulation ``<block>.modulation.diff`` (LightX2V's own extraction writes
``<block>.diff_m``). This writer makes such a file for any DiT's parameter
shapes, at any rank (a rank may exceed a tiny layer's width), in fp16, bf16 or
fp32, dotted (``diffusion_model.``) or underscored (``lora_unet_``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

DISTILL_LORA_FILE = "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"
NOT_BASE = ("animate_modules.",)  # a method's own modules hung under the DiT: the distill LoRA leaves them alone


def base_shapes(model_or_shapes) -> dict[str, tuple[int, ...]]:
    """The Wan DiT's own parameter shapes (a model or key -> shape), without a method's modules."""
    if isinstance(model_or_shapes, torch.nn.Module):
        items = ((k, tuple(v.shape)) for k, v in model_or_shapes.named_parameters())
    else:
        items = ((k, tuple(v.shape) if torch.is_tensor(v) else tuple(v)) for k, v in model_or_shapes.items())
    return {k: s for k, s in items if not k.startswith(NOT_BASE)}


def _stem(module: str, style: str) -> str:
    if style == "comfy":
        return f"diffusion_model.{module}"
    if style == "kohya":
        return "lora_unet_" + module.replace(".", "_")
    raise ValueError(f"style must be 'comfy' or 'kohya', got {style!r}")


def distill_lora_state_dict(shapes: Mapping[str, Sequence[int]], rank: int = 32, alpha: float | None = None,
                            seed: int = 0, dtype: torch.dtype = torch.bfloat16, style: str = "comfy",
                            diff_m: bool = False) -> dict[str, torch.Tensor]:
    """A LightX2V-style LoRA for a DiT of ``shapes``: down/up/alpha on every matrix and conv weight, ``diff_b``
    on every bias, ``diff`` on every norm weight and modulation (``diff_m`` for block/head modulations when
    asked). ``alpha`` defaults to ``rank`` (scale 1, as LightX2V saves them). Updates are kept small."""
    g = torch.Generator().manual_seed(seed)
    alpha = float(rank if alpha is None else alpha)
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        shape = tuple(shape)
        module, _, param = key.rpartition(".")
        if param == "weight" and len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            stem = _stem(module, style)
            out[f"{stem}.lora_down.weight"] = torch.randn(rank, *shape[1:], generator=g) / math.sqrt(fan_in)
            out[f"{stem}.lora_up.weight"] = 0.05 * torch.randn(shape[0], rank, *([1] * (len(shape) - 2)),
                                                               generator=g)
            out[f"{stem}.alpha"] = torch.tensor(alpha)
        elif param == "bias":
            out[f"{_stem(module, style)}.diff_b"] = 0.01 * torch.randn(shape, generator=g)
        elif param == "weight":
            out[f"{_stem(module, style)}.diff"] = 0.01 * torch.randn(shape, generator=g)
        elif param == "modulation":
            name = f"{_stem(module, style)}.diff_m" if diff_m else f"{_stem(key, style)}.diff"
            out[name] = 0.01 * torch.randn(shape, generator=g)
    return {k: v.to(dtype).contiguous() for k, v in out.items()}


def write_distill_lora(path: str | Path, shapes: Mapping[str, Sequence[int]], **options) -> Path:
    """Write :func:`distill_lora_state_dict` as a .safetensors file; its path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(distill_lora_state_dict(shapes, **options), str(path))
    return path
