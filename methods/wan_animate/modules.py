"""Wan2.2-Animate's modules beside the DiT, and loading them with it from one checkpoint.

The Animate checkpoints (the official ``Wan2.2-Animate-14B`` shards, Comfy-Org's
``wan2.2_animate_14B_bf16`` / fp8-scaled single files, Kijai's fp8-scaled
file) are a Wan 2.1-layout I2V 14B DiT (in_dim 36, CLIP branch) plus four
extra modules under their own top-level names, which ComfyUI's
``AnimateWanModel`` uses unchanged (``comfy/model_detection.py`` recognises
the model by ``face_adapter.fuser_blocks.0.k_norm.weight``):

* ``pose_patch_embedding.{weight,bias}``: Conv3d(16 -> dim, (1, 2, 2)), the
  pose video's latent on the DiT's patch grid;
* ``motion_encoder.enc.net_app.convs.*``, ``motion_encoder.enc.fc.{0..4}.*``,
  ``motion_encoder.dec.direction.weight`` (:mod:`.motion`; the
  blur ``...conv2.0.kernel`` / ``...skip.0.kernel`` buffers may be present);
* ``face_encoder.{conv1_local,conv2,conv3}.conv.*``, ``face_encoder.out_proj.*``,
  ``face_encoder.padding_tokens`` (:mod:`.face`);
* ``face_adapter.fuser_blocks.{0..7}.{linear1_kv,linear1_q,linear2}.*`` and
  ``.{q_norm,k_norm}.weight``: one face block per 5 DiT blocks.

:func:`load_wan_animate` loads the DiT with ``load_wan_dit`` (any layout the
DiT loader reads, fp8 kept or converted the same way) and these modules from
the tensors it hands back (``extra_prefixes``), with their fp8 scales.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from ...errors import InputError
from ...models.checkpoint.convert import FP8_COMPUTE, attach_scales, check_tensors, convert_weights, group_scales
from ...models.checkpoint.fp8 import expected_shapes, is_fp8, split_scale_key
from ...models.checkpoint.identify import sample_keys
from ...models.checkpoint.safetensors_files import PathLike
from ...models.checkpoint.wan_dit import WanCheckpointInfo, load_wan_dit, storage_dtype_from_name
from ...models.ops import CastOps
from ...models.wan.config import WanDiTConfig
from ...models.wan.latent_space import LATENT_CHANNELS
from .face import ADAPTER_EVERY, STREAM_WIDTH, FaceAdapter, FaceEncoder
from .motion import MotionEncoder, MotionEncoderConfig, blur_kernel

log = logging.getLogger(__name__)

ANIMATE_PREFIXES = ("pose_patch_embedding.", "motion_encoder.", "face_encoder.", "face_adapter.")
EXPECTED_FILE = ("a Wan2.2-Animate-14B diffusion model (the official shards, Comfy-Org's wan2.2_animate_14B "
                 "bf16/fp8 file or another repack with pose_patch_embedding, motion_encoder, face_encoder and "
                 "face_adapter tensors)")


@dataclass(frozen=True)
class AnimateConfig:
    """The shapes of the Animate modules (read from the weights)."""

    dim: int = 5120
    num_heads: int = 40
    adapters: int = 8
    pose_channels: int = LATENT_CHANNELS
    patch_size: tuple[int, int, int] = (1, 2, 2)
    face_in_dim: int = 512
    face_streams: int = 4
    face_width: int = STREAM_WIDTH
    motion: MotionEncoderConfig = MotionEncoderConfig()

    @property
    def adapter_blocks(self) -> tuple[int, ...]:
        """The DiT blocks each face block follows: 0, 5, 10, ..."""
        return tuple(ADAPTER_EVERY * i for i in range(self.adapters))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], num_heads: int,
                        source: str = "Animate weights") -> "AnimateConfig":
        required = ("pose_patch_embedding.weight", "face_encoder.conv1_local.conv.weight",
                    "face_adapter.fuser_blocks.0.linear1_q.weight", "motion_encoder.dec.direction.weight")
        missing = [k for k in required if k not in state_dict]
        if missing:
            raise InputError(source, f"has no Wan2.2-Animate modules ({', '.join(missing)} missing; found "
                             f"keys like {sample_keys(state_dict)})", EXPECTED_FILE)
        pose = state_dict["pose_patch_embedding.weight"]
        conv1 = state_dict["face_encoder.conv1_local.conv.weight"]
        width = int(state_dict["face_encoder.conv2.conv.weight"].shape[0]) if \
            "face_encoder.conv2.conv.weight" in state_dict else STREAM_WIDTH
        adapters = 0
        while f"face_adapter.fuser_blocks.{adapters}.linear1_q.weight" in state_dict:
            adapters += 1
        return cls(dim=int(pose.shape[0]), num_heads=num_heads, adapters=adapters, pose_channels=int(pose.shape[1]),
                   patch_size=tuple(int(s) for s in pose.shape[2:]),  # type: ignore[arg-type]
                   face_in_dim=int(conv1.shape[1]), face_streams=int(conv1.shape[0]) // width, face_width=width,
                   motion=MotionEncoderConfig.from_state_dict(state_dict, "motion_encoder."))


class AnimateModules(nn.Module):
    """``pose_patch_embedding``, ``motion_encoder``, ``face_encoder``, ``face_adapter`` under the official names."""

    def __init__(self, config: AnimateConfig, operations=CastOps, device=None, dtype=None,
                 compute_dtype: torch.dtype | None = None):
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype or (FP8_COMPUTE if is_fp8(dtype) else dtype or torch.float32)
        ops = operations
        self.pose_patch_embedding = ops.Conv3d(config.pose_channels, config.dim, kernel_size=config.patch_size,
                                               stride=config.patch_size, device=device, dtype=dtype)
        self.motion_encoder = MotionEncoder(config.motion, device=device, dtype=dtype)
        self.face_encoder = FaceEncoder(config.face_in_dim, config.dim, config.face_streams, config.face_width, ops,
                                        device, dtype)
        self.face_adapter = FaceAdapter(config.dim, config.num_heads, config.adapters, ops, device, dtype)

    @property
    def device(self) -> torch.device:
        return self.pose_patch_embedding.weight.device

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], num_heads: int, operations=CastOps,
                        storage_dtype: torch.dtype | str | None = None, device: torch.device | str = "cpu",
                        compute_dtype: torch.dtype | None = None,
                        source: str = "Animate weights") -> "AnimateModules":
        """The modules holding ``state_dict``'s tensors (official names, fp8 ``scale_weight`` keys allowed).

        ``storage_dtype`` as for the DiT loader: None keeps the file's dtypes
        (fp8 stays fp8 with its scale on the layer), a float dtype converts
        (dequantizing scaled fp8), an fp8 dtype quantizes the Linear weights.
        """
        storage_dtype = storage_dtype_from_name(storage_dtype)
        config = AnimateConfig.from_state_dict(state_dict, num_heads, source)
        if config.dim % num_heads:
            raise InputError(source, f"has width {config.dim}, which does not split into {num_heads} heads",
                             "Animate modules that match the DiT they came with")
        weights = {k: v for k, v in state_dict.items() if split_scale_key(k) is None}
        scales = {k: v for k, v in state_dict.items() if split_scale_key(k) is not None}
        file_dtypes = [v.dtype for k, v in weights.items() if v.dim() >= 2]
        dominant = max(set(file_dtypes), key=file_dtypes.count) if file_dtypes else torch.float32
        dtype_hint = storage_dtype or dominant
        if compute_dtype is None:
            compute_dtype = FP8_COMPUTE if is_fp8(dtype_hint) else dtype_hint
        modules = cls(config, operations, device="meta", compute_dtype=compute_dtype)
        modules.requires_grad_(False)
        expected = {k: v for k, v in expected_shapes(modules).items() if split_scale_key(k) is None}
        kernels = {k for k in expected if k.endswith(".kernel")}
        _check_tensors(weights, scales, expected, kernels, source)
        converted = convert_weights(modules, weights, group_scales(scales), operations, storage_dtype, device)
        state = converted.state
        for key in kernels - set(state):
            state[key] = blur_kernel(device)
        result = modules.load_state_dict(state, strict=False, assign=True)
        leftover = [k for k in result.missing_keys + result.unexpected_keys if split_scale_key(k) is None]
        if leftover:
            raise RuntimeError(f"Animate state dict did not match after checking: {leftover[:5]}")
        attach_scales(modules, converted.scales, device)
        return modules.eval()


def _check_tensors(weights: Mapping[str, torch.Tensor], scales: Mapping[str, torch.Tensor],
                   expected: Mapping[str, tuple[int, ...]], kernels: set[str], source: str) -> None:
    check_tensors({k: v.shape for k, v in weights.items()}, expected, source, "Wan2.2-Animate modules",
                  EXPECTED_FILE, optional=kernels, scales=scales)
    for key in kernels & set(weights):
        if not torch.allclose(weights[key].float().cpu(), blur_kernel()):
            log.warning("%s: blur kernel '%s' differs from LIA's [1, 3, 3, 1] kernel; using the file's", source, key)


def split_animate_tensors(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
    """``(Animate module tensors, DiT tensors)`` of one official-key state dict."""
    animate = {k: v for k, v in state_dict.items() if k.startswith(ANIMATE_PREFIXES)}
    return animate, {k: v for k, v in state_dict.items() if k not in animate}


def load_wan_animate(path_or_paths: PathLike | Sequence[PathLike], storage_dtype: torch.dtype | str | None = None,
                     device: torch.device | str = "cpu", operations=None, compute_dtype: torch.dtype | None = None,
                     num_heads: int | None = None) -> tuple[nn.Module, AnimateModules, WanCheckpointInfo]:
    """The Wan2.2-Animate DiT and its modules from the official shards or a Comfy-Org / Kijai single file.

    Returns ``(dit, modules, info)``; both parts use the same storage and
    compute dtypes; ``operations`` builds the DiT. A plain Wan DiT (no Animate tensors) is refused.
    """
    operations = operations or CastOps
    dit, info = load_wan_dit(path_or_paths, storage_dtype, device, operations, compute_dtype, num_heads,
                             extra_prefixes=ANIMATE_PREFIXES)
    source = f"model file '{info.source}'"
    if not info.extra_tensors:
        raise InputError(source, "is a plain Wan DiT without the Animate modules", EXPECTED_FILE)
    _check_dit(dit.config, source)
    # the modules live outside the host's model patcher (the sampler node moves them to the compute device):
    # the pack's casting layers, which compute in their input's dtype whatever the stored one
    modules = AnimateModules.from_state_dict(info.extra_tensors, dit.config.num_heads, CastOps, storage_dtype,
                                             device, info.compute_dtype, source)
    if modules.config.dim != dit.config.dim:
        raise InputError(source, f"has Animate modules of width {modules.config.dim} for a DiT of width "
                         f"{dit.config.dim}", EXPECTED_FILE)
    needed = (dit.config.num_layers - 1) // ADAPTER_EVERY + 1
    if modules.config.adapters != needed:
        raise InputError(source, f"has {modules.config.adapters} face blocks for {dit.config.num_layers} DiT "
                         f"blocks", f"one face block per {ADAPTER_EVERY} DiT blocks ({needed}), as in "
                         f"{EXPECTED_FILE}")
    info.extra_tensors = {}  # now held by the modules
    return dit, modules, info


def _check_dit(config: WanDiTConfig, source: str) -> None:
    if config.kind != "i2v" or not config.has_image_branch:
        raise InputError(source, f"holds a {config.kind.upper()} DiT"
                         + ("" if config.has_image_branch else " without the CLIP image branch"),
                         "the Wan2.2-Animate DiT (image-to-video layout with CLIP branch, in_dim 36)")
