"""The speed inputs of the sampling nodes: step caches on Wan2.2-Animate's clip loop (state per clip), a cache
that cannot act on the run, compiled blocks and fp8 matmul as optional inputs with their bad-input lines."""
import logging

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.models.wan import compile as wan_compile
from poseanimate.nodes.sampler_nodes import PoseAnimateSampler
from poseanimate.nodes.wan_animate_nodes import PoseAnimateWanAnimate
from poseanimate.sampling import step_cache

from .test_realisdance_chain import SAMPLE, _conditioning, loaded as realisdance  # noqa: F401 (fixture)
from .test_wan_animate_chain import RUN, _inputs, loaded  # noqa: F401 (fixture)


@pytest.mark.parametrize("node", [PoseAnimateSampler, PoseAnimateWanAnimate])
def test_speed_inputs_are_optional_with_safe_defaults(node):
    optional = node.INPUT_TYPES()["optional"]
    assert optional["cache"][1]["default"] == "none" and optional["compile"][1]["default"] == "off"
    assert optional["fp8_matmul"][1]["default"] == "auto" and optional["compile"][0] == ["off", "auto", "on"]


def test_animate_clip_loop_keeps_cache_state_per_clip(loaded, monkeypatch, caplog):  # noqa: F811
    dit, _, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(11)
    run = dict(RUN, clip_frames=5, steps=4)  # three chained clips
    (plain,) = PoseAnimateWanAnimate().animate(dit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                                               **run)
    resets = []
    original = step_cache.StepCache.reset
    monkeypatch.setattr(step_cache.StepCache, "reset", lambda self: (resets.append(1), original(self))[1])
    (zero,) = PoseAnimateWanAnimate().animate(dit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                                              **run, cache="easycache", cache_threshold=0.0)
    assert torch.equal(plain, zero)
    assert len(resets) == 1 + 3  # made, then reset at the start of every clip: no residual crosses a clip
    with caplog.at_level(logging.INFO):
        (fast,) = PoseAnimateWanAnimate().animate(dit, animate, vae, text, text, clip, ref, poses,
                                                  face_video=faces, **run, cache="magcache", cache_threshold=1.0)
    assert torch.isfinite(fast).all()
    assert any("magcache: " in r.message and "of 12 forwards cached" in r.message for r in caplog.records)


def test_a_cache_that_can_skip_no_step_of_the_run_is_refused(realisdance):  # noqa: F811
    run = dict(SAMPLE, steps=4, scheduler="lightx2v_distill", step_list="1000, 750, 500, 250", cfg=1.0)
    with pytest.raises(InputError, match=r"^cache: teacache can cache no step of this 4-step lightx2v_distill run"):
        PoseAnimateSampler().sample(realisdance[0], _conditioning(realisdance)[1], **run, cache="teacache")
    (latent,) = PoseAnimateSampler().sample(realisdance[0], _conditioning(realisdance)[1], **run, cache="teacache",
                                            cache_start=1)
    assert torch.isfinite(latent["samples"]).all()


def test_compile_without_a_compiler_auto_runs_on_stops(realisdance, monkeypatch):  # noqa: F811
    wan_compile._compiler_problem.cache_clear()
    monkeypatch.setattr(wan_compile, "compiler_problem", lambda device, backend="inductor": "no C compiler")
    run = dict(SAMPLE, steps=2)
    (plain,) = PoseAnimateSampler().sample(realisdance[0], _conditioning(realisdance)[1], **run)
    (auto,) = PoseAnimateSampler().sample(realisdance[0], _conditioning(realisdance)[1], **run, compile="auto")
    assert torch.equal(plain["samples"], auto["samples"])
    with pytest.raises(InputError, match=r"^compile: is 'on' but torch .* \(no C compiler\)"):
        PoseAnimateSampler().sample(realisdance[0], _conditioning(realisdance)[1], **run, compile="on")
