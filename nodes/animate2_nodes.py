"""Wan2.2-Animate-2 nodes: load the model, animate a reference with a driving video.

Thin: checks, core calls (methods/animate2/), handles out. Long videos run as chunks chained through their
last decoded frame, so the animate node samples *and* decodes and returns IMAGE frames.

Sizes: the driving video sets the output's length and size (width and height multiples of 16, else an
error naming the nearest sizes: resizing it silently would reframe the motion). A reference image of
another size is centre-cropped to the video's aspect and resized, with a log line (ComfyUI's node does the
same crop). A length that does not fill whole chunks is padded by ping-pong and cut back, with a log line.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from .. import host, memory_budget as mb
from ..models.checkpoint import file_kind
from .model_lists import model_choices
from ..errors import InputError
from ..host_types import image_embeddings, prompt_embeddings, text_context, video_vae
from ..methods.animate2 import STORAGES
from ..methods.animate2.conditioning import DEFAULT_GUIDANCE, DEFAULT_SHIFT, DEFAULT_STEPS, PoseWindow
from ..methods.animate2.pose_cache import storage_bytes
from ..methods.animate2.run import ANIMATE2_CHUNK_LEN, animate2_video, plan_chunks
from ..methods.animate2.weights import load_animate2
from ..models.checkpoint import storage_dtype_from_name
from ..sampling.schedulers import DEFAULT_STEP_LIST, SCHEDULER_NAMES, make_scheduler
from .dit_loaders import COMPUTE_DTYPES, DIT_TYPE, DiTHandle, dit_handle, dit_operations, dit_options
from .sampler_nodes import SCHEDULER_TOOLTIP, STEP_LIST_INPUT, running_dit
from .video_inputs import VAE_INPUT, check_video_size, prompt_inputs, video_frames

log = logging.getLogger(__name__)

CATEGORY = "PoseAnimate/Wan2.2-Animate-2"
CACHE_CHOICES = ("none",) + STORAGES
DEFAULT_SCHEDULER = "dpm++"  # the official pipeline's FlowDPMSolverMultistepScheduler


class PoseAnimateAnimate2Loader:
    DESCRIPTION = ("Loads Wan2.2-Animate-2 14B (wan_animate_2_bf16, its _distillation variant, Comfy-Org repacks "
                   "in bf16 or fp8 scaled). A file of another kind is refused, naming what it is.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE,)
    RETURN_NAMES = ("dit",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit_name": (model_choices("diffusion_models", file_kind.ANIMATE2), {
                "tooltip": "Wan2.2-Animate-2 in ComfyUI/models/diffusion_models (e.g. wan_animate_2_bf16."
                           "safetensors; the distilled one runs in 10 steps at cfg 1)."}),
            **dit_options(),
        }}

    def load(self, dit_name: str, weight_dtype: str, compute_dtype: str, attention: str) -> tuple[DiTHandle]:
        path = host.model_file("diffusion_models", dit_name)
        storage, compute = storage_dtype_from_name(weight_dtype), COMPUTE_DTYPES[compute_dtype]
        dit, info = load_animate2(path, storage_dtype=storage, device=host.offload_device(),
                                  operations=dit_operations(path, storage, compute), compute_dtype=compute)
        if info.distilled:
            log.info("%s: the distilled variant (10 steps, cfg 1.0)", dit_name)
        return (dit_handle(dit, info.checkpoint, attention),)


class PoseAnimateAnimate2:
    DESCRIPTION = ("Wan2.2-Animate-2: animates the reference with the motion of the driving video. The driving "
                   "video is the raw video (the model's own input: body, hands and face as filmed) or the pack's "
                   "rendered skeletons (retargeted to the reference, on a clean background). Long videos run as "
                   "chained chunks of 81 frames; returns the decoded frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "animate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit": (DIT_TYPE, {"tooltip": "From Load Wan2.2-Animate-2 (PoseAnimate)."}),
            "vae": VAE_INPUT,
            **prompt_inputs(),
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIP Vision Encode of the reference image."}),
            "reference_image": ("IMAGE", {"tooltip": "The character; resized to the driving video's size."}),
            "driving_video": ("IMAGE", {"tooltip": "The video whose motion is transferred: the raw frames, or "
                                                   "Render Poses output. Sets the output's length and size "
                                                   "(multiples of 16)."}),
            "chunk_frames": ("INT", {"default": ANIMATE2_CHUNK_LEN, "min": 5, "max": 161, "step": 4,
                                     "tooltip": "Frames per chunk, 4k+1 (81 as trained). Longer videos are "
                                                "chained chunks, each continuing the last frame of the one before."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Noise seed; chunk i uses seed + i."}),
            "steps": ("INT", {"default": DEFAULT_STEPS, "min": 1, "max": 200,
                              "tooltip": "Steps per chunk (20; the distilled model 10)."}),
            "cfg": ("FLOAT", {"default": DEFAULT_GUIDANCE, "min": 1.0, "max": 20.0, "step": 0.1,
                              "tooltip": "Guidance; 1.0 (no CFG) is the reference's default and the distilled "
                                         "model's."}),
            "shift": ("FLOAT", {"default": DEFAULT_SHIFT, "min": 0.0, "max": 20.0, "step": 0.1,
                                "tooltip": "Flow-matching sigma shift (5.0)."}),
            "scheduler": (list(SCHEDULER_NAMES), {"default": DEFAULT_SCHEDULER,
                          "tooltip": "dpm++: the official pipeline's. " + SCHEDULER_TOOLTIP}),
            "pose_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                        "tooltip": "Scales the driving video's values in every block's attention; "
                                                   "1.0 as trained."}),
            "pose_start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Fraction of the steps done when the driving video starts to act."}),
            "pose_end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "Fraction of the steps done when it stops (e.g. 0.7 keeps the "
                                              "choreography, loosens fine detail). Outside, steps run faster."}),
            "reference_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                             "tooltip": "Scales the reference frame's values: below 1 loosens "
                                                        "identity, above tightens it against drift."}),
            "pose_cache": (list(CACHE_CHOICES), {"default": "float32",
                           "tooltip": "Keep the driving video's branch across steps (it does not change): "
                                      "float32 exact, bfloat16 within 0.4% per value, int8 within 1/254 of each "
                                      "token's largest value; none recomputes it every step."}),
            "cache_device": (["cpu", "gpu"], {"default": "cpu",
                             "tooltip": "Where the cache lives: cpu (RAM, the safe choice) or gpu."}),
            "frame1_log_scale": ("FLOAT", {"default": 0.0, "min": -5.0, "max": 5.0, "step": 0.1,
                                 "tooltip": "Added to the attention scores of the first video frame (the continued "
                                            "frame in later chunks): -1.3 is the distilled model's official "
                                            "setting, 0 the base model's (ComfyUI has no such setting)."}),
        }, "optional": {
            "step_list": STEP_LIST_INPUT,
            "positive_pose": ("CONDITIONING", {"tooltip": "Prompt of the driving video's branch (its motion, not "
                                                          "the character). Default: positive."}),
            "clip_vision_output_pose": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIP of the driving video's first frame. "
                                                                          "Default: clip_vision_output."}),
        }}

    def animate(self, dit: DiTHandle, vae: Any, positive: Any, negative: Any, clip_vision_output: Any,
                reference_image: torch.Tensor, driving_video: torch.Tensor, chunk_frames: int, seed: int, steps: int,
                cfg: float, shift: float, scheduler: str, pose_strength: float, pose_start: float, pose_end: float,
                reference_strength: float, pose_cache: str, cache_device: str, frame1_log_scale: float = 0.0,
                step_list: str = DEFAULT_STEP_LIST,
                positive_pose: Any = None, clip_vision_output_pose: Any = None) -> tuple[torch.Tensor]:
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of Load Wan2.2-Animate-2 (PoseAnimate)")
        config = dit.info.config
        video = video_frames(driving_video, "driving_video")
        height, width = int(video.shape[1]), int(video.shape[2])
        check_video_size(height, width, "driving_video")
        window = PoseWindow(pose_start, pose_end)  # start after end: a clear error before anything loads
        plan = plan_chunks(int(video.shape[0]), chunk_frames)
        context, negative_context = prompt_embeddings(positive, negative, config.text_dim)
        clip_fea = image_embeddings(clip_vision_output, config.image_embed_dim)
        pose_context = None if positive_pose is None else text_context(positive_pose, "positive_pose",
                                                                        config.text_dim)
        pose_clip = None if clip_vision_output_pose is None else image_embeddings(
            clip_vision_output_pose, config.image_embed_dim, "clip_vision_output_pose")
        reference = fit_reference(video_frames(reference_image, "reference_image")[:1], height, width)
        storage = None if pose_cache == "none" else pose_cache
        device = host.compute_device() if cache_device == "gpu" else torch.device("cpu")
        _check_memory(dit, video, chunk_frames, storage, device)
        sched = make_scheduler(scheduler, steps, shift, step_list)
        bar = host.Progress(sched.steps * len(plan))
        encoder = video_vae(vae)
        try:
            with running_dit(dit) as model:
                images = animate2_video(
                    model, encoder.encode, encoder.decode, reference, video, context, negative_context, clip_fea,
                    sched, cfg, seed, pose_context=pose_context, pose_clip_fea=pose_clip, chunk_len=chunk_frames,
                    pose_strength=pose_strength, reference_strength=reference_strength, window=window,
                    cache_storage=storage, cache_device=device, frame1_log_scale=frame1_log_scale,
                    progress=lambda done, _total: bar.update(done - bar.current))
        finally:
            host.free_memory()
        return (images,)


def fit_reference(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The reference at the video's size: centre-cropped to its aspect, then area-resized (logged)."""
    h, w = int(image.shape[1]), int(image.shape[2])
    if (h, w) == (height, width):
        return image
    scale = max(height / h, width / w)
    crop_h, crop_w = min(h, round(height / scale)), min(w, round(width / scale))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    cropped = image[:, top:top + crop_h, left:left + crop_w].permute(0, 3, 1, 2).float()
    resized = F.interpolate(cropped, size=(height, width), mode="area" if crop_h >= height else "bilinear")
    log.info("reference_image: %dx%d centre-cropped to %dx%d and resized to the driving video's %dx%d",
             w, h, crop_w, crop_h, width, height)
    return resized.permute(0, 2, 3, 1).clamp(0.0, 1.0)


