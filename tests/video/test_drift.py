"""Drift figures and colour correction per window (video/drift.py), on synthetic frames with known casts."""
from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from poseanimate.errors import InputError
from poseanimate.sampling.windows import plan_windows
from poseanimate.video.drift import correct_drift, correct_video_drift, crossfade_weights, decoded_spans
from poseanimate.video.lab import lab_to_srgb, srgb_to_lab

H, W = 40, 56


def reference_image() -> torch.Tensor:
    """A mid-range picture with smooth shading and a few edges, ``[1, H, W, 3]``."""
    y = torch.linspace(0, 1, H).view(H, 1)
    x = torch.linspace(0, 1, W).view(1, W)
    r = 0.45 + 0.12 * torch.sin(6 * x + 2 * y)
    g = 0.50 + 0.10 * torch.cos(5 * y - 3 * x)
    b = 0.40 + 0.12 * torch.sin(4 * x * y + 1)
    image = torch.stack([r, g, b], -1)
    image[8:20, 10:30] += torch.tensor([0.15, -0.1, 0.05])
    image[25:35, 35:50] -= 0.12
    texture = 0.05 * torch.sin(1.3 * torch.arange(W).float()).view(1, W) * torch.sin(
        1.1 * torch.arange(H).float()).view(H, 1)
    return (image + texture[..., None]).clamp(0, 1)[None]


def moving_frames(count: int) -> torch.Tensor:
    """The reference moving sideways (a circular shift keeps every colour statistic exactly)."""
    ref = reference_image()[0]
    return torch.stack([torch.roll(ref, shifts=p, dims=1) for p in range(count)])


def lab_shift(frames: torch.Tensor, dl: float = 0.0, da: float = 0.0, db: float = 0.0) -> torch.Tensor:
    lab = srgb_to_lab(frames)
    lab = lab + torch.tensor([dl, da, db])
    out = lab_to_srgb(lab)
    assert (srgb_to_lab(out) - lab).abs().max() < 2e-3  # the cast stays inside the sRGB gamut
    return out


# ---------------------------------------------------------------- Lab
def test_lab_known_values_and_round_trip():
    known = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]]))
    expected = torch.tensor([[100.0, 0, 0], [0, 0, 0], [53.2408, 80.0925, 67.2032], [53.3890, 0, 0]])
    torch.testing.assert_close(known, expected, atol=2e-3, rtol=0)
    rgb = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    assert (lab_to_srgb(srgb_to_lab(rgb)) - rgb).abs().max() < 1e-4
    cv2 = pytest.importorskip("cv2")
    theirs = torch.from_numpy(cv2.cvtColor(rgb.numpy()[None], cv2.COLOR_RGB2Lab)[0])
    assert (srgb_to_lab(rgb) - theirs).abs().max() < 0.5  # OpenCV interpolates tables


# ---------------------------------------------------------------- windows in pixel frames
def test_decoded_spans_and_crossfade():
    plan = plan_windows(9, 4, 2)  # latent windows [0,4) [2,6) [4,8) [5,9)
    assert decoded_spans(plan) == [(0, 13), (5, 21), (13, 29), (17, 33)]
    batched = plan_windows(9, 4, 0, "batched")  # back to back: decoded frames still all covered
    assert decoded_spans(batched) == [(0, 13), (13, 29), (29, 33)]
    weights = crossfade_weights([(0, 10), (6, 16)], 16)
    torch.testing.assert_close(weights.sum(1), torch.ones(16, dtype=torch.float64))
    assert weights[:6, 0].tolist() == [1.0] * 6 and weights[10:, 1].tolist() == [1.0] * 6
    assert [round(v, 6) for v in weights[6:10, 1].tolist()] == [0.2, 0.4, 0.6, 0.8]  # linear ramp
    gap = crossfade_weights([(0, 4), (8, 12)], 12)  # frames in no window follow the nearest one
    assert gap[4:6, 0].tolist() == [1.0, 1.0] and gap[6:8, 1].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- correction
