"""UniAnimate-DiT's two small pose encoders.

* ``dwpose_embedding`` turns the rendered pose video into one token per DiT
  patch: seven Conv3d (3 -> 16 -> ... -> 16 -> ``dim``) with SiLU between them,
  downsampling time by 4 and space by 16, so ``4k + 1`` pose frames (with the
  first one repeated three times in front, as the reference does: ``4k + 4``)
  become the ``k + 1`` latent frames at half the latent's height and width,
  exactly the DiT's patch grid. The tokens are *added* to the patch-embedded
  video tokens (:class:`~...models.wan.dit.DiTExtensions` ``added_tokens``).
* ``randomref_embedding_pose`` turns the pose of the reference image into a
  20-channel map at the latent's size (six Conv2d, three of them stride 2, SiLU
  between all but the last), which is added to the I2V condition ``y`` (4 mask
  + 16 latent channels) on every latent frame.

Input convention (both encoders): ComfyUI IMAGE floats in 0..1, ``[T, H, W, 3]``
or ``[H, W, 3]``, channels in the order they are stored. The reference feeds
8-bit images as ``uint8 / 255`` in float32; a ComfyUI IMAGE of 8-bit frames
(or of :func:`~...pose.render.render_poses` output through ``to_image_floats``)
holds exactly those float32 values, so it is used as is. Channel order: the
reference read its pose images, which OpenCV had drawn with BGR colour lists,
as RGB, so the model saw swapped channels; ``pose/render.py``'s ``unianimate``
style reproduces that by default (``color_order="bgr"``). Pass that style's
frames unchanged.

Layer names are the reference's (``dwpose_embedding.0.weight`` ...), so its
weights load with ``strict=True``. Layers are :class:`~...models.ops.CastOps`,
so fp16/bf16 weights compute in the input's dtype (float32 by default, as in
the reference, which builds these modules in float32).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ... import host
from ...errors import InputError
from ...models.checkpoint.convert import check_tensors
from ...models.checkpoint.fp8 import expected_shapes as module_shapes
from ...models.ops import CastOps
from ...models.wan.latent_space import is_frame_count, nearest_frame_counts

HIDDEN = 16  # the reference's concat_dim * 4
REF_POSE_CHANNELS = 20  # 4 mask + 16 latent channels of y
POSE_PREFIX = "dwpose_embedding."
REF_PREFIX = "randomref_embedding_pose."
POSE_CONVS = (0, 2, 4, 6, 8, 10, 12)  # nn.Sequential indices of the convolutions
REF_CONVS = (0, 2, 4, 6, 8, 10)
LEADING_REPEATS = 3  # the first pose frame is repeated this many times in front
SPATIAL_STRIDE = 16  # pose pixels per DiT token side (8 for the VAE x 2 for the patch)
REF_STRIDE = 8  # reference-pose pixels per latent pixel


def _pose_embedding(dim: int, ops, device, dtype) -> nn.Sequential:
    def conv(cin: int, cout: int, kernel, stride, padding) -> nn.Module:
        return ops.Conv3d(cin, cout, kernel, stride=stride, padding=padding, device=device, dtype=dtype)

    h = HIDDEN
    return nn.Sequential(
        conv(3, h, 3, 1, 1), nn.SiLU(),
        conv(h, h, 3, 1, 1), nn.SiLU(),
        conv(h, h, 3, 1, 1), nn.SiLU(),
        conv(h, h, 3, (1, 2, 2), 1), nn.SiLU(),
        conv(h, h, 3, 2, 1), nn.SiLU(),
        conv(h, h, 3, 2, 1), nn.SiLU(),
        conv(h, dim, (1, 2, 2), (1, 2, 2), 0),
    )


def _reference_pose_embedding(ops, device, dtype) -> nn.Sequential:
    def conv(cin: int, cout: int, stride: int) -> nn.Module:
        return ops.Conv2d(cin, cout, 3, stride=stride, padding=1, device=device, dtype=dtype)

    h = HIDDEN
    return nn.Sequential(
        conv(3, h, 1), nn.SiLU(),
        conv(h, h, 1), nn.SiLU(),
        conv(h, h, 1), nn.SiLU(),
        conv(h, h, 2), nn.SiLU(),
        conv(h, h, 2), nn.SiLU(),
        conv(h, REF_POSE_CHANNELS, 2),
    )


def expected_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """Every encoder tensor's key and shape for a DiT of width ``dim``."""
    return module_shapes(UniAnimateEncoders(dim, device="meta"))


