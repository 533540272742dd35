"""RealisDance-DiT's three layers on top of the Wan 2.1 I2V DiT, and its RoPE shift switches.

``RealisDanceDiT`` (``src/models/rd_dit.py`` in damo-cv/RealisDance) is
diffusers' Wan transformer plus:

* ``add_conv_in``: Conv3d(32 -> dim, kernel = stride = the patch (1, 2, 2)) over
  the pose latents (SMPL-CS render and HaMeR hand render, each VAE-encoded to
  16 channels, SMPL first);
* ``add_proj``: Linear(dim, dim), zero-initialised in training; its output is
  *added* to the patch-embedded video tokens;
* ``attn_conv_in``: Conv3d(16 -> dim, the patch) over the reference image's
  latent; those tokens are *appended* to the video tokens, take part in
  self-attention at RoPE positions of their own, and are dropped before the head.

Both convolutions have a temporal kernel of 1 and ``add_proj`` acts per token,
so the pose tokens of latent frames ``[s, e)`` are exactly the whole video's
pose tokens of those frames (windows slice them instead of recomputing).

Names are the released file's (``add_conv_in.weight`` ...), so its tensors load
with ``strict=True``; widths come from the weights. Layers are built from an
``operations`` namespace (the pack's :class:`~...models.ops.CastOps`, or the
host's), so stored bf16/fp16 weights compute in the input's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from ... import host
from ...errors import InputError
from ...models.checkpoint.convert import attach_scales, check_tensors, convert_weights, group_scales
from ...models.checkpoint.fp8 import expected_shapes, split_scale_key
from ...models.ops import CastOps

POSE_CONV, POSE_PROJ, REF_CONV = "add_conv_in", "add_proj", "attn_conv_in"
LAYER_NAMES = (POSE_CONV, POSE_PROJ, REF_CONV)
LAYER_PREFIXES = tuple(f"{name}." for name in LAYER_NAMES)
PARAM_KEYS = tuple(f"{name}.{p}" for name in LAYER_NAMES for p in ("weight", "bias"))
POSE_CHANNELS = 32  # SMPL-CS latent (16) + HaMeR latent (16)
REFERENCE_CHANNELS = 16
FP8_DEQUANT_DTYPE = torch.bfloat16  # fp8-stored extras are small: dequantize them once


@dataclass(frozen=True)
class RopeShifts:
    """Where the reference tokens sit on each RoPE axis (the reference's ``shift_f/h/w`` switches).

    Off: the axis index starts at 0, as the video's does. On: frames start at
    ``SHIFT_F_SIZE`` (81), rows right after the video's last row (``H``),
    columns after its last column (``W``); see ``reference_positions``.
    """

    shift_f: bool
    shift_h: bool
    shift_w: bool

    @property
    def label(self) -> str:
        on = [name for name, value in (("frame", self.shift_f), ("height", self.shift_h),
                                       ("width", self.shift_w)) if value]
        return "shifted on " + ", ".join(on) if on else "not shifted"


# ``RealisDanceDiT.__init__`` defaults, which diffusers applies to any switch config.json leaves out.
CLASS_DEFAULT_SHIFTS = RopeShifts(True, True, True)


def shifts_from_config(config: Mapping[str, object]) -> tuple[RopeShifts, list[str]]:
    """The switches a ``transformer/config.json`` sets, the class defaults for the others.

    Returns ``(shifts, names of the switches taken from the defaults)``.
    """
    values, defaulted = {}, []
    for name in ("shift_f", "shift_h", "shift_w"):
        value = config.get(name)
        if isinstance(value, bool):
            values[name] = value
        else:
            values[name] = getattr(CLASS_DEFAULT_SHIFTS, name)
            defaulted.append(name)
    return RopeShifts(**values), defaulted


class RealisDanceLayers(nn.Module):
    """``add_conv_in``, ``add_proj`` and ``attn_conv_in`` for a DiT of width ``dim``."""

    def __init__(self, dim: int, pose_channels: int = POSE_CHANNELS, reference_channels: int = REFERENCE_CHANNELS,
                 patch_size: tuple[int, int, int] = (1, 2, 2), operations=CastOps, device=None, dtype=None):
        super().__init__()
        self.dim, self.patch_size = dim, tuple(patch_size)
        self.pose_channels, self.reference_channels = pose_channels, reference_channels
        ops = operations
        self.add_conv_in = ops.Conv3d(pose_channels, dim, kernel_size=self.patch_size, stride=self.patch_size,
                                      device=device, dtype=dtype)
        self.add_proj = ops.Linear(dim, dim, device=device, dtype=dtype)
        self.attn_conv_in = ops.Conv3d(reference_channels, dim, kernel_size=self.patch_size, stride=self.patch_size,
                                       device=device, dtype=dtype)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], source: str = "RealisDance-DiT weights",
                        operations=CastOps) -> "RealisDanceLayers":
        """Layers holding ``state_dict``'s tensors (keys ``add_conv_in.weight`` ...), widths read from them.

        fp8 tensors (with their ``scale_weight`` if the file has one) are
        dequantized to bfloat16; other dtypes are kept and cast when used.
        """
        params = {k: v for k, v in state_dict.items() if split_scale_key(k) is None}
        scales = {k: v for k, v in state_dict.items() if split_scale_key(k) is not None}
        missing = [k for k in PARAM_KEYS if k not in params]
        if missing:
            raise InputError(source, f"lacks RealisDance-DiT's {', '.join(missing)}",
                             "all of add_conv_in, add_proj and attn_conv_in (weight and bias), as in the released "
                             "RealisDance-DiT transformer")
        pose_w, ref_w = params[f"{POSE_CONV}.weight"], params[f"{REF_CONV}.weight"]
        if pose_w.dim() != 5 or ref_w.dim() != 5:
            raise InputError(source, f"has {POSE_CONV}.weight {list(pose_w.shape)} and {REF_CONV}.weight "
                             f"{list(ref_w.shape)}", "5-d Conv3d weights [dim, channels, 1, 2, 2]")
        dim, patch = int(pose_w.shape[0]), tuple(int(s) for s in pose_w.shape[2:])
        layers = cls(dim, int(pose_w.shape[1]), int(ref_w.shape[1]), patch, operations, device="meta")
        expected = {k: v for k, v in expected_shapes(layers).items() if split_scale_key(k) is None}
        check_tensors({k: v.shape for k, v in params.items()}, expected, source, "RealisDance-DiT layers",
                      "the add_conv_in / add_proj / attn_conv_in tensors of one RealisDance-DiT transformer")
        # fp8 tensors (with their scale) dequantized to bf16, the others kept as stored, on their device
        device = next(iter(params.values())).device
        converted = convert_weights(layers, params, group_scales(scales), operations, None, device,
                                    dequantize_fp8=FP8_DEQUANT_DTYPE)
        layers.load_state_dict(converted.state, strict=False, assign=True)
        attach_scales(layers, converted.scales, device)  # scale slots of a host's fp8 ops: neutral
        leftover = [n for n, p in layers.named_parameters() if p.device.type == "meta"]
        if leftover:
            raise RuntimeError(f"RealisDance layers left on the meta device: {leftover}")
        return layers.eval().requires_grad_(False)

    # ------------------------------------------------------------------ running
    @property
    def device(self) -> torch.device:
        return self.add_proj.weight.device

    def token_grid(self, latent: torch.Tensor) -> tuple[int, int, int]:
        """(frames, height, width) in patches of a latent ``[B, C, T, h, w]``."""
        return tuple(s // p for s, p in zip(latent.shape[2:], self.patch_size))

    @torch.no_grad()
    def pose_tokens(self, pose_latents: torch.Tensor, dtype: torch.dtype = torch.float32,
                    out_dtype: torch.dtype = torch.float32, frames_per_chunk: int = 4) -> torch.Tensor:
        """``add_proj(add_conv_in(pose))`` as tokens ``[B, T*h*w / patch, dim]`` (frame-major).

        ``pose_latents``: ``[B, pose_channels, T, h, w]`` in model space; runs
        on the layers' device in ``dtype``, ``frames_per_chunk`` latent frames
        at a time (the layers are frame-local), into an ``out_dtype`` tensor.
        """
        pose = pose_latents.to(self.device, dtype)
        batch, frames = pose.shape[0], pose.shape[2]
        per_frame = (pose.shape[3] // self.patch_size[1]) * (pose.shape[4] // self.patch_size[2])
        out = torch.empty(batch, frames * per_frame, self.dim, device=self.device, dtype=out_dtype)
        step = max(1, int(frames_per_chunk)) * self.patch_size[0]
        check = host.interrupt_check()
        for start in range(0, frames, step):
            check()
            x = self.add_conv_in(pose[:, :, start:start + step]).flatten(2).transpose(1, 2)
            first = (start // self.patch_size[0]) * per_frame
            out[:, first:first + x.shape[1]] = self.add_proj(x).to(out_dtype)
        return out

    @torch.no_grad()
    def reference_tokens(self, ref_latent: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``attn_conv_in(reference)`` as tokens ``[B, Fr*hr*wr / patch, dim]``, float32."""
        x = self.attn_conv_in(ref_latent.to(self.device, dtype))
        return x.flatten(2).transpose(1, 2).float()
