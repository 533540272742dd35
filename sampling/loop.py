"""The sampling loop: noise in, latent out. Knows nothing of ComfyUI or of any method.

The loop takes a :data:`VelocityFn` ``(x, timestep, step) -> velocity``: what
runs at a step (one model pass, guidance over two branches, windows over the
video, a step cache) is composed outside from plain callables
(:meth:`~.guidance.Guidance.bind` turns a denoiser and a guidance into one).

Progress and interruption go through callables the caller supplies; by default
they are the host seam's (a ComfyUI progress bar and interrupt flag inside
ComfyUI, nothing and a plain flag outside). All stepping state lives in a solver
created for this call, so an interrupted run leaves nothing behind and the next
call starts clean.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .. import host
from .schedulers import Scheduler

VelocityFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``(x, timestep, step index) -> velocity``: what the loop integrates. ``x`` is the latent
(``[B, C, T, H, W]``), ``timestep`` a ``[B]`` tensor on ``x``'s device."""

ProgressFn = Callable[[int, int], None]
"""``(steps done, total steps)``, called once after each step."""
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]
"""``(step index, latent after the step, x0 estimate at the step)``, e.g. for previews."""


def make_noise(shape: Sequence[int], seed: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from ``seed``, then moved to ``device`` and ``dtype``.

    Drawing on the CPU makes a seed give the same noise on every device (CUDA's
    generator gives other numbers than the CPU's), which is also how DiffSynth /
    UniAnimate-DiT draw theirs (float32 on the CPU). Wan's own scripts draw on the
    GPU, so a seed there gives other noise than here.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(tuple(shape), generator=generator, device="cpu", dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


interrupt_check = host.interrupt_check  # the default every building block of the sampler takes


def _host_progress(total: int) -> ProgressFn:
    bar = host.Progress(total)
    return lambda done, total: bar.update(1)


def sample(velocity_fn: VelocityFn, noise: torch.Tensor, scheduler: Scheduler, *,
           progress: ProgressFn | None = None, check_interrupt: Callable[[], None] | None = None,
           callback: StepCallback | None = None, noise_seed: int | None = None) -> torch.Tensor:
    """Integrate from ``noise`` (at the schedule's first sigma) to a clean latent.

    Each step: check for interruption, call ``velocity_fn`` at the step's
    timestep, advance the solver, then report. ``check_interrupt`` raises to stop
    (before the next model call); ``noise`` is never modified in place. The
    latent keeps ``noise``'s dtype (use float32, as Wan does); the model's
    output is cast to it. ``noise_seed`` seeds the solvers that re-noise between
    steps (``lcm_*``; see :meth:`~.schedulers.Scheduler.solver`).
    """
    if not torch.is_floating_point(noise):
        raise TypeError(f"noise must be a floating-point tensor, got {noise.dtype}")
    total = scheduler.steps
    progress = progress if progress is not None else _host_progress(total)
    check_interrupt = interrupt_check(check_interrupt)
    solver = scheduler.solver(noise_seed)
    timesteps = scheduler.schedule.timesteps.to(noise.device)
    sigmas = scheduler.schedule.sigmas

    x = noise
    for i in range(total):
        check_interrupt()
        timestep = timesteps[i:i + 1].expand(x.shape[0])
        velocity = velocity_fn(x, timestep, i).to(x.dtype)
        denoised = x - float(sigmas[i]) * velocity if callback is not None else None
        x = solver.step(velocity, i, x)
        if callback is not None:
            callback(i, x, denoised)
        progress(i + 1, total)
    return x
