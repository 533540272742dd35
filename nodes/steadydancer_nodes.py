"""SteadyDancer nodes: load its transformer, build its conditioning.

Thin: checks, core calls (methods/steadydancer/), handles out. Sampling is the
pack's one sampler node (scheduler ``unipc``, cfg 5.0, shift 5 and 40-50
steps reproduce ``generate_dancer.py``; the pose guidance rides on the
conditioning); decoding is any Wan 2.1 VAE decode node. The pose video comes
from the pack's pose extraction, Retarget Poses (method ``steadydancer``) and
Render Poses, drawn at the reference image's size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from .. import host
from ..models.checkpoint import file_kind
from .model_lists import model_choices
from ..errors import InputError
from ..host_types import clip_features, image_embeddings, prompt_embeddings, video_vae
from ..methods.images import fit_image
from ..methods.steadydancer import SteadyDancerConditioning, SteadyDancerLayers, build_steadydancer_conditioning, \
    load_steadydancer
from ..methods.steadydancer.conditioning import (DEFAULT_POSE_END, DEFAULT_POSE_GUIDANCE, DEFAULT_POSE_START)
from ..models.checkpoint import storage_dtype_from_name
from ..models.wan.config import WanDiTConfig
from .dit_loaders import COMPUTE_DTYPES, DIT_TYPE, DiTHandle, dit_handle, dit_operations, dit_options
from .sampler_nodes import CONDITIONING_TYPE
from .video_inputs import VAE_INPUT, check_frame_count, check_video_size, prompt_inputs, video_frames, \
    whole_video_frames

log = logging.getLogger(__name__)

STEADYDANCER_TYPE = "POSEANIMATE_STEADYDANCER"
CATEGORY = "PoseAnimate/SteadyDancer"


@dataclass(frozen=True)
class SteadyDancerHandle:
    """SteadyDancer's condition modules with the DiT config they belong to."""

    layers: SteadyDancerLayers
    config: WanDiTConfig


class PoseAnimateSteadyDancerLoader:
    DESCRIPTION = ("Loads SteadyDancer's transformer (MCG-NJU/SteadyDancer-14B: its index.json and shards, or a "
                   "single-file repack such as Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ): the Wan 2.1 I2V 14B DiT "
                   "with its pose-condition modules.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE, STEADYDANCER_TYPE)
    RETURN_NAMES = ("dit", "steadydancer")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit_name": (model_choices("diffusion_models", file_kind.STEADYDANCER), {
                "tooltip": "SteadyDancer in ComfyUI/models/diffusion_models: the release's "
                           "diffusion_pytorch_model.safetensors.index.json (shards beside it) or a single file."}),
            **dit_options(),
        }}

    def load(self, dit_name: str, weight_dtype: str, compute_dtype: str,
             attention: str) -> tuple[DiTHandle, SteadyDancerHandle]:
        path = host.model_file("diffusion_models", dit_name)
        storage, compute = storage_dtype_from_name(weight_dtype), COMPUTE_DTYPES[compute_dtype]
        loaded = load_steadydancer(path, storage_dtype=storage, device=host.offload_device(),
                                   operations=dit_operations(path, storage, compute), compute_dtype=compute)
        # a child of the DiT: the host's model manager loads, offloads and frees it with the DiT
        loaded.dit.add_module("steadydancer_layers", loaded.layers.eval())
        return dit_handle(loaded.dit, loaded.info, attention), SteadyDancerHandle(loaded.layers, loaded.info.config)


