"""Drawing poses as the images the animation models were trained on.

Each style reproduces its reference's drawing code pixel for pixel (OpenCV
ellipses for limbs, circles for joints; see ``tests/pose/test_pose_render.py``):

* ``"openpose"``: DWPose / ControlNet OpenPose: limbs as ellipses of half-width
  4 in the 18 body colours, dimmed to 0.6, joints as radius-4 dots; hands as
  2 px lines in hues around the colour wheel with red dots; face landmarks as
  white radius-3 dots. Points count when their confidence is above 0.3. Colours
  in RGB, as comfyui_controlnet_aux draws them.
* ``"unianimate"``: UniAnimate-DiT's pose frames: the OpenPose drawing with the
  two toe points (body, feet, hands, no face) on a 768x512 canvas, resized to
  the output. UniAnimate drew with OpenCV and so stored the colour lists as
  BGR, then read the images as RGB: its model saw the channels swapped, and
  so does this style by default (``color_order="bgr"``).
* ``"wan_animate"``: Wan2.2-Animate's ``draw_aapose_new``: stick width from the
  canvas size, confidence 0.5, two toe points in their own colours, thinner
  hands, no face; RGB.

Output is uint8 ``[H, W, 3]`` (RGB); :func:`to_image_floats` gives 0..1 floats.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from .. import host
from ..errors import InputError
from .keypoints import BODY, FACE, FACE_LANDMARKS, FEET, LEFT_HAND, RIGHT_HAND, PoseFrame

STYLES = ("openpose", "unianimate", "wan_animate")
UNIANIMATE_CANVAS = (768, 512)  # height, width

# 1-based OpenPose limb pairs; the last two join the toe midpoints (19 left, 20 right) to the ankles.
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
         (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (14, 19), (11, 20))
BODY_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
               (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
               (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
OPENPOSE_FOOT_COLORS = ((170, 255, 255), (255, 255, 0))
WAN_FOOT_COLORS = ((200, 200, 0), (100, 100, 0))
HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
              (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))
_EPS = 0.01


def _hue(h: float) -> np.ndarray:
    """Fully saturated colour of hue ``h`` in 0..1, times 255 (HSV to RGB)."""
    i = int(h * 6.0)
    f = h * 6.0 - i
    v, p, q, t = 1.0, 0.0, 1.0 - f, 1.0 - (1.0 - f)
    rgb = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i % 6]
    return np.array(rgb) * 255


HAND_COLORS = tuple(_hue(i / float(len(HAND_EDGES))) for i in range(len(HAND_EDGES)))


def _toes(person: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    """Left and right toe midpoints ``[2, 3]``: confidence 1 when both toes are
    above ``threshold`` (UniAnimate), or the mean of the two (Wan)."""
    out = np.zeros((2, 3))
    for k, (a, b) in enumerate(((0, 1), (3, 4))):
        ta, tb = person[FEET.start + a], person[FEET.start + b]
        if ta[2] > 0 and tb[2] > 0:
            out[k, :2] = (ta[:2] + tb[:2]) / 2
            out[k, 2] = float(ta[2] > threshold and tb[2] > threshold) if rule == "both" else (ta[2] + tb[2]) / 2
    return out


def _limb(canvas: np.ndarray, p1: tuple[float, float], p2: tuple[float, float], width: int, color) -> None:
    xs, ys = np.array([p1[0], p2[0]]), np.array([p1[1], p2[1]])
    length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
    angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
    polygon = cv2.ellipse2Poly((int(np.mean(xs)), int(np.mean(ys))), (int(length / 2), width), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, color)


class _Canvas:
    """Maps a frame's pixels onto the canvas the way the references do: DWPose
    normalises by the frame size, then multiplies by the canvas size; Wan draws
    pixel coordinates as they are."""

    def __init__(self, frame: PoseFrame, height: int, width: int, normalise: bool = True):
        self.image = np.zeros((height, width, 3), dtype=np.uint8)
        self.fw, self.fh = float(frame.width), float(frame.height)
        self.w, self.h = float(width), float(height)
        self.normalise = normalise
        self.same = (self.fw, self.fh) == (self.w, self.h)

    def xy(self, point: np.ndarray) -> tuple[float, float]:
        if self.normalise:
            return point[0] / self.fw * self.w, point[1] / self.fh * self.h
        if self.same:
            return float(point[0]), float(point[1])
        return point[0] * (self.w / self.fw), point[1] * (self.h / self.fh)


def _draw_hand(c: _Canvas, hand: np.ndarray, threshold: float, line: int, radius: int) -> None:
    ints = [(int(x), int(y)) for x, y in (c.xy(p) for p in hand)]
    seen = hand[:, 2] >= threshold
    for e, (a, b) in enumerate(HAND_EDGES):
        (x1, y1), (x2, y2) = ints[a], ints[b]
        if seen[a] and seen[b] and x1 > _EPS and y1 > _EPS and x2 > _EPS and y2 > _EPS:
            cv2.line(c.image, (x1, y1), (x2, y2), HAND_COLORS[e], thickness=line)
    for k, (x, y) in enumerate(ints):
        if seen[k] and x > _EPS and y > _EPS:
            cv2.circle(c.image, (x, y), radius, (0, 0, 255), thickness=-1)


def _draw_openpose(c: _Canvas, people: np.ndarray, body: bool, hands: bool, face: bool, feet: bool,
                   threshold: float, stick_width: int) -> None:
    points = [np.concatenate([p[BODY], _toes(p, "both", threshold)]) for p in people]
    count = 20 if feet else 18
    limbs = len(LIMBS) if feet else 17
    colors = BODY_COLORS + OPENPOSE_FOOT_COLORS
    if body:
        for i in range(limbs):
            for pts in points:
                a, b = LIMBS[i][0] - 1, LIMBS[i][1] - 1
                if pts[a, 2] > threshold and pts[b, 2] > threshold:
                    _limb(c.image, c.xy(pts[a]), c.xy(pts[b]), stick_width, colors[i])
        c.image = (c.image * 0.6).astype(np.uint8)
        for i in range(count):
            for pts in points:
                if pts[i, 2] > threshold:
                    x, y = c.xy(pts[i])
                    cv2.circle(c.image, (int(x), int(y)), 4, colors[i], thickness=-1)
    if hands:
        for part in (LEFT_HAND, RIGHT_HAND):
            for p in people:
                _draw_hand(c, p[part], threshold, 2, 4)
    if face:
        for p in people:
            lmks = p[FACE][:FACE_LANDMARKS]
            for k in range(FACE_LANDMARKS):
                x, y = (int(v) for v in c.xy(lmks[k]))
                if lmks[k, 2] >= threshold and x > _EPS and y > _EPS:
                    cv2.circle(c.image, (x, y), 3, (255, 255, 255), thickness=-1)


def _draw_wan(c: _Canvas, people: np.ndarray, body: bool, hands: bool, face: bool, feet: bool,
              threshold: float, stick_width: int | None) -> None:
    h, w = c.image.shape[:2]
    width = stick_width or max(int(min(h, w) / 200) - 1, 1)
    hand_width = max(width // 2, 1)
    colors = BODY_COLORS + WAN_FOOT_COLORS
    for p in people:
        pts = np.concatenate([p[BODY], _toes(p, "mean", threshold)])
        limbs = len(LIMBS) if feet else 17
        if body:
            for i in range(limbs):
                a, b = LIMBS[i][0] - 1, LIMBS[i][1] - 1
                if pts[a, 2] >= threshold and pts[b, 2] >= threshold:
                    _limb(c.image, c.xy(pts[a]), c.xy(pts[b]), width, [int(float(v) * 0.6) for v in colors[i]])
            for i in range(20 if feet else 18):
                if pts[i, 2] >= threshold:
                    x, y = c.xy(pts[i])
                    cv2.circle(c.image, (int(x), int(y)), width, colors[i], thickness=-1)
        if hands:
            for part in (LEFT_HAND, RIGHT_HAND):
                _draw_hand(c, p[part], threshold, hand_width, hand_width)
        if face:
            lmks = p[FACE][:FACE_LANDMARKS]
            for k in range(FACE_LANDMARKS):
                x, y = (int(v) for v in c.xy(lmks[k]))
                if lmks[k, 2] >= threshold and x > _EPS and y > _EPS:
                    cv2.circle(c.image, (x, y), hand_width, (255, 255, 255), thickness=-1)


def render_pose(frame: PoseFrame, width: int | None = None, height: int | None = None, style: str = "openpose",
                body: bool = True, hands: bool = True, face: bool | None = None, feet: bool | None = None,
                color_order: str | None = None, threshold: float | None = None,
                stick_width: int | None = None) -> np.ndarray:
    """Draw one frame's people on a black ``height x width`` canvas (default:
    the frame's size). ``face``, ``feet``, ``color_order`` and ``threshold``
    default to what the style's reference does."""
    if style not in STYLES:
        raise InputError("pose render style", f"is '{style}'", f"one of {', '.join(STYLES)}")
    width, height = int(width or frame.width), int(height or frame.height)
    if width <= 0 or height <= 0:
        raise InputError("render size", f"is {width}x{height}", "a positive width and height")
    wan = style == "wan_animate"
    face = (style == "openpose") if face is None else face
    feet = (style != "openpose") if feet is None else feet
    threshold = (0.5 if wan else 0.3) if threshold is None else threshold
    color_order = ("bgr" if style == "unianimate" else "rgb") if color_order is None else color_order
    if color_order not in ("rgb", "bgr"):
        raise InputError("pose colour order", f"is '{color_order}'", "'rgb' or 'bgr'")
    draw_h, draw_w = UNIANIMATE_CANVAS if style == "unianimate" else (height, width)
    canvas = _Canvas(frame, draw_h, draw_w, normalise=not wan)
    if wan:
        _draw_wan(canvas, frame.people, body, hands, face, feet, threshold, stick_width)
    else:
        _draw_openpose(canvas, frame.people, body, hands, face, feet, threshold, stick_width or 4)
    image = canvas.image
    if (draw_h, draw_w) != (height, width):
        shrink = draw_h * draw_w > height * width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if color_order == "bgr":
        image = np.ascontiguousarray(image[..., ::-1])
    return image


