"""ODE solvers for flow matching: Euler, UniPC (bh2) and DPM++ 2M.

The model predicts the flow velocity ``v``; the clean-latent estimate is
``x0 = x - sigma * v``. A solver is created for one run over one schedule and
is stepped with ``index = 0, 1, ..., steps - 1`` in order; multistep solvers keep
the previous ``x0`` estimates, so a fresh run needs a fresh solver.

UniPC and DPM++ reproduce Wan's ``FlowUniPCMultistepScheduler`` and
``FlowDPMSolverMultistepScheduler`` as Wan configures them (order 2,
``predict_x0``/``dpmsolver++``, ``lower_order_final``, final sigma 0), step for
step, including the lower orders at the first and last steps. Both work in
log-SNR time ``lambda = log(alpha / sigma)`` with ``alpha = 1 - sigma``; the
per-step coefficients are computed in float64 from the float32 sigmas.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from .sigmas import Schedule


def _lambda(sigma: float) -> float:
    """log-SNR ``log(1 - sigma) - log(sigma)``; -inf at pure noise, +inf at sigma 0."""
    if sigma <= 0.0:
        return math.inf
    if sigma >= 1.0:
        return -math.inf
    return math.log(1.0 - sigma) - math.log(sigma)


class Solver(Protocol):
    """One run's stepping state: ``step`` maps ``x`` at ``sigmas[index]`` to ``sigmas[index + 1]``."""

    schedule: Schedule

    def step(self, velocity: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor: ...


class _Stepper:
    """Shared bookkeeping: float sigmas and the rule that steps come in order."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.sigmas = [float(s) for s in schedule.sigmas]
        self.lambdas = [_lambda(s) for s in self.sigmas]
        self._next_index = 0

    def _advance(self, index: int) -> None:
        if index != self._next_index:
            raise RuntimeError(f"solver stepped with index {index}, expected {self._next_index}; "
                               "multistep solvers must be stepped in order and are not reusable")
        self._next_index += 1


class EulerSolver(_Stepper):
    """``x_{i+1} = x_i + v * (sigma_{i+1} - sigma_i)``, as DiffSynth's FlowMatchScheduler.

    The sigma difference is taken between the float32 sigmas, in float32, as DiffSynth does.
    """

    def step(self, velocity: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor:
        self._advance(index)
        sig = self.schedule.sigmas
        return x + velocity * (sig[index + 1] - sig[index]).item()


class DPMPP2MSolver(_Stepper):
    """DPM-Solver++ (2M, midpoint) on the x0 estimates.

    First order (a DDIM step) at the first step and at the last step (Wan uses
    a final sigma of 0, which makes diffusers fall back to first order there, so
    the result is exactly the last ``x0`` estimate); second order in between.
    """

    def __init__(self, schedule: Schedule):
        super().__init__(schedule)
        self._prev_x0: torch.Tensor | None = None

    def step(self, velocity: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor:
        self._advance(index)
        s0, t = self.sigmas[index], self.sigmas[index + 1]
        lam_s0, lam_t = self.lambdas[index], self.lambdas[index + 1]
        x0 = x - s0 * velocity
        h = lam_t - lam_s0
        # (sigma_t / sigma_s0) x + alpha_t (1 - e^-h) x0; at the last step e^-h = 0 and sigma_t = 0.
        keep = t / s0
        pull = (1.0 - t) * -math.expm1(-h)
        last = index == self.schedule.steps - 1
        if self._prev_x0 is None or last:
            out = keep * x + pull * x0
        else:
            # r0 = h_prev / h; D1 = (x0 - x0_prev) / r0. A previous step from pure
            # noise has h_prev = inf, so D1 = 0 (as in the reference).
            h_prev = lam_s0 - self.lambdas[index - 1]
            d1_weight = 0.0 if math.isinf(h_prev) else h / h_prev
            out = keep * x + pull * (x0 + 0.5 * d1_weight * (x0 - self._prev_x0))
        self._prev_x0 = x0
        return out


class UniPCSolver(_Stepper):
    """UniPC with the B(h) = e^h - 1 variant ("bh2"), predictor and corrector on x0 estimates.

    At step ``i`` the model was run on the predictor's ``x_i``; with that output the
    corrector (UniC) first refines ``x_i`` using the step that led to it, then the
    predictor (UniP) steps from the refined ``x_i`` to ``x_{i+1}``. The last step is
    not corrected (there is no further model evaluation). Orders as in Wan:
    predictor order ``min(2, i + 1, steps - i)`` (so 1 at the first and last steps),
    corrector order = the order of the predictor step it corrects.
    """

    order = 2

    def __init__(self, schedule: Schedule):
        super().__init__(schedule)
        self._x0s: list[torch.Tensor] = []  # x0 estimates at steps ..., i-1
        self._last_x: torch.Tensor | None = None  # corrected x at step i-1 (predictor start)
        self._last_order = 0

    def _coefficients(self, s_index: int, t_index: int) -> tuple[float, float, float, float]:
        """``sigma_t / sigma_s``, ``alpha_t``, ``h_phi_1 = e^{-h} - 1``, ``h``, from s to t."""
        sig_s, sig_t = self.sigmas[s_index], self.sigmas[t_index]
        h = self.lambdas[t_index] - self.lambdas[s_index]
        return sig_t / sig_s, 1.0 - sig_t, math.expm1(-h), h

    def _rk(self, older: int, s_index: int, h: float) -> float:
        """Position of an older step in units of the current step, in log-SNR."""
        return (self.lambdas[older] - self.lambdas[s_index]) / h

    def _correct(self, x0_t: torch.Tensor, index: int) -> torch.Tensor:
        """UniC: refine ``x`` at ``index`` from the step ``index - 1 -> index``."""
        s = index - 1
        keep, alpha_t, phi1, h = self._coefficients(s, index)
        x0_s = self._x0s[-1]
        base = keep * self._last_x - alpha_t * phi1 * x0_s
        b_h = phi1  # bh2
        if self._last_order == 1:
            return base - alpha_t * b_h * 0.5 * (x0_t - x0_s)
        # Order 2: solve [[1, 1], [rk, 1]] @ [rho_0, rho_1] = [b_1, b_2] in closed form.
        hh = -h
        phi_2 = phi1 / hh - 1.0
        b1 = phi_2 / b_h
        b2 = (phi_2 / hh - 0.5) * 2.0 / b_h
        rk = self._rk(s - 1, s, h)
        if math.isinf(rk):  # the older step was pure noise: its term vanishes
            rho_0, rho_1, d1 = 0.0, b1, 0.0
        else:
            rho_0 = (b1 - b2) / (1.0 - rk)
            rho_1 = (b2 - rk * b1) / (1.0 - rk)
            d1 = (self._x0s[-2] - x0_s) / rk
        return base - alpha_t * b_h * (rho_0 * d1 + rho_1 * (x0_t - x0_s))

    def _predict(self, x: torch.Tensor, x0_s: torch.Tensor, index: int, order: int) -> torch.Tensor:
        """UniP: step ``x`` from ``index`` to ``index + 1``."""
        keep, alpha_t, phi1, h = self._coefficients(index, index + 1)
        out = keep * x - alpha_t * phi1 * x0_s
        if order == 2:
            rk = self._rk(index - 1, index, h)
            if not math.isinf(rk):
                d1 = (self._x0s[-1] - x0_s) / rk
                out = out - alpha_t * phi1 * 0.5 * d1
        return out

    def step(self, velocity: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor:
        self._advance(index)
        x0 = x - self.sigmas[index] * velocity
        if index > 0:
            x = self._correct(x0, index)
        order = min(self.order, index + 1, self.schedule.steps - index)
        out = self._predict(x, x0, index, order)
        self._x0s = (self._x0s + [x0])[-self.order:]
        self._last_x = x
        self._last_order = order
        return out


class DistillSolver(_Stepper):
    """LightX2V's ``WanStepDistillScheduler.step_post``: the step-distilled models' update.

    The clean estimate ``x0 = x - sigma * v``, re-noised to the next sigma
    with the model's own noise estimate, ``x0 + v * sigma_next`` (``x0 + v`` is
    the predicted noise, so this is ``(1 - sigma_next) * x0 + sigma_next * noise_hat``);
    the last step returns ``x0``. Deterministic: no fresh noise. Computed in
    float32 with the same operations, in the same order, as LightX2V.
    """

    def step(self, velocity: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor:
        self._advance(index)
        flow = velocity.to(torch.float32)
        out = x.to(torch.float32) - self.sigmas[index] * flow
        if index < self.schedule.steps - 1:
            out = out + flow * self.sigmas[index + 1]
        return out.to(x.dtype)


class LCMSolver(_Stepper):
    """ComfyUI's ``sample_lcm`` (``comfy/k_diffusion/sampling.py``) on a flow model (``CONST`` sampling).

    ``x0 = x - v * sigma``, then, while the next sigma is above 0, fresh noise
    at the next sigma: ``sigma_next * noise + (1 - sigma_next) * x0``; the last
    step returns ``x0``. The noise comes from ``generator`` (a CPU generator:
    ComfyUI's ``default_noise_sampler`` on the CPU seeds it with ``seed + 1``),
    drawn in float32 with ``x``'s shape, one draw per re-noise, so a seed gives
    the same noise on every device.
    """

    def __init__(self, schedule, generator: torch.Generator | None = None):
        super().__init__(schedule)
        self.generator = generator

    def step(self, velocity: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor:
        self._advance(index)
        sigma = self.schedule.sigmas[index].to(x.device)
        sigma_next = self.schedule.sigmas[index + 1].to(x.device)
        denoised = x - velocity * sigma
        if self.sigmas[index + 1] <= 0.0:
            return denoised
        noise = torch.randn(tuple(x.shape), generator=self.generator, device="cpu", dtype=torch.float32)
        noise = noise.to(device=x.device, dtype=x.dtype)
        return sigma_next * noise + (1.0 - sigma_next) * denoised
