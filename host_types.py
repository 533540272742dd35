"""The host's values turned into the tensors the core takes.

Users encode prompts with ComfyUI's own umT5 (``CLIPLoader`` type ``wan`` ->
``CLIPTextEncode``: CONDITIONING), the reference image with its own CLIP
vision model (``CLIPVisionEncode``: CLIP_VISION_OUTPUT), and often load the
VAE with ``VAELoader`` (VAE). This module checks those objects and hands the
core plain tensors in the layouts it expects, so the core never sees a host
type. It imports nothing from ComfyUI: the objects come in as arguments, and
it reads only their public attributes.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

import torch

from .errors import InputError
from .models.wan.latent_space import LATENT_CHANNELS, to_model_space, to_vae_space

log = logging.getLogger(__name__)

UMT5_WIDTH = 4096       # Wan's text encoder (umT5-XXL) hidden size
UMT5_MAX_TOKENS = 512   # the DiT's text length
CLIP_TOKENS = 257       # CLIP ViT-H/14 at 224 px: class token + 16 x 16 patches
CLIP_WIDTH = 1280


# ---------------------------------------------------------------- text
def text_context(conditioning: Any, input_name: str = "positive", width: int = UMT5_WIDTH) -> torch.Tensor:
    """umT5 embeddings ``[1, tokens <= 512, width]`` from a host CONDITIONING.

    A CONDITIONING is a list of ``[tensor [B, tokens, width], options]``. The
    host's Wan text encoder zero-pads to 512 tokens, exactly what the DiT does
    with a shorter context, so the tensor is used as it is. Several entries
    (from Conditioning Combine) have no meaning for the Wan DiT: the first is
    used and the rest named in the log.
    """
    if torch.is_tensor(conditioning):
        context = conditioning
    else:
        if not isinstance(conditioning, (list, tuple)) or not conditioning:
            raise InputError(input_name, f"is a {type(conditioning).__name__}, not a CONDITIONING",
                             "the output of CLIP Text Encode with the Wan umT5 text encoder")
        entry = conditioning[0]
        if not isinstance(entry, (list, tuple)) or not entry or not torch.is_tensor(entry[0]):
            raise InputError(input_name, "is not a CONDITIONING list of [tensor, options]",
                             "the output of CLIP Text Encode with the Wan umT5 text encoder")
        if len(conditioning) > 1:
            log.warning("%s: %d conditionings were combined; the Wan DiT takes one, using the first",
                        input_name, len(conditioning))
        context = entry[0]
    if context.dim() == 2:
        context = context.unsqueeze(0)
    if context.dim() != 3 or context.shape[-1] != width:
        raise InputError(input_name, f"holds text embeddings of shape {tuple(context.shape)} "
                         f"(width {context.shape[-1]}), from another model family",
                         f"umT5-XXL embeddings [1, tokens, {width}]: load umt5_xxl with CLIPLoader type 'wan'")
    if context.shape[0] != 1:
        log.warning("%s: a batch of %d prompts; using the first", input_name, context.shape[0])
        context = context[:1]
    if context.shape[1] > UMT5_MAX_TOKENS:
        raise InputError(input_name, f"has {context.shape[1]} tokens",
                         f"at most {UMT5_MAX_TOKENS} tokens (shorten the prompt)")
    return context.float()


# ---------------------------------------------------------------- image
def clip_features(clip_vision_output: Any, input_name: str = "clip_vision_output",
                  width: int = CLIP_WIDTH) -> torch.Tensor:
    """CLIP ViT-H/14 penultimate-layer tokens ``[1, 257, width]`` from a host CLIP_VISION_OUTPUT (or a tensor)."""
    if torch.is_tensor(clip_vision_output):
        features = clip_vision_output
    else:
        features = getattr(clip_vision_output, "penultimate_hidden_states", None)
        if features is None and isinstance(clip_vision_output, dict):
            features = clip_vision_output.get("penultimate_hidden_states")
        if not torch.is_tensor(features):
            raise InputError(input_name, f"is a {type(clip_vision_output).__name__} without penultimate "
                             "hidden states", "the output of CLIP Vision Encode (clip_vision_h)")
    if features.dim() != 3 or features.shape[-1] != width or features.shape[1] != CLIP_TOKENS:
        raise InputError(input_name, f"holds image features of shape {tuple(features.shape)}",
                         f"CLIP ViT-H/14 features [1, {CLIP_TOKENS}, {width}]: load clip_vision_h with "
                         "CLIP Vision Loader, encode with crop 'none' or 'center'")
    return features[:1].float()


def prompt_embeddings(positive: Any, negative: Any, text_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(context, negative_context)`` for a DiT whose text width is ``text_width``."""
    return text_context(positive, "positive", text_width), text_context(negative, "negative", text_width)


def image_embeddings(clip_vision_output: Any, image_width: int | None,
                     input_name: str = "clip_vision_output") -> torch.Tensor | None:
    """CLIP features for a DiT with an image branch of ``image_width`` (None: no branch, nothing needed)."""
    if image_width is None:
        return None
    if clip_vision_output is None:
        raise InputError(input_name, "is missing: this Wan 2.1 image-to-video DiT needs the reference image's "
                         "CLIP vision features", "CLIP Vision Encode (clip_vision_h) of the reference image")
    return clip_features(clip_vision_output, input_name, image_width)


# ---------------------------------------------------------------- VAE
class VideoVAE(Protocol):
    """What the core needs from a video VAE: frames <-> model-space latents."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """IMAGE frames ``[N, H, W, 3]`` in 0..1 -> model-space latent ``[1, 16, 1 + (N-1)//4, H/8, W/8]``."""
        ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Model-space latent ``[1, 16, T, h, w]`` -> IMAGE frames ``[4(T-1)+1, 8h, 8w, 3]`` in 0..1, on the CPU."""
        ...


class HostVAE:
    """The host's VAE object (``VAELoader``) as a :class:`VideoVAE`, converting latent spaces at its edges."""

    def __init__(self, vae: Any):
        self.vae = vae

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return to_model_space(self.vae.encode(frames[..., :3]))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(to_vae_space(latent))
        return images.reshape(-1, *images.shape[-3:]).float().cpu()


def check_host_vae(vae: Any, input_name: str = "vae") -> HostVAE:
    """A host VAE that is a Wan 2.1 VAE, else a clear error."""
    channels, dims = getattr(vae, "latent_channels", None), getattr(vae, "latent_dim", None)
    if channels != LATENT_CHANNELS or dims != 3:
        what = f"a VAE with {channels} latent channels" + (" for images" if dims == 2 else "")
        hint = " (the Wan 2.2 VAE, for the 5B model)" if channels == 48 else ""
        raise InputError(input_name, f"is {what}{hint}",
                         "the Wan 2.1 VAE (wan_2.1_vae.safetensors), which the 14B models use")
    return HostVAE(vae)


def video_vae(vae: Any, input_name: str = "vae") -> VideoVAE:
    """The pack's own VAE handle or the host's VAE, as a :class:`VideoVAE`."""
    if hasattr(vae, "encode") and hasattr(vae, "decode") and getattr(vae, "is_pack_vae", False):
        return vae
    if hasattr(vae, "first_stage_model") or hasattr(vae, "latent_channels"):
        return check_host_vae(vae, input_name)
    raise InputError(input_name, f"is a {type(vae).__name__}",
                     "a VAE from Load VAE or from Load Wan VAE (PoseAnimate)")
