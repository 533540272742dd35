"""RealisDance-DiT: pose latents added to the Wan 2.1 I2V DiT's tokens, the reference appended as tokens.

What the method is (``RealisDanceDiT`` and ``RealisDanceDiTPipeline`` in damo-cv/RealisDance):

* the DiT is Wan 2.1 I2V 14B fine-tuned with three extra layers
  (:mod:`.layers`, loaded by :mod:`.weights`);
* the I2V channels are empty on purpose: ``y = cat(4 zero mask channels,
  VAE(a zero video))`` in model space, a "zero" video being mid-grey (0 in the
  VAE's -1..1 range, 0.5 in ComfyUI IMAGE values);
* the pose: the SMPL-CS render video and the HaMeR hand render video, each
  VAE-encoded (16 channels), concatenated SMPL first (32), become tokens
  ``add_proj(add_conv_in(pose))`` *added* to the patch-embedded video tokens;
* the reference image enters twice: through CLIP (the I2V image branch), and
  as its VAE latent turned into tokens by ``attn_conv_in`` and *appended* to
  the sequence at RoPE positions of their own (:func:`reference_positions`);
  the reference is resized to the video's area at its own aspect
  (:func:`reference_grid`), so its token grid may differ from the video's;
* guidance 2.0 over 40 Euler flow-matching steps (diffusers'
  ``FlowMatchEulerDiscreteScheduler``: :func:`realisdance_scheduler`). The
  unconditional branch has the empty prompt's embeddings, the CLIP tokens of
  a zero (mid-grey) image and VAE(zero image) as the reference, at the
  reference's size; it *keeps* the pose tokens and the same ``y``.

Windows (longer videos): each window gets the pose tokens of its own frames (exact:
the pose layers are frame-local), the reference tokens at the same positions
(they do not depend on the window), and ``y`` for its own length, which is the
first ``window.length`` frames of the whole video's ``y`` (Wan's VAE is
causal, so the latent of a shorter zero video is a prefix of a longer one's).

Precision: the reference runs the DiT and these layers in bf16; here the
pose and reference tokens are computed and kept in float32 (``token_dtype``
can keep the pose tokens in bf16 to halve their memory). The parity fixtures
compare in float32.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ...errors import InputError
from ...models.wan.dit import DiTExtensions, ExtraTokens
from ...models.wan.latent_space import LATENT_CHANNELS
from ...models.wan.rope import shifted_grid_positions
from ...sampling.schedulers import Scheduler, make_scheduler
from ...sampling.wan_denoiser import WanCond
from ...sampling.windows import Window, slice_frames
from ...sampling.conditioning import VideoGeometry, branch_frames
from .layers import RealisDanceLayers, RopeShifts

__all__ = ["RealisDanceConditioning", "build_realisdance_conditioning", "grey_video", "realisdance_scheduler",
           "reference_grid", "reference_positions", "resize_reference_image"]

SHIFT_F_SIZE = 81  # the reference's frame offset for shifted reference tokens (a fixed index, whatever the length)
DEFAULT_GUIDANCE = 2.0
DEFAULT_STEPS = 40
MASK_CHANNELS = 4
SPATIAL_STRIDE = 16  # pixels per DiT token side: 8 (VAE) x 2 (patch)
REFERENCE_BUDGET_FRAMES = 2  # default token budget: twice one video latent frame's tokens


# ---------------------------------------------------------------- geometry
def reference_positions(video_grid: tuple[int, int, int], ref_grid: tuple[int, int, int], shift_f: bool,
                        shift_h: bool, shift_w: bool, shift_f_size: int = SHIFT_F_SIZE,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """RoPE (frame, h, w) positions of the reference tokens: LongTensor ``[Fr*Hr*Wr, 3]``, frame-major.

    Grids are in DiT patches: the video's ``(F, H, W)`` and the reference's
    ``(Fr, Hr, Wr)``. Each axis starts at 0 (as the video's does) unless
    shifted: frames then start at ``shift_f_size`` (81 in the reference, a
    fixed index), rows at ``H`` (just below the video's last row), columns at
    ``W`` (just right of its last column) — ``ShiftedWanRotaryPosEmbed``.
    """
    frames, height, width = (int(v) for v in video_grid)
    offset = (shift_f_size if shift_f else 0, height if shift_h else 0, width if shift_w else 0)
    return shifted_grid_positions(*(int(v) for v in ref_grid), offset=offset, device=device)


def reference_grid(video_height: int, video_width: int, ref_height: int, ref_width: int,
                   multiple: int = SPATIAL_STRIDE) -> tuple[int, int]:
    """The reference's pixel size ``(h, w)``: the video's area at the reference's aspect, multiples of 16.

    The pipeline's ``process_shape(..., 'max_resolution')``: scale by
    ``sqrt(video area / reference area)`` and round each side to a multiple of
    ``multiple`` (Python's round: halves to even, as the reference).
    """
    for name, value in (("video height", video_height), ("video width", video_width),
                        ("reference height", ref_height), ("reference width", ref_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, f"{value!r} is not a positive whole number of pixels", "a size such as 768")
    ratio = ((video_height * video_width) / (ref_height * ref_width)) ** 0.5
    height = round(ref_height * ratio / multiple) * multiple
    width = round(ref_width * ratio / multiple) * multiple
    if height < multiple or width < multiple:
        raise InputError("reference image", f"is {ref_width}x{ref_height} pixels, too elongated to keep its aspect "
                         f"at the {video_width}x{video_height} video's area (a side would round to 0)",
                         "a reference image closer to the video's aspect ratio (crop it)")
    return height, width


def resize_reference_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A ComfyUI IMAGE ``[1, H, W, 3]`` resized to ``height x width`` as the reference does it.

    Bicubic, ``align_corners=False``, no antialiasing and no clamping (the
    reference resizes its -1..1 tensor; resizing is linear, so doing it on
    0..1 values gives the same image).
    """
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[-1] != 3 or not image.is_floating_point():
        raise InputError("reference image", f"has shape {list(image.shape)}", "one RGB IMAGE [1, height, width, 3]")
    pixels = image.permute(0, 3, 1, 2).float()
    resized = F.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1)


def grey_video(frames: int, height: int, width: int) -> torch.Tensor:
    """The "zero" video (or image, ``frames=1``) RealisDance encodes for ``y`` and the unconditional
    reference: mid-grey ComfyUI IMAGE frames ``[frames, height, width, 3]`` of 0.5 (0 in the VAE's -1..1)."""
    return torch.full((frames, height, width, 3), 0.5)


# ---------------------------------------------------------------- schedule
def realisdance_scheduler(steps: int = DEFAULT_STEPS, shift: float = 1.0) -> Scheduler:
    """The reference pipeline's scheduler: diffusers' ``FlowMatchEulerDiscreteScheduler(shift=shift)``
    (``euler_diffusers``, see sampling/sigmas.py). ``shift``: the ``shift`` of the release's
    ``scheduler/scheduler_config.json``; 1.0, that scheduler's default, when the file does not set it."""
    return make_scheduler("euler_diffusers", steps, shift)


# ---------------------------------------------------------------- conditioning
@dataclass
class RealisDanceConditioning:
    """RealisDance-DiT's conditioning for the sampler (:class:`~..base.MethodConditioning`).

    Latents are model space. Pose tokens (of the window being sampled) and the
    two reference-token sets are computed on the layers' device the first time
    a branch needs them and kept (``clear_cache`` frees them).
    """

    geometry: VideoGeometry
    layers: RealisDanceLayers
    shifts: RopeShifts
    context: torch.Tensor
    negative_context: torch.Tensor | None
    clip_fea: torch.Tensor | None
    negative_clip_fea: torch.Tensor | None
    y: torch.Tensor                            # [1, 20, T, h, w]: zero mask + VAE(zero video)
    pose_latents: torch.Tensor                 # [1, 32, T, h, w]
    ref_latent: torch.Tensor                   # [1, 16, Fr, hr, wr]
    zero_ref_latent: torch.Tensor | None       # VAE(zero image) at the reference's size
    pose_strength: float = 1.0
    token_dtype: torch.dtype = torch.float32
    _pose_tokens: torch.Tensor | None = field(default=None, repr=False)
    _pose_key: tuple[int, int] | None = field(default=None, repr=False)  # the window they are for (None: all)
    _ref_tokens: dict[bool, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def video_grid(self) -> tuple[int, int, int]:
        return self.layers.token_grid(self.pose_latents)

    @property
    def ref_grid(self) -> tuple[int, int, int]:
        return self.layers.token_grid(self.ref_latent)

    def positions(self) -> torch.Tensor:
        """The reference tokens' RoPE positions (the same for both branches and every window)."""
        s = self.shifts
        return reference_positions(self.video_grid, self.ref_grid, s.shift_f, s.shift_h, s.shift_w)

    def pose_tokens(self, window: Window | None = None) -> torch.Tensor:
        """Pose tokens times ``pose_strength``, ``[1, L, dim]``, for ``window`` (None: the whole video).

        A window's tokens are computed from its own latent frames (the layers are frame-local: the same
        tokens as the whole video's slice) and kept until another window asks, so the two branches of a step
        share them and memory holds one window's tokens, not the whole video's (the sampler's estimate counts
        one window)."""
        key = None if window is None else (window.start, window.end)
        if self._pose_tokens is None or self._pose_key != key:
            self._pose_tokens = None  # the previous window's tokens go before the next are made
            latents = self.pose_latents if window is None else slice_frames(
                self.pose_latents, window, dim=2, unit="latent", name="pose latents")
            tokens = self.layers.pose_tokens(latents, out_dtype=self.token_dtype)
            if self.pose_strength != 1.0:
                tokens.mul_(self.pose_strength)
            self._pose_tokens, self._pose_key = tokens, key
        return self._pose_tokens

    def reference_tokens(self, positive: bool) -> torch.Tensor:
        """``attn_conv_in`` of the reference (positive) or of VAE(zero image) (negative), ``[1, Lr, dim]``."""
        if positive not in self._ref_tokens:
            latent = self.ref_latent if positive else self.zero_ref_latent
            self._ref_tokens[positive] = self.layers.reference_tokens(latent)
        return self._ref_tokens[positive]

    def clear_cache(self) -> None:
        self._pose_tokens = None
        self._ref_tokens.clear()

    def branch(self, positive: bool, step: int, steps: int, window: Window | None = None) -> WanCond:
        """Positive: prompt, CLIP of the reference, reference tokens. Negative: empty prompt, CLIP of a
        zero image, tokens of VAE(zero image). Both: the pose tokens and the empty ``y``."""
        length = branch_frames(self.geometry, step, steps, window)
        if positive:
            context, clip_fea = self.context, self.clip_fea
        else:
            self._check_negative()
            context, clip_fea = self.negative_context, self.negative_clip_fea
        extra = ExtraTokens(self.reference_tokens(positive), self.positions())
        ext = DiTExtensions(added_tokens=[self.pose_tokens(window)], extra_tokens=[extra])
        return WanCond(context, clip_fea, self.y[:, :, :length], ext)

    def _check_negative(self) -> None:
        needs = "a CFG scale of 1, or"
        if self.negative_context is None:
            raise InputError("negative prompt", "is missing but guidance needs an unconditional branch",
                             f"{needs} the text embeddings of the empty prompt (RealisDance-DiT's negative)")
        if self.clip_fea is not None and self.negative_clip_fea is None:
            raise InputError("negative clip vision output", "is missing but guidance needs an unconditional branch",
                             f"{needs} the CLIP vision output of a mid-grey (zero) image")
        if self.zero_ref_latent is None:
            raise InputError("zero reference latent", "is missing but guidance needs an unconditional branch",
                             f"{needs} the VAE latent of a mid-grey image at the reference's size")


# ---------------------------------------------------------------- building
def build_realisdance_conditioning(layers: RealisDanceLayers, pose_latents: torch.Tensor | Sequence[torch.Tensor],
                                   ref_latent: torch.Tensor, context: torch.Tensor,
                                   negative_context: torch.Tensor | None, clip_fea: torch.Tensor | None,
                                   negative_clip_fea: torch.Tensor | None, zero_ref_latent: torch.Tensor | None,
                                   empty_latent: torch.Tensor, shifts: RopeShifts,
                                   pose_strength: float = 1.0, max_reference_tokens: int | None = None,
                                   token_dtype: torch.dtype = torch.float32) -> RealisDanceConditioning:
    """Check the inputs and build :class:`RealisDanceConditioning`. All latents are model space, batch 1.

    ``pose_latents``: the SMPL-CS and HaMeR render latents ``(smpl, hamer)``,
    each ``[1, 16, T, h, w]`` (concatenated here, SMPL first), or both already
    concatenated ``[1, 32, T, h, w]``; they set the video's size.
    ``ref_latent``: the reference image's latent ``[1, 16, 1, hr, wr]`` at
    :func:`reference_grid`'s size; ``zero_ref_latent``: VAE of a mid-grey image
    of that size (the unconditional reference). ``empty_latent``: VAE of a
    mid-grey video of the video's size ``[1, 16, >= T, h, w]`` (cut to ``T``),
    the latent half of ``y``. ``context`` / ``negative_context``: umT5
    embeddings of the prompt and of the empty prompt; ``clip_fea`` /
    ``negative_clip_fea``: CLIP ViT-H tokens of the reference and of a
    mid-grey image (None for both with a DiT without a CLIP branch).
    ``shifts``: the loaded model's RoPE switches (``RealisDanceModel.shifts``).
    ``max_reference_tokens``: a memory budget for the appended reference
    tokens (default: twice one video latent frame's tokens; a reference at the
    video's area has about one frame's worth).
    """
    if not isinstance(layers, RealisDanceLayers):
        raise InputError("RealisDance layers", f"are a {type(layers).__name__}",
                         "the add_conv_in / add_proj / attn_conv_in layers loaded with RealisDance-DiT")
    pose = _pose_latents(pose_latents, layers.pose_channels)
    _, _, frames, h, w = pose.shape
    geometry = VideoGeometry(frames=frames, height=h, width=w)
    ref = _latent("reference latent", ref_latent, layers.reference_channels)
    if zero_ref_latent is not None:
        zero_ref = _latent("zero reference latent", zero_ref_latent, layers.reference_channels)
        if zero_ref.shape != ref.shape:
            raise InputError("zero reference latent", f"has shape {list(zero_ref.shape)}",
                             f"the reference latent's shape {list(ref.shape)} (encode a mid-grey image of the "
                             "reference's size)")
    else:
        zero_ref = None
    _check_budget(ref, frames, h, w, max_reference_tokens)
    empty = _latent("empty video latent", empty_latent, LATENT_CHANNELS)
    if empty.shape[3:] != pose.shape[3:] or empty.shape[2] < frames:
        raise InputError("empty video latent", f"has shape {list(empty.shape)}",
                         f"the latent of a mid-grey video of the pose videos' size, [1, 16, >= {frames}, {h}, {w}]")
    for name, value in (("positive prompt", context), ("negative prompt", negative_context)):
        if value is not None and (not torch.is_tensor(value) or value.dim() != 3 or value.shape[0] != 1):
            raise InputError(name, f"has shape {list(getattr(value, 'shape', []))}",
                             "umT5 text embeddings [1, tokens, 4096]")
    for name, value in (("clip vision output", clip_fea), ("negative clip vision output", negative_clip_fea)):
        if value is not None and (not torch.is_tensor(value) or value.dim() != 3 or value.shape[0] != 1):
            raise InputError(name, f"has shape {list(getattr(value, 'shape', []))}",
                             "CLIP vision tokens [1, 257, 1280]")
    if isinstance(pose_strength, bool) or not isinstance(pose_strength, (int, float)) or not pose_strength >= 0.0:
        raise InputError("pose strength", f"{pose_strength!r} is not a number of 0 or more", "a strength such as 1.0")
    if not isinstance(shifts, RopeShifts):
        raise InputError("RoPE shifts", f"are a {type(shifts).__name__}", "a RopeShifts (shift_f, shift_h, shift_w)")
    mask = torch.zeros(1, MASK_CHANNELS, frames, h, w, dtype=torch.float32, device=empty.device)
    y = torch.cat([mask, empty[:, :, :frames].float()], dim=1)
    return RealisDanceConditioning(geometry=geometry, layers=layers, shifts=shifts, context=context,
                                   negative_context=negative_context, clip_fea=clip_fea,
                                   negative_clip_fea=negative_clip_fea, y=y, pose_latents=pose, ref_latent=ref,
                                   zero_ref_latent=zero_ref, pose_strength=float(pose_strength),
                                   token_dtype=token_dtype)


def _latent(name: str, latent: torch.Tensor, channels: int) -> torch.Tensor:
    """A ``[1, channels, T, h, w]`` latent whose h and w make whole DiT patches (16 px)."""
    if not torch.is_tensor(latent) or latent.dim() != 5 or latent.shape[0] != 1:
        raise InputError(name, f"has shape {list(getattr(latent, 'shape', []))}",
                         f"a video latent [1, {channels}, frames, height/8, width/8] (batch of one)")
    if latent.shape[1] != channels:
        raise InputError(name, f"has {latent.shape[1]} channels", f"the {channels}-channel Wan 2.1 VAE latent")
    h, w = latent.shape[3:]
    if h % 2 or w % 2:
        raise InputError(name, f"is {8 * w}x{8 * h} pixels ({w}x{h} latent pixels)",
                         f"a width and height that are multiples of {SPATIAL_STRIDE} pixels "
                         f"(e.g. {8 * (w - w % 2) or 16}x{8 * (h - h % 2) or 16})")
    return latent


def _pose_latents(pose_latents, channels: int) -> torch.Tensor:
    """The pose latents as one ``[1, channels, T, h, w]`` tensor; their parts must agree in length and size."""
    if torch.is_tensor(pose_latents):
        return _latent("pose latents", pose_latents, channels)
    parts = list(pose_latents) if isinstance(pose_latents, (list, tuple)) else None
    if not parts:
        raise InputError("pose latents", f"are a {type(pose_latents).__name__}",
                         "the SMPL-CS and HaMeR render latents (smpl, hamer), each [1, 16, frames, h, w]")
    names = ["SMPL-CS latent", "HaMeR latent"] if len(parts) == 2 else [f"pose latent {i}" for i in range(len(parts))]
    checked = [_latent(n, p, p.shape[1] if torch.is_tensor(p) and p.dim() == 5 else LATENT_CHANNELS)
               for n, p in zip(names, parts)]
    first = checked[0]
    for name, part in zip(names[1:], checked[1:]):
        if part.shape[2] != first.shape[2]:
            raise InputError(name, f"has {part.shape[2]} latent frames, the {names[0]} {first.shape[2]}",
                             "pose renders of the same length (one per video frame)")
        if part.shape[3:] != first.shape[3:]:
            raise InputError(name, f"is {8 * part.shape[4]}x{8 * part.shape[3]} pixels, the {names[0]} "
                             f"{8 * first.shape[4]}x{8 * first.shape[3]}", "pose renders of the same size")
    pose = torch.cat([p.float() for p in checked], dim=1)
    if pose.shape[1] != channels:
        raise InputError("pose latents", f"have {pose.shape[1]} channels in all "
                         f"({' + '.join(str(p.shape[1]) for p in checked)})",
                         f"{channels} channels: the SMPL-CS and the HaMeR render latents, 16 each")
    return pose


def _check_budget(ref: torch.Tensor, frames: int, h: int, w: int, budget: int | None) -> None:
    frame_tokens = (h // 2) * (w // 2)
    if budget is None:
        budget = REFERENCE_BUDGET_FRAMES * frame_tokens
    elif isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InputError("max reference tokens", f"{budget!r} is not a positive whole number", "a number of tokens")
    fr, hr, wr = ref.shape[2], ref.shape[3] // 2, ref.shape[4] // 2
    tokens = fr * hr * wr
    if tokens > budget:
        fit_h, fit_w = reference_grid(8 * h, 8 * w, 8 * ref.shape[3], 8 * ref.shape[4])
        raise InputError("reference latent", f"is {8 * ref.shape[4]}x{8 * ref.shape[3]} pixels ({tokens} tokens), "
                         f"over the budget of {budget} reference tokens for this {8 * w}x{8 * h} video",
                         f"a reference resized to {fit_w}x{fit_h} pixels (the video's area at the reference's "
                         f"aspect, {fr * (fit_h // 16) * (fit_w // 16)} tokens), or a larger max reference tokens")
