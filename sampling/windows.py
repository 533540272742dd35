"""Long videos: overlapping windows inside each step, or whole clips one after another.

Two ways past the model's native length, both from the references:

* **Windows** (UniAnimate-DiT's long-video pipeline, ComfyUI's context windows):
  at every denoising step the full latent ``[B, C, T, H, W]`` is cut into
  overlapping windows of latent frames, each window is denoised on its own, and
  the predictions are blended back into one full-length prediction.
  :func:`plan_windows` places the windows, :func:`slice_frames` cuts every
  time-indexed condition to a window, :func:`denoise_windowed` runs and blends.
* **Clips** (Wan2.2-Animate): whole sampling runs of ``clip_len`` pixel frames,
  each guided by the last decoded frames of the previous one.
  :func:`plan_clips`, :func:`pad_frames` and :func:`assemble_clips`.

Blending weights (``WEIGHTINGS``): ``uniform``, ``linear``, ``pyramid`` and
``relative`` are ComfyUI core's ``flat``, ``overlap-linear``, ``pyramid`` and
``relative`` fuse methods (same formulas); ``unianimate`` is UniAnimate-DiT's
rule: uniform weights, and the first ``UNIANIMATE_PRIVATE_FRAMES`` latent frames
of every window after the first are *private* to that window.

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

Frame counts. Wan's VAE maps ``4k + 1`` pixel frames to ``k + 1`` latent
frames: latent frame 0 is pixel frame 0, latent frame ``t >= 1`` covers pixel
frames ``4t - 3 .. 4t``. A window of latent frames ``[s, e)`` is sampled as a
clip of its own, so its conditions in pixel frames are ``[4s, 4(e - 1) + 1)``
(UniAnimate slices its pose video exactly so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, Union

import torch

from ..errors import InputError
from .loop import interrupt_check

PLAN_MODES: tuple[str, ...] = ("static", "batched")
WEIGHTINGS: tuple[str, ...] = ("uniform", "linear", "pyramid", "relative", "unianimate")

UNIANIMATE_WINDOW = 21  # latent frames (81 pixel frames), UniAnimate-DiT's context_size
UNIANIMATE_OVERLAP = 4  # latent frames, its context_overlap
UNIANIMATE_PRIVATE_FRAMES = 2  # leading latent frames private to each window after the first

ANIMATE_CLIP_LEN = 77  # pixel frames per Wan2.2-Animate clip
ANIMATE_REFERT_NUMS: tuple[int, ...] = (1, 5)  # temporal-reference frame counts it was trained with

Frames = Union[torch.Tensor, Sequence[Any], None]


# ---------------------------------------------------------------- frame counts
def latent_frames(pixel_frames: int) -> int:
    """Latent frames Wan's VAE makes from ``pixel_frames``: ``1 + (pixel_frames - 1) // 4``."""
    _check_count("pixel frames", pixel_frames, 1)
    return 1 + (pixel_frames - 1) // 4


def pixel_frames(latent_frames: int) -> int:
    """Pixel frames decoded from ``latent_frames``: ``4 * (latent_frames - 1) + 1``."""
    _check_count("latent frames", latent_frames, 1)
    return 4 * (latent_frames - 1) + 1


def round_pixel_frames(frames: int, name: str = "frames") -> tuple[int, str | None]:
    """``frames`` moved to the nearest ``4k + 1`` (ties go down), and a notice when it moved."""
    _check_count(name, frames, 1)
    remainder = (frames - 1) % 4
    rounded = frames - remainder if remainder <= 2 else frames + 4 - remainder
    if rounded == frames:
        return frames, None
    return rounded, (f"{name}: {frames} is not of the form 4k+1 that Wan's VAE needs; "
                     f"using {rounded} ({latent_frames(rounded)} latent frames)")


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
            return 4 * self.start, 4 * (self.end - 1) + 1
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


# ---------------------------------------------------------------- weights
def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise InputError("window blending", f"'{weighting}' is not a known blending", f"one of {', '.join(WEIGHTINGS)}")