class PoseAnimateSteadyDancerConditioning:
    DESCRIPTION = ("SteadyDancer's conditioning, image-to-video: the reference image is the first frame, the "
                   "pose video (Render Poses of the retargeted poses, at the reference's size) drives the motion. "
                   "An optional negative pose video (e.g. the driving poses before alignment) adds SteadyDancer's "
                   "pose guidance on part of the steps. The video takes the pose video's size.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CONDITIONING_TYPE,)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "steadydancer": (STEADYDANCER_TYPE, {"tooltip": "From Load SteadyDancer (PoseAnimate)."}),
            "vae": VAE_INPUT,
            **prompt_inputs("The negative prompt (SteadyDancer's text guidance, cfg on the sampler)."),
            "reference_image": ("IMAGE", {"tooltip": "The character: the video's first frame, resized to the pose "
                                                     "video's size (same aspect ratio)."}),
            "pose_video": ("IMAGE", {"tooltip": "The driving poses drawn at the video's size (Render Poses, style "
                                                "openpose, of Retarget Poses with method steadydancer)."}),
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIP Vision Encode (clip_vision_h, crop "
                                                                     "none) of the reference image."}),
            "frames": ("INT", {"default": 81, "min": 0, "max": 100001,
                               "tooltip": "Video length, 4k+1; 0: all the pose frames (rounded down to 4k+1). "
                                          "Longer than 81 is made in windows by the sampler."}),
            "pose_strength_spatial": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                                "tooltip": "Scales the spatial (per-frame) pose branch."}),
            "pose_strength_temporal": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                                 "tooltip": "Scales the temporal (across-frames) pose branch."}),
            "pose_cfg": ("FLOAT", {"default": DEFAULT_POSE_GUIDANCE, "min": 0.0, "max": 20.0, "step": 0.05,
                                   "tooltip": "Pose guidance scale (needs negative_pose_video); 0 turns it off."}),
            "pose_cfg_start": ("FLOAT", {"default": DEFAULT_POSE_START, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Pose guidance runs on steps i with start < i / steps < end."}),
            "pose_cfg_end": ("FLOAT", {"default": DEFAULT_POSE_END, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "See pose_cfg_start (SteadyDancer: 0.1 to 0.4)."}),
        }, "optional": {
            "negative_pose_video": ("IMAGE", {"tooltip": "Poses for the pose guidance's negative branch, as long as "
                                                         "the pose video (e.g. Render Poses of the unaligned poses)."}),
            "pose_clip_vision_output": ("CLIP_VISION_OUTPUT", {
                "tooltip": "CLIP Vision Encode of the first pose frame (SteadyDancer adds it to the reference's). "
                           "Left out: the reference's features alone."}),
        }}

    def build(self, steadydancer: SteadyDancerHandle, vae: Any, positive: Any, negative: Any,
              reference_image: torch.Tensor, pose_video: torch.Tensor, clip_vision_output: Any, frames: int,
              pose_strength_spatial: float, pose_strength_temporal: float, pose_cfg: float, pose_cfg_start: float,
              pose_cfg_end: float, negative_pose_video: torch.Tensor | None = None,
              pose_clip_vision_output: Any = None) -> tuple[SteadyDancerConditioning]:
        if not isinstance(steadydancer, SteadyDancerHandle):
            raise InputError("steadydancer", f"is a {type(steadydancer).__name__}",
                             "the second output of Load SteadyDancer (PoseAnimate)")
        config = steadydancer.config
        context, negative_context = prompt_embeddings(positive, negative, config.text_dim)
        clip = image_embeddings(clip_vision_output, config.image_embed_dim)
        pose_clip = None
        if pose_clip_vision_output is not None:
            pose_clip = clip_features(pose_clip_vision_output, "pose_clip_vision_output", config.image_embed_dim)
        pose = video_frames(pose_video, "pose_video")
        count = frames or whole_video_frames(pose.shape[0])
        check_frame_count(count, "frames")
        if pose.shape[0] < count:
            raise InputError("pose_video", f"has {pose.shape[0]} frames", f"at least the {count} frames asked for")
        height, width = int(pose.shape[1]), int(pose.shape[2])
        check_video_size(height, width, "pose_video")
        reference = fit_image(video_frames(reference_image, "reference_image")[:1], height, width, "reference_image")
        encoder = video_vae(vae)
        grey = torch.full((count - 1, height, width, 3), 0.5)
        image_latent = encoder.encode(torch.cat([reference[None].float(), grey], dim=0))
        pose_latent = encoder.encode(pose[:count])
        negative_latent = None
        if negative_pose_video is not None:
            negative_pose = video_frames(negative_pose_video, "negative_pose_video")
            if negative_pose.shape[0] < count:
                raise InputError("negative_pose_video", f"has {negative_pose.shape[0]} frames",
                                 f"at least the pose video's {count} frames (one negative pose per frame)")
            if negative_pose.shape[1:3] != pose.shape[1:3]:
                raise InputError("negative_pose_video", f"is {negative_pose.shape[2]}x{negative_pose.shape[1]} "
                                 "pixels", f"the pose video's size {width}x{height}")
            negative_latent = encoder.encode(negative_pose[:count])
        elif pose_cfg:
            log.info("SteadyDancer: no negative_pose_video, so no pose guidance (pose_cfg %.2f unused)", pose_cfg)
        return (build_steadydancer_conditioning(steadydancer.layers, context, negative_context, clip, pose_clip,
                                                image_latent, pose_latent, negative_latent, pose_strength_spatial,
                                                pose_strength_temporal, pose_cfg, pose_cfg_start, pose_cfg_end),)


NODES = {"PoseAnimateSteadyDancerLoader": (PoseAnimateSteadyDancerLoader, "Load SteadyDancer (PoseAnimate)"),
         "PoseAnimateSteadyDancerConditioning": (PoseAnimateSteadyDancerConditioning,
                                                 "SteadyDancer Conditioning (PoseAnimate)")}
