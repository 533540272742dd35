"""Top-down whole-body keypoint models: RTMPose (DWPose) and ViTPose (Wan2.2-Animate).

Both crop each person box out of the frame, run the crops through the ONNX
model (batched over all people of all frames when its batch dimension is
dynamic) and map the 133 COCO-WholeBody points back to frame pixels. Crops and
decoding follow the references step for step:

* RTMPose (``dw-ll_ucoco_384.onnx``): box x1.25 around its centre, widened to
  the input's aspect ratio, affine-warped to the input size, normalised with
  mean (123.675, 116.28, 103.53) / std (58.395, 57.12, 57.375); SimCC decoding
  (argmax of the x and y distributions / split ratio 2, confidence = the
  smaller of the two maxima). UniAnimate-DiT feeds it BGR frames.
* ViTPose (Wan2.2-Animate): box made 256:192 and x1.25, cut out on integer
  pixels with zero padding and resized, ImageNet mean/std on 0..1 values;
  heatmap argmax refined by DARK (log of the Gaussian-blurred heatmap, one
  Newton step). Wan2.2's pipeline hands it BGR frames, so that is the default.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

from .detect import Detections, with_channel_order
from .onnx_session import OnnxModel, batch_step, load_onnx, run_batches, wrong_model

WHOLEBODY_POINTS = 133


class TopDownModel:
    """What both keypoint models share: the ONNX model, the channel order its
    reference pipeline fed it, and one pass over every person of every frame:
    :meth:`crop` each box, run all crops in batches, :meth:`decode` them, and
    hand each frame its people."""

    kind = ""
    neck_rule = ""

    def __init__(self, model: OnnxModel, channel_order: str):
        self.model = model
        self.channel_order = channel_order

    def crop(self, image: np.ndarray, box: np.ndarray, score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One person's ``[3, H, W]`` model input from a frame (already in the
        model's channel order), and the crop's centre and scale."""
        raise NotImplementedError

    def decode(self, outputs: list[list[np.ndarray]], centers: np.ndarray,
               scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's outputs for all crops to frame pixels ``[M, 133, 2]`` and scores ``[M, 133]``."""
        raise NotImplementedError

    def __call__(self, images: Sequence[np.ndarray], detections: Sequence[Detections], batch_size: int = 8,
                 after_batch: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keypoints ``[M, 133, 2]`` and scores ``[M, 133]`` in frame pixels, per frame."""
        people = [(f, box, score) for f, found in enumerate(detections)
                  for box, score in zip(found.boxes, found.scores)]
        results = [(np.zeros((0, WHOLEBODY_POINTS, 2)), np.zeros((0, WHOLEBODY_POINTS))) for _ in images]
        if not people:
            return results
        # one model batch of people at a time (the same batches as in one pass): the crops of a long video are
        # never all held, and ``after_batch`` (progress, interrupt) runs between batches
        step = batch_step(self.model, batch_size)
        all_points, all_vals = [], []
        for start in range(0, len(people), step):
            crops, centers, scales = [], [], []
            for f, box, score in people[start:start + step]:
                crop, center, scale = self.crop(with_channel_order(images[f], self.channel_order), box, score)
                crops.append(crop)
                centers.append(center)
                scales.append(scale)
            outputs = run_batches(self.model, crops, batch_size, after_batch)
            points, vals = self.decode(outputs, np.stack(centers), np.stack(scales))
            all_points.append(points)
            all_vals.append(vals)
        points, vals = np.concatenate(all_points), np.concatenate(all_vals)
        owners = np.asarray([f for f, _, _ in people])
        for f in range(len(images)):
            mine = owners == f
            results[f] = (points[mine], vals[mine])
        return results


# ---------------------------------------------------------------- RTMPose
RTM_MEAN = np.array([123.675, 116.28, 103.53])
RTM_STD = np.array([58.395, 57.12, 57.375])


def rtmpose_center_scale(box: np.ndarray, input_wh: tuple[int, int],
                         padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (w, h) of the crop for ``box``: padded, then widened or
    heightened to the model input's aspect ratio."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    center = np.array([x1 + x2, y1 + y2]) * 0.5
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = input_wh[0] / input_wh[1]
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return center, scale


def rtmpose_warp(center: np.ndarray, scale: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine matrix taking the crop region to the model input."""
    out_w, out_h = input_wh
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, -0.5 * scale[0]])
    dst[0] = (out_w * 0.5, out_h * 0.5)
    dst[1] = (out_w * 0.5, out_h * 0.5 - out_w * 0.5)
    for pts in (src, dst):          # third point: the first two's difference turned 90 degrees
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]])
    return cv2.getAffineTransform(src, dst)


