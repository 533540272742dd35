"""SteadyDancer's conditioning for the sampler, and its pose guidance.

What ``WanI2VDancer.generate`` (``wan/image2video_dancer.py``) feeds the model,
from the VAE latents (model space) of three videos and two CLIP encodings:

* image-to-video: ``y = cat(mask, VAE([reference, zeros...]))``, the mask 1 on
  the first latent frame: the reference *is* the first frame;
* ``ref_x = cat(VAE(reference), ones(4), VAE(reference))`` and
  ``ref_c = VAE(first pose frame)``, appended as two more frames
  (:mod:`.layers`); Wan's VAE is causal, so ``VAE(image)`` is the first latent
  frame of a video starting with it: both come from the video latents;
* the pose latent ``VAE(pose video)``, fused and aligned inside the model;
* CLIP of the reference plus CLIP of the first pose frame, embedded and summed.

Guidance (:class:`PoseGuidance`) has three branches: the prompt with the pose,
the negative prompt with the pose, and (on the steps with ``start < i / steps
< end``, 0.1 and 0.4 in ``generate_dancer.py``) the prompt with the *negative
pose* (the driving poses before alignment, or any other pose video the user
gives): ``uncond + scale * (cond - uncond) + pose_scale * (cond - pose_null)``.

Windows: each window gets its slice of ``y`` and of the pose latents (the
temporal branch and the aligner see only the window); the reference frames
are the same for every window.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ...errors import InputError
from ...models.wan.dit import DiTExtensions, ExtraTokens
from ...models.wan.latent_space import LATENT_CHANNELS
from ...sampling.conditioning import VideoGeometry, branch_frames
from ...sampling.guidance import Denoiser, at_step
from ...sampling.wan_denoiser import WanCond
from ...sampling.windows import Window
from .layers import SteadyDancerLayers

MASK_CHANNELS = 4
DEFAULT_GUIDANCE, DEFAULT_POSE_GUIDANCE = 5.0, 1.5
DEFAULT_POSE_START, DEFAULT_POSE_END = 0.1, 0.4
POSITIVE, NEGATIVE, POSE_NULL = "positive", "negative", "pose_null"


def first_frame_mask(latent: torch.Tensor) -> torch.Tensor:
    """``cat(mask, latent)``: 4 mask channels, 1 on the first latent frame, 0 after it."""
    mask = torch.zeros(latent.shape[0], MASK_CHANNELS, *latent.shape[2:], dtype=torch.float32, device=latent.device)
    mask[:, :, 0] = 1.0
    return torch.cat([mask, latent.float()], dim=1)


def reference_latents(image_latent: torch.Tensor, pose_latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ref_x [1, 36, 1, h, w], ref_c [1, 16, 1, h, w])`` from the first frames of the two video latents."""
    image = image_latent[:, :, :1].float()
    ones = torch.ones(image.shape[0], MASK_CHANNELS, *image.shape[2:], dtype=torch.float32, device=image.device)
    return torch.cat([image, ones, image], dim=1), pose_latent[:, :, :1].float()


