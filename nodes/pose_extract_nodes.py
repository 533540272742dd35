"""Nodes that load the pose models and extract poses from frames. Thin: checks, a core call, ComfyUI types out."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import host
from ..errors import InputError
from ..pose.people import FILL_POLICIES, SELECT_MODES, fill_empty_frames, select_people
from ..pose.smoothing import one_euro
from .pose_io import (CATEGORY, POSE_KEYPOINT, check_smoothing, choice, image_frames, image_out, opencv_core,
                      poses_out, progress_callback)
from .pose_preview import preview_ui

if TYPE_CHECKING:
    from ..pose.extract import PoseEstimator
    from ..pose.keypoints import PoseFrame

POSE_MODEL_TYPE = "POSEANIMATE_POSE_MODEL"
DEVICES = ("auto", "cpu", "cuda")
NO_DETECTOR = "none (whole frame)"
WHOLE_FRAME = "whole_frame"
EMPTY_FRAME_POLICIES = (WHOLE_FRAME,) + FILL_POLICIES

DWPOSE_SOURCE = "Hugging Face yzd-v/DWPose"
WAN_SOURCE = "Hugging Face Wan-AI/Wan2.2-Animate-14B, process_checkpoint/"
MODEL_SOURCES = {
    "yolox_l.onnx": DWPOSE_SOURCE,
    "dw-ll_ucoco_384.onnx": DWPOSE_SOURCE,
    "yolov10m.onnx": WAN_SOURCE + "det/",
    "vitpose_h_wholebody.onnx": WAN_SOURCE + "pose2d/",
}
ALL_SOURCES = (f"DWPose: yolox_l.onnx and dw-ll_ucoco_384.onnx from {DWPOSE_SOURCE}; Wan2.2-Animate: yolov10m.onnx "
               f"(det/) and vitpose_h_wholebody.onnx (pose2d/) from {WAN_SOURCE}")


@dataclass(frozen=True)
class PoseModelHandle:
    """What flows as POSEANIMATE_POSE_MODEL: the loaded detector and keypoint
    model. Never mutated (ComfyUI caches node outputs and reuses them);
    extraction only reads it."""

    estimator: PoseEstimator
    detector_name: str | None
    keypoint_name: str
    device: str


def pose_model_path(name: str, input_name: str) -> str:
    """A file in the pose model folder; a missing file's error also says where to get it."""
    try:
        return host.model_file(host.POSE_MODEL_FOLDER, name)
    except InputError as err:
        source = MODEL_SOURCES.get(os.path.basename(name or ""))
        where = f"{os.path.basename(name)} comes from {source}" if source else ALL_SOURCES
        raise InputError(f"{input_name} '{name}'", err.problem, f"{err.expected}; {where}") from None


def _file_dropdown(files: list[str], hints: tuple[str, ...], tooltip: str) -> tuple[list[str], dict]:
    """A dropdown of ``files`` whose default is the first one named like ``hints``."""
    default = next((f for f in files if any(h in os.path.basename(f).lower() for h in hints)), None)
    options = {"tooltip": tooltip}
    if default is not None:
        options["default"] = default
    return files, options


def onnx_device(device: str) -> str:
    """The onnxruntime device for a widget value: ``auto`` follows the host's
    compute device (a ComfyUI started with --cpu keeps the pose models on CPU)."""
    if device != "auto":
        return device
    torch_device = host.compute_device()
    return f"cuda:{torch_device.index or 0}" if torch_device.type == "cuda" else "cpu"


