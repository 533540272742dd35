"""Wan2.2-Animate: one clip's conditioning for the sampler.

What the method is (``wan/animate.py``, ``wan/modules/animate/``):

* the DiT is the Wan 2.1-layout I2V 14B with CLIP, plus its own modules
  (:mod:`.modules`), loaded from one checkpoint;
* the latent has one frame more than the clip: frame 0 is the reference
  image, and ``y`` (:mod:`.clips`) holds its latent there, then the
  clip's condition (previous frames, background, mask);
* pose: the VAE latent of the rendered pose video (``[1, 16, F - 1, h, w]``)
  through ``pose_patch_embedding`` is *added* to the patch-embedded tokens of
  every latent frame but the reference (``DiTExtensions.added_tokens``, zeros
  on frame 0);
* face: the motion encoder turns each 512x512 face crop into a 512-d vector,
  the face encoder turns the clip's vectors into 5 tokens per latent frame
  (a zero frame for the reference), and after DiT blocks 0, 5, ..., 35 a face
  block adds each frame's attention to its tokens (``block_adapters``);
* CLIP of the reference image; defaults 20 steps, shift 5, guidance 1.0. With
  guidance, the negative branch has the negative prompt and a blank face video
  (all -1), with the same pose and ``y``. The decoded clip drops the
  reference latent frame (:func:`~.clips.drop_reference_frame`).

Long videos are clips chained by the caller (see :mod:`.clips`),
not context windows: :meth:`AnimateConditioning.branch` refuses a window.

Precision: the reference runs under bf16 autocast with bf16 weights; here the
Animate modules compute in their compute dtype (float32 in the parity tests),
the motion basis ``Q`` stays float32 (the reference rounds it to bf16), the
pose and face tokens are kept in ``token_dtype`` (default: the modules'
compute dtype), and the residual add is float32, as everywhere in the DiT.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ... import host
from ...errors import InputError
from ...models.wan.dit import AdapterContext, BlockAdapter, DiTExtensions
from ...models.wan.latent_space import LATENT_CHANNELS, pixel_frames
from ...sampling.wan_denoiser import WanCond
from ...sampling.windows import Window
from ...sampling.conditioning import VideoGeometry
from .face import FaceBlock, face_frames_after
from .modules import AnimateModules

__all__ = ["AnimateConditioning", "build_animate_conditioning", "encode_faces", "face_adapter"]

log = logging.getLogger(__name__)

MOTION_BATCH = 8  # face crops through the motion encoder at a time, as the reference does
Y_CHANNELS = 4 + LATENT_CHANNELS
DEFAULT_STEPS, DEFAULT_SHIFT, DEFAULT_GUIDANCE = 20, 5.0, 1.0  # wan/configs/wan_animate_14B.py
DEFAULT_SOLVER = "unipc"  # generate.py's default (WanAnimate.generate's own is dpm++)


@dataclass
class AnimateConditioning:
    """One clip's Wan2.2-Animate conditioning (:class:`~..base.MethodConditioning`).

    ``geometry.frames`` counts the reference latent frame. ``face_frames``
    (CPU, ``[T, S, S, 3]`` in 0..1, ``T`` the clip's pixel frames) None means
    a blank face video. Tokens are computed on the modules' device the first
    time a branch needs them and kept (``clear_cache`` frees them).
    """

    geometry: VideoGeometry
    modules: AnimateModules
    context: torch.Tensor
    negative_context: torch.Tensor | None
    clip_fea: torch.Tensor | None
    y: torch.Tensor
    pose_latent: torch.Tensor
    face_frames: torch.Tensor | None
    pose_strength: float = 1.0
    face_strength: float = 1.0
    token_dtype: torch.dtype | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ tokens
    @property
    def pixel_frames(self) -> int:
        return pixel_frames(self.geometry.frames - 1)  # the reference latent frame is not a video frame

    def pose_tokens(self) -> torch.Tensor:
        """The pose embedding on every latent frame but the reference, ``[1, n_video, dim]``."""
        key = ("pose", self.pose_strength)
        if key not in self._cache:
            modules, cdt = self.modules, self.modules.compute_dtype
            with torch.no_grad():
                embedded = modules.pose_patch_embedding(self.pose_latent.to(modules.device, cdt)).float()
            zero = embedded.new_zeros(*embedded.shape[:2], 1, *embedded.shape[3:])
            tokens = torch.cat([zero, embedded], dim=2).flatten(2).transpose(1, 2)
            if self.pose_strength != 1.0:
                tokens = tokens * self.pose_strength
            self._cache[key] = tokens.to(self.token_dtype or cdt)
        return self._cache[key]

    def face_tokens(self, positive: bool = True) -> torch.Tensor:
        """Face tokens per latent frame, the reference frame's zero, ``[1, F, 5, dim]``; blank faces when
        ``positive`` is False (the negative branch) or no face frames were given."""
        key = "face" if positive and self.face_frames is not None else "blank"
        if key not in self._cache:
            faces = self.face_frames if key == "face" else None
            self._cache[key] = encode_faces(self.modules, faces, self.pixel_frames).to(
                self.token_dtype or self.modules.compute_dtype)
        return self._cache[key]

    def clear_cache(self) -> None:
        self._cache.clear()

    def adapters(self, face_tokens: torch.Tensor) -> dict[int, list[BlockAdapter]]:
        blocks = self.modules.face_adapter.fuser_blocks
        return {index: [face_adapter(block, face_tokens, self.face_strength)]
                for index, block in zip(self.modules.config.adapter_blocks, blocks)}

    # ------------------------------------------------------------------ branches
    def branch(self, positive: bool, step: int, steps: int, window: Window | None = None) -> WanCond:
        """Positive: the prompt, ``y``, pose tokens and face blocks on the face video. Negative: the
        negative prompt, the same ``y`` and pose, face blocks on a blank face video."""
        if steps < 1 or not 0 <= step < steps:
            raise ValueError(f"step {step} is outside 0..{steps - 1}")
        if window is not None and (window.start, window.end) != (0, self.geometry.frames):
            raise InputError("context windows", "cannot run Wan2.2-Animate: its first latent frame is the "
                             "reference image and long videos are chained clips", "no context windows (split a "
                             "long video into clips of 77 frames instead)")
        context = self.context
        if not positive:
            if self.negative_context is None:
                raise InputError("negative prompt", "is missing but guidance needs a negative branch",
                                 "a negative text conditioning, or a guidance scale of 1")
            context = self.negative_context
        ext = DiTExtensions(added_tokens=[self.pose_tokens()] if self.pose_strength else [],
                            block_adapters=self.adapters(self.face_tokens(positive)) if self.face_strength else {})
        return WanCond(context, self.clip_fea, self.y, ext)


def face_adapter(block: FaceBlock, tokens: torch.Tensor, strength: float = 1.0) -> BlockAdapter:
    """A block adapter adding ``block``'s attention to ``tokens`` (``[1 or B, F, 5, dim]``) to the video tokens.

    Works on a slice of the sequence (``ctx.start``, sequence parallelism): the slice's video tokens
    are padded out to whole latent frames, so each token still meets its own frame's face tokens,
    and the padding's rows are dropped (the block is per query token, so they change nothing).
    """

    def run(x: torch.Tensor, ctx: AdapterContext) -> torch.Tensor:
        frames = ctx.grid[0]
        if tokens.shape[1] != frames:
            raise ValueError(f"face tokens cover {tokens.shape[1]} latent frames, the latent has {frames}")
        lo, hi = ctx.start, min(ctx.start + x.shape[1], ctx.n_video)
        if hi <= lo:
            return x  # a slice of extra tokens only
        per_frame = ctx.n_video // frames
        first, last = lo // per_frame, -(-hi // per_frame)
        before, after = lo - first * per_frame, last * per_frame - hi
        video = x[:, :hi - lo]
        if before or after:
            video = F.pad(video, (0, 0, before, after))
        face = tokens[:, first:last].to(x.device).expand(x.shape[0], -1, -1, -1)
        update = block(video, face, ctx.compute_dtype)[:, before:before + hi - lo]
        if strength != 1.0:
            update = update * strength
        if hi - lo == x.shape[1]:
            return x + update
        return torch.cat([x[:, :hi - lo] + update, x[:, hi - lo:]], dim=1)

    run.sequence_sharded = True  # type: ignore[attr-defined]  # see parallel/sequence.py
    return run


@torch.no_grad()
def encode_faces(modules: AnimateModules, face_frames: torch.Tensor | None, frames: int) -> torch.Tensor:
    """Face tokens ``[1, latent frames + 1, 5, dim]`` (float32) of ``frames`` face crops
    (``[frames, S, S, 3]`` in 0..1; None: blank, -1 throughout), the first frame zero."""
    size = modules.config.motion.size
    cdt, device = modules.compute_dtype, modules.device
    vectors = []
    check = host.interrupt_check()
    for start in range(0, frames, MOTION_BATCH):
        check()
        stop = min(frames, start + MOTION_BATCH)
        if face_frames is None:
            batch = torch.full((stop - start, 3, size, size), -1.0, device=device, dtype=cdt)
        else:
            batch = face_frames[start:stop].to(device=device, dtype=torch.float32).permute(0, 3, 1, 2) * 2.0 - 1.0
            if tuple(batch.shape[2:]) != (size, size):
                batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            batch = batch.to(cdt)
        vectors.append(modules.motion_encoder(batch))
    motion = torch.cat(vectors)[None]  # [1, frames, 512]
    tokens = modules.face_encoder(motion, cdt)
    return torch.cat([tokens.new_zeros(1, 1, *tokens.shape[2:]), tokens], dim=1)


# ---------------------------------------------------------------- building
def build_animate_conditioning(modules: AnimateModules, y: torch.Tensor, pose_latent: torch.Tensor,
                               face_frames: torch.Tensor | None, context: torch.Tensor,
                               negative_context: torch.Tensor | None = None, clip_fea: torch.Tensor | None = None,
                               pose_strength: float = 1.0, face_strength: float = 1.0,
                               token_dtype: torch.dtype | None = None) -> AnimateConditioning:
    """Check one clip's inputs and build its :class:`AnimateConditioning`.

    ``y``: ``[1, 20, F, h, w]`` from :func:`~.clips.build_clip_y`
    (F = the clip's latent frames + 1); ``pose_latent``: the model-space VAE
    latent of the clip's rendered poses, ``[1, 16, F - 1, h, w]``;
    ``face_frames``: the clip's face crops ``[4 (F - 2) + 1, S, S, 3]`` in 0..1
    (resized to the motion encoder's 512 when S differs), or None for a blank
    face video; ``context`` / ``negative_context``: umT5 embeddings
    ``[1, Lt, 4096]``; ``clip_fea``: CLIP ViT-H tokens of the reference image.
    """
    if not isinstance(modules, AnimateModules):
        raise InputError("Animate modules", f"are a {type(modules).__name__}",
                         "the modules loaded with the Wan2.2-Animate diffusion model")
    if not torch.is_tensor(y) or y.dim() != 5 or y.shape[0] != 1 or y.shape[1] != Y_CHANNELS or y.shape[2] < 2:
        raise InputError("image condition (y)", f"has shape {list(getattr(y, 'shape', []))}",
                         f"[1, {Y_CHANNELS}, frames + 1, h, w] (reference frame, then the clip)")
    frames, h, w = y.shape[2:]
    if h % 2 or w % 2:
        raise InputError("image condition (y)", f"is {w}x{h} latent pixels",
                         "an even latent size (a video whose sides are multiples of 16 pixels)")
    expected = (1, LATENT_CHANNELS, frames - 1, h, w)
    if not torch.is_tensor(pose_latent) or tuple(pose_latent.shape) != expected:
        raise InputError("pose latent", f"has shape {list(getattr(pose_latent, 'shape', []))}",
                         f"{list(expected)}: the VAE latent of the clip's rendered poses, one frame fewer than y")
    video_frames = pixel_frames(frames - 1)
    if face_frames is not None:
        if not torch.is_tensor(face_frames) or face_frames.dim() != 4 or face_frames.shape[-1] != 3:
            raise InputError("face frames", f"have shape {list(getattr(face_frames, 'shape', []))}",
                             "face crops [frames, 512, 512, 3], floats in 0..1")
        if face_frames.shape[0] != video_frames or face_frames_after(video_frames) != frames - 1:
            raise InputError("face frames", f"are {face_frames.shape[0]} crops for a clip of {video_frames} frames",
                             "one face crop per frame of the clip")
        face_frames = face_frames.detach().to("cpu")
    for name, value in (("positive prompt", context), ("negative prompt", negative_context)):
        if value is not None and (not torch.is_tensor(value) or value.dim() != 3 or value.shape[0] != 1):
            raise InputError(name, f"has shape {list(getattr(value, 'shape', []))}",
                             "umT5 text embeddings [1, tokens, 4096]")
    for name, value in (("pose strength", pose_strength), ("face strength", face_strength)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0.0:
            raise InputError(name, f"{value!r} is not a number of 0 or more", "a strength such as 1.0")
    return AnimateConditioning(VideoGeometry(frames=frames, height=h, width=w), modules, context, negative_context,
                               clip_fea, y.float(), pose_latent.float(), face_frames, float(pose_strength),
                               float(face_strength), token_dtype)
