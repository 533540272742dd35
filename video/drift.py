"""Drift of long videos, window by window: figures, and a colour correction towards the reference.

Windows are sampled one after another in the model's eyes (each sees its own
noise and its own slice of the poses), so over a long video the colours and
detail can wander away from the reference image, window by window. This module
measures that on the decoded frames and can pull each window's colours back.

Which frames are a window's. Window ``w`` denoises latent frames ``[s, e)``;
as a clip of its own its conditions are pixel frames ``[4s, 4(e-1) + 1)``
(:meth:`~..sampling.windows.Window.frames`). In the *decoded video* latent
frame ``t >= 1`` becomes pixel frames ``4t-3 .. 4t``, so the window's frames
are ``[4s - 3, 4(e-1) + 1)`` (``[0, ...)`` for ``s = 0``): three more in front,
all inside the overlap with the previous window for the usual plans. Using
these keeps every frame in some window also for back-to-back (``batched``)
plans, which would leave three frames of each seam out otherwise.

Correction (``strength`` 0..1). Per window, per Lab channel, the affine map
that gives the window's frames the reference's mean and standard deviation
(Reinhard-style statistics transfer): ``v -> (v - mean_w) * std_ref / std_w +
mean_ref``, the std ratio limited to ``1/max_scale .. max_scale``, mixed with
the identity by ``strength``. Where windows overlap, the maps cross-fade
linearly over the shared frames (the maps are blended, not the images), so the
correction has no seams. Statistics over whole windows, not frames: a moving
character changes one frame's statistics more than the colour drift does.

Figures per window (:class:`WindowDrift`), measured before the correction
(and the colour one after it) on the frames and the reference downscaled to
``structure_size`` pixels on the short side (area averaging), which keeps them
cheap: ``delta_e``, ΔE76 between the window's mean Lab colour and the
reference's (a colour cast of the window as a whole); ``ssim`` and
``gradient_correlation`` (see video/similarity.py) on luminance, the SSIM a
mean over the window's frames, the histogram summed over them. The statistics
the correction matches are taken at full size. Each window's figures are
logged in one line (``logging.info``).

Memory: frames are read ``chunk`` at a time (moved to ``device`` for the
arithmetic) in two passes, statistics then correction, and written into an
output buffer of the input's size and dtype (``out``; pass the input itself to
correct in place). Only per-frame statistics are kept in between.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch

from .. import host
from ..errors import InputError
from ..models.wan.latent_space import latent_frames, pixel_frames
from ..sampling.windows import WindowPlan, plan_windows
from .lab import lab_to_srgb, srgb_to_lab
from .similarity import downscale, gradient_histogram, histogram_correlation, ssim

log = logging.getLogger(__name__)

Spans = Union[WindowPlan, Sequence[tuple[int, int]]]


@dataclass(frozen=True)
class WindowDrift:
    """How far window ``index``'s frames ``[first, stop)`` (pixel frames) are from the reference."""

    index: int
    first: int
    stop: int
    delta_e: float                   # ΔE76 of the mean Lab colours, before correction
    delta_e_corrected: float | None  # the same after correction (None without one)
    ssim: float                      # mean SSIM of downscaled luminance, 1 = same picture
    gradient_correlation: float      # gradient-magnitude histograms' correlation, 1 = same detail
    mean_lab: tuple[float, float, float]
    std_lab: tuple[float, float, float]

    def describe(self, windows: int) -> str:
        """One readable line, e.g. ``window 2/5 (frames 65-148): colour dE 6.3 -> 0.9, ...``."""
        colour = f"{self.delta_e:.2f}"
        if self.delta_e_corrected is not None:
            colour += f" -> {self.delta_e_corrected:.2f}"
        return (f"window {self.index + 1}/{windows} (frames {self.first}-{self.stop - 1}): colour dE {colour}, "
                f"luminance SSIM {self.ssim:.3f}, gradient-histogram correlation {self.gradient_correlation:.3f}")


