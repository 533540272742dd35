"""RealisDance-DiT nodes: load its transformer, make its reference tokens, build its conditioning.

Thin: checks, core calls (methods/realisdance/), handles out. Sampling is
the pack's one sampler node (scheduler ``euler_diffusers``, cfg 2.0, 40 steps
reproduce the reference pipeline); decoding is any Wan 2.1 VAE decode node.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from .. import host, memory_budget as mb
from ..errors import InputError
from ..host_types import image_embeddings, prompt_embeddings, video_vae
from ..methods.realisdance import (RealisDanceConditioning, RealisDanceLayers, RopeShifts,
                                   build_realisdance_conditioning, grey_video, load_realisdance, reference_grid,
                                   resize_reference_image)
from ..models.checkpoint import storage_dtype_from_name
from ..models.wan.config import WanDiTConfig
from .dit_loaders import COMPUTE_DTYPES, DIT_TYPE, DiTHandle, dit_handle, dit_operations, dit_options
from .sampler_nodes import CONDITIONING_TYPE
from .unianimate_nodes import gb_tile
from .video_inputs import (VAE_INPUT, check_frame_count, check_video_size, prompt_inputs, video_frames,
                           whole_video_frames)
from ..models.checkpoint import file_kind
from .model_lists import model_choices

log = logging.getLogger(__name__)

REALISDANCE_TYPE = "POSEANIMATE_REALISDANCE"
REFERENCE_TYPE = "POSEANIMATE_REALISDANCE_REFERENCE"
CATEGORY = "PoseAnimate/RealisDance-DiT"
SHIFT_CHOICES = ("model", "on", "off")  # per RoPE axis: the loaded model's switch, or forced


@dataclass(frozen=True)
class RealisDanceHandle:
    """RealisDance-DiT's extra layers and RoPE switches, with the DiT config they belong to."""

    layers: RealisDanceLayers
    shifts: RopeShifts
    config: WanDiTConfig


@dataclass(frozen=True)
class ReferenceTokens:
    """The reference image as RealisDance appends it: its latent (and the unconditional one) and where
    its tokens sit in RoPE."""

    latent: torch.Tensor        # [1, 16, 1, hr, wr], model space
    zero_latent: torch.Tensor   # VAE of a mid-grey image of the same size (the unconditional reference)
    shifts: RopeShifts
    size: tuple[int, int]       # (height, width) in pixels


class PoseAnimateRealisDanceLoader:
    DESCRIPTION = ("Loads RealisDance-DiT's transformer (the diffusers folder's transformer/ files from "
                   "theFoxofSky/RealisDance-DiT, or a single-file repack): the Wan 2.1 I2V 14B DiT plus its pose "
                   "and reference layers, and the RoPE shift switches of its config.json.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE, REALISDANCE_TYPE)
    RETURN_NAMES = ("dit", "realisdance")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit_name": (model_choices("diffusion_models", file_kind.REALISDANCE), {
                "tooltip": "RealisDance-DiT in ComfyUI/models/diffusion_models: its transformer/ folder (pick "
                           "diffusion_pytorch_model.safetensors.index.json or a shard) or a single-file repack."}),
            **dit_options(),
        }}

    def load(self, dit_name: str, weight_dtype: str, compute_dtype: str,
             attention: str) -> tuple[DiTHandle, RealisDanceHandle]:
        path = host.model_file("diffusion_models", dit_name)
        storage, compute = storage_dtype_from_name(weight_dtype), COMPUTE_DTYPES[compute_dtype]
        loaded = load_realisdance(path, storage_dtype=storage, device=host.offload_device(),
                                  operations=dit_operations(path, storage, compute), compute_dtype=compute)
        if loaded.shifts_from == "class defaults":
            log.warning("RealisDance-DiT '%s' has no config.json: RoPE shifts default to all on; if your release "
                        "shifts only height and width, set shift_frames to off on the reference node", dit_name)
        # a child of the DiT: the host's model manager loads, offloads and frees it with the DiT
        loaded.dit.add_module("realisdance_layers", loaded.layers.eval())
        return (dit_handle(loaded.dit, loaded.info, attention),
                RealisDanceHandle(loaded.layers, loaded.shifts, loaded.info.config))


