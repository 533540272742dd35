"""Long videos: overlapping windows of latent frames inside each step.

UniAnimate-DiT's long-video pipeline and ComfyUI's context windows: at every
denoising step the full latent ``[B, C, T, H, W]`` is cut into overlapping
windows of latent frames, each window is denoised on its own, and the
predictions are blended back into one full-length prediction.
:func:`plan_windows` places the windows, :func:`slice_frames` cuts every
time-indexed condition to a window, :func:`denoise_windowed` runs and blends.
(Wan2.2-Animate's whole-clip chaining is the method's own:
``methods/wan_animate/plan.py``.)

Blendings (``BLENDINGS``, a registry of :class:`Blending`): ``uniform``,
``linear``, ``pyramid`` and ``relative`` are ComfyUI core's ``flat``,
``overlap-linear``, ``pyramid`` and ``relative`` fuse methods (same formulas);
``unianimate`` is UniAnimate-DiT's rule: uniform weights, and the first two
latent frames of every window after the first are *private* to that window.

Private frames. UniAnimate conditions every window on the reference image as
its first frame, so a window's first two latent frames are its own business:
the window reads them from a per-window buffer (started from fresh noise),
steps that buffer with its own prediction, and never adds them to the shared
latent. Here the buffers live in the sampler's state: the state is the real
``T`` frames followed by two slots per window after the first
(:func:`add_private_frames`), so any solver (Euler, UniPC, DPM++) steps them
exactly like the shared frames, and :func:`real_frames` drops them at the end.
With Euler this reproduces UniAnimate's loop, which averages the windows'
latents *after* each window's Euler step: the step is linear in the
prediction and every window sees the same shared frames, so averaging stepped
latents equals stepping with the averaged prediction.

Frame counts (``models/wan/latent_space.py``). A window of latent frames
``[s, e)`` is sampled as a clip of its own, so its conditions in pixel frames
are ``[4s, 4(e - 1) + 1)`` (UniAnimate slices its pose video exactly so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, Union

import torch

from ..errors import InputError
from ..models.wan.latent_space import TEMPORAL_STRIDE, pixel_frames
from .loop import interrupt_check

PLAN_MODES: tuple[str, ...] = ("static", "batched")
DEFAULT_WINDOW = 21  # latent frames: 81 pixel frames, Wan's native length (UniAnimate-DiT's context_size)
DEFAULT_OVERLAP = 4  # latent frames (UniAnimate-DiT's context_overlap)

Frames = Union[torch.Tensor, Sequence[Any], None]


# ---------------------------------------------------------------- windows
@dataclass(frozen=True)
class Window:
    """Latent frames ``[start, end)`` of the full video, denoised together."""

    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def frames(self, unit: str = "latent") -> tuple[int, int]:
        """``[first, stop)`` in latent frames, or in the pixel frames the window's clip covers."""
        if unit == "latent":
            return self.start, self.end
        if unit == "pixel":
            return TEMPORAL_STRIDE * self.start, pixel_frames(self.end)
        raise ValueError(f"unit must be 'latent' or 'pixel', got {unit!r}")


@dataclass(frozen=True)
class WindowPlan:
    """The windows over ``total`` latent frames; a sequence of :class:`Window`.

    ``notice`` is a sentence for the caller to log when the plan is not what
    was asked for (a video shorter than one window).
    """

    windows: tuple[Window, ...]
    total: int
    window: int
    overlap: int
    mode: str
    notice: str | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self) -> Iterator[Window]:
        return iter(self.windows)

    def __getitem__(self, index: int) -> Window:
        return self.windows[index]


