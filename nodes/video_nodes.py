"""Nodes on decoded video frames: drift figures and colour correction towards the reference."""
from __future__ import annotations

import torch

from .. import host, memory_budget as mb
from ..errors import InputError
from ..methods.wan_animate.plan import ANIMATE_CLIP_LEN, ANIMATE_REFERT_NUMS, plan_clips
from ..video.drift import correct_drift, correct_video_drift
from .video_inputs import video_frames

CATEGORY = "PoseAnimate/video"
SEGMENTS = ("windows", "animate_clips")


class PoseAnimateColorMatch:
    DESCRIPTION = ("Measures and corrects colour drift in a long video made in windows: each window's frames are "
                   "matched to the reference image's colour statistics (mean and spread in Lab), blended across "
                   "window overlaps. The report gives each window's colour difference (dE) before and after and a "
                   "structural similarity to the reference; it is also written to the log. Works for windows "
                   "(UniAnimate-DiT, RealisDance-DiT) and for Wan2.2-Animate's chained clips.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "report")
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The decoded video, all its 4k+1 frames (from Decode Wan Video)."}),
            "reference_image": ("IMAGE", {"tooltip": "The character image the video was made from."}),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                   "tooltip": "0: measure only; 1: full statistics matching (can over-correct "
                                              "when the scene really differs from the reference)."}),
            "window_length": ("INT", {"default": 21, "min": 1, "max": 64,
                                      "tooltip": "The sampler's window length (latent frames)."}),
            "window_overlap": ("INT", {"default": 4, "min": 0, "max": 32,
                                       "tooltip": "The sampler's window overlap (latent frames)."}),
            "segments": (list(SEGMENTS), {"default": "windows",
                         "tooltip": "windows: the video was made in overlapping windows (Sample Animation; "
                                    "window_length/overlap). animate_clips: in Wan2.2-Animate's chained clips "
                                    "(clip_frames/refert_num)."}),
            "clip_frames": ("INT", {"default": ANIMATE_CLIP_LEN, "min": 5, "max": 161, "step": 4,
                                    "tooltip": "animate_clips: the Wan2.2-Animate node's clip_frames."}),
            "refert_num": ([str(n) for n in ANIMATE_REFERT_NUMS], {"default": "1",
                           "tooltip": "animate_clips: the Wan2.2-Animate node's refert_num."}),
        }}

    def match(self, images: torch.Tensor, reference_image: torch.Tensor, strength: float, window_length: int,
              window_overlap: int, segments: str = "windows", clip_frames: int = ANIMATE_CLIP_LEN,
              refert_num: str = "1") -> tuple[torch.Tensor, str]:
        frames = video_frames(images, "images")
        reference = video_frames(reference_image, "reference_image")[:1]
        per_frame = mb.image_frames(1, int(frames.shape[1]), int(frames.shape[2]))
        mb.check_fits("images", f"correcting {frames.shape[0]} frames at {frames.shape[2]}x{frames.shape[1]}",
                      per_frame * int(frames.shape[0]), "cpu",
                      lambda budget: mb.pixel_frames_fitting(per_frame, 0, budget))
        if segments not in SEGMENTS:
            raise InputError("segments", f"is '{segments}'", f"one of {', '.join(SEGMENTS)}")
        if segments == "animate_clips":
            plan = plan_clips(int(frames.shape[0]), clip_frames, int(refert_num))
            spans = [(c.start, min(c.end, plan.total)) for c in plan if c.start < plan.total]
            result = correct_drift(frames, spans, reference, strength, device=host.compute_device())
        else:
            result = correct_video_drift(frames, reference, strength, window_length, window_overlap,
                                         device=host.compute_device())
        report = "\n".join(result.lines())
        return result.frames, report


NODES = {"PoseAnimateColorMatch": (PoseAnimateColorMatch, "Color Match to Reference (PoseAnimate)")}
