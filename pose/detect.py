"""Person detectors: YOLOX (DWPose / UniAnimate-DiT) and YOLOv10 (Wan2.2-Animate).

Each turns RGB uint8 frames into person boxes ``[x1, y1, x2, y2]`` in frame
pixels, ordered the way its reference pipeline ranks people (so "the first
person" means what it meant there). Pre- and post-processing follow the
references step for step, including their rounding, so boxes match:

* YOLOX: letterbox into the model's input (top-left, grey 114 padding), grid
  and stride decoding, objectness x class score, NMS at 0.45 (areas with +1),
  person class with score > 0.3; fed BGR like UniAnimate's cv2 frames.
* YOLOv10: plain resize to the input, /255, RGB; the model's own top-300 boxes,
  score >= 0.05, boxes truncated to integers, OpenCV-style NMS at 0.5, then
  Wan's choice of the main person (largest box not much thinner than the
  widest) first.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from .onnx_session import OnnxModel, batch_step, load_onnx, run_batches, wrong_model


@dataclass
class Detections:
    """Person boxes in one frame, best-ranked first."""

    boxes: np.ndarray   # [M, 4] x1, y1, x2, y2 in frame pixels
    scores: np.ndarray  # [M]

    @staticmethod
    def none() -> "Detections":
        return Detections(np.zeros((0, 4)), np.zeros((0,)))


def with_channel_order(image: np.ndarray, order: str) -> np.ndarray:
    """An RGB frame in the channel order (``"rgb"``/``"bgr"``) a model was fed
    in its reference pipeline."""
    if order == "bgr":
        return np.ascontiguousarray(image[..., ::-1])
    if order != "rgb":
        raise ValueError(f"channel order must be 'rgb' or 'bgr', got {order!r}")
    return np.ascontiguousarray(image)


# ---------------------------------------------------------------- YOLOX
def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = 114) -> tuple[np.ndarray, float]:
    """Resize ``image`` to fit ``size`` (h, w) keeping its aspect ratio, placed
    top-left on a ``pad_value`` canvas. Returns the canvas and the scale."""
    h, w = size
    ratio = min(h / image.shape[0], w / image.shape[1])
    new_w, new_h = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    canvas = np.full((h, w, 3), pad_value, dtype=np.uint8)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, ratio


def yolox_input(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """YOLOX's input ``[3, H, W]`` (0..255 floats, letterboxed) and its scale."""
    canvas, ratio = letterbox(image, input_hw)
    return canvas.transpose(2, 0, 1).astype(np.float32), ratio


