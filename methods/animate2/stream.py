"""Animate-2's forward: a pose stream beside the video stream, feeding each block's self-attention per frame.

What the model does (ComfyUI's ``WanAnimate2Model``, the official ``WanAnimate2Transformer``):

* the DiT is the Wan 2.1 I2V 14B layout (in_dim 36, CLIP branch), unchanged;
* a **pose branch** runs the same blocks over the driving video's VAE latents ``P`` ``[B, 16, F-1, h, w]``,
  patch-embedded as ``[P | ones(4) | P]`` (the I2V slots: latent, "every frame known" mask, image), at the
  fixed timestep 1, with its own text and CLIP context (the generation branch's by default), its RoPE frames
  starting at 1 and its RoPE columns shifted right by the number of width patches;
* in each block, generation frame ``j >= 1`` attends to every generation token *plus* the pose branch's
  keys and values of pose frame ``j - 1`` (post-RoPE K, V scaled by the pose strength); frame 0 is the
  reference image's slot: it attends to the generation tokens only, and its values are scaled by the
  reference strength for every query. The caller drops frame 0 from the output;
* the official configuration of the distilled model adds ``log_scale`` (-1.3) to every query's scores of
  generation frame 1's keys (the first video frame, the continued one in later chunks): ``frame1_log_scale``
  here (0 for the base model, and in ComfyUI, which does not have it).

Everything else (modulation, cross-attention, FFN, head) is the plain Wan block: :class:`PoseStream` is a
``DiTExtensions.block_forward`` that calls each block with a replaced self-attention, so the block-run hook
(plain, step caches, streaming) runs Animate-2 unchanged. The pose branch does not depend on the noisy
latent: with a :class:`~.pose_cache.PoseBranchCache` its block inputs are kept after the first forward and
later forwards only re-project its K/V (about a tenth of a block's work).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...models.wan.dit import BlockStack, ExtensionError, WanDiT
from ...models.wan.layers import TimeModulation, WanBlock
from ...models.wan.rope import RopeRotation, rope_rotation, shifted_grid_positions
from .pose_cache import PoseBranchCache

POSE_TIMESTEP = 1.0  # both references embed the pose branch at t = 1 (``t * 0 + 1``, ``ones_like(t)``)
MASK_CHANNELS = 4


@dataclass
class PoseInputs:
    """What the pose branch reads for one forward (all on the model's device when used).

    ``latents``: model-space VAE latents of the driving video ``[1 or B, 16, F - 1, h, w]``;
    ``context``: umT5 embeddings of the pose prompt ``[1 or B, Lt, 4096]``; ``clip_fea``: CLIP tokens for
    the pose branch or None; ``cache_key``: the slot of a :class:`PoseBranchCache` (a window, say).
    """

    latents: torch.Tensor
    context: torch.Tensor
    clip_fea: torch.Tensor | None = None
    strength: float = 1.0
    cache: PoseBranchCache | None = None
    cache_key: object = None


def pose_positions(frames: int, height: int, width: int, device=None) -> torch.Tensor:
    """RoPE (frame, h, w) of the pose tokens: frames from 1 (pose frame j sits with generation frame j + 1),
    columns shifted by the width in patches, so no pose token shares a position with a generation token."""
    return shifted_grid_positions(frames, height, width, offset=(1, 0, width), device=device)


class PoseStream:
    """The Animate-2 ``block_forward`` of one forward (``pose`` None: the pose window excludes this step,
    and only the reference strength acts). State flows block to block and restarts at block 0."""

    def __init__(self, model: WanDiT, pose: PoseInputs | None, reference_strength: float = 1.0,
                 frame1_log_scale: float = 0.0):
        self.model = model
        self.pose = pose
        self.reference_strength = float(reference_strength)
        self.frame1_log_scale = float(frame1_log_scale)
        self._state: _PoseState | None = None

    # ---------------------------------------------------------------- block forward
    def __call__(self, index: int, block: WanBlock, tokens: torch.Tensor, stack: BlockStack) -> torch.Tensor:
        if index == 0:
            self._state = self._start(tokens, stack) if self.pose is not None else None
        elif self.pose is not None and (self._state is None or self._state.next_index != index):
            raise ExtensionError("Animate-2 pose stream", f"was asked for block {index} out of order",
                                 "blocks run in order from block 0 (the pose branch feeds block i from block i-1)")
        k_pose = v_pose = None
        if self._state is not None:
            k_pose, v_pose = self._state.advance(index, block, stack)
        f, h, w = stack.grid
        hw = h * w

        def self_attention(x: torch.Tensor) -> torch.Tensor:
            q, k, v = block.self_attn.qkv(x, stack.rope)
            if self.reference_strength != 1.0:
                v = v.clone()
                v[:, :hw] *= self.reference_strength
            out = framewise_attention(q, k, v, k_pose, v_pose, f, hw, stack.attention, self.frame1_log_scale)
            return block.self_attn.o(out.flatten(2))

        return block(tokens, stack.time, stack.rope, stack.text, stack.image, stack.attention, stack.compute_dtype,
                     self_attention=self_attention)

    # ---------------------------------------------------------------- pose branch
    def _start(self, tokens: torch.Tensor, stack: BlockStack) -> "_PoseState":
        model, pose = self.model, self.pose
        assert pose is not None
        frames, h, w = stack.grid
        latents = pose.latents
        pf, ph, pw = model.config.patch_size
        expected = (frames - 1) * pf
        if latents.dim() != 5 or tuple(latents.shape[2:]) != (expected, h * ph, w * pw):
            raise ExtensionError("Animate-2 pose latents", f"have shape {tuple(latents.shape)}",
                                 f"[B, 16, {expected}, {h * ph}, {w * pw}]: one latent frame per generated frame "
                                 "after the reference slot, at the video's size")
        device, cdt, batch = tokens.device, stack.compute_dtype, tokens.shape[0]
        cache, key = pose.cache, pose.cache_key
        cached = cache is not None and cache.filled(key, len(stack))
        rope = rope_rotation(pose_positions(frames - 1, h, w), model.config.head_dim, device)
        time = model._time_modulation(torch.full((latents.shape[0],), POSE_TIMESTEP), [], 0, device)
        x = text = image = None
        if not cached:
            latents = latents.to(device, torch.float32)
            ones = torch.ones_like(latents[:, :MASK_CHANNELS])
            x = model.patch_embedding(torch.cat([latents, ones, latents], dim=1).to(cdt)).float()
            x = x.flatten(2).transpose(1, 2)
            if cache is not None:
                cache.reserve(key, x.shape[1], x.shape[2], len(stack), x.shape[0])
            text = model._embed_text(pose.context.to(device))
            if pose.clip_fea is not None and model.config.has_image_branch:
                image = model.img_emb(pose.clip_fea.to(device, cdt))
        return _PoseState(x, time, rope, text, image, cdt, batch, pose.strength, cache, key, cached)


@dataclass
class _PoseState:
    x: torch.Tensor | None          # the pose residual stream entering block ``next_index`` (None when cached)
    time: TimeModulation
    rope: RopeRotation
    text: torch.Tensor | None
    image: torch.Tensor | None
    cdt: torch.dtype
    batch: int
    strength: float
    cache: PoseBranchCache | None
    key: object
    cached: bool
    next_index: int = 0

    def advance(self, index: int, block: WanBlock, stack: BlockStack) -> tuple[torch.Tensor, torch.Tensor]:
        """The pose K/V for generation block ``index`` (V times the pose strength), at the generation batch."""
        self.next_index = index + 1
        if self.cached:
            x_in = self.cache.take(self.key, index, stack.time.table.device)
            _, k, v = block.self_attn.qkv(block.self_attention_input(x_in, self.time, self.cdt), self.rope)
        else:
            if self.cache is not None:
                self.cache.put(self.key, index, self.x)
            kv: dict[str, torch.Tensor] = {}

            def pose_attention(h: torch.Tensor) -> torch.Tensor:
                q, k, v = block.self_attn.qkv(h, self.rope)
                kv["k"], kv["v"] = k, v
                return block.self_attn.o(stack.attention(q, k, v).flatten(2))

            text = self.text.expand(self.x.shape[0], -1, -1)
            image = None if self.image is None else self.image.expand(self.x.shape[0], -1, -1)
            self.x = block(self.x, self.time, self.rope, text, image, stack.attention, self.cdt,
                           self_attention=pose_attention)
            k, v = kv["k"], kv["v"]
            if index == len(stack) - 1:
                self.x = None  # the last block's output is never read
        if self.strength != 1.0:
            v = v * self.strength
        if k.shape[0] != self.batch:
            k, v = k.expand(self.batch, -1, -1, -1), v.expand(self.batch, -1, -1, -1)
        return k, v


def framewise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_pose: torch.Tensor | None,
                        v_pose: torch.Tensor | None, frames: int, hw: int, attend,
                        frame1_log_scale: float = 0.0) -> torch.Tensor:
    """Frame 0's queries attend to ``k, v``; frame ``j >= 1``'s to ``k, v`` plus pose frame ``j - 1``.

    ``[B, L, heads, head_dim]`` tensors, ``L = frames * hw``; the pose ones hold ``(frames - 1) * hw``
    tokens. Without pose K/V it is plain attention. One key buffer serves every frame: only its pose tail
    is rewritten. ``frame1_log_scale`` is added to the scores of frame 1's keys (torch SDPA with an additive
    key bias, whatever the chosen backend: the others take no bias).
    """
    if frame1_log_scale != 0.0 and frames >= 2:
        attend = _key_bias_attention(hw, 2 * hw, frame1_log_scale)
    if k_pose is None:
        return attend(q, k, v)
    length = k.shape[1]
    keys = torch.cat([k, k_pose[:, :hw]], dim=1)
    values = torch.cat([v, v_pose[:, :hw]], dim=1)
    out = q.new_empty(*q.shape[:3], v.shape[-1])
    out[:, :hw] = attend(q[:, :hw], k, v)
    for j in range(1, frames):
        if j > 1:
            keys[:, length:] = k_pose[:, (j - 1) * hw:j * hw]
            values[:, length:] = v_pose[:, (j - 1) * hw:j * hw]
        out[:, j * hw:(j + 1) * hw] = attend(q[:, j * hw:(j + 1) * hw], keys, values)
    return out


def _key_bias_attention(start: int, stop: int, value: float):
    """Attention ``[B, L, heads, head_dim]`` with ``value`` added to the scores of keys ``start .. stop - 1``."""
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        bias = torch.zeros(k.shape[1], dtype=q.dtype, device=q.device)
        bias[start:stop] = value
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=bias[None, None, None, :])
        return out.transpose(1, 2)
    return attend
