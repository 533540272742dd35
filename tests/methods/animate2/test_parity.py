"""Animate-2's forward against ComfyUI's WanAnimate2Model (committed fixture, make_animate2_parity.py).

Tiny model (dim 64, 2 heads, 3 blocks), batch 2, 1 reference + 4 latent frames at 6 x 10 latent pixels (an
odd 3 x 5 token grid), per-sample timesteps; weights rebuilt from ComfyUI's names and shapes with
:func:`wan_animate_tiny.formula_state_dict`. Max |ours - ComfyUI| / max |ComfyUI| is allowed 1e-5.

Measured (2026-12-04, torch CPU float32): pose branch with its own prompt and strengths 2.1e-6, default
context 2.1e-6, pose windowed out 2.4e-6 (RoPE angles: ours float64, ComfyUI's float32).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import wan_animate_tiny as tiny  # noqa: E402

from poseanimate.methods.animate2 import PoseBranchCache, PoseInputs, PoseStream  # noqa: E402
from poseanimate.models.wan.config import infer_config  # noqa: E402
from poseanimate.models.wan.dit import DiTExtensions, WanDiT  # noqa: E402

FIXTURE = FIXTURES / "animate2_parity.safetensors"
TOLERANCE = 1e-5


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@pytest.fixture(scope="module")
def fx() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE))


@pytest.fixture(scope="module")
def shapes() -> dict[str, list[int]]:
    with safe_open(str(FIXTURE), "pt") as f:
        return json.loads(f.metadata()["comfy_shapes"])


@pytest.fixture(scope="module")
def model(shapes) -> WanDiT:
    sd = tiny.formula_state_dict(shapes)
    dit = WanDiT(infer_config(sd, num_heads=tiny.HEADS), device="meta")
    dit.load_state_dict(sd, strict=True, assign=True)
    return dit.eval()


def forward(model, fx, pose: PoseInputs | None, reference_strength: float = 1.0) -> torch.Tensor:
    ext = DiTExtensions(block_forward=PoseStream(model, pose, reference_strength))
    with torch.no_grad():
        return model(fx["x"], fx["t"], fx["context"], clip_fea=fx["clip"], y=fx["y"], ext=ext)


def test_comfy_names_and_shapes_load_into_the_plain_dit(model, shapes):
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes


def test_pose_branch_with_its_own_prompt_and_strengths_matches_comfy(model, fx):
    pose = PoseInputs(fx["pose"], fx["context_pose"], fx["clip_pose"], strength=0.7)
    out = forward(model, fx, pose, reference_strength=1.3)
    assert out.shape == fx["out/pose"].shape == (2, 16, 5, 6, 10)
    assert relative_error(out, fx["out/pose"]) < TOLERANCE


def test_pose_branch_defaults_to_the_generation_context_as_comfy(model, fx):
    out = forward(model, fx, PoseInputs(fx["pose"], fx["context"], fx["clip"]))
    assert relative_error(out, fx["out/default"]) < TOLERANCE


def test_steps_outside_the_pose_window_match_comfy_without_pose(model, fx):
    out = forward(model, fx, None, reference_strength=1.3)
    assert relative_error(out, fx["out/nopose"]) < TOLERANCE
    # the three cases differ: the pose and the strengths act
    assert relative_error(fx["out/pose"], fx["out/nopose"]) > 1e-3
    assert relative_error(fx["out/pose"], fx["out/default"]) > 1e-3


def test_cached_forward_equals_uncached_exactly_in_float32(model, fx):
    cache = PoseBranchCache("float32")
    pose = PoseInputs(fx["pose"], fx["context_pose"], fx["clip_pose"], strength=0.7, cache=cache, cache_key="w0")
    first = forward(model, fx, pose, reference_strength=1.3)
    assert cache.filled("w0", 3) and cache.hits == 0
    second = forward(model, fx, pose, reference_strength=1.3)
    assert cache.hits == 3
    assert torch.equal(first, second)
    assert relative_error(second, fx["out/pose"]) < TOLERANCE
