"""Nodes that clean up POSE_KEYPOINT data from any pack: people, empty frames, jitter."""
from __future__ import annotations

from ..errors import InputError
from ..pose.people import FILL_POLICIES, SELECT_MODES, fill_empty_frames, select_people
from ..pose.smoothing import one_euro
from .pose_io import CATEGORY, POSE_KEYPOINT, check_smoothing, choice, poses_in, poses_out


class PoseAnimateSmoothPoses:
    DESCRIPTION = ("Cleans up poses from Extract Poses or any other pack's POSE_KEYPOINT: keeps the chosen people, "
                   "fills frames where nobody was found, and smooths jitter over time with a One-Euro filter "
                   "(confidences are kept).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (POSE_KEYPOINT,)
    RETURN_NAMES = ("poses",)
    FUNCTION = "smooth"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "poses": (POSE_KEYPOINT, {"tooltip": "Poses over time (Extract Poses, or any pack's POSE_KEYPOINT)."}),
            "people": (list(SELECT_MODES), {"default": "all",
                       "tooltip": "Who to keep per frame: everyone (all), the largest body, or person_index."}),
            "person_index": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "Which person for people = index."}),
            "empty_frames": (list(FILL_POLICIES), {"default": "hold",
                             "tooltip": "Frames with nobody: leave empty, hold the last pose, or interpolate "
                                        "between the poses before and after."}),
            "min_cutoff": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 100.0, "step": 0.01,
                           "tooltip": "Smoothing of still points, in Hz: lower is smoother."}),
            "beta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01,
                     "tooltip": "How fast smoothing lets go as points speed up: higher follows fast moves."}),
            "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 240.0, "step": 1.0,
                    "tooltip": "Frame rate of the poses; the smoothing's time scale."}),
        }}

    def smooth(self, poses, people: str, person_index: int, empty_frames: str, min_cutoff: float, beta: float,
               fps: float) -> tuple[list[dict]]:
        frames = poses_in(poses, "poses")
        choice(people, SELECT_MODES, "people")
        choice(empty_frames, FILL_POLICIES, "empty_frames")
        if person_index < 0:
            raise InputError("person_index", f"is {person_index}", "0 or more")
        check_smoothing(min_cutoff, beta, fps)
        frames = fill_empty_frames(select_people(frames, people, person_index), empty_frames)
        return (poses_out(one_euro(frames, min_cutoff=min_cutoff, beta=beta, fps=fps)),)


NODES = {"PoseAnimateSmoothPoses": (PoseAnimateSmoothPoses, "Smooth Poses (PoseAnimate)")}
