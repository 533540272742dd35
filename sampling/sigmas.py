"""Noise schedules for flow matching with shift, exactly as the reference code builds them.

A flow-matching latent at noise level sigma is ``x = (1 - sigma) * x0 + sigma * noise``;
the model was trained on timesteps ``t = sigma * 1000``. "Shift" bends the schedule
towards high noise: ``sigma = shift * s / (1 + (shift - 1) * s)``.

Three schedules, because the references differ in small ways that change the numbers:

- ``unipc`` (Wan's ``FlowUniPCMultistepScheduler.set_timesteps``): ``s`` runs
  linearly from float32(0.999) (the scheduler's ``sigma_max``: its training grid
  stops one step short of pure noise) down to 0, ``steps`` values.
- ``dpm++`` (Wan's ``get_sampling_sigmas`` + ``retrieve_timesteps``): ``s`` runs
  linearly from exactly 1.0 down to 0, ``steps`` values.
- ``euler`` (DiffSynth's ``FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True)``,
  used by UniAnimate-DiT): the same grid as ``dpm++``.

The grid and shift are computed in float64 with the same operations, in the same
order, as the references (numpy), so the float32 sigmas are bit-identical. Wan's
solvers hand the model ``int64`` timesteps, *truncated* from the float64
``sigma * 1000`` (e.g. 999.8 -> 999); DiffSynth hands it float timesteps. Each
schedule ends with a final sigma of 0 (one more sigma than timesteps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NUM_TRAIN_TIMESTEPS = 1000
# Wan's scheduler: 1 - linspace(1, 1/1000, 1000)[::-1] stored as float32, first entry.
WAN_UNIPC_SIGMA_MAX = float(torch.tensor(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS, dtype=torch.float32))


@dataclass(frozen=True)
class Schedule:
    """Sigmas (float32, ``steps + 1`` values ending in 0) and the timesteps the model sees."""

    sigmas: torch.Tensor
    timesteps: torch.Tensor

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


def shift_sigmas(s: torch.Tensor, shift: float) -> torch.Tensor:
    """``shift * s / (1 + (shift - 1) * s)``: shift > 1 spends more steps at high noise."""
    return shift * s / (1 + (shift - 1) * s)


def _linear_grid(start: float, steps: int) -> torch.Tensor:
    """``numpy.linspace(start, 0, steps + 1)[:-1]`` in float64, element for element."""
    delta = (0.0 - start) / steps
    return torch.arange(steps, dtype=torch.float64) * delta + start


def _build(start: float, steps: int, shift: float, integer_timesteps: bool) -> Schedule:
    s64 = shift_sigmas(_linear_grid(start, steps), float(shift))
    t64 = s64 * NUM_TRAIN_TIMESTEPS
    timesteps = t64.to(torch.int64) if integer_timesteps else t64.to(torch.float32)
    sigmas = torch.cat([s64, s64.new_zeros(1)]).to(torch.float32)
    return Schedule(sigmas=sigmas, timesteps=timesteps)


def wan_unipc_schedule(steps: int, shift: float) -> Schedule:
    """Wan's UniPC schedule: starts just below pure noise, int64 timesteps."""
    return _build(WAN_UNIPC_SIGMA_MAX, steps, shift, integer_timesteps=True)


def wan_dpm_schedule(steps: int, shift: float) -> Schedule:
    """Wan's DPM++ schedule: starts at pure noise (sigma 1, t 1000), int64 timesteps."""
    return _build(1.0, steps, shift, integer_timesteps=True)


def euler_schedule(steps: int, shift: float) -> Schedule:
    """DiffSynth's Euler schedule: starts at pure noise, float timesteps (sigma * 1000).

    DiffSynth computes the grid in float32 torch; here it is computed in float64 and
    rounded once, so a sigma may differ from DiffSynth's by one float32 ulp.
    """
    return _build(1.0, steps, shift, integer_timesteps=False)


def diffusers_flowmatch_schedule(steps: int, shift: float, train_steps: int = 1000) -> Schedule:
    """diffusers' ``FlowMatchEulerDiscreteScheduler(shift=shift)``, as RealisDance-DiT's pipeline steps it.

    Its ``set_timesteps`` spaces timesteps linearly from its first to its last
    *training* sigma, and the last one is already shifted, so the low end is
    shifted twice: ``sigma_i = shift(linspace(1, shift(1/1000), steps)_i)``,
    then 0. Computed with the same dtypes and order as diffusers (its training
    table in float32, the spacing and shift in float64), so the float32 sigmas
    and timesteps are bit-identical.
    """
    train = torch.tensor([1.0, 1.0 / train_steps], dtype=torch.float32)  # first and last training sigma
    train = shift * train / (1 + (shift - 1) * train)
    start, stop = train[0].item() * train_steps, train[1].item() * train_steps
    if steps > 1:
        grid = torch.arange(steps, dtype=torch.float64) * ((stop - start) / (steps - 1)) + start  # numpy.linspace
        grid[-1] = stop
    else:
        grid = torch.tensor([start], dtype=torch.float64)
    s64 = grid / train_steps
    sigmas = (shift * s64 / (1 + (shift - 1) * s64)).to(torch.float32)
    return Schedule(sigmas=torch.cat([sigmas, sigmas.new_zeros(1)]), timesteps=sigmas * train_steps)
