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

import math
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


# ---- few-step distilled schedules -------------------------------------------------------------------------------

DEFAULT_DISTILL_STEPS: tuple[int, ...] = (1000, 750, 500, 250)
"""LightX2V's ``denoising_step_list`` for its 4-step Wan 2.1 distilled models (with ``sample_shift`` 5)."""


def lightx2v_distill_schedule(step_list, shift: float) -> Schedule:
    """LightX2V's ``WanStepDistillScheduler.set_denoising_timesteps``, value for value.

    A training grid ``torch.linspace(1, 0, 1001)[:-1]`` (float32), shifted in
    float32, timesteps ``sigma * 1000`` (float32); the run takes the entries
    ``1000 - t`` for each ``t`` of ``step_list`` (1000 is pure noise). The
    model sees these float timesteps; a final sigma of 0 is appended.
    """
    steps = [int(t) for t in step_list]
    grid = torch.linspace(1.0, 0.0, NUM_TRAIN_TIMESTEPS + 1)[:-1]
    grid = shift * grid / (1 + (shift - 1) * grid)
    timesteps = grid * NUM_TRAIN_TIMESTEPS
    index = [NUM_TRAIN_TIMESTEPS - t for t in steps]
    sigmas = grid[index]
    return Schedule(sigmas=torch.cat([sigmas, sigmas.new_zeros(1)]), timesteps=timesteps[index].clone())


def comfy_flow_sigmas(shift: float, train_steps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """ComfyUI's ``ModelSamplingDiscreteFlow.sigmas`` (Wan's model sampling, ``multiplier`` 1000) for ``shift``:
    ``time_snr_shift(shift, (arange(1, 1001) / 1000 * 1000) / 1000)`` in float32, lowest first."""
    t = (torch.arange(1, train_steps + 1, 1) / train_steps) * 1000
    t = t / 1000
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def _comfy_schedule(sigmas: list[float]) -> Schedule:
    s = torch.tensor(sigmas + [0.0], dtype=torch.float32)  # torch.FloatTensor(sigs)
    return Schedule(sigmas=s, timesteps=s[:-1] * NUM_TRAIN_TIMESTEPS)  # model_sampling.timestep(sigma)


def comfy_simple_schedule(steps: int, shift: float) -> Schedule:
    """ComfyUI's ``simple`` scheduler (``comfy/samplers.py`` ``simple_scheduler``) on Wan's flow sigmas.

    Every ``1000 / steps``-th training sigma from the top, then 0; the model
    sees ``sigma * 1000`` (float32), as ComfyUI's ``model_sampling.timestep``.
    """
    table = comfy_flow_sigmas(shift)
    ss = len(table) / steps
    return _comfy_schedule([float(table[-(1 + int(x * ss))]) for x in range(steps)])


def comfy_beta_schedule(steps: int, shift: float, alpha: float = 0.6, beta: float = 0.6) -> Schedule:
    """ComfyUI's ``beta`` scheduler (``beta_scheduler``, alpha = beta = 0.6) on Wan's flow sigmas.

    Training indices ``rint(ppf_beta(1 - linspace(0, 1, steps, endpoint=False)) * 999)``,
    repeated indices dropped (so a schedule may have fewer steps than asked),
    then 0. The beta quantile is computed here in float64 (no scipy), to
    about 1e-13, so the rounded indices equal scipy's.
    """
    total = NUM_TRAIN_TIMESTEPS - 1
    table = comfy_flow_sigmas(shift)
    sigs: list[float] = []
    last = -1.0
    for k in range(steps):
        q = 1.0 - k / steps  # 1 - numpy.linspace(0, 1, steps, endpoint=False)[k]
        t = float(round(_beta_ppf(q, alpha, beta) * total))  # numpy.rint: half to even, as round()
        if t != last:
            sigs.append(float(table[int(t)]))
        last = t
    return _comfy_schedule(sigs)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _beta_cdf(x: float, a: float, b: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _beta_ppf(q: float, a: float, b: float) -> float:
    """The beta distribution's quantile by bisection on its CDF (float64)."""
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    if a == b and q == 0.5:
        return 0.5  # exact by symmetry (scipy's too): 0.5 * 999 = 499.5 must round to even, 500
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