@functools.lru_cache(maxsize=8)
def yolox_grid(input_hw: tuple[int, int], strides: tuple[int, ...] = (8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Each YOLOX output cell's grid position ``[N, 2]`` and stride ``[N, 1]``."""
    grids, steps = [], []
    for stride in strides:
        gh, gw = input_hw[0] // stride, input_hw[1] // stride
        xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        steps.append(np.full((gh * gw, 1), stride))
    return np.concatenate(grids), np.concatenate(steps)


def nms_plus_one(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS as DWPose's YOLOX code does it (box areas counted with +1)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return keep


def yolox_people(raw: np.ndarray, input_hw: tuple[int, int], ratio: float, score_threshold: float = 0.3,
                 nms_threshold: float = 0.45, candidate_threshold: float = 0.1) -> Detections:
    """Person boxes in frame pixels from one image's raw YOLOX output ``[N, 85]``:
    cells decoded from grid and stride (centre ``(raw + cell) * stride``, size
    ``exp(raw) * stride``), person score = objectness x class 0, NMS over the
    candidates above ``candidate_threshold``, then those above ``score_threshold``."""
    raw = np.asarray(raw)
    grid, step = yolox_grid(tuple(input_hw))
    if grid.shape[0] != raw.shape[0]:
        raise ValueError(f"YOLOX output has {raw.shape[0]} cells, input {input_hw} implies {grid.shape[0]}")
    person = raw[:, 4] * raw[:, 5]
    valid = person > candidate_threshold
    if not valid.any():
        return Detections.none()
    rows, person = raw[valid], person[valid]
    centre = ((rows[:, :2] + grid[valid]) * step[valid]).astype(raw.dtype)    # float32 like the reference
    size = (np.exp(rows[:, 2:4]) * step[valid]).astype(raw.dtype)
    boxes = np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=1)
    boxes /= ratio
    keep = nms_plus_one(boxes, person, nms_threshold)
    boxes, person = boxes[keep], person[keep]
    good = person > score_threshold
    return Detections(boxes[good].astype(np.float64), person[good].astype(np.float64))


class OnnxDetector:
    """What both detectors share: the ONNX model, the channel order its
    reference pipeline fed it, its input size (640x640 where the file leaves
    it dynamic) and one batched pass over the frames: :meth:`prepare` each
    frame, run the model, :meth:`decode` each frame's output."""

    kind = ""

    def __init__(self, model: OnnxModel, channel_order: str):
        self.model = model
        self.channel_order = channel_order
        h, w = model.input_hw
        self.input_hw = (h or 640, w or 640)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """One frame (already in the model's channel order) as the model's
        ``[3, H, W]`` input, and what :meth:`decode` needs to map back."""
        raise NotImplementedError

    def decode(self, raw: np.ndarray, image: np.ndarray, context: Any) -> Detections:
        """One frame's raw model output to its person boxes, best-ranked first."""
        raise NotImplementedError

    def __call__(self, images: Sequence[np.ndarray], batch_size: int = 8,
                 after_batch: Callable[[int], None] | None = None) -> list[Detections]:
        # one model batch of frames at a time: the prepared inputs of a long video are never all held, and
        # ``after_batch`` (progress, interrupt) runs between batches (the same batches as in one pass)
        step = batch_step(self.model, batch_size)
        found: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            prepared = [self.prepare(with_channel_order(image, self.channel_order)) for image in chunk]
            raw = run_batches(self.model, [inputs for inputs, _ in prepared], batch_size, after_batch)[0]
            found.extend(self.decode(r, image, context) for r, image, (_, context) in zip(raw, chunk, prepared))
        return found


class YoloxDetector(OnnxDetector):
    """YOLOX person detector (``yolox_l.onnx``: ``images [1, 3, 640, 640] -> [1, 8400, 85]``)."""

    kind = "yolox"

    def __init__(self, model: OnnxModel, channel_order: str = "bgr", score_threshold: float = 0.3,
                 nms_threshold: float = 0.45):
        shape = model.output_shapes[0] if model.output_shapes else ()
        if len(model.output_names) != 1 or len(shape) != 3 or (shape[2] is not None and shape[2] < 6):
            raise wrong_model(model, "pose detector", "a YOLOX detector: one output [batch, cells, 5 + classes]")
        super().__init__(model, channel_order)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        return yolox_input(image, self.input_hw)

    def decode(self, raw: np.ndarray, image: np.ndarray, ratio: float) -> Detections:
        return yolox_people(raw, self.input_hw, ratio, self.score_threshold, self.nms_threshold)


# ---------------------------------------------------------------- YOLOv10
def nms_opencv(boxes_xywh: np.ndarray, scores: np.ndarray, score_threshold: float, threshold: float) -> list[int]:
    """Greedy NMS with ``cv2.dnn.NMSBoxes`` semantics: integer boxes, scores
    strictly above ``score_threshold``, stable descending order, a box is kept
    while its IoU with every kept box is at most ``threshold``."""
    scores = np.asarray(scores, dtype=np.float32)                     # OpenCV compares in float32
    candidates = np.flatnonzero(scores > np.float32(score_threshold))
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    x, y, w, h = (boxes_xywh[:, i].astype(np.int64) for i in range(4))
    areas = w * h
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.asarray(keep)
            iw = np.maximum(0, np.minimum(x[i] + w[i], x[k] + w[k]) - np.maximum(x[i], x[k]))
            ih = np.maximum(0, np.minimum(y[i] + h[i], y[k] + h[k]) - np.maximum(y[i], y[k]))
            inter = (iw * ih).astype(np.float64)
            union = areas[i] + areas[k] - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = np.where(areas[i] + areas[k] > 0, inter / union, 1.0)
            overlap = np.float32(1.0) - (1.0 - iou).astype(np.float32)
            if (overlap > threshold).any():
                continue
        keep.append(int(i))
    return keep


def yolov10_input(image: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """YOLOv10's input ``[3, H, W]``: plainly resized, 0..1 floats."""
    resized = cv2.resize(image, (input_hw[1], input_hw[0]))
    return np.transpose(np.asarray(resized) / 255.0, (2, 0, 1)).astype(np.float32)


def yolov10_boxes(raw: np.ndarray, image_hw: tuple[int, int], input_hw: tuple[int, int],
                  conf_threshold: float = 0.05, iou_threshold: float = 0.5) -> np.ndarray:
    """One image's YOLOv10 output ``[300, 6]`` to rows ``[x1, y1, x2, y2, score,
    class]`` in frame pixels after NMS (boxes truncated to integers, as Wan does)."""
    out = np.asarray(raw).reshape(-1, 6)
    x_factor = np.float64(image_hw[1]) / input_hw[1]
    y_factor = np.float64(image_hw[0]) / input_hw[0]
    mask = out[:, 4] >= conf_threshold
    scores, classes = out[mask, 4], out[mask, 5]
    boxes = out[:, :4][mask]
    boxes[:, [0, 2]] *= x_factor
    boxes[:, [1, 3]] *= y_factor
    boxes[:, 2] = boxes[:, 2] - boxes[:, 0]
    boxes[:, 3] = boxes[:, 3] - boxes[:, 1]
    boxes = boxes.astype(np.int32)
    keep = nms_opencv(boxes, scores, conf_threshold, iou_threshold)
    rows = [[float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 0] + boxes[i, 2]),
             float(boxes[i, 1] + boxes[i, 3]), float(scores[i]), float(classes[i])] for i in keep]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def wan_person_order(rows: np.ndarray, conf_threshold: float = 0.05, shape_ratio: float = 0.4,
                     others_ratio: float = 0.1) -> list[int]:
    """Wan2.2-Animate's ranking of person rows: the main person (largest area,
    skipping boxes whose longer side is under ``shape_ratio`` of the current
    choice's), then the other people it counts (area between ``others_ratio``
    of the main one and the main one)."""
    people = [i for i, r in enumerate(rows) if int(r[5]) == 0 and r[4] > conf_threshold]
    if not people:
        return []
    sides = [max(rows[i, 2] - rows[i, 0], rows[i, 3] - rows[i, 1]) for i in people]
    best_shape = max(sides)
    best, best_size = -1, -np.inf
    for i, side in zip(people, sides):
        size = (rows[i, 2] - rows[i, 0]) * (rows[i, 3] - rows[i, 1])
        if size > best_size:
            if side < best_shape * shape_ratio:
                continue
            best, best_size, best_shape = i, size, side
    if best < 0:
        return []
    others = [i for i in people if i != best
              and best_size * others_ratio < (rows[i, 2] - rows[i, 0]) * (rows[i, 3] - rows[i, 1]) < best_size]
    return [best] + others


class Yolov10Detector(OnnxDetector):
    """YOLOv10 detector as Wan2.2-Animate uses it (``[1, 3, 640, 640] -> [1, 300, 6]``)."""

    kind = "yolov10"

    def __init__(self, model: OnnxModel, channel_order: str = "rgb", conf_threshold: float = 0.05,
                 iou_threshold: float = 0.5):
        shape = model.output_shapes[0] if model.output_shapes else ()
        if len(shape) != 3 or shape[2] != 6:
            raise wrong_model(model, "pose detector", "a YOLOv10 detector: output [batch, 300, 6]")
        super().__init__(model, channel_order)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, None]:
        return yolov10_input(image, self.input_hw), None

    def decode(self, raw: np.ndarray, image: np.ndarray, context: None) -> Detections:
        rows = yolov10_boxes(raw, image.shape[:2], self.input_hw, self.conf_threshold, self.iou_threshold)
        order = wan_person_order(rows, self.conf_threshold)
        return Detections(rows[order, :4], rows[order, 4]) if order else Detections.none()


def make_detector(model: OnnxModel) -> YoloxDetector | Yolov10Detector:
    """The detector class that fits the model's output signature."""
    shape = model.output_shapes[0] if len(model.output_shapes) == 1 else ()
    if len(shape) == 3 and shape[2] == 6:
        return Yolov10Detector(model)
    if len(shape) == 3 and (shape[2] is None or shape[2] > 6):
        return YoloxDetector(model)
    raise wrong_model(model, "pose detector",
                      "YOLOX (yolox_l.onnx, output [1, 8400, 85]) or YOLOv10 (yolov10m.onnx, output [1, 300, 6])")


def load_detector(path: str, device: str = "auto") -> YoloxDetector | Yolov10Detector:
    return make_detector(load_onnx(path, device, role="pose detector"))
