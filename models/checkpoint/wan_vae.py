"""Load the Wan 2.1 VAE from the official ``Wan2.1_VAE.pth`` or Comfy-Org's
``wan_2.1_vae.safetensors``.

Both files use the same key names, the official ones (``encoder.conv1.weight``,
``decoder.middle.0.residual.0.gamma``, ``conv1.weight``, ...): ComfyUI's
``comfy/ldm/wan/vae.py`` names its modules exactly as Wan's
``wan/modules/vae.py`` and ``comfy/sd.py`` loads the file into it without
renaming, so the repackaged file needs no key map here. A ComfyUI full
checkpoint keeps its VAE under ``first_stage_model.``; that prefix (and
``vae.``) is stripped.

The config (width, stages, blocks per stage, temporal downsampling) is read
from the tensor shapes, so tiny test files load through the same code. A file
that is not a Wan 2.1 VAE is refused with a message saying what it looks like.
"""
from __future__ import annotations

import logging
import pickle
import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import torch

from ...errors import InputError, first_line, pickle_refusal
from ..wan.vae import WanVAE, WanVAEConfig
from .convert import check_tensors
from .identify import describe_checkpoint, is_torch_checkpoint, sample_keys

log = logging.getLogger(__name__)

EXPECTED = ("the Wan 2.1 VAE: Wan2.1_VAE.pth from the official Wan2.1 release, or wan_2.1_vae.safetensors "
            "from Comfy-Org (it also serves the Wan 2.2 14B models)")
WRAPPER_PREFIXES = ("first_stage_model.", "vae.")
CORE_KEYS = ("encoder.conv1.weight", "decoder.conv1.weight", "conv1.weight", "conv2.weight")
_PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_STAGE_KEY = re.compile(r"^encoder\.downsamples\.(\d+)\.(.+)$")
_DIT_KEY = re.compile(r"(^|\.)(blocks\.\d+\.(self_attn|cross_attn|ffn)|patch_embedding|condition_embedder)\.")


