"""Loading UniAnimate-DiT's released file: a LoRA for the Wan 2.1 I2V 14B DiT plus its pose encoders.

``UniAnimate-Wan2.1-14B-Lora-12000.ckpt`` is a flat dict of tensors (a
Lightning checkpoint cleared down to the trainable parameters):

* ``pipe.dit.blocks.{i}.{self_attn|cross_attn}.{q|k|v|o}.lora_{A|B}.default.weight``
  and ``pipe.dit.blocks.{i}.ffn.{0|2}.lora_{A|B}.default.weight`` (PEFT, no alpha);
* ``dwpose_embedding.{0,2,...,12}.{weight|bias}`` and
  ``randomref_embedding_pose.{0,2,...,10}.{weight|bias}``, at the top level of
  the training module (other repacks may prefix them, e.g. with ``pipe.``).

An fp16 ``.safetensors`` repack with the same keys loads the same way.

LoRA scale: DiffSynth merges it with ``W += lora_alpha * (B @ A)`` where
``lora_alpha`` is the user's multiplier (1.0 in all of UniAnimate's scripts)
and there is no ``alpha / rank`` factor (it was trained with PEFT at
``lora_alpha == rank``, a PEFT scale of 1). :mod:`~...models.lora` applies
``alpha / rank`` only when the file has an alpha, which this one has not, so
its merge at strength 1 is exactly the reference's.

Both parts are required: the pose encoders do nothing without the LoRA the
DiT was fine-tuned with, and the LoRA alone has no way to see the pose.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ...errors import InputError
from ...models.checkpoint.identify import sample_keys
from ...models.lora import Lora, lora_role, parse_lora, read_lora_file
from .encoders import POSE_CONVS, POSE_PREFIX, REF_PREFIX, UniAnimateEncoders

log = logging.getLogger(__name__)

EXPECTED_FILE = ("UniAnimate-DiT's UniAnimate-Wan2.1-14B-Lora-12000.ckpt (or a .safetensors repack of it), "
                 "which holds both the LoRA and the pose encoders")
I2V_IN_DIM = 36  # 16 latent + 4 mask + 16 image-latent channels


@dataclass
class UniAnimateWeights:
    """The two parts of UniAnimate-DiT's file: the DiT LoRA and the pose encoders."""

    name: str
    lora: Lora
    encoders: UniAnimateEncoders


def split_encoder_tensors(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                          dict[str, torch.Tensor]]:
    """``(encoder tensors under their module names, everything else)``.

    A key belongs to an encoder when it contains ``dwpose_embedding.`` or
    ``randomref_embedding_pose.`` (whatever prefix comes before, as the
    reference matches them).
    """
    encoders: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for marker in (POSE_PREFIX, REF_PREFIX):
            if marker in key:
                encoders[marker + key.split(marker, 1)[1]] = tensor
                break
        else:
            rest[key] = tensor
    return encoders, rest


def _param_shapes(dit: nn.Module | Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    if isinstance(dit, nn.Module):
        return {k: tuple(v.shape) for k, v in dit.named_parameters()}
    return {k: tuple(v.shape) if torch.is_tensor(v) else tuple(v) for k, v in dit.items()}


def parse_unianimate(state_dict: Mapping[str, torch.Tensor], dit: nn.Module | Mapping[str, Sequence[int]],
                     name: str = "UniAnimate weights") -> UniAnimateWeights:
    """Split and check a UniAnimate state dict against the DiT (a model, or its key -> shape)."""
    label = f"UniAnimate weights '{name}'"
    encoder_sd, rest = split_encoder_tensors(state_dict)
    has_lora = any((lora_role(key) or ("", "alpha"))[1] != "alpha" for key in rest)
    if not encoder_sd and not has_lora:
        raise InputError(label, f"holds neither UniAnimate's LoRA nor its pose encoders (found keys like "
                         f"{sample_keys(state_dict)})", EXPECTED_FILE)
    if not has_lora:
        raise InputError(label, "holds only UniAnimate's pose encoders (dwpose_embedding, randomref_embedding_pose) "
                         "and no LoRA weights; the DiT must be fine-tuned with the LoRA for the poses to work",
                         EXPECTED_FILE)
    if not encoder_sd:
        raise InputError(label, "is a LoRA without UniAnimate's pose encoders (no dwpose_embedding.* or "
                         "randomref_embedding_pose.* tensors); a plain Wan LoRA belongs in a LoRA loader",
                         EXPECTED_FILE)
    shapes = _param_shapes(dit)
    patch = shapes.get("patch_embedding.weight")
    if patch is not None:
        dit_dim, in_dim = int(patch[0]), int(patch[1])
        last = encoder_sd.get(f"{POSE_PREFIX}{POSE_CONVS[-1]}.weight")
        if last is not None and int(last.shape[0]) != dit_dim:
            raise InputError(label, f"was trained for a DiT of width {int(last.shape[0])}, but the loaded DiT has "
                             f"width {dit_dim}", "the Wan 2.1 I2V 14B DiT (width 5120) that UniAnimate-DiT was "
                             "trained on")
        if in_dim != I2V_IN_DIM:
            raise InputError("diffusion model", f"takes {in_dim} input channels, so it is not an image-to-video "
                             "model", "a Wan image-to-video DiT (UniAnimate-DiT was trained on Wan 2.1 I2V 14B)")
    encoders = UniAnimateEncoders.from_state_dict(encoder_sd, label)
    lora = parse_lora(rest, shapes, name, total=len(state_dict))  # says which tensors it does not use
    return UniAnimateWeights(name, lora, encoders)


def load_unianimate(path: str | Path, dit: nn.Module | Mapping[str, Sequence[int]]) -> UniAnimateWeights:
    """Read UniAnimate-DiT's file (.ckpt with ``weights_only`` or .safetensors) and check it against ``dit``."""
    return parse_unianimate(read_lora_file(path), dit, Path(path).name)