def plan_windows(total: int, window: int, overlap: int, mode: str = "static") -> WindowPlan:
    """Windows of ``window`` latent frames over ``total``, neighbours sharing ``overlap`` frames.

    ``static`` (UniAnimate-DiT's long-video plan, which is also ComfyUI's
    ``standard_static``): windows start every ``window - overlap`` frames and the
    last one is moved back to end exactly at the end, so every window has the
    full length and the last overlaps its neighbour by at least ``overlap``.
    ``batched`` (ComfyUI's): back-to-back windows with no overlap, the last
    one shorter; ``overlap`` is not used.

    A video of at most ``window`` frames is one window of its own length (with
    a notice when shorter: UniAnimate-DiT cannot run it, it wraps the window
    around the video).
    """
    _check_count("video length (latent frames)", total, 1)
    _check_count("window length (latent frames)", window, 1)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InputError("window overlap (latent frames)", f"{overlap!r} is not a whole number of 0 or more",
                         "an integer from 0 to the window length - 1")
    if overlap >= window:
        raise InputError("window overlap (latent frames)", f"{overlap} is not smaller than the window length {window}",
                         f"an overlap from 0 to {window - 1}")
    if mode not in PLAN_MODES:
        raise InputError("window mode", f"'{mode}' is not a known window mode", f"one of {', '.join(PLAN_MODES)}")

    if total <= window:
        notice = None
        if total < window:
            notice = (f"the video has {total} latent frames, fewer than the {window}-frame window: "
                      f"denoising it as a single window of {total} frames")
        return WindowPlan((Window(0, 0, total),), total, window, overlap, mode, notice)

    if mode == "batched":
        spans = [(s, min(s + window, total)) for s in range(0, total, window)]
    else:
        starts = list(range(0, total - overlap, window - overlap))
        starts[-1] = total - window
        spans = [(s, s + window) for s in starts]
    windows = tuple(Window(i, s, e) for i, (s, e) in enumerate(spans))
    return WindowPlan(windows, total, window, overlap, mode)


# ---------------------------------------------------------------- blendings
WeightFn = Callable[["WindowPlan", "Window"], torch.Tensor]
"""``(plan, window) -> float32 weights [window.length]`` for the window's frames."""


@dataclass(frozen=True)
class Blending:
    """How overlapping windows are mixed: each frame's weight, and how many leading frames of every
    window after the first are private to it (not blended; see the module docstring)."""

    weights: WeightFn
    private_frames: int = 0


def _uniform(plan: WindowPlan, window: Window) -> torch.Tensor:
    return torch.ones(window.length)


def _pyramid(plan: WindowPlan, window: Window) -> torch.Tensor:
    # FreeNoise-style: 1, 2, ..., peak, ..., 2, 1.
    length = window.length
    half = (length + 1) // 2
    ramp = list(range(1, half + 1))
    return torch.tensor(ramp + ramp[::-1][length % 2:], dtype=torch.float32)


def _relative(plan: WindowPlan, window: Window) -> torch.Tensor:
    # Closeness to the window's centre, floored at 0.01 (ComfyUI's "relative" bias).
    length = window.length
    centre = (length - 1) / 2
    half_span = (length - 1 + 1e-2) / 2
    return torch.tensor([max(1e-2, 1 - abs(pos - centre) / half_span) for pos in range(length)],
                        dtype=torch.float32)


def _linear(plan: WindowPlan, window: Window) -> torch.Tensor:
    # Ramps over the planned overlap on the sides that have a neighbour (batched windows do not
    # overlap, so they have none).
    weights = torch.ones(window.length)
    ramp = plan.overlap if plan.mode != "batched" else 0
    if ramp > 0:
        if window.start > 0:
            weights[:ramp] = torch.linspace(1e-37, 1, ramp)
        if window.end < plan.total:
            weights[-ramp:] = torch.linspace(1, 1e-37, ramp)
    return weights


BLENDINGS: dict[str, Blending] = {
    "uniform": Blending(_uniform),
    "linear": Blending(_linear),
    "pyramid": Blending(_pyramid),
    "relative": Blending(_relative),
    "unianimate": Blending(_uniform, private_frames=2),
}
WEIGHTINGS: tuple[str, ...] = tuple(BLENDINGS)  # the names, in the order a node lists them


def _blending(weighting: str) -> Blending:
    blending = BLENDINGS.get(weighting)
    if blending is None:
        raise InputError("window blending", f"'{weighting}' is not a known blending", f"one of {', '.join(BLENDINGS)}")
    return blending


def private_frame_count(plan: WindowPlan, weighting: str) -> int:
    """Leading frames private to each window after the first (2 for ``unianimate``), with several windows."""
    private = _blending(weighting).private_frames
    return private if len(plan) > 1 else 0


