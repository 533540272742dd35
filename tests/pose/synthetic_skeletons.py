"""Synthetic people in COCO-WholeBody order (133 points), with known proportions.

Pure numpy, no pack imports: the fixture scripts under tests/fixtures run it
with the reference environment's Python (loaded by file path), and the tests
use it to build driving clips whose bone lengths are known exactly.
"""
from __future__ import annotations

import numpy as np

# COCO-WholeBody indices
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANK, R_ANK = 11, 12, 13, 14, 15, 16
FEET = 17          # left big toe, left small toe, left heel, right big toe, right small toe, right heel
FACE = 23
L_HAND, R_HAND = 91, 112

DEFAULT = dict(shoulder=60.0, hip=35.0, torso=150.0, neck=55.0, upper_arm=85.0, forearm=75.0,
               thigh=110.0, shin=105.0, eye=14.0, ear=30.0, foot=30.0, hand=35.0, face=40.0)


def _down(angle: float, outward: float) -> np.ndarray:
    """Unit vector ``angle`` radians from straight down, turning toward ``outward`` (+1 image right)."""
    return np.array([outward * np.sin(angle), np.cos(angle)])


def person(neck=(256.0, 200.0), size=1.0, proportions=None, arms=(0.3, 0.2, 0.3, 0.2), legs=(0.1, 0.0, 0.1, 0.0),
           score=0.9) -> tuple[np.ndarray, np.ndarray]:
    """One person facing the camera: ``[133, 2]`` pixels and ``[133]`` scores.

    ``arms`` = (right upper arm, right forearm, left upper arm, left forearm)
    angles from hanging straight down, outward positive; ``legs`` likewise
    (right thigh, right shin, left thigh, left shin). ``size`` scales every length.
    """
    p = dict(DEFAULT, **(proportions or {}))
    p = {k: v * size for k, v in p.items()}
    pts = np.zeros((133, 2))
    n = np.asarray(neck, dtype=float)
    # the person's right side is on the image's left
    pts[R_SHO], pts[L_SHO] = n + (-p["shoulder"], 0), n + (p["shoulder"], 0)
    pts[NOSE] = n + (0, -p["neck"])
    pts[R_EYE], pts[L_EYE] = pts[NOSE] + (-p["eye"], -p["eye"] * 0.8), pts[NOSE] + (p["eye"], -p["eye"] * 0.8)
    pts[R_EAR], pts[L_EAR] = pts[NOSE] + (-p["ear"], -p["eye"] * 0.3), pts[NOSE] + (p["ear"], -p["eye"] * 0.3)
    pelvis = n + (0, p["torso"])
    pts[R_HIP], pts[L_HIP] = pelvis + (-p["hip"], 0), pelvis + (p["hip"], 0)
    for side, (sho, elb, wri, hand), (a_up, a_fore) in (
            (-1, (R_SHO, R_ELB, R_WRI, R_HAND), arms[0:2]), (1, (L_SHO, L_ELB, L_WRI, L_HAND), arms[2:4])):
        pts[elb] = pts[sho] + p["upper_arm"] * _down(a_up, side)
        pts[wri] = pts[elb] + p["forearm"] * _down(a_fore, side)
        direction = _down(a_fore, side)
        across = np.array([-direction[1], direction[0]])
        pts[hand] = pts[wri]
        for finger in range(5):
            spread = (finger - 2) * 0.35
            for joint in range(4):
                reach = p["hand"] * (0.45 + 0.2 * joint)
                pts[hand + 1 + finger * 4 + joint] = pts[wri] + reach * direction + spread * reach * 0.5 * across
    for side, (hip, knee, ank, toe0), (a_th, a_sh) in (
            (-1, (R_HIP, R_KNEE, R_ANK, FEET + 3), legs[0:2]), (1, (L_HIP, L_KNEE, L_ANK, FEET), legs[2:4])):
        pts[knee] = pts[hip] + p["thigh"] * _down(a_th, side)
        pts[ank] = pts[knee] + p["shin"] * _down(a_sh, side)
        pts[toe0] = pts[ank] + (side * p["foot"] * 0.3, p["foot"] * 0.5)          # big toe
        pts[toe0 + 1] = pts[ank] + (side * p["foot"] * 0.7, p["foot"] * 0.45)     # small toe
        pts[toe0 + 2] = pts[ank] + (-side * p["foot"] * 0.1, p["foot"] * 0.25)    # heel
    centre = pts[NOSE] + (0, -p["face"] * 0.1)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.where(np.arange(68) < 17, 1.0, np.where(np.arange(68) < 48, 0.6, 0.35))
    pts[FACE:FACE + 68] = centre + np.stack([np.cos(t) * p["face"] * 0.8, np.sin(t) * p["face"]], 1) * ring[:, None]
    scores = np.full(133, float(score))
    return pts, scores


def clip(frames: int = 8, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """A short clip ``[T, 133, 2]``, ``[T, 133]``: arms swing, legs step, the body drifts right."""
    out_p, out_s = [], []
    neck = np.asarray(kwargs.pop("neck", (256.0, 200.0)), dtype=float)
    for t in range(frames):
        phase = 2 * np.pi * t / max(frames, 1)
        arms = (0.3 + 1.0 * np.sin(phase), 0.2 + 0.8 * np.sin(phase + 0.7),
                0.4 + 0.9 * np.cos(phase), 0.3 + 0.6 * np.cos(phase + 0.4))
        legs = (0.1 + 0.25 * np.sin(phase), -0.05 + 0.2 * np.sin(phase), 0.1 + 0.25 * np.cos(phase), 0.0)
        pts, sc = person(neck=neck + (6.0 * t, 2.0 * np.sin(phase)), arms=arms, legs=legs, **kwargs)
        out_p.append(pts)
        out_s.append(sc)
    return np.stack(out_p), np.stack(out_s)
