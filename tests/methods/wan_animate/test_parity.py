"""Wan2.2-Animate's DiT path against the official model and ComfyUI's AnimateWanModel (committed fixtures).

The fixtures come from tests/fixtures/make_wan_animate_parity.py (official
``WanAnimateModel`` and its motion encoder / face blocks, float32, exact SDPA)
and make_wan_animate_comfy_parity.py (ComfyUI's ``AnimateWanModel`` on the
same inputs). Weights are :func:`wan_animate_tiny.formula_state_dict`, rebuilt
here from the key names the reference recorded. Tiny model: dim 64, 2 heads,
10 blocks (face blocks after 0 and 5), a size-16 motion encoder, 5 face
frames -> 2 latent frames plus the reference frame, latent 6x4.

Measured (2026-11-21, torch 2.13 CPU), max |ours - ref| / max |ref|:
face tokens vs official 1.2e-6; DiT output vs official 6.4e-7, vs ComfyUI
1.5e-6 (ComfyUI vs official 1.4e-6); ResBlock(32, 64) vs both 0 (bit-equal).
The tests allow 1e-5.
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

from poseanimate.sampling.conditioning import MethodConditioning  # noqa: E402
from poseanimate.methods.wan_animate import (AnimateConditioning, AnimateConfig, AnimateModules,  # noqa: E402
                                             build_animate_conditioning)
from poseanimate.methods.wan_animate.modules import split_animate_tensors  # noqa: E402
from poseanimate.methods.wan_animate.motion import MotionEncoderConfig, ResBlock  # noqa: E402
from poseanimate.models.wan.config import infer_config  # noqa: E402
from poseanimate.models.wan.dit import WanDiT  # noqa: E402

OFFICIAL = FIXTURES / "wan_animate_parity.safetensors"
COMFY = FIXTURES / "wan_animate_comfy_parity.safetensors"
TOLERANCE = 1e-5


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


@pytest.fixture(scope="module")
def fx() -> dict[str, torch.Tensor]:
    return load_file(str(OFFICIAL))


@pytest.fixture(scope="module")
def model(fx):
    """The tiny Animate DiT and modules with the formula weights at the reference's key names."""
    shapes = json.loads(metadata(OFFICIAL)["dit_shapes"])
    animate, dit_sd = split_animate_tensors(tiny.formula_state_dict(shapes))
    dit = WanDiT(infer_config(dit_sd, num_heads=tiny.HEADS), device="meta")
    dit.load_state_dict(dit_sd, strict=True, assign=True)
    modules = AnimateModules.from_state_dict(animate, tiny.HEADS)
    return dit.eval(), modules


@pytest.fixture(scope="module")
def conditioning(fx, model) -> AnimateConditioning:
    faces = (fx["dit/face_pixels"][0].permute(1, 2, 3, 0) + 1.0) / 2.0  # [-1, 1] -> IMAGE 0..1
    return build_animate_conditioning(model[1], fx["dit/y"], fx["dit/pose_latents"], faces, fx["dit/context"],
                                      negative_context=fx["dit/context"] * 0.5, clip_fea=fx["dit/clip_fea"])


@pytest.fixture(scope="module")
def output(fx, model, conditioning) -> torch.Tensor:
    cond = conditioning.branch(True, 0, 20)
    with torch.no_grad():
        return model[0](fx["dit/x"], fx["dit/t"], cond.context, clip_fea=cond.clip_fea, y=cond.y, ext=cond.ext)


def test_our_names_and_shapes_are_the_references(model):
    dit, modules = model
    ours = {k: list(v.shape) for k, v in {**dit.state_dict(), **modules.state_dict()}.items()}
    assert ours == json.loads(metadata(OFFICIAL)["dit_shapes"])


