"""Wan2.2-Animate nodes: load the model, add the relighting LoRA, make a person mask from poses, animate.

Thin: checks, core calls (methods/wan_animate/), handles out. The animate
node builds an ``AnimateRequest``; the core holds the mode logic
(replacement checks, background masking). Animation runs clip by clip, each
clip guided by the previous clip's decoded frames, so the animate node
samples *and* decodes and returns IMAGE frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import host, memory_budget as mb
from ..errors import InputError
from ..host_types import image_embeddings, prompt_embeddings, video_vae
from ..methods.wan_animate import (DEFAULT_GUIDANCE, DEFAULT_SHIFT, DEFAULT_SOLVER, DEFAULT_STEPS, NO_FACE_POLICIES,
                                   AnimateModules, AnimateRequest, clip_progress_text, load_relight_lora,
                                   load_wan_animate, pose_mask)
from ..methods.wan_animate import animate as run_animate  # the node's own input is called "animate"
from ..models.checkpoint import storage_dtype_from_name
from ..models.wan.config import WanDiTConfig
from ..sampling.schedulers import DEFAULT_STEP_LIST, SCHEDULER_NAMES
from ..methods.wan_animate.plan import ANIMATE_CLIP_LEN, ANIMATE_REFERT_NUMS
from .dit_loaders import (COMPUTE_DTYPES, DIT_TYPE, DiTHandle, dit_handle, dit_operations, dit_options,
                          with_lora)
from ..pose.people import select_people
from .pose_io import POSE_KEYPOINT, poses_in
from ..sampling.step_cache import check_cache_fits, make_step_cache
from .sampler_nodes import CACHE_INPUTS, SCHEDULER_TOOLTIP, SPEED_INPUTS, STEP_LIST_INPUT, prepare_speed, running_dit
from .video_inputs import VAE_INPUT, check_video_size, prompt_inputs, video_frames
from ..models.checkpoint import file_kind
from .model_lists import model_choices

log = logging.getLogger(__name__)

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
            "dit_name": (model_choices("diffusion_models", file_kind.WAN_ANIMATE), {
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
            "lora_name": (model_choices("loras", file_kind.LORA, "relight"),
                          {"tooltip": "The relighting LoRA in ComfyUI/models/loras."}),
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
            "person_index": ("INT", {"default": 0, "min": 0, "max": 64,
                             "tooltip": "Whose body: the person_index-th person tracked through the video "
                                        "(0: the first person of the first frame)."}),
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
        if person_index < 0:
            raise InputError("person_index", f"is {person_index}", "0 or more")
        frames = select_people(frames, "index", person_index)       # the same person in every frame
        masks = pose_mask(frames, size, 0, iterations=dilation_iterations, kernel=dilation_kernel,
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
            "scheduler": (list(SCHEDULER_NAMES), {"default": DEFAULT_SOLVER,
                          "tooltip": "unipc: Wan's default. " + SCHEDULER_TOOLTIP}),
            "pose_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Multiplies the pose embedding."}),
            "face_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Multiplies the face blocks' output (expression)."}),
            "no_face_frames": (list(NO_FACE_POLICIES), {"default": "nearest",
                               "tooltip": "Frames where face_poses show no face: the nearest frame's face crop, "
                                          "or blank (no expression)."}),
        }, "optional": {
            "step_list": STEP_LIST_INPUT,
            "face_video": ("IMAGE", {"tooltip": "Face crops of the driving video (Face Crops, 512x512), one per "
                                                "frame. Left out: no expression transfer."}),
            "face_poses": (POSE_KEYPOINT, {"tooltip": "The driving poses the face crops came from, to find frames "
                                                      "without a face (no_face_frames)."}),
            "background_video": ("IMAGE", {"tooltip": "Replacement mode: the driving video itself (the person is "
                                                      "blacked out with person_mask)."}),
            "person_mask": ("MASK", {"tooltip": "Replacement mode: 1 on the person to replace, per frame (a "
                                                "segmenter's, or Pose Mask)."}),
            **CACHE_INPUTS, **SPEED_INPUTS,
        }}

    def animate(self, dit: DiTHandle, animate: AnimateHandle, vae: Any, positive: Any, negative: Any,
                clip_vision_output: Any, reference_image: torch.Tensor, pose_video: torch.Tensor, clip_frames: int,
                refert_num: str,
                seed: int, steps: int, cfg: float, shift: float, scheduler: str, pose_strength: float,
                face_strength: float, no_face_frames: str, step_list: str = DEFAULT_STEP_LIST,
                face_video: torch.Tensor | None = None,
                face_poses: Any = None, background_video: torch.Tensor | None = None,
                person_mask: torch.Tensor | None = None, cache: str = "none", cache_threshold: float = 0.2,
                cache_start: int = -1, cache_end: int = -1, compile: str = "off",
                fp8_matmul: str = "auto") -> tuple[torch.Tensor]:
        if not isinstance(animate, AnimateHandle):
            raise InputError("animate", f"is a {type(animate).__name__}",
                             "the second output of Load Wan2.2-Animate (PoseAnimate)")
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of Load Wan2.2-Animate (PoseAnimate)")
        config = animate.config
        poses = video_frames(pose_video, "pose_video")
        check_video_size(int(poses.shape[1]), int(poses.shape[2]), "pose_video")
        context, negative_context = prompt_embeddings(positive, negative, config.text_dim)
        request = AnimateRequest(
            reference_image=video_frames(reference_image, "reference_image"), pose_video=poses, context=context,
            negative_context=negative_context, clip_fea=image_embeddings(clip_vision_output, config.image_embed_dim),
            face_video=_optional_frames(face_video, "face_video"),
            face_poses=None if face_poses is None else poses_in(face_poses, "face_poses"),
            no_face_frames=no_face_frames, background_video=_optional_frames(background_video, "background_video"),
            person_mask=person_mask, clip_frames=clip_frames, refert_num=int(refert_num), seed=seed, steps=steps,
            cfg=cfg, shift=shift, scheduler=scheduler, step_list=step_list, pose_strength=pose_strength,
            face_strength=face_strength)
        _check_memory(dit, vae, poses, clip_frames, background_video is not None)
        inputs = request.prepare()  # the mode logic: bad inputs stop here, before the DiT loads
        step_cache = make_step_cache(cache, cache_threshold, None if cache_start < 0 else cache_start,
                                     None if cache_end < 0 else cache_end)
        check_cache_fits(step_cache, request.make_scheduler().steps, scheduler)
        bar = host.Progress(request.total_steps())
        encoder = video_vae(vae)
        try:
            with running_dit(dit) as model:
                prepare_speed(model, compile, fp8_matmul)
                images = run_animate(model, animate.modules, encoder.encode, encoder.decode, inputs,
                                     clip_progress=lambda *at: _report(bar, *at), cache=step_cache)
                if step_cache is not None:
                    log.info("PoseAnimate %s", step_cache.report())
        finally:
            host.free_memory()
        return (images,)


def _check_memory(dit: DiTHandle, vae: Any, poses: torch.Tensor, clip_frames: int, replacement: bool) -> None:
    """Stop before the DiT loads when the run would not fit: on the CPU the whole video's float32 frames (the
    pose video, the output, the decoded clip being written, and the background in replacement mode); on the
    device one clip's DiT block (its latent frames plus the reference latent frame) or one VAE chunk."""
    count, height, width = (int(n) for n in poses.shape[:3])
    copies = 4 if replacement else 3
    per_frame = mb.image_frames(1, height, width, copies=copies)
    mb.check_fits("pose_video", f"{count} frames at {width}x{height} (poses, output frames"
                  f"{', background' if replacement else ''})", per_frame * count, "cpu",
                  lambda budget: mb.pixel_frames_fitting(per_frame, 0, budget))
    config, compute = dit.info.config, dit.model.compute_dtype
    latent_h, latent_w = height // 8, width // 8
    clip_latents = (int(clip_frames) - 1) // 4 + 1 + 1  # the clip's latent frames and the reference's
    per_latent = mb.dit_window(mb.dit_tokens(1, latent_h, latent_w), config.dim, config.ffn_dim, compute)
    dtype = getattr(getattr(vae, "model", None), "dtype", None)
    vae_peak = mb.vae_step(height, width, dtype if isinstance(dtype, torch.dtype) else torch.float32,
                           getattr(vae, "tile", None), overlap=getattr(vae, "overlap", 8))

    def fitting(budget: int) -> str:
        if vae_peak > budget:
            return "tiles (Load Wan VAE's tile_size) or a smaller size"
        latents = budget // max(per_latent, 1) - 1
        if latents >= 2:
            return f"clip_frames at most {4 * (latents - 1) + 1} at this size, or a smaller size"
        return "a smaller size (one clip frame alone does not fit)"
    mb.check_fits("clip_frames", f"clips of {clip_frames} frames at {width}x{height} (one DiT block over "
                  f"{clip_latents} latent frames, one VAE chunk)", max(per_latent * clip_latents, vae_peak),
                  host.compute_device(), fitting)


def _optional_frames(images: torch.Tensor | None, input_name: str) -> torch.Tensor | None:
    return None if images is None else video_frames(images, input_name)


def _report(bar: host.Progress, step: int, steps: int, clip: int, clips: int) -> None:
    bar.update(1)
    host.progress_text(clip_progress_text(step, steps, clip, clips))


NODES = {"PoseAnimateWanAnimateLoader": (PoseAnimateWanAnimateLoader, "Load Wan2.2-Animate (PoseAnimate)"),
         "PoseAnimateRelightLoRA": (PoseAnimateRelightLoRA, "Wan2.2-Animate Relighting LoRA (PoseAnimate)"),
         "PoseAnimatePoseMask": (PoseAnimatePoseMask, "Pose Mask (PoseAnimate)"),
         "PoseAnimateWanAnimate": (PoseAnimateWanAnimate, "Wan2.2-Animate (PoseAnimate)")}
