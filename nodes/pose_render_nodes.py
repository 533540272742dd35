"""Nodes that retarget, draw and crop from poses. Thin: checks, a core call, ComfyUI types out."""
from __future__ import annotations

import logging

import torch

from .. import memory_budget as mb
from ..errors import InputError
from ..pose.keypoints import BODY, PoseFrame, scale_frames
from ..pose.retarget import retarget_unianimate, retarget_wan_animate
from ..pose.retarget_report import retarget_report
from ..pose.retarget_steadydancer import augment_negative, retarget_steadydancer
from .pose_io import CATEGORY, POSE_KEYPOINT, choice, image_frames, image_out, opencv_core, poses_in, poses_out
from .pose_preview import preview_ui

STYLES = ("openpose", "unianimate", "wan_animate")     # pose/render.py's styles (it needs OpenCV to import)
RETARGET_METHODS = ("unianimate", "wan_animate", "none", "unianimate_reference", "wan_animate_reference",
                    "steadydancer", "steadydancer_negative")
SPACES = ("pixels", "normalized")
FITS = ("auto", "letterbox", "stretch", "crop")
FIT_BY_STYLE = {"openpose": "letterbox", "unianimate": "stretch", "wan_animate": "letterbox"}
SWITCHES = {"auto": None, "on": True, "off": False}
COLOR_ORDERS = ("auto", "rgb", "bgr")
MAX_SIZE = 16384
PREVIEW_FPS = 30.0                  # the preview's rate when no video fps is linked

log = logging.getLogger(__name__)
ASPECT_TOLERANCE = 0.05


def _reference_frame(data, input_name: str) -> PoseFrame:
    """The single frame of a reference pose, with a person whose body was found."""
    frames = poses_in(data, input_name)
    if len(frames) != 1:
        raise InputError(input_name, f"has {len(frames)} frames",
                         "one frame: the pose extracted from the reference image (did you swap the inputs?)")
    frame = frames[0]
    if not frame.count or not (frame.people[0][BODY, 2] > 0).any():
        raise InputError(input_name, "has no person",
                         "a pose of the reference image with the character's body found (check its preview)")
    return frame


