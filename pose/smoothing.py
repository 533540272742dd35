"""One-Euro filtering of keypoints over time, to calm detector jitter.

The One-Euro filter (Casiez et al., CHI 2012) is a low-pass filter whose cutoff
rises with speed: still points are smoothed hard, fast ones follow with little
lag. Each coordinate of each point of each person slot is filtered on its own,
in units of the frame height per second so the settings do not depend on
resolution. A point below the confidence threshold is passed through as it is
and restarts its filter, so nothing is smoothed across a gap (a limb leaving
and re-entering the frame snaps back instead of sliding in from where it left).
Off by default in the callers: smoothing changes the motion.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .keypoints import VISIBLE, PoseFrame


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    r = 2 * math.pi * cutoff * dt
    return r / (r + 1)


def one_euro(frames: Sequence[PoseFrame], min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0,
             fps: float = 30.0, threshold: float = VISIBLE) -> list[PoseFrame]:
    """Smooth every person slot's points over ``frames``.

    ``min_cutoff`` (Hz) sets the smoothing of still points (lower: smoother),
    ``beta`` how fast the cutoff rises with speed (higher: less lag),
    ``d_cutoff`` (Hz) the smoothing of the speed estimate. Confidences are kept.
    """
    if fps <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
        raise ValueError("fps, min_cutoff and d_cutoff must be positive and beta not negative")
    dt = 1.0 / fps
    a_d = _alpha(d_cutoff, dt)
    out: list[PoseFrame] = []
    x_prev = dx_prev = active = None
    for frame in frames:
        people = frame.people.copy()
        unit = float(frame.height) or 1.0
        x = people[..., :2] / unit
        seen = people[..., 2] >= threshold
        if x_prev is None or x_prev.shape != x.shape:   # people appeared or left: new slots start fresh
            size = min(0 if x_prev is None else len(x_prev), len(x))
            new_x, new_dx = x.copy(), np.zeros_like(x)
            new_active = np.zeros(seen.shape, dtype=bool)
            if size:
                new_x[:size], new_dx[:size], new_active[:size] = x_prev[:size], dx_prev[:size], active[:size]
            x_prev, dx_prev, active = new_x, new_dx, new_active
        dx = (x - x_prev) / dt
        dx_hat = a_d * dx + (1 - a_d) * dx_prev
        a = _alpha(min_cutoff + beta * np.abs(dx_hat), dt)
        x_hat = a * x + (1 - a) * x_prev
        running = (active & seen)[..., None]
        x_new = np.where(running, x_hat, x)
        dx_new = np.where(running, dx_hat, 0.0)
        x_prev, dx_prev, active = x_new, dx_new, seen
        people[..., :2] = np.where(seen[..., None], x_new * unit, people[..., :2])
        out.append(frame.replace(people=people))
    return out