def _check_memory(dit: DiTHandle, video: torch.Tensor, chunk_frames: int, storage: str | None,
                  cache_device: torch.device) -> None:
    """Stop before the DiT loads when one chunk's DiT block (its frames, the reference slot and the pose
    stream's frames) or the pose cache would not fit."""
    config, compute = dit.info.config, dit.model.compute_dtype
    count, height, width = (int(n) for n in video.shape[:3])
    mb.check_fits("driving_video", f"{count} frames at {width}x{height} (input and output frames)",
                  mb.image_frames(count, height, width, copies=3), "cpu")
    latents = (int(chunk_frames) - 1) // 4 + 1
    tokens = mb.dit_tokens(1, height // 8, width // 8)
    block = mb.dit_window(tokens * (latents + 1), config.dim, config.ffn_dim, compute, extra_tokens=tokens * latents)
    mb.check_fits("chunk_frames", f"chunks of {chunk_frames} frames at {width}x{height} (one DiT block over "
                  f"{latents + 1} latent frames beside the driving video's {latents})", block, host.compute_device())
    if storage is not None:
        need = storage_bytes(tokens * latents, config.dim, config.num_layers, storage)
        mb.check_fits("pose_cache", f"the driving video's branch in {storage} ({config.num_layers} blocks x "
                      f"{tokens * latents} tokens)", need, cache_device,
                      lambda budget: "int8 or bfloat16, fewer chunk_frames, or pose_cache none")


NODES = {"PoseAnimateAnimate2Loader": (PoseAnimateAnimate2Loader, "Load Wan2.2-Animate-2 (PoseAnimate)"),
         "PoseAnimateAnimate2": (PoseAnimateAnimate2, "Wan2.2-Animate-2 (PoseAnimate)")}
