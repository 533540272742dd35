"""The Wan DiT's hyper-parameters, read from the weights themselves.

Users never type a model's width or depth: every number here is a tensor shape
in the official key layout (``blocks.0.self_attn.q.weight`` ...), so one
function serves Wan 2.1/2.2 T2V, I2V (with or without CLIP) and FLF2V.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ...errors import InputError

HEAD_DIM = 128  # every released Wan DiT (1.3B, 5B, 14B) uses 128-wide heads


@dataclass(frozen=True)
class WanDiTConfig:
    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    in_dim: int = 36
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    text_len: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    image_embed_dim: int | None = 1280  # CLIP width for the k_img/v_img branch; None: no CLIP branch
    flf_pos_emb: bool = False
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_image_branch(self) -> bool:
        return self.image_embed_dim is not None

    @property
    def kind(self) -> str:
        """'t2v', 'i2v' (image latent channels, maybe CLIP) or 'flf2v'."""
        if self.flf_pos_emb:
            return "flf2v"
        return "t2v" if self.in_dim == self.out_dim else "i2v"


REQUIRED_KEYS = (
    "patch_embedding.weight",
    "text_embedding.0.weight",
    "time_embedding.0.weight",
    "head.head.weight",
    "blocks.0.self_attn.q.weight",
    "blocks.0.ffn.0.weight",
)


def infer_config(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint",
                 num_heads: int | None = None) -> WanDiTConfig:
    """Read a WanDiTConfig from a state dict in the official key layout.

    ``num_heads`` is not a shape; it comes from the file's metadata when it has
    any, otherwise from the fixed 128-wide heads of every released model.
    """
    missing = [k for k in REQUIRED_KEYS if k not in state_dict]
    if missing:
        sample = ", ".join(sorted(state_dict)[:5]) or "no tensors"
        raise InputError(source, f"not a Wan DiT checkpoint: missing {', '.join(missing)} (found keys like {sample})",
                         "a Wan 2.1/2.2 diffusion model file (official, Comfy-Org repackaged or diffusers layout)")
    patch = state_dict["patch_embedding.weight"]
    if patch.dim() != 5:
        raise InputError(source, f"patch_embedding.weight has shape {tuple(patch.shape)}",
                         "a 5-d Conv3d weight [dim, in_dim, pt, ph, pw]")
    dim, in_dim = int(patch.shape[0]), int(patch.shape[1])
    patch_size = tuple(int(s) for s in patch.shape[2:])
    num_layers = 0
    while f"blocks.{num_layers}.self_attn.q.weight" in state_dict:
        num_layers += 1
    heads = num_heads or max(1, dim // HEAD_DIM)
    if dim % heads or (dim // heads) % 2:
        raise InputError(source, f"dim {dim} does not split into {heads} heads of even width",
                         "num_heads in the file's metadata that divides dim")
    head_out = int(state_dict["head.head.weight"].shape[0])
    img_w = state_dict.get("img_emb.proj.1.weight")
    return WanDiTConfig(
        dim=dim,
        ffn_dim=int(state_dict["blocks.0.ffn.0.weight"].shape[0]),
        num_heads=heads,
        num_layers=num_layers,
        in_dim=in_dim,
        out_dim=head_out // (patch_size[0] * patch_size[1] * patch_size[2]),
        text_dim=int(state_dict["text_embedding.0.weight"].shape[1]),
        freq_dim=int(state_dict["time_embedding.0.weight"].shape[1]),
        patch_size=patch_size,  # type: ignore[arg-type]
        qk_norm="blocks.0.self_attn.norm_q.weight" in state_dict,
        cross_attn_norm="blocks.0.norm3.weight" in state_dict,
        image_embed_dim=(int(img_w.shape[1])
                         if img_w is not None and "blocks.0.cross_attn.k_img.weight" in state_dict else None),
        flf_pos_emb="img_emb.emb_pos" in state_dict,
    )
