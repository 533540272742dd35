"""Wan2.2-Animate over a whole video: clips of 77 frames chained through their decoded frames.

The loop of ``wan/animate.py`` in core terms: each clip's image condition is
built from the previous clip's last ``refert_num`` decoded frames, so a clip
is sampled *and decoded* before the next starts (the VAE is passed in as two
callables). Memory is one clip's, whatever the video's length; the joined
frames are cut back to the input's length.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from ..sampling.schedulers import Scheduler
from ..sampling.video import sample_video
from .wan_animate_plan import ANIMATE_CLIP_LEN, assemble_clips, plan_clips
from .wan_animate import build_animate_conditioning
from .wan_animate_clips import AnimateClips, build_clip_y, drop_reference_frame
from .wan_animate_modules import AnimateModules

log = logging.getLogger(__name__)

Encode = Callable[[torch.Tensor], torch.Tensor]
"""IMAGE frames ``[T, H, W, 3]`` in 0..1 -> model-space latent ``[1, 16, 1 + (T-1)//4, H/8, W/8]``."""
Decode = Callable[[torch.Tensor], torch.Tensor]
"""Model-space latent -> IMAGE frames ``[4(t-1)+1, H, W, 3]`` in 0..1 on the CPU."""


def animate_video(model, modules: AnimateModules, encode: Encode, decode: Decode, reference_image: torch.Tensor,
                  pose_frames: torch.Tensor, context: torch.Tensor, negative_context: torch.Tensor | None,
                  clip_fea: torch.Tensor | None, scheduler: Scheduler, cfg_scale: float, seed: int, *,
                  face_frames: torch.Tensor | None = None, background: torch.Tensor | None = None,
                  person_mask: torch.Tensor | None = None, refert_num: int = 1, clip_len: int = ANIMATE_CLIP_LEN,
                  pose_strength: float = 1.0, face_strength: float = 1.0,
                  progress: Callable[[int, int], None] | None = None,
                  check_interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """The animated video, IMAGE ``[N, H, W, 3]`` for ``N`` pose frames.

    Animation mode without ``background``; replacement mode with
    ``background`` and ``person_mask`` (1 on the person to replace). Clip
    ``i`` draws its noise from ``seed + i``. ``progress(done, total)`` counts
    steps over all clips.
    """
    plan = plan_clips(int(pose_frames.shape[0]), clip_len, refert_num)
    if plan.notice:
        log.info(plan.notice)
    clips = AnimateClips(plan, pose_frames, face_frames, background, person_mask)
    height, width = pose_frames.shape[1:3]
    reference = reference_image[..., :3].reshape(-1, *reference_image.shape[-3:-1], 3)[:1]
    if tuple(reference.shape[1:3]) != (height, width):
        raise ValueError(f"reference image {tuple(reference.shape[1:3])} differs from the video {(height, width)}")
    reference_latent = encode(reference)
    total_steps = scheduler.steps * len(plan)
    outputs: list[torch.Tensor] = []
    refert = None
    for inputs in clips:
        y = build_clip_y(encode, reference_latent, inputs, refert)
        cond = build_animate_conditioning(modules, y, encode(inputs.pose_frames), inputs.face_frames, context,
                                          negative_context, clip_fea, pose_strength, face_strength)
        done_before = inputs.clip.index * scheduler.steps
        clip_progress = None if progress is None else (lambda done, _total: progress(done_before + done,
                                                                                       total_steps))
        try:
            latent = sample_video(model, cond, scheduler, cfg_scale, seed + inputs.clip.index,
                                  progress=clip_progress, check_interrupt=check_interrupt)
        finally:
            cond.clear_cache()
        frames = decode(drop_reference_frame(latent))
        log.info("Wan2.2-Animate clip %d/%d: frames %d-%d", inputs.clip.index + 1, len(plan), inputs.clip.start,
                 inputs.clip.end - 1)
        outputs.append(frames)
        refert = frames[-plan.refert_num:] if plan.refert_num else None
    return assemble_clips(outputs, plan)
