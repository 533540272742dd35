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
    pos: tuple[float, float]
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, tuple[int, int]] = field(default_factory=dict)
    title: str | None = None
    size: tuple[float, float] | None = None
    controls: dict[str, str] = field(default_factory=dict)


@dataclass
class Note:
    """A text note on the canvas (the front end's Note node; not part of the API format)."""

    id: int
    pos: tuple[float, float]
    text: str
    size: tuple[float, float] = (420.0, 200.0)
    title: str = "Note"


@dataclass
class Workflow:
    name: str                       # file names: <name>.json and <name>.api.json
    nodes: list[Node | Note]


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

WORKFLOWS = [
    Workflow("pose_extraction", [
        Node(1, "LoadVideo", (40, 80), widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", (400, 80), links={"video": (1, 0)}),
        Node(3, "PoseAnimatePoseModelLoader", (400, 260),
             widgets={"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx", "device": "auto"}),
        Node(4, "PoseAnimateExtractPoses", (760, 80), links={"images": (2, 0), "pose_model": (3, 0), "fps": (2, 2)},
             size=(360, 620)),
        Node(5, "PoseAnimateRenderPoses", (1160, 80), links={"poses": (4, 0)}, widgets={"style": "openpose"},
             size=(340, 620)),
        Node(6, "CreateVideo", (1540, 80), links={"images": (5, 0), "fps": (2, 2)}),
        Node(7, "SaveVideo", (1540, 240), links={"video": (6, 0)}, widgets={"filename_prefix": "poseanimate/pose"},
             size=(340, 440)),
        Note(8, (40, 500), POSE_MODELS_NOTE, size=(680, 240)),
    ]),
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
        Node(loader, "CLIPLoader", (1540, 80),
             widgets={"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}),
        Node(positive, "CLIPTextEncode", (1540, 240), links={"clip": (loader, 0)}, title="Prompt",
             widgets={"text": prompt}),
        Node(negative_id, "CLIPTextEncode", (1540, 480), links={"clip": (loader, 0)}, title=negative_title,
             widgets={"text": negative}),
        Node(vision, "CLIPVisionLoader", (1540, 720), widgets={"clip_name": "clip_vision_h.safetensors"}),
        Node(encode, "CLIPVisionEncode", (1540, 860), links={"clip_vision": (vision, 0), "image": image},
             widgets={"crop": "none"}, title=vision_title),
    ]


def _unianimate(name: str, frames: int, note: str) -> Workflow:
    """The UniAnimate-DiT chain: video and character in, pose-driven animation out."""
    size = {"width": 480, "height": 832}
    long_video = frames == 0
    frames_out = (25, 0) if long_video else (21, 0)  # long videos: colour drift corrected towards the reference
    nodes = [
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
             widgets={"method": "unianimate"}),
        Node(9, "PoseAnimateRenderPoses", (1160, 400), links={"poses": (8, 0)},
             widgets={"style": "unianimate", **size}, title="Render Poses (driving)", size=(340, 620)),
        Node(10, "PoseAnimateRenderPoses", (1160, 1060), links={"poses": (7, 0)},
             widgets={"style": "unianimate", **size}, title="Render Poses (character)", size=(340, 620)),
        *_encoders(11, "a person dancing, natural motion, detailed face and hands, high quality", NEGATIVE_PROMPT,
                   (4, 0)),
        Node(16, "PoseAnimateVAELoader", (1540, 1020), widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(17, "PoseAnimateDiTLoader", (1920, 80),
             widgets={"dit_name": "wan2.1_i2v_480p_14B_fp16.safetensors"}),
        Node(18, "PoseAnimateUniAnimateLoader", (1920, 300), links={"dit": (17, 0)},
             widgets={"unianimate_name": "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"}),
        Node(19, "PoseAnimateUniAnimateConditioning", (1920, 480),
             links={"unianimate": (18, 1), "vae": (16, 0), "positive": (12, 0), "negative": (13, 0),
                    "reference_image": (4, 0), "pose_video": (9, 0), "reference_pose": (10, 0),
                    "clip_vision_output": (15, 0)},
             widgets={"frames": frames}, size=(380, 420)),
        Node(20, "PoseAnimateSampler", (2340, 80), links={"dit": (18, 0), "conditioning": (19, 0)},
             widgets={"seed": 42}, size=(340, 420)),
        Node(21, "PoseAnimateVAEDecode", (2340, 560), links={"samples": (20, 0), "vae": (16, 0)}),
        Node(22, "CreateVideo", (2720, 80), links={"images": frames_out, "fps": (2, 2)}),
        Node(23, "SaveVideo", (2720, 240), links={"video": (22, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}, size=(340, 440)),
        Note(24, (40, 900), note, size=(680, 380)),
    ]
    if long_video:
        nodes.append(Node(25, "PoseAnimateColorMatch", (2340, 760),
                          links={"images": (21, 0), "reference_image": (4, 0)},
                          widgets={"strength": 0.5}))
    return Workflow(name, nodes)


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
        Node(1, "LoadVideo", (40, 80), widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", (400, 80), links={"video": (1, 0)}),
        Node(3, "LoadImage", (40, 480), widgets={"image": "reference.png"}, size=(320, 360)),
        Node(5, "PoseAnimatePoseModelLoader", (400, 260),
             widgets={"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx", "device": "auto"}),
        Node(6, "PoseAnimateExtractPoses", (760, 80), links={"images": (2, 0), "pose_model": (5, 0), "fps": (2, 2)},
             title="Extract Poses (driving video)", size=(360, 620)),
        Node(9, "PoseAnimateRenderPoses", (1160, 80), links={"poses": (6, 0)},
             widgets={"style": "openpose", **size, "fit": "letterbox"}, title="Render Poses (stand-in for SMPL-CS "
             "and HaMeR)", size=(340, 620)),
        *_encoders(10, "a person dancing, natural motion, detailed face and hands, high quality", "", (3, 0),
                   negative_title="Empty prompt (unconditional)", vision_title="CLIP Vision Encode (reference)"),
        Node(15, "EmptyImage", (1160, 760), widgets={"width": 224, "height": 224, "batch_size": 1,
                                                     "color": 0x808080}, title="Grey image"),
        Node(16, "CLIPVisionEncode", (1540, 1000), links={"clip_vision": (13, 0), "image": (15, 0)},
             widgets={"crop": "none"}, title="CLIP Vision Encode (grey)"),
        Node(17, "PoseAnimateVAELoader", (1540, 1160), widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(18, "PoseAnimateRealisDanceLoader", (1920, 80),
             widgets={"dit_name": "realisdance_dit_14B_bf16.safetensors"}),
        Node(19, "PoseAnimateRealisDanceReference", (1920, 300),
             links={"realisdance": (18, 1), "vae": (17, 0), "reference_image": (3, 0)}, widgets=size),
        Node(20, "PoseAnimateRealisDanceConditioning", (1920, 620),
             links={"realisdance": (18, 1), "reference": (19, 0), "vae": (17, 0), "positive": (11, 0),
                    "negative": (12, 0), "smpl_video": (9, 0), "hamer_video": (9, 0),
                    "clip_vision_output": (14, 0), "negative_clip_vision_output": (16, 0)},
             widgets={"frames": frames}, size=(380, 380)),
        Node(21, "PoseAnimateSampler", (2340, 80), links={"dit": (18, 0), "conditioning": (20, 0)},
             widgets={"seed": 42, "steps": 40, "cfg": 2.0, "shift": 1.0, "scheduler": "euler_diffusers",
                      "blending": "linear"}, size=(340, 420)),
        Node(22, "PoseAnimateVAEDecode", (2340, 560), links={"samples": (21, 0), "vae": (17, 0)}),
        Node(23, "CreateVideo", (2720, 80), links={"images": (22, 0)}, widgets={"fps": 16.0}),
        Node(24, "SaveVideo", (2720, 240), links={"video": (23, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}, size=(340, 440)),
        Note(25, (40, 900), note, size=(680, 420)),
    ])


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
        Node(9, "PoseAnimateRenderPoses", (1160, 400), links={"poses": (8, 0)},
             widgets={"style": "openpose", **size}, title="Render Poses (aligned)", size=(340, 620)),
        Node(26, "PoseAnimateRetargetPoses", (1160, 1060),
             links={"driving_poses": (6, 0), "reference_pose": (7, 0)}, widgets={"method": "steadydancer_negative"},
             title="Retarget Poses (negative poses)"),
        Node(10, "PoseAnimateRenderPoses", (1160, 1380), links={"poses": (26, 0)},
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
    ])


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
        Node(1, "LoadVideo", (40, 80), widgets={"file": "driving_video.mp4"}, size=(320, 360)),
        Node(2, "GetVideoComponents", (400, 80), links={"video": (1, 0)}),
        Node(3, "LoadImage", (40, 480), widgets={"image": "reference.png"}, size=(320, 360)),
        Node(4, "ImageScale", (400, 480), links={"image": (3, 0)},
             widgets={"upscale_method": "lanczos", **size, "crop": "center"}),
        Node(5, "PoseAnimatePoseModelLoader", (400, 260),
             widgets={"detector": "yolov10m.onnx", "keypoint_model": "vitpose_h_wholebody.onnx", "device": "auto"}),
        *_encoders(11, "a person moving naturally, detailed face and hands, high quality", NEGATIVE_PROMPT, (4, 0)),
        Node(16, "PoseAnimateVAELoader", (1540, 1020), widgets={"vae_name": "wan_2.1_vae.safetensors"}),
        Node(17, "PoseAnimateWanAnimateLoader", (1920, 80),
             widgets={"dit_name": "wan2.2_animate_14B_bf16.safetensors"}),
        Node(19, "CreateVideo", (2720, 80), links={"images": (18, 0), "fps": (2, 2)}),
        Node(20, "SaveVideo", (2720, 240), links={"video": (19, 0)},
             widgets={"filename_prefix": f"poseanimate/{name}"}, size=(340, 440)),
    ]
    animate_links = {"dit": (17, 0), "animate": (17, 1), "vae": (16, 0), "positive": (12, 0), "negative": (13, 0),
                     "clip_vision_output": (15, 0), "reference_image": (4, 0), "pose_video": (9, 0),
                     "face_video": (10, 0), "face_poses": (6, 0)}
    if replacement:
        nodes += [
            Node(23, "ImageScale", (400, 900), links={"image": (2, 0)},
                 widgets={"upscale_method": "lanczos", **size, "crop": "center"}, title="Scale driving video"),
            Node(6, "PoseAnimateExtractPoses", (760, 80), links={"images": (23, 0), "pose_model": (5, 0),
                                                                 "fps": (2, 2)}, size=(360, 620)),
            Node(9, "PoseAnimateRenderPoses", (1160, 80), links={"poses": (6, 0)},
                 widgets={"style": "wan_animate", **size}, size=(340, 620)),
            Node(10, "PoseAnimateFaceCrops", (1160, 760), links={"images": (23, 0), "poses": (6, 0)}),
            Node(22, "PoseAnimatePoseMask", (760, 760), links={"poses": (6, 0)}),
            Node(21, "PoseAnimateRelightLoRA", (1920, 300), links={"dit": (17, 0), "animate": (17, 1)},
                 widgets={"lora_name": "WanAnimate_relight_lora_fp16.safetensors"}),
        ]
        animate_links.update(dit=(21, 0), background_video=(23, 0), person_mask=(22, 0))
        extra = REPLACEMENT_EXTRA
    else:
        nodes += [
            Node(6, "PoseAnimateExtractPoses", (760, 80), links={"images": (2, 0), "pose_model": (5, 0),
                                                                 "fps": (2, 2)}, title="Extract Poses (driving video)",
                 size=(360, 620)),
            Node(7, "PoseAnimateExtractPoses", (760, 740), links={"images": (4, 0), "pose_model": (5, 0)},
                 title="Extract Poses (character)", size=(360, 620)),
            Node(8, "PoseAnimateRetargetPoses", (1160, 80), links={"driving_poses": (6, 0), "reference_pose": (7, 0)},
                 widgets={"method": "wan_animate"}),
            Node(9, "PoseAnimateRenderPoses", (1160, 400), links={"poses": (8, 0)},
                 widgets={"style": "wan_animate", **size}, size=(340, 620)),
            Node(10, "PoseAnimateFaceCrops", (1160, 1060), links={"images": (2, 0), "poses": (6, 0)}),
        ]
        extra = ANIMATION_EXTRA
    nodes += [
        Node(18, "PoseAnimateWanAnimate", (2340, 80), links=animate_links, widgets={"seed": 42}, size=(380, 620)),
        Note(24, (40, 1300), ANIMATE_NOTE.format(mode="replacement with relighting" if replacement else "animation",
                                                 extra=extra), size=(700, 380)),
    ]
    return Workflow(name, sorted(nodes, key=lambda n: n.id))


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
            nodes.append({"id": node.id, "type": "Note", "pos": list(node.pos), "size": list(node.size),
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
        rows = len(sockets) + len(widgets) + (1 if not outputs else 0)
        entry = {"id": node.id, "type": node.class_type, "pos": list(node.pos),
                 "size": list(node.size or (320, 46 + 24 * max(rows, len(outputs)))), "flags": {},
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
            "groups": [], "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}


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
