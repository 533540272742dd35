"""UniAnimate-DiT against its own pipelines (committed fixtures), in float32.

The fixture comes from tests/fixtures/make_unianimate_parity.py, which ran
UniAnimate-DiT's ``WanUniAnimateVideoPipeline`` and
``WanUniAnimateLongVideoPipeline`` on a tiny random Wan 2.1 I2V DiT with a LoRA
and random pose encoders, written in the released file's key layout. Here the
same file goes through our loader, LoRA merge, conditioning, DiT and sampler.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from poseanimate.sampling.conditioning import MethodConditioning
from poseanimate.methods.unianimate import build_unianimate_conditioning, load_unianimate
from poseanimate.models.lora import merge_loras
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import WanDiT
from poseanimate.sampling.guidance import Guidance
from poseanimate.sampling.loop import make_noise, sample
from poseanimate.sampling.schedulers import make_scheduler
from poseanimate.sampling.video import Branch, sample_video, windowed_velocity
from poseanimate.sampling.wan_denoiser import WanDenoiser
from poseanimate.sampling.windows import add_private_frames, plan_windows, real_frames

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "unianimate_parity.safetensors"


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@pytest.fixture(scope="module")
def fx() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(FIXTURE), "pt") as f:
        metadata = f.metadata()
    return load_file(str(FIXTURE)), metadata


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def setup(fx, tmp_path_factory):
    """The tiny DiT with the UniAnimate file (written as the released flat .ckpt) loaded and merged."""
    tensors, metadata = fx
    sd = {k: v.float() for k, v in prefixed(tensors, "dit/").items()}
    model = WanDiT(infer_config(sd, num_heads=int(metadata["num_heads"])), device="meta")
    model.load_state_dict(sd, strict=True, assign=True)
    path = tmp_path_factory.mktemp("unianimate") / "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"
    torch.save(prefixed(tensors, "lora/"), str(path))
    weights = load_unianimate(path, model)
    merge_loras(model, [(weights.lora, 1.0)])
    return model.eval(), weights.encoders


def pose_images(uint8: torch.Tensor) -> torch.Tensor:
    """The fixture's 8-bit pose frames as a ComfyUI IMAGE (what LoadImage gives: uint8 / 255 in float32)."""
    return uint8.float() / 255.0


def conditioning(fx, encoders, run: str, **kwargs):
    tensors, _ = fx
    frames = tensors[f"{run}/pose"].shape[0]
    return build_unianimate_conditioning(
        encoders, tensors["ref_latent"], pose_images(tensors["ref_pose"]), pose_images(tensors[f"{run}/pose"]),
        tensors["context"], tensors["negative_context"], tensors["clip_fea"], frames=frames, **kwargs)


def test_encoders_match_the_reference(fx, setup):
    tensors, _ = fx
    _, encoders = setup
    pose = encoders.pose_embedding(pose_images(tensors["short/pose"]))
    ref = encoders.reference_pose(pose_images(tensors["ref_pose"]))
    assert pose.shape == tensors["short/pose_embedding"].shape == (1, 64, 3, 2, 3)
    assert relative_error(pose, tensors["short/pose_embedding"]) < 1e-5
    assert relative_error(ref, tensors["short/ref_pose_embedding"]) < 1e-5
    tokens = encoders.pose_tokens(pose_images(tensors["short/pose"]))
    assert relative_error(tokens, tensors["short/pose_tokens"]) < 1e-5


def test_y_with_reference_pose_matches_the_reference(fx, setup):
    tensors, _ = fx
    cond = conditioning(fx, setup[1], "short")
    assert isinstance(cond, MethodConditioning)
    assert (cond.geometry.frames, cond.geometry.height, cond.geometry.width) == (3, 4, 6)
    assert cond.y.shape == tensors["short/y"].shape == (1, 20, 3, 4, 6)
    assert relative_error(cond.y, tensors["short/y"]) < 1e-5


def test_one_dit_forward_per_branch_matches_the_reference(fx, setup):
    tensors, _ = fx
    model, encoders = setup
    cond = conditioning(fx, encoders, "short")
    denoiser = WanDenoiser(model, on_block=lambda _: None)
    x, t = tensors["short/call_x"], tensors["short/call_t"]
    positive = cond.branch(True, 0, 4)
    negative = cond.branch(False, 0, 4)
    assert negative.ext is None and torch.equal(negative.y, positive.y)
    pos_err = relative_error(denoiser(x, t, positive), tensors["short/positive_out"])
    neg_err = relative_error(denoiser(x, t, negative), tensors["short/negative_out"])
    assert pos_err < 1e-5 and neg_err < 1e-5, (pos_err, neg_err)


def test_four_step_cfg_run_matches_the_reference_pipeline(fx, setup):
    tensors, metadata = fx
    model, encoders = setup
    cond = conditioning(fx, encoders, "short")
    seed, steps = int(metadata["seed"]), int(metadata["steps"])
    assert torch.equal(make_noise(cond.geometry.latent_shape, seed), tensors["short/noise"])
    scheduler = make_scheduler("euler", steps, float(metadata["shift"]))
    out = sample_video(model, cond, scheduler, float(metadata["cfg"]), seed, progress=lambda *_: None,
                       check_interrupt=lambda: None)
    err = relative_error(out, tensors["short/final"])
    assert err < 1e-4, err


def test_long_video_windows_match_the_reference_long_pipeline(fx, setup):
    """Windows of 4 latent frames over 7, overlap 2, 'unianimate' blending: the reference's own noise.

    The reference's window 0 also starts its first two latent frames from its
    own ``randn_like`` draw (not the seed's noise); the other windows' draws are
    their private frames.
    """
    tensors, metadata = fx
    model, encoders = setup
    cond = conditioning(fx, encoders, "long")
    window, overlap = int(metadata["window"]), int(metadata["overlap"])
    plan = plan_windows(cond.geometry.frames, window, overlap)
    assert [(w.start, w.end) for w in plan] == [(0, 4), (2, 6), (3, 7)]
    for w in plan:  # each window's pose embedding from its own pose frames
        frames = pose_images(tensors["long/pose"])[4 * w.start: 4 * (w.end - 1) + 1]
        assert relative_error(encoders.pose_embedding(frames), tensors[f"long/pose_embedding_{w.index}"]) < 1e-5

    draws = tensors["long/draws"]
    noise = tensors["long/noise"].clone()
    noise[:, :, :2] = draws[:, :, :2]
    state = add_private_frames(noise, plan, "unianimate", noise=draws[:, :, 2:])
    steps = int(metadata["steps"])
    denoiser = WanDenoiser(model, on_block=lambda _: None)
    guidance = Guidance(Branch(cond, True, steps), Branch(cond, False, steps), float(metadata["cfg"]))
    run = windowed_velocity(denoiser, guidance, plan, "unianimate", check_interrupt=lambda: None)
    out = sample(run, state, make_scheduler("euler", steps, float(metadata["shift"])),
                 progress=lambda *_: None, check_interrupt=lambda: None)
    err = relative_error(real_frames(out, plan), tensors["long/final"])
    assert err < 1e-4, err
    assert set(cond._tokens) == {(0, 4), (2, 6), (3, 7)}  # pose tokens computed once per window
