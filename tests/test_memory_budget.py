"""Memory estimates before work: a request that would not fit stops before allocating, naming the input,
the estimate and what would fit; absurd frame counts are refused with the bound (issue 19)."""
from __future__ import annotations

import pytest
import torch

from poseanimate import memory_budget as mb
from poseanimate.errors import InputError
from poseanimate.nodes import NODE_CLASS_MAPPINGS
from poseanimate.nodes.unianimate_nodes import _check_memory
from poseanimate.nodes.video_inputs import check_frame_count


@pytest.fixture
def small_budget():
    mb.set_budget(1 * mb.GB)
    yield
    mb.set_budget(None)


def test_budget_is_measured_without_injection():
    assert mb.available("cpu") > 0


def test_2048_decode_stops_before_allocating(small_budget, monkeypatch):
    node = NODE_CLASS_MAPPINGS["PoseAnimateVAEDecode"]

    def no_allocation(*args, **kwargs):
        raise AssertionError("the node allocated or decoded before refusing")
    monkeypatch.setattr("poseanimate.nodes.vae_nodes.video_vae", no_allocation)
    latent = torch.zeros(1, 16, 1, 1, 1).expand(1, 16, 21, 256, 256)  # 81 frames at 2048x2048, no memory
    with pytest.raises(InputError) as err:
        node().decode({"samples": latent}, object())
    message = str(err.value)
    assert message.startswith("samples: decoding 81 frames at 2048x2048") and "GB" in message
    assert "more than the 1.0 GB" in message and "at most" in message and "frames at this size" in message


def test_2048_unianimate_conditioning_stops_before_allocating(small_budget):
    with pytest.raises(InputError, match=r"^pose_video: encoding 5 frames at 2048x2048 .* needs about [\d.]+ GB, "
                                         r"more than the 1.0 GB .*; expected tiles"):
        _check_memory(object(), 5, 2048, 2048)
    _check_memory(object(), 5, 64, 64)  # small requests pass


def test_device_estimate_names_what_fits(monkeypatch):
    from poseanimate import host
    monkeypatch.setattr(host, "compute_device", lambda: torch.device("meta"))  # a device apart from the CPU
    mb.set_budget(lambda device: 64 * mb.GB if device.type == "cpu" else 6 * mb.GB)  # VAE chunk 5.3 GB fits
    try:
        # one VAE chunk at 1024x768 (15.8 GB) does not fit: tiles are named, with a size that fits
        with pytest.raises(InputError, match=r"^pose_video: encoding 321 frames at 1024x768 .*expected tiles "
                                             r"\(Load Wan VAE's tile_size, about \d+\)"):
            _check_memory(object(), 321, 768, 1024)
        # the pose encoder runs per window at sampling: a long video is not refused for its sake
        _check_memory(object(), 4001, 512, 512)
    finally:
        mb.set_budget(None)


def test_absurd_frame_counts_are_refused_with_the_bound():
    with pytest.raises(InputError, match=f"frames: 100001 frames is more than the {mb.MAX_FRAMES}"):
        check_frame_count(100001)
    check_frame_count(mb.MAX_FRAMES)


# ---------------------------------------------------------------- sampling and Wan2.2-Animate
def _dit_handle(compute_dtype=torch.bfloat16):
    """A stand-in for Load Wan DiT's output with the real 14B widths (no weights)."""
    from types import SimpleNamespace
    from poseanimate.models.wan.config import WanDiTConfig
    from poseanimate.nodes.dit_loaders import DiTHandle
    return DiTHandle(managed=None, model=SimpleNamespace(compute_dtype=compute_dtype),
                     info=SimpleNamespace(config=WanDiTConfig()))


class _Conditioning:
    """The smallest MethodConditioning: sampling must stop before it is asked for anything."""

    def __init__(self, frames, height, width):
        from poseanimate.sampling.conditioning import VideoGeometry
        self.geometry = VideoGeometry(frames=frames, height=height, width=width)
        self.cleared = False

    def branch(self, *args, **kwargs):
        raise AssertionError("sampling started before the memory check refused")

    def clear_cache(self):
        self.cleared = True


def test_dit_window_estimate_of_480p():
    # 81 frames at 832x480: 21 latent frames x 52 x 30 tokens; about 4 GB of block activations in bf16
    tokens = mb.dit_tokens(21, 60, 104)
    assert tokens == 21 * 30 * 52
    assert 3 * mb.GB < mb.dit_window(tokens, 5120, 13824, torch.bfloat16) < 6 * mb.GB


