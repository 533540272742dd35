"""Tiny random-weight Wan DiT checkpoints, for tests and for trying workflows
without the real 14B files.

The keys are the official ones and every tensor has the shape the real model
would have at these tiny widths, so a tiny file goes through exactly the code
path of a real one (key map, dtype handling, config inference, loading).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import torch

from ..models.checkpoint.fp8 import QUANTIZATION_METADATA, layer_format_entry

KINDS = ("t2v", "i2v", "i2v_noclip", "flf2v")  # i2v: Wan 2.1 with CLIP; i2v_noclip: Wan 2.2 A14B
COMFY_PREFIX = "model.diffusion_model."
FLF_CLIP_TOKENS = 2 * 257
_FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}


def wan_official_shapes(kind: str = "t2v", dim: int = 64, num_layers: int = 2, ffn_dim: int = 128,
                        text_dim: int = 32, freq_dim: int = 32, clip_dim: int = 32, in_dim: int | None = None,
                        out_dim: int = 16, patch_size: tuple[int, int, int] = (1, 2, 2)) -> dict[str, tuple[int, ...]]:
    """Official key -> shape of a Wan DiT of the given kind and widths."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    in_dim = in_dim or (16 if kind == "t2v" else 36)
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, fan_in: int, fan_out: int) -> None:
        shapes[f"{name}.weight"] = (fan_out, fan_in)
        shapes[f"{name}.bias"] = (fan_out,)

    shapes["patch_embedding.weight"] = (dim, in_dim, *patch_size)
    shapes["patch_embedding.bias"] = (dim,)
    linear("text_embedding.0", text_dim, dim)
    linear("text_embedding.2", dim, dim)
    linear("time_embedding.0", freq_dim, dim)
    linear("time_embedding.2", dim, dim)
    linear("time_projection.1", dim, 6 * dim)
    image_branch = kind in ("i2v", "flf2v")
    for i in range(num_layers):
        b = f"blocks.{i}"
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                linear(f"{b}.{attn}.{proj}", dim, dim)
            shapes[f"{b}.{attn}.norm_q.weight"] = (dim,)
            shapes[f"{b}.{attn}.norm_k.weight"] = (dim,)
        if image_branch:
            linear(f"{b}.cross_attn.k_img", dim, dim)
            linear(f"{b}.cross_attn.v_img", dim, dim)
            shapes[f"{b}.cross_attn.norm_k_img.weight"] = (dim,)
        shapes[f"{b}.norm3.weight"] = (dim,)
        shapes[f"{b}.norm3.bias"] = (dim,)
        linear(f"{b}.ffn.0", dim, ffn_dim)
        linear(f"{b}.ffn.2", ffn_dim, dim)
        shapes[f"{b}.modulation"] = (1, 6, dim)
    linear("head.head", dim, out_dim * math.prod(patch_size))
    shapes["head.modulation"] = (1, 2, dim)
    if image_branch:
        shapes["img_emb.proj.0.weight"] = (clip_dim,)
        shapes["img_emb.proj.0.bias"] = (clip_dim,)
        linear("img_emb.proj.1", clip_dim, clip_dim)
        linear("img_emb.proj.3", clip_dim, dim)
        shapes["img_emb.proj.4.weight"] = (dim,)
        shapes["img_emb.proj.4.bias"] = (dim,)
        if kind == "flf2v":
            shapes["img_emb.emb_pos"] = (1, FLF_CLIP_TOKENS, clip_dim)
    return shapes


