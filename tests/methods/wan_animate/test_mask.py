"""The replacement-mode person mask from poses; its growing against the reference preprocessing.

``coarsen_mask`` is compared with the official ``get_mask_body_img`` (square
dilation) + ``get_aug_mask`` (grid fill) outputs recorded by
tests/fixtures/make_wan_animate_parity.py: equal, pixel for pixel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from poseanimate.errors import InputError
from poseanimate.methods.wan_animate.mask import coarsen_mask, pose_mask
from poseanimate.pose.keypoints import BODY, PoseFrame, empty_people

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "wan_animate_parity.safetensors"


def test_coarsen_mask_matches_the_reference_preprocessing():
    fx = load_file(str(FIXTURE))
    cases = sorted({k.split("/")[1] for k in fx if k.startswith("mask/")})
    assert len(cases) == 4
    for case in cases:
        w_len, h_len, iterations, kernel = (int(v) for v in fx[f"mask/{case}/args"])
        ours = coarsen_mask(fx[f"mask/{case}/in"].numpy(), iterations, kernel, w_len, h_len)
        assert np.array_equal(ours, fx[f"mask/{case}/out"].numpy()), (w_len, h_len, iterations, kernel)


def person(x0: float, y0: float, scale: float = 1.0) -> np.ndarray:
    """One person's body keypoints (a standing figure) at ``(x0, y0)`` in a 200x100 frame."""
    people = empty_people(1)
    body = [(0, -40), (0, -30), (-10, -30), (-14, -15), (-16, 0), (10, -30), (14, -15), (16, 0), (-6, 0),
            (-7, 20), (-7, 40), (6, 0), (7, 20), (7, 40), (-3, -43), (3, -43), (-5, -41), (5, -41)]
    for i, (dx, dy) in enumerate(body):
        people[0, BODY.start + i] = (x0 + dx * scale, y0 + dy * scale, 0.9)
    return people


def test_pose_mask_covers_the_body_grown_to_its_box():
    frames = [PoseFrame(person(50, 100), 100, 200)]
    mask = pose_mask(frames, (200, 100))
    assert mask.shape == (1, 200, 100) and mask.dtype == np.float32
    ys, xs = np.nonzero(mask[0])
    # the keypoints span x 34..66, y 57..140; grown by the hull margin (5 px) and the 3 x 7x7 dilation (9 px)
    assert xs.min() == 34 - 14 and ys.min() == 57 - 14 and ys.max() == 140 + 14
    box = mask[0, ys.min():ys.max(), xs.min():xs.max()]
    assert box.all()  # w_len = h_len = 1: the whole bounding box (bar its last row and column)
    finer = pose_mask(frames, (200, 100), w_len=10, h_len=20)
    assert finer.sum() < mask.sum() and np.all(finer <= mask)


def test_pose_mask_scales_to_the_video_and_borrows_missing_frames():
    frames = [PoseFrame(person(50, 100), 100, 200), PoseFrame(empty_people(0), 100, 200),
              PoseFrame(person(40, 90), 100, 200)]
    masks = pose_mask(frames, (100, 50))
    assert masks.shape == (3, 100, 50)
    assert np.array_equal(masks[1], masks[0])  # no person: the nearest (earlier on a tie) frame's mask
    assert masks[0, 50, 25] == 1 and masks[0, 2, 2] == 0


def test_pose_mask_refusals():
    with pytest.raises(InputError, match="no person"):
        pose_mask([PoseFrame(empty_people(0), 100, 200)], (200, 100))
    with pytest.raises(InputError, match="mask grid columns"):
        pose_mask([PoseFrame(person(50, 100), 100, 200)], (200, 100), w_len=0)