def render_poses(frames: Sequence[PoseFrame], width: int | None = None, height: int | None = None,
                 check_interrupt: Callable[[], None] | None = None, **options) -> np.ndarray:
    """:func:`render_pose` for every frame: ``[N, H, W, 3]`` uint8. Without a
    size, every frame is drawn at the first frame's size. ``check_interrupt``
    (default: the host's) runs before every frame."""
    if not frames:
        raise InputError("poses", "are empty", "at least one frame to draw")
    width, height = width or frames[0].width, height or frames[0].height
    check = host.interrupt_check(check_interrupt)
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        check()
        out[i] = render_pose(frame, width, height, **options)
    return out


def letterbox_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fit ``image`` into ``width x height`` keeping its aspect ratio, centred on
    black (Wan2.2-Animate's ``padding_resize``, used for its pose frames when
    it does not retarget: drawn at the driving video's size, then fitted)."""
    h, w = image.shape[:2]
    out = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    if h / w > height / width:
        new_w = int(height / h * w)
        resized = cv2.resize(image, (new_w, height), interpolation=cv2.INTER_LINEAR)
        pad = int((width - new_w) / 2)
        out[:, pad:pad + new_w] = resized.reshape(height, new_w, *image.shape[2:])
    else:
        new_h = int(width / w * h)
        resized = cv2.resize(image, (width, new_h), interpolation=cv2.INTER_LINEAR)
        pad = int((height - new_h) / 2)
        out[pad:pad + new_h] = resized.reshape(new_h, width, *image.shape[2:])
    return out


def to_image_floats(images: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in 0..1 (ComfyUI IMAGE layout ``[N, H, W, 3]``)."""
    return images.astype(np.float32) / 255.0