def tiny_wan_state_dict(kind: str = "t2v", seed: int = 0, dtype: torch.dtype = torch.float32,
                        **widths) -> dict[str, torch.Tensor]:
    """Random weights at the official keys (``widths``: see :func:`wan_official_shapes`).

    Scales follow the real model's: weights ~ N(0, 1/fan_in), small biases,
    norm weights near 1, modulation ~ N(0, 1/dim), so a forward pass stays finite.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in wan_official_shapes(kind, **widths).items():
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if key.endswith("modulation"):
            value = noise / math.sqrt(shape[-1])
        elif "norm" in key or key.startswith(("img_emb.proj.0", "img_emb.proj.4")):
            value = 1.0 + 0.1 * noise if key.endswith("weight") else 0.02 * noise
        elif key.endswith(".bias"):
            value = 0.02 * noise
        elif key.endswith("emb_pos"):
            value = 0.02 * noise
        else:
            value = noise / math.sqrt(math.prod(shape[1:]))
        state[key] = value.to(dtype)
    return state


StateDict = dict[str, torch.Tensor]


FP8_GENERATIONS = ("scaled_fp8", "comfy_quant", "header")


def quantize_scaled_fp8(state: Mapping[str, torch.Tensor], fp8: torch.dtype = torch.float8_e4m3fn,
                        other_dtype: torch.dtype = torch.bfloat16,
                        generation: str = "scaled_fp8") -> tuple[StateDict, StateDict]:
    """ComfyUI-style "scaled fp8": ``(file tensors, dequantized reference)``.

    The Linear weights inside the blocks become fp8 with a per-tensor float32
    scale (max |w| maps to the format's max); everything else is stored as
    ``other_dtype``. The reference holds what a correct loader must
    reconstruct: ``w8.float() * scale`` for quantized weights, the stored value otherwise.

    ``generation``: ``"scaled_fp8"`` writes the first generation of Comfy-Org
    repacks (``scale_weight`` and a ``scaled_fp8`` marker); ``"comfy_quant"`` the
    second (``weight_scale``, an ``input_scale`` on the first block's q, and a
    ``comfy_quant`` entry per layer); ``"header"`` the second with the per-layer
    formats in the header instead (see :func:`save_comfy_single_file`).
    """
    if generation not in FP8_GENERATIONS:
        raise ValueError(f"generation must be one of {FP8_GENERATIONS}, got {generation!r}")
    out: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("blocks.") and key.endswith(".weight") and value.dim() == 2:
            scale = value.float().abs().amax().clamp_min(1e-12) / _FP8_MAX[fp8]
            w8 = (value.float() / scale).to(fp8)
            out[key] = w8
            module = key[: -len(".weight")]
            if generation == "scaled_fp8":
                out[module + ".scale_weight"] = scale.reshape(())
            else:
                out[module + ".weight_scale"] = scale.reshape(()).float()
                if module == "blocks.0.self_attn.q":
                    out[module + ".input_scale"] = torch.tensor(0.05)
                if generation == "comfy_quant":
                    out[module + ".comfy_quant"] = layer_format_entry(fp8)
            reference[key] = w8.float() * scale
        else:
            out[key] = value.to(other_dtype)
            reference[key] = out[key].float()
    if generation == "scaled_fp8":
        out["scaled_fp8"] = torch.empty(0, dtype=fp8)
    return out, reference


def save_comfy_single_file(state: Mapping[str, torch.Tensor], path: str | Path, prefix: bool | str = True,
                           dtype: torch.dtype | None = None, scaled_fp8: torch.dtype | None = None,
                           num_heads: int | None = None, fp8_generation: str = "scaled_fp8",
                           metadata: dict[str, str] | None = None) -> Path:
    """Write ``state`` (official keys) as one .safetensors file like Comfy-Org's repackaged ones.

    ``prefix``: True adds ``model.diffusion_model.``, a string adds that, False none.
    ``dtype``: convert every tensor; ``scaled_fp8``: write ComfyUI's scaled fp8
    instead, in the repack generation ``fp8_generation`` (see
    :func:`quantize_scaled_fp8`). ``num_heads`` goes to the metadata, with ``metadata``'s entries.
    """
    from safetensors.torch import save_file

    metadata = {**({"num_heads": str(num_heads)} if num_heads else {}), **(metadata or {})}
    head = COMFY_PREFIX if prefix is True else (prefix or "")
    if scaled_fp8 is not None:
        tensors = quantize_scaled_fp8(state, scaled_fp8, dtype or torch.bfloat16, fp8_generation)[0]
        if fp8_generation == "header":
            name = str(scaled_fp8).replace("torch.", "")
            layers = {head + k[: -len(".weight_scale")]: {"format": name}
                      for k in tensors if k.endswith(".weight_scale")}
            metadata[QUANTIZATION_METADATA] = json.dumps({"format_version": "1.0", "layers": layers})
    else:
        tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in state.items()}
    tensors = {head + k: v.contiguous() for k, v in tensors.items()}
    metadata = metadata or None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path
