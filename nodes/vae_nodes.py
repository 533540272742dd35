"""The pack's Wan 2.1 VAE: load it, decode with it (streamed, optionally tiled).

Its handle works wherever the pack takes a VAE, beside the host's own VAE
(host_types.video_vae). Decoding streams one latent frame at a time into a
CPU IMAGE, so memory on the device does not grow with the video's length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import host, memory_budget as mb
from ..errors import InputError
from ..host_types import video_vae
from ..models.checkpoint.wan_vae import load_wan_vae
from ..models.wan.latent_space import to_model_space
from ..models.wan.vae import WanVAE
from ..models.wan.vae_streaming import decode_to_images, encode_images
from .video_inputs import VAE_INPUT
from ..models.checkpoint import file_kind
from .model_lists import model_choices

VAE_TYPE = "POSEANIMATE_VAE"
CATEGORY = "PoseAnimate/vae"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class PackVAE:
    """The pack's VAE as a host_types.VideoVAE: frames <-> model-space latents, streamed."""

    managed: Any
    model: WanVAE
    tile: int | None = None      # latent cells per tile side; None: whole frames
    overlap: int = 8             # latent cells shared by neighbouring tiles
    is_pack_vae: bool = True

    def _ready(self) -> WanVAE:
        return host.load_to_device(self.managed)

    def _tiling(self) -> dict:
        return {"tile": self.tile, "overlap": self.overlap if self.tile else None}

    def encode(self, frames: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """IMAGE frames, or a list of IMAGE batches taken as one video (expanded views stay views)."""
        frames = list(frames) if isinstance(frames, (list, tuple)) else frames[..., :3]
        return encode_images(self._ready(), frames, normalize=True, check_interrupt=host.check_interrupt,
                             **self._tiling())

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        # progress: the host's bar over latent frames x tiles (the streaming decoder's default)
        return decode_to_images(self._ready(), latent, normalized=True, check_interrupt=host.check_interrupt,
                                **self._tiling())


class PoseAnimateVAELoader:
    DESCRIPTION = ("Loads the Wan 2.1 VAE (Comfy-Org wan_2.1_vae.safetensors or the official Wan2.1_VAE.pth) for "
                   "streamed encode and decode: memory stays that of one latent frame (or tile) however long the "
                   "video.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (VAE_TYPE,)
    RETURN_NAMES = ("vae",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "vae_name": (model_choices("vae", file_kind.WAN_VAE),
                         {"tooltip": "The Wan 2.1 VAE in ComfyUI/models/vae."}),
            "dtype": (list(DTYPES), {"default": "bf16", "tooltip": "Weight and compute dtype; fp32 is exact but "
                                                                   "slower and twice the memory."}),
            "tile_size": ("INT", {"default": 0, "min": 0, "max": 512, "step": 8,
                                  "tooltip": "Spatial tiles of this many latent pixels (x8 image pixels); 0: whole "
                                             "frames. Tiles cut peak memory for 720p and above."}),
            "tile_overlap": ("INT", {"default": 8, "min": 2, "max": 64,
                                     "tooltip": "Latent pixels shared by neighbouring tiles, blended linearly."}),
        }}

    def load(self, vae_name: str, dtype: str, tile_size: int, tile_overlap: int) -> tuple[PackVAE]:
        if tile_size and tile_overlap >= tile_size:
            raise InputError("tile_overlap", f"{tile_overlap} is not smaller than tile_size {tile_size}",
                             f"an overlap below {tile_size}")
        model = load_wan_vae(host.model_file("vae", vae_name), dtype=DTYPES[dtype], device=host.offload_device(),
                             operations=host.operations(DTYPES[dtype], DTYPES[dtype]))
        return (PackVAE(host.manage(model.eval()), model, tile_size or None, tile_overlap),)


class PoseAnimateVAEDecode:
    DESCRIPTION = ("Decodes a Wan video LATENT to frames with the host's VAE or the pack's streamed one (which "
                   "hands frames to the CPU one latent frame at a time).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "samples": ("LATENT", {"tooltip": "A Wan 2.1 video latent (from Sample Animation)."}),
            "vae": VAE_INPUT,
        }}

    def decode(self, samples: dict, vae: Any) -> tuple[torch.Tensor]:
        latent = samples.get("samples") if isinstance(samples, dict) else None
        if not torch.is_tensor(latent) or latent.dim() != 5:
            raise InputError("samples", f"holds {type(latent).__name__} of shape "
                             f"{list(getattr(latent, 'shape', []))}", "a video LATENT [1, 16, frames, h, w]")
        frames, height, width = 4 * (int(latent.shape[2]) - 1) + 1, 8 * int(latent.shape[3]), 8 * int(latent.shape[4])
        per_frame = mb.image_frames(int(latent.shape[0]), height, width)
        mb.check_fits("samples", f"decoding {frames} frames at {width}x{height} (the IMAGE output)",
                      per_frame * frames, "cpu", lambda budget: mb.pixel_frames_fitting(per_frame, 0, budget))
        mb.check_fits("samples", f"decoding at {width}x{height} (one VAE chunk)",
                      mb.vae_step(height, width, torch.float32, getattr(vae, "tile", None),
                                  overlap=getattr(vae, "overlap", 8)), host.compute_device(),
                      lambda budget: "tiles: Load Wan VAE's tile_size (e.g. 64), or a smaller size")
        try:
            return (video_vae(vae).decode(to_model_space(latent)),)
        finally:
            host.free_memory()


NODES = {"PoseAnimateVAELoader": (PoseAnimateVAELoader, "Load Wan VAE (PoseAnimate)"),
         "PoseAnimateVAEDecode": (PoseAnimateVAEDecode, "Decode Wan Video (PoseAnimate)")}
