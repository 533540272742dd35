"""Our Wan 2.1 VAE against the official one (committed fixture), and streaming.

The fixture comes from tests/fixtures/make_wan_vae_parity.py (official
``WanVAE_``, tiny config, float32, 1/5/9 frames at 32x48). Measured
(2026-11-21, torch 2.13 CPU): encode max relative error 1.2e-7 .. 2.3e-7,
decode 3.0e-6 .. 5.5e-6; the tests allow 1e-4.

Streaming without tiling runs the same per-chunk code as the whole-video
methods, so it matches them to float rounding (asserted: 1e-5, measured 0).

Tiling: with a pixel-local stand-in VAE, tiled == whole to 1e-6 (the ramps
sum to one and every tile lands in place). With a real (tiny, random,
well-conditioned) Wan VAE the tiles cannot see each other's context (3x3
convs over many layers, and the per-frame attention is global), so tiling
changes the result. Measured on ``tiny_vae(0)``, a 5-frame 64x96 video
(latent 8x12), tiles of 6 latent cells overlapping by 3 (2x3 tiles): encode
max relative error 0.255, mean 0.174; decode max 0.341, mean 0.126 (seeds 1
and 2 give up to 0.28/0.19 and 0.49/0.29; a 9-frame 96x128 video with tiles
of 8 overlapping by 4 gives 0.19/0.10 and 0.29/0.09). The test bounds are the
seed-0 figures plus ~20 %: TILED_BOUNDS. They guard against
regressions, not a quality promise for trained weights (a trained VAE is far
more local than random weights, and wider overlaps shrink the error).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_wan_vae as tiny  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.models.wan import vae_streaming as vs  # noqa: E402
from poseanimate.models.wan.latent_space import WAN21_LATENT_MEAN, WAN21_LATENT_STD, to_vae_space  # noqa: E402
from poseanimate.models.wan.vae import WanVAEConfig  # noqa: E402

PARITY_TOLERANCE = 1e-4
STREAM_TOLERANCE = 1e-5
# (max relative, mean relative) error of tiled vs whole, see the module docstring
TILED_BOUNDS = {"encode": (0.31, 0.21), "decode": (0.41, 0.16)}
NO_PROGRESS = dict(progress=lambda done, total: None, check_interrupt=lambda: None)


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def mean_rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().mean() / ref.float().abs().mean()).item()


@pytest.fixture(scope="module")
def parity():
    tensors, metadata = tiny.load_parity()
    return tensors, tiny.parity_vae(tensors, metadata)


@pytest.fixture(scope="module")
def tiny_model():
    return tiny.tiny_vae(0)


# ---------------------------------------------------------------- parity with the official VAE
@pytest.mark.parametrize("frames", [1, 5, 9])
def test_encode_matches_official(parity, frames):
    tensors, vae = parity
    latent = vae.encode(tensors[f"f{frames}/video"].float())
    ref = tensors[f"f{frames}/latent"]
    assert latent.shape == ref.shape == (ref.shape[0], 16, 1 + (frames - 1) // 4, 4, 6)
    assert latent.dtype == torch.float32
    assert rel(latent, ref) < PARITY_TOLERANCE


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_decode_matches_official(parity, frames):
    tensors, vae = parity
    ref = tensors[f"f{frames}/decoded"]
    raw = vae.decode_raw(to_vae_space(tensors[f"f{frames}/latent"]))
    assert raw.shape == ref.shape and ref.shape[2] == frames
    assert rel(raw, ref) < PARITY_TOLERANCE
    assert ref.abs().max() > 1.0  # the clamp below has work to do
    clamped = vae.decode(tensors[f"f{frames}/latent"])
    assert clamped.min() >= -1 and clamped.max() <= 1
    assert (clamped - ref.clamp(-1, 1)).abs().max() < PARITY_TOLERANCE * ref.abs().max()


def test_normalisation_is_wans(parity):
    tensors, vae = parity
    video = tensors["f5/video"].float()
    raw, latent = vae.encode_raw(video), vae.encode(video)
    mean = torch.tensor(WAN21_LATENT_MEAN).view(1, 16, 1, 1, 1)
    std = torch.tensor(WAN21_LATENT_STD).view(1, 16, 1, 1, 1)
    assert torch.allclose(latent, (raw - mean) * (1 / std), rtol=0, atol=1e-6)


def test_trailing_frames_are_not_encoded(parity):
    """Like Wan, 7 frames encode as their first 5 (1 + 4k)."""
    tensors, vae = parity
    video = tensors["f9/video"].float()
    assert WanVAEConfig().latent_frames(7) == 2 and WanVAEConfig().pixel_frames(2) == 5
    assert torch.equal(vae.encode(video[:, :, :7]), vae.encode(video[:, :, :5]))


def test_bf16_compute_stays_close(parity):
    """bf16 layers on the float32 fixture: measured 7.4e-2 max relative error (a random tiny model)."""
    tensors, vae = parity
    latent = tensors["f5/latent"]
    vae16 = tiny.parity_vae(*tiny.load_parity())
    vae16.compute_dtype = torch.bfloat16
    out = vae16.decode_raw(to_vae_space(latent))
    assert out.dtype == torch.float32
    assert 1e-4 < rel(out, tensors["f5/decoded"]) < 0.12


# ---------------------------------------------------------------- streaming
def test_streamed_encode_equals_whole(parity):
    tensors, vae = parity
    video = tensors["f9/video"].float()
    whole = vae.encode(video)
    streamed = vs.encode_video(vae, video, **NO_PROGRESS)
    assert streamed.device.type == "cpu"
    assert rel(streamed, whole) <= STREAM_TOLERANCE
    raw = vs.encode_video(vae, video, normalize=False, cache_device="cpu", **NO_PROGRESS)
    assert rel(raw, vae.encode_raw(video)) <= STREAM_TOLERANCE


def test_encode_images_takes_comfy_layout_and_lists(parity):
    tensors, vae = parity
    video = tensors["f5/video"][:1].float()
    images = ((video[0].permute(1, 2, 3, 0) + 1) / 2)  # [T, H, W, 3] in 0..1
    ref = vae.encode(video)
    assert rel(vs.encode_images(vae, images, **NO_PROGRESS), ref) <= STREAM_TOLERANCE
    frames = [images[0], images[1:3], images[3:]]  # one [H, W, 3] frame and two batches
    assert rel(vs.encode_images(vae, frames, **NO_PROGRESS), ref) <= STREAM_TOLERANCE
    rgba = torch.cat([images, torch.ones_like(images[..., :1])], dim=-1)
    assert rel(vs.encode_images(vae, rgba, **NO_PROGRESS), ref) <= STREAM_TOLERANCE


def test_streamed_decode_yields_frames_progressively(parity):
    tensors, vae = parity
    latent = tensors["f9/latent"]
    whole = vae.decode(latent)
    chunks = list(vs.decode_frames(vae, latent, **NO_PROGRESS))
    assert [(c.start, c.frames.shape[2]) for c in chunks] == [(0, 1), (1, 4), (5, 4)]
    assert rel(torch.cat([c.frames for c in chunks], dim=2), whole) <= STREAM_TOLERANCE
    raw = torch.cat([c.frames for c in vs.decode_frames(vae, to_vae_space(latent), normalized=False, clamp=False,
                                                         cache_device="cpu", **NO_PROGRESS)], dim=2)
    assert rel(raw, tensors["f9/decoded"]) < PARITY_TOLERANCE


def test_decode_to_images_fills_a_cpu_buffer(parity):
    tensors, vae = parity
    latent = tensors["f5/latent"]  # batch 2, 5 frames
    whole = vae.decode(latent)     # [2, 3, 5, 32, 48]
    expected = ((whole + 1) / 2).permute(0, 2, 3, 4, 1).reshape(10, 32, 48, 3)
    assert vs.images_shape(vae, latent) == (10, 32, 48, 3)
    images = vs.decode_to_images(vae, latent, **NO_PROGRESS)
    assert images.shape == (10, 32, 48, 3) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert (images - expected).abs().max() <= STREAM_TOLERANCE
    buffer = torch.full((10, 32, 48, 3), 7, dtype=torch.uint8)
    out = vs.decode_to_images(vae, latent, buffer, **NO_PROGRESS)
    assert out is buffer
    assert (buffer.float() - (expected * 255).round()).abs().max() <= 1
    half = vs.decode_to_images(vae, latent, out_dtype=torch.float16, **NO_PROGRESS)
    assert half.dtype == torch.float16 and (half.float() - expected).abs().max() < 1e-3


def test_progress_and_interrupt(parity):
    tensors, vae = parity
    calls = []
    vs.decode_to_images(vae, tensors["f9/latent"], progress=lambda d, t: calls.append((d, t)),
                        check_interrupt=lambda: None)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    calls.clear()
    vs.encode_video(vae, tensors["f9/video"].float(), tile=(2, 4), overlap=(0, 1),
                    progress=lambda d, t: calls.append((d, t)), check_interrupt=lambda: None)
    assert calls[-1] == (12, 12) and len(calls) == 12  # 3 chunks x 4 tiles (2x2)

    class Stop(Exception):
        pass

    seen = []

    def interrupt():
        if len(seen) == 2:
            raise Stop

    frames = vs.decode_frames(vae, tensors["f9/latent"], progress=lambda d, t: seen.append(d),
                              check_interrupt=interrupt)
    assert next(frames).frames.shape[2] == 1
    assert next(frames).frames.shape[2] == 4
    with pytest.raises(Stop):
        next(frames)


# ---------------------------------------------------------------- tiling
@pytest.mark.parametrize("tile,overlap", [((8, 8), 2), ((5, 7), 3), ((12, 3), 1), (4, 0)])
def test_tiling_is_exact_for_a_local_model(tile, overlap):
    vae = tiny.LocalVAE(WanVAEConfig(dim=4))
    video = torch.rand(2, 3, 9, 96, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    latent = vae.encode_raw(video)
    tiled = vs.encode_video(vae, video, tile=tile, overlap=overlap, normalize=False, **NO_PROGRESS)
    assert (tiled - latent).abs().max() < 1e-6
    frames = vs.decode_frames(vae, latent, tile=tile, overlap=overlap, normalized=False, clamp=False,
                              cache_device="cpu", **NO_PROGRESS)
    assert (torch.cat([c.frames for c in frames], dim=2) - vae.decode_raw(latent)).abs().max() < 1e-6


def test_tiled_error_stays_within_the_measured_bound(tiny_model):
    vae = tiny_model
    video = tiny.smooth_video(torch.Generator().manual_seed(0), 1, 5, 64, 96)
    latent = vae.encode_raw(video)
    tiled = vs.encode_video(vae, video, tile=6, overlap=3, normalize=False, **NO_PROGRESS)
    assert 0 < rel(tiled, latent) < TILED_BOUNDS["encode"][0]
    assert mean_rel(tiled, latent) < TILED_BOUNDS["encode"][1]
    whole = vae.decode_raw(latent)
    frames = vs.decode_frames(vae, latent, tile=6, overlap=3, normalized=False, clamp=False, **NO_PROGRESS)
    decoded = torch.cat([c.frames for c in frames], dim=2)
    assert 0 < rel(decoded, whole) < TILED_BOUNDS["decode"][0]
    assert mean_rel(decoded, whole) < TILED_BOUNDS["decode"][1]


def test_plan_tiles():
    assert vs.plan_tiles(16, None, 4) == [(0, 16)]
    assert vs.plan_tiles(16, 16, 4) == [(0, 16)]
    assert vs.plan_tiles(16, 8, 4) == [(0, 8), (4, 12), (8, 16)]
    assert vs.plan_tiles(13, 8, 2) == [(0, 8), (5, 13)]
    with pytest.raises(InputError, match="tile overlap"):
        vs.plan_tiles(16, 8, 8)


# ---------------------------------------------------------------- bad inputs
def test_mixed_frame_sizes_are_refused(parity):
    _, vae = parity
    frames = [torch.rand(32, 48, 3), torch.rand(2, 32, 48, 3), torch.rand(40, 48, 3)]
    with pytest.raises(InputError, match=r"images: frame 3 is 48x40 \(WxH\) but frame 0 is 48x32"):
        vs.encode_images(vae, frames, **NO_PROGRESS)


def test_sizes_not_divisible_by_8_name_the_nearest(parity):
    _, vae = parity
    with pytest.raises(InputError, match=r"video: height 36 is not a multiple of 8.*e\.g\. 32 or 40"):
        vs.encode_video(vae, torch.zeros(1, 3, 1, 36, 48), **NO_PROGRESS)
    with pytest.raises(InputError, match=r"images: width 4 is not a multiple of 8.*e\.g\. 8 \("):
        vs.encode_images(vae, torch.zeros(1, 32, 4, 3), **NO_PROGRESS)


def test_empty_inputs_are_refused(parity):
    _, vae = parity
    with pytest.raises(InputError, match="video: is empty"):
        vs.encode_video(vae, torch.zeros(0, 3, 5, 32, 48), **NO_PROGRESS)
    with pytest.raises(InputError, match="images: holds no frames"):
        vs.encode_images(vae, torch.zeros(0, 32, 48, 3), **NO_PROGRESS)
    with pytest.raises(InputError, match="images: holds no frames"):
        vs.encode_images(vae, [], **NO_PROGRESS)
    with pytest.raises(InputError, match="latent: is empty"):
        next(vs.decode_frames(vae, torch.zeros(1, 16, 0, 4, 6), **NO_PROGRESS))


def test_wrong_latents_are_refused(parity):
    _, vae = parity
    with pytest.raises(InputError, match="latent: has 4 channels .*SD.*expected 16 channels"):
        vs.decode_to_images(vae, torch.zeros(1, 4, 2, 4, 6), **NO_PROGRESS)
    with pytest.raises(InputError, match="latent: has 48 channels .*Wan 2.2"):
        next(vs.decode_frames(vae, torch.zeros(1, 48, 2, 4, 6), **NO_PROGRESS))
    with pytest.raises(InputError, match=r"latent: has shape \(16, 2, 4, 6\)"):
        next(vs.decode_frames(vae, torch.zeros(16, 2, 4, 6), **NO_PROGRESS))
    with pytest.raises(InputError, match="video: has shape"):
        vs.encode_video(vae, torch.zeros(1, 5, 3, 32, 48), **NO_PROGRESS)
    with pytest.raises(InputError, match="output buffer: has shape"):
        vs.decode_to_images(vae, torch.zeros(1, 16, 2, 4, 6), torch.zeros(4, 32, 48, 3), **NO_PROGRESS)
