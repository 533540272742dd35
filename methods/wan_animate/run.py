"""Wan2.2-Animate over a whole video: clips of 77 frames chained through their decoded frames.

The loop of ``wan/animate.py`` in core terms: each clip's image condition is
built from the previous clip's last ``refert_num`` decoded frames, so a clip
is sampled *and decoded* before the next starts (the VAE is passed in as two
callables). Memory is one clip's, whatever the video's length; the joined
frames are cut back to the input's length.

:func:`animate` runs an :class:`~.request.AnimateRequest` (what the node
builds); :func:`animate_video` is the loop over already prepared frames.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from ...sampling.schedulers import Scheduler
from ...sampling.step_cache import StepCache
from ...sampling.video import sample_video
from .plan import ANIMATE_CLIP_LEN, assemble_clips, plan_clips
from .conditioning import build_animate_conditioning
from .clips import AnimateClips, build_clip_y, drop_reference_frame
from .modules import AnimateModules
from .request import AnimateInputs, AnimateRequest, prepare_inputs

__all__ = ["ClipProgressFn", "Decode", "Encode", "animate", "animate_video", "clip_progress_text"]

log = logging.getLogger(__name__)

Encode = Callable[[torch.Tensor], torch.Tensor]
"""IMAGE frames ``[T, H, W, 3]`` in 0..1 -> model-space latent ``[1, 16, 1 + (T-1)//4, H/8, W/8]``."""
Decode = Callable[[torch.Tensor], torch.Tensor]
"""Model-space latent -> IMAGE frames ``[4(t-1)+1, H, W, 3]`` in 0..1 on the CPU."""
ClipProgressFn = Callable[[int, int, int, int], None]
"""``(step, steps, clip, clips)``, all counted from 1: called after each step of each clip, so
``steps * clips`` calls in all (a host bar of :meth:`~.request.AnimateRequest.total_steps` advances by one
per call)."""


def renoise_seed(seed: int, clip: int, clips: int) -> int:
    """The ``noise_seed`` of clip ``clip`` of ``clips``: the lcm samplers re-noise from ``noise_seed + 1``
    (ComfyUI's convention), which with ``noise_seed = seed + clip`` would be the next clip's starting noise
    (clip i draws it from ``seed + i``), so the two would be the same draw. Shifted by ``clips - 1``, every
    re-noise stream starts past the last clip's seed; one clip keeps ComfyUI's ``seed + 1``."""
    return seed + clips - 1 + clip


def clip_progress_text(step: int, steps: int, clip: int, clips: int) -> str:
    """``"clip 2/3, step 12/20"`` (``"step 12/20"`` for one clip), for a node's progress text."""
    text = f"step {step}/{steps}"
    return text if clips <= 1 else f"clip {clip}/{clips}, {text}"


def animate(model, modules: AnimateModules, encode: Encode, decode: Decode, request: AnimateRequest | AnimateInputs,
            *, clip_progress: ClipProgressFn | None = None,
            check_interrupt: Callable[[], None] | None = None, cache: StepCache | None = None) -> torch.Tensor:
    """The animated video for ``request``, IMAGE ``[N, H, W, 3]`` for ``N`` pose frames.

    The mode logic (reference fitting, face policy, replacement checks and
    background masking) is :func:`~.request.prepare_inputs`; pass
    ``request.prepare()`` instead of the request to run it before loading the
    model. ``cache``: a step cache, reset for every clip (no residual crosses clips). The scheduler is
    ``request.scheduler`` over ``request.steps`` (or
    ``request.step_list`` for ``lightx2v_distill``) with ``request.shift``.
    """
    inputs = request if isinstance(request, AnimateInputs) else prepare_inputs(request)
    request = inputs.request
    scheduler = request.make_scheduler()
    return animate_video(model, modules, encode, decode, inputs.reference, inputs.pose_frames, request.context,
                         request.negative_context, request.clip_fea, scheduler, request.cfg, request.seed,
                         face_frames=inputs.face_frames, background=inputs.background,
                         person_mask=inputs.person_mask, refert_num=request.refert_num,
                         clip_len=request.clip_frames, pose_strength=request.pose_strength,
                         face_strength=request.face_strength, clip_progress=clip_progress,
                         check_interrupt=check_interrupt, cache=cache)


def animate_video(model, modules: AnimateModules, encode: Encode, decode: Decode, reference_image: torch.Tensor,
                  pose_frames: torch.Tensor, context: torch.Tensor, negative_context: torch.Tensor | None,
                  clip_fea: torch.Tensor | None, scheduler: Scheduler, cfg_scale: float, seed: int, *,
                  face_frames: torch.Tensor | None = None, background: torch.Tensor | None = None,
                  person_mask: torch.Tensor | None = None, refert_num: int = 1, clip_len: int = ANIMATE_CLIP_LEN,
                  pose_strength: float = 1.0, face_strength: float = 1.0,
                  progress: Callable[[int, int], None] | None = None,
                  clip_progress: ClipProgressFn | None = None,
                  check_interrupt: Callable[[], None] | None = None, cache: StepCache | None = None) -> torch.Tensor:
    """The animated video, IMAGE ``[N, H, W, 3]`` for ``N`` pose frames.

    Animation mode without ``background``; replacement mode with
    ``background`` and ``person_mask`` (1 on the person to replace). Clip
    ``i`` draws its noise from ``seed + i``. ``progress(done, total)`` counts
    steps over all clips; ``clip_progress(step, steps, clip, clips)`` is
    called after each step of each clip (:data:`ClipProgressFn`).
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
        step_progress = _step_progress(progress, clip_progress, done_before, total_steps, inputs.clip.index + 1,
                                       len(plan))
        try:
            latent = sample_video(model, cond, scheduler, cfg_scale, seed + inputs.clip.index,
                                  progress=step_progress, check_interrupt=check_interrupt,
                                  cache=cache,  # reset per clip: no residual crosses a clip
                                  noise_seed=renoise_seed(seed, inputs.clip.index, len(plan)))
        finally:
            cond.clear_cache()
        frames = decode(drop_reference_frame(latent))
        log.info("Wan2.2-Animate clip %d/%d: frames %d-%d", inputs.clip.index + 1, len(plan), inputs.clip.start,
                 inputs.clip.end - 1)
        outputs.append(frames)
        refert = frames[-plan.refert_num:] if plan.refert_num else None
    return assemble_clips(outputs, plan)


def _step_progress(progress: Callable[[int, int], None] | None, clip_progress: ClipProgressFn | None,
                   done_before: int, total_steps: int, clip: int, clips: int) -> Callable[[int, int], None] | None:
    """One clip's ``(done, steps)`` step callback for the sampler, feeding both callbacks (None: neither given)."""
    if progress is None and clip_progress is None:
        return None

    def step_progress(done: int, steps: int) -> None:
        if progress is not None:
            progress(done_before + done, total_steps)
        if clip_progress is not None:
            clip_progress(done, steps, clip, clips)
    return step_progress