def check_blending(plan: WindowPlan, weighting: str) -> None:
    """Refuse a plan whose private frames would leave real frames uncovered (overlap < 2 with
    ``unianimate``): every frame must be blended from at least one window."""
    private = private_frame_count(plan, weighting)
    if private and plan.window <= private:
        raise InputError("window length (latent frames)",
                         f"{plan.window} leaves no frame to blend: with '{weighting}' blending the first "
                         f"{private} frames of every window after the first are its own",
                         f"a window of at least {private + 1} latent frames (with an overlap of at least "
                         f"{private}), or another blending")
    covered = [False] * plan.total
    for window in plan:
        skip = private if window.index > 0 else 0
        for frame in range(window.start + skip, window.end):
            covered[frame] = True
    if not all(covered):
        uncovered = [frame for frame, seen in enumerate(covered) if not seen]
        raise InputError("window overlap (latent frames)",
                         f"{plan.overlap} leaves latent frames {uncovered} covered only by windows' "
                         "private first frames",
                         f"an overlap of at least {private} with '{weighting}' blending")


def window_weights(plan: WindowPlan, window: Window, weighting: str) -> torch.Tensor:
    """Blending weight of each frame of ``window`` (float32, ``[window.length]``).

    Private frames (``unianimate``) get weight 0 here: they are not blended into
    the shared frames.
    """
    weights = _blending(weighting).weights(plan, window)
    private = private_frame_count(plan, weighting)
    if window.index > 0 and private:
        weights[:private] = 0.0
    return weights


# ---------------------------------------------------------------- state with private frames
def state_frames(plan: WindowPlan, weighting: str) -> int:
    """Frames of the sampler's state: the real frames, then the private slots."""
    return plan.total + private_frame_count(plan, weighting) * (len(plan) - 1)


def add_private_frames(x: torch.Tensor, plan: WindowPlan, weighting: str, noise: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, dim: int = 2) -> torch.Tensor:
    """The sampler's starting state: ``x`` followed by each later window's private frames.

    The private frames start as ``noise`` (``[..., 2 * (windows - 1), ...]`` along
    ``dim``) or, without it, as standard normal noise drawn from ``generator`` on
    its device (UniAnimate-DiT starts them from fresh noise, also when it
    denoises an input video). ``x`` is returned unchanged when there are none.
    """
    check_blending(plan, weighting)
    private = private_frame_count(plan, weighting)
    if x.shape[dim] != plan.total:
        raise ValueError(f"x has {x.shape[dim]} frames along dim {dim}, the plan has {plan.total}")
    count = private * (len(plan) - 1)
    if count == 0:
        return x
    shape = list(x.shape)
    shape[dim] = count
    if noise is None:
        device = generator.device if generator is not None else x.device
        noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    elif list(noise.shape) != shape:
        raise ValueError(f"private-frame noise has shape {list(noise.shape)}, expected {shape}")
    return torch.cat([x, noise.to(device=x.device, dtype=x.dtype)], dim=dim)


def real_frames(state: torch.Tensor, plan: WindowPlan, dim: int = 2) -> torch.Tensor:
    """The video's own frames of a sampler state (private frames dropped)."""
    return state.narrow(dim, 0, plan.total)


def state_indices(plan: WindowPlan, window: Window, weighting: str) -> list[int]:
    """Where each frame of ``window`` lives in the sampler's state (private frames in their slots)."""
    private = private_frame_count(plan, weighting)
    frames = list(range(window.start, window.end))
    if window.index > 0 and private:
        slot = plan.total + private * (window.index - 1)
        frames[:private] = range(slot, slot + private)
    return frames


def window_input(state: torch.Tensor, plan: WindowPlan, window: Window, weighting: str = "uniform",
                 dim: int = 2) -> torch.Tensor:
    """The latent ``window`` is denoised from: its frames of the state, private frames first."""
    index = torch.tensor(state_indices(plan, window, weighting), device=state.device)
    return state.index_select(dim, index)


