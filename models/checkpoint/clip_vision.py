"""Load the CLIP ViT-H/14 image encoder from the files users have.

- Comfy-Org's ``clip_vision_h.safetensors`` with Hugging Face ``CLIPVisionModel``
  names (``vision_model.encoder.layers.0.self_attn.q_proj.weight``), as
  ComfyUI's ``comfy/clip_vision.py`` reads it;
- open_clip's layout (``visual.transformer.resblocks.0.attn.in_proj_weight``),
  which ComfyUI converts on load;
- the official Wan ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``
  (``visual.transformer.0.attn.to_qkv.weight``; its text tower is ignored).

Everything maps onto the official ``visual.`` names. The last block, the final
norm and the projection are not loaded: Wan's ``clip_fea`` is the output
before them. Split q/k/v weights are joined into ``to_qkv``.
"""
from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from ...errors import InputError
from ..clip_vision import ClipVisionConfig, ClipVisionEncoder
from ..ops import CastOps
from .encoder_files import load_into, open_encoder_file
from .identify import describe_checkpoint

log = logging.getLogger(__name__)

EXPECTED = ("the CLIP ViT-H/14 image encoder: clip_vision_h.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged, "
            "split_files/clip_vision), or Wan's models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
HEAD_WIDTH = 80  # ViT-H/14: 1280 = 16 heads of 80 (the file does not say; its metadata may: num_heads)
Getter = Callable[[], torch.Tensor]

_HF_TOP = {"vision_model.embeddings.patch_embedding.weight": "patch_embedding.weight",
           "vision_model.pre_layrnorm.weight": "pre_norm.weight", "vision_model.pre_layrnorm.bias": "pre_norm.bias"}
_HF_BLOCK = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_NAMES = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.out_proj": "attn.proj",
             "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.2"}
_OC_TOP = {"visual.conv1.weight": "patch_embedding.weight", "visual.ln_pre.weight": "pre_norm.weight",
           "visual.ln_pre.bias": "pre_norm.bias"}
_OC_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.(.+)$")
_OC_NAMES = {"ln_1": "norm1", "ln_2": "norm2", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.0",
             "mlp.c_proj": "mlp.2", "attn.in_proj": "attn.to_qkv"}


def _scaled(getter: Getter, scales: dict[str, Getter] | None) -> torch.Tensor:
    tensor = getter()
    if scales and "scale_weight" in scales:
        tensor = (tensor.float() * scales["scale_weight"]().float()).to(torch.bfloat16)
    return tensor


def _reshaped(getter: Getter, shape: tuple[int, ...]) -> torch.Tensor:
    return getter().reshape(shape)


def _joined(getters: list[Getter]) -> torch.Tensor:
    return torch.cat([g() for g in getters], dim=0)