class PoseAnimateRetargetPoses:
    DESCRIPTION = ("Moves the driving motion onto the reference character's body: every bone gets the "
                   "reference's length, the body stands where the reference stands, and the motion (directions, "
                   "travel) stays the driving video's. Output poses are in the reference image's pixels. The "
                   "first person of the first frame is retargeted, followed through the video. The report output "
                   "(also logged) gives the worst bone error against the reference and the frames with missing "
                   "joints. After a run the node plays the retargeted skeletons.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (POSE_KEYPOINT, "STRING")           # report last: the shipped workflows' links keep their slots
    RETURN_NAMES = ("poses", "report")
    FUNCTION = "retarget_with_canvas_preview"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "driving_poses": (POSE_KEYPOINT, {"tooltip": "Poses of the driving video (Extract Poses, or any "
                                                         "pack's POSE_KEYPOINT)."}),
            "reference_pose": (POSE_KEYPOINT, {"tooltip": "The pose of the reference image: one frame, from "
                                                          "Extract Poses on the reference image."}),
            "method": (list(RETARGET_METHODS), {"default": "unianimate",
                       "tooltip": "unianimate: UniAnimate-DiT's run_align_pose (global scale from shoulders and "
                                  "torso, bones from the neck, anchored at the neck). wan_animate: "
                                  "Wan2.2-Animate's retarget_pose (scale from body height, anchored at the feet). "
                                  "Both keep every bone of the reference (hips and face included), measured over "
                                  "the whole video. unianimate_reference / wan_animate_reference: the projects' "
                                  "own rules unchanged (first-frame ratios, hips and face not retargeted). "
                                  "steadydancer: SteadyDancer's pose_align (each limb scaled by the reference "
                                  "over the first driving frame, anchored at the neck; other aspect ratios are "
                                  "aligned in image heights). steadydancer_negative: the same, each frame then "
                                  "distorted at random around the neck (SteadyDancer's negative poses for its pose "
                                  "guidance). none: the driving poses unchanged."}),
            "unianimate_space": (list(SPACES), {"default": "pixels",
                                 "tooltip": "unianimate_reference only. Measure lengths in pixels, or in "
                                            "coordinates divided by each image's size as UniAnimate's code does "
                                            "(distorts bones unless both images are square). unianimate always "
                                            "measures in pixels."}),
            "keep_bone_lengths": ("BOOLEAN", {"default": True,
                                  "tooltip": "unianimate modes. On: a bone keeps the reference's length and only "
                                             "shortens when the driving bone does. Off: UniAnimate's own rule (a "
                                             "turning bone changes length when x and y scale differently)."}),
            "wan_min_confidence": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "wan_animate modes. Points at or below this confidence are not "
                                              "measured."}),
            "wan_hand_threshold": ("FLOAT", {"default": 0.4, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "wan_animate modes. A hand's wrist point must reach this confidence "
                                              "to anchor the hand on the body's wrist."}),
        }}

    def retarget_with_canvas_preview(self, **inputs) -> dict:
        """The host's entry: :meth:`retarget`, plus the skeletons the node plays on the canvas."""
        poses, report = self.retarget(**inputs)
        return {"ui": preview_ui("retarget", poses_in(poses, "poses")), "result": (poses, report)}

    def retarget(self, driving_poses, reference_pose, method: str, unianimate_space: str, keep_bone_lengths: bool,
                 wan_min_confidence: float, wan_hand_threshold: float) -> tuple[list[dict], str]:
        choice(method, RETARGET_METHODS, "method")
        driving = poses_in(driving_poses, "driving_poses")
        if method == "none":
            return poses_out(driving), "retarget: none (the driving poses unchanged)"
        reference = _reference_frame(reference_pose, "reference_pose")
        compat = method.endswith("_reference")
        if method.startswith("steadydancer"):
            out = retarget_steadydancer(driving, reference)
            if method == "steadydancer_negative":
                out = augment_negative(out)
        elif method.startswith("unianimate"):
            choice(unianimate_space, SPACES, "unianimate_space")
            if unianimate_space == "normalized" and not compat:
                raise InputError("unianimate_space", "is 'normalized' with method 'unianimate'",
                                 "'pixels', or method 'unianimate_reference' for UniAnimate's own normalized "
                                 "measure (it distorts bones unless both images are square)")
            out = retarget_unianimate(driving, reference, space=unianimate_space, keep_bone_lengths=keep_bone_lengths,
                                      reference_compat=compat)
        else:
            for name, value in (("wan_min_confidence", wan_min_confidence), ("wan_hand_threshold", wan_hand_threshold)):
                if not 0.0 <= value <= 1.0:
                    raise InputError(name, f"is {value}", "a confidence between 0 and 1")
            out = retarget_wan_animate(driving, reference, min_confidence=wan_min_confidence,
                                       hand_threshold=wan_hand_threshold, reference_compat=compat)
        report = f"{retarget_report(driving, out, reference).line()} [{method}]"
        log.info(report)
        return poses_out(out), report


def render_size(width: int, height: int, canvas_w: int, canvas_h: int) -> tuple[int, int]:
    """The output size: 0 for both is the canvas; 0 for one keeps the canvas's aspect ratio."""
    for name, value in (("width", width), ("height", height)):
        if not 0 <= value <= MAX_SIZE:
            raise InputError(name, f"is {value}", f"0 (the poses' canvas) or a size up to {MAX_SIZE}")
    if width == 0 and height == 0:
        return canvas_w, canvas_h
    if width == 0:
        return max(1, round(height * canvas_w / canvas_h)), height
    if height == 0:
        return width, max(1, round(width * canvas_h / canvas_w))
    return width, height


