"""Sample a whole video for any method: noise, guidance, windows, the loop.

The one entry point every method's sampler node calls. A method hands over a
:class:`~.conditioning.MethodConditioning`; this module asks it for the
positive and negative branch at each step (and for each window when the video
is longer than one window), runs the Wan DiT through the sampling loop, and
returns the clean latent in model space. Nothing here knows which method runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..errors import InputError
from ..parallel.launch import active_layout, block_runner, guidance_split
from ..parallel.layout import ParallelLayout
from .conditioning import MethodConditioning
from .guidance import Guidance
from .loop import ProgressFn, StepCallback, VelocityFn, interrupt_check, make_noise, sample
from .schedulers import Scheduler
from .step_cache import StepCache
from .wan_denoiser import WanCond, WanDenoiser
from .windows import (DEFAULT_OVERLAP, DEFAULT_WINDOW, Window, WindowPlan, add_private_frames,
                      check_blending, denoise_windowed, plan_windows, real_frames)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSettings:
    """Overlapping windows of latent frames (see sampling/windows.py); the defaults are UniAnimate-DiT's
    (21 latent frames, i.e. Wan's native 81 pixel frames, overlapping by 4, its own blending)."""

    length: int = DEFAULT_WINDOW
    overlap: int = DEFAULT_OVERLAP
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


WindowProgressFn = Callable[[int, int, int, int], None]
"""``(step, steps, window, windows)``, all counted from 1: called each time a window of a step is
done (once per step for a one-pass run, with ``window = windows = 1``). ``steps * windows`` calls
in all, so a host bar of that total advances by one per call."""


def window_plan(frames: int, windows: WindowSettings | None) -> WindowPlan | None:
    """The plan :func:`sample_video` follows for ``frames`` latent frames; None without windows.

    One window (with ``plan.notice`` saying why when the video is shorter than
    a window) means one pass over the whole video. Bad settings (an overlap not
    smaller than the window, an unknown blending, a window or overlap too short
    for UniAnimate's private frames) raise here, whatever the video's length,
    naming the nearest valid values.
    """
    if windows is None:
        return None
    plan = plan_windows(frames, windows.length, windows.overlap)
    check_blending(plan, windows.weighting)
    return plan


def window_count(frames: int, windows: WindowSettings | None) -> int:
    """How many windows each step runs (1 for one pass): a progress bar's total is ``steps * window_count``."""
    plan = window_plan(frames, windows)
    return 1 if plan is None else len(plan)


def progress_text(step: int, steps: int, window: int, windows: int) -> str:
    """``"window 3/7, step 12/30"`` (``"step 12/30"`` for one window), for a node's progress text."""
    text = f"step {step}/{steps}"
    return text if windows <= 1 else f"window {window}/{windows}, {text}"


def sample_video(model, conditioning: MethodConditioning, scheduler: Scheduler, cfg_scale: float, seed: int,
                 windows: WindowSettings | None = None, *, progress: ProgressFn | None = None,
                 window_progress: WindowProgressFn | None = None, callback: StepCallback | None = None,
                 check_interrupt: Callable[[], None] | None = None, cache: StepCache | None = None,
                 noise_seed: int | None = None,
                 make_guidance: Callable[[Branch, Branch | None, float, int], Guidance] | None = None,
                 layout: ParallelLayout | None = None) -> torch.Tensor:
    """The clean latent ``[1, 16, T, h, w]`` (model space, float32) for ``conditioning``.

    Noise is drawn on the CPU from ``seed`` (same seed, same video on every
    device). With ``windows`` and a video longer than one window, every step
    is made window by window (each window guided on its own, as UniAnimate-DiT
    does, then blended); otherwise the whole video is one pass (logging the
    plan's notice when the video is shorter than the window).

    ``progress`` is called after each step (default: the host's bar over the
    steps, unless ``window_progress`` is given); ``window_progress`` after each
    window of each step (see :data:`WindowProgressFn`). ``callback`` gets each
    step's latent and x0 estimate (previews). ``check_interrupt`` (default: the
    host's) runs before every step, window and DiT block, so an interrupt stops
    within one block.

    ``cache`` (a :class:`~.step_cache.StepCache`, off by default) runs the DiT's block stack: it is reset
    here, so no residual crosses calls (Wan2.2-Animate clips), and told the guidance branch, the window and
    the step before every forward, so each branch and window keeps its own state; its counts add up over
    calls (``cache.report()``).

    ``noise_seed`` seeds the re-noising of the ``lcm_*`` samplers (default: ``seed``, whose generator starts
    at ``seed + 1`` as ComfyUI's does); chained runs pass one that no other run's ``seed`` equals.

    ``make_guidance(positive, negative, cfg_scale, steps)`` replaces the two-branch CFG (a method with more
    branches: SteadyDancer's pose guidance); what it returns needs only ``velocity`` and ``bind`` as
    :class:`Guidance`. ``negative`` is None when ``cfg_scale`` is 1.

    ``layout`` (default: the process's active one, see parallel/launch.py) spreads each forward's
    sequence over its group of processes and, with CFG parallelism, the two branches over two groups;
    every process returns the same latent.
    """
    check_interrupt = interrupt_check(check_interrupt)
    noise_seed = seed if noise_seed is None else noise_seed
    if progress is None and window_progress is not None:
        progress = _no_progress
    geometry = conditioning.geometry
    if cache is not None:
        cache.reset()
    layout = layout if layout is not None else active_layout()
    denoiser = WanDenoiser(model, on_block=lambda _index: check_interrupt(), runner=block_runner(layout, cache))
    steps = scheduler.steps
    positive = Branch(conditioning, True, steps)
    negative = Branch(conditioning, False, steps) if cfg_scale != 1.0 else None
    if make_guidance is None:
        guidance = Guidance(positive, negative, cfg_scale, split=guidance_split(layout))
    elif layout is not None and layout.cfg_degree == 2:
        raise InputError("cfg_parallel", "is on for a method with its own guidance branches (SteadyDancer's pose "
                         "guidance)", "sequence parallelism only for this method")
    else:
        guidance = make_guidance(positive, negative, cfg_scale, steps)
    if layout is not None and layout.cfg_degree == 2 and negative is None and layout.is_main:
        log.warning("CFG parallelism with a guidance scale of 1: both groups of processes run the same branch")
    noise = make_noise(geometry.latent_shape, seed)
    plan = window_plan(geometry.frames, windows)

    if plan is None or len(plan) == 1:
        if plan is not None and plan.notice:
            log.info(plan.notice)
        step_progress = progress
        if window_progress is not None:
            def step_progress(done: int, total: int) -> None:
                if progress is not None:
                    progress(done, total)
                window_progress(done, total, 1, 1)

        def run(x: torch.Tensor, timestep: torch.Tensor, branch: Branch) -> torch.Tensor:
            _begin(cache, branch, None)
            return denoiser(x, timestep, branch.resolve(None))
        return sample(guidance.bind(run), noise, scheduler, progress=step_progress,
                      check_interrupt=check_interrupt, callback=callback, noise_seed=noise_seed)

    generator = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    state = add_private_frames(noise, plan, windows.weighting, generator=generator)

    on_window = None
    if window_progress is not None:
        def on_window(step: int, window: Window) -> None:
            window_progress(step + 1, steps, window.index + 1, len(plan))

    out = sample(windowed_velocity(denoiser, guidance, plan, windows.weighting, check_interrupt, on_window, cache),
                 state, scheduler, progress=progress,
                 check_interrupt=check_interrupt, noise_seed=noise_seed,
                 callback=None if callback is None else (lambda i, x, x0: callback(i, real_frames(x, plan),
                                                                                   real_frames(x0, plan))))
    return real_frames(out, plan)


def windowed_velocity(denoiser: Callable[[torch.Tensor, torch.Tensor, WanCond], torch.Tensor], guidance: Guidance,
                      plan: WindowPlan, weighting: str, check_interrupt: Callable[[], None] | None = None,
                      on_window: Callable[[int, Window], None] | None = None,
                      cache: StepCache | None = None) -> VelocityFn:
    """The loop's ``(state, timestep, step) -> velocity`` over ``plan``'s windows.

    At each step every window is guided on its own (both branches resolved for
    that window: ``guidance``'s items are :class:`Branch`-es), then the windows'
    velocities are blended with ``weighting`` (:func:`~.windows.denoise_windowed`;
    the state carries the private frames, see :func:`~.windows.add_private_frames`).
    ``on_window(step, window)`` is called after each window; ``cache`` is told each forward's branch and
    window (its state key) and step.
    """
    def velocity(state: torch.Tensor, timestep: torch.Tensor, step: int) -> torch.Tensor:
        def guided(latent: torch.Tensor, window: Window) -> torch.Tensor:
            def run(z: torch.Tensor, t: torch.Tensor, branch: Branch) -> torch.Tensor:
                _begin(cache, branch, window.index)
                return denoiser(z, t, branch.resolve(window))
            out = guidance.velocity(run, latent, timestep, step)
            if on_window is not None:
                on_window(step, window)
            return out
        return denoise_windowed(guided, state, plan, weighting, check_interrupt=check_interrupt)
    return velocity


def _begin(cache: StepCache | None, branch: Branch, window: int | None) -> None:
    """Key the cache's state by (guidance branch, window) and tell it the step."""
    if cache is not None:
        cache.begin((branch.positive, window), branch.step, branch.steps)


def _no_progress(done: int, total: int) -> None:
    pass
