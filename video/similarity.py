"""Structural likeness of frames to a reference image, on downscaled luminance.

Two figures, each answering a different question about drift:

* :func:`ssim` (structural similarity, Wang et al. 2004, Gaussian window 7,
  sigma 1.5): are things where they were? It falls when the background or
  the framing drifts, but also when the character moves, so read it relative
  to the first window.
* :func:`gradient_histogram` + :func:`histogram_correlation`: is there the
  same amount of detail? The histogram of gradient magnitudes does not care
  where the edges are, so a pose change barely moves it while blur, lost
  texture or over-sharpening do. The correlation is OpenCV's ``HISTCMP_CORREL``.

Both work on L* / 100 (see video/lab.py), downscaled with area averaging to
``size`` pixels on the short side, which makes them cheap and insensitive to
pixel noise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 7
SSIM_SIGMA = 1.5
HISTOGRAM_BINS = 32
GRADIENT_RANGE = 0.5  # |Sobel| / 8 of L*/100; a black-to-white step is 0.5
GRADIENT_FLOOR = 10 ** -3.5  # below: flat (0.03 L* per pixel)


def downscale(luminance: torch.Tensor, size: int, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """``[N, H, W]`` -> ``[N, h, w]`` with the short side ``size`` (never upscaled), or exactly ``shape``."""
    height, width = luminance.shape[-2:]
    if shape is None:
        scale = min(1.0, size / min(height, width))
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    if tuple(shape) == (height, width):
        return luminance.float()
    return F.interpolate(luminance[:, None].float(), size=tuple(shape), mode="area")[:, 0]


def _gaussian(window: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(window, dtype=torch.float32, device=like.device) - (window - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each frame ``[N, h, w]`` against ``reference`` ``[h, w]`` (values 0..1): ``[N]``."""
    window = min(SSIM_WINDOW, *frames.shape[-2:])
    window -= 1 - window % 2  # odd
    kernel = _gaussian(window, SSIM_SIGMA, frames)
    x = frames[:, None].float()
    y = reference[None, None].float().expand_as(x)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, kernel)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return value.flatten(1).mean(1)


def gradient_histogram(luminance: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Counts of Sobel gradient magnitudes of ``[N, h, w]`` summed over the frames: ``[bins]`` float64.

    The bins are spaced logarithmically from ``GRADIENT_FLOOR`` to ``GRADIENT_RANGE``
    (smaller magnitudes in the first bin, larger in the last): with linear bins
    the flat areas of a picture fill the first bins and hide a change in the
    edges, with logarithmic ones every scale of detail weighs in.
    """
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=luminance.device) / 8
    kernels = torch.stack([sobel, sobel.T])[:, None]
    x = F.pad(luminance[:, None].float(), (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(x, kernels).unbind(1)
    magnitude = torch.sqrt(gx * gx + gy * gy).flatten()
    edges = torch.logspace(math.log10(GRADIENT_FLOOR), math.log10(GRADIENT_RANGE), bins - 1,
                           device=luminance.device)
    return torch.bincount(torch.bucketize(magnitude, edges), minlength=bins).double().cpu()


def histogram_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two histograms (1: the same shape; scale-free). 1.0 when both are flat."""
    a, b = a.double() / a.sum().clamp_min(1), b.double() / b.sum().clamp_min(1)
    a, b = a - a.mean(), b - b.mean()
    denominator = torch.sqrt((a * a).sum() * (b * b).sum())
    if float(denominator) == 0.0:
        return 1.0 if torch.equal(a, b) else 0.0
    return float((a * b).sum() / denominator)
