"""Tiny umT5 and CLIP ViT files in the layouts users download, for tests and the tiny demo.

``umt5_xxl_fp16.safetensors`` in Comfy-Org's layout (Hugging Face T5 names,
the tokenizer as the ``spiece_model`` uint8 tensor, optionally fp8 "scaled"
as ``umt5_xxl_fp8_e4m3fn_scaled``) and ``clip_vision_h.safetensors`` with
Hugging Face ``CLIPVisionModel`` names. The tokenizer is a tiny sentencepiece
model with umT5's special ids (``tiny_spiece.model``, trained by
``tests/fixtures/make_encoder_parity.py``).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

UMT5_FILE = "umt5_xxl_fp16.safetensors"
CLIP_VISION_FILE = "clip_vision_h.safetensors"
TINY_SPIECE = Path(__file__).resolve().parent / "tiny_spiece.model"

_COMFY_T5 = {"attn.q": "layer.0.SelfAttention.q", "attn.k": "layer.0.SelfAttention.k",
             "attn.v": "layer.0.SelfAttention.v", "attn.o": "layer.0.SelfAttention.o",
             "pos_embedding.embedding": "layer.0.SelfAttention.relative_attention_bias",
             "norm1": "layer.0.layer_norm", "ffn.gate.0": "layer.1.DenseReluDense.wi_0",
             "ffn.fc1": "layer.1.DenseReluDense.wi_1", "ffn.fc2": "layer.1.DenseReluDense.wo",
             "norm2": "layer.1.layer_norm"}
_HF_CLIP = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.out_proj",
            "mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2"}


def tiny_umt5_state_dict(vocab: int = 160, dim: int = 32, dim_ffn: int = 48, num_heads: int = 4,
                         num_layers: int = 2, num_buckets: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random umT5 encoder weights under the official (Wan) names."""
    g = torch.Generator().manual_seed(seed)
    state = {"token_embedding.weight": 0.5 * torch.randn(vocab, dim, generator=g),
             "norm.weight": 1 + 0.2 * torch.randn(dim, generator=g)}
    for i in range(num_layers):
        p = f"blocks.{i}."
        for name in "qkv":
            state[f"{p}attn.{name}.weight"] = torch.randn(dim, dim, generator=g) / math.sqrt(dim)
        state[f"{p}attn.o.weight"] = torch.randn(dim, dim, generator=g) / math.sqrt(dim)
        state[f"{p}pos_embedding.embedding.weight"] = 0.5 * torch.randn(num_buckets, num_heads, generator=g)
        state[f"{p}norm1.weight"] = 1 + 0.2 * torch.randn(dim, generator=g)
        state[f"{p}norm2.weight"] = 1 + 0.2 * torch.randn(dim, generator=g)
        state[f"{p}ffn.gate.0.weight"] = torch.randn(dim_ffn, dim, generator=g) / math.sqrt(dim)
        state[f"{p}ffn.fc1.weight"] = torch.randn(dim_ffn, dim, generator=g) / math.sqrt(dim)
        state[f"{p}ffn.fc2.weight"] = torch.randn(dim, dim_ffn, generator=g) / math.sqrt(dim_ffn)
    return state


