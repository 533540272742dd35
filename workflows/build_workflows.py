#!/usr/bin/env python3
"""Build the shipped workflows, both formats, from one description each.

Each workflow is described once, below, as plain data: nodes with an id, a
class type, a canvas position, widget values by input NAME and links by
``(from node id, output index)``. This script turns a description into

* ``workflows/<name>.json``: the canvas (UI) format to drag into ComfyUI, and
* ``workflows/<name>.api.json``: the API format to queue headlessly
  (``tools/queue_workflow.py``),

using a ComfyUI's ``/object_info`` for what a description does not say: the
order of the widgets, their defaults, the input sockets, the output types.
``tests/browser/test_workflows_in_frontend.py`` loads every UI file into the
real front end and checks that the prompt it makes equals the API file.

Usage (the standard library only; a ComfyUI with this pack must be running,
or a saved ``/object_info``)::

    python workflows/build_workflows.py --server http://127.0.0.1:8188
    python workflows/build_workflows.py --object-info object_info.json [--check] [NAME ...]

``--check`` compares with the files on disk and exits 1 when one differs.
See workflows/README.md for the description format.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCALARS = ("INT", "FLOAT", "STRING", "BOOLEAN")
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # a dropdown whose choice brings its own sub-inputs (ComfyUI 0.33+)
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")  # the front end adds an "upload" widget
LEGACY_SEED_NAMES = ("seed", "noise_seed")     # INT inputs the front end gives a control_after_generate widget


# ---------------------------------------------------------------- the description format
@dataclass
class Node:
    """One node. ``widgets``: values by input name (others take the node's defaults).
    ``links``: input name -> (from node id, output index); an input that is a widget
    may be linked too. ``controls``: control_after_generate of seed-like widgets
    (default "fixed", so the workflow reruns with the seed it was saved with)."""

    id: int
    class_type: str
    pos: tuple[float, float] | None = None    # None: placed by the workflow's Layout
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, tuple[int, int]] = field(default_factory=dict)
    title: str | None = None
    size: tuple[float, float] | None = None
    controls: dict[str, str] = field(default_factory=dict)


@dataclass
class Note:
    """A text note on the canvas (the front end's Note node; not part of the API format)."""

    id: int
    pos: tuple[float, float] | None            # None: placed by the workflow's Layout
    text: str
    size: tuple[float, float] = (420.0, 200.0)
    title: str = "Note"


@dataclass
class Stage:
    """A titled group on the canvas (``title`` None: no group, e.g. the Note) holding columns of node ids,
    each column read top to bottom."""

    title: str | None
    columns: list[list[int]]
    color: str = "#3f789e"


@dataclass
class Layout:
    """Where the nodes go: ``bands`` of stages, top to bottom; a band's stages left to right. The builder
    stacks each column, sizes the groups round their stages and checks the layout rules (see
    :func:`place`): a canvas that fits on a 1080p screen at a zoom where the front end still draws text,
    and no overlaps when nodes grow after a run."""

    bands: list[list[Stage]]


@dataclass
class Workflow:
    name: str                       # file names: <name>.json and <name>.api.json
    nodes: list[Node | Note]
    layout: Layout | None = None    # None: every node has its own ``pos``


# ---------------------------------------------------------------- the shipped workflows
POSE_MODELS_NOTE = """Pose extraction (PoseAnimate)

Model files (put them in ComfyUI/models/poseanimate_pose/):
- yolox_l.onnx          person detector, from Hugging Face yzd-v/DWPose
- dw-ll_ucoco_384.onnx  whole-body keypoints (DWPose), from Hugging Face yzd-v/DWPose

Put the driving video into ComfyUI/input/ (or upload it in Load Video).
Extract Poses plays the skeletons over the frames inside the node after a run.
Render Poses: style "openpose" for ControlNet-style pose videos, "unianimate" for UniAnimate-DiT
(its model saw the colour channels swapped), "wan_animate" for Wan2.2-Animate.
The pose video is saved to ComfyUI/output/poseanimate/."""

NOTE_WIDTH = 640

WORKFLOWS = [
    Workflow("pose_extraction", [
        Node(1, "LoadVideo", widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", links={"video": (1, 0)}),
        Node(3, "PoseAnimatePoseModelLoader",
             widgets={"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx", "device": "auto"}),
        Node(4, "PoseAnimateExtractPoses", links={"images": (2, 0), "pose_model": (3, 0), "fps": (2, 2)}),
        Node(5, "PoseAnimateRenderPoses", links={"poses": (4, 0), "fps": (2, 2)}, widgets={"style": "openpose"}),
        Node(6, "CreateVideo", links={"images": (5, 0), "fps": (2, 2)}),
        Node(7, "SaveVideo", links={"video": (6, 0)}, widgets={"filename_prefix": "poseanimate/pose"}),
        Note(8, None, POSE_MODELS_NOTE, size=(NOTE_WIDTH, 240)),
    ], Layout([[Stage(None, [[8]]), Stage("Driving video", [[1]])],
               [Stage("Poses", [[2, 3, 4], [5]]), Stage("Output", [[6, 7]])]])),
]



UNIANIMATE_NOTE = """UniAnimate-DiT animation (PoseAnimate)

Model files (ComfyUI/models/<folder>/):
- diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors   Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/diffusion_models)
- loras/UniAnimate-Wan2.1-14B-Lora-12000.ckpt              ZheWang123/UniAnimate-DiT
- vae/wan_2.1_vae.safetensors                               Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/vae)
- text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors      Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/text_encoders)
- clip_vision/clip_vision_h.safetensors                     Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/clip_vision)
- poseanimate_pose/yolox_l.onnx, dw-ll_ucoco_384.onnx       yzd-v/DWPose

Inputs: the driving video in Load Video, the character in Load Image (scaled and centre-cropped to the
video size, 480x832 portrait here; use 832x480 for landscape). The driving poses are retargeted to the
character's body and rendered in UniAnimate's training style. 81 frames = one window; set frames to 0 on the
conditioning node to animate the whole driving video (the sampler goes window by window).
24 GB GPUs: weight_dtype fp8_e4m3fn on Load Wan DiT."""

NEGATIVE_PROMPT = ("blurry, low quality, jpeg artifacts, distorted limbs, extra fingers, deformed hands, "
                   "static, frozen frame, watermark, text, subtitles")


def _encoders(first_id: int, prompt: str, negative: str, image: tuple[int, int],
              negative_title: str = "Negative prompt", vision_title: str | None = None) -> list[Node]:
    """The host's umT5 and CLIP ViT-H nodes: Load CLIP (wan), the two prompts, Load CLIP Vision and the
    reference's CLIP Vision Encode, as ids ``first_id`` .. ``first_id + 4``."""
    loader, positive, negative_id, vision, encode = range(first_id, first_id + 5)
    return [
        Node(loader, "CLIPLoader", widgets={"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}),
        Node(positive, "CLIPTextEncode", links={"clip": (loader, 0)}, title="Prompt",
             widgets={"text": prompt}),
        Node(negative_id, "CLIPTextEncode", links={"clip": (loader, 0)}, title=negative_title,
             widgets={"text": negative}),
        Node(vision, "CLIPVisionLoader", widgets={"clip_name": "clip_vision_h.safetensors"}),
        Node(encode, "CLIPVisionEncode", links={"clip_vision": (vision, 0), "image": image},
             widgets={"crop": "none"}, title=vision_title),
    ]


def _unianimate(name: str, frames: int, note: str) -> Workflow:
    """The UniAnimate-DiT chain: video and character in, pose-driven animation out."""
    size = {"width": 480, "height": 832}
    long_video = frames == 0
    frames_out = (25, 0) if long_video else (21, 0)  # long videos: colour drift corrected towards the reference
    nodes = [
        Node(1, "LoadVideo", widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", links={"video": (1, 0)}),
        Node(3, "LoadImage", widgets={"image": "reference.png"}, size=(320, 360)),
        Node(4, "ImageScale", links={"image": (3, 0)},
             widgets={"upscale_method": "lanczos", **size, "crop": "center"}),
        Node(5, "PoseAnimatePoseModelLoader",
             widgets={"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx", "device": "auto"}),
        Node(6, "PoseAnimateExtractPoses", links={"images": (2, 0), "pose_model": (5, 0), "fps": (2, 2)},
             title="Extract Poses (driving video)"),
        Node(7, "PoseAnimateExtractPoses", links={"images": (4, 0), "pose_model": (5, 0)},
             title="Extract Poses (character)"),
        Node(8, "PoseAnimateRetargetPoses", links={"driving_poses": (6, 0), "reference_pose": (7, 0)},
             widgets={"method": "unianimate"}),
        Node(9, "PoseAnimateRenderPoses", links={"poses": (8, 0), "fps": (2, 2)},
             widgets={"style": "unianimate", **size}, title="Render Poses (driving)"),
        Node(10, "PoseAnimateRenderPoses", links={"poses": (7, 0)},
             widgets={"style": "unianimate", **size}, title="Render Poses (character)"),
        *_encoders(11, "a person dancing, natural motion, detailed face and hands, high quality", NEGATIVE_PROMPT,
                   (4, 0)),
        Node(16, "PoseAnimateVAELoader", widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(17, "PoseAnimateDiTLoader", widgets={"dit_name": "wan2.1_i2v_480p_14B_fp16.safetensors"}),
        Node(18, "PoseAnimateUniAnimateLoader", links={"dit": (17, 0)},
             widgets={"unianimate_name": "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"}),
        Node(19, "PoseAnimateUniAnimateConditioning",
             links={"unianimate": (18, 1), "vae": (16, 0), "positive": (12, 0), "negative": (13, 0),
                    "reference_image": (4, 0), "pose_video": (9, 0), "reference_pose": (10, 0),
                    "clip_vision_output": (15, 0)},
             widgets={"frames": frames}),
        Node(20, "PoseAnimateSampler", links={"dit": (18, 0), "conditioning": (19, 0)},
             widgets={"seed": 42}),
        Node(21, "PoseAnimateVAEDecode", links={"samples": (20, 0), "vae": (16, 0)}),
        Node(22, "CreateVideo", links={"images": frames_out, "fps": (2, 2)}),
        Node(23, "SaveVideo", links={"video": (22, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}),
        Note(24, None, note, size=(NOTE_WIDTH, 400)),
    ]
    if long_video:
        nodes.append(Node(25, "PoseAnimateColorMatch", links={"images": (21, 0), "reference_image": (4, 0)},
                          widgets={"strength": 0.5}))
    layout = Layout([
        [Stage(None, [[24]]), Stage("Inputs", [[1], [3]]), Stage("Prompts and encoders", [[11, 12, 13], [14, 15, 16]]),
         Stage("Model", [[17, 18], [19]])],
        [Stage("Poses", [[2, 5, 6], [4, 7], [8], [9], [10]]), Stage("Sampling", [[20]]),
         Stage("Output", [[21, 25, 22, 23] if long_video else [21, 22, 23]])],
    ])
    return Workflow(name, nodes, layout)


REALISDANCE_NOTE = """RealisDance-DiT animation (PoseAnimate)

Model files (ComfyUI/models/<folder>/):
- diffusion_models/: RealisDance-DiT's transformer, from Hugging Face theFoxofSky/RealisDance-DiT: put its
  transformer/ folder in diffusion_models/ and pick diffusion_pytorch_model.safetensors.index.json, or use a
  single-file repack (realisdance_dit_14B_bf16.safetensors here)
- vae/wan_2.1_vae.safetensors, text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors,
  clip_vision/clip_vision_h.safetensors: Comfy-Org/Wan_2.1_ComfyUI_repackaged
- poseanimate_pose/yolox_l.onnx, dw-ll_ucoco_384.onnx: yzd-v/DWPose

RealisDance-DiT was trained on SMPL-CS body renders and HaMeR hand renders, which come from other tools. This
workflow feeds the pack's own pose render to both inputs as a stand-in: it runs anywhere, with weaker results;
connect real SMPL-CS and HaMeR render videos for the model's full quality. The reference keeps its own aspect;
its tokens are appended with shifted RoPE (switches on the reference node). The unconditional branch uses the
empty prompt and the CLIP features of a grey image, as the reference pipeline does."""


def _realisdance(name: str, frames: int, note: str) -> Workflow:
    """RealisDance-DiT: reference tokens + pose-condition videos -> animation."""
    size = {"width": 576, "height": 1024}
    return Workflow(name, [
        Node(1, "LoadVideo", widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", links={"video": (1, 0)}),
        Node(3, "LoadImage", widgets={"image": "reference.png"}, size=(320, 360)),
        Node(5, "PoseAnimatePoseModelLoader",
             widgets={"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx", "device": "auto"}),
        Node(6, "PoseAnimateExtractPoses", links={"images": (2, 0), "pose_model": (5, 0), "fps": (2, 2)},
             title="Extract Poses (driving video)"),
        Node(9, "PoseAnimateRenderPoses", links={"poses": (6, 0), "fps": (2, 2)},
             widgets={"style": "openpose", **size, "fit": "letterbox"}, title="Render Poses (SMPL-CS stand-in)"),
        *_encoders(10, "a person dancing, natural motion, detailed face and hands, high quality", "", (3, 0),
                   negative_title="Empty prompt (unconditional)", vision_title="CLIP Vision Encode (reference)"),
        Node(15, "EmptyImage", widgets={"width": 224, "height": 224, "batch_size": 1, "color": 0x808080},
             title="Grey image"),
        Node(16, "CLIPVisionEncode", links={"clip_vision": (13, 0), "image": (15, 0)},
             widgets={"crop": "none"}, title="CLIP Vision Encode (grey)"),
        Node(17, "PoseAnimateVAELoader", widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(18, "PoseAnimateRealisDanceLoader", widgets={"dit_name": "realisdance_dit_14B_bf16.safetensors"}),
        Node(19, "PoseAnimateRealisDanceReference",
             links={"realisdance": (18, 1), "vae": (17, 0), "reference_image": (3, 0)}, widgets=size),
        Node(20, "PoseAnimateRealisDanceConditioning",
             links={"realisdance": (18, 1), "reference": (19, 0), "vae": (17, 0), "positive": (11, 0),
                    "negative": (12, 0), "smpl_video": (9, 0), "hamer_video": (9, 0),
                    "clip_vision_output": (14, 0), "negative_clip_vision_output": (16, 0)},
             widgets={"frames": frames}),
        Node(21, "PoseAnimateSampler", links={"dit": (18, 0), "conditioning": (20, 0)},
             widgets={"seed": 42, "steps": 40, "cfg": 2.0, "shift": 1.0, "scheduler": "euler_diffusers",
                      "blending": "linear"}),
        Node(22, "PoseAnimateVAEDecode", links={"samples": (21, 0), "vae": (17, 0)}),
        Node(23, "CreateVideo", links={"images": (22, 0)}, widgets={"fps": 16.0}),
        Node(24, "SaveVideo", links={"video": (23, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}),
        Note(25, None, note, size=(NOTE_WIDTH, 440)),
    ], Layout([
        [Stage(None, [[25]]), Stage("Inputs", [[1], [3]]),
         Stage("Prompts and encoders", [[10, 11, 12], [13, 14, 15, 16]]), Stage("Model", [[18, 17], [19, 20]])],
        [Stage("Poses", [[2, 5, 6], [9]]), Stage("Sampling", [[21]]), Stage("Output", [[22, 23, 24]])],
    ]))


STEADYDANCER_NOTE = """SteadyDancer animation (PoseAnimate)

Model files (ComfyUI/models/<folder>/):
- diffusion_models/: SteadyDancer's transformer, from Hugging Face MCG-NJU/SteadyDancer-14B (put its files in
  diffusion_models/ and pick diffusion_pytorch_model.safetensors.index.json), or kijai's single file
  Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ.safetensors (here)
- vae/wan_2.1_vae.safetensors, text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors,
  clip_vision/clip_vision_h.safetensors: Comfy-Org/Wan_2.1_ComfyUI_repackaged
- poseanimate_pose/yolox_l.onnx, dw-ll_ucoco_384.onnx: yzd-v/DWPose

Image-to-video: the character image is the first frame, so its identity and framing hold. The driving poses
are aligned to the character's pose on the first frame (Retarget Poses, method steadydancer: SteadyDancer's
pose_align) and drawn at the character's size; the same poses distorted at random per frame
(steadydancer_negative, as pose_align_withdiffaug.py) are the negative poses of SteadyDancer's pose guidance
(pose_cfg on the conditioning, on steps 10%-40%). Sampler: UniPC, cfg 5, shift 5, 40 steps, as
generate_dancer.py."""


def _steadydancer(name: str, frames: int, note: str) -> Workflow:
    """SteadyDancer: the character as the first frame, aligned pose video (and unaligned negative poses)."""
    size = {"width": 576, "height": 1024}
    return Workflow(name, [
        Node(1, "LoadVideo", (40, 80), widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", (400, 80), links={"video": (1, 0)}),
        Node(3, "LoadImage", (40, 480), widgets={"image": "reference.png"}, size=(320, 360)),
        Node(4, "ImageScale", (400, 480), links={"image": (3, 0)},
             widgets={"upscale_method": "lanczos", **size, "crop": "center"}),
        Node(5, "PoseAnimatePoseModelLoader", (400, 260),
             widgets={"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx", "device": "auto"}),
        Node(6, "PoseAnimateExtractPoses", (760, 80), links={"images": (2, 0), "pose_model": (5, 0), "fps": (2, 2)},
             title="Extract Poses (driving video)", size=(360, 620)),
        Node(7, "PoseAnimateExtractPoses", (760, 740), links={"images": (4, 0), "pose_model": (5, 0)},
             title="Extract Poses (character)", size=(360, 620)),
        Node(8, "PoseAnimateRetargetPoses", (1160, 80), links={"driving_poses": (6, 0), "reference_pose": (7, 0)},
             widgets={"method": "steadydancer"}),
        Node(9, "PoseAnimateRenderPoses", (1160, 400), links={"poses": (8, 0), "fps": (2, 2)},
             widgets={"style": "openpose", **size}, title="Render Poses (aligned)", size=(340, 620)),
        Node(26, "PoseAnimateRetargetPoses", (1160, 1060),
             links={"driving_poses": (6, 0), "reference_pose": (7, 0)}, widgets={"method": "steadydancer_negative"},
             title="Retarget Poses (negative poses)"),
        Node(10, "PoseAnimateRenderPoses", (1160, 1380), links={"poses": (26, 0), "fps": (2, 2)},
             widgets={"style": "openpose", **size}, title="Render Poses (negative)", size=(340, 620)),
        *_encoders(11, "a person dancing, natural motion, detailed face and hands, high quality", NEGATIVE_PROMPT,
                   (4, 0), vision_title="CLIP Vision Encode (character)"),
        Node(16, "ImageFromBatch", (1540, 1300), links={"image": (9, 0)}, widgets={"batch_index": 0, "length": 1},
             title="First pose frame"),
        Node(17, "CLIPVisionEncode", (1540, 1000), links={"clip_vision": (14, 0), "image": (16, 0)},
             widgets={"crop": "none"}, title="CLIP Vision Encode (first pose frame)"),
        Node(18, "PoseAnimateVAELoader", (1540, 1160), widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(19, "PoseAnimateSteadyDancerLoader", (1920, 80),
             widgets={"dit_name": "Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ.safetensors"}),
        Node(20, "PoseAnimateSteadyDancerConditioning", (1920, 300),
             links={"steadydancer": (19, 1), "vae": (18, 0), "positive": (12, 0), "negative": (13, 0),
                    "reference_image": (4, 0), "pose_video": (9, 0), "clip_vision_output": (15, 0),
                    "negative_pose_video": (10, 0), "pose_clip_vision_output": (17, 0)},
             widgets={"frames": frames}, size=(380, 480)),
        Node(21, "PoseAnimateSampler", (2340, 80), links={"dit": (19, 0), "conditioning": (20, 0)},
             widgets={"seed": 42, "steps": 40, "cfg": 5.0, "shift": 5.0, "scheduler": "unipc",
                      "blending": "linear"}, size=(340, 420)),
        Node(22, "PoseAnimateVAEDecode", (2340, 560), links={"samples": (21, 0), "vae": (18, 0)}),
        Node(23, "CreateVideo", (2720, 80), links={"images": (22, 0), "fps": (2, 2)}),
        Node(24, "SaveVideo", (2720, 240), links={"video": (23, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}, size=(340, 440)),
        Note(25, (40, 900), note, size=(680, 420)),
    ], Layout([
        [Stage(None, [[25]]), Stage("Inputs", [[1], [3]]),
         Stage("Prompts and encoders", [[11, 12, 13], [14, 15], [16, 17]]), Stage("Model", [[19, 18]])],
        [Stage("Poses", [[2, 5, 6], [4, 7], [8], [9], [26], [10]]), Stage("Sampling", [[20, 21]]),
         Stage("Output", [[22, 23, 24]])],
    ]))


ANIMATE_NOTE = """Wan2.2-Animate, {mode} (PoseAnimate)

Model files (ComfyUI/models/<folder>/):
- diffusion_models/wan2.2_animate_14B_bf16.safetensors    Comfy-Org/Wan_2.2_ComfyUI_Repackaged (split_files/diffusion_models)
- vae/wan_2.1_vae.safetensors, text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors,
  clip_vision/clip_vision_h.safetensors                   Comfy-Org/Wan_2.1_ComfyUI_repackaged
- poseanimate_pose/yolov10m.onnx, vitpose_h_wholebody.onnx  Wan-AI/Wan2.2-Animate-14B (process_checkpoint/det, pose2d)
{extra}
Long videos run as chained clips of 77 frames (refert_num frames of one clip guide the next); 1280x720 or
720x1280 as trained; 20 steps, guidance 1.0 (no CFG), UniPC, shift 5."""

ANIMATION_EXTRA = """
Animation: the character (Load Image, scaled to the video size) moves like the person in the driving video;
the driving poses are retargeted to the character's body, the face crops carry the expression."""

REPLACEMENT_EXTRA = """- loras/WanAnimate_relight_lora_fp16.safetensors (or relighting_lora.ckpt from Wan-AI/Wan2.2-Animate-14B)

Replacement: the character takes the place of the person in the driving video, in its scene and lighting
(relighting LoRA). The person mask comes from the poses (Pose Mask); a segmenter's MASK (SAM2) is more exact."""


def _wan_animate(name: str, replacement: bool) -> Workflow:
    """Wan2.2-Animate: animation mode (retargeted poses) or replacement mode (mask, background, relighting)."""
    size = {"width": 720, "height": 1280}
    nodes: list = [
        Node(1, "LoadVideo", widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", links={"video": (1, 0)}),
        Node(3, "LoadImage", widgets={"image": "reference.png"}, size=(320, 360)),
        Node(4, "ImageScale", links={"image": (3, 0)},
             widgets={"upscale_method": "lanczos", **size, "crop": "center"}),
        Node(5, "PoseAnimatePoseModelLoader",
             widgets={"detector": "yolov10m.onnx", "keypoint_model": "vitpose_h_wholebody.onnx", "device": "auto"}),
        *_encoders(11, "a person moving naturally, detailed face and hands, high quality", NEGATIVE_PROMPT, (4, 0)),
        Node(16, "PoseAnimateVAELoader", widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(17, "PoseAnimateWanAnimateLoader", widgets={"dit_name": "wan2.2_animate_14B_bf16.safetensors"}),
        Node(19, "CreateVideo", links={"images": (18, 0), "fps": (2, 2)}),
        Node(20, "SaveVideo", links={"video": (19, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}),
    ]
    animate_links = {"dit": (17, 0), "animate": (17, 1), "vae": (16, 0), "positive": (12, 0), "negative": (13, 0),
                     "clip_vision_output": (15, 0), "reference_image": (4, 0), "pose_video": (9, 0),
                     "face_video": (10, 0), "face_poses": (6, 0)}
    if replacement:
        nodes += [
            Node(23, "ImageScale", links={"image": (2, 0)},
                 widgets={"upscale_method": "lanczos", **size, "crop": "center"}, title="Scale driving video"),
            Node(6, "PoseAnimateExtractPoses", links={"images": (23, 0), "pose_model": (5, 0), "fps": (2, 2)}),
            Node(9, "PoseAnimateRenderPoses", links={"poses": (6, 0), "fps": (2, 2)},
                 widgets={"style": "wan_animate", **size}),
            Node(10, "PoseAnimateFaceCrops", links={"images": (23, 0), "poses": (6, 0)}),
            Node(22, "PoseAnimatePoseMask", links={"poses": (6, 0)}),
            Node(21, "PoseAnimateRelightLoRA", links={"dit": (17, 0), "animate": (17, 1)},
                 widgets={"lora_name": "WanAnimate_relight_lora_fp16.safetensors"}),
        ]
        animate_links.update(dit=(21, 0), background_video=(23, 0), person_mask=(22, 0))
        extra = REPLACEMENT_EXTRA
        model, poses = [[17, 21]], [[2, 23], [5, 6], [4, 22], [10, 9]]
    else:
        nodes += [
            Node(6, "PoseAnimateExtractPoses", links={"images": (2, 0), "pose_model": (5, 0), "fps": (2, 2)},
                 title="Extract Poses (driving video)"),
            Node(7, "PoseAnimateExtractPoses", links={"images": (4, 0), "pose_model": (5, 0)},
                 title="Extract Poses (character)"),
            Node(8, "PoseAnimateRetargetPoses", links={"driving_poses": (6, 0), "reference_pose": (7, 0)},
                 widgets={"method": "wan_animate"}),
            Node(9, "PoseAnimateRenderPoses", links={"poses": (8, 0), "fps": (2, 2)},
                 widgets={"style": "wan_animate", **size}),
            Node(10, "PoseAnimateFaceCrops", links={"images": (2, 0), "poses": (6, 0)}),
        ]
        extra = ANIMATION_EXTRA
        model, poses = [[17]], [[2, 5, 6], [4, 7], [8], [10, 9]]
    nodes += [
        Node(18, "PoseAnimateWanAnimate", links=animate_links, widgets={"seed": 42}),
        Note(24, None, ANIMATE_NOTE.format(mode="replacement with relighting" if replacement else "animation",
                                           extra=extra), size=(NOTE_WIDTH, 440)),
    ]
    layout = Layout([
        [Stage(None, [[24]]), Stage("Inputs", [[1], [3]]), Stage("Prompts and encoders", [[11, 12, 13], [14, 15, 16]]),
         Stage("Model", model)],
        [Stage("Poses", poses), Stage("Sampling", [[18]]), Stage("Output", [[19, 20]])],
    ])
    return Workflow(name, sorted(nodes, key=lambda n: n.id), layout)


WORKFLOWS += [
    _unianimate("unianimate", 81, UNIANIMATE_NOTE),
    _unianimate("unianimate_long_video", 0, UNIANIMATE_NOTE.replace(
        "UniAnimate-DiT animation (PoseAnimate)",
        "UniAnimate-DiT, long video (PoseAnimate): frames 0 = the whole driving video, in windows of 81 frames; "
        "Color Match pulls each window's colours towards the character's and logs the drift")),
    _realisdance("realisdance", 81, REALISDANCE_NOTE),
    _steadydancer("steadydancer", 81, STEADYDANCER_NOTE),
    _wan_animate("wan_animate", replacement=False),
    _wan_animate("wan_animate_replacement", replacement=True),
]

ANIMATE2_NOTE = """Wan2.2-Animate-2 ({mode}) (PoseAnimate)

Model files (ComfyUI/models/<folder>/):
- diffusion_models/{dit}   Wan2.2-Animate-2 14B (or a Comfy-Org repack, bf16 or fp8 scaled)
- vae/wan_2.1_vae.safetensors                               Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/vae)
- text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors      Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/text_encoders)
- clip_vision/clip_vision_h.safetensors                     Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/clip_vision)

The driving video goes in as it is (no pose extraction): the model reads body, hands and face from its own VAE
latents. For retargeting to the character's proportions or a clean background, feed Render Poses output
instead (see the README). The driving video sets the length and size (scaled to 480x832 here); the character
is centre-cropped to it. Chunks of 81 frames continue each other's last frame.{extra}"""

ANIMATE2_LONG = """
Long video: the whole driving video, chunk after chunk (memory of one chunk); the pose cache in int8 keeps
RAM low (within 1/254 of each token's largest value); Color Match pulls the chunks' colours to the character."""

ANIMATE2_DISTILLED = """
Distilled: 10 steps, guidance 1.0 (no CFG), frame1_log_scale -1.3 (the official distillation setting)."""


def _animate2(name: str, variant: str) -> Workflow:
    """Wan2.2-Animate-2 from the raw driving video: 'raw' (one run), 'long' (whole video, int8 cache, Color
    Match) or 'distilled' (the distilled file, 10 steps, no CFG)."""
    size = {"width": 480, "height": 832}
    dit = "wan_animate_2_bf16_distillation.safetensors" if variant == "distilled" else "wan_animate_2_bf16.safetensors"
    settings = {"seed": 42}
    if variant == "distilled":
        settings.update(steps=10, cfg=1.0, frame1_log_scale=-1.3)  # the official distillation config's log_scale
    if variant == "long":
        settings.update(pose_cache="int8")
    nodes: list = [
        Node(1, "LoadVideo", (40, 80), widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", (400, 80), links={"video": (1, 0)}),
        Node(3, "LoadImage", (40, 480), widgets={"image": "reference.png"}, size=(320, 360)),
        Node(4, "ImageScale", (400, 480), links={"image": (3, 0)},
             widgets={"upscale_method": "lanczos", **size, "crop": "center"}, title="Scale character"),
        Node(5, "ImageScale", (400, 260), links={"image": (2, 0)},
             widgets={"upscale_method": "lanczos", **size, "crop": "center"}, title="Scale driving video"),
        *_encoders(11, "a person dancing, detailed face and hands, static background", NEGATIVE_PROMPT, (4, 0)),
        Node(16, "PoseAnimateVAELoader", (1540, 1020), widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(17, "PoseAnimateAnimate2Loader", (1920, 80), widgets={"dit_name": dit}),
        Node(18, "PoseAnimateAnimate2", (2340, 80), links={
            "dit": (17, 0), "vae": (16, 0), "positive": (12, 0), "negative": (13, 0), "clip_vision_output": (15, 0),
            "reference_image": (4, 0), "driving_video": (5, 0)}, widgets=settings, size=(380, 720)),
    ]
    frames = (18, 0)
    if variant == "long":
        nodes.append(Node(21, "PoseAnimateColorMatch", (2340, 860), links={"images": (18, 0), "reference_image": (4, 0)},
                          widgets={"strength": 0.5, "segments": "animate_clips", "clip_frames": 81,
                                   "refert_num": "1"}))  # Animate-2's chunks are Wan2.2-Animate's clips, refert 1
        frames = (21, 0)
    extra = {"raw": "", "long": ANIMATE2_LONG, "distilled": ANIMATE2_DISTILLED}[variant]
    mode = {"raw": "animation from the raw video", "long": "long video", "distilled": "distilled, fast"}[variant]
    nodes += [
        Node(19, "CreateVideo", (2760, 80), links={"images": frames, "fps": (2, 2)}),
        Node(20, "SaveVideo", (2760, 240), links={"video": (19, 0)}, widgets={"filename_prefix": f"poseanimate/{name}"},
             size=(340, 440)),
        Note(24, (40, 1300), ANIMATE2_NOTE.format(mode=mode, dit=dit.ljust(50), extra=extra), size=(700, 380)),
    ]
    return Workflow(name, sorted(nodes, key=lambda n: n.id), Layout([
        [Stage(None, [[24]]), Stage("Inputs", [[1], [3]]), Stage("Prompts and encoders", [[11, 12, 13], [14, 15]]),
         Stage("Model", [[17, 16]])],
        [Stage("Driving video", [[2, 5], [4]]), Stage("Sampling", [[18]]),
         Stage("Output", [[21, 19, 20] if variant == "long" else [19, 20]])],
    ]))


WORKFLOWS += [
    _animate2("animate2", "raw"),
    _animate2("animate2_long_video", "long"),
    _animate2("animate2_distilled", "distilled"),
]

# ---------------------------------------------------------------- object_info: what the front end makes of a node
@dataclass
class Slot:
    name: str
    type: str                        # the socket type ("COMBO" for dropdowns)
    widget: bool
    options: dict


def _input_slots(info: dict, chosen: dict[str, Any] | None = None) -> list[Slot]:
    """The node's inputs in declaration order (required, then optional), as the front end lays them out.

    A dynamic combo (``COMFY_DYNAMICCOMBO_V3``) is a dropdown of option keys; the sub-inputs of the
    chosen option (``chosen``: values by input name, else the first option) follow it as inputs named
    ``parent.child``, recursively, which is how the front end names them in the prompt.
    """
    return _group_slots(info.get("input", {}), info.get("input_order", {}), "", chosen or {})


def _group_slots(inputs: dict, order: dict, prefix: str, chosen: dict[str, Any]) -> list[Slot]:
    slots = []
    for group in ("required", "optional"):
        specs = inputs.get(group, {}) or {}
        for name in order.get(group, list(specs)):
            spec = specs[name]
            full = prefix + name
            kind, options = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            if isinstance(kind, list):
                slots.append(Slot(full, "COMBO", True, dict(options, options=kind)))
            elif kind == DYNAMIC_COMBO:
                choices = options.get("options", [])
                keys = [c["key"] for c in choices]
                slots.append(Slot(full, "COMBO", True, dict({k: v for k, v in options.items() if k != "options"},
                                                            options=keys)))
                picked = chosen.get(full, options.get("default", keys[0] if keys else None))
                sub = next((c.get("inputs", {}) for c in choices if c["key"] == picked), {})
                slots += _group_slots(sub, {}, full + ".", chosen)
            else:
                widget = kind == "COMBO" or (kind in SCALARS and not options.get("forceInput"))
                slots.append(Slot(full, kind, widget, options))
    return slots


def _has_control(slot: Slot) -> bool:
    if slot.type == "COMBO" and slot.options.get("control_after_generate"):
        raise NotImplementedError(f"dropdown '{slot.name}' with control_after_generate (not supported here)")
    return slot.type == "INT" and bool(slot.options.get("control_after_generate", slot.name in LEGACY_SEED_NAMES))


def _has_upload(slot: Slot) -> bool:
    return slot.type == "COMBO" and any(slot.options.get(k) for k in UPLOAD_OPTIONS)


def _default(slot: Slot, where: str) -> Any:
    if "default" in slot.options:
        return slot.options["default"]
    if slot.type == "COMBO":
        if not slot.options.get("options"):
            raise ValueError(f"{where}: '{slot.name}' is a dropdown with no options here; give its value")
        return slot.options["options"][0]
    return {"INT": slot.options.get("min", 0), "FLOAT": slot.options.get("min", 0.0), "STRING": "",
            "BOOLEAN": False}[slot.type]


def _value(node: Node, slot: Slot) -> Any:
    """The widget's value: the description's, else the node's default."""
    if slot.name in node.widgets:
        return node.widgets[slot.name]
    return _default(slot, f"node {node.id} ({node.class_type})")


def _node_info(object_info: dict, node: Node) -> dict:
    if node.class_type not in object_info:
        raise ValueError(f"node {node.id}: '{node.class_type}' is not a node type of this ComfyUI (is the pack "
                         "installed?)")
    return object_info[node.class_type]


def _check(node: Node, info: dict, by_id: dict) -> list[Slot]:
    slots = _input_slots(info, node.widgets)
    names = {s.name for s in slots}
    where = f"node {node.id} ({node.class_type})"
    for name in list(node.widgets) + list(node.links) + list(node.controls):
        if name not in names:
            raise ValueError(f"{where}: no input named '{name}'; inputs: {', '.join(names)}")
    for name, (src, out) in node.links.items():
        source = by_id.get(src)
        if not isinstance(source, Node):
            raise ValueError(f"{where}: input '{name}' links from node {src}, which is not a node here")
    required = set(info.get("input_order", {}).get("required", info.get("input", {}).get("required", {})))
    for slot in slots:
        if not slot.widget and slot.name in required and slot.name not in node.links:
            raise ValueError(f"{where}: required input '{slot.name}' ({slot.type}) is not linked")
    return slots


# ---------------------------------------------------------------- canvas layout
# Measured in the 0.33 front end (LiteGraph): a node's body is 6 px + 20 px per socket row + 24 px per widget
# row (+ 8 px when it has widgets); its title bar (30 px) sits above ``pos``; a group's title bar is 24 px
# text * 1.4. The front end stops drawing text below a zoom of min_font_size_for_lod / NODE_TEXT_SIZE (8 / 14
# = 0.57 at its defaults): the layout keeps a workflow compact enough to fit a 1080p screen above that.
NODE_TITLE = 30
SOCKET_ROW, WIDGET_ROW, WIDGETS_PAD, BODY_PAD = 20, 24, 8, 6
MULTILINE_EXTRA = 56          # a prompt box shows about four lines
NODE_WIDTH = 320
TITLE_CHAR, TITLE_PAD = 7.4, 44   # a title's width: 14 px sans-serif, after the node's dot, before its edge
GROW_WIDTH = 340              # web/js/pose_preview.js widens a node to 340 px when it shows its player
GROUP_TITLE, GROUP_PAD, NODE_GAP, COLUMN_GAP, STAGE_GAP = 34, 16, 24, 30, 40
GROUP_FONT = 24
# The view a workflow opens at: the whole graph on a 1920x1080 window, clear of the front end's side bar and
# tab bar and run toolbar (left, top, right, bottom insets); tests/browser/test_canvas_layout.py measures the same fit.
VIEW = (1920, 1080)
VIEW_INSETS = (64, 96, 24, 24)
# Nodes that grow after a run (a preview inside the node: the pack's pose players, the sampler's latent
# previews, the saved video's player). A layout keeps them last in their column of the last band, so they
# grow into free canvas and never over another node.
GROWS_AFTER_RUN = frozenset({"PoseAnimateExtractPoses", "PoseAnimateRetargetPoses", "PoseAnimateRenderPoses",
                             "PoseAnimateSampler", "SaveVideo", "PreviewImage", "SaveImage"})


def estimate_size(node: Node, info: dict) -> tuple[float, float]:
    """The node's size as the front end computes it from its sockets and widgets (``node.size`` wins)."""
    if node.size is not None:
        return node.size
    slots = _input_slots(info, node.widgets)
    sockets = sum(1 for s in slots if not s.widget)
    widgets = sum(1 + _has_control(s) + _has_upload(s) for s in slots if s.widget)
    multiline = sum(1 for s in slots if s.widget and s.type == "STRING" and s.options.get("multiline"))
    rows = max(sockets, len(info.get("output", [])))
    height = BODY_PAD + SOCKET_ROW * rows + (WIDGET_ROW * widgets + WIDGETS_PAD if widgets else 0)
    width = GROW_WIDTH if node.class_type in GROWS_AFTER_RUN else NODE_WIDTH
    title = node.title or info.get("display_name") or node.class_type
    width = max(width, math.ceil(TITLE_CHAR * len(title) + TITLE_PAD))   # the whole title shows
    return (float(width), float(height + MULTILINE_EXTRA * multiline))


@dataclass
class Placed:
    pos: dict[int, tuple[float, float]]
    size: dict[int, tuple[float, float]]
    groups: list[dict]


def bounds(placed: Placed) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` round every node (title bar included) and group."""
    boxes = [(x, y - NODE_TITLE, x + placed.size[i][0], y + placed.size[i][1]) for i, (x, y) in placed.pos.items()]
    boxes += [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
               g["bounding"][1] + g["bounding"][3]) for g in placed.groups]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def fit_view(placed: Placed) -> dict:
    """The canvas's saved view (``extra.ds``): the whole graph centred in :data:`VIEW`, at most 100 %."""
    x0, y0, x1, y1 = bounds(placed)
    left, top, right, bottom = VIEW_INSETS
    width, height = VIEW[0] - left - right, VIEW[1] - top - bottom
    scale = min(1.0, width / (x1 - x0), height / (y1 - y0))
    offset = [(left + (width - (x1 - x0) * scale) / 2) / scale - x0, (top + (height - (y1 - y0) * scale) / 2) / scale - y0]
    return {"scale": round(scale, 4), "offset": [round(v, 1) for v in offset]}


def place(workflow: Workflow, object_info: dict) -> Placed:
    """Positions, sizes and groups of a workflow's nodes from its :class:`Layout` (or their own ``pos``).

    Every node sits in exactly one column; a node in ``GROWS_AFTER_RUN`` must be the last of its column and
    in the last band (it grows downwards after a run, into the free canvas below the graph).
    """
    by_id = {n.id: n for n in workflow.nodes}
    sizes = {n.id: (n.size if isinstance(n, Note) else estimate_size(n, _node_info(object_info, n)))
             for n in workflow.nodes}
    if workflow.layout is None:
        missing = [n.id for n in workflow.nodes if n.pos is None]
        if missing:
            raise ValueError(f"workflow '{workflow.name}': nodes {missing} have no pos and there is no layout")
        return Placed({n.id: n.pos for n in workflow.nodes}, sizes, [])
    laid = [i for band in workflow.layout.bands for stage in band for column in stage.columns for i in column]
    repeated = sorted({i for i in laid if laid.count(i) > 1})
    unknown, left_out = sorted(set(laid) - set(by_id)), sorted(set(by_id) - set(laid))
    if repeated or unknown or left_out:
        raise ValueError(f"workflow '{workflow.name}' layout: repeated {repeated}, unknown {unknown}, "
                         f"not placed {left_out}")
    pos, groups, y = {}, [], 0.0
    last_band = len(workflow.layout.bands) - 1
    for b, band in enumerate(workflow.layout.bands):
        x, band_height = 0.0, 0.0
        for stage in band:
            inset = GROUP_PAD if stage.title else 0.0
            top = y + (GROUP_TITLE + GROUP_PAD if stage.title else 0.0) + NODE_TITLE
            cx, bottom = x + inset, top
            for column in stage.columns:
                cy, width = top, 0.0
                for k, node_id in enumerate(column):
                    node = by_id[node_id]
                    if isinstance(node, Node) and node.class_type in GROWS_AFTER_RUN and (
                            k != len(column) - 1 or b != last_band):
                        raise ValueError(f"workflow '{workflow.name}' layout: node {node_id} ({node.class_type}) "
                                         "grows after a run: put it last in a column of the last band")
                    pos[node_id] = (cx, cy)
                    w, h = sizes[node_id]
                    width = max(width, w)
                    cy += h + NODE_GAP + NODE_TITLE
                for node_id in column:                        # a column's nodes share its width
                    sizes[node_id] = (width, sizes[node_id][1]) if isinstance(by_id[node_id], Node) else \
                        sizes[node_id]
                bottom = max(bottom, cy - NODE_GAP - NODE_TITLE)
                cx += width + COLUMN_GAP
            right = cx - COLUMN_GAP + inset
            if stage.title:
                groups.append({"id": len(groups) + 1, "title": stage.title,
                               "bounding": [x, y, right - x, bottom + GROUP_PAD - y], "color": stage.color,
                               "font_size": GROUP_FONT, "flags": {}})
            band_height = max(band_height, bottom + inset - y)
            x = right + STAGE_GAP
        y += band_height + STAGE_GAP
    return Placed(pos, sizes, groups)


# ---------------------------------------------------------------- the two formats
def build_api(workflow: Workflow, object_info: dict) -> dict:
    """The API format: what the front end's graphToPrompt makes of the canvas."""
    by_id = {n.id: n for n in workflow.nodes}
    prompt = {}
    for node in workflow.nodes:
        if isinstance(node, Note):
            continue
        info = _node_info(object_info, node)
        inputs = {}
        for slot in _check(node, info, by_id):
            if slot.name in node.links:
                src, out = node.links[slot.name]
                inputs[slot.name] = [str(src), out]
            elif slot.widget:
                inputs[slot.name] = _value(node, slot)
        prompt[str(node.id)] = {"inputs": inputs, "class_type": node.class_type,
                                "_meta": {"title": node.title or info.get("display_name") or node.class_type}}
    return prompt


def _order(workflow: Workflow) -> dict[int, int]:
    """Execution order of the nodes (sources first), as the canvas stores it."""
    nodes = [n for n in workflow.nodes if isinstance(n, Node)]
    done: dict[int, int] = {}
    while len(done) < len(nodes):
        progressed = False
        for n in nodes:
            if n.id not in done and all(src in done for src, _ in n.links.values()):
                done[n.id] = len(done)
                progressed = True
        if not progressed:
            raise ValueError(f"workflow '{workflow.name}' has a cycle")
    for n in workflow.nodes:
        if isinstance(n, Note):
            done[n.id] = len(done)
    return done


def build_ui(workflow: Workflow, object_info: dict) -> dict:
    """The canvas format (version 0.4), as the front end saves it."""
    by_id = {n.id: n for n in workflow.nodes}
    if len(by_id) != len(workflow.nodes):
        raise ValueError(f"workflow '{workflow.name}': node ids repeat")
    order = _order(workflow)
    placed = place(workflow, object_info)
    links, nodes, outputs_of = [], [], {}
    for node in workflow.nodes:       # link ids in the order of (target node, input) as listed
        if isinstance(node, Node):
            for name, (src, out) in node.links.items():
                info = _node_info(object_info, by_id[src])
                if not 0 <= out < len(info["output"]):
                    raise ValueError(f"node {node.id}: input '{name}' links from output {out} of node {src}, "
                                     f"which has {len(info['output'])} outputs")
                links.append([len(links) + 1, src, out, node.id, name, info["output"][out]])
                outputs_of.setdefault((src, out), []).append(len(links))
    link_of = {(lk[3], lk[4]): lk[0] for lk in links}

    for node in workflow.nodes:
        if isinstance(node, Note):
            nodes.append({"id": node.id, "type": "Note", "pos": list(placed.pos[node.id]),
                          "size": list(placed.size[node.id]),
                          "flags": {}, "order": order[node.id], "mode": 0, "inputs": [], "outputs": [],
                          "title": node.title, "properties": {}, "widgets_values": [node.text],
                          "color": "#432", "bgcolor": "#653"})
            continue
        info = _node_info(object_info, node)
        slots = _check(node, info, by_id)
        inputs, values = [], []
        sockets = [s for s in slots if not s.widget]
        widgets = [s for s in slots if s.widget]
        for s in sockets:                                   # the front end lists sockets first, then widgets
            entry = {"name": s.name, "type": s.type, "link": link_of.get((node.id, s.name))}
            if s.name in info.get("input", {}).get("optional", {}):
                entry["shape"] = 7                          # the hollow socket of an optional input
            inputs.append(entry)
        for s in widgets:
            inputs.append({"name": s.name, "type": s.type, "widget": {"name": s.name},
                           "link": link_of.get((node.id, s.name))})
            values.append(_value(node, s))
            if _has_control(s):
                values.append(node.controls.get(s.name, "fixed"))
            if _has_upload(s):
                inputs.append({"name": "upload", "type": "IMAGEUPLOAD", "widget": {"name": "upload"}, "link": None})
                values.append("image")
        outputs = [{"name": name, "type": kind, "links": outputs_of.get((node.id, i), []), "slot_index": i}
                   for i, (kind, name) in enumerate(zip(info["output"], info.get("output_name", info["output"])))]
        entry = {"id": node.id, "type": node.class_type, "pos": list(placed.pos[node.id]),
                 "size": list(placed.size[node.id]), "flags": {},
                 "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs}
        if node.title:
            entry["title"] = node.title
        entry["properties"] = {"Node name for S&R": node.class_type}
        entry["widgets_values"] = values
        nodes.append(entry)

    slot_index = {}
    for n in nodes:
        for i, inp in enumerate(n["inputs"]):
            slot_index[(n["id"], inp["name"])] = i
    links = [[lid, src, out, dst, slot_index[(dst, name)], kind] for lid, src, out, dst, name, kind in links]
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"poseanimate/workflows/{workflow.name}")), "revision": 0,
            "last_node_id": max(by_id), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": placed.groups, "config": {}, "extra": {"ds": fit_view(placed)}, "version": 0.4}


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build_files(object_info: dict, names: list[str] | None = None) -> dict[str, str]:
    """``{file name: text}`` of every (or the named) workflow, both formats."""
    chosen = [w for w in WORKFLOWS if not names or w.name in names]
    missing = set(names or ()) - {w.name for w in chosen}
    if missing:
        raise ValueError(f"no workflow named {', '.join(sorted(missing))}; known: "
                         f"{', '.join(w.name for w in WORKFLOWS)}")
    files = {}
    for w in chosen:
        files[f"{w.name}.json"] = dumps(build_ui(w, object_info))
        files[f"{w.name}.api.json"] = dumps(build_api(w, object_info))
    return files


def _object_info(args) -> dict:
    if args.object_info:
        return json.loads(Path(args.object_info).read_text())
    with urllib.request.urlopen(args.server.rstrip("/") + "/object_info", timeout=60) as resp:
        return json.load(resp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", help="a running ComfyUI with this pack, e.g. http://127.0.0.1:8188")
    source.add_argument("--object-info", help="a saved /object_info JSON")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    parser.add_argument("--out", default=str(HERE), help="where the files go (default: this folder)")
    parser.add_argument("names", nargs="*", help="workflows to build (default: all)")
    args = parser.parse_args(argv)
    files = build_files(_object_info(args), args.names)
    out = Path(args.out)
    stale = []
    for name, text in files.items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(path)
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
