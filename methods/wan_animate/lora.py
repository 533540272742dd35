"""Wan2.2-Animate's relighting LoRA (replacement mode: light the new person like the scene).

The official ``relighting_lora.ckpt`` is a torch checkpoint ``{"state_dict":
{...}}`` of PEFT weights trained with rank 128, alpha 128 (scale 1) on every
Linear inside the DiT blocks except the face and modulation layers
(``wan/modules/animate/animate_utils.get_loraconfig``): per block
``self_attn.{q,k,v,o}``, ``cross_attn.{q,k,v,o,k_img,v_img}``, ``ffn.0``,
``ffn.2``. The keys carry no adapter name or prefix, as ``set_peft_model_state_dict``
takes them: ``blocks.0.self_attn.q.lora_A.weight`` / ``...lora_B.weight``.

Repacks users have: Kijai's ``WanAnimate_relight_lora_fp16.safetensors``
and Comfy-Org's ``wan2.2_animate_14B_relight_lora_bf16.safetensors``, for
ComfyUI's LoRA loader. Their key names could not be read here (the files
are not in this environment); their size (1,436,655,192 bytes for Kijai's)
fits exactly the 960 fp16 A/B matrices of the 480 targets at rank 128 with a
~106 kB header, i.e. no alpha tensors, so the expected form is ComfyUI's usual
``diffusion_model.blocks.0.self_attn.q.lora_down.weight`` / ``lora_up.weight``
(or ``lora_A`` / ``lora_B``). :mod:`~...models.lora` reads all these styles;
without an alpha the scale is 1, which is the trained ``alpha / rank``.

As the relighting LoRA, a file is refused if it targets the face blocks, the
face or motion encoders, the pose embedding or any modulation: that is not
this LoRA (and those layers were frozen in its training).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ...errors import InputError
from ...models.lora import Lora, lora_role, parse_lora, read_lora_file
from ...models.checkpoint.wan_keys import strip_wrapper_prefix

log = logging.getLogger(__name__)

RELIGHT_TARGET = re.compile(r"^blocks\.\d+\.(self_attn\.(q|k|v|o)|cross_attn\.(q|k|v|o|k_img|v_img)|ffn\.(0|2))"
                            r"\.(weight|bias)$")
FORBIDDEN = re.compile(r"(^|[._])(face_adapter|face_encoder|motion_encoder|pose_patch_embedding|fuser_blocks|"
                       r"modulation)([._]|$)")
RELIGHT_RANK, RELIGHT_ALPHA = 128, 128
EXPECTED = ("Wan2.2-Animate's relighting LoRA (relighting_lora.ckpt, or a repack such as "
            "WanAnimate_relight_lora_fp16.safetensors) targeting only the attention and FFN Linears of the DiT blocks")


def _param_shapes(dit: nn.Module | Mapping[str, Sequence[int]],
                  modules: nn.Module | None) -> dict[str, tuple[int, ...]]:
    if isinstance(dit, nn.Module):
        shapes = {k: tuple(v.shape) for k, v in dit.named_parameters()}
    else:
        shapes = {k: tuple(v.shape) if torch.is_tensor(v) else tuple(v) for k, v in dit.items()}
    if modules is not None:  # so that a LoRA aimed at them is recognised (and refused), not just "unmatched"
        shapes.update({k: tuple(v.shape) for k, v in modules.named_parameters()})
    return shapes


def parse_relight_lora(state_dict: Mapping[str, torch.Tensor], dit: nn.Module | Mapping[str, Sequence[int]],
                       modules: nn.Module | None = None, name: str = "relighting LoRA") -> Lora:
    """Resolve the relighting LoRA against the DiT (and the Animate modules, to recognise strays)."""
    label = f"relighting LoRA '{name}'"
    stems = {lora_role(k)[0] for k in state_dict if lora_role(k) is not None}
    forbidden = sorted(k for k in stems if FORBIDDEN.search(strip_wrapper_prefix(k)[1]))
    if forbidden:
        raise InputError(label, f"targets face or modulation layers ({', '.join(forbidden[:4])}"
                         f"{', ...' if len(forbidden) > 4 else ''}), which the relighting LoRA does not touch",
                         EXPECTED)
    lora = parse_lora(state_dict, _param_shapes(dit, modules), name)
    stray = sorted(t for t in lora.updates if FORBIDDEN.search(t))
    if stray:
        raise InputError(label, f"targets face or modulation layers ({', '.join(stray[:4])})", EXPECTED)
    others = sorted(t for t in lora.updates if not RELIGHT_TARGET.match(t))
    if others:
        log.warning("%s: also changes %d weight(s) outside the relighting LoRA's layers: %s", label, len(others),
                    ", ".join(others[:6]))
    ranks = {u.rank for updates in lora.updates.values() for u in updates if u.down is not None}
    if ranks and ranks != {RELIGHT_RANK}:
        log.info("%s: rank %s (the official file has rank %d)", label, sorted(ranks), RELIGHT_RANK)
    return lora


def load_relight_lora(path: str | Path, dit: nn.Module | Mapping[str, Sequence[int]],
                      modules: nn.Module | None = None) -> Lora:
    """Read the relighting LoRA (``.ckpt`` with ``state_dict``, or ``.safetensors``) and check it."""
    return parse_relight_lora(read_lora_file(path), dit, modules, Path(path).name)