@dataclass
class SteadyDancerConditioning:
    """SteadyDancer's conditioning (:class:`~...sampling.conditioning.MethodConditioning`), latents in model space.

    ``branch(positive, ...)`` gives the two text branches; :meth:`kind_branch`
    also the pose-null one. Fused poses are computed once per window and pose
    kind and kept (``clear_cache`` frees them).
    """

    geometry: VideoGeometry
    layers: SteadyDancerLayers
    context: torch.Tensor
    negative_context: torch.Tensor
    clip_fea: torch.Tensor                    # CLIP of the reference [1, 257, 1280]
    clip_fea_pose: torch.Tensor | None        # CLIP of the first pose frame (None: left out)
    image_latent: torch.Tensor                # VAE([reference, zeros...]) [1, 16, T, h, w]
    pose_latent: torch.Tensor                 # VAE(pose video) [1, 16, T, h, w]
    negative_pose_latent: torch.Tensor | None = None
    spatial_strength: float = 1.0
    temporal_strength: float = 1.0
    pose_scale: float = DEFAULT_POSE_GUIDANCE
    pose_start: float = DEFAULT_POSE_START
    pose_end: float = DEFAULT_POSE_END
    _fused: dict[tuple[bool, Any], torch.Tensor] = field(default_factory=dict, repr=False)
    _ref_tokens: torch.Tensor | None = field(default=None, repr=False)

    @property
    def extra_token_count(self) -> int:
        """Tokens appended to each window's sequence (the two reference frames), for the sampler's memory check."""
        _, ph, pw = self.layers.patch_size
        return 2 * (self.geometry.height // ph) * (self.geometry.width // pw)

    @property
    def y(self) -> torch.Tensor:
        return first_frame_mask(self.image_latent)

    def reference_tokens(self) -> torch.Tensor:
        if self._ref_tokens is None:
            ref_x, ref_c = reference_latents(self.image_latent, self.pose_latent)
            with torch.no_grad():
                self._ref_tokens = self.layers.reference_tokens(ref_x, ref_c)
        return self._ref_tokens

    def fused_pose(self, null: bool, window: Window | None) -> torch.Tensor:
        key = (null, None if window is None else (window.start, window.end))
        if key not in self._fused:
            pose = self.negative_pose_latent if null else self.pose_latent
            if window is not None:
                pose = pose[:, :, window.start:window.end]
            with torch.no_grad():
                self._fused[key] = self.layers.fuse(pose, self.spatial_strength, self.temporal_strength)
        return self._fused[key]

    def clear_cache(self) -> None:
        self._fused.clear()
        self._ref_tokens = None

    def guidance(self, positive, negative, cfg_scale: float, steps: int) -> "PoseGuidance":
        """The sampler's ``make_guidance``: :class:`PoseGuidance` with this conditioning's pose settings."""
        return three_branches(self, cfg_scale, self.pose_scale, self.pose_start, self.pose_end, steps)

    def branch(self, positive: bool, step: int, steps: int, window: Window | None = None) -> WanCond:
        return self.kind_branch(POSITIVE if positive else NEGATIVE, step, steps, window)

    def kind_branch(self, kind: str, step: int, steps: int, window: Window | None = None) -> WanCond:
        """``positive``: prompt and pose; ``negative``: negative prompt and pose; ``pose_null``: prompt and
        negative pose."""
        length = branch_frames(self.geometry, step, steps, window)
        if kind == POSE_NULL and self.negative_pose_latent is None:
            raise ValueError("the pose-null branch needs negative pose latents")
        start = 0 if window is None else window.start
        y = self.y[:, :, start:start + length]
        fused = self.fused_pose(kind == POSE_NULL, window)
        layers = self.layers
        grid = (length, y.shape[3] // layers.patch_size[1], y.shape[4] // layers.patch_size[2])
        positions = layers.reference_positions(grid, device=layers.device)
        ext = DiTExtensions(latent_tokens=[lambda latent: layers.pose_tokens(fused, latent)],
                            extra_tokens=[ExtraTokens(self.reference_tokens(), positions)],
                            image_features=[] if self.clip_fea_pose is None else [self.clip_fea_pose])
        context = self.negative_context if kind == NEGATIVE else self.context
        return WanCond(context=context, clip_fea=self.clip_fea, y=y, ext=ext)


@dataclass(frozen=True)
class KindBranch:
    """One of the three guidance branches, resolved lazily per step and window (like ``sampling.video.Branch``,
    whose ``positive`` is the cache key: here the branch kind)."""

    conditioning: SteadyDancerConditioning
    positive: str
    steps: int
    step: int = 0

    def at_step(self, step: int) -> "KindBranch":
        return replace(self, step=step)

    def resolve(self, window: Window | None = None) -> WanCond:
        return self.conditioning.kind_branch(self.positive, self.step, self.steps, window)


@dataclass(frozen=True)
class PoseGuidance:
    """The reference's guidance: text CFG on every step, pose CFG on the steps in ``(start, end)``."""

    positive: Any
    negative: Any
    pose_null: Any | None
    scale: float = DEFAULT_GUIDANCE
    pose_scale: float = DEFAULT_POSE_GUIDANCE
    start: float = DEFAULT_POSE_START
    end: float = DEFAULT_POSE_END
    steps: int = 1

    def pose_step(self, step: int) -> bool:
        return self.pose_null is not None and self.pose_scale != 0.0 and self.start < step / self.steps < self.end

    def velocity(self, model: Denoiser, x: torch.Tensor, timestep: torch.Tensor, step: int) -> torch.Tensor:
        """The reference's mix; a text scale of exactly 1 skips the negative-prompt pass (its term is 0)."""
        cond = model(x, timestep, at_step(self.positive, step))
        if self.scale == 1.0:
            out = cond
        else:
            uncond = model(x, timestep, at_step(self.negative, step))
            out = uncond + self.scale * (cond - uncond)
        if self.pose_step(step):
            pose_null = model(x, timestep, at_step(self.pose_null, step))
            out = out + self.pose_scale * (cond - pose_null)
        return out

    def bind(self, model: Denoiser):
        return lambda x, timestep, step: self.velocity(model, x, timestep, step)


def pose_guidance(scale: float = DEFAULT_GUIDANCE, pose_scale: float = DEFAULT_POSE_GUIDANCE,
                  start: float = DEFAULT_POSE_START, end: float = DEFAULT_POSE_END):
    """A ``make_guidance`` for :func:`~...sampling.video.sample_video`: the three-branch guidance above (its own
    ``scale``, whatever the sampler's cfg)."""
    def make(positive, negative, cfg_scale: float, steps: int) -> PoseGuidance:
        return three_branches(positive.conditioning, scale, pose_scale, start, end, steps)
    return make


def three_branches(conditioning: SteadyDancerConditioning, scale: float, pose_scale: float, start: float, end: float,
                   steps: int) -> PoseGuidance:
    """:class:`PoseGuidance` over ``conditioning``'s branches (no pose-null one without negative pose latents)."""
    null = None if conditioning.negative_pose_latent is None else KindBranch(conditioning, POSE_NULL, steps)
    return PoseGuidance(KindBranch(conditioning, POSITIVE, steps), KindBranch(conditioning, NEGATIVE, steps),
                        null, scale, pose_scale, start, end, steps)


# ---------------------------------------------------------------- building
def _latent(name: str, value: Any, channels: int = LATENT_CHANNELS) -> torch.Tensor:
    if not torch.is_tensor(value) or value.dim() != 5 or value.shape[0] != 1 or value.shape[1] != channels:
        shape = list(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise InputError(name, f"has shape {shape}", f"one VAE latent [1, {channels}, frames, h, w]")
    if not torch.isfinite(value).all():
        raise InputError(name, "holds NaN or infinite values", "a finite latent from the VAE")
    return value.float()


def build_steadydancer_conditioning(layers: SteadyDancerLayers, context: torch.Tensor, negative_context: torch.Tensor,
                                    clip_fea: torch.Tensor, clip_fea_pose: torch.Tensor, image_latent: torch.Tensor,
                                    pose_latent: torch.Tensor, negative_pose_latent: torch.Tensor | None = None,
                                    spatial_strength: float = 1.0, temporal_strength: float = 1.0,
                                    pose_scale: float = DEFAULT_POSE_GUIDANCE, pose_start: float = DEFAULT_POSE_START,
                                    pose_end: float = DEFAULT_POSE_END) -> SteadyDancerConditioning:
    """Check the inputs and build the conditioning (latents in model space, ``[1, 16, T, h, w]`` each).

    ``image_latent``: the VAE latent of the reference followed by mid-grey frames
    (zeros in the VAE's -1..1, as the reference and ComfyUI's WanImageToVideo pad),
    as long as the pose video; ``negative_pose_latent``:
    as long as the pose latent (the pose-null guidance branch), or None.
    """
    image = _latent("image latent", image_latent)
    pose = _latent("pose latent", pose_latent)
    if pose.shape[2:] != image.shape[2:]:
        raise InputError("pose latent", f"is {list(pose.shape[2:])} (frames, h, w), the image latent "
                         f"{list(image.shape[2:])}", "the pose video encoded at the size and length of the video")
    negative = None
    if negative_pose_latent is not None:
        negative = _latent("negative pose latent", negative_pose_latent)
        if negative.shape[2] != pose.shape[2]:
            raise InputError("negative pose latent", f"has {negative.shape[2]} latent frames "
                             f"({4 * (negative.shape[2] - 1) + 1} video frames), the pose latent {pose.shape[2]} "
                             f"({4 * (pose.shape[2] - 1) + 1} video frames)",
                             "a negative pose video as long as the pose video")
        if negative.shape[3:] != pose.shape[3:]:
            raise InputError("negative pose latent", f"is {8 * negative.shape[4]}x{8 * negative.shape[3]} pixels, "
                             f"the pose latent {8 * pose.shape[4]}x{8 * pose.shape[3]}",
                             "a negative pose video of the pose video's size")
    for name, value in (("spatial pose strength", spatial_strength), ("temporal pose strength", temporal_strength),
                        ("pose guidance scale", pose_scale), ("pose guidance start", pose_start),
                        ("pose guidance end", pose_end)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not float(value) == float(value) \
                or abs(float(value)) == float("inf"):
            raise InputError(name, f"{value!r} is not a finite number", "a strength such as 1.0")
    if not 0.0 <= pose_start <= pose_end <= 1.0:
        raise InputError("pose guidance start/end", f"are {pose_start} and {pose_end}",
                         "0 <= start <= end <= 1 (fractions of the steps; SteadyDancer uses 0.1 and 0.4)")
    geometry = VideoGeometry(int(pose.shape[2]), int(pose.shape[3]), int(pose.shape[4]))
    return SteadyDancerConditioning(geometry, layers, context, negative_context, clip_fea, clip_fea_pose, image, pose,
                                    negative, float(spatial_strength), float(temporal_strength), float(pose_scale),
                                    float(pose_start), float(pose_end))
