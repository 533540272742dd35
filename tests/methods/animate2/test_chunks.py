"""Animate-2's long-video chunks against ComfyUI's chained WanAnimate2ToVideo and the official loop.

animate2_chunks.json comes from tests/fixtures/make_animate2_chunks.py (ComfyUI's node run as a user chains
it, a recording stand-in VAE; the official ``inference_core`` loop as its code reads).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from poseanimate.methods.animate2.run import chunk_offsets, plan_chunks

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "animate2_chunks.json"
DATA = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("total", [81, 150, 300])
def test_chunks_follow_the_official_loop(total):
    plan = plan_chunks(total)
    assert [[c.start, c.end] for c in plan] == DATA[str(total)]["official"]
    assert [c.reference for c in plan] == [0] + [1] * (len(plan) - 1)
    assert plan.total == total


@pytest.mark.parametrize("total", [81, 150, 300])
def test_chunk_offsets_match_comfy_chained_nodes(total):
    comfy = DATA[str(total)]["comfy"]
    ours = chunk_offsets(total)
    assert len(ours) == len(comfy)
    for mine, theirs in zip(ours, comfy):
        assert (mine.offset_in, mine.read_start, mine.read_end, mine.trim_image, mine.offset_out) == (
            theirs["offset_in"], theirs["read_start"], theirs["read_end"], theirs["trim_image"], theirs["offset_out"])
        assert mine.read_start + 81 - mine.read_end == theirs["padded"]  # both pad to a whole chunk


def test_chunk_frames_add_up_to_the_video():
    # each chunk keeps its frames after the continued one; the joined video is cut back to the input
    for total in (81, 150, 300):
        plan = plan_chunks(total)
        kept = sum(c.end - c.start - c.reference for c in plan)
        assert kept >= total and kept - total < 80