def test_released_motion_encoder_names_and_shapes_match_official_and_comfy():
    encoder = AnimateModules(AnimateConfig(dim=tiny.DIM, num_heads=tiny.HEADS, adapters=2), device="meta")
    ours = {k: list(v.shape) for k, v in encoder.state_dict().items() if k.startswith("motion_encoder.")}
    assert encoder.config.motion == MotionEncoderConfig(512, 512, 20)
    assert ours == json.loads(metadata(OFFICIAL)["motion512_shapes"])
    comfy = json.loads(metadata(COMFY)["comfy_shapes"])
    assert {k: v for k, v in comfy.items() if k.startswith("motion_encoder.")} == ours


def test_comfy_model_has_our_names_and_shapes(model):
    """ComfyUI's AnimateWanModel (which Comfy-Org's single files feed) names every tensor as we do."""
    dit, _ = model
    released_motion = AnimateModules(AnimateConfig(dim=tiny.DIM, num_heads=tiny.HEADS, adapters=2), device="meta")
    ours = {k: list(v.shape) for k, v in {**dit.state_dict(), **released_motion.state_dict()}.items()}
    assert ours == json.loads(metadata(COMFY)["comfy_shapes"])


def test_config_is_read_from_the_weights(model):
    modules = model[1]
    assert modules.config.adapter_blocks == (0, 5)
    assert modules.config.motion.size == tiny.MOTION_SIZE
    assert (modules.config.face_in_dim, modules.config.face_streams, modules.config.face_width) == (512, 4, 1024)


def test_face_tokens_match_official(fx, conditioning):
    tokens = conditioning.face_tokens(True)
    assert tokens.shape == fx["dit/motion_vec"].shape == (1, 3, 5, tiny.DIM)
    assert torch.equal(tokens[:, 0], torch.zeros_like(tokens[:, 0]))  # the reference frame's
    assert relative_error(tokens, fx["dit/motion_vec"]) < TOLERANCE


def test_dit_forward_matches_official(fx, output):
    assert output.shape == fx["dit/out"].shape
    assert relative_error(output, fx["dit/out"]) < TOLERANCE


def test_dit_forward_matches_comfy(output):
    comfy = load_file(str(COMFY))["dit/out"]
    assert relative_error(output, comfy) < TOLERANCE


def test_resblock_with_different_widths_matches_official_and_comfy(fx):
    block = ResBlock(32, 64)
    sd = tiny.formula_state_dict({f"resblock.{k}": tuple(v.shape) for k, v in block.state_dict().items()})
    block.load_state_dict({k[len("resblock."):]: v for k, v in sd.items()}, strict=False)
    with torch.no_grad():
        out = block(tiny.formula_tensor("resblock.input", (2, 32, 16, 16)))
    assert relative_error(out, fx["resblock/out"]) < TOLERANCE
    assert relative_error(out, load_file(str(COMFY))["resblock/out"]) < TOLERANCE


def test_strength_zero_leaves_the_path_out(fx, model, conditioning):
    no_pose = build_animate_conditioning(model[1], fx["dit/y"], fx["dit/pose_latents"], None, fx["dit/context"],
                                         pose_strength=0.0, face_strength=0.0)
    ext = no_pose.branch(True, 0, 20).ext
    assert ext.added_tokens == [] and ext.block_adapters == {}


def test_negative_branch_has_blank_faces_and_the_same_pose_and_y(conditioning):
    assert isinstance(conditioning, MethodConditioning)
    positive, negative = conditioning.branch(True, 3, 20), conditioning.branch(False, 3, 20)
    assert torch.equal(negative.context, conditioning.negative_context)
    assert negative.y is positive.y and negative.clip_fea is positive.clip_fea
    assert torch.equal(negative.ext.added_tokens[0], positive.ext.added_tokens[0])
    assert sorted(negative.ext.block_adapters) == [0, 5]
    blank = conditioning.face_tokens(False)
    assert not torch.allclose(blank, conditioning.face_tokens(True))
    # the pose tokens are zero on the reference frame and the embedding elsewhere
    tokens = conditioning.pose_tokens()
    per_frame = (tiny.LATENT_H // 2) * (tiny.LATENT_W // 2)
    assert torch.equal(tokens[:, :per_frame], torch.zeros_like(tokens[:, :per_frame]))
    assert tokens[:, per_frame:].abs().min() > 0
