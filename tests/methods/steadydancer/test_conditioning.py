"""SteadyDancer's conditioning: inputs checked, branches per kind and window, the pose guidance's passes."""
from __future__ import annotations

import pytest
import torch

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.steadydancer import PoseGuidance, build_steadydancer_conditioning  # noqa: E402
from poseanimate.sampling.windows import Window  # noqa: E402


def build(fx, model, **change):
    s = {k[len("sample/"):]: v for k, v in fx.items() if k.startswith("sample/")}
    args = dict(context=s["context"], negative_context=s["negative_context"], clip_fea=s["clip_fea"],
                clip_fea_pose=s["clip_fea_pose"], image_latent=s["image_latent"], pose_latent=s["pose_latent"],
                negative_pose_latent=s["negative_pose_latent"])
    args.update(change)
    return build_steadydancer_conditioning(model.layers, **args)


def test_negative_pose_latents_of_the_wrong_length_are_refused(fx, model):
    short = fx["sample/negative_pose_latent"][:, :, :20]
    with pytest.raises(InputError, match=r"negative pose latent: has 20 latent frames \(77 video frames\), the "
                                         r"pose latent 21 \(81 video frames\); expected a negative pose video as long"):
        build(fx, model, negative_pose_latent=short)


@pytest.mark.parametrize("change,name", [
    (dict(pose_latent=torch.zeros(1, 16, 21, 6, 8)), "pose latent: is"),
    (dict(image_latent=torch.full((1, 16, 21, 6, 10), float("nan"))), "image latent: holds NaN"),
    (dict(spatial_strength=float("inf")), "spatial pose strength"),
    (dict(pose_start=0.5, pose_end=0.2), "pose guidance start/end"),
])
def test_bad_inputs_name_the_input(fx, model, change, name):
    with pytest.raises(InputError, match=name):
        build(fx, model, **change)


def test_branches_differ_only_where_the_reference_does(fx, model):
    cond = build(fx, model)
    assert cond.extra_token_count == cond.kind_branch("positive", 0, 4).ext.extra_tokens[0].tokens.shape[1] == 30
    pos, neg, null = (cond.kind_branch(k, 0, 4) for k in ("positive", "negative", "pose_null"))
    assert pos.context is null.context and neg.context is cond.negative_context
    assert torch.equal(pos.y, neg.y) and torch.equal(pos.y, null.y)
    assert pos.ext.extra_tokens[0].tokens is null.ext.extra_tokens[0].tokens  # same reference frames
    assert cond.fused_pose(False, None) is not cond.fused_pose(True, None)
    cond.clear_cache()
    assert not cond._fused and cond._ref_tokens is None


def test_a_window_gets_its_slice_of_y_and_of_the_pose(fx, model):
    cond = build(fx, model)
    window = Window(1, 8, 13)
    branch = cond.kind_branch("positive", 0, 4, window)
    assert torch.equal(branch.y, cond.y[:, :, 8:13])
    assert torch.equal(cond.fused_pose(False, window), model.layers.fuse(cond.pose_latent[:, :, 8:13]))
    positions = branch.ext.extra_tokens[0].positions
    assert positions[:, 0].unique().tolist() == [5, 6]  # the two reference frames right after the window's 5
    out = model.dit(torch.randn(1, 16, 5, 6, 10), torch.tensor([500.0]), branch.context, clip_fea=branch.clip_fea,
                    y=branch.y, ext=branch.ext)
    assert out.shape == (1, 16, 5, 6, 10) and torch.isfinite(out).all()


def test_pose_null_branch_needs_negative_pose_latents(fx, model):
    cond = build(fx, model, negative_pose_latent=None)
    guidance = cond.guidance("p", "n", 5.0, 10)
    assert guidance.pose_null is None and not any(guidance.pose_step(i) for i in range(10))


def test_guidance_passes_per_step():
    calls = []

    def denoise(x, t, branch):
        calls.append(branch)
        return {"cond": 3.0, "neg": 1.0, "null": 2.0}[branch] * torch.ones(1)

    g = PoseGuidance("cond", "neg", "null", scale=5.0, pose_scale=1.5, start=0.1, end=0.4, steps=10)
    assert [i for i in range(10) if g.pose_step(i)] == [2, 3]
    assert g.velocity(denoise, torch.zeros(1), torch.zeros(1), 2).item() == 1 + 5 * 2 + 1.5 * 1
    assert calls == ["cond", "neg", "null"]
    calls.clear()
    g1 = PoseGuidance("cond", "neg", "null", scale=1.0, pose_scale=1.5, start=0.1, end=0.4, steps=10)
    assert g1.velocity(denoise, torch.zeros(1), torch.zeros(1), 5).item() == 3.0
    assert calls == ["cond"]  # text scale 1 and outside the pose range: one pass
