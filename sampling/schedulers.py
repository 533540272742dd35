"""Pick a flow-matching scheduler by name: its schedule and a fresh solver per run.

``unipc`` and ``dpm++`` are Wan's own samplers (``sample_solver`` in Wan's
generate.py, UniPC its default); ``euler`` is DiffSynth's, which UniAnimate-DiT
and most DiffSynth-trained methods sample with; ``euler_diffusers`` is diffusers'
FlowMatchEulerDiscreteScheduler, RealisDance-DiT's. Each name brings the schedule its
reference uses, so a name and a step count reproduce that reference's sigmas
and timesteps exactly (see sigmas.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import InputError
from .sigmas import Schedule, diffusers_flowmatch_schedule, euler_schedule, wan_dpm_schedule, wan_unipc_schedule
from .solvers import DPMPP2MSolver, EulerSolver, Solver, UniPCSolver

_REGISTRY: dict[str, tuple[Callable[[int, float], Schedule], Callable[[Schedule], Solver]]] = {
    "unipc": (wan_unipc_schedule, UniPCSolver),
    "dpm++": (wan_dpm_schedule, DPMPP2MSolver),
    "euler": (euler_schedule, EulerSolver),
    "euler_diffusers": (diffusers_flowmatch_schedule, EulerSolver),
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


@dataclass(frozen=True)
class Scheduler:
    """A named sampler over a fixed schedule. ``solver()`` gives the stepping state for one run."""

    name: str
    schedule: Schedule

    @property
    def steps(self) -> int:
        return self.schedule.steps

    def solver(self) -> Solver:
        return _REGISTRY[self.name][1](self.schedule)


def make_scheduler(name: str, steps: int, shift: float) -> Scheduler:
    """The scheduler ``name`` (one of ``SCHEDULER_NAMES``) over ``steps`` steps with ``shift``."""
    if name not in _REGISTRY:
        raise InputError("scheduler", f"'{name}' is not a known scheduler", f"one of {', '.join(SCHEDULER_NAMES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError("steps", f"{steps!r} is not a positive whole number", "an integer of 1 or more")
    if not (0.0 < shift < math.inf):
        raise InputError("shift", f"{shift!r} is not positive", "a number above 0 (Wan uses 3.0 at 480p, 5.0 at 720p)")
    return Scheduler(name=name, schedule=_REGISTRY[name][0](steps, float(shift)))
