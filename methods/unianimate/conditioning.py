"""UniAnimate-DiT: pose tokens added to the Wan 2.1 I2V DiT, the reference pose added to its image condition.

What the method is (``WanUniAnimateVideoPipeline`` and
``WanUniAnimateLongVideoPipeline`` in DiffSynth-based UniAnimate-DiT):

* the DiT is Wan 2.1 I2V 14B with UniAnimate's LoRA merged
  (:mod:`.weights`);
* the image condition is standard Wan I2V: ``y = cat(mask, VAE(cat(ref, zeros)))``
  with the 4 mask channels 1 on the first latent frame and 0 after, plus the
  reference pose's 20-channel map (:meth:`UniAnimateEncoders.reference_pose`)
  added to all 20 channels of every latent frame;
* the rendered pose video becomes tokens (:meth:`UniAnimateEncoders.pose_tokens`)
  added to the patch-embedded video tokens of the *positive* branch only: the
  negative branch gets the negative prompt and the same ``y`` (with the
  reference pose) but no pose tokens;
* long videos (the long-video pipeline) are denoised in overlapping windows of
  latent frames. Each window is a clip of its own: its pose tokens come from
  its own pose frames (pixel frames ``[4s, 4(e-1)+1)`` of latent window
  ``[s, e)``, the first repeated three times in front), and its ``y`` is the
  reference image as the window's first frame, i.e. ``y`` built for the
  window's length. The reference encodes ``y`` once at the window length
  (``context_size * 4 - 3`` frames) and gives every window that same ``y``.

``y`` for any length from one encoding: Wan's VAE is causal in time (latent
frame ``t`` depends on pixel frames up to ``4t`` only), so the latent of
``cat(ref, zeros(n))`` for a shorter ``n`` is the first frames of the latent
for a longer one, bit for bit; the mask is the same prefix too. So the builder
takes the latent for the whole video and a window's ``y`` is its first
``window.length`` frames, which equals the reference's per-window encoding.

Precision: the reference casts the pose tokens and the reference-pose map to
bfloat16 before adding them (its pipelines run the DiT in bf16); here they stay
in float32 (``token_dtype`` can store the cached tokens in bf16 to halve their
memory). The parity fixtures compare both in float32.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ...errors import InputError
from ...models.wan.dit import DiTExtensions
from ...models.wan.latent_space import (LATENT_CHANNELS, is_frame_count, latent_frames, nearest_frame_counts,
                                        pixel_frames)
from ...sampling.wan_denoiser import WanCond
from ...sampling.windows import Window, slice_frames
from ...sampling.conditioning import VideoGeometry, branch_frames
from ..images import fit_image
from .encoders import REF_STRIDE, SPATIAL_STRIDE, UniAnimateEncoders

log = logging.getLogger(__name__)

MASK_CHANNELS = 4


def image_condition(latent: torch.Tensor) -> torch.Tensor:
    """Standard Wan I2V ``y = cat(mask, latent)``: ``[1, 16, T, h, w]`` -> ``[1, 20, T, h, w]`` (float32).

    The 4 mask channels are 1 on the first latent frame (the reference image)
    and 0 on the others.
    """
    mask = torch.zeros(latent.shape[0], MASK_CHANNELS, *latent.shape[2:], dtype=torch.float32, device=latent.device)
    mask[:, :, 0] = 1.0
    return torch.cat([mask, latent.float()], dim=1)


@dataclass
class UniAnimateConditioning:
    """UniAnimate's conditioning for the sampler (:class:`~..base.MethodConditioning`).

    ``y`` already holds the reference pose; ``pose_frames`` are the pixel
    frames of the whole video (CPU, ``[4(T-1)+1, H, W, 3]``, 0..1). Pose tokens
    are computed on the encoders' device the first time a window needs them
    and kept per window (``clear_cache`` frees them).
    """

    geometry: VideoGeometry
    encoders: UniAnimateEncoders
    context: torch.Tensor
    negative_context: torch.Tensor | None
    clip_fea: torch.Tensor | None
    y: torch.Tensor
    pose_frames: torch.Tensor
    pose_strength: float = 1.0
    pose_start: float = 0.0
    pose_end: float = 1.0
    token_dtype: torch.dtype = torch.float32
    _tokens: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    def pose_active(self, step: int, steps: int) -> bool:
        """Whether the positive branch gets pose tokens at ``step``: ``start <= step / steps < end``."""
        return self.pose_strength != 0.0 and self.pose_start <= step / steps < self.pose_end

    def pose_tokens(self, window: Window | None = None) -> torch.Tensor:
        """The pose tokens (times ``pose_strength``) for ``window`` (None: the whole video), cached."""
        start, end = (0, self.geometry.frames) if window is None else (window.start, window.end)
        key = (start, end)
        if key not in self._tokens:
            frames = self.pose_frames if window is None else slice_frames(
                self.pose_frames, window, dim=0, unit="pixel", name="pose frames")
            tokens = self.encoders.pose_tokens(frames)
            if self.pose_strength != 1.0:
                tokens = tokens * self.pose_strength
            # a whole-video run keeps its tokens where they are made; windows keep theirs on the CPU, so device
            # memory holds one window's tokens at a time however long the video (~0.7 GB each at 14B, 480p)
            self._tokens[key] = tokens.to("cpu" if window is not None else tokens.device, self.token_dtype)
        return self._tokens[key]

    def clear_cache(self) -> None:
        self._tokens.clear()

    def branch(self, positive: bool, step: int, steps: int, window: Window | None = None) -> WanCond:
        """Positive: the prompt, ``y`` and the pose tokens (within ``[pose_start, pose_end)``).
        Negative: the negative prompt and the same ``y``, no pose tokens."""
        length = branch_frames(self.geometry, step, steps, window)
        y = self.y[:, :, :length]  # the reference image as the window's first frame (see the module docstring)
        if not positive:
            if self.negative_context is None:
                raise InputError("negative prompt", "is missing but guidance needs a negative branch",
                                 "a negative text conditioning, or a CFG scale of 1")
            return WanCond(self.negative_context, self.clip_fea, y)
        ext = DiTExtensions(added_tokens=[self.pose_tokens(window)]) if self.pose_active(step, steps) else None
        return WanCond(self.context, self.clip_fea, y, ext)


# ---------------------------------------------------------------- building
def build_unianimate_conditioning(encoders: UniAnimateEncoders, ref_latent_y: torch.Tensor,
                                  ref_pose_image: torch.Tensor, pose_frames: torch.Tensor, context: torch.Tensor,
                                  negative_context: torch.Tensor | None, clip_fea: torch.Tensor | None,
                                  pose_strength: float = 1.0, pose_start: float = 0.0, pose_end: float = 1.0,
                                  frames: int | None = None,
                                  token_dtype: torch.dtype = torch.float32) -> UniAnimateConditioning:
    """Check the inputs and build :class:`UniAnimateConditioning`.

    ``ref_latent_y``: the 16-channel latent of ``cat(reference image, zeros)``
    in the DiT's model space, ``[1, 16, T, h, w]``. ``frames`` (pixel frames,
    ``4k + 1``) defaults to all of it; a longer latent is cut to ``frames``
    (exact: the VAE is causal). ``ref_pose_image``: the reference image's
    rendered pose ``[H, W, 3]`` (resized to the video when only its size
    differs). ``pose_frames``: the rendered driving poses ``[N, H, W, 3]`` at
    the video's pixel size ``8h x 8w``; fewer than ``frames`` are padded with
    the last pose (with a warning), more are cut. ``context`` /
    ``negative_context``: umT5 embeddings ``[1, Lt, 4096]``; ``clip_fea``:
    CLIP ViT-H tokens ``[1, 257, 1280]``, or None for a DiT without a CLIP branch.
    Pose tokens are given on steps with ``pose_start <= step / steps < pose_end``.
    """
    if not isinstance(encoders, UniAnimateEncoders):
        raise InputError("UniAnimate encoders", f"are a {type(encoders).__name__}",
                         "the pose encoders loaded from UniAnimate's file")
    latent = _check_latent(ref_latent_y)
    _, _, available, h, w = latent.shape
    frames = _check_frames(frames, available)
    latent_count = latent_frames(frames)
    geometry = VideoGeometry(frames=latent_count, height=h, width=w)
    height, width = h * REF_STRIDE, w * REF_STRIDE
    poses = _fit_pose_frames(pose_frames, frames, height, width)
    ref_pose = fit_image(ref_pose_image, height, width)
    _check_context(context, "positive prompt")
    if negative_context is not None:
        _check_context(negative_context, "negative prompt")
    if clip_fea is not None and (not torch.is_tensor(clip_fea) or clip_fea.dim() != 3 or clip_fea.shape[0] != 1):
        raise InputError("clip vision output", f"has shape {list(getattr(clip_fea, 'shape', []))}",
                         "CLIP vision tokens [1, 257, 1280] of the reference image")
    _check_pose_schedule(pose_strength, pose_start, pose_end)

    y = image_condition(latent[:, :, :latent_count])
    y = y + encoders.reference_pose(ref_pose).float().to(y.device).unsqueeze(2)
    return UniAnimateConditioning(geometry=geometry, encoders=encoders, context=context,
                                  negative_context=negative_context, clip_fea=clip_fea, y=y, pose_frames=poses,
                                  pose_strength=float(pose_strength), pose_start=float(pose_start),
                                  pose_end=float(pose_end), token_dtype=token_dtype)


def _check_latent(latent: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(latent) or latent.dim() != 5 or latent.shape[0] != 1:
        raise InputError("reference latent", f"has shape {list(getattr(latent, 'shape', []))}",
                         f"the VAE latent of the reference image followed by empty frames, [1, {LATENT_CHANNELS}, "
                         "frames, height/8, width/8]")
    if latent.shape[1] != LATENT_CHANNELS:
        hint = " (pass the VAE latent alone: the mask is added here)" if latent.shape[1] == 20 else ""
        raise InputError("reference latent", f"has {latent.shape[1]} channels{hint}",
                         f"the {LATENT_CHANNELS}-channel Wan 2.1 VAE latent")
    h, w = latent.shape[3:]
    if h % 2 or w % 2:
        raise InputError("reference latent", f"is {w}x{h} latent pixels",
                         f"an even latent size, i.e. a video whose width and height are multiples of {SPATIAL_STRIDE}")
    return latent


def _check_frames(frames: int | None, available: int) -> int:
    most = pixel_frames(available)
    if frames is None:
        return most
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError("frames", f"{frames!r} is not a positive whole number", "4k+1 frames such as 81")
    if not is_frame_count(frames):
        lower, upper = nearest_frame_counts(frames)
        raise InputError("frames", f"{frames} is not of the form 4k+1 that Wan's VAE needs",
                         f"{lower} or {upper} frames")
    if frames > most:
        raise InputError("reference latent", f"covers {most} frames ({available} latent frames), fewer than the "
                         f"{frames} frames asked for", f"a reference latent encoded for at least {frames} frames")
    return frames


def _fit_pose_frames(pose_frames: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """The pose video at ``frames`` frames on the CPU; padded with its last frame, or cut."""
    if not torch.is_tensor(pose_frames) or not pose_frames.is_floating_point() or pose_frames.dim() != 4 \
            or pose_frames.shape[-1] != 3 or pose_frames.shape[0] < 1:
        raise InputError("pose frames", f"have shape {list(getattr(pose_frames, 'shape', []))}",
                         "an RGB IMAGE batch [frames, height, width, 3] of rendered poses, floats in 0..1")
    count, got_h, got_w = pose_frames.shape[:3]
    if (got_h, got_w) != (height, width):
        raise InputError("pose frames", f"are {got_w}x{got_h} pixels",
                         f"the video's pixel size {width}x{height} (render or resize the poses to it)")
    poses = pose_frames.detach().to("cpu")
    if count < frames:
        log.warning("pose frames: %d frames for a %d-frame video; repeating the last pose for the remaining %d",
                    count, frames, frames - count)
        poses = torch.cat([poses, poses[-1:].expand(frames - count, -1, -1, -1)], dim=0)
    elif count > frames:
        log.info("pose frames: using the first %d of %d frames", frames, count)
        poses = poses[:frames]
    return poses


def _check_context(context: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(context) or context.dim() != 3 or context.shape[0] != 1:
        raise InputError(name, f"has shape {list(getattr(context, 'shape', []))}",
                         "umT5 text embeddings [1, tokens, 4096]")


def _check_pose_schedule(strength: float, start: float, end: float) -> None:
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not strength >= 0.0:
        raise InputError("pose strength", f"{strength!r} is not a number of 0 or more", "a strength such as 1.0")
    for name, value in (("pose start", start), ("pose end", end)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise InputError(name, f"{value!r} is not a fraction of the steps", "a number from 0 to 1")
    if not start < end:
        raise InputError("pose end", f"{end} is not after the pose start {start}",
                         "an end fraction greater than the start")