class PoseAnimateRealisDanceReference:
    DESCRIPTION = ("Reference concatenation with shifted RoPE: the reference image keeps its own aspect at the "
                   "video's area, goes through the VAE, and its tokens are appended to the video's with rotary "
                   "positions shifted past the video's (per axis), so attention tells them apart.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (REFERENCE_TYPE,)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        shift = {"default": "model", "tooltip": ""}
        return {"required": {
            "realisdance": (REALISDANCE_TYPE, {"tooltip": "From Load RealisDance-DiT (PoseAnimate)."}),
            "vae": VAE_INPUT,
            "reference_image": ("IMAGE", {"tooltip": "The character, any size and aspect."}),
            "width": ("INT", {"default": 768, "min": 16, "max": 4096, "step": 16,
                              "tooltip": "The video's width; the reference is scaled to the video's area."}),
            "height": ("INT", {"default": 768, "min": 16, "max": 4096, "step": 16,
                               "tooltip": "The video's height."}),
            "shift_frames": (list(SHIFT_CHOICES), dict(shift, tooltip="Reference tokens at frame 81+ (on) or "
                             "from frame 0 (off); model: the loaded model's switch.")),
            "shift_height": (list(SHIFT_CHOICES), dict(shift, tooltip="Reference rows after the video's last row "
                             "(on) or from row 0 (off); model: the loaded model's switch.")),
            "shift_width": (list(SHIFT_CHOICES), dict(shift, tooltip="Reference columns after the video's last "
                            "column (on) or from column 0 (off); model: the loaded model's switch.")),
        }}

    def encode(self, realisdance: RealisDanceHandle, vae: Any, reference_image: torch.Tensor, width: int,
               height: int, shift_frames: str, shift_height: str, shift_width: str) -> tuple[ReferenceTokens]:
        handle = _handle(realisdance)
        check_video_size(height, width, "width/height")
        image = video_frames(reference_image, "reference_image")[:1]
        ref_h, ref_w = reference_grid(height, width, int(image.shape[1]), int(image.shape[2]))
        encoder = video_vae(vae)
        latent = encoder.encode(resize_reference_image(image, ref_h, ref_w).clamp(0.0, 1.0))
        zero = encoder.encode(grey_video(1, ref_h, ref_w))
        s = handle.shifts
        shifts = RopeShifts(_switch(shift_frames, s.shift_f, "shift_frames"),
                            _switch(shift_height, s.shift_h, "shift_height"),
                            _switch(shift_width, s.shift_w, "shift_width"))
        return (ReferenceTokens(latent, zero, shifts, (ref_h, ref_w)),)


class PoseAnimateRealisDanceConditioning:
    DESCRIPTION = ("RealisDance-DiT's conditioning: the two pose-condition videos (an SMPL-CS render and a HaMeR "
                   "hand render, made with other tools; the pack's own Render Poses output works as a stand-in on "
                   "both inputs, with weaker results), the reference tokens, the prompt and CLIP features. The video "
                   "takes the pose videos' size.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CONDITIONING_TYPE,)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "realisdance": (REALISDANCE_TYPE, {"tooltip": "From Load RealisDance-DiT (PoseAnimate)."}),
            "reference": (REFERENCE_TYPE, {"tooltip": "From RealisDance Reference (PoseAnimate)."}),
            "vae": VAE_INPUT,
            **prompt_inputs("RealisDance-DiT's unconditional prompt is the empty one: CLIP Text Encode of an "
                            "empty text."),
            "smpl_video": ("IMAGE", {"tooltip": "SMPL-CS render of the driving motion (from an SMPL tool, not this "
                                                "pack); Render Poses output as a stand-in."}),
            "hamer_video": ("IMAGE", {"tooltip": "HaMeR hand render of the driving motion (from HaMeR, not this "
                                                 "pack); Render Poses output as a stand-in."}),
            "frames": ("INT", {"default": 81, "min": 0, "max": 100001,
                               "tooltip": "Video length, 4k+1; 0: all the pose frames (rounded down to 4k+1). "
                                          "Longer than 81 is made in windows by the sampler (use its 'linear' or "
                                          "'uniform' blending: RealisDance has no reference frame in the video)."}),
            "pose_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Multiplies the pose tokens."}),
        }, "optional": {
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIP Vision Encode (clip_vision_h, crop none) "
                                                                     "of the reference image."}),
            "negative_clip_vision_output": ("CLIP_VISION_OUTPUT", {
                "tooltip": "CLIP Vision Encode of a mid-grey image (the reference's unconditional branch). Left "
                           "out: the reference's features are used for both branches."}),
        }}

    def build(self, realisdance: RealisDanceHandle, reference: ReferenceTokens, vae: Any, positive: Any,
              negative: Any, smpl_video: torch.Tensor, hamer_video: torch.Tensor, frames: int, pose_strength: float,
              clip_vision_output: Any = None,
              negative_clip_vision_output: Any = None) -> tuple[RealisDanceConditioning]:
        handle = _handle(realisdance)
        if not isinstance(reference, ReferenceTokens):
            raise InputError("reference", f"is a {type(reference).__name__}",
                             "the output of RealisDance Reference (PoseAnimate)")
        config = handle.config
        context, negative_context = prompt_embeddings(positive, negative, config.text_dim)
        clip = image_embeddings(clip_vision_output, config.image_embed_dim)
        negative_clip = clip
        if clip is not None and negative_clip_vision_output is not None:
            negative_clip = image_embeddings(negative_clip_vision_output, config.image_embed_dim,
                                             "negative_clip_vision_output")
        elif clip is not None:
            log.info("negative_clip_vision_output not given: the reference's CLIP features serve both branches")
        smpl, hamer = video_frames(smpl_video, "smpl_video"), video_frames(hamer_video, "hamer_video")
        if smpl.shape[1:] != hamer.shape[1:]:
            raise InputError("hamer_video", f"is {hamer.shape[2]}x{hamer.shape[1]} pixels",
                             f"the smpl_video's size {smpl.shape[2]}x{smpl.shape[1]}")
        count = frames or whole_video_frames(min(smpl.shape[0], hamer.shape[0]))
        check_frame_count(count, "frames")
        for name, video in (("smpl_video", smpl), ("hamer_video", hamer)):
            if video.shape[0] < count:
                raise InputError(name, f"has {video.shape[0]} frames", f"at least the {count} frames asked for")
        height, width = int(smpl.shape[1]), int(smpl.shape[2])
        check_video_size(height, width, "smpl_video")
        streamed = getattr(vae, "is_pack_vae", False)
        _check_memory(vae, count, height, width, streamed)
        encoder = video_vae(vae)
        pose = (encoder.encode(smpl[:count]), encoder.encode(hamer[:count]))
        # the pack's streamed VAE takes the grey video as one frame's view (flat in frames; the same values)
        grey = grey_video(1, height, width).expand(count, -1, -1, -1) if streamed else grey_video(count, height,
                                                                                                   width)
        empty = encoder.encode(grey)
        return (build_realisdance_conditioning(handle.layers, pose, reference.latent, context, negative_context,
                                               clip, negative_clip, reference.zero_latent, empty, reference.shifts,
                                               pose_strength),)