def test_colour_cast_is_removed():
    plan = plan_windows(9, 4, 2)
    clean = moving_frames(33)
    cast = lab_shift(clean, da=6.0, db=-8.0)
    result = correct_drift(cast, plan, reference_image(), 1.0, log_figures=False)
    assert (result.frames - clean).abs().max() < 2e-3
    for window in result.windows:
        assert window.delta_e == pytest.approx(10.0, abs=0.02)  # |(6, -8)|
        assert window.delta_e_corrected < 0.02
    assert (cast - clean).abs().max() > 0.05


def test_known_shift_per_window_is_measured():
    clean = moving_frames(30)
    frames = torch.cat([clean[:10], lab_shift(clean[10:20], dl=5.0), lab_shift(clean[20:], da=3.0, db=4.0)])
    result = correct_drift(frames, [(0, 10), (10, 20), (20, 30)], reference_image(), 0.0, log_figures=False)
    assert [round(w.delta_e, 2) for w in result.windows] == [0.0, 5.0, 5.0]
    assert result.windows[1].mean_lab[0] - result.reference_lab[0] == pytest.approx(5.0, abs=0.02)
    assert result.frames is frames and all(w.delta_e_corrected is None for w in result.windows)


def test_strength_moves_part_of_the_way():
    clean = moving_frames(13)
    cast = lab_shift(clean, da=-6.0, db=8.0)
    half = correct_drift(cast, plan_windows(4, 4, 1), reference_image(), 0.5, log_figures=False)
    assert half.windows[0].delta_e_corrected == pytest.approx(5.0, abs=0.02)
    expected = lab_shift(clean, da=-3.0, db=4.0)
    assert (half.frames - expected).abs().max() < 2e-3


def test_contrast_is_matched_and_limited():
    clean = moving_frames(13)
    lab = srgb_to_lab(clean)
    mean = lab.mean(dim=(0, 1, 2))
    flat = lab_to_srgb((lab - mean) * 0.7 + mean)  # 30 % less contrast in every channel
    result = correct_drift(flat, plan_windows(4, 4, 1), reference_image(), 1.0, log_figures=False)
    assert (result.frames - clean).abs().max() < 3e-3
    limited = correct_drift(flat, plan_windows(4, 4, 1), reference_image(), 1.0, max_scale=1.2, log_figures=False)
    std = srgb_to_lab(limited.frames).std(dim=(0, 1, 2))
    torch.testing.assert_close(std, srgb_to_lab(flat).std(dim=(0, 1, 2)) * 1.2, rtol=2e-3, atol=0)


def test_gradual_drift_is_reduced_without_seams():
    plan = plan_windows(17, 5, 2)
    clean = moving_frames(65)
    frames = torch.stack([lab_shift(clean[p:p + 1], da=0.15 * p)[0] for p in range(65)])
    result = correct_drift(frames, plan, reference_image(), 1.0, log_figures=False)
    for window in result.windows:
        assert window.delta_e_corrected < 0.35 * window.delta_e + 0.05
    mean_a = srgb_to_lab(result.frames)[..., 1].mean(dim=(1, 2))
    assert (mean_a[1:] - mean_a[:-1]).abs().max() < 0.2  # the drift itself moves 0.15 a frame
    residual = mean_a - result.reference_lab[1]
    assert residual.abs().max() < 2.0 < 0.15 * 64


def test_chunks_alpha_and_in_place():
    plan = plan_windows(4, 4, 1)
    rgb = lab_shift(moving_frames(13), dl=-4.0, da=2.0)
    alpha = torch.rand(13, H, W, 1, generator=torch.Generator().manual_seed(1))
    frames = torch.cat([rgb, alpha], -1)
    one = correct_drift(frames, plan, reference_image(), 1.0, chunk=1, log_figures=False)
    seven = correct_drift(frames, plan, reference_image(), 1.0, chunk=7, log_figures=False)
    torch.testing.assert_close(one.frames, seven.frames, rtol=0, atol=1e-6)
    assert torch.equal(one.frames[..., 3:], alpha)
    buffer = frames.clone()
    in_place = correct_drift(buffer, plan, reference_image(), 1.0, out=buffer, log_figures=False)
    assert in_place.frames is buffer and torch.allclose(buffer, one.frames, atol=1e-6)
    bigger = F.interpolate(reference_image().permute(0, 3, 1, 2), scale_factor=2, mode="bilinear").permute(0, 2, 3, 1)
    resized = correct_drift(frames, plan, bigger, 1.0, log_figures=False)  # another size: resized for statistics
    assert resized.windows[0].delta_e == pytest.approx(one.windows[0].delta_e, abs=0.1)


