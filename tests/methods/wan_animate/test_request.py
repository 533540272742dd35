"""Wan2.2-Animate's request and mode logic (methods/wan_animate/request.py), without models: what animation and
replacement mode hand the clips, and the errors that name the input."""
import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.methods.images import fit_image
from poseanimate.methods.wan_animate import AnimateRequest
from poseanimate.pose.keypoints import PoseFrame, empty_people

H, W, N = 32, 48, 9


def _request(**changes) -> AnimateRequest:
    g = torch.Generator().manual_seed(0)
    base = dict(reference_image=torch.rand(1, H, W, 3, generator=g), pose_video=torch.rand(N, H, W, 3, generator=g),
                context=torch.randn(1, 5, 32, generator=g), clip_frames=5, steps=3)
    return AnimateRequest(**{**base, **changes})


def _mask(frames: int = N) -> torch.Tensor:
    mask = torch.zeros(frames, H, W)
    mask[:, 8:24, 16:40] = 1.0
    return mask


def test_animation_mode_hands_the_frames_on():
    request = _request()
    inputs = request.prepare()
    assert request.mode == inputs.mode == "animation"
    assert inputs.background is None and inputs.person_mask is None and inputs.face_frames is None
    assert inputs.pose_frames is request.pose_video
    assert torch.equal(inputs.reference, request.reference_image)
    assert inputs.request is request


def test_replacement_mode_blacks_out_the_person_and_keeps_the_rest():
    background = torch.rand(N + 2, H, W, 3, generator=torch.Generator().manual_seed(1))  # longer: cut to N
    mask = _mask()
    inputs = _request(background_video=background, person_mask=mask).prepare()
    assert inputs.mode == "replacement"
    assert inputs.background.shape == (N, H, W, 3) and torch.equal(inputs.person_mask, mask)
    person = mask.bool()
    assert not inputs.background[person].any()
    assert torch.equal(inputs.background[~person], background[:N][~person])


def test_one_mask_frame_serves_every_frame():
    mask = _mask(1)
    inputs = _request(background_video=torch.ones(N, H, W, 3), person_mask=mask[0]).prepare()  # a [H, W] mask
    assert inputs.person_mask.shape == (N, H, W) and torch.equal(inputs.person_mask, mask.expand(N, -1, -1))
    assert torch.equal(inputs.background, (1.0 - mask.expand(N, -1, -1))[..., None].expand(-1, -1, -1, 3))


def test_the_reference_is_fitted_to_the_video():
    large = torch.rand(2, 2 * H, 2 * W, 3, generator=torch.Generator().manual_seed(2))
    inputs = _request(reference_image=large).prepare()
    assert torch.equal(inputs.reference, fit_image(large[0], H, W)[None])
    assert torch.equal(_request(reference_image=large[0]).prepare().reference, inputs.reference)  # [H, W, 3] too
    with pytest.raises(InputError, match="reference_image: is 48x48 pixels"):
        _request(reference_image=torch.rand(1, 48, 48, 3)).prepare()


def test_frames_without_a_face_follow_the_policy():
    faces = torch.rand(N, 16, 16, 3, generator=torch.Generator().manual_seed(3))
    no_face = [PoseFrame(empty_people(0), W, H)] * N  # no person, so no face in any frame
    blank = _request(face_video=faces, face_poses=no_face, no_face_frames="blank").prepare()
    assert not blank.face_frames.any()
    assert torch.equal(_request(face_video=faces).prepare().face_frames, faces)
    with pytest.raises(InputError, match="face_poses: have 2 frames for 9 pose frames"):
        _request(face_video=faces, face_poses=no_face[:2]).prepare()
    with pytest.raises(InputError, match="face_video: has 4 frames"):
        _request(face_video=faces[:4]).prepare()


def test_replacement_inputs_are_checked_by_name():
    with pytest.raises(InputError, match="person_mask: is missing"):
        _request(background_video=torch.rand(N, H, W, 3)).prepare()
    with pytest.raises(InputError, match="background_video: is missing"):
        _request(person_mask=_mask()).prepare()
    with pytest.raises(InputError, match="person_mask: is 9 frames of 24x32"):
        _request(background_video=torch.rand(N, H, W, 3), person_mask=torch.ones(N, 32, 24)).prepare()
    with pytest.raises(InputError, match="person_mask: is 3 frames"):
        _request(background_video=torch.rand(N, H, W, 3), person_mask=_mask(3)).prepare()
    with pytest.raises(InputError, match="background_video: is 24x32"):
        _request(background_video=torch.rand(N, 32, 24, 3), person_mask=_mask()).prepare()


def test_total_steps_count_every_clip():
    assert _request().total_steps() == 3 * 2  # 9 frames: two clips of 5 sharing one frame
    assert _request(clip_frames=77).total_steps() == 3
    with pytest.raises(InputError, match="1 or 5"):
        _request(refert_num=3).total_steps()
