"""Wan2.2-Animate nodes: load the model, add the relighting LoRA, make a person mask from poses, animate.

Thin: checks, core calls (methods/wan_animate/), handles out. Animation
runs clip by clip, each clip guided by the previous clip's decoded frames,
so the animate node samples *and* decodes and returns IMAGE frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import host
from ..errors import InputError
from ..host_types import image_embeddings, prompt_embeddings, video_vae
from ..methods.images import fit_image
from ..methods.wan_animate import (DEFAULT_GUIDANCE, DEFAULT_SHIFT, DEFAULT_SOLVER, DEFAULT_STEPS, NO_FACE_POLICIES,
                                   AnimateModules, animate_video, face_presence, fill_missing_faces,
                                   load_relight_lora, load_wan_animate, pose_mask)
from ..models.checkpoint import storage_dtype_from_name
from ..models.wan.config import WanDiTConfig
from ..sampling.schedulers import SCHEDULER_NAMES, make_scheduler
from ..sampling.windows import ANIMATE_CLIP_LEN, ANIMATE_REFERT_NUMS
from .dit_loaders import (COMPUTE_DTYPES, DIT_TYPE, DiTHandle, dit_handle, dit_operations, dit_options,
                          with_lora)
from .pose_io import POSE_KEYPOINT, poses_in
from .sampler_nodes import running_dit
from .video_inputs import VAE_INPUT, check_video_size, prompt_inputs, video_frames

ANIMATE_TYPE = "POSEANIMATE_WAN_ANIMATE"
CATEGORY = "PoseAnimate/Wan2.2-Animate"


@dataclass(frozen=True)
class AnimateHandle:
    """Wan2.2-Animate's modules (pose embedding, motion and face encoders, face blocks) and the DiT's config."""

    modules: AnimateModules
    config: WanDiTConfig


class PoseAnimateWanAnimateLoader:
    DESCRIPTION = ("Loads Wan2.2-Animate-14B (official shards, Comfy-Org's wan2.2_animate_14B bf16 / fp8 scaled "
                   "file): the DiT and its pose embedding, face motion encoder, face encoder and face blocks.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE, ANIMATE_TYPE)
    RETURN_NAMES = ("dit", "animate")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit_name": (host.list_model_files("diffusion_models"), {
                "tooltip": "Wan2.2-Animate-14B in ComfyUI/models/diffusion_models (e.g. "
                           "wan2.2_animate_14B_bf16.safetensors)."}),
            **dit_options(),
        }}

    def load(self, dit_name: str, weight_dtype: str, compute_dtype: str,
             attention: str) -> tuple[DiTHandle, AnimateHandle]:
        path = host.model_file("diffusion_models", dit_name)
        storage, compute = storage_dtype_from_name(weight_dtype), COMPUTE_DTYPES[compute_dtype]
        dit, modules, info = load_wan_animate(path, storage_dtype=storage, device=host.offload_device(),
                                              operations=dit_operations(path, storage, compute), compute_dtype=compute)
        # a child of the DiT: the host's model manager loads, offloads and frees it with the DiT
        dit.add_module("animate_modules", modules.eval())
        return dit_handle(dit, info, attention), AnimateHandle(modules, info.config)


class PoseAnimateRelightLoRA:
    DESCRIPTION = ("Adds Wan2.2-Animate's relighting LoRA (relighting_lora.ckpt or "
                   "WanAnimate_relight_lora_fp16.safetensors) for replacement mode: the character takes the "
                   "scene's lighting. Refuses a LoRA that touches the face or modulation layers.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE,)
    RETURN_NAMES = ("dit",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit": (DIT_TYPE, {"tooltip": "From Load Wan2.2-Animate (PoseAnimate)."}),
            "animate": (ANIMATE_TYPE, {"tooltip": "From Load Wan2.2-Animate (PoseAnimate)."}),
            "lora_name": (host.list_model_files("loras"), {"tooltip": "The relighting LoRA in ComfyUI/models/loras."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                   "tooltip": "1.0 is what it was trained with."}),
            "enabled": ("BOOLEAN", {"default": True, "tooltip": "Off passes the model through (animation mode "
                                                               "does not use the relighting LoRA)."}),
        }}

    def apply(self, dit: DiTHandle, animate: AnimateHandle, lora_name: str, strength: float,
              enabled: bool) -> tuple[DiTHandle]:
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of Load Wan2.2-Animate (PoseAnimate)")
        if not enabled or strength == 0.0:
            return (dit,)
        modules = animate.modules if isinstance(animate, AnimateHandle) else None
        lora = load_relight_lora(host.model_file("loras", lora_name), dit.model, modules)
        return (with_lora(dit, lora, strength),)


class PoseAnimatePoseMask:
    DESCRIPTION = ("A person mask from the poses, for replacement mode without a segmenter: the hull of the "
                   "person's keypoints, grown and coarsened as Wan2.2-Animate's preprocessing grows its masks. "
                   "A segmenter's MASK (SAM2, ...) is more exact.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    FUNCTION = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "poses": (POSE_KEYPOINT, {"tooltip": "The driving video's poses (not retargeted)."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 8192, "tooltip": "Mask width; 0: the poses' canvas."}),
            "height": ("INT", {"default": 0, "min": 0, "max": 8192, "tooltip": "Mask height; 0: the poses' canvas."}),
            "person_index": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "Whose body, per frame."}),
            "dilation_iterations": ("INT", {"default": 3, "min": 0, "max": 20,
                                            "tooltip": "Growth of the hull; the reference uses 3."}),
            "dilation_kernel": ("INT", {"default": 7, "min": 1, "max": 63, "tooltip": "Growth kernel; the reference "
                                                                                      "uses 7."}),
            "grid_columns": ("INT", {"default": 1, "min": 1, "max": 64,
                                     "tooltip": "Coarsening grid; 1x1 fills the grown bounding box."}),
            "grid_rows": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Coarsening grid rows."}),
        }}

    def mask(self, poses, width: int, height: int, person_index: int, dilation_iterations: int,
             dilation_kernel: int, grid_columns: int, grid_rows: int) -> tuple[torch.Tensor]:
        frames = poses_in(poses, "poses")
        size = (height or frames[0].height, width or frames[0].width)
        masks = pose_mask(frames, size, person_index, iterations=dilation_iterations, kernel=dilation_kernel,
                          w_len=grid_columns, h_len=grid_rows)
        return (torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)),)


class PoseAnimateWanAnimate:
    DESCRIPTION = ("Wan2.2-Animate: animates the reference with the driving poses and face (animation mode), or "
                   "puts the reference into the driving video (replacement mode: connect background_video and "
                   "person_mask, and add the relighting LoRA). Long videos run as chained clips of 77 frames, each "
                   "guided by the last frames of the one before; returns the decoded frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "animate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit": (DIT_TYPE, {"tooltip": "From Load Wan2.2-Animate (or after the relighting LoRA)."}),
            "animate": (ANIMATE_TYPE, {"tooltip": "From Load Wan2.2-Animate (PoseAnimate)."}),
            "vae": VAE_INPUT,
            **prompt_inputs(),
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIP Vision Encode of the reference image."}),
            "reference_image": ("IMAGE", {"tooltip": "The character, at the video's size (same aspect ratio)."}),
            "pose_video": ("IMAGE", {"tooltip": "Retargeted poses rendered with Render Poses style wan_animate, at "
                                                "the video's size (multiples of 16)."}),
            "clip_frames": ("INT", {"default": ANIMATE_CLIP_LEN, "min": 5, "max": 161, "step": 4,
                                    "tooltip": "Frames per clip, 4k+1; 77 is what Wan2.2-Animate was trained "
                                               "with. Longer videos are chained clips."}),
            "refert_num": ([str(n) for n in ANIMATE_REFERT_NUMS], {"default": "1",
                           "tooltip": "Frames of the previous clip that guide the next (1 or 5, as trained)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Noise seed; clip i uses seed + i."}),
            "steps": ("INT", {"default": DEFAULT_STEPS, "min": 1, "max": 200, "tooltip": "Steps per clip (20)."}),
            "cfg": ("FLOAT", {"default": DEFAULT_GUIDANCE, "min": 1.0, "max": 20.0, "step": 0.1,
                              "tooltip": "Guidance; 1.0 (no CFG) is the reference's default and twice as fast."}),
            "shift": ("FLOAT", {"default": DEFAULT_SHIFT, "min": 0.0, "max": 20.0, "step": 0.1,
                                "tooltip": "Flow-matching sigma shift (5.0)."}),
            "scheduler": (list(SCHEDULER_NAMES), {"default": DEFAULT_SOLVER, "tooltip": "unipc: Wan's default."}),
            "pose_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Multiplies the pose embedding."}),
            "face_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Multiplies the face blocks' output (expression)."}),
            "no_face_frames": (list(NO_FACE_POLICIES), {"default": "nearest",
                               "tooltip": "Frames where face_poses show no face: the nearest frame's face crop, "
                                          "or blank (no expression)."}),
        }, "optional": {
            "face_video": ("IMAGE", {"tooltip": "Face crops of the driving video (Face Crops, 512x512), one per "
                                                "frame. Left out: no expression transfer."}),
            "face_poses": (POSE_KEYPOINT, {"tooltip": "The driving poses the face crops came from, to find frames "
                                                      "without a face (no_face_frames)."}),
            "background_video": ("IMAGE", {"tooltip": "Replacement mode: the driving video itself (the person is "
                                                      "blacked out with person_mask)."}),
            "person_mask": ("MASK", {"tooltip": "Replacement mode: 1 on the person to replace, per frame (a "
                                                "segmenter's, or Pose Mask)."}),
        }}

    def animate(self, dit: DiTHandle, animate: AnimateHandle, vae: Any, positive: Any, negative: Any,
                clip_vision_output: Any, reference_image: torch.Tensor, pose_video: torch.Tensor, clip_frames: int,
                refert_num: str,
                seed: int, steps: int, cfg: float, shift: float, scheduler: str, pose_strength: float,
                face_strength: float, no_face_frames: str, face_video: torch.Tensor | None = None,
                face_poses: Any = None, background_video: torch.Tensor | None = None,
                person_mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        if not isinstance(animate, AnimateHandle):
            raise InputError("animate", f"is a {type(animate).__name__}",
                             "the second output of Load Wan2.2-Animate (PoseAnimate)")
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of Load Wan2.2-Animate (PoseAnimate)")
        config = animate.config
        poses = video_frames(pose_video, "pose_video")
        total, height, width = (int(n) for n in poses.shape[:3])
        check_video_size(height, width, "pose_video")
        reference = fit_image(video_frames(reference_image, "reference_image")[:1], height, width,
                              "reference_image")[None]
        faces = None
        if face_video is not None:
            faces = _frames_like(video_frames(face_video, "face_video"), total, "face_video")
            present = None
            if face_poses is not None:
                frames = poses_in(face_poses, "face_poses")
                if len(frames) != total:
                    raise InputError("face_poses", f"have {len(frames)} frames for {total} pose frames",
                                     "the poses the face crops were cut from")
                present = face_presence(frames)
            faces = fill_missing_faces(faces, present, no_face_frames)
        background = mask = None
        if (background_video is None) != (person_mask is None):
            missing = "person_mask" if person_mask is None else "background_video"
            raise InputError(missing, "is missing: replacement mode needs both background_video and person_mask",
                             "both (replacement) or neither (animation)")
        if background_video is not None:
            background = _frames_like(video_frames(background_video, "background_video"), total, "background_video")
            mask = _mask_like(person_mask, total, height, width)
            if tuple(background.shape[1:3]) != (height, width):
                raise InputError("background_video", f"is {background.shape[2]}x{background.shape[1]}",
                                 f"the pose video's size {width}x{height}")
            background = background * (1.0 - mask[..., None])  # the person blacked out, as the reference does
        encoder = video_vae(vae)
        bar = host.Progress(1)
        try:
            with running_dit(dit) as model:
                images = animate_video(
                    model, animate.modules, encoder.encode, encoder.decode, reference, poses,
                    *prompt_embeddings(positive, negative, config.text_dim),
                    image_embeddings(clip_vision_output, config.image_embed_dim),
                    make_scheduler(scheduler, steps, shift), cfg, seed, face_frames=faces, background=background,
                    person_mask=mask, refert_num=int(refert_num), clip_len=clip_frames, pose_strength=pose_strength,
                    face_strength=face_strength, progress=lambda done, total_: _advance(bar, done, total_))
        finally:
            host.free_memory()
        return (images,)


def _advance(bar: host.Progress, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.current)


def _frames_like(frames: torch.Tensor, total: int, input_name: str) -> torch.Tensor:
    if frames.shape[0] < total:
        raise InputError(input_name, f"has {frames.shape[0]} frames", f"one per pose frame ({total})")
    return frames[:total].float().cpu()


def _mask_like(mask: torch.Tensor, total: int, height: int, width: int) -> torch.Tensor:
    if not torch.is_tensor(mask) or mask.dim() not in (2, 3):
        raise InputError("person_mask", f"has shape {list(getattr(mask, 'shape', []))}", "a MASK [frames, H, W]")
    mask = mask if mask.dim() == 3 else mask[None]
    if mask.shape[0] == 1 and total > 1:
        mask = mask.expand(total, -1, -1)
    if mask.shape[0] < total or tuple(mask.shape[1:]) != (height, width):
        raise InputError("person_mask", f"is {mask.shape[0]} frames of {mask.shape[2]}x{mask.shape[1]}",
                         f"{total} frames of {width}x{height}, like the pose video")
    return mask[:total].float().cpu()


NODES = {"PoseAnimateWanAnimateLoader": (PoseAnimateWanAnimateLoader, "Load Wan2.2-Animate (PoseAnimate)"),
         "PoseAnimateRelightLoRA": (PoseAnimateRelightLoRA, "Wan2.2-Animate Relighting LoRA (PoseAnimate)"),
         "PoseAnimatePoseMask": (PoseAnimatePoseMask, "Pose Mask (PoseAnimate)"),
         "PoseAnimateWanAnimate": (PoseAnimateWanAnimate, "Wan2.2-Animate (PoseAnimate)")}
