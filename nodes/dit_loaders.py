"""Nodes that load the Wan DiT and add LoRAs to it. Thin: checks, a core call, a handle out."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from .. import host
from ..errors import InputError
from ..models.checkpoint import STORAGE_DTYPES, WanCheckpointInfo, load_wan_dit, storage_dtype_from_name
from ..models.checkpoint.fp8 import is_fp8
from ..models.checkpoint.wan_dit import scaled_fp8_format
from ..models.lora import Lora, check_strength, load_lora
from ..models.checkpoint import file_kind
from .model_lists import model_choices

DIT_TYPE = "POSEANIMATE_DIT"
CATEGORY = "PoseAnimate/loaders"
COMPUTE_DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ATTENTION = ("sdpa", "sdpa_chunked", "flash_attn", "sageattention")
CHUNKED_QUERIES = 4096


@dataclass(frozen=True)
class DiTHandle:
    """What flows between the pack's nodes as POSEANIMATE_DIT.

    ``managed`` is what the host manages (a ModelPatcher inside ComfyUI, with
    LoRAs as its weight patches), ``model`` the WanDiT inside it. ``loras``
    lists the LoRAs added so far; outside the host the sampler merges them.
    Handles are never mutated: ComfyUI caches node outputs and reuses them.
    """

    managed: Any
    model: Any
    info: WanCheckpointInfo
    loras: tuple[tuple[Lora, float], ...] = ()


class PoseAnimateDiTLoader:
    DESCRIPTION = ("Loads a Wan 2.1/2.2 diffusion model (official shards, Comfy-Org single file or diffusers "
                   "folder, any storage dtype including scaled fp8). Width, depth and kind are read from the file.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE,)
    RETURN_NAMES = ("dit",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit_name": (model_choices("diffusion_models", file_kind.WAN_DIT),
                         {"tooltip": "A Wan 2.1/2.2 14B I2V model in ComfyUI/models/diffusion_models "
                                     "(e.g. wan2.1_i2v_480p_14B_fp16.safetensors)."}),
            **dit_options(),
        }}

    def load(self, dit_name: str, weight_dtype: str, compute_dtype: str, attention: str) -> tuple[DiTHandle]:
        path = host.model_file("diffusion_models", dit_name)
        storage, compute = storage_dtype_from_name(weight_dtype), COMPUTE_DTYPES[compute_dtype]
        model, info = load_wan_dit(path, storage_dtype=storage, device=host.offload_device(),
                                   operations=dit_operations(path, storage, compute), compute_dtype=compute)
        return (dit_handle(model, info, attention),)


def dit_operations(path: str, storage: torch.dtype | None, compute: torch.dtype | None) -> Any:
    """The layer classes for a DiT file: the host's scaled-fp8 layers when the file is scaled fp8 and its fp8
    weights are kept (half the memory of dequantizing them), else the host's (or the pack's) usual ones."""
    scaled = scaled_fp8_format(path) if storage is None or is_fp8(storage) else None
    if scaled is not None and storage is not None and storage != scaled:
        scaled = None
    return host.operations(storage, compute, scaled_fp8=scaled)


def dit_options() -> dict:
    """The DiT loaders' widgets besides the file: storage dtype, compute dtype, attention kernel."""
    return {
        "weight_dtype": (list(STORAGE_DTYPES), {"default": "default",
                         "tooltip": "How weights are kept in memory; 'default' keeps the file's dtype. "
                                    "fp8 halves memory at a small cost in quality."}),
        "compute_dtype": (list(COMPUTE_DTYPES), {"default": "auto",
                          "tooltip": "The dtype layers compute in; 'auto': bf16 on GPUs that support it, "
                                     "else the weight dtype."}),
        "attention": (list(ATTENTION), {"default": "sdpa",
                      "tooltip": "Attention kernel. sdpa_chunked splits long sequences to save memory; "
                                 "flash_attn and sageattention need those packages installed."}),
    }


def dit_handle(model, info: WanCheckpointInfo, attention: str) -> DiTHandle:
    """A loaded DiT with its attention kernel set, handed to the host's memory manager."""
    backend = "sdpa" if attention == "sdpa_chunked" else attention
    model.set_attention(backend, CHUNKED_QUERIES if attention == "sdpa_chunked" else None)
    return DiTHandle(host.manage(model), model, info)


class PoseAnimateLoRA:
    DESCRIPTION = ("Adds a LoRA to the Wan DiT (PEFT, kohya/ComfyUI or diffusers key style, with alpha, .diff and "
                   ".diff_b deltas: the lightx2v step-distill LoRAs too). Chain several. Keys that fit no weight are "
                   "named in the log; a LoRA for another model (size or kind) is refused, naming the first key "
                   "that does not fit.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DIT_TYPE,)
    RETURN_NAMES = ("dit",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit": (DIT_TYPE, {"tooltip": "The model from PoseAnimate Load Wan DiT (or a previous LoRA node)."}),
            "lora_name": (model_choices("loras", file_kind.LORA), {"tooltip": "A LoRA in ComfyUI/models/loras."}),
            "strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.05,
                                   "tooltip": "Multiplies the LoRA's update; 1.0 is what it was trained with."}),
        }}

    def apply(self, dit: DiTHandle, lora_name: str, strength: float) -> tuple[DiTHandle]:
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of PoseAnimate Load Wan DiT")
        return (with_lora(dit, load_lora(host.model_file("loras", lora_name), dit.model), strength),)


def with_lora(dit: DiTHandle, lora: Lora, strength: float) -> DiTHandle:
    """A new handle with ``lora`` added: the host's weight patches inside ComfyUI, merged at sampling outside."""
    strength = check_strength(strength, lora.name)
    managed = host.add_lora_patches(dit.managed, lora.updates, strength)
    return replace(dit, managed=managed, loras=dit.loras + ((lora, strength),))


NODES = {"PoseAnimateDiTLoader": (PoseAnimateDiTLoader, "Load Wan DiT (PoseAnimate)"),
         "PoseAnimateLoRA": (PoseAnimateLoRA, "Wan DiT LoRA (PoseAnimate)")}
