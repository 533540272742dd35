"""Animate-2: one chunk's conditioning for the sampler.

* the latent has one frame more than the chunk: frame 0 is the reference image's slot, and ``y`` holds
  ``(ones, reference latent)`` there, then ``(mask, VAE of the continued frames and grey)`` — the same image
  condition as Wan2.2-Animate's (built by :func:`..wan_animate.clips.build_clip_y`);
* the pose branch reads the driving video's latents (``[1, 16, F - 1, h, w]``), with the pose prompt and
  pose CLIP (the generation branch's when not given); both guidance branches use the *same* pose branch (the
  official pipeline runs it once, outside the CFG loop), so one cached slot serves both;
* the pose acts on the steps of its window: step ``i`` of ``n`` when ``start <= i / n < end`` (the fraction
  of the steps done; ComfyUI's node measures the same fractions in sigma, which differs with the shift);
  outside it the DiT runs without the pose branch, and only the reference strength acts;
* the negative branch has the negative prompt, the same CLIP, ``y`` and pose branch (as ComfyUI's node).

Windows are refused, as for Wan2.2-Animate: the reference slot is latent frame 0 and every pose frame is
tied to the generated frame after it, so long videos are chunks chained through their last decoded frame
(:mod:`.run`), the reference pipeline's way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import InputError
from ...models.wan.dit import DiTExtensions, WanDiT
from ...models.wan.latent_space import LATENT_CHANNELS
from ...sampling.conditioning import VideoGeometry, branch_frames
from ...sampling.wan_denoiser import WanCond
from ...sampling.windows import Window
from .pose_cache import PoseBranchCache
from .stream import PoseInputs, PoseStream

__all__ = ["Animate2Conditioning", "PoseWindow", "build_animate2_conditioning"]

Y_CHANNELS = 4 + LATENT_CHANNELS
DEFAULT_STEPS, DEFAULT_SHIFT, DEFAULT_GUIDANCE = 20, 5.0, 1.0  # ComfyUI's WAN_Animate2 sampling shift 5
DISTILLED_STEPS = 10  # the distilled variant: 10 steps, no CFG (the reference's distillation config)


@dataclass(frozen=True)
class PoseWindow:
    """The fraction of the steps where the pose acts: step ``i`` of ``n`` when ``start <= i / n < end``."""

    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        for name, value in (("pose start", self.start), ("pose end", self.end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(name, f"{value!r} is not a fraction of the steps", "a number from 0.0 to 1.0")
        if self.start > self.end:
            raise InputError("pose start", f"{self.start} is after the pose end {self.end}",
                             "a start at or before the end (e.g. start 0.0, end 0.7)")

    def active(self, step: int, steps: int) -> bool:
        return self.start <= step / steps < self.end


@dataclass
class Animate2Conditioning:
    """One chunk's Animate-2 conditioning (:class:`~...sampling.conditioning.MethodConditioning`).

    ``geometry.frames`` counts the reference slot. ``cache`` (optional) keeps the pose branch's block
    inputs across steps; :meth:`clear_cache` frees them.
    """

    geometry: VideoGeometry
    model: WanDiT
    context: torch.Tensor
    negative_context: torch.Tensor | None
    clip_fea: torch.Tensor | None
    y: torch.Tensor
    pose_latents: torch.Tensor
    pose_context: torch.Tensor
    pose_clip_fea: torch.Tensor | None
    pose_strength: float = 1.0
    reference_strength: float = 1.0
    frame1_log_scale: float = 0.0
    window: PoseWindow = field(default_factory=PoseWindow)
    cache: PoseBranchCache | None = None
    cache_key: object = "chunk"

    def pose_inputs(self, step: int, steps: int) -> PoseInputs | None:
        """The pose branch at ``step`` of ``steps``, or None outside the pose window."""
        if not self.window.active(step, steps):
            return None
        return PoseInputs(self.pose_latents, self.pose_context, self.pose_clip_fea, self.pose_strength,
                          self.cache, self.cache_key)

    def branch(self, positive: bool, step: int, steps: int, window: Window | None = None) -> WanCond:
        if window is not None:
            raise InputError("context windows", "were asked for with Animate-2",
                             "no windows: long videos run as chunks chained through their last frame")
        branch_frames(self.geometry, step, steps, None)
        if positive:
            context = self.context
        elif self.negative_context is None:
            raise InputError("negative prompt", "is missing but guidance needs an unconditional branch",
                             "a CFG scale of 1 (the distilled model's), or a negative prompt")
        else:
            context = self.negative_context
        stream = PoseStream(self.model, self.pose_inputs(step, steps), self.reference_strength,
                            self.frame1_log_scale)
        return WanCond(context, self.clip_fea, self.y, DiTExtensions(block_forward=stream))

    def clear_cache(self) -> None:
        if self.cache is not None:
            self.cache.free()


def build_animate2_conditioning(model: WanDiT, y: torch.Tensor, pose_latents: torch.Tensor, context: torch.Tensor,
                                negative_context: torch.Tensor | None = None, clip_fea: torch.Tensor | None = None,
                                pose_context: torch.Tensor | None = None, pose_clip_fea: torch.Tensor | None = None,
                                pose_strength: float = 1.0, reference_strength: float = 1.0,
                                window: PoseWindow | None = None, cache: PoseBranchCache | None = None,
                                frame1_log_scale: float = 0.0) -> Animate2Conditioning:
    """Check one chunk's inputs and build :class:`Animate2Conditioning`. Latents are model space, batch 1.

    ``y`` ``[1, 20, 1 + T, h, w]`` (the reference slot, then the chunk's image condition);
    ``pose_latents`` ``[1, 16, T, h, w]``: the driving video's VAE latents; ``pose_context`` /
    ``pose_clip_fea`` default to ``context`` / ``clip_fea``. ``frame1_log_scale``: added to the attention
    scores of the first video frame's keys (the official distilled configuration: -1.3; otherwise 0).
    """
    if y.dim() != 5 or y.shape[0] != 1 or y.shape[1] != Y_CHANNELS or y.shape[2] < 2:
        raise InputError("image condition (y)", f"has shape {list(y.shape)}",
                         f"[1, {Y_CHANNELS}, 1 + frames, h, w]: the reference slot and the chunk's frames")
    frames = y.shape[2] - 1
    expected = [1, LATENT_CHANNELS, frames, *y.shape[3:]]
    if pose_latents.dim() != 5 or list(pose_latents.shape) != expected:
        raise InputError("pose latents", f"have shape {list(pose_latents.shape)}",
                         f"{expected}: the driving video's latents, one per generated latent frame, at the video's "
                         "size")
    if not torch.isfinite(pose_latents).all():
        raise InputError("pose latents", "contain NaN or infinite values", "finite VAE latents")
    for name, value in (("pose strength", pose_strength), ("reference strength", reference_strength)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < float("inf"):
            raise InputError(name, f"{value!r} is not a number of 0 or more", "a strength such as 1.0")
    if isinstance(frame1_log_scale, bool) or not isinstance(frame1_log_scale, (int, float)) or \
            not -20.0 <= frame1_log_scale <= 20.0:
        raise InputError("frame 1 log scale", f"{frame1_log_scale!r} is not a number from -20 to 20",
                         "0 (the base model) or -1.3 (the distilled model's configuration)")
    geometry = VideoGeometry(frames=frames + 1, height=int(y.shape[3]), width=int(y.shape[4]))
    return Animate2Conditioning(
        geometry=geometry, model=model, context=context, negative_context=negative_context, clip_fea=clip_fea,
        y=y.float(), pose_latents=pose_latents.float(),
        pose_context=context if pose_context is None else pose_context,
        pose_clip_fea=clip_fea if pose_clip_fea is None else pose_clip_fea, pose_strength=float(pose_strength),
        reference_strength=float(reference_strength), frame1_log_scale=float(frame1_log_scale),
        window=window or PoseWindow(), cache=cache)
