"""Frames in, poses out: a detector and a keypoint model run over a whole clip.

Detection runs over all frames, then the keypoint model over every person of
every frame in one stream of crops, so models with a dynamic batch dimension
see full batches. The result is one :class:`PoseFrame` per input frame with
all detected people, best-ranked first (select and fill with :mod:`.people`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import host
from .detect import Detections, Yolov10Detector, YoloxDetector, load_detector
from .keypoint_models import RTMPoseModel, ViTPoseModel, load_keypoint_model
from .keypoints import PoseFrame, empty_people, wholebody_to_people


def to_uint8_frames(images) -> np.ndarray:
    """``[N, H, W, 3]`` frames as uint8 RGB: uint8 passes through; floats in
    0..1 (ComfyUI IMAGE, as numpy or torch) are scaled and rounded."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().float().numpy()
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] < 3:
        raise ValueError(f"expected frames [N, H, W, 3], got {images.shape}")
    images = images[..., :3]
    if images.dtype == np.uint8:
        return images
    return np.clip(np.round(images.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


@dataclass
class PoseEstimator:
    """A person detector (or none: whole frame) and a whole-body keypoint model."""

    detector: YoloxDetector | Yolov10Detector | None
    keypoints: RTMPoseModel | ViTPoseModel

    def detect(self, frames: Sequence[np.ndarray], when_none_found: str = "full_frame",
               batch_size: int = 8, after_batch: Callable[[int], None] | None = None) -> list[Detections]:
        """Person boxes per frame. A frame where nobody is found gets the whole
        frame as its box (``"full_frame"``, what both reference pipelines do)
        or no person at all (``"skip"``)."""
        if when_none_found not in ("full_frame", "skip"):
            raise ValueError(f"when_none_found must be 'full_frame' or 'skip', got {when_none_found!r}")
        if self.detector is None:
            found = [Detections.none() for _ in frames]
        else:
            found = self.detector(frames, batch_size, after_batch)
        if when_none_found == "full_frame":
            found = [d if len(d.boxes) else
                     Detections(np.array([[0.0, 0.0, f.shape[1], f.shape[0]]]), np.array([-1.0]))
                     for d, f in zip(found, frames)]
        return found

    def __call__(self, images, max_people: int | None = None, when_none_found: str = "full_frame",
                 batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> list[PoseFrame]:
        """Poses for ``images`` (``[N, H, W, 3]`` RGB, uint8 or floats 0..1).

        ``max_people`` keeps only the best-ranked people per frame before the
        keypoint model runs. ``progress(done, total)`` is called per batch.
        """
        frames = to_uint8_frames(images)
        total = [len(frames) * (2 if self.detector is not None else 1)]
        done = [0]

        def step(count: int) -> None:
            host.check_interrupt()
            done[0] += count
            if progress is not None:
                progress(min(done[0], total[0]), total[0])

        found = self.detect(frames, when_none_found, batch_size, step)
        if max_people is not None:
            found = [Detections(d.boxes[:max_people], d.scores[:max_people]) for d in found]
        total[0] = done[0] + sum(len(d.boxes) for d in found)
        results = self.keypoints(frames, found, batch_size, step)
        out = []
        for frame, (points, scores) in zip(frames, results):
            people = (wholebody_to_people(points, scores, self.keypoints.neck_rule) if len(points)
                      else empty_people())
            out.append(PoseFrame(people, frame.shape[1], frame.shape[0]))
        return out


def load_pose_estimator(keypoint_path: str, detector_path: str | None = None, device: str = "auto") -> PoseEstimator:
    """Open the ONNX models; their kinds (YOLOX or YOLOv10, RTMPose or
    ViTPose) are read from their signatures."""
    detector = load_detector(detector_path, device) if detector_path else None
    return PoseEstimator(detector, load_keypoint_model(keypoint_path, device))