# ---------------------------------------------------------------- blending
def _weight_view(weights: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = weights.shape[0]
    return weights.view(shape)


def _blend_into_state(predictions: Sequence[torch.Tensor], plan: WindowPlan, weighting: str,
                      dim: int) -> torch.Tensor:
    if len(predictions) != len(plan):
        raise ValueError(f"{len(predictions)} predictions for {len(plan)} windows")
    check_blending(plan, weighting)
    private = private_frame_count(plan, weighting)
    first = predictions[0]
    shape = list(first.shape)
    shape[dim] = state_frames(plan, weighting)
    total = torch.zeros(shape, dtype=torch.float32, device=first.device)
    weight_sum = torch.zeros(shape[dim], dtype=torch.float32, device=first.device)
    for prediction, window in zip(predictions, plan):
        if prediction.shape[dim] != window.length:
            raise ValueError(f"window {window.index} prediction has {prediction.shape[dim]} frames "
                             f"along dim {dim}, the window has {window.length}")
        weights = window_weights(plan, window, weighting).to(first.device)
        if window.index > 0 and private:
            weights[:private] = 1.0  # its own slots: nobody else writes them
        index = torch.tensor(state_indices(plan, window, weighting), device=first.device)
        total.index_add_(dim, index, prediction.float() * _weight_view(weights, prediction.ndim, dim))
        weight_sum.index_add_(0, index, weights)
    return (total / _weight_view(weight_sum, total.ndim, dim)).to(first.dtype)


WindowDenoise = Callable[[torch.Tensor, Window], torch.Tensor]
"""``(latent of one window, the window) -> prediction of the same shape``."""


def denoise_windowed(denoise: WindowDenoise, state: torch.Tensor, plan: WindowPlan, weighting: str = "uniform",
                     dim: int = 2, check_interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """One prediction over the whole ``state``, made window by window.

    ``state`` has :func:`state_frames` frames along ``dim`` (the real frames,
    then the private slots; see :func:`add_private_frames`). Each window's
    latent (:func:`window_input`) goes to ``denoise`` with the window, which
    cuts its conditions with :func:`slice_frames`; the predictions are blended
    with ``weighting``, and each private frame keeps its own window's
    prediction. Works for any prediction the solver steps linearly
    (velocity, x0, noise). ``check_interrupt`` (default: the host's) runs
    before each window, so a long step can be cancelled.
    """
    check_blending(plan, weighting)
    expected = state_frames(plan, weighting)
    if state.shape[dim] != expected:
        raise ValueError(f"state has {state.shape[dim]} frames along dim {dim}; a {len(plan)}-window plan over "
                         f"{plan.total} frames with '{weighting}' blending needs {expected} "
                         "(use add_private_frames)")
    check_interrupt = interrupt_check(check_interrupt)
    predictions = []
    for window in plan:
        check_interrupt()
        window_latent = window_input(state, plan, window, weighting, dim)
        prediction = denoise(window_latent, window)
        if prediction.shape != window_latent.shape:
            raise ValueError(f"window {window.index}: prediction shape {list(prediction.shape)} "
                             f"differs from its input's {list(window_latent.shape)}")
        predictions.append(prediction)
    return _blend_into_state(predictions, plan, weighting, dim)


# ---------------------------------------------------------------- conditions
def slice_frames(frames: Frames, window: Window, dim: int = 0, unit: str = "latent", per_frame: int = 1,
                 name: str = "condition") -> Frames:
    """The part of a time-indexed condition that belongs to ``window``.

    ``frames`` is a tensor with time along ``dim``, or a list/tuple with one
    item per frame (``dim`` ignored), or None (returned as is). ``unit`` says
    whether it is indexed by latent frames or by pixel frames (then the window
    takes pixel frames ``[4 * start, 4 * (end - 1) + 1)``). ``per_frame`` > 1
    cuts flattened layouts with that many entries per frame (e.g. tokens
    ``[B, T * h * w, C]`` with ``per_frame = h * w``). A condition too short
    for the window is an error naming ``name``.
    """
    if frames is None:
        return None
    first, stop = window.frames(unit)
    first, stop = first * per_frame, stop * per_frame
    available = frames.shape[dim] if isinstance(frames, torch.Tensor) else len(frames)
    if available < stop:
        needed = stop // per_frame
        raise InputError(name, f"has {available // per_frame} {unit} frames, but window {window.index} "
                               f"(latent frames {window.start}-{window.end - 1}) needs {needed}",
                         f"at least {needed} {unit} frames, one per frame of the video")
    if isinstance(frames, torch.Tensor):
        return frames.narrow(dim, first, stop - first)
    return frames[first:stop]


# ---------------------------------------------------------------- helpers
def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"{value!r} is not a whole number of {minimum} or more",
                         f"an integer of {minimum} or more")
