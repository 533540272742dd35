"""RealisDance-DiT against its own model and pipeline (committed fixtures), in float32.

The fixture (tests/fixtures/make_realisdance_parity.py) ran the reference's
``RealisDanceDiT`` (diffusers 0.33.1 Wan modules) on tiny random weights and its
``RealisDanceDiTPipeline`` for 4 guided Euler steps. Here the reference's own
transformer folder goes through our loader and diffusers key map, and our
conditioning, DiT and sampler reproduce its outputs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realisdance_fixture import load_fixture, relative_error, transformer_state, write_folder  # noqa: E402

from poseanimate.sampling.conditioning import MethodConditioning  # noqa: E402
from poseanimate.methods.realisdance import (RopeShifts, build_realisdance_conditioning,  # noqa: E402
                                             load_realisdance, realisdance_scheduler, reference_grid,
                                             resize_reference_image)
from poseanimate.models.wan.rope import grid_positions, rope_rotation  # noqa: E402
from poseanimate.sampling.guidance import Guidance  # noqa: E402
from poseanimate.sampling.loop import sample  # noqa: E402
from poseanimate.sampling.video import Branch  # noqa: E402
from poseanimate.sampling.wan_denoiser import WanDenoiser  # noqa: E402

FORWARD_SHIFTS = ("000", "001", "010", "011", "100", "101", "110", "111")  # shift_f, shift_h, shift_w: all


@pytest.fixture(scope="module")
def fx():
    return load_fixture()


@pytest.fixture(scope="module")
def model(fx, tmp_path_factory):
    """The reference's tiny transformer folder, loaded by load_realisdance (float16 file -> float32)."""
    tensors, metadata = fx
    root = write_folder(transformer_state(tensors), json.loads(metadata["transformer_config"]),
                        tmp_path_factory.mktemp("realisdance"))
    return load_realisdance(root, storage_dtype="fp32")


@pytest.fixture(scope="module")
def denoiser(model):
    return WanDenoiser(model.dit, on_block=lambda _index: None)


def shifts_of(name: str) -> RopeShifts:
    return RopeShifts(*(c == "1" for c in name))


def forward_conditioning(fx, model, shifts: RopeShifts):
    t, _ = fx
    return build_realisdance_conditioning(model.layers, t["pose_latents"], t["ref_latent"], t["context"],
                                          t["negative_context"], t["clip_fea"], t["negative_clip_fea"],
                                          t["zero_ref_latent"], t["empty_latent"], shifts=shifts)


def test_loaded_through_the_diffusers_key_map_with_the_config_switches(model):
    assert model.info.layout == "diffusers"
    assert model.shifts == RopeShifts(False, True, True) and model.shifts_from == "config.json"
    assert (model.layers.dim, model.layers.pose_channels, model.layers.reference_channels) == (64, 32, 16)
    assert model.dit.config.kind == "i2v" and model.dit.config.image_embed_dim == 32


@pytest.mark.parametrize("name", FORWARD_SHIFTS)
def test_forward_with_pose_and_reference_tokens_matches_the_reference(fx, model, denoiser, name):
    """Video grid 3x2x4 tokens, reference grid 1x4x2 (its own aspect): every shift switch setting."""
    t, _ = fx
    cond = forward_conditioning(fx, model, shifts_of(name))
    assert isinstance(cond, MethodConditioning)
    assert cond.video_grid == (3, 2, 4) and cond.ref_grid == (1, 4, 2)
    out = denoiser(t["x"], t["t"], cond.branch(True, 0, 1))
    err = relative_error(out, t[f"forward/{name}/out"])
    assert err < 1e-5, err


@pytest.mark.parametrize("name", FORWARD_SHIFTS)
def test_reference_positions_give_the_reference_rotary_table(fx, model, name):
    """Our (frame, h, w) positions, through Wan's RoPE, reproduce ShiftedWanRotaryPosEmbed's complex table."""
    t, _ = fx
    cond = forward_conditioning(fx, model, shifts_of(name))
    positions = torch.cat([grid_positions(*cond.video_grid), cond.positions()])
    rotation = rope_rotation(positions, model.dit.config.head_dim)
    assert (rotation.cos.double() - t[f"forward/{name}/rope_cos"]).abs().max() < 1e-6
    assert (rotation.sin.double() - t[f"forward/{name}/rope_sin"]).abs().max() < 1e-6