def private_frame_count(plan: WindowPlan, weighting: str) -> int:
    """Leading frames private to each window after the first: 2 for ``unianimate`` with several windows."""
    _check_weighting(weighting)
    return UNIANIMATE_PRIVATE_FRAMES if weighting == "unianimate" and len(plan) > 1 else 0


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
    _check_weighting(weighting)
    length = window.length
    if weighting in ("uniform", "unianimate"):
        weights = torch.ones(length)
        private = private_frame_count(plan, weighting)
        if window.index > 0 and private:
            weights[:private] = 0.0
        return weights
    if weighting == "pyramid":
        # FreeNoise-style: 1, 2, ..., peak, ..., 2, 1.
        half = (length + 1) // 2
        ramp = list(range(1, half + 1))
        return torch.tensor(ramp + ramp[::-1][length % 2:], dtype=torch.float32)
    if weighting == "relative":
        # Closeness to the window's centre, floored at 0.01 (ComfyUI's "relative" bias).
        centre = (length - 1) / 2
        half_span = (length - 1 + 1e-2) / 2
        return torch.tensor([max(1e-2, 1 - abs(pos - centre) / half_span) for pos in range(length)],
                            dtype=torch.float32)
    # linear: ramps over the planned overlap on the sides that have a neighbour
    # (batched windows do not overlap, so they have none).
    weights = torch.ones(length)
    ramp = plan.overlap if plan.mode != "batched" else 0
    if ramp > 0:
        if window.start > 0:
            weights[:ramp] = torch.linspace(1e-37, 1, ramp)
        if window.end < plan.total:
            weights[-ramp:] = torch.linspace(1, 1e-37, ramp)
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


def blend(predictions: Sequence[torch.Tensor], plan: WindowPlan, weighting: str = "uniform",
          dim: int = 2) -> torch.Tensor:
    """Blend per-window predictions into one over the plan's ``total`` frames.

    A frame's value is the weighted mean of the windows that cover it (weights
    from :func:`window_weights`). Private frames are left out; use
    :func:`denoise_windowed` to keep them.
    """
    _check_weighting(weighting)
    return real_frames(_blend_into_state(predictions, plan, weighting, dim), plan, dim)


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


def windowed_denoiser(model: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], plan: WindowPlan,
                      weighting: str, cut_condition: Callable[[Any, Window], Any], dim: int = 2,
                      check_interrupt: Callable[[], None] | None = None,
                      ) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
    """Wrap a ``(x, timestep, cond) -> prediction`` model so it runs window by window.

    ``cut_condition(cond, window)`` returns the conditioning for one window
    (built with :func:`slice_frames`). The wrapper has the model's own
    signature, so the sampling loop and guidance use it unchanged, on a state
    from :func:`add_private_frames`.
    """
    def run(state: torch.Tensor, timestep: torch.Tensor, cond: Any) -> torch.Tensor:
        return denoise_windowed(lambda latent, window: model(latent, timestep, cut_condition(cond, window)),
                                state, plan, weighting, dim, check_interrupt)

    return run


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


# ---------------------------------------------------------------- Wan2.2-Animate clips
@dataclass(frozen=True)
class Clip:
    """Frames ``[start, end)`` of the padded input, sampled as one run.

    Its first ``reference`` frames repeat the previous clip's last output
    frames, which guide it (0 for the first clip); its output keeps frames
    ``[start + reference, end)``.
    """

    index: int
    start: int
    end: int
    reference: int


@dataclass(frozen=True)
class ClipPlan:
    """Clips over ``padded`` input frames, the video's ``total`` frames padded by ping-pong."""

    clips: tuple[Clip, ...]
    total: int
    padded: int
    clip_len: int
    refert_num: int
    notice: str | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __getitem__(self, index: int) -> Clip:
        return self.clips[index]