class PoseAnimateRenderPoses:
    DESCRIPTION = ("Draws poses as the images the animation models were trained on. unianimate: UniAnimate-DiT's "
                   "pose frames (body, feet and hands, channels in BGR order as its model saw them); wan_animate: "
                   "Wan2.2-Animate's pose video; openpose: DWPose/ControlNet style with the face. 'auto' settings "
                   "follow the style's reference. After a run the node plays the drawn frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "render_with_canvas_preview"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "poses": (POSE_KEYPOINT, {"tooltip": "Poses to draw (Extract Poses, Retarget Poses, or any pack's "
                                                 "POSE_KEYPOINT, pixel or normalised coordinates)."}),
            "style": (list(STYLES), {"default": "unianimate",
                      "tooltip": "Whose drawing to reproduce: openpose (DWPose/ControlNet), unianimate "
                                 "(UniAnimate-DiT), wan_animate (Wan2.2-Animate). Use the one of the method "
                                 "you generate with."}),
            "width": ("INT", {"default": 0, "min": 0, "max": MAX_SIZE, "step": 1,
                      "tooltip": "Output width; 0: the poses' canvas width (or from height, keeping the "
                                 "canvas's aspect ratio)."}),
            "height": ("INT", {"default": 0, "min": 0, "max": MAX_SIZE, "step": 1,
                       "tooltip": "Output height; 0: the poses' canvas height (or from width, keeping the "
                                  "canvas's aspect ratio)."}),
            "fit": (list(FITS), {"default": "auto",
                    "tooltip": "When the output's aspect ratio differs from the canvas's: letterbox (whole pose, "
                               "black bars), stretch, or crop (fill, cut the edges). auto: what the style's "
                               "pipeline does (unianimate stretches, wan_animate letterboxes, openpose "
                               "letterboxes)."}),
            "body": ("BOOLEAN", {"default": True, "tooltip": "Draw the body (limbs and joints)."}),
            "hands": ("BOOLEAN", {"default": True, "tooltip": "Draw the hands."}),
            "face": (list(SWITCHES), {"default": "auto",
                     "tooltip": "Draw the face landmarks. auto: openpose yes; unianimate and wan_animate no "
                                "(their models never saw faces)."}),
            "feet": (list(SWITCHES), {"default": "auto",
                     "tooltip": "Draw the toe points. auto: unianimate and wan_animate yes; openpose no."}),
            "color_order": (list(COLOR_ORDERS), {"default": "auto",
                            "tooltip": "auto: what the style's model was trained on (unianimate: BGR, the "
                                       "channels swapped as in UniAnimate-DiT's training data; others: RGB)."}),
        }, "optional": {
            "fps": ("FLOAT", {"default": PREVIEW_FPS, "min": 1.0, "max": 240.0, "step": 1.0,
                    "tooltip": "The frame rate the node's preview plays at: link the driving video's fps (Get "
                               "Video Components) so it plays at the video's speed. The images carry no rate."}),
        }}

    def render_with_canvas_preview(self, fps: float = PREVIEW_FPS, **inputs) -> dict:
        """The host's entry: :meth:`render`, plus the drawn frames the node plays on the canvas at ``fps``
        (POSE_KEYPOINT carries no frame rate, so the video's comes in beside the poses)."""
        if not 1.0 <= fps <= 240.0:
            raise InputError("fps", f"is {fps}", "a frame rate from 1 to 240 (the driving video's)")
        (images,) = self.render(**inputs)
        return {"ui": preview_ui("render", images=images, fps=fps), "result": (images,)}

    def render(self, poses, style: str, width: int, height: int, fit: str, body: bool, hands: bool, face: str,
               feet: str, color_order: str) -> tuple[torch.Tensor]:
        frames = poses_in(poses, "poses")
        choice(style, STYLES, "style")
        choice(fit, FITS, "fit")
        choice(face, tuple(SWITCHES), "face")
        choice(feet, tuple(SWITCHES), "feet")
        choice(color_order, COLOR_ORDERS, "color_order")
        width, height = render_size(width, height, frames[0].width, frames[0].height)
        fit = FIT_BY_STYLE[style] if fit == "auto" else fit
        per_frame = mb.image_frames(1, height, width, torch.uint8) + mb.image_frames(1, height, width)
        mb.check_fits("width", f"{len(frames)} frames at {width}x{height} (drawn, then as IMAGE)",
                      per_frame * len(frames), "cpu", lambda budget: mb.pixel_frames_fitting(per_frame, 0, budget))
        if fit != "stretch":            # the renderer stretches each frame's canvas onto the output itself
            frames = scale_frames(frames, width, height, fit)
        images = opencv_core("render").render_poses(
            frames, width, height, style=style, body=bool(body), hands=bool(hands), face=SWITCHES[face],
            feet=SWITCHES[feet], color_order=None if color_order == "auto" else color_order)
        return (image_out(images),)


