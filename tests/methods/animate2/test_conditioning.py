"""Animate-2's conditioning with the pack's sampler: the pose window, the cache, bad inputs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import wan_animate_tiny as tiny  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.animate2 import PoseBranchCache  # noqa: E402
from poseanimate.methods.animate2.conditioning import PoseWindow, build_animate2_conditioning  # noqa: E402
from poseanimate.models.wan.config import infer_config  # noqa: E402
from poseanimate.models.wan.dit import WanDiT  # noqa: E402
from poseanimate.sampling.conditioning import MethodConditioning  # noqa: E402
from poseanimate.sampling.schedulers import make_scheduler  # noqa: E402
from poseanimate.sampling.video import WindowSettings, sample_video  # noqa: E402
from poseanimate.sampling.windows import Window  # noqa: E402

FIXTURE = FIXTURES / "animate2_parity.safetensors"


@pytest.fixture(scope="module")
def model() -> WanDiT:
    with safe_open(str(FIXTURE), "pt") as f:
        shapes = json.loads(f.metadata()["comfy_shapes"])
    sd = tiny.formula_state_dict(shapes)
    dit = WanDiT(infer_config(sd, num_heads=tiny.HEADS), device="meta")
    dit.load_state_dict(sd, strict=True, assign=True)
    return dit.eval()


def inputs(frames: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"y": torch.randn(1, 20, frames + 1, 4, 6, generator=g),
            "pose_latents": torch.randn(1, 16, frames, 4, 6, generator=g),
            "context": torch.randn(1, 6, tiny.TEXT_DIM, generator=g),
            "negative_context": torch.randn(1, 3, tiny.TEXT_DIM, generator=g),
            "clip_fea": torch.randn(1, 9, tiny.CLIP_DIM, generator=g)}


def test_pose_window_steps():
    window = PoseWindow(0.25, 0.75)
    assert [window.active(i, 4) for i in range(4)] == [False, True, True, False]
    assert all(PoseWindow().active(i, 10) for i in range(10))
    assert not any(PoseWindow(0.5, 0.5).active(i, 10) for i in range(10))


def test_pose_window_start_after_end_is_a_clear_error():
    with pytest.raises(InputError, match="pose start: 0.8 is after the pose end 0.3"):
        PoseWindow(0.8, 0.3)
    with pytest.raises(InputError, match="pose end: 1.5 is not a fraction"):
        PoseWindow(0.0, 1.5)


def test_branches_carry_the_pose_only_inside_the_window(model):
    cond = build_animate2_conditioning(model, window=PoseWindow(0.25, 0.75), pose_strength=0.5, **inputs())
    assert isinstance(cond, MethodConditioning)
    assert cond.geometry.frames == 4
    inside = cond.branch(True, 1, 4).ext.block_forward
    outside = cond.branch(False, 3, 4).ext.block_forward
    assert inside.pose is not None and inside.pose.strength == 0.5
    assert outside.pose is None
    # the pose branch reads the generation branch's prompt and CLIP unless given its own
    assert inside.pose.context is cond.context and inside.pose.clip_fea is cond.clip_fea


def test_windows_are_refused(model):
    cond = build_animate2_conditioning(model, **inputs())
    with pytest.raises(InputError, match="context windows: were asked for with Animate-2"):
        cond.branch(True, 0, 4, Window(0, 0, 2))
    with pytest.raises(InputError, match="context windows"):
        sample_video(model, cond, make_scheduler("euler", 2, 5.0), 1.0, 0, WindowSettings(length=2, overlap=1,
                                                                                            weighting="uniform"))


def test_pose_latents_of_the_wrong_length_are_refused(model):
    bad = inputs()
    bad["pose_latents"] = bad["pose_latents"][:, :, :2]
    with pytest.raises(InputError, match=r"pose latents: have shape \[1, 16, 2, 4, 6\]; expected \[1, 16, 3, 4, 6\]"):
        build_animate2_conditioning(model, **bad)


def test_sampled_with_the_cache_equals_without_it_in_float32(model):
    scheduler = make_scheduler("euler", 3, 5.0)
    runs = []
    for cache in (None, PoseBranchCache("float32")):
        cond = build_animate2_conditioning(model, pose_strength=0.8, reference_strength=1.2,
                                           window=PoseWindow(0.0, 0.5), cache=cache, **inputs())
        runs.append(sample_video(model, cond, scheduler, 2.0, seed=5))
        if cache is not None:
            # steps 0 and 1 of 3 are in the window: of their 4 forwards (2 guidance branches) 3 read the cache
            assert cache.hits == len(model.blocks) * (2 * 2 - 1)
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (1, 16, 4, 4, 6)


def test_int8_cache_stays_close(model):
    scheduler = make_scheduler("euler", 2, 5.0)
    outs = []
    for cache in (None, PoseBranchCache("int8")):
        cond = build_animate2_conditioning(model, cache=cache, **inputs())
        outs.append(sample_video(model, cond, scheduler, 1.0, seed=1))
    rel = ((outs[0] - outs[1]).abs().max() / outs[0].abs().max()).item()
    assert 0 < rel < 1e-2


def test_step_caches_run_the_pose_stream_through_the_block_runner(model):
    """The pose stream lives in BlockStack.run_block, so a step cache runs it like any block: at threshold 0
    (never skip) it equals the plain run; at a high threshold it skips whole forwards and still runs."""
    from poseanimate.sampling.step_cache import make_step_cache
    scheduler = make_scheduler("euler", 4, 5.0)
    runs = []
    for cache in (None, make_step_cache("easycache", 0.0, start=1), make_step_cache("easycache", 1.0, start=1)):
        cond = build_animate2_conditioning(model, pose_strength=0.8, **inputs())
        runs.append(sample_video(model, cond, scheduler, 1.0, seed=2, cache=cache))
    assert torch.equal(runs[0], runs[1])
    assert torch.isfinite(runs[2]).all() and not torch.equal(runs[0], runs[2])
