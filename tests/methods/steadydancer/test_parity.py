"""SteadyDancer against its own model and pipeline (committed fixtures), in float32.

The fixture (tests/fixtures/make_steadydancer_parity.py) ran the reference's
``WanModel`` of ``model_dancer.py`` on tiny random weights and
``WanI2VDancer.generate`` for 4 guided UniPC steps. Here the reference's weights
go through our loader, and our layers, DiT and sampler reproduce its outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steadydancer_fixture import relative_error  # noqa: E402

from poseanimate.methods.steadydancer import (build_steadydancer_conditioning, pose_guidance,  # noqa: E402
                                              reference_latents)
from poseanimate.models.wan.dit import DiTExtensions, ExtraTokens  # noqa: E402
from poseanimate.sampling.conditioning import MethodConditioning  # noqa: E402
from poseanimate.sampling.schedulers import make_scheduler  # noqa: E402
from poseanimate.sampling.video import sample_video  # noqa: E402


def forward(model, fx, spatial: float = 1.0, temporal: float = 1.0, batch=slice(None)):
    f = {k[len("forward/"):]: v[batch] for k, v in fx.items() if k.startswith("forward/") and v.dim() > 1}
    f["t"] = fx["forward/t"][batch]
    layers = model.layers
    fused = layers.fuse(f["pose"], spatial, temporal)
    grid = (f["x"].shape[2], f["x"].shape[3] // 2, f["x"].shape[4] // 2)
    ext = DiTExtensions(latent_tokens=[lambda latent: layers.pose_tokens(fused, latent)],
                        extra_tokens=[ExtraTokens(layers.reference_tokens(f["ref_x"], f["ref_c"]),
                                                  layers.reference_positions(grid))],
                        image_features=[f["clip_fea_c"]])
    with torch.no_grad():
        return model.dit(f["x"], f["t"], f["context"], clip_fea=f["clip_fea"], y=f["y"], ext=ext)


def test_forward_batch_of_two_matches_the_reference(fx, model):
    """Batch 2 with different timesteps, prompts, poses and references; odd token grid 3 x 5."""
    out = forward(model, fx)
    assert out.shape == fx["forward/out"].shape
    err = relative_error(out, fx["forward/out"])
    assert err < 1e-5, err


def test_pose_strengths_scale_the_spatial_and_temporal_branches(fx, model):
    spatial, temporal = fx["forward_strength/strengths"].tolist()
    out = forward(model, fx, spatial, temporal, batch=slice(0, 1))
    err = relative_error(out[0], fx["forward_strength/out"])
    assert err < 1e-5, err
    assert relative_error(forward(model, fx, batch=slice(0, 1))[0], fx["forward_strength/out"]) > 1e-3


def sample_conditioning(fx, model, negative=True):
    s = {k[len("sample/"):]: v for k, v in fx.items() if k.startswith("sample/")}
    return build_steadydancer_conditioning(model.layers, s["context"], s["negative_context"], s["clip_fea"],
                                           s["clip_fea_pose"], s["image_latent"], s["pose_latent"],
                                           s["negative_pose_latent"] if negative else None)


def test_conditioning_is_what_the_pipeline_fed_the_model(fx, model):
    """y (first-frame mask + the image video's latent), ref_x, ref_c and the two pose conditions."""
    cond = sample_conditioning(fx, model)
    assert isinstance(cond, MethodConditioning)
    assert torch.equal(cond.y, fx["sample/y"])
    ref_x, ref_c = reference_latents(cond.image_latent, cond.pose_latent)
    assert torch.equal(ref_x, fx["sample/ref_x"])
    assert torch.equal(ref_c, fx["sample/ref_c"][:, :16])
    assert torch.equal(cond.pose_latent, fx["sample/condition"])
    assert torch.equal(cond.negative_pose_latent, fx["sample/condition_null"])


def test_four_step_pose_guided_run_matches_the_reference_pipeline(fx, model):
    """UniPC, shift 5, text CFG 5 and pose CFG 1.5 on step 1 only (0.1 < 1/4 < 0.4): 9 model calls."""
    steps, shift, guide, pose_guide, start, end, seed = fx["sample/settings"].tolist()
    cond = sample_conditioning(fx, model)
    calls = []
    scheduler = make_scheduler("unipc", int(steps), shift)
    assert torch.equal(scheduler.schedule.timesteps.long(), fx["sample/timesteps"].unique_consecutive().long())
    make = pose_guidance(guide, pose_guide, start, end)

    def counting(positive, negative, cfg_scale, n):
        guidance = make(positive, negative, cfg_scale, n)
        calls.extend(i for i in range(n) if guidance.pose_step(i))
        return guidance

    out = sample_video(model.dit, cond, scheduler, guide, int(seed), progress=lambda *_: None,
                       check_interrupt=lambda: None, make_guidance=counting)
    assert calls == [1]
    err = relative_error(out, fx["sample/final"])
    assert err < 1e-5, err
