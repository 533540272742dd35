"""A prompt and a reference image to the Wan I2V DiT's ``context`` and ``clip_fea``, outside ComfyUI.

The encoders are found in a ComfyUI models folder as ComfyUI keeps them:
umT5 under ``text_encoders/`` (or the older ``clip/``), CLIP ViT-H under
``clip_vision/``; first by the file names Comfy-Org publishes, else by what the
safetensors header holds (the keys name the layout), so a renamed file is
found too. Each encoder is loaded, run once and dropped: a 14B DiT needs the
memory next.
"""
from __future__ import annotations

import gc
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError

TEXT_FOLDERS = ("text_encoders", "clip")
CLIP_FOLDERS = ("clip_vision",)
UMT5_NAMES = ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "umt5_xxl_fp16.safetensors", "umt5_xxl_bf16.safetensors",
              "models_t5_umt5-xxl-enc-bf16.pth")
CLIP_NAMES = ("clip_vision_h.safetensors", "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
# Wan2.1's I2V negative prompt (wan/configs: "镜头晃动，" + shared_config.sample_neg_prompt)
WAN_I2V_NEGATIVE_PROMPT = (
    "镜头晃动，色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
    "杂乱的背景，三条腿，背景人很多，倒着走")
# header keys that say what a file is (every umT5 block has its own position bias; T5 v1.1 only block 0)
UMT5_HEADER_KEY = re.compile(r"^(encoder\.block\.1\.layer\.0\.SelfAttention\.relative_attention_bias|"
                       r"blocks\.1\.pos_embedding\.embedding)\.weight$")
CLIP_HEADER_KEY = re.compile(r"^(vision_model\.encoder\.layers\.0\.self_attn\.q_proj|"
                       r"visual\.transformer\.resblocks\.0\.attn\.in_proj|visual\.transformer\.0\.attn\.to_qkv)")


@dataclass
class EncodedPrompt:
    context: torch.Tensor           # [1, L, 4096]
    negative_context: torch.Tensor  # [1, L', 4096]
    clip_fea: torch.Tensor | None   # [1, 257, 1280], None when not asked for

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.context, self.negative_context, self.clip_fea


def _header_keys(path: Path) -> list[str]:
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return []
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception:  # not a readable safetensors: not a candidate
        return []


def find_encoder(models: Path, folders: tuple[str, ...], names: tuple[str, ...], key: re.Pattern, what: str,
                 option: str, chosen: str | None = None) -> Path:
    """The encoder file: ``chosen`` (a name in ``folders``), else a published name, else the one file whose
    header matches ``key``. Errors name the folders, the names and how to pick."""
    dirs = [models / f for f in folders]
    where = " or ".join(f"'{f}/'" for f in folders)
    if chosen:
        for d in dirs:
            if (d / chosen).is_file() and Path(chosen).name == chosen:
                return d / chosen
        raise InputError(f"{option} '{chosen}'", f"was not found in {where} of --models", f"a file name in {where}")
    for name in names:
        for d in dirs:
            if (d / name).is_file():
                return d / name
    matches = sorted(p for d in dirs if d.is_dir() for p in d.iterdir()
                     if p.is_file() and any(key.match(k) for k in _header_keys(p)))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(f"--models {where}", f"holds {len(matches)} {what} files "
                         f"({', '.join(p.name for p in matches)})", f"one of them chosen with {option}")
    raise InputError(f"--models {where}", f"has no {what} file", f"{names[0]} (README, Model files)")


def encode_prompts(models: Path, prompt: str, negative_prompt: str | None, reference: torch.Tensor | None,
                   device: torch.device | str = "cpu", text_encoder: str | None = None,
                   clip_vision: str | None = None) -> EncodedPrompt:
    """umT5 contexts of ``prompt`` and ``negative_prompt`` (Wan's I2V default when None) and, when
    ``reference`` (ComfyUI IMAGE ``[1, H, W, 3]``) is given, its CLIP ViT-H ``clip_fea``."""
    from .checkpoint.umt5 import load_umt5
    from .text.umt5 import encode_ids

    path = find_encoder(models, TEXT_FOLDERS, UMT5_NAMES, UMT5_HEADER_KEY, "umT5 text encoder", "--text-encoder",
                        text_encoder)
    model, tokenizer = load_umt5(path, device=device)
    if tokenizer is None:
        raise InputError(f"text encoder file '{path.name}'", "carries no tokenizer (Wan's .pth has none)",
                         "umt5_xxl_fp8_e4m3fn_scaled.safetensors or umt5_xxl_fp16.safetensors, which carry it")
    negative = WAN_I2V_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
    context = encode_ids(model, tokenizer(prompt), device)
    negative_context = encode_ids(model, tokenizer(negative), device)
    del model
    gc.collect()
    clip_fea = None if reference is None else encode_reference(models, reference, device, clip_vision)
    return EncodedPrompt(context.cpu(), negative_context.cpu(), clip_fea)


def encode_reference(models: Path, reference: torch.Tensor, device: torch.device | str = "cpu",
                     clip_vision: str | None = None) -> torch.Tensor:
    """``clip_fea`` ``[1, 257, 1280]`` of the reference (ComfyUI IMAGE ``[1, H, W, 3]``), which the I2V DiT
    requires, from the CLIP ViT-H file in ``clip_vision/``."""
    from .checkpoint.clip_vision import load_clip_vision
    from .clip_vision import encode_image

    path = find_encoder(models, CLIP_FOLDERS, CLIP_NAMES, CLIP_HEADER_KEY, "CLIP ViT-H image encoder",
                        "--clip-vision", clip_vision)
    clip_fea = encode_image(load_clip_vision(path, device=device), reference).cpu()
    gc.collect()
    return clip_fea