# ---------------------------------------------------------------- structure figures and log
def blur(frames: torch.Tensor, size: int = 5) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2)
    x = F.avg_pool2d(F.pad(x, (size // 2,) * 4, mode="replicate"), size, stride=1)
    return x.permute(0, 2, 3, 1)


def test_structure_figures_and_log_lines(caplog):
    ref = reference_image()
    still = ref.expand(10, H, W, 3)
    frames = torch.cat([still, blur(still)])
    with caplog.at_level(logging.INFO, logger="poseanimate.video.drift"):
        result = correct_drift(frames, [(0, 10), (10, 20)], ref, 1.0)
    sharp, soft = result.windows
    assert sharp.ssim == pytest.approx(1.0, abs=1e-4) and sharp.gradient_correlation == pytest.approx(1.0, abs=1e-9)
    assert soft.ssim < 0.8 and soft.gradient_correlation < 0.5
    assert soft.delta_e < 1.0  # blur hardly changes the mean colour
    lines = [r.getMessage() for r in caplog.records if r.name == "poseanimate.video.drift"]
    assert lines == [f"drift {line}" for line in result.lines()] and len(lines) == 2
    assert lines[1].startswith("drift window 2/2 (frames 10-19): colour dE ")
    assert "->" in lines[1] and "luminance SSIM" in lines[1] and "gradient-histogram correlation" in lines[1]
    moving = correct_drift(moving_frames(10), [(0, 10)], ref, 0.0, log_figures=False).windows[0]
    assert moving.ssim < 0.8 and moving.gradient_correlation > 0.99  # motion lowers SSIM, not the detail figure
    assert math.isclose(moving.delta_e, 0.0, abs_tol=1e-3)


def test_node_entry_rebuilds_the_sampler_plan(caplog):
    cast = lab_shift(moving_frames(33), db=5.0)
    with caplog.at_level(logging.INFO, logger="poseanimate.video.drift"):
        result = correct_video_drift(cast, reference_image(), 1.0, 4, 2)
    assert [(w.first, w.stop) for w in result.windows] == decoded_spans(plan_windows(9, 4, 2))
    assert len(caplog.records) == 4 and all(w.delta_e_corrected < 0.02 for w in result.windows)
    with pytest.raises(InputError, match=r"images: has 32 frames.*decode to 29"):
        correct_video_drift(cast[:32], reference_image(), 1.0, 4, 2)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,pattern", [
    (lambda f, r: correct_drift(f[:12], plan_windows(4, 4, 1), r), r"images: has 12 frames.*decode to 13"),
    (lambda f, r: correct_drift(f, plan_windows(4, 4, 1), r, 1.5), r"strength: 1.5 is outside 0..1"),
    (lambda f, r: correct_drift(f, plan_windows(4, 4, 1), r[0, :, :, 0]), r"reference image: has shape"),
    (lambda f, r: correct_drift(f, [(0, 14)], r), r"windows:.*not frame ranges"),
    (lambda f, r: correct_drift((f * 255).to(torch.uint8), [(0, 13)], r), r"images: has dtype torch.uint8"),
    (lambda f, r: correct_drift(f, [(0, 13)], r, max_scale=0.5), r"max scale"),
    (lambda f, r: correct_drift(f, [(0, 13)], r, out=torch.zeros(2, 2)), r"output buffer"),
])
def test_bad_input(call, pattern):
    with pytest.raises(InputError, match=pattern):
        call(moving_frames(13), reference_image())