@dataclass(frozen=True)
class DriftResult:
    """The frames (corrected, or the input itself when ``strength`` is 0) and each window's figures."""

    frames: torch.Tensor
    windows: tuple[WindowDrift, ...]
    reference_lab: tuple[float, float, float]

    def lines(self) -> list[str]:
        return [w.describe(len(self.windows)) for w in self.windows]


# ---------------------------------------------------------------- windows in pixel frames
def decoded_spans(plan: WindowPlan) -> list[tuple[int, int]]:
    """Each window's frames in the decoded video: ``[max(0, 4s - 3), 4(e - 1) + 1)``."""
    return [(max(0, 4 * w.start - 3), pixel_frames(w.end)) for w in plan]


def crossfade_weights(spans: Sequence[tuple[int, int]], frames: int) -> torch.Tensor:
    """``[frames, windows]`` weights, each row summing to 1: 1 inside a window's own frames, linear
    ramps across the frames it shares with its neighbours, the nearest window for frames in none."""
    order = sorted(range(len(spans)), key=lambda k: spans[k])
    weights = torch.zeros(frames, len(spans), dtype=torch.float64)
    for position, k in enumerate(order):
        first, stop = spans[k]
        before = max(0, spans[order[position - 1]][1] - first) if position > 0 else 0
        after = max(0, stop - spans[order[position + 1]][0]) if position + 1 < len(order) else 0
        for p in range(max(0, first), min(frames, stop)):
            weights[p, k] = min(1.0, (p - first + 1) / (before + 1), (stop - p) / (after + 1))
    for p in range(frames):
        if weights[p].sum() == 0:
            nearest = min(range(len(spans)), key=lambda k: min(abs(p - spans[k][0]), abs(p - spans[k][1] + 1)))
            weights[p, nearest] = 1.0
    return weights / weights.sum(1, keepdim=True)


def _spans(windows: Spans, frames: int) -> list[tuple[int, int]]:
    if isinstance(windows, WindowPlan):
        expected = pixel_frames(windows.total)
        if frames != expected:
            raise InputError("images", f"has {frames} frames, but the window plan covers {windows.total} latent "
                                       f"frames, which decode to {expected}",
                             f"the {expected} decoded frames of the sampled video, uncut")
        return decoded_spans(windows)
    spans = [(int(a), int(b)) for a, b in windows]
    if not spans or any(not 0 <= a < b <= frames for a, b in spans):
        raise InputError("windows", f"{spans} are not frame ranges inside the {frames} frames",
                         "at least one [first, stop) range with 0 <= first < stop <= the frame count")
    return spans


# ---------------------------------------------------------------- checks
def _check_images(frames: torch.Tensor) -> None:
    if not torch.is_tensor(frames) or frames.dim() != 4 or frames.shape[-1] not in (3, 4) or frames.shape[0] == 0:
        raise InputError("images", f"has shape {list(getattr(frames, 'shape', []))}",
                         "video frames [N, H, W, 3] in 0..1 (ComfyUI IMAGE)")
    if not frames.is_floating_point():
        raise InputError("images", f"has dtype {frames.dtype}", "float frames in 0..1 (ComfyUI IMAGE)")


def _reference_image(reference: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    if torch.is_tensor(reference) and reference.dim() == 4 and reference.shape[0] == 1:
        reference = reference[0]
    if not torch.is_tensor(reference) or reference.dim() != 3 or reference.shape[-1] not in (3, 4):
        raise InputError("reference image", f"has shape {list(getattr(reference, 'shape', []))}",
                         "one image [1, H, W, 3] in 0..1 (ComfyUI IMAGE)")
    image = reference[..., :3].to(device=device, dtype=torch.float32)
    if tuple(image.shape[:2]) != (height, width):  # statistics only: a plain resize is enough
        image = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(height, width),
                                                mode="bilinear", align_corners=False, antialias=True)[0]
        image = image.permute(1, 2, 0).clamp(0.0, 1.0)
    return image