class UniAnimateEncoders(nn.Module):
    """The pose-video encoder and the reference-pose encoder, for a DiT of width ``dim``."""

    def __init__(self, dim: int, operations=CastOps, device=None, dtype=None):
        super().__init__()
        self.dim = dim
        self.dwpose_embedding = _pose_embedding(dim, operations, device, dtype)
        self.randomref_embedding_pose = _reference_pose_embedding(operations, device, dtype)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], source: str = "UniAnimate weights",
                        operations=CastOps) -> "UniAnimateEncoders":
        """Encoders holding ``state_dict``'s tensors (keys ``dwpose_embedding.*``, ``randomref_embedding_pose.*``).

        The width comes from the last pose convolution. Tensors keep their
        stored dtype (they are cast to the input's dtype when used).
        """
        last = f"{POSE_PREFIX}{POSE_CONVS[-1]}.weight"
        if last not in state_dict:
            raise InputError(source, f"has no '{last}' (found encoder keys like {_sample(state_dict)})",
                             "UniAnimate-DiT's dwpose_embedding.0..12 and randomref_embedding_pose.0..10 tensors")
        dim = int(state_dict[last].shape[0])
        check_tensors({k: v.shape for k, v in state_dict.items()}, expected_shapes(dim), source,
                      "UniAnimate-DiT pose encoders", "the encoders saved with UniAnimate-Wan2.1-14B-Lora-12000.ckpt")
        encoders = cls(dim, operations, device="meta")
        encoders.load_state_dict(dict(state_dict), strict=True, assign=True)
        return encoders.eval().requires_grad_(False)

    # ------------------------------------------------------------------ running
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def pose_embedding(self, pose_frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The pose video's embedding on the DiT's patch grid, ``[1, dim, k + 1, H / 16, W / 16]``.

        ``pose_frames``: ``[4k + 1, H, W, 3]`` floats in 0..1 (see the module
        docstring), ``H`` and ``W`` multiples of 16. Runs on the encoders'
        device in ``dtype``.
        """
        frames = _check_image(pose_frames, "pose frames", batch=True)
        count, height, width = frames.shape[:3]
        if not is_frame_count(count):
            lower, upper = nearest_frame_counts(count)
            raise InputError("pose frames", f"{count} frames is not of the form 4k+1",
                             f"4k+1 frames (e.g. {lower} or {upper}), one per frame of the video")
        _check_multiple("pose frames", height, width, SPATIAL_STRIDE)
        video = frames.to(self.device, dtype).permute(3, 0, 1, 2).unsqueeze(0)  # [1, 3, T, H, W]
        video = torch.cat([video[:, :, :1].expand(-1, -1, LEADING_REPEATS, -1, -1), video], dim=2)
        check = host.interrupt_check()
        for layer in self.dwpose_embedding:  # layer by layer: each full-video conv is the long step
            check()
            video = layer(video)
        return video

    def pose_tokens(self, pose_frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """:meth:`pose_embedding` flattened to DiT tokens, ``[1, (k + 1) * H/16 * W/16, dim]`` (frame-major)."""
        return self.pose_embedding(pose_frames, dtype).flatten(2).transpose(1, 2)

    @torch.no_grad()
    def reference_pose(self, pose_image: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The reference pose's map ``[1, 20, H / 8, W / 8]``, to add to ``y`` on every latent frame.

        ``pose_image``: ``[H, W, 3]`` (or a batch of one) floats in 0..1, ``H``
        and ``W`` multiples of 8.
        """
        image = _check_image(pose_image, "reference pose", batch=False)
        _check_multiple("reference pose", image.shape[0], image.shape[1], REF_STRIDE)
        return self.randomref_embedding_pose(image.to(self.device, dtype).permute(2, 0, 1).unsqueeze(0))


def _check_image(image: torch.Tensor, name: str, batch: bool) -> torch.Tensor:
    """``image`` as ``[T, H, W, 3]`` (batch) or ``[H, W, 3]``; InputError for another layout."""
    if not torch.is_tensor(image) or not image.is_floating_point():
        kind = f"tensor of {image.dtype}" if torch.is_tensor(image) else type(image).__name__
        raise InputError(name, f"is a {kind}", "an IMAGE: a float tensor [frames, height, width, 3] in 0..1")
    if not batch and image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    dims = 4 if batch else 3
    if image.dim() != dims or image.shape[-1] != 3:
        layout = "[frames, height, width, 3]" if batch else "[height, width, 3] (one image)"
        raise InputError(name, f"has shape {list(image.shape)}", f"an RGB IMAGE {layout}")
    return image


def _check_multiple(name: str, height: int, width: int, multiple: int) -> None:
    if height % multiple or width % multiple:
        raise InputError(name, f"are {width}x{height} pixels" if name.endswith("s") else f"is {width}x{height} pixels",
                         f"a width and height that are multiples of {multiple}")


def _sample(state_dict: Mapping[str, torch.Tensor]) -> str:
    keys = sorted(state_dict)
    return ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "") if keys else "none"