class PoseAnimatePoseModelLoader:
    DESCRIPTION = ("Loads a person detector and a whole-body keypoint model (ONNX, run by onnxruntime) from "
                   "ComfyUI/models/poseanimate_pose. DWPose: yolox_l.onnx + dw-ll_ucoco_384.onnx (UniAnimate-DiT); "
                   "Wan2.2-Animate: yolov10m.onnx + vitpose_h_wholebody.onnx. Kinds are read from the files.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (POSE_MODEL_TYPE,)
    RETURN_NAMES = ("pose_model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        files = host.list_model_files(host.POSE_MODEL_FOLDER)
        return {"required": {
            "detector": _file_dropdown(
                files + [NO_DETECTOR], ("yolo", "det", NO_DETECTOR),
                "Person detector: yolox_l.onnx (DWPose, from yzd-v/DWPose) or yolov10m.onnx (Wan2.2-Animate). "
                "'none' runs the keypoint model on the whole frame, for frames that are already one person."),
            "keypoint_model": _file_dropdown(
                files, ("dw-ll", "dwpose", "rtm", "vitpose", "pose"),
                "Whole-body keypoint model: dw-ll_ucoco_384.onnx (DWPose) or vitpose_h_wholebody.onnx "
                "(Wan2.2-Animate)."),
            "device": (list(DEVICES), {"default": "auto",
                       "tooltip": "Where onnxruntime runs the models. auto: the GPU ComfyUI uses, when "
                                  "onnxruntime-gpu is installed; else CPU (with a notice in the log)."}),
        }}

    def load(self, detector: str, keypoint_model: str, device: str) -> tuple[PoseModelHandle]:
        choice(device, DEVICES, "device")
        keypoint_path = pose_model_path(keypoint_model, "keypoint_model")
        detector_path = None if detector == NO_DETECTOR else pose_model_path(detector, "detector")
        estimator = opencv_core("extract").load_pose_estimator(keypoint_path, detector_path, onnx_device(device))
        name = None if detector_path is None else detector
        return (PoseModelHandle(estimator, name, keypoint_model, device),)


def overlay(frames: np.ndarray, skeletons: np.ndarray) -> np.ndarray:
    """Skeletons drawn over the frames dimmed to half, so both stay readable."""
    drawn = skeletons.any(axis=-1, keepdims=True)
    return np.where(drawn, skeletons, frames // 2).astype(np.uint8)


class PoseAnimateExtractPoses:
    DESCRIPTION = ("Finds the people in each frame and their whole-body keypoints (body, feet, hands, face) with "
                   "real confidences, as POSE_KEYPOINT in the frames' pixels. Chooses who to keep, fills frames "
                   "where nobody was found, and can smooth jitter. The preview draws what was found over the frames; "
                   "after a run the node itself plays the skeletons over the frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (POSE_KEYPOINT, "IMAGE")
    RETURN_NAMES = ("poses", "preview")
    FUNCTION = "extract_with_canvas_preview"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The frames to read poses from: the driving video, or the "
                                            "reference image (one frame)."}),
            "pose_model": (POSE_MODEL_TYPE, {"tooltip": "The models from Load Pose Models (PoseAnimate)."}),
            "people": (list(SELECT_MODES), {"default": "largest",
                       "tooltip": "Who to keep: people are tracked through the video, then the person with the "
                                  "largest body over the video (largest), the person_index-th track (index; 0 is "
                                  "the detector's best-ranked person of the first frame), or everyone (all, in "
                                  "track order). Retargeting and face crops use the first person kept."}),
            "person_index": ("INT", {"default": 0, "min": 0, "max": 64,
                             "tooltip": "Which person for people = index; 0 is the detector's best-ranked."}),
            "empty_frames": (list(EMPTY_FRAME_POLICIES), {"default": WHOLE_FRAME,
                             "tooltip": "Frames where the detector finds nobody: whole_frame runs the keypoint "
                                        "model on the whole frame (what DWPose and Wan2.2-Animate do); empty "
                                        "leaves them without a pose; hold repeats the last pose; interpolate "
                                        "blends the poses before and after."}),
            "smoothing": ("BOOLEAN", {"default": False,
                          "tooltip": "One-Euro filter over time against detector jitter. Off by default: "
                                     "smoothing changes the motion a little."}),
            "min_cutoff": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 100.0, "step": 0.01,
                           "tooltip": "Smoothing of still points, in Hz: lower is smoother (more lag on slow "
                                      "moves)."}),
            "beta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01,
                     "tooltip": "How fast smoothing lets go as points speed up: higher follows fast moves "
                                "with less lag."}),
            "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 240.0, "step": 1.0,
                    "tooltip": "Frame rate of the frames; the smoothing's time scale."}),
            "batch_size": ("INT", {"default": 8, "min": 1, "max": 256,
                           "tooltip": "Images per model call (models with a dynamic batch dimension). Larger "
                                      "is faster on a GPU and uses more memory."}),
        }}

    def extract_with_canvas_preview(self, **inputs) -> dict:
        """The host's entry: :meth:`extract`, plus the skeletons and frames the node plays on the canvas."""
        frames, poses = self._extract(**inputs)
        return {"ui": preview_ui("extract", poses, frames, fps=inputs["fps"]),
                "result": self._outputs(frames, poses)}

    def extract(self, images, pose_model: PoseModelHandle, people: str, person_index: int, empty_frames: str,
                smoothing: bool, min_cutoff: float, beta: float, fps: float,
                batch_size: int) -> tuple[list[dict], torch.Tensor]:
        """POSE_KEYPOINT and the preview IMAGE (scripts and tests call this; the host calls the entry above)."""
        return self._outputs(*self._extract(images, pose_model, people, person_index, empty_frames, smoothing,
                                            min_cutoff, beta, fps, batch_size))

    @staticmethod
    def _outputs(frames: np.ndarray, poses: list[PoseFrame]) -> tuple[list[dict], torch.Tensor]:
        preview = overlay(frames, opencv_core("render").render_poses(poses, style="openpose"))
        return poses_out(poses), image_out(preview)

    def _extract(self, images, pose_model: PoseModelHandle, people: str, person_index: int, empty_frames: str,
                 smoothing: bool, min_cutoff: float, beta: float, fps: float,
                 batch_size: int) -> tuple[np.ndarray, list[PoseFrame]]:
        """The uint8 frames and the poses found in them."""
        frames = opencv_core("extract").to_uint8_frames(image_frames(images, "images"))
        if not isinstance(pose_model, PoseModelHandle):
            raise InputError("pose_model", f"is a {type(pose_model).__name__}",
                             "the output of Load Pose Models (PoseAnimate)")
        choice(people, SELECT_MODES, "people")
        choice(empty_frames, EMPTY_FRAME_POLICIES, "empty_frames")
        if person_index < 0:
            raise InputError("person_index", f"is {person_index}", "0 or more")
        if batch_size < 1:
            raise InputError("batch_size", f"is {batch_size}", "1 or more")
        if smoothing:
            check_smoothing(min_cutoff, beta, fps)

        poses = pose_model.estimator(
            frames, max_people=None,            # every person: tracking needs them to follow the chosen one
            when_none_found="full_frame" if empty_frames == WHOLE_FRAME else "skip",
            batch_size=batch_size, progress=progress_callback())
        poses = select_people(poses, people, person_index)
        if empty_frames != WHOLE_FRAME:
            poses = fill_empty_frames(poses, empty_frames)
        if smoothing:
            poses = one_euro(poses, min_cutoff=min_cutoff, beta=beta, fps=fps)
        return frames, poses


NODES = {"PoseAnimatePoseModelLoader": (PoseAnimatePoseModelLoader, "Load Pose Models (PoseAnimate)"),
         "PoseAnimateExtractPoses": (PoseAnimateExtractPoses, "Extract Poses (PoseAnimate)")}