def official_clip_tensors(getters: dict[str, Getter], shapes: dict[str, tuple[int, ...]],
                          scales: dict[str, dict[str, Getter]]) -> tuple[dict[str, Getter], dict[str, tuple]]:
    """``(official-name getters, their shapes)`` of a file in any of the three layouts."""
    weights = {k: partial(_scaled, g, scales.get(k.rpartition(".")[0])) for k, g in getters.items()}
    out, out_shapes = {}, {}

    def put(name: str, getter: Getter, shape: tuple[int, ...]) -> None:
        out[name], out_shapes[name] = getter, tuple(shape)

    if any(k.startswith("vision_model.") for k in weights):
        for key, name in _HF_TOP.items():
            if key in weights:
                put(name, weights[key], shapes[key])
        for key, name, embedding in (("vision_model.embeddings.class_embedding", "cls_embedding", False),
                                     ("vision_model.embeddings.position_embedding.weight", "pos_embedding", True)):
            if key in weights:
                shape = (1, 1, shapes[key][-1]) if not embedding else (1, *shapes[key])
                put(name, partial(_reshaped, weights[key], shape), shape)
        for key in weights:
            m = _HF_BLOCK.match(key)
            if not m:
                continue
            module, _, param = m.group(2).rpartition(".")
            if module in _HF_NAMES:
                put(f"transformer.{m.group(1)}.{_HF_NAMES[module]}.{param}", weights[key], shapes[key])
            elif module == "self_attn.q_proj":
                parts = [f"vision_model.encoder.layers.{m.group(1)}.self_attn.{p}_proj.{param}" for p in "qkv"]
                if all(p in weights for p in parts):
                    shape = (3 * shapes[key][0], *shapes[key][1:])
                    put(f"transformer.{m.group(1)}.attn.to_qkv.{param}", partial(_joined, [weights[p] for p in parts]),
                        shape)
        return out, out_shapes
    if any(k.startswith("visual.transformer.resblocks.") for k in weights):
        for key, name in _OC_TOP.items():
            if key in weights:
                put(name, weights[key], shapes[key])
        for key, name, shape_of in (("visual.class_embedding", "cls_embedding", lambda s: (1, 1, s[-1])),
                                    ("visual.positional_embedding", "pos_embedding", lambda s: (1, *s))):
            if key in weights:
                put(name, partial(_reshaped, weights[key], shape_of(shapes[key])), shape_of(shapes[key]))
        for key in weights:
            m = _OC_BLOCK.match(key)
            if not m:
                continue
            rest = m.group(2)
            if rest.startswith("attn.in_proj_"):
                module, param = "attn.in_proj", rest[len("attn.in_proj_"):]
            else:
                module, _, param = rest.rpartition(".")
            if module in _OC_NAMES:
                put(f"transformer.{m.group(1)}.{_OC_NAMES[module]}.{param}", weights[key], shapes[key])
        return out, out_shapes
    for key in weights:  # official: the visual tower under 'visual.', or bare
        name = key[len("visual."):] if key.startswith("visual.") else key
        if not key.startswith(("textual.", "log_scale")):
            put(name, weights[key], shapes[key])
    return out, out_shapes


def infer_clip_config(shapes: dict[str, tuple[int, ...]], source: str) -> ClipVisionConfig:
    needed = ("patch_embedding.weight", "pos_embedding", "transformer.0.attn.to_qkv.weight",
              "transformer.0.mlp.0.weight")
    if not all(k in shapes for k in needed):
        raise InputError(source, f"is not a CLIP ViT image encoder: it {describe_checkpoint(shapes)}", EXPECTED)
    dim, _, patch, _ = shapes["patch_embedding.weight"]
    tokens = shapes["pos_embedding"][1]
    grid = round((tokens - 1) ** 0.5)
    layers = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("transformer."))
    heads = dim // HEAD_WIDTH if dim % HEAD_WIDTH == 0 else 1
    return ClipVisionConfig(image_size=grid * patch, patch_size=patch, dim=dim,
                            mlp_dim=shapes["transformer.0.mlp.0.weight"][0], num_heads=heads, num_layers=layers)


def load_clip_vision(path: str | Path, device: torch.device | str = "cpu", storage_dtype: torch.dtype | None = None,
                     operations=None, num_heads: int | None = None) -> ClipVisionEncoder:
    """The image encoder up to its penultimate block. ``num_heads``: the shapes do not tell; taken from
    this argument, else the file's ``num_heads`` metadata, else heads 80 wide (ViT-H: 16)."""
    source = f"image encoder file '{Path(path).name}'"
    opened = open_encoder_file(path, source, EXPECTED)
    weights, shapes = official_clip_tensors(opened.getters, opened.shapes, opened.scales)
    config = infer_clip_config(shapes, source)
    num_heads = num_heads or opened.num_heads()
    if num_heads is not None:
        config = ClipVisionConfig(**{**config.__dict__, "num_heads": num_heads})
    if config.dim % config.num_heads:
        raise InputError(source, f"has width {config.dim}, not divisible into {config.num_heads} heads", EXPECTED)
    unused = f"transformer.{config.num_layers - 1}."
    weights = {k: v for k, v in weights.items() if not k.startswith((unused, "post_norm.", "head"))}
    shapes = {k: shapes[k] for k in weights}
    operations = operations or CastOps
    model = ClipVisionEncoder(config, operations, device="meta")
    load_into(model, weights, shapes, {}, operations, source, "CLIP ViT image encoder", EXPECTED, device,
              storage_dtype)
    log.info("loaded CLIP vision encoder from %s (%d layers, dim %d)", source, config.num_layers, config.dim)
    return model
