"""UniAnimate-DiT nodes: load its LoRA and pose encoders, build its conditioning.

Thin: checks, core calls (methods/unianimate/), handles out. Sampling is
the pack's one sampler node; decoding is any Wan 2.1 VAE decode node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import host, memory_budget as mb
from ..errors import InputError
from ..host_types import image_embeddings, prompt_embeddings, video_vae
from ..methods.images import fit_image
from ..methods.unianimate import (UniAnimateConditioning, UniAnimateEncoders, build_unianimate_conditioning,
                                  load_unianimate)
from ..models.wan.config import WanDiTConfig
from .dit_loaders import DIT_TYPE, DiTHandle, with_lora
from .sampler_nodes import CONDITIONING_TYPE
from .video_inputs import (VAE_INPUT, check_frame_count, check_video_size, prompt_inputs, video_frames,
                           whole_video_frames)
from ..models.checkpoint import file_kind
from .model_lists import model_choices

UNIANIMATE_TYPE = "POSEANIMATE_UNIANIMATE"

CATEGORY = "PoseAnimate/UniAnimate-DiT"
POSE_WINDOW_FRAMES = 81  # pixel frames of the sampler's default window (21 latent frames)
GRAY = 0.5  # the empty frames after the reference image: 0 in Wan's -1..1 pixel space


@dataclass(frozen=True)
class UniAnimateHandle:
    """UniAnimate's pose encoders, with the DiT config they were checked against."""

    encoders: UniAnimateEncoders
    config: WanDiTConfig


class PoseAnimateUniAnimateLoader:
    DESCRIPTION = ("Loads UniAnimate-DiT's file (UniAnimate-Wan2.1-14B-Lora-12000.ckpt or a .safetensors repack): "
                   "adds its LoRA to the Wan 2.1 I2V 14B DiT and returns its pose encoders.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE, UNIANIMATE_TYPE)
    RETURN_NAMES = ("dit", "unianimate")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit": (DIT_TYPE, {"tooltip": "Wan 2.1 I2V 14B (480p or 720p) from Load Wan DiT (PoseAnimate)."}),
            "unianimate_name": (model_choices("loras", file_kind.UNIANIMATE), {
                "tooltip": "UniAnimate-DiT's file in ComfyUI/models/loras (from huggingface ZheWang123/UniAnimate-DiT:"
                           " UniAnimate-Wan2.1-14B-Lora-12000.ckpt)."}),
            "lora_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                        "tooltip": "Strength of UniAnimate's LoRA; 1.0 is what it was trained with."}),
        }}

    def load(self, dit: DiTHandle, unianimate_name: str, lora_strength: float) -> tuple[DiTHandle, UniAnimateHandle]:
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of Load Wan DiT (PoseAnimate)")
        weights = load_unianimate(host.model_file("loras", unianimate_name), dit.model)
        encoders = weights.encoders.to(host.compute_device()).eval()
        return with_lora(dit, weights.lora, lora_strength), UniAnimateHandle(encoders, dit.info.config)


class PoseAnimateUniAnimateConditioning:
    DESCRIPTION = ("UniAnimate-DiT's conditioning: the reference image (through the VAE and CLIP vision), the "
                   "rendered driving poses (pose tokens) and the reference image's own rendered pose. The video "
                   "takes the pose frames' size; fewer pose frames than requested are padded with the last pose.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CONDITIONING_TYPE,)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "unianimate": (UNIANIMATE_TYPE, {"tooltip": "From Load UniAnimate-DiT (PoseAnimate)."}),
            "vae": VAE_INPUT,
            **prompt_inputs(),
            "reference_image": ("IMAGE", {"tooltip": "The character to animate; resized to the video's size (it "
                                                     "must have the same aspect ratio as the pose frames)."}),
            "pose_video": ("IMAGE", {"tooltip": "The driving poses, rendered with Render Poses style 'unianimate' "
                                                "at the video's size (width and height multiples of 16)."}),
            "reference_pose": ("IMAGE", {"tooltip": "The reference image's own pose, rendered the same way."}),
            "frames": ("INT", {"default": 81, "min": 0, "max": 100001, "step": 1,
                               "tooltip": "Video length in frames, 4k+1 (81 = one window). 0: all the pose frames "
                                          "(rounded down to 4k+1). Longer videos are made in overlapping windows "
                                          "by the sampler."}),
            "pose_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Multiplies the pose tokens; below 1 follows the pose more "
                                                   "loosely."}),
            "pose_start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Fraction of the steps after which the pose is applied."}),
            "pose_end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "Fraction of the steps after which the pose is no longer applied."}),
        }, "optional": {
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {
                "tooltip": "The reference image through CLIP Vision Encode (clip_vision_h, crop none); "
                           "needed by Wan 2.1 I2V."}),
        }}

    def build(self, unianimate: UniAnimateHandle, vae: Any, positive: Any, negative: Any,
              reference_image: torch.Tensor, pose_video: torch.Tensor, reference_pose: torch.Tensor, frames: int,
              pose_strength: float, pose_start: float, pose_end: float,
              clip_vision_output: Any = None) -> tuple[UniAnimateConditioning]:
        if not isinstance(unianimate, UniAnimateHandle):
            raise InputError("unianimate", f"is a {type(unianimate).__name__}",
                             "the second output of Load UniAnimate-DiT (PoseAnimate)")
        config = unianimate.config
        context, negative_context = prompt_embeddings(positive, negative, config.text_dim)
        clip = image_embeddings(clip_vision_output, config.image_embed_dim)
        pose_video = video_frames(pose_video, "pose_video")
        count = frames or whole_video_frames(int(pose_video.shape[0]))
        height, width = int(pose_video.shape[1]), int(pose_video.shape[2])
        check_video_size(height, width, "pose_video")
        check_frame_count(count, "frames")
        _check_memory(vae, count, height, width)
        reference = fit_image(reference_image[..., :3], height, width, "reference_image")
        latent = encode_reference_video(video_vae(vae), reference, count)
        return (build_unianimate_conditioning(
            unianimate.encoders, latent, reference_pose[..., :3], pose_video[..., :3], context, negative_context,
            clip, pose_strength, pose_start, pose_end, frames=count),)