def sample_conditioning(fx, model):
    t, metadata = fx
    return build_realisdance_conditioning(model.layers, t["sample/pose_latents"], t["sample/ref_latent"],
                                          t["context"], t["negative_context"], t["clip_fea"], t["negative_clip_fea"],
                                          t["sample/zero_ref_latent"], t["sample/y"][:, 4:],
                                          shifts=shifts_of(metadata["sample_shifts"]))


def test_branches_match_the_pipelines_first_transformer_calls(fx, model, denoiser):
    """Positive: prompt, CLIP of the reference, its tokens. Negative: empty prompt, CLIP of a zero image,
    VAE(zero image) tokens, and the same pose and empty y."""
    t, _ = fx
    cond = sample_conditioning(fx, model)
    assert torch.equal(cond.y, t["sample/y"])  # zero mask + VAE(zero video)
    positive, negative = cond.branch(True, 0, 4), cond.branch(False, 0, 4)
    assert positive.ext.added_tokens[0] is negative.ext.added_tokens[0]  # the pose stays in both branches
    assert torch.equal(positive.ext.extra_tokens[0].positions, negative.ext.extra_tokens[0].positions)
    x, timestep = t["sample/positive_x"], t["sample/positive_t"]
    pos_err = relative_error(denoiser(x, timestep, positive), t["sample/positive_out"])
    neg_err = relative_error(denoiser(x, timestep, negative), t["sample/negative_out"])
    assert pos_err < 1e-5 and neg_err < 1e-5, (pos_err, neg_err)


def test_four_step_guided_run_matches_the_reference_pipeline(fx, model, denoiser):
    t, metadata = fx
    cond = sample_conditioning(fx, model)
    steps = int(metadata["steps"])
    scheduler = realisdance_scheduler(steps, float(metadata["shift"]))
    assert torch.equal(scheduler.schedule.sigmas, t["sample/sigmas"])
    assert torch.equal(scheduler.schedule.timesteps, t["sample/timesteps"])
    guidance = Guidance(Branch(cond, True, steps), Branch(cond, False, steps), float(metadata["cfg"]))
    out = sample(guidance.bind(lambda x, timestep, branch: denoiser(x, timestep, branch.resolve(None))),
                 t["sample/noise"], scheduler, progress=lambda *_: None, check_interrupt=lambda: None)
    err = relative_error(out, t["sample/final"])
    assert err < 1e-4, err


@pytest.mark.parametrize("steps,shift", [(40, 1.0), (40, 5.0), (4, 5.0), (10, 3.0)])
def test_schedule_is_diffusers_flow_match_euler_bit_for_bit(fx, steps, shift):
    """Including its twice-shifted low end (shift 5: the last sigma is shift(shift(1/1000)), not 0 + 1 step)."""
    t, _ = fx
    schedule = realisdance_scheduler(steps, shift).schedule
    assert torch.equal(schedule.sigmas, t[f"schedule/{steps}_{shift:g}/sigmas"])
    assert torch.equal(schedule.timesteps, t[f"schedule/{steps}_{shift:g}/timesteps"])


def test_reference_size_is_the_pipelines_same_area_resize(fx):
    t, _ = fx
    for video_h, video_w, ref_h, ref_w, out_h, out_w in t["grids"].tolist():
        assert reference_grid(video_h, video_w, ref_h, ref_w) == (out_h, out_w)


def test_reference_image_resize_matches_the_pipelines(fx):
    """Bicubic without antialiasing, on ComfyUI's 0..1 IMAGE: the same pixels as the reference's -1..1 resize."""
    t, _ = fx
    image = (t["sample/ref_image"][:, :, 0].permute(0, 2, 3, 1) + 1) / 2  # [1, 60, 34, 3] in 0..1
    height, width = reference_grid(32, 64, *image.shape[1:3])
    resized = resize_reference_image(image, height, width) * 2 - 1
    expected = t["sample/ref_pixels"][:, :, 0].permute(0, 2, 3, 1)
    assert resized.shape == expected.shape == (1, 64, 32, 3)
    assert (resized - expected).abs().max() < 1e-5
