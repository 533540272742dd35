"""Animate-2's per-frame attention against the official-derived port's in-context attention (committed fixture,
make_animate2_port_attention.py): the same mask (every generation token, plus pose frame t - 1 for query frame
t >= 1) and the distilled configuration's log-scale on frame 1's keys. Batch 2, 2 heads of 16, 6 tokens a frame,
the reference slot and 3 latent frames.

Measured (2026-12-04, torch CPU float32), max |ours - port| / max |port|: 2.0e-7 plain, 3.0e-7 with log-scale
-1.3. The tests allow 1e-5.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from poseanimate.methods.animate2 import framewise_attention
from poseanimate.models.wan.attention import Attention

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "animate2_port_attention.safetensors"


@pytest.fixture(scope="module")
def fx():
    return load_file(str(FIXTURE))


@pytest.mark.parametrize("name, log_scale", [("plain", 0.0), ("log_scale", -1.3)])
def test_framewise_attention_matches_the_port(fx, name, log_scale):
    hw = int(fx["hw"])
    frames = fx["q"].shape[1] // hw
    out = framewise_attention(fx["q"], fx["k"], fx["v"], fx["k_pose"], fx["v_pose"], frames, hw, Attention(),
                              log_scale)
    ref = fx[f"out/{name}"]
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_the_log_scale_acts(fx):
    assert ((fx["out/plain"] - fx["out/log_scale"]).abs().max() / fx["out/plain"].abs().max()) > 1e-2