def _check_strength(strength: float, max_scale: float) -> None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise InputError("colour correction strength", f"{strength!r} is outside 0..1",
                         "0 (measure only) to 1 (match the reference's colour statistics fully)")
    if not max_scale >= 1.0:
        raise InputError("colour correction max scale", f"{max_scale!r} is below 1", "1 (means only) or more")


# ---------------------------------------------------------------- the work
def _moments(lab: torch.Tensor) -> torch.Tensor:
    """Per frame ``[n, 3, 2]``: the sum and the sum of squares of each Lab channel (float64)."""
    flat = lab.flatten(1, 2).double()
    return torch.stack([flat.sum(1), (flat * flat).sum(1)], dim=-1).cpu()


def _mean_std(moments: torch.Tensor, pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per Lab channel over all pixels of ``[n, 3, 2]`` frame moments."""
    total = moments.sum(0)
    count = moments.shape[0] * pixels
    mean = total[:, 0] / count
    std = (total[:, 1] / count - mean * mean).clamp_min(0).sqrt()
    return mean, std


def correct_drift(frames: torch.Tensor, windows: Spans, reference: torch.Tensor, strength: float = 1.0, *,
                  out: torch.Tensor | None = None, device: torch.device | str | None = None, chunk: int = 16,
                  max_scale: float = 2.0, structure_size: int = 64, log_figures: bool = True,
                  check_interrupt: Callable[[], None] | None = None) -> DriftResult:
    """Measure each window's drift from ``reference`` and correct its colours by ``strength``.

    ``frames``: the decoded video, IMAGE ``[N, H, W, 3 or 4]`` in 0..1 (alpha kept
    as is). ``windows``: the sampler's :class:`~..sampling.windows.WindowPlan`
    (``N`` must be its decoded length), or ``[first, stop)`` pixel-frame ranges
    (e.g. Wan2.2-Animate's clips). ``reference``: the reference image
    ``[1, H', W', 3]`` (resized to the frames' size when it differs).
    ``strength`` 0 only measures and returns ``frames`` itself. See the module
    docstring for the maths; ``device`` defaults to the frames' device. ``check_interrupt`` (default:
    the host's) runs before every chunk of both passes.
    """
    check = host.interrupt_check(check_interrupt)
    _check_images(frames)
    _check_strength(strength, max_scale)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError("chunk", f"{chunk!r} is not a whole number of 1 or more", "frames per chunk, e.g. 16")
    count, height, width = frames.shape[:3]
    spans = _spans(windows, count)
    device = torch.device(device) if device is not None else frames.device
    pixels = height * width

    ref = _reference_image(reference, height, width, device)
    ref_mean, ref_std = _mean_std(_moments(srgb_to_lab(ref)[None]), pixels)  # full size: for the correction
    small_shape = tuple(downscale(ref[None, ..., 0], structure_size).shape[-2:])
    ref_small = srgb_to_lab(_downscale_rgb(ref[None], small_shape))
    small_pixels = small_shape[0] * small_shape[1]
    ref_small_mean = _mean_std(_moments(ref_small), small_pixels)[0]
    ref_luma = ref_small[0, ..., 0] / 100.0
    ref_histogram = gradient_histogram(ref_luma[None])

    # pass 1: per-frame colour moments (full size and small), SSIM and gradient histograms
    moments = torch.zeros(count, 3, 2, dtype=torch.float64)
    small_moments = torch.zeros(count, 3, 2, dtype=torch.float64)
    frame_ssim = torch.zeros(count, dtype=torch.float64)
    histograms = torch.zeros(count, ref_histogram.shape[0], dtype=torch.float64)
    for start in range(0, count, chunk):
        check()
        rgb = frames[start:start + chunk, ..., :3].to(device)
        n = rgb.shape[0]
        moments[start:start + n] = _moments(srgb_to_lab(rgb))
        small = srgb_to_lab(_downscale_rgb(rgb, small_shape))
        small_moments[start:start + n] = _moments(small)
        luma = small[..., 0] / 100.0
        frame_ssim[start:start + n] = ssim(luma, ref_luma).double().cpu()
        for i in range(n):
            histograms[start + i] = gradient_histogram(luma[i:i + 1])
        del rgb, small, luma

    stats = [_mean_std(moments[first:stop], pixels) for first, stop in spans]

    corrected_moments = None
    result = frames
    if strength > 0:
        # per-window affine maps v -> a v + b per Lab channel, cross-faded per frame
        gains, offsets = [], []
        for mean, std in stats:
            scale = torch.where(std > 1e-6, ref_std / std.clamp_min(1e-6), torch.ones_like(std))
            scale = scale.clamp(1.0 / max_scale, max_scale)
            gains.append(1.0 - strength + strength * scale)
            offsets.append(strength * (ref_mean - mean * scale))
        mix = crossfade_weights(spans, count)  # [N, windows]
        frame_gain = (mix @ torch.stack(gains)).float()  # [N, 3]
        frame_offset = (mix @ torch.stack(offsets)).float()
        result = out if out is not None else torch.empty_like(frames)
        if tuple(result.shape) != tuple(frames.shape) or not result.is_floating_point():
            raise InputError("output buffer", f"has shape {list(result.shape)} and dtype {result.dtype}",
                             f"a float buffer of the frames' shape {list(frames.shape)}")
        corrected_moments = torch.zeros(count, 3, 2, dtype=torch.float64)
        for start in range(0, count, chunk):
            check()
            rgb = frames[start:start + chunk].to(device)
            n = rgb.shape[0]
            gain = frame_gain[start:start + n].to(device).view(n, 1, 1, 3)
            offset = frame_offset[start:start + n].to(device).view(n, 1, 1, 3)
            fixed = lab_to_srgb(srgb_to_lab(rgb[..., :3]) * gain + offset)
            corrected_moments[start:start + n] = _moments(srgb_to_lab(_downscale_rgb(fixed, small_shape)))
            if rgb.shape[-1] == 4:
                fixed = torch.cat([fixed, rgb[..., 3:].float()], dim=-1)
            result[start:start + n] = fixed.to(device=result.device, dtype=result.dtype)
            del rgb, fixed

    figures = []
    for index, ((first, stop), (mean, std)) in enumerate(zip(spans, stats)):
        after = None
        if corrected_moments is not None:
            after = _delta_e(_mean_std(corrected_moments[first:stop], small_pixels)[0], ref_small_mean)
        figures.append(WindowDrift(
            index=index, first=first, stop=stop,
            delta_e=_delta_e(_mean_std(small_moments[first:stop], small_pixels)[0], ref_small_mean),
            delta_e_corrected=after, ssim=float(frame_ssim[first:stop].mean()),
            gradient_correlation=histogram_correlation(histograms[first:stop].sum(0), ref_histogram),
            mean_lab=tuple(float(v) for v in mean), std_lab=tuple(float(v) for v in std)))
    drift = DriftResult(result, tuple(figures), tuple(float(v) for v in ref_mean))
    if log_figures:
        for line in drift.lines():
            log.info("drift %s", line)
    return drift


def correct_video_drift(frames: torch.Tensor, reference: torch.Tensor, strength: float, window_length: int,
                        window_overlap: int, *, device: torch.device | str | None = None) -> DriftResult:
    """:func:`correct_drift` for a node: the sampler's window plan rebuilt from the frame count
    (``N = 4(T - 1) + 1`` decoded frames: ``T`` latent frames) and its window settings."""
    _check_images(frames)
    plan = plan_windows(latent_frames(frames.shape[0]), window_length, window_overlap)
    return correct_drift(frames, plan, reference, strength, device=device)


def _downscale_rgb(rgb: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``[n, H, W, 3]`` -> ``[n, h, w, 3]`` by area averaging (as is when the size already matches)."""
    if tuple(rgb.shape[1:3]) == tuple(shape):
        return rgb.float()
    small = torch.nn.functional.interpolate(rgb.permute(0, 3, 1, 2).float(), size=tuple(shape), mode="area")
    return small.permute(0, 2, 3, 1)


def _delta_e(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.sqrt(float(((a - b) ** 2).sum()))
