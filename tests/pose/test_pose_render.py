"""The renderer against goldens drawn by the references' own drawing code
(tests/fixtures/make_pose_render_golden.py): equal pixel for pixel."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import keypoints as kp
from poseanimate.pose import render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def scene():
    data = dict(np.load(FIXTURES / "pose_render_people.npz"))
    h, w = data["frame_hw"]
    dwpose = kp.PoseFrame(kp.wholebody_to_people(data["points"], data["scores"], neck="dwpose"), w, h)
    wan = kp.PoseFrame(kp.wholebody_to_people(data["points"], data["scores"], neck="mean"), w, h)
    return data, dwpose, wan


def _golden(name):
    return cv2.imread(str(FIXTURES / name))[..., ::-1]                   # files hold what a viewer shows, RGB


def test_hand_colours_match_matplotlib(scene):
    np.testing.assert_array_equal(np.stack(render.HAND_COLORS), scene[0]["hand_colors"])


def test_openpose_style_matches_dwpose_drawing(scene):
    _, frame, _ = scene
    ours = render.render_pose(frame, style="openpose")
    assert np.array_equal(ours, _golden("pose_render_openpose.png"))


def test_unianimate_style_matches_its_pose_frames(scene):
    _, frame, _ = scene
    ours = render.render_pose(frame, 512, 768, style="unianimate")
    assert np.array_equal(ours, _golden("pose_render_unianimate.png"))
    # the model read the BGR canvas as RGB: the first limb (listed as (255, 0, 0)) is blue to it
    rgb = render.render_pose(frame, 512, 768, style="unianimate", color_order="rgb")
    assert np.array_equal(rgb, ours[..., ::-1])


def test_wan_animate_style_matches_wan_drawing(scene):
    data, _, frame = scene
    h, w = data["wan_hw"]
    ours = render.render_pose(frame, w, h, style="wan_animate")
    assert np.array_equal(ours, _golden("pose_render_wan_animate.png"))


def test_switches_and_resizing(scene):
    _, frame, _ = scene
    full = render.render_pose(frame, style="openpose")
    no_face = render.render_pose(frame, style="openpose", face=False)
    white = (full == 255).all(-1)
    assert white.sum() > 100 and (no_face == 255).all(-1).sum() < white.sum()
    nothing = render.render_pose(frame, style="openpose", body=False, hands=False, face=False)
    assert nothing.max() == 0
    small = render.render_pose(frame, 480, 832, style="unianimate")
    assert small.shape == (832, 480, 3) and small.max() > 0
    clip = render.render_poses([frame, frame.replace(people=kp.empty_people())], style="openpose")
    assert clip.shape == (2, 480, 640, 3) and clip[1].max() == 0
    floats = render.to_image_floats(clip)
    assert floats.dtype == np.float32 and floats.max() <= 1.0


def test_letterbox_image_centres_and_keeps_aspect():
    image = np.full((100, 200, 3), 200, np.uint8)
    out = render.letterbox_image(image, 100, 100)
    assert out.shape == (100, 100, 3)
    assert (out[:25] == 0).all() and (out[75:] == 0).all() and (out[25:75] == 200).all()
    tall = render.letterbox_image(np.full((200, 100, 3), 9, np.uint8), 300, 300)
    assert (tall[:, :75] == 0).all() and (tall[:, 75:225] == 9).all() and (tall[:, 225:] == 0).all()


def test_bad_render_options_are_input_errors(scene):
    _, frame, _ = scene
    with pytest.raises(InputError, match="style"):
        render.render_pose(frame, style="comic")
    with pytest.raises(InputError, match="colour order"):
        render.render_pose(frame, color_order="rbg")
    with pytest.raises(InputError, match="empty"):
        render.render_poses([])
