"""Wan2.2-Animate clip by clip against ``wan/animate.py`` (committed fixture), and the clip inputs' rules.

tests/fixtures/make_wan_animate_parity.py ran the official
``WanAnimate.generate`` with stub models (a causal pooling "VAE", a DiT that
returns zeros, a decoder whose i-th output is
:func:`wan_animate_tiny.fake_decoded_clip`) on synthetic 16x8 videos of 77,
78, 150 and 300 frames, refert_num 1 and 5, in animation and replacement
mode, and recorded the ``y`` and pose latents the DiT got for each clip, the
per-frame means of its face pixels, and the per-frame means of the returned
video. Here the same stubs go through our clip plan, per-clip inputs,
condition video, mask and ``y``, chaining each clip on the previous stub
output. Measured: max absolute difference 2.4e-7 (float rounding of 0..1 vs
[-1, 1] pixels); the tests allow 1e-6.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import wan_animate_tiny as tiny  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.wan_animate import AnimateConfig, AnimateModules, build_animate_conditioning  # noqa: E402
from poseanimate.methods.wan_animate.clips import (AnimateClips, build_clip_y, condition_mask,  # noqa: E402
                                                   condition_video, drop_reference_frame, face_presence,
                                                   fill_missing_faces)
from poseanimate.pose.keypoints import FACE, PoseFrame, empty_people  # noqa: E402
from poseanimate.methods.wan_animate.plan import assemble_clips, plan_clips  # noqa: E402
from poseanimate.sampling.windows import Window  # noqa: E402

FIXTURE = FIXTURES / "wan_animate_parity.safetensors"
HEIGHT, WIDTH, FACE_PX, CLIP_LEN = 16, 8, 8, 77
TOLERANCE = 1e-6
CASES = [(mode, frames, refert) for mode in ("animate", "replace") for frames in (77, 78, 150, 300)
         for refert in (1, 5)]


@pytest.fixture(scope="module")
def fx() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE))


def image(frames_uint8: torch.Tensor) -> torch.Tensor:
    return frames_uint8.float() / 255.0


def encode(video: torch.Tensor) -> torch.Tensor:
    """The stub VAE on an IMAGE ``[T, H, W, 3]`` in 0..1, as the reference feeds it ([-1, 1], channels first)."""
    return tiny.fake_vae_encode(video.permute(3, 0, 1, 2) * 2.0 - 1.0)[None]


def decoded_image(index: int) -> torch.Tensor:
    return (tiny.fake_decoded_clip(index, CLIP_LEN, HEIGHT, WIDTH).permute(1, 2, 3, 0) + 1.0) / 2.0


def close(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    return ours.shape == ref.shape and (ours - ref).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("mode,frames,refert", CASES)
def test_clips_match_the_reference_pipeline(fx, mode, frames, refert):
    prefix = f"clips/{mode}_{frames}_r{refert}/"
    plan = plan_clips(frames, CLIP_LEN, refert)
    background = person = None
    if mode == "replace":
        background = image(tiny.synthetic_video(frames, HEIGHT, WIDTH, "background"))
        person = tiny.synthetic_person_mask(frames, HEIGHT, WIDTH).float()
    clips = AnimateClips(plan, image(tiny.synthetic_video(frames, HEIGHT, WIDTH, "pose")),
                         image(tiny.synthetic_video(frames, FACE_PX, FACE_PX, "face")), background, person)
    reference = encode(image(tiny.synthetic_video(1, HEIGHT, WIDTH, "reference")))
    assert len(clips) == sum(1 for k in fx if k.startswith(prefix) and k.endswith("/y"))
    outputs, refert_frames = [], None
    for i, inputs in enumerate(clips):
        assert inputs.mode == ("replacement" if mode == "replace" else "animation")
        y = build_clip_y(encode, reference, inputs, refert_frames)
        assert close(y[0], fx[f"{prefix}c{i}/y"]), f"clip {i} y"
        assert close(encode(inputs.pose_frames), fx[f"{prefix}c{i}/pose"]), f"clip {i} pose latent"
        face_means = (inputs.face_frames * 2.0 - 1.0).mean(dim=(1, 2, 3))
        assert close(face_means, fx[f"{prefix}c{i}/face_means"]), f"clip {i} faces"
        output = decoded_image(i)
        outputs.append(output)
        refert_frames = output[-plan.refert_num:]
    video = assemble_clips(outputs, plan)
    assert close((video * 2.0 - 1.0).mean(dim=(1, 2, 3)), fx[f"{prefix}video_means"])


# ---------------------------------------------------------------- y pieces
def test_condition_mask_layout():
    person = torch.zeros(9, 16, 16)
    person[:, :8] = 1.0  # the top half is the person
    mask = condition_mask(9, (2, 2), refert_count=1, person_mask=person)
    assert mask.shape == (1, 4, 3, 2, 2)
    assert torch.equal(mask[0, :, 0], torch.ones(4, 2, 2))  # latent frame 0: pixel frame 0, given
    assert torch.equal(mask[0, :, 1:, 0], torch.zeros(4, 2, 2)) and torch.equal(mask[0, :, 1:, 1], torch.ones(4, 2, 2))
    animation = condition_mask(9, (2, 2), refert_count=5)
    assert torch.equal(animation[0, :, 1], torch.ones(4, 2, 2))  # pixel frames 1..4: the reference frames
    assert torch.equal(animation[0, :, 2], torch.zeros(4, 2, 2))


def test_condition_video_fills_grey_or_background():
    refert = torch.rand(5, 16, 8, 3)
    video = condition_video(9, refert)
    assert torch.equal(video[:5], refert) and torch.equal(video[5:], torch.full((4, 16, 8, 3), 0.5))
    background = torch.rand(9, 16, 8, 3)
    assert torch.equal(condition_video(9, refert[:1], background), torch.cat([refert[:1], background[1:]]))
    assert torch.equal(condition_video(9, None, background), background)


def test_drop_reference_frame():
    latent = torch.arange(2 * 16 * 21).float().reshape(1, 2, 21, 4, 4).expand(1, 2, 21, 4, 4)
    assert torch.equal(drop_reference_frame(latent), latent[:, :, 1:])


# ---------------------------------------------------------------- refusals
def test_refuses_a_mask_with_the_wrong_frames_or_size():
    plan = plan_clips(20, 17, 1)
    poses, background = torch.rand(20, 16, 8, 3), torch.rand(20, 16, 8, 3)
    with pytest.raises(InputError, match="person mask.*19 frames"):
        AnimateClips(plan, poses, None, background, torch.zeros(19, 16, 8))
    with pytest.raises(InputError, match="person mask.*16x8"):
        AnimateClips(plan, poses, None, background, torch.zeros(20, 8, 16))
    with pytest.raises(InputError, match="person mask: is missing"):
        AnimateClips(plan, poses, None, background, None)
    with pytest.raises(InputError, match="face frames"):
        AnimateClips(plan, poses, torch.rand(19, 8, 8, 3))


def test_refuses_refert_num_other_than_1_or_5():
    with pytest.raises(InputError, match="1 or 5"):
        plan_clips(150, CLIP_LEN, 3)
    clips = AnimateClips(plan_clips(150, CLIP_LEN, 5), image(tiny.synthetic_video(150, HEIGHT, WIDTH, "pose")))
    reference = encode(image(tiny.synthetic_video(1, HEIGHT, WIDTH, "reference")))
    with pytest.raises(InputError, match="temporal reference frames.*3 frames"):
        build_clip_y(encode, reference, clips[1], decoded_image(0)[-3:])
    with pytest.raises(InputError, match="none for the first clip"):
        build_clip_y(encode, reference, clips[0], decoded_image(0)[-5:])


def test_refuses_mismatched_clip_conditioning():
    modules = AnimateModules(AnimateConfig(dim=64, num_heads=2, adapters=2), device="meta")
    y, pose = torch.zeros(1, 20, 21, 4, 4), torch.zeros(1, 16, 20, 4, 4)
    with pytest.raises(InputError, match="pose latent"):
        build_animate_conditioning(modules, y, pose[:, :, :19], None, torch.zeros(1, 5, 4096))
    with pytest.raises(InputError, match="face frames.*80 crops for a clip of 77"):
        build_animate_conditioning(modules, y, pose, torch.zeros(80, 8, 8, 3), torch.zeros(1, 5, 4096))
    conditioning = build_animate_conditioning(modules, y, pose, None, torch.zeros(1, 5, 4096))
    with pytest.raises(InputError, match="context windows"):
        conditioning.branch(True, 0, 20, Window(0, 0, 10))
    with pytest.raises(InputError, match="negative prompt"):
        conditioning.branch(False, 0, 20)


# ---------------------------------------------------------------- faces
def face_frame(has_face: bool) -> PoseFrame:
    people = empty_people(1)
    if has_face:
        landmarks = np.stack([np.linspace(10, 30, 70), np.linspace(20, 45, 70), np.ones(70)], axis=1)
        people[0, FACE] = landmarks
    return PoseFrame(people, 64, 64)


def test_no_face_frames_policy():
    present = face_presence([face_frame(f) for f in (True, False, False, True, False)])
    assert present == [True, False, False, True, False]
    crops = torch.rand(5, 8, 8, 3)
    nearest = fill_missing_faces(crops, present, "nearest")
    for i, source in enumerate((0, 0, 3, 3, 3)):  # frame 2 is nearer to 3 than to 0
        assert torch.equal(nearest[i], crops[source])
    blank = fill_missing_faces(crops, present, "blank")
    assert torch.equal(blank[[0, 3]], crops[[0, 3]]) and torch.equal(blank[[1, 2, 4]], torch.zeros(3, 8, 8, 3))
    assert torch.equal(fill_missing_faces(crops, [False] * 5), torch.zeros_like(crops))  # no face anywhere
    assert fill_missing_faces(None, present) is None  # the conditioning reads None as blank
    with pytest.raises(InputError, match="no-face frames"):
        fill_missing_faces(crops, present, "skip")
