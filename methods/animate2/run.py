"""Animate-2 over a whole video: chunks of 81 frames chained through their last decoded frame.

The official pipeline's loop (``inference_core``): the driving video is padded by ping-pong to whole chunks
advancing by ``chunk_len - 1``; chunk ``i`` after the first starts on the previous chunk's last decoded frame
(its ``y`` marks it known, as ComfyUI's ``continue_motion``), and drops it from its output. That is the
plan and image condition of Wan2.2-Animate with one temporal reference frame, so both come from
:mod:`..wan_animate.plan` and :mod:`..wan_animate.clips`. :func:`chunk_offsets` gives the same chunks in the
terms of ComfyUI's chained ``WanAnimate2ToVideo`` nodes (``video_frame_offset``, ``trim_image``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from ...sampling.schedulers import Scheduler
from ...sampling.video import sample_video
from ..wan_animate.clips import AnimateClips, build_clip_y, drop_reference_frame
from ..wan_animate.plan import ClipPlan, assemble_clips, plan_clips
from .conditioning import PoseWindow, build_animate2_conditioning
from .pose_cache import PoseBranchCache

__all__ = ["ANIMATE2_CHUNK_LEN", "CONTINUE_FRAMES", "ChunkOffsets", "animate2_video", "chunk_offsets", "plan_chunks"]

log = logging.getLogger(__name__)

ANIMATE2_CHUNK_LEN = 81  # the official clip_len
CONTINUE_FRAMES = 1      # the official first_num; ComfyUI's CONTINUE_MOTION_FRAMES

Encode = Callable[[torch.Tensor], torch.Tensor]
Decode = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ChunkOffsets:
    """One chunk in ComfyUI's chained-node terms: the ``video_frame_offset`` it is given, the frames of the
    driving video it reads, the ``continue_motion`` frames, ``trim_image`` and the offset it hands on."""

    offset_in: int
    read_start: int
    read_end: int      # exclusive, before padding
    continue_motion: int
    trim_image: int
    offset_out: int


def plan_chunks(total: int, chunk_len: int = ANIMATE2_CHUNK_LEN) -> ClipPlan:
    """The chunks over ``total`` frames (the official loop: advance ``chunk_len - 1``, ping-pong padding)."""
    return plan_clips(total, chunk_len, CONTINUE_FRAMES)


def chunk_offsets(total: int, chunk_len: int = ANIMATE2_CHUNK_LEN) -> list[ChunkOffsets]:
    """:func:`plan_chunks` as the numbers ComfyUI's chained nodes compute (offset in = the previous offset
    out; the node seeks ``offset - continue`` frames in, reads ``chunk_len`` frames and hands on that plus
    ``chunk_len``)."""
    out, offset = [], 0
    for clip in plan_chunks(total, chunk_len):
        start = max(0, offset - clip.reference)
        assert start == clip.start
        out.append(ChunkOffsets(offset, start, min(total, start + chunk_len), clip.reference,
                                max(0, 4 * ((clip.reference - 1) // 4 + 1) - 3) if clip.reference else 0,
                                start + chunk_len))
        offset = start + chunk_len
    return out


def animate2_video(model, encode: Encode, decode: Decode, reference_image: torch.Tensor, pose_frames: torch.Tensor,
                   context: torch.Tensor, negative_context: torch.Tensor | None, clip_fea: torch.Tensor | None,
                   scheduler: Scheduler, cfg_scale: float, seed: int, *, pose_context: torch.Tensor | None = None,
                   pose_clip_fea: torch.Tensor | None = None, chunk_len: int = ANIMATE2_CHUNK_LEN,
                   pose_strength: float = 1.0, reference_strength: float = 1.0, window: PoseWindow | None = None,
                   cache_storage: str | None = "float32", cache_device: torch.device | str = "cpu",
                   frame1_log_scale: float = 0.0,
                   progress: Callable[[int, int], None] | None = None,
                   check_interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """The animated video, IMAGE ``[N, H, W, 3]`` for ``N`` driving frames (the reference at their size).

    Chunk ``i`` draws its noise from ``seed + i``; ``cache_storage`` None runs the pose branch every step.
    """
    plan = plan_chunks(int(pose_frames.shape[0]), chunk_len)
    if plan.notice:
        log.info(plan.notice)
    clips = AnimateClips(plan, pose_frames)
    reference_latent = encode(reference_image[..., :3][:1])
    total_steps = scheduler.steps * len(plan)
    outputs: list[torch.Tensor] = []
    refert = None
    for inputs in clips:
        y = build_clip_y(encode, reference_latent, inputs, refert)
        cache = None if cache_storage is None else PoseBranchCache(cache_storage, cache_device)
        cond = build_animate2_conditioning(model, y, encode(inputs.pose_frames), context, negative_context, clip_fea,
                                           pose_context, pose_clip_fea, pose_strength, reference_strength, window,
                                           cache, frame1_log_scale)
        done_before = inputs.clip.index * scheduler.steps
        step_progress = None if progress is None else (lambda done, _steps, before=done_before:
                                                       progress(before + done, total_steps))
        try:
            latent = sample_video(model, cond, scheduler, cfg_scale, seed + inputs.clip.index,
                                  progress=step_progress, check_interrupt=check_interrupt)
        finally:
            cond.clear_cache()
        frames = decode(drop_reference_frame(latent))
        log.info("Animate-2 chunk %d/%d: frames %d-%d", inputs.clip.index + 1, len(plan), inputs.clip.start,
                 inputs.clip.end - 1)
        outputs.append(frames)
        refert = frames[-plan.refert_num:]
    return assemble_clips(outputs, plan)