def encode_reference_video(encoder: Any, reference: torch.Tensor, count: int) -> torch.Tensor:
    """The latent of the reference image followed by ``count - 1`` gray frames. The pack's streamed VAE takes
    the gray frames as one expanded view (no memory per frame: the conditioning stays flat in frames); the
    host's VAE takes the frames as one tensor."""
    height, width = int(reference.shape[-3]), int(reference.shape[-2])
    first = reference.reshape(1, height, width, 3).to(torch.float32)
    gray = torch.full((1, height, width, 3), GRAY, dtype=torch.float32).expand(count - 1, -1, -1, -1)
    if getattr(encoder, "is_pack_vae", False):
        return encoder.encode([first, gray])
    return encoder.encode(torch.cat([first, gray]))


def _check_memory(vae: Any, count: int, height: int, width: int) -> None:
    """Stop before allocating when the conditioning would not fit: on the CPU the VAE input and the padded
    pose video (float32 frames), on the device one VAE chunk and the pose encoder's activations."""
    streamed = getattr(vae, "is_pack_vae", False)  # the pack's VAE takes the gray frames as one view
    per_frame = mb.image_frames(1, height, width, copies=1 if streamed else 2)
    what = "pose video" if streamed else "VAE input and pose video"
    mb.check_fits("frames", f"{count} frames at {width}x{height} ({what})", per_frame * count,
                  "cpu", lambda budget: mb.pixel_frames_fitting(per_frame, 0, budget))
    tile = getattr(vae, "tile", None)
    dtype = getattr(getattr(vae, "model", None), "dtype", None) or torch.float32
    vae_peak = mb.vae_step(height, width, dtype if isinstance(dtype, torch.dtype) else torch.float32, tile,
                           overlap=getattr(vae, "overlap", 8))
    # the pose encoder runs at sampling, over one window's pose frames at a time (81 in the default window)
    window = min(count, POSE_WINDOW_FRAMES)
    pose_frame = mb.unianimate_pose_embedding(1, height, width) - mb.unianimate_pose_embedding(0, height, width)
    pose_fixed = mb.unianimate_pose_embedding(0, height, width)
    mb.check_fits("pose_video", f"encoding {count} frames at {width}x{height} (VAE chunk and pose encoder)",
                  max(vae_peak, pose_fixed + pose_frame * window), host.compute_device(),
                  lambda budget: mb.pixel_frames_fitting(pose_frame, pose_fixed, budget) if vae_peak <= budget
                  else f"tiles (Load Wan VAE's tile_size, about {gb_tile(budget, height, width)}) or a smaller size")


def gb_tile(budget: int, height: int, width: int) -> str:
    """A tile size whose VAE chunk fits ``budget`` (64 latent pixels when even that does not)."""
    tile = 128
    while tile > 16 and mb.vae_step(height, width, torch.float32, tile) > budget:
        tile //= 2
    return f"{tile}"


NODES = {"PoseAnimateUniAnimateLoader": (PoseAnimateUniAnimateLoader, "Load UniAnimate-DiT (PoseAnimate)"),
         "PoseAnimateUniAnimateConditioning": (PoseAnimateUniAnimateConditioning,
                                               "UniAnimate-DiT Conditioning (PoseAnimate)")}