def read_vae_file(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors or .pth/.pt/.ckpt file (pickles read with ``weights_only``)."""
    path = Path(path)
    name = f"VAE file '{path}'"
    if not path.is_file():
        raise InputError(name, "was not found", EXPECTED)
    suffix = path.suffix.lower()
    try:
        if suffix in (".safetensors", ".sft"):
            from safetensors.torch import load_file
            return load_file(str(path), device="cpu")
        if suffix not in _PICKLE_SUFFIXES:
            raise InputError(name, f"has the extension '{suffix or 'none'}'", f"{EXPECTED}; .safetensors or .pth")
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # files of the pre-1.6 (non-zip) format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except InputError:
        raise
    except pickle.UnpicklingError as err:
        if not is_torch_checkpoint(path):
            raise InputError(name, "is not a PyTorch checkpoint (it starts as neither a zip archive nor a pickle)",
                             "a complete file written by torch.save, or a .safetensors") from err
        raise InputError(name, "holds Python objects besides tensors, which are not loaded for safety "
                         f"({pickle_refusal(err)})",
                         "a file of tensors only") from err
    except Exception as err:
        raise InputError(name, f"could not be read ({first_line(err)})", f"a complete file: {EXPECTED}") from err
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise InputError(name, f"holds a {type(obj).__name__}, not a dict of tensors", EXPECTED)
    return {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}


def _strip_wrapper(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in WRAPPER_PREFIXES:
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if all(k in inner for k in CORE_KEYS):
            return inner
    return dict(state)


def _refuse_other_files(keys: list[str], name: str) -> None:
    """Raise for files that are not a Wan 2.1 VAE, saying what they are."""
    if not keys:
        raise InputError(name, "holds no tensors", EXPECTED)
    key_set = set(keys)
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in key_set:
        raise InputError(name, "is the Wan 2.2 VAE (48 latent channels, used by Wan2.2-TI2V-5B)",
                         f"{EXPECTED}; the 14B models use the Wan 2.1 VAE")
    if any(k.startswith(("encoder.conv_in.", "decoder.conv_in.")) for k in keys) and \
            any(".resnets." in k and k.endswith(".gamma") for k in keys):
        raise InputError(name, "is a diffusers-format Wan VAE (AutoencoderKLWan, vae/diffusion_pytorch_model."
                         "safetensors), whose key names this loader does not map", EXPECTED)
    if any(k not in key_set for k in CORE_KEYS):
        raise InputError(name, f"is not a Wan 2.1 VAE: {_describe(keys)}", EXPECTED)


def _describe(keys: list[str]) -> str:
    """'it looks like ... (found keys like ...)' for a file that is not a Wan 2.1 VAE."""
    described = describe_checkpoint(keys)
    if described.startswith("looks like a VAE"):
        described = described.replace("a VAE", "another model's VAE (SD / SDXL / Flux style)", 1)
    if described.startswith("looks"):
        return "it " + described
    dit = [k for k in keys if _DIT_KEY.search(k)]
    if dit and len(dit) * 4 >= len(keys):
        return f"it looks like a Wan diffusion model (DiT; load it with the model loader) " \
               f"(found keys like {sample_keys(dit)})"
    return "its keys are like " + described.replace("found keys like ", "", 1)


def infer_vae_config(state: Mapping[str, Any], name: str = "VAE file") -> WanVAEConfig:
    """The :class:`WanVAEConfig` of an official-key state dict (tensors or anything with ``.shape``)."""
    _refuse_other_files(list(state), name)
    dim = state["encoder.conv1.weight"].shape[0]
    z_dim = state["conv2.weight"].shape[0]
    layers: dict[int, set[str]] = {}
    for key in state:
        m = _STAGE_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
    stages: list[dict[str, Any]] = [{"blocks": 0, "attention": False, "width": None}]
    temporal: list[bool] = []
    for index in sorted(layers):
        params = layers[index]
        if "residual.0.gamma" in params:
            stages[-1]["blocks"] += 1
            stages[-1]["width"] = state[f"encoder.downsamples.{index}.residual.2.weight"].shape[0]
        elif "to_qkv.weight" in params:
            stages[-1]["attention"] = True
        elif "resample.1.weight" in params:
            temporal.append("time_conv.weight" in params)
            stages.append({"blocks": 0, "attention": False, "width": None})
        else:
            raise InputError(name, f"has an unknown layer encoder.downsamples.{index} ({sorted(params)[:3]})",
                             EXPECTED)
    blocks = {s["blocks"] for s in stages}
    if len(blocks) != 1 or 0 in blocks or any(s["width"] is None or s["width"] % dim for s in stages):
        raise InputError(name, "has an encoder whose stages do not follow the Wan VAE layout "
                         f"(residual blocks per stage: {[s['blocks'] for s in stages]})", EXPECTED)
    return WanVAEConfig(dim=dim, z_dim=z_dim, dim_mult=tuple(s["width"] // dim for s in stages),
                        num_res_blocks=blocks.pop(),
                        attn_scales=tuple(1.0 / 2 ** i for i, s in enumerate(stages) if s["attention"]),
                        temperal_downsample=tuple(temporal))


def _check_shapes(model: WanVAE, state: Mapping[str, torch.Tensor], name: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_tensors({k: v.shape for k, v in state.items()}, expected, name, "Wan 2.1 VAE",
                  f"a complete, unmodified file: {EXPECTED}")


def wan_vae_from_state_dict(state: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None,
                            device: torch.device | str = "cpu", operations: Any = None,
                            name: str = "VAE state dict") -> WanVAE:
    """Build a :class:`WanVAE` from official-key tensors (config read from their shapes).

    ``dtype``: the weight (and compute) dtype; None keeps the file's (fp8
    weights become bf16).
    """
    state = _strip_wrapper(state)
    config = infer_vae_config(state, name)
    if dtype is None:
        counts: Counter = Counter()
        for tensor in state.values():
            counts[tensor.dtype] += tensor.numel()
        dtype = counts.most_common(1)[0][0]
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            dtype = torch.bfloat16 if dtype.is_floating_point else torch.float32
    model = WanVAE(config, operations=operations, device="meta", dtype=dtype)
    _check_shapes(model, state, name)
    weights = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_wan_vae(path: str | Path, dtype: torch.dtype | None = None, device: torch.device | str = "cpu",
                 operations: Any = None) -> WanVAE:
    """Load a Wan 2.1 VAE file (.pth or .safetensors, official key names) onto ``device``.

    ``dtype``: the weight and compute dtype (None keeps the file's: float32
    for the official .pth, bf16 for Comfy-Org's file). ``operations``: the
    layer classes (default: the pack's CastOps; the host passes ComfyUI's).
    """
    name = f"VAE file '{path}'"
    model = wan_vae_from_state_dict(read_vae_file(path), dtype, device, operations, name)
    cfg = model.config
    log.info("loaded Wan VAE from %s (dim %d, z_dim %d, %s)", path, cfg.dim, cfg.z_dim, model.compute_dtype)
    return model