def rtmpose_crop(image: np.ndarray, box: np.ndarray,
                 input_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The normalised ``[3, H, W]`` float32 input for one person, and its centre and scale."""
    center, scale = rtmpose_center_scale(box, input_wh)
    warp = rtmpose_warp(center, scale, input_wh)
    crop = cv2.warpAffine(image, warp, (int(input_wh[0]), int(input_wh[1])), flags=cv2.INTER_LINEAR)
    crop = (crop.astype(np.float32) - RTM_MEAN.astype(np.float32)) / RTM_STD.astype(np.float32)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)), center, scale


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray,
                 split_ratio: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """SimCC distributions ``[M, K, Wx]``, ``[M, K, Wy]`` to input-pixel
    locations ``[M, K, 2]`` and confidences ``[M, K]`` (the smaller maximum).
    Points whose confidence is not positive get location -1 / split_ratio."""
    x_loc = np.argmax(simcc_x, axis=-1)
    y_loc = np.argmax(simcc_y, axis=-1)
    locs = np.stack((x_loc, y_loc), axis=-1).astype(np.float32)
    vals = np.minimum(np.max(simcc_x, axis=-1), np.max(simcc_y, axis=-1))
    locs[vals <= 0.0] = -1
    return locs / split_ratio, vals


def simcc_to_frame(locs: np.ndarray, input_wh: tuple[int, int], center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Input-pixel locations ``[K, 2]`` of one crop back to frame pixels."""
    return locs / np.asarray(input_wh) * scale + center - scale / 2


class RTMPoseModel(TopDownModel):
    """DWPose's RTMPose whole-body model
    (``input [1, 3, 384, 288] -> simcc_x [1, 133, 576], simcc_y [1, 133, 768]``)."""

    kind = "rtmpose"
    neck_rule = "dwpose"

    def __init__(self, model: OnnxModel, channel_order: str = "bgr", split_ratio: float = 2.0):
        shapes = model.output_shapes
        if len(shapes) != 2 or any(len(s) != 3 for s in shapes):
            raise wrong_model(model, "pose keypoint model",
                              "an RTMPose/DWPose model: outputs simcc_x [batch, 133, Wx] and simcc_y [batch, 133, Wy]")
        super().__init__(model, channel_order)
        names = [n.lower() for n in model.output_names]
        self.x_index = names.index("simcc_x") if "simcc_x" in names else 0
        self.split_ratio = split_ratio
        h, w = model.input_hw
        self.input_wh = (w or 288, h or 384)

    def crop(self, image: np.ndarray, box: np.ndarray, score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return rtmpose_crop(image, box, self.input_wh)

    def decode(self, outputs: list[list[np.ndarray]], centers: np.ndarray,
               scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        simcc_x, simcc_y = np.stack(outputs[self.x_index]), np.stack(outputs[1 - self.x_index])
        locs, vals = simcc_decode(simcc_x, simcc_y, self.split_ratio)
        points = np.stack([simcc_to_frame(loc, self.input_wh, c, s) for loc, c, s in zip(locs, centers, scales)])
        return points.astype(np.float64), vals.astype(np.float64)


# ---------------------------------------------------------------- ViTPose
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def vitpose_center_scale(box: np.ndarray, input_hw: tuple[int, int],
                         rescale: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale (in units of 200 px, as mmpose) of the crop for ``box``."""
    aspect = input_hw[0] / float(input_hw[1])
    center = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
    size = max((box[2] - box[0]) * aspect, box[3] - box[1])
    return center, np.array([size / aspect, size]) / 200.0 * rescale


def _crop_corner(point: tuple[float, float], center: np.ndarray, scale: float,
                 input_hw: tuple[int, int]) -> np.ndarray:
    """An input-image corner mapped back into the frame, rounded as the reference does."""
    height = 200 * scale
    width = height / (input_hw[0] / float(input_hw[1]))
    t = np.zeros((3, 3))
    t[0, 0] = float(input_hw[1]) / width
    t[1, 1] = float(input_hw[0]) / height
    t[0, 2] = input_hw[1] * (-float(center[0]) / width + 0.5)
    t[1, 2] = input_hw[0] * (-float(center[1]) / height + 0.5)
    t[2, 2] = 1
    p = np.dot(np.linalg.inv(t), np.array([point[0] - 1, point[1] - 1, 1.0]).T)
    return np.array([round(p[0]), round(p[1])], dtype=int) + 1


def vitpose_crop(image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The normalised ``[3, H, W]`` float32 input: the crop region cut on
    integer pixels (zero outside the frame) and resized to the input."""
    s = float(max(scale))
    ul = _crop_corner((1, 1), center, s, input_hw) - 1
    br = _crop_corner((input_hw[1] + 1, input_hw[0] + 1), center, s, input_hw) - 1
    region = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), dtype=np.float32)
    h, w = image.shape[:2]
    nx = max(0, -ul[0]), min(br[0], w) - ul[0]
    ny = max(0, -ul[1]), min(br[1], h) - ul[1]
    ox = max(0, ul[0]), min(w, br[0])
    oy = max(0, ul[1]), min(h, br[1])
    if nx[1] > nx[0] and ny[1] > ny[0]:
        region[ny[0]:ny[1], nx[0]:nx[1]] = image[oy[0]:oy[1], ox[0]:ox[1]]
    crop = cv2.resize(region, (input_hw[1], input_hw[0]))
    crop = (crop / np.float32(255.0) - IMAGENET_MEAN.astype(np.float32)) / IMAGENET_STD.astype(np.float32)
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


def _blur_keep_peak(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """Gaussian-blur each map with zeros around it (float32, OpenCV, as the
    reference) and rescale it to its old maximum. The zero-padded maps are
    stacked into one tall image so that a single OpenCV call blurs them all:
    the padding is as wide as the kernel's reach, so no map sees another."""
    border = (kernel - 1) // 2
    m, k, h, w = heatmaps.shape
    padded = np.zeros((m * k, h + 2 * border, w + 2 * border), dtype=np.float32)
    padded[:, border:border + h, border:border + w] = heatmaps.reshape(m * k, h, w)
    tall = cv2.GaussianBlur(padded.reshape(-1, w + 2 * border), (kernel, kernel), 0)
    blurred = tall.reshape(m * k, h + 2 * border, w + 2 * border)[:, border:border + h, border:border + w]
    blurred = blurred.reshape(m, k, h, w)
    peak = heatmaps.reshape(m, k, -1).max(-1).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        blurred = blurred * (peak / blurred.reshape(m, k, -1).max(-1))[..., None, None]
    return blurred


def heatmap_decode(heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray,
                   kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``[M, K, H, W]`` to frame pixels ``[M, K, 2]`` and confidences
    ``[M, K]`` (the heatmap maxima), with DARK sub-pixel refinement.
    ``center`` is ``[M, 2]`` pixels; ``scale`` is ``[M, 2]`` in units of 200 px."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    m, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(m, k, -1)
    index = np.argmax(flat, axis=-1)
    vals = np.max(flat, axis=-1)
    preds = np.stack([index % w, index // w], axis=-1).astype(np.float64)
    preds[vals <= 0] = -1

    logs = np.log(np.maximum(_blur_keep_peak(heatmaps, kernel), np.float32(1e-10))).astype(np.float64)
    px, py = preds[..., 0].astype(int), preds[..., 1].astype(int)
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    pxc, pyc = np.clip(px, 2, w - 3), np.clip(py, 2, h - 3)
    mi, ki = np.meshgrid(np.arange(m), np.arange(k), indexing="ij")

    def at(dy: int, dx: int) -> np.ndarray:
        return logs[mi, ki, pyc + dy, pxc + dx]

    c = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    det = dxx * dyy - dxy ** 2
    ok = inside & (det != 0)
    safe = np.where(ok, det, 1.0)
    # offset = -H^-1 d, with H^-1 = [[dyy, -dxy], [-dxy, dxx]] / det
    preds[..., 0] -= np.where(ok, (dyy * dx - dxy * dy) / safe, 0.0)
    preds[..., 1] -= np.where(ok, (dxx * dy - dxy * dx) / safe, 0.0)

    size = np.asarray(scale, dtype=np.float64) * 200.0
    center = np.asarray(center, dtype=np.float64)
    out = np.empty_like(preds)
    out[..., 0] = preds[..., 0] * (size[:, None, 0] / w) + center[:, None, 0] - size[:, None, 0] * 0.5
    out[..., 1] = preds[..., 1] * (size[:, None, 1] / h) + center[:, None, 1] - size[:, None, 1] * 0.5
    return out, vals


class ViTPoseModel(TopDownModel):
    """Wan2.2-Animate's ViTPose whole-body model (``[1, 3, 256, 192] -> heatmaps [1, 133, 64, 48]``)."""

    kind = "vitpose"
    neck_rule = "mean"

    def __init__(self, model: OnnxModel, channel_order: str = "bgr"):
        shape = model.output_shapes[0] if model.output_shapes else ()
        if len(shape) != 4:
            raise wrong_model(model, "pose keypoint model", "a ViTPose model: heatmaps [batch, 133, H, W]")
        super().__init__(model, channel_order)
        h, w = model.input_hw
        self.input_hw = (h or 256, w or 192)

    @staticmethod
    def usable_box(box: np.ndarray, score: float, frame_hw: tuple[int, int]) -> np.ndarray:
        """The box, or the whole frame when it is unscored or under 10 px (Wan's rule)."""
        if score <= 0 or box[2] - box[0] < 10 or box[3] - box[1] < 10:
            return np.array([0.0, 0.0, frame_hw[1], frame_hw[0]])
        return np.asarray(box, dtype=np.float64)

    def crop(self, image: np.ndarray, box: np.ndarray, score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        center, scale = vitpose_center_scale(self.usable_box(box, score, image.shape[:2]), self.input_hw)
        return vitpose_crop(image, center, scale, self.input_hw), center, scale

    def decode(self, outputs: list[list[np.ndarray]], centers: np.ndarray,
               scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return heatmap_decode(np.stack(outputs[0]), centers, scales)


def make_keypoint_model(model: OnnxModel) -> RTMPoseModel | ViTPoseModel:
    """The keypoint-model class that fits the model's outputs."""
    shapes = model.output_shapes
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes):
        return RTMPoseModel(model)
    if len(shapes) == 1 and len(shapes[0]) == 4:
        return ViTPoseModel(model)
    raise wrong_model(model, "pose keypoint model",
                      "RTMPose/DWPose (dw-ll_ucoco_384.onnx: simcc_x [1, 133, 576], simcc_y [1, 133, 768]) "
                      "or ViTPose (heatmaps [1, 133, 64, 48])")


def load_keypoint_model(path: str, device: str = "auto") -> RTMPoseModel | ViTPoseModel:
    return make_keypoint_model(load_onnx(path, device, role="pose keypoint model"))