class PoseAnimateFaceCrops:
    DESCRIPTION = ("Cuts the face out of each frame, square, for Wan2.2-Animate's face encoder: the face "
                   "landmarks' box grown 1.3x (more above, for the forehead), stretched to 512x512, as its "
                   "preprocessing does. Frames without a face borrow the nearest frame's box.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("faces",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The driving frames the poses were extracted from."}),
            "poses": (POSE_KEYPOINT, {"tooltip": "The poses extracted from these frames (not retargeted: the "
                                                 "crop must follow the face in the frames)."}),
            "size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                     "tooltip": "Side of the square crops; Wan2.2-Animate's face encoder takes 512."}),
            "person_index": ("INT", {"default": 0, "min": 0, "max": 64,
                             "tooltip": "Whose face: the person_index-th person tracked through the video (0: the "
                                        "first person of the first frame), the same person in every frame."}),
            "scale": ("FLOAT", {"default": 1.3, "min": 1.0, "max": 4.0, "step": 0.05,
                      "tooltip": "How much the landmarks' box grows in area; Wan2.2-Animate uses 1.3."}),
        }}

    def crop(self, images, poses, size: int, person_index: int, scale: float) -> tuple[torch.Tensor]:
        frames_in = image_frames(images, "images")
        frames = poses_in(poses, "poses")
        if len(frames) != len(frames_in):
            raise InputError("poses", f"have {len(frames)} frames for {len(frames_in)} images",
                             "one pose frame per image (the poses extracted from these images)")
        h, w = frames_in.shape[1:3]
        for f, frame in enumerate(frames):
            if abs(frame.width / frame.height - w / h) > ASPECT_TOLERANCE * (w / h):
                raise InputError("poses", f"frame {f} is on a {frame.width}x{frame.height} canvas, the images "
                                 f"are {w}x{h}", "the poses extracted from these images, not retargeted ones")
        for name, value, low in (("size", size, 1), ("person_index", person_index, 0)):
            if value < low:
                raise InputError(name, f"is {value}", f"{low} or more")
        if scale < 1.0:
            raise InputError("scale", f"is {scale}", "1.0 or more")
        try:
            crops = opencv_core("face_crops").crop_faces(frames_in, frames, size=size, scale=scale, person=person_index)
        except InputError as err:
            raise InputError("poses", err.problem, err.expected) from None
        return (image_out(crops),)


NODES = {"PoseAnimateRetargetPoses": (PoseAnimateRetargetPoses, "Retarget Poses (PoseAnimate)"),
         "PoseAnimateRenderPoses": (PoseAnimateRenderPoses, "Render Poses (PoseAnimate)"),
         "PoseAnimateFaceCrops": (PoseAnimateFaceCrops, "Face Crops (PoseAnimate)")}