def _check_clip_args(clip_len: int, refert_num: int) -> None:
    _check_count("clip length (frames)", clip_len, 2)
    if (clip_len - 1) % 4 != 0:
        raise InputError("clip length (frames)", f"{clip_len} is not of the form 4k+1",
                         f"4k+1 frames such as {ANIMATE_CLIP_LEN} or 81")
    if refert_num not in ANIMATE_REFERT_NUMS:
        raise InputError("temporal reference frames", f"{refert_num!r} is not supported",
                         "1 or 5 (the values Wan2.2-Animate was trained with)")
    if refert_num >= clip_len:
        raise InputError("clip length (frames)", f"{clip_len} is not longer than the {refert_num} "
                         "temporal reference frames", f"more than {refert_num} frames")


def padded_length(total: int, clip_len: int = ANIMATE_CLIP_LEN, refert_num: int = 1) -> int:
    """Frames the input is padded to so that whole clips cover it (Wan2.2-Animate's ``get_valid_len``).

    Clips advance by ``clip_len - refert_num``; a video of at most
    ``refert_num`` frames (which the reference cannot run) fills one clip.
    """
    _check_count("video length (frames)", total, 1)
    _check_clip_args(clip_len, refert_num)
    if total <= refert_num:
        return clip_len
    advance = clip_len - refert_num
    rest = (total - refert_num) % advance
    return total if rest == 0 else total + advance - rest


def plan_clips(total: int, clip_len: int = ANIMATE_CLIP_LEN, refert_num: int = 1) -> ClipPlan:
    """Wan2.2-Animate's clips over ``total`` pixel frames.

    Clip ``i`` covers padded frames ``[i * (clip_len - refert_num), ... + clip_len)``;
    each clip after the first starts on the previous clip's last ``refert_num``
    frames, takes those decoded frames as its temporal reference and drops them
    from its output. The joined output is cut back to ``total`` frames.
    """
    padded = padded_length(total, clip_len, refert_num)
    advance = clip_len - refert_num
    count = (padded - refert_num) // advance
    clips = tuple(Clip(i, i * advance, i * advance + clip_len, refert_num if i > 0 else 0) for i in range(count))
    notice = None
    if padded != total:
        notice = (f"{total} frames padded to {padded} by playing the input back and forth, to fill "
                  f"{count} clip(s) of {clip_len}; the result is cut back to {total} frames")
    return ClipPlan(clips, total, padded, clip_len, refert_num, notice)


def pingpong_indices(length: int, target: int) -> list[int]:
    """Source frame for each of ``target`` frames: ``0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...``.

    Wan2.2-Animate's ``inputs_padding`` order (a one-frame input repeats, where
    the reference fails).
    """
    _check_count("input frames", length, 1)
    if length == 1:
        return [0] * target
    period = 2 * (length - 1)
    return [k % period if k % period < length else period - k % period for k in range(target)]


def pad_frames(frames: Frames, target: int, dim: int = 0) -> Frames:
    """``frames`` (a tensor with time along ``dim``, or a list) padded to ``target`` by ping-pong."""
    if frames is None:
        return None
    length = frames.shape[dim] if isinstance(frames, torch.Tensor) else len(frames)
    order = pingpong_indices(length, target)
    if isinstance(frames, torch.Tensor):
        return frames.index_select(dim, torch.tensor(order, device=frames.device))
    return [frames[i] for i in order]


def assemble_clips(outputs: Sequence[torch.Tensor], plan: ClipPlan, dim: int = 0) -> torch.Tensor:
    """The video from each clip's decoded output: reference frames dropped, cut to ``plan.total``."""
    if len(outputs) != len(plan):
        raise ValueError(f"{len(outputs)} clip outputs for {len(plan)} clips")
    parts = []
    for output, clip in zip(outputs, plan):
        if output.shape[dim] != clip.end - clip.start:
            raise ValueError(f"clip {clip.index} output has {output.shape[dim]} frames along dim {dim}, "
                             f"expected {clip.end - clip.start}")
        parts.append(output.narrow(dim, clip.reference, output.shape[dim] - clip.reference))
    return torch.cat(parts, dim=dim).narrow(dim, 0, plan.total)


# ---------------------------------------------------------------- helpers
def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"{value!r} is not a whole number of {minimum} or more",
                         f"an integer of {minimum} or more")