def comfy_umt5_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official umT5 names -> Comfy-Org / Hugging Face names."""
    out = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        else:
            _, i, rest = key.split(".", 2)
            module = rest.rpartition(".")[0]
            out[f"encoder.block.{i}.{_COMFY_T5[module]}.weight"] = value
    return out


def spiece_tensor(proto: bytes | None = None) -> torch.Tensor:
    """A sentencepiece model as ComfyUI stores it in the file: a uint8 tensor of the serialized proto."""
    proto = TINY_SPIECE.read_bytes() if proto is None else proto
    return torch.frombuffer(bytearray(proto), dtype=torch.uint8).clone()


def save_umt5_file(state: dict[str, torch.Tensor], path: str | Path, dtype: torch.dtype = torch.float16,
                   fp8_scaled: bool = False, proto: bytes | None = None) -> Path:
    """Write official-name umT5 weights as a Comfy-Org file: ``dtype`` throughout, or (``fp8_scaled``)
    the Linear weights in float8_e4m3fn with per-weight ``scale_weight`` and a ``scaled_fp8`` marker."""
    from safetensors.torch import save_file

    out = {}
    for key, value in comfy_umt5_names(state).items():
        linear = ".SelfAttention." in key and "relative" not in key or ".DenseReluDense." in key
        if fp8_scaled and linear:
            scale = value.abs().max().float() / 448.0
            out[key] = (value / scale).to(torch.float8_e4m3fn)
            out[key.replace(".weight", ".scale_weight")] = scale.reshape(())
        else:
            out[key] = value.to(dtype)
    if fp8_scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    out["spiece_model"] = spiece_tensor(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(path))
    return path


def tiny_clip_state_dict(dim: int = 32, num_layers: int = 3, image_size: int = 28, patch: int = 14,
                         mlp_ratio: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random CLIP ViT weights under the official (Wan ``visual.``) names, without the prefix."""
    g = torch.Generator().manual_seed(seed)
    tokens = (image_size // patch) ** 2 + 1

    def lin(o, i):
        return torch.randn(o, i, generator=g) / math.sqrt(i)

    state = {"patch_embedding.weight": torch.randn(dim, 3, patch, patch, generator=g) / math.sqrt(3 * patch * patch),
             "cls_embedding": 0.1 * torch.randn(1, 1, dim, generator=g),
             "pos_embedding": 0.1 * torch.randn(1, tokens, dim, generator=g),
             "pre_norm.weight": 1 + 0.2 * torch.randn(dim, generator=g),
             "pre_norm.bias": 0.1 * torch.randn(dim, generator=g),
             "post_norm.weight": torch.ones(dim), "post_norm.bias": torch.zeros(dim), "head": lin(dim, dim // 2)}
    for i in range(num_layers):
        p = f"transformer.{i}."
        for norm in ("norm1", "norm2"):
            state[f"{p}{norm}.weight"] = 1 + 0.2 * torch.randn(dim, generator=g)
            state[f"{p}{norm}.bias"] = 0.1 * torch.randn(dim, generator=g)
        for name, (o, i_) in {"attn.to_qkv": (3 * dim, dim), "attn.proj": (dim, dim),
                              "mlp.0": (mlp_ratio * dim, dim), "mlp.2": (dim, mlp_ratio * dim)}.items():
            state[f"{p}{name}.weight"] = lin(o, i_)
            state[f"{p}{name}.bias"] = 0.1 * torch.randn(o, generator=g)
    return state


def hf_clip_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (visual) names -> Hugging Face ``CLIPVisionModelWithProjection`` names (ComfyUI's)."""
    out = {"vision_model.embeddings.patch_embedding.weight": state["patch_embedding.weight"],
           "vision_model.embeddings.class_embedding": state["cls_embedding"].reshape(-1),
           "vision_model.embeddings.position_embedding.weight": state["pos_embedding"][0],
           "vision_model.pre_layrnorm.weight": state["pre_norm.weight"],
           "vision_model.pre_layrnorm.bias": state["pre_norm.bias"],
           "vision_model.post_layernorm.weight": state["post_norm.weight"],
           "vision_model.post_layernorm.bias": state["post_norm.bias"],
           "visual_projection.weight": state["head"].t()}
    for key, value in state.items():
        if not key.startswith("transformer."):
            continue
        _, i, rest = key.split(".", 2)
        module, _, param = rest.rpartition(".")
        prefix = f"vision_model.encoder.layers.{i}."
        if module == "attn.to_qkv":
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"{prefix}self_attn.{name}_proj.{param}"] = part
        else:
            out[f"{prefix}{_HF_CLIP[module]}.{param}"] = value
    return out


def openclip_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (visual) names -> open_clip's ``visual.`` names."""
    names = {"norm1": "ln_1", "norm2": "ln_2", "attn.proj": "attn.out_proj", "mlp.0": "mlp.c_fc", "mlp.2": "mlp.c_proj"}
    out = {"visual.conv1.weight": state["patch_embedding.weight"],
           "visual.class_embedding": state["cls_embedding"].reshape(-1),
           "visual.positional_embedding": state["pos_embedding"][0],
           "visual.ln_pre.weight": state["pre_norm.weight"], "visual.ln_pre.bias": state["pre_norm.bias"],
           "visual.ln_post.weight": state["post_norm.weight"], "visual.ln_post.bias": state["post_norm.bias"],
           "visual.proj": state["head"]}
    for key, value in state.items():
        if key.startswith("transformer."):
            _, i, rest = key.split(".", 2)
            module, _, param = rest.rpartition(".")
            name = f"attn.in_proj_{param}" if module == "attn.to_qkv" else f"{names[module]}.{param}"
            out[f"visual.transformer.resblocks.{i}.{name}"] = value
    return out


def save_clip_file(state: dict[str, torch.Tensor], path: str | Path, num_heads: int = 4,
                   dtype: torch.dtype = torch.float16) -> Path:
    """Write official-name CLIP weights as ``clip_vision_h.safetensors`` does (Hugging Face names)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in hf_clip_names(state).items()}, str(path),
              metadata={"num_heads": str(num_heads)})
    return path


def write_tiny_encoder_files(models_dir: str | Path, text_dim: int = 32, clip_dim: int = 32,
                             seed: int = 0) -> dict[str, Path]:
    """``text_encoders/umt5_xxl_fp16.safetensors`` (with the tiny tokenizer) and
    ``clip_vision/clip_vision_h.safetensors`` under ``models_dir``, widths matching a tiny DiT's."""
    root = Path(models_dir)
    umt5 = save_umt5_file(tiny_umt5_state_dict(dim=text_dim, seed=seed + 10), root / "text_encoders" / UMT5_FILE)
    clip = save_clip_file(tiny_clip_state_dict(dim=clip_dim, seed=seed + 11), root / "clip_vision" / CLIP_VISION_FILE)
    return {"text_encoder": umt5, "clip_vision": clip}
