"""Wan2.2-Animate's clip plan (methods/wan_animate/plan.py): padding, ping-pong order, chaining, bad input.

Parity fixtures come from tests/fixtures/make_window_plan_parity.py, which runs Wan2.2-Animate's
``generate`` with stub models.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from poseanimate.errors import InputError
from poseanimate.methods.wan_animate import plan as W

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "window_plan_parity.safetensors"


@pytest.fixture(scope="module")
def fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        meta = json.loads(f.metadata()["meta"])
    return tensors, meta


def test_animate_padded_length_and_pingpong(fixture):
    _, meta = fixture
    for key, values in meta["animate_valid_len"].items():
        clip_len, refert = map(int, key.split(","))
        assert [W.padded_length(n, clip_len, refert) for n in range(refert + 1, 400)] == values, key
    for key, values in meta["animate_padding"].items():
        n, target = map(int, key.split(","))
        assert W.pingpong_indices(n, target) == values, key


def test_animate_clip_chaining_parity(fixture):
    tensors, meta = fixture
    for case in meta["animate"]:
        plan = W.plan_clips(case["total"], case["clip_len"], case["refert_num"])
        assert len(plan) == case["clips"], case
        order = W.pingpong_indices(case["total"], plan.padded)
        outputs = []
        for clip in plan:  # what the fixture's stub VAE decodes: (input frame, clip, position)
            k = torch.tensor(order[clip.start:clip.end], dtype=torch.float32)
            outputs.append(torch.stack([k % 64, k.div(64, rounding_mode="floor") + 16 * clip.index,
                                        torch.arange(clip.end - clip.start, dtype=torch.float32)]))
        video = W.assemble_clips(outputs, plan, dim=1)
        assert torch.equal(video, tensors[case["name"] + ".video"]), case
        refert = tensors[case["name"] + ".refert"]  # [clips, 3, refert_num]
        assert torch.equal(refert[0], torch.zeros_like(refert[0]))
        for clip in plan.clips[1:]:
            assert clip.reference == case["refert_num"] and clip.start == plan[clip.index - 1].end - clip.reference
            previous = outputs[clip.index - 1]
            assert torch.equal(refert[clip.index], previous[:, -clip.reference:]), case


def test_plan_clips_examples():
    plan = W.plan_clips(100)
    assert plan.padded == 153 and [(c.start, c.end, c.reference) for c in plan] == [(0, 77, 0), (76, 153, 1)]
    assert "100 frames padded to 153" in plan.notice
    assert W.plan_clips(77).notice is None and len(W.plan_clips(77)) == 1
    short = W.plan_clips(1, 77, 1)  # the reference makes no clip at all here
    assert short.padded == 77 and len(short) == 1 and W.pingpong_indices(1, 4) == [0, 0, 0, 0]
    outputs = [torch.full((77,), float(c.index)) for c in plan]
    video = W.assemble_clips(outputs, plan)
    assert video.shape == (100,) and video[:77].eq(0).all() and video[77:].eq(1).all()


@pytest.mark.parametrize("call,pattern", [
    (lambda: W.plan_clips(100, 76, 1), r"clip length.*76 is not of the form 4k\+1"),
    (lambda: W.plan_clips(100, 77, 3), r"temporal reference frames.*1 or 5"),
    (lambda: W.plan_clips(100, 5, 5), r"clip length.*not longer than the 5"),
    (lambda: W.plan_clips(0), r"video length"),
])
def test_bad_input(call, pattern):
    with pytest.raises(InputError, match=pattern):
        call()
