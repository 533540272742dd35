"""The CLIP ViT-H/14 image encoder that gives the Wan I2V DiT its ``clip_fea``.

Wan2.1's image2video encodes the reference with the visual tower of
open-clip-xlm-roberta-large-vit-huge-14 and keeps the hidden states before
the last block (``use_31_block``: 257 tokens x 1280, no final norm, no
projection). That output needs only the first ``num_layers - 1`` blocks, so
only those are built. Module names follow the official Wan file's ``visual.``
part (``transformer.0.attn.to_qkv.weight``); Comfy-Org's
``clip_vision_h.safetensors`` (Hugging Face ``vision_model.`` names) and
open_clip's layout convert through ``models/checkpoint/clip_vision.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .ops import CastOps

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipVisionConfig:
    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    mlp_dim: int = 5120
    num_heads: int = 16
    num_layers: int = 32  # in the file; the penultimate output uses all but the last
    eps: float = 1e-5

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


class SelfAttention(nn.Module):
    def __init__(self, cfg: ClipVisionConfig, operations, device=None, dtype=None):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.to_qkv = operations.Linear(cfg.dim, cfg.dim * 3, device=device, dtype=dtype)
        self.proj = operations.Linear(cfg.dim, cfg.dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.shape
        q, k, v = self.to_qkv(x).view(b, s, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, s, c))


class AttentionBlock(nn.Module):
    def __init__(self, cfg: ClipVisionConfig, operations, device=None, dtype=None):
        super().__init__()
        self.norm1 = operations.LayerNorm(cfg.dim, eps=cfg.eps, device=device, dtype=dtype)
        self.attn = SelfAttention(cfg, operations, device, dtype)
        self.norm2 = operations.LayerNorm(cfg.dim, eps=cfg.eps, device=device, dtype=dtype)
        self.mlp = nn.Sequential(operations.Linear(cfg.dim, cfg.mlp_dim, device=device, dtype=dtype), nn.GELU(),
                                 operations.Linear(cfg.mlp_dim, cfg.dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClipVisionEncoder(nn.Module):
    """Pixels ``[B, 3, S, S]`` (CLIP-normalised) -> penultimate hidden states ``[B, tokens, dim]``."""

    def __init__(self, config: ClipVisionConfig, operations=None, device=None, dtype=None):
        super().__init__()
        operations = operations or CastOps
        self.config = config
        p, dim = config.patch_size, config.dim
        self.patch_embedding = operations.Conv2d(3, dim, p, stride=p, bias=False, device=device, dtype=dtype)
        self.cls_embedding = nn.Parameter(torch.zeros(1, 1, dim, device=device, dtype=dtype))
        self.pos_embedding = nn.Parameter(torch.zeros(1, config.tokens, dim, device=device, dtype=dtype))
        self.pre_norm = operations.LayerNorm(dim, eps=config.eps, device=device, dtype=dtype)
        self.transformer = nn.Sequential(*(AttentionBlock(config, operations, device, dtype)
                                           for _ in range(config.num_layers - 1)))

    @property
    def compute_dtype(self) -> torch.dtype:
        dtype = self.pre_norm.weight.dtype
        return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.bfloat16

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixels.to(self.compute_dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_embedding.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pre_norm(x + self.pos_embedding.to(x.dtype))
        return self.transformer(x)


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """ComfyUI IMAGE ``[N, H, W, 3]`` in 0..1 -> ``[N, 3, size, size]`` as Wan's ``CLIPModel.visual`` makes
    them: bicubic resize of the whole frame (no crop), then CLIP's mean/std."""
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_image(model: ClipVisionEncoder, images: torch.Tensor) -> torch.Tensor:
    """``clip_fea`` ``[N, tokens, dim]`` float32 of ComfyUI IMAGEs (the reference frame: ``N`` = 1)."""
    device = model.pre_norm.weight.device
    return model(clip_pixels(images.to(device), model.config.image_size)).float()
