"""Classifier-free guidance with the unconditional branch chosen by the caller.

Methods differ in what "unconditional" means (UniAnimate-DiT drops the pose
tokens but keeps the reference latent ``y``; RealisDance-DiT keeps the pose), so
guidance does not build the negative conditioning: the caller passes a positive
and a negative conditioning object, and a :data:`Denoiser` that knows how to run
the model on either. Guidance only decides how many passes to run and how to
mix them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``(x, timestep, cond) -> velocity``: ``x`` is ``[B, C, T, H, W]``, ``timestep`` a ``[B]``
tensor on ``x``'s device (int64 for Wan's solvers, float32 for Euler), ``cond`` one
conditioning object as the caller built it."""

ScaleSchedule = Callable[[int, torch.Tensor], float]
"""``(step index, timestep) -> scale``, e.g. Wan 2.2's per-expert scales or a decaying CFG."""


def at_step(cond: Any, step: int) -> Any:
    """The conditioning for ``step``: ``cond.at_step(step)`` for conditioning that changes
    over the run (pose tokens on a fraction of the steps), else ``cond`` itself."""
    resolve = getattr(cond, "at_step", None)
    return resolve(step) if callable(resolve) else cond


def cfg(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)``, in the order Wan computes it."""
    return uncond_out + scale * (cond_out - uncond_out)


@dataclass(frozen=True)
class Guidance:
    """What to run at each step: the positive conditioning, an optional negative one, and the scale.

    A scale of exactly 1 (or no negative conditioning) runs the model once, on the
    positive conditioning only: CFG at scale 1 equals the conditional output.
    """

    positive: Any
    negative: Any = None
    scale: Union[float, ScaleSchedule] = 1.0
    split: Any = None  # ``split(model, x, timestep, positive, negative, scale)``: the branches on two groups
    # of processes (parallel/cfg.py), used on the steps that run both

    def scale_at(self, step: int, timestep: torch.Tensor) -> float:
        return float(self.scale(step, timestep)) if callable(self.scale) else float(self.scale)

    def velocity(self, model: Denoiser, x: torch.Tensor, timestep: torch.Tensor, step: int) -> torch.Tensor:
        """The guided velocity at ``x``: one model pass, or two mixed by :func:`cfg`."""
        scale = self.scale_at(step, timestep)
        if self.split is not None and self.negative is not None and scale != 1.0:
            return self.split(model, x, timestep, at_step(self.positive, step), at_step(self.negative, step), scale)
        cond_out = model(x, timestep, at_step(self.positive, step))
        if self.negative is None or scale == 1.0:
            return cond_out
        uncond_out = model(x, timestep, at_step(self.negative, step))
        return cfg(cond_out, uncond_out, scale)

    def bind(self, model: Denoiser) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
        """The guided ``model`` as the loop's ``(x, timestep, step) -> velocity``."""
        return lambda x, timestep, step: self.velocity(model, x, timestep, step)
