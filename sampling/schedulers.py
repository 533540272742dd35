"""Pick a flow-matching scheduler by name: its schedule and a fresh solver per run.

``unipc`` and ``dpm++`` are Wan's own samplers (``sample_solver`` in Wan's
generate.py, UniPC its default); ``euler`` is DiffSynth's, which UniAnimate-DiT
and most DiffSynth-trained methods sample with; ``euler_diffusers`` is diffusers'
FlowMatchEulerDiscreteScheduler, RealisDance-DiT's. Each name brings the schedule its
reference uses, so a name and a step count reproduce that reference's sigmas
and timesteps exactly (see sigmas.py).

Few-step distilled sampling (the lightx2v step/CFG-distilled Wan models and
LoRAs, run with guidance 1.0 and 4-8 steps):

- ``lightx2v_distill``: LightX2V's ``WanStepDistillScheduler``: its own step
  list (``denoising_step_list``, e.g. 1000, 750, 500, 250 with shift 5; the
  ``steps`` count is the list's length), the update re-noising with the
  model's own noise estimate (deterministic);
- ``lcm_simple`` / ``lcm_beta``: ComfyUI's ``lcm`` sampler with its ``simple``
  or ``beta`` scheduler over ``steps``, re-noising with fresh noise drawn from
  the run's seed (``seed + 1``, as ComfyUI on the CPU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import InputError
from .sigmas import (DEFAULT_DISTILL_STEPS, NUM_TRAIN_TIMESTEPS, Schedule, comfy_beta_schedule,
                     comfy_simple_schedule, diffusers_flowmatch_schedule, euler_schedule, lightx2v_distill_schedule,
                     wan_dpm_schedule, wan_unipc_schedule)
from .solvers import DistillSolver, DPMPP2MSolver, EulerSolver, LCMSolver, Solver, UniPCSolver


def _lcm(schedule: Schedule, noise_seed: int | None) -> Solver:
    generator = torch.Generator(device="cpu")
    if noise_seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(noise_seed) + 1)  # ComfyUI's default_noise_sampler on the CPU: seed + 1
    return LCMSolver(schedule, generator)


def _plain(solver: Callable[[Schedule], Solver]) -> Callable[[Schedule, int | None], Solver]:
    return lambda schedule, noise_seed: solver(schedule)


_REGISTRY: dict[str, tuple[Callable[[int, float], Schedule], Callable[[Schedule, int | None], Solver]]] = {
    "unipc": (wan_unipc_schedule, _plain(UniPCSolver)),
    "dpm++": (wan_dpm_schedule, _plain(DPMPP2MSolver)),
    "euler": (euler_schedule, _plain(EulerSolver)),
    "euler_diffusers": (diffusers_flowmatch_schedule, _plain(EulerSolver)),
    "lightx2v_distill": (None, _plain(DistillSolver)),  # built from the step list, see make_scheduler
    "lcm_simple": (comfy_simple_schedule, _lcm),
    "lcm_beta": (comfy_beta_schedule, _lcm),
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(_REGISTRY)
STEP_LIST_SCHEDULERS: tuple[str, ...] = ("lightx2v_distill",)
"""Schedulers whose steps are an explicit list of timesteps (``step_list``) rather than a count."""
DISTILL_SCHEDULERS: tuple[str, ...] = ("lightx2v_distill", "lcm_simple", "lcm_beta")
"""The few-step schedulers for step/CFG-distilled models (run them with guidance 1.0)."""
DEFAULT_STEP_LIST = ", ".join(str(t) for t in DEFAULT_DISTILL_STEPS)


def parse_step_list(text, name: str = "step_list") -> tuple[int, ...]:
    """Timesteps from ``"1000, 750, 500, 250"`` (or a sequence of numbers): whole numbers in 1..1000,
    strictly decreasing (1000 is pure noise; the final 0 is implied). An empty text gives LightX2V's
    4-step default. Bad values raise :class:`InputError` naming ``name``."""
    expected = "whole timesteps from 1000 (pure noise) down to 1, strictly decreasing, e.g. 1000, 750, 500, 250"
    if text is None:
        return DEFAULT_DISTILL_STEPS
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",")]
        if not any(parts):
            return DEFAULT_DISTILL_STEPS
        if not all(parts):
            raise InputError(name, f"'{text}' has an empty entry", expected)
        items: list = parts
    else:
        items = list(text)
        if not items:
            return DEFAULT_DISTILL_STEPS
    values: list[int] = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise InputError(name, f"'{item}' is not a number", expected) from None
        if math.isnan(value):
            raise InputError(name, f"'{item}' is not a number (NaN)", expected)
        if not 0 <= value <= NUM_TRAIN_TIMESTEPS:
            raise InputError(name, f"{item} is outside 0..{NUM_TRAIN_TIMESTEPS}", expected)
        if value != int(value):
            raise InputError(name, f"{item} is not a whole timestep", expected)
        if value == 0:
            raise InputError(name, "0 is the end of every schedule and is implied; leave it out", expected)
        values.append(int(value))
    for before, after in zip(values, values[1:]):
        if after >= before:
            raise InputError(name, f"is not decreasing ({before} then {after})", expected)
    return tuple(values)


@dataclass(frozen=True)
class Scheduler:
    """A named sampler over a fixed schedule. ``solver()`` gives the stepping state for one run."""

    name: str
    schedule: Schedule

    @property
    def steps(self) -> int:
        return self.schedule.steps

    def solver(self, noise_seed: int | None = None) -> Solver:
        """A fresh solver for one run; ``noise_seed`` seeds the re-noising of the ``lcm_*`` samplers
        (the run's seed; None: a random one). The other solvers draw no noise."""
        return _REGISTRY[self.name][1](self.schedule, noise_seed)


def make_scheduler(name: str, steps: int, shift: float, step_list=None) -> Scheduler:
    """The scheduler ``name`` (one of ``SCHEDULER_NAMES``) over ``steps`` steps with ``shift``.

    For ``lightx2v_distill`` the steps are ``step_list`` (a comma-separated
    text or a sequence of timesteps, see :func:`parse_step_list`; None or empty:
    1000, 750, 500, 250) and ``steps`` is not used; the other schedulers ignore
    ``step_list``."""
    if name not in _REGISTRY:
        raise InputError("scheduler", f"'{name}' is not a known scheduler", f"one of {', '.join(SCHEDULER_NAMES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError("steps", f"{steps!r} is not a positive whole number", "an integer of 1 or more")
    if not (0.0 < shift < math.inf):
        raise InputError("shift", f"{shift!r} is not positive", "a number above 0 (Wan uses 3.0 at 480p, 5.0 at 720p)")
    if name in STEP_LIST_SCHEDULERS:
        return Scheduler(name=name, schedule=lightx2v_distill_schedule(parse_step_list(step_list), float(shift)))
    return Scheduler(name=name, schedule=_REGISTRY[name][0](steps, float(shift)))