def _check_memory(vae: Any, count: int, height: int, width: int, streamed: bool) -> None:
    """Stop before allocating when the conditioning would not fit: on the CPU its latents (and, with the
    host's VAE, the grey video and the VAE's copy of its input, float32 frames), on the device one VAE chunk."""
    latent_frame = mb.realisdance_latents(5, height, width) - mb.realisdance_latents(1, height, width)
    per_frame = latent_frame // 4 + (0 if streamed else mb.image_frames(1, height, width, copies=2))
    fixed = mb.realisdance_latents(1, height, width)
    what = "latents" if streamed else "grey video, VAE input and latents"
    mb.check_fits("frames", f"{count} frames at {width}x{height} ({what})", fixed + per_frame * count, "cpu",
                  lambda budget: mb.pixel_frames_fitting(per_frame, fixed, budget))
    tile = getattr(vae, "tile", None)
    dtype = getattr(getattr(vae, "model", None), "dtype", None)
    vae_peak = mb.vae_step(height, width, dtype if isinstance(dtype, torch.dtype) else torch.float32, tile,
                           overlap=getattr(vae, "overlap", 8))
    mb.check_fits("smpl_video", f"encoding {count} frames at {width}x{height} (one VAE chunk)", vae_peak,
                  host.compute_device(),
                  lambda budget: f"tiles (Load Wan VAE's tile_size, about {gb_tile(budget, height, width)}) "
                                 "or a smaller size")


def _handle(realisdance: Any) -> RealisDanceHandle:
    if not isinstance(realisdance, RealisDanceHandle):
        raise InputError("realisdance", f"is a {type(realisdance).__name__}",
                         "the second output of Load RealisDance-DiT (PoseAnimate)")
    return realisdance


def _switch(choice: str, model_value: bool, input_name: str) -> bool:
    if choice not in SHIFT_CHOICES:
        raise InputError(input_name, f"is '{choice}'", f"one of {', '.join(SHIFT_CHOICES)}")
    return model_value if choice == "model" else choice == "on"


NODES = {"PoseAnimateRealisDanceLoader": (PoseAnimateRealisDanceLoader, "Load RealisDance-DiT (PoseAnimate)"),
         "PoseAnimateRealisDanceReference": (PoseAnimateRealisDanceReference,
                                             "RealisDance Reference, shifted RoPE (PoseAnimate)"),
         "PoseAnimateRealisDanceConditioning": (PoseAnimateRealisDanceConditioning,
                                                "RealisDance-DiT Conditioning (PoseAnimate)")}
