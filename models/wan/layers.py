"""The Wan DiT's building blocks, named after the official checkpoint keys.

Precision follows the official model: the residual stream, the modulation
(shift/scale/gate) and the normalisations run in float32; every weighted layer
(built from ``operations``, so ComfyUI's ops can stream and cast weights) gets
its input in the model's compute dtype (``cdt``) and its output is widened
back to float32 where the reference adds it to the residual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .rope import RopeRotation, apply_rope

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _parameter(shape: tuple[int, ...], fill: float, device, dtype) -> nn.Parameter:
    """A plain parameter; left empty on the meta device (it is loaded with ``assign=True``)."""
    data = torch.empty(shape, device=device, dtype=dtype)
    if data.device.type != "meta":
        data.fill_(fill)
    return nn.Parameter(data)


def sinusoidal_embedding(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Wan's timestep embedding ``[cos | sin]`` of ``position`` ``[N]``, computed in float64."""
    half = dim // 2
    position = position.to(torch.float64)
    frequencies = torch.pow(10000, -torch.arange(half, dtype=torch.float64, device=position.device).div(half))
    sinusoid = torch.outer(position, frequencies)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim, computed in float32, then scaled by ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = _parameter((dim,), 1.0, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        normed = wide * torch.rsqrt(wide.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight.to(device=x.device, dtype=x.dtype)


@dataclass
class TimeModulation:
    """Time conditioning for every token, stored once per distinct timestep.

    ``table`` holds time_projection's output ``[U, 6, dim]`` and ``head_table``
    time_embedding's ``[U, dim]`` for the U distinct timesteps; ``index``
    ``[B, Lm]`` picks a row per sample (Lm = 1) or per token (Lm = L), so a
    per-token timestep never materialises six ``[B, L, dim]`` tensors at once.
    """

    table: torch.Tensor
    head_table: torch.Tensor
    index: torch.Tensor

    def rows(self, modulation: torch.Tensor) -> Callable[[int], torch.Tensor]:
        """``chunk(i)`` -> float32 ``[B, Lm, dim]``: (learned modulation + time) chunk i of the block's six."""
        summed = modulation.to(device=self.table.device, dtype=torch.float32) + self.table
        return lambda i: summed[:, i][self.index]

    def head_rows(self, modulation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        summed = modulation.to(device=self.table.device, dtype=torch.float32) + self.head_table[:, None]
        return summed[:, 0][self.index], summed[:, 1][self.index]

    def select(self, count: int) -> "TimeModulation":
        """The modulation of the first ``count`` tokens (the video, before the head)."""
        if self.index.shape[1] == 1:
            return self
        return TimeModulation(self.table, self.head_table, self.index[:, :count])


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, ops, device, dtype):
        super().__init__()
        self.num_heads = num_heads
        for name in ("q", "k", "v", "o"):
            setattr(self, name, ops.Linear(dim, dim, device=device, dtype=dtype))
        self.norm_q = RMSNorm(dim, eps, device, dtype) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps, device, dtype) if qk_norm else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))

    def qkv(self, x: torch.Tensor, rope: RopeRotation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys (normed, rotated) and values, ``[B, L, heads, head_dim]`` each."""
        q = apply_rope(self._heads(self.norm_q(self.q(x))), rope)
        k = apply_rope(self._heads(self.norm_k(self.k(x))), rope)
        return q, k, self._heads(self.v(x))

    def forward(self, x: torch.Tensor, rope: RopeRotation, attend: Attend) -> torch.Tensor:
        q, k, v = self.qkv(x, rope)
        return self.o(attend(q, k, v).flatten(2))


class CrossAttention(SelfAttention):
    """Attention to the text tokens, plus (I2V with CLIP) a separate k_img/v_img branch."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, image_branch: bool, ops, device, dtype):
        super().__init__(dim, num_heads, qk_norm, eps, ops, device, dtype)
        if image_branch:
            self.k_img = ops.Linear(dim, dim, device=device, dtype=dtype)
            self.v_img = ops.Linear(dim, dim, device=device, dtype=dtype)
            self.norm_k_img = RMSNorm(dim, eps, device, dtype) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img: torch.Tensor | None,
                attend: Attend) -> torch.Tensor:
        q = self._heads(self.norm_q(self.q(x)))
        out = attend(q, self._heads(self.norm_k(self.k(context))), self._heads(self.v(context)))
        if context_img is not None:
            k_img = self._heads(self.norm_k_img(self.k_img(context_img)))
            out = out + attend(q, k_img, self._heads(self.v_img(context_img)))
        return self.o(out.flatten(2))


