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
    mb.set_budget(lambda device: 64 * mb.GB if device.type == "cpu" else 2 * mb.GB)  # VAE chunk 1.5 GB fits
    try:
        with pytest.raises(InputError, match=r"^pose_video: encoding 321 frames at 512x512 .*expected at most \d+ "
                                             "frames at this size"):
            _check_memory(object(), 321, 512, 512)
    finally:
        mb.set_budget(None)


def test_absurd_frame_counts_are_refused_with_the_bound():
    with pytest.raises(InputError, match=f"frames: 100001 frames is more than the {mb.MAX_FRAMES}"):
        check_frame_count(100001)
    check_frame_count(mb.MAX_FRAMES)
