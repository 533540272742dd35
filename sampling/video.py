"""Sample a whole video for any method: noise, guidance, windows, the loop.

The one entry point every method's sampler node calls. A method hands over a
:class:`~..methods.base.MethodConditioning`; this module asks it for the
positive and negative branch at each step (and for each window when the video
is longer than one window), runs the Wan DiT through the sampling loop, and
returns the clean latent in model space. Nothing here knows which method runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .. import host
from ..methods.base import MethodConditioning
from .guidance import Guidance
from .loop import ProgressFn, StepCallback, make_noise, sample
from .schedulers import Scheduler
from .wan_denoiser import WanCond, WanDenoiser
from .windows import (UNIANIMATE_OVERLAP, UNIANIMATE_WINDOW, Window, add_private_frames, plan_windows,
                      real_frames, windowed_denoiser)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSettings:
    """Overlapping windows of latent frames (see sampling/windows.py); defaults are UniAnimate-DiT's."""

    length: int = UNIANIMATE_WINDOW
    overlap: int = UNIANIMATE_OVERLAP
    weighting: str = "unianimate"


@dataclass(frozen=True)
class Branch:
    """One guidance branch of a method's conditioning, resolved lazily per step and window."""

    conditioning: MethodConditioning
    positive: bool
    steps: int
    step: int = 0

    def at_step(self, step: int) -> "Branch":
        return replace(self, step=step)

    def resolve(self, window: Window | None = None) -> WanCond:
        return self.conditioning.branch(self.positive, self.step, self.steps, window)


def sample_video(model, conditioning: MethodConditioning, scheduler: Scheduler, cfg_scale: float, seed: int,
                 windows: WindowSettings | None = None, *, progress: ProgressFn | None = None,
                 callback: StepCallback | None = None,
                 check_interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """The clean latent ``[1, 16, T, h, w]`` (model space, float32) for ``conditioning``.

    Noise is drawn on the CPU from ``seed`` (same seed, same video on every
    device). With ``windows`` and a video longer than one window, every step
    is made window by window and blended; otherwise the whole video is one
    pass. ``check_interrupt`` (default: the host's) runs before every step,
    window and DiT block, so an interrupt stops within one block.
    """
    check_interrupt = check_interrupt if check_interrupt is not None else host.check_interrupt
    geometry = conditioning.geometry
    denoiser = WanDenoiser(model, on_block=lambda _index: check_interrupt())
    positive = Branch(conditioning, True, scheduler.steps)
    negative = Branch(conditioning, False, scheduler.steps) if cfg_scale != 1.0 else None
    guidance = Guidance(positive, negative, cfg_scale)
    noise = make_noise(geometry.latent_shape, seed)

    if windows is None or geometry.frames <= windows.length:
        def run(x: torch.Tensor, timestep: torch.Tensor, branch: Branch) -> torch.Tensor:
            return denoiser(x, timestep, branch.resolve(None))
        return sample(run, noise, scheduler, guidance, progress=progress, check_interrupt=check_interrupt,
                      callback=callback)

    plan = plan_windows(geometry.frames, windows.length, windows.overlap)
    if plan.notice:
        log.info(plan.notice)
    generator = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    state = add_private_frames(noise, plan, windows.weighting, generator=generator)
    run_windows = windowed_denoiser(denoiser, plan, windows.weighting,
                                    cut_condition=lambda branch, window: branch.resolve(window),
                                    check_interrupt=check_interrupt)
    out = sample(run_windows, state, scheduler, guidance, progress=progress, check_interrupt=check_interrupt,
                 callback=None if callback is None else (lambda i, x, x0: callback(i, real_frames(x, plan),
                                                                                   real_frames(x0, plan))))
    return real_frames(out, plan)