class WanBlock(nn.Module):
    def __init__(self, config, ops, device, dtype):
        super().__init__()
        dim, eps = config.dim, config.eps
        self.norm1 = ops.LayerNorm(dim, eps=eps, elementwise_affine=False, device=device, dtype=dtype)
        self.self_attn = SelfAttention(dim, config.num_heads, config.qk_norm, eps, ops, device, dtype)
        self.norm3 = (ops.LayerNorm(dim, eps=eps, elementwise_affine=True, device=device, dtype=dtype)
                      if config.cross_attn_norm else nn.Identity())
        self.cross_attn = CrossAttention(dim, config.num_heads, config.qk_norm, eps, config.has_image_branch,
                                         ops, device, dtype)
        self.norm2 = ops.LayerNorm(dim, eps=eps, elementwise_affine=False, device=device, dtype=dtype)
        self.ffn = nn.Sequential(ops.Linear(dim, config.ffn_dim, device=device, dtype=dtype),
                                 nn.GELU(approximate="tanh"),
                                 ops.Linear(config.ffn_dim, dim, device=device, dtype=dtype))
        self.modulation = _parameter((1, 6, dim), 0.0, device, dtype)

    def self_attention_input(self, x: torch.Tensor, time: TimeModulation, cdt: torch.dtype) -> torch.Tensor:
        """The modulated, normed input of the self-attention (what its q/k/v layers read), in ``cdt``."""
        e = time.rows(self.modulation)
        return torch.addcmul(e(0), self.norm1(x), 1 + e(1)).to(cdt)

    def forward(self, x: torch.Tensor, time: TimeModulation, rope: RopeRotation, context: torch.Tensor,
                context_img: torch.Tensor | None, attend: Attend, cdt: torch.dtype,
                self_attention: Callable[[torch.Tensor], torch.Tensor] | None = None,
                self_attend: Attend | None = None) -> torch.Tensor:
        """``x``: float32 ``[B, L, dim]`` residual stream; returns the same.

        ``self_attention`` replaces the plain self-attention (``h -> o(attention)``, ``h`` the modulated
        input in ``cdt``) for methods whose tokens attend to more than their own sequence (Animate-2's
        per-frame pose keys); the rest of the block is unchanged. ``self_attend`` (default ``attend``) runs
        self-attention only: a sequence-parallel stack exchanges tokens there, while cross-attention and the
        FFN stay local to each process's slice.
        """
        e = time.rows(self.modulation)  # 0,1,2: shift, scale, gate of self-attn; 3,4,5: of the ffn
        # addcmul: the float32 modulation and residual updates in one kernel each, the layers' bf16 outputs
        # promoted inside it (exact) instead of materialised as float32 copies
        h = torch.addcmul(e(0), self.norm1(x), 1 + e(1)).to(cdt)
        y = self.self_attn(h, rope, self_attend or attend) if self_attention is None else self_attention(h)
        x = torch.addcmul(x, y, e(2))
        x = torch.add(x, self.cross_attn(self.norm3(x.to(cdt)), context, context_img, attend))
        y = self.ffn(torch.addcmul(e(3), self.norm2(x), 1 + e(4)).to(cdt))
        return torch.addcmul(x, y, e(5))


class Head(nn.Module):
    def __init__(self, config, ops, device, dtype):
        super().__init__()
        out_features = math.prod(config.patch_size) * config.out_dim
        self.norm = ops.LayerNorm(config.dim, eps=config.eps, elementwise_affine=False, device=device, dtype=dtype)
        self.head = ops.Linear(config.dim, out_features, device=device, dtype=dtype)
        self.modulation = _parameter((1, 2, config.dim), 0.0, device, dtype)

    def forward(self, x: torch.Tensor, time: TimeModulation, cdt: torch.dtype) -> torch.Tensor:
        shift, scale = time.head_rows(self.modulation)
        return self.head((self.norm(x) * (1 + scale) + shift).to(cdt)).float()


class ImageEmbedding(nn.Module):
    """CLIP image tokens -> model width (``img_emb``); FLF2V adds a learned position per token first."""

    def __init__(self, clip_dim: int, dim: int, flf_tokens: int | None, ops, device, dtype):
        super().__init__()
        self.proj = nn.Sequential(
            ops.LayerNorm(clip_dim, eps=1e-5, device=device, dtype=dtype),
            ops.Linear(clip_dim, clip_dim, device=device, dtype=dtype),
            nn.GELU(),
            ops.Linear(clip_dim, dim, device=device, dtype=dtype),
            ops.LayerNorm(dim, eps=1e-5, device=device, dtype=dtype))
        if flf_tokens:
            self.emb_pos = _parameter((1, flf_tokens, clip_dim), 0.0, device, dtype)

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "emb_pos"):
            clip_fea = clip_fea + self.emb_pos[:, :clip_fea.shape[1]].to(device=clip_fea.device, dtype=clip_fea.dtype)
        return self.proj(clip_fea)