def test_2048_sampling_stops_before_loading_the_dit(monkeypatch):
    from poseanimate import host
    from poseanimate.nodes import sampler_nodes
    monkeypatch.setattr(host, "compute_device", lambda: torch.device("meta"))
    mb.set_budget(lambda device: 64 * mb.GB if device.type == "cpu" else 24 * mb.GB)

    def no_loading(dit):
        raise AssertionError("the DiT was loaded before the memory check refused")
    monkeypatch.setattr(sampler_nodes, "running_dit", no_loading)
    try:
        with pytest.raises(InputError) as err:
            sampler_nodes.PoseAnimateSampler().sample(_dit_handle(), _Conditioning(21, 256, 256), 0, 2, 1.5, 5.0,
                                                      "euler", 21, 4, "unianimate")
        message = str(err.value)
        assert message.startswith("window_length: sampling windows of 21 latent frames at 2048x2048 needs about ")
        assert "more than the 24.0 GB" in message and "expected window_length at most" in message, message
        most = int(message.split("window_length at most ")[1].split()[0])
        needed = mb.dit_window(mb.dit_tokens(most, 256, 256), 5120, 13824, torch.bfloat16)
        assert needed <= 24 * mb.GB < mb.dit_window(mb.dit_tokens(most + 1, 256, 256), 5120, 13824, torch.bfloat16)
        # 480p fits the same budget
        sampler_nodes.check_sampling_memory(_dit_handle(), _Conditioning(21, 60, 104).geometry, 21)
    finally:
        mb.set_budget(None)


def test_wan_animate_stops_before_loading_the_dit(monkeypatch):
    from poseanimate import host
    from poseanimate.nodes import wan_animate_nodes
    monkeypatch.setattr(host, "compute_device", lambda: torch.device("meta"))
    mb.set_budget(lambda device: 64 * mb.GB if device.type == "cpu" else 16 * mb.GB)
    monkeypatch.setattr(wan_animate_nodes, "running_dit", lambda dit: pytest.fail("the DiT was loaded"))
    from types import SimpleNamespace
    # Load Wan VAE in bf16 with tile_size 16, overlap 2: a chunk of one 256x256-pixel tile, and the causal
    # caches of all 144 tiles (about 11 GB)
    tiled_vae = SimpleNamespace(tile=16, overlap=2, model=SimpleNamespace(dtype=torch.bfloat16))
    assert 10 * mb.GB < mb.vae_step(1280, 1280, torch.bfloat16, 16, overlap=2) < 12 * mb.GB
    try:
        with pytest.raises(InputError, match=r"^clip_frames: clips of 77 frames at 1280x1280 \(one DiT block over 21 "
                                             r"latent frames, one VAE chunk\) needs about [\d.]+ GB, more than the "
                                             r"16.0 GB .*; expected clip_frames at most \d+ at this size"):
            wan_animate_nodes._check_memory(_dit_handle(), tiled_vae, torch.zeros(1, 1, 1, 3).expand(77, 1280, 1280, 3),
                                            77, False)
        # untiled, one VAE chunk at 1280x1280 does not fit either: tiles are named first
        with pytest.raises(InputError, match=r"expected tiles \(Load Wan VAE's tile_size\) or a smaller size"):
            wan_animate_nodes._check_memory(_dit_handle(), object(), torch.zeros(1, 1, 1, 3).expand(77, 1280, 1280, 3),
                                            77, False)
        wan_animate_nodes._check_memory(_dit_handle(), object(), torch.zeros(1, 1, 1, 3).expand(77, 480, 832, 3),
                                        77, False)
        # the CPU: the whole video's frames (poses, output, background) are named against the pose video
        mb.set_budget(lambda device: 1 * mb.GB if device.type == "cpu" else 80 * mb.GB)
        with pytest.raises(InputError, match=r"^pose_video: 2001 frames at 832x480 \(poses, output frames, "
                                             r"background\) needs .* expected at most \d+ frames at this size"):
            wan_animate_nodes._check_memory(_dit_handle(), object(), torch.zeros(1, 1, 1, 3).expand(2001, 480, 832, 3),
                                            77, True)
    finally:
        mb.set_budget(None)


def test_tiled_vae_estimate_counts_every_tiles_causal_caches():
    """Tiles bound the activations to one tile's, but each tile keeps its own causal caches between chunks: the
    estimate holds all of them (the caches of a real decode step, counted), the blended frame and one tile."""
    from poseanimate.models.wan.vae import FeatureCache, WanVAE, WanVAEConfig
    from poseanimate.models.wan.vae_streaming import plan_tiles
    torch.manual_seed(0)
    vae = WanVAE(WanVAEConfig(dim=8)).eval()
    cache = FeatureCache()
    z = torch.randn(1, 16, 1, 4, 4)  # one 32x32-pixel tile (4 latent cells)
    with torch.no_grad():
        vae.decode_step(z, cache)
        vae.decode_step(z, cache)
    per_tile = cache.nbytes()
    assert 20 * 8 * 32 * 32 * 4 < per_tile <= mb.VAE_TILE_CACHE * 8 * 32 * 32 * 4
    tiles = len(plan_tiles(32, 4, 1)) ** 2  # 256x256 pixels in tiles of 4 latent cells overlapping by 1
    assert tiles == 121
    estimate = mb.vae_step(256, 256, torch.float32, 4, dim=8, overlap=1)
    one_tile = mb.VAE_ACTIVATIONS * 8 * 4 * 64 * 64 * 4
    assert estimate >= tiles * per_tile + one_tile
    assert one_tile < tiles * per_tile / 10  # the former estimate (one tile's activations) was 10x short
    # untiled, and tiles as large as the frame, are the whole frame's chunk
    assert mb.vae_step(256, 256, torch.float32, 32, dim=8) == mb.vae_step(256, 256, torch.float32, None, dim=8)
