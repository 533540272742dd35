"""LoRA for the Wan DiT: read any common key style, merge into the weights, restore.

Key styles (all resolved through the one key map in checkpoint/wan_keys.py):
- PEFT ``<module>.lora_A.weight`` / ``lora_B.weight``, with or without
  ``.default`` (UniAnimate-DiT: ``pipe.dit.blocks.0.self_attn.q.lora_A.default.weight``;
  ComfyUI-style: ``diffusion_model.blocks.0...``; Wan-Animate: ``base_model.model.``);
- kohya / musubi ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` /
  ``lora_up.weight`` / ``.alpha``, and the dotted ``diffusion_model.<module>.lora_down.weight``;
- diffusers ``transformer.blocks.0.attn1.to_q.lora_A.weight`` (and ``lora_B.bias``);
- full deltas ``<module>.diff`` (weight, or a bare parameter such as ``blocks.0.modulation``),
  ``<module>.diff_b`` (bias) and LightX2V's ``blocks.0.diff_m`` / ``head.diff_m`` (the modulation).

The step/CFG-distill LoRAs users run (LightX2V's, and Kijai's repacks such as
``lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors``) are the
dotted kohya form: ``diffusion_model.blocks.0.self_attn.q.lora_down.weight`` /
``lora_up.weight`` / ``alpha`` on every Linear (and the patch embedding), a
``.diff_b`` per bias, a ``.diff`` per norm weight and modulation, in fp16,
bf16 or fp32, rank 32 to 256; all of it merges here (a rank above a layer's
width too). Any strength is taken, above 1 included; NaN or infinite values in
a file (or a non-finite strength) are refused.

The merged update of a weight is ``strength * scale * (B @ A)`` with
``scale = alpha / rank`` when the file has an alpha and 1 otherwise (PEFT
files without alpha, like UniAnimate's, merge ``W += B @ A`` in their own
code); ``.diff`` and ``lora_B.bias`` deltas are ``strength * diff`` /
``strength * scale * bias``. Deltas are computed in float32, summed over all
LoRAs, added to the weight in float32 and rounded once to the stored dtype.
fp8 weights are dequantized (``w8 * scale_weight``), updated, and kept in
``fp8_merged_dtype`` (bf16 by default: a LoRA delta is far below fp8's
resolution, so re-quantizing would erase most of it); their scale becomes 1.

Restoring is exact: the original tensors of the touched weights (and their
fp8 scales) are kept on ``backup_device`` and put back by
:meth:`MergedLoras.restore`. That costs RAM equal to the touched weights; a
caller short of RAM reloads the model instead of restoring.

Tensors that are not LoRA weights come back in :attr:`Lora.extra`; they and
LoRA weights that match no DiT parameter are named in one warning line
(:func:`~.checkpoint.convert.report_unused`), a file where none match is
refused as a LoRA for another architecture, and a file mostly unused, or one
holding another method's own modules (UniAnimate's ``dwpose_embedding.*``,
``randomref_embedding_pose.*``; Wan2.2-Animate's face and motion encoders), is
refused as a file for another node.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from ..errors import InputError, first_line, pickle_refusal
from .checkpoint.convert import report_unused
from .checkpoint.fp8 import dequantize, is_fp8, set_module_tensor
from .checkpoint.identify import is_torch_checkpoint, sample_keys
from .checkpoint.wan_keys import (WRAPPER_PREFIXES, diffusers_module_to_official, is_diffusers_layout,
                                  official_module_to_diffusers, strip_wrapper_prefix)

log = logging.getLogger(__name__)

KOHYA_PREFIX = "lora_unet_"
EXTRA_PREFIXES = WRAPPER_PREFIXES + ("pipe.",)
# file-key ending -> role; longest endings first so '.lora_A.default.weight' wins over '.weight'
_ROLES = (
    (".lora_A.default.weight", "down"), (".lora_B.default.weight", "up"), (".lora_B.default.bias", "bias"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora_B.bias", "bias"),
    (".lora_down.weight", "down"), (".lora_up.weight", "up"),
    (".lora_mid.weight", "unsupported"), (".dora_scale", "unsupported"),
    (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff_m", "diff_m"), (".diff", "diff"),
)
MODULATION = "modulation"  # LightX2V's '<block>.diff_m' is the delta of '<block>.modulation'
EXPECTED_LORA = "a LoRA trained for the Wan 2.1/2.2 DiT of this size (14B LoRAs do not fit 1.3B/5B models)"


def lora_role(key: str) -> tuple[str, str] | None:
    """``(module stem, role)`` for a LoRA key, None for a tensor that is not a LoRA weight."""
    for ending, role in _ROLES:
        if key.endswith(ending):
            stem = key[: -len(ending)]
            if role == "diff_m":  # a bare parameter's full delta, under the parameter's own name
                sep = "_" if stem.startswith(KOHYA_PREFIX) else "."
                return f"{stem}{sep}{MODULATION}", "diff"
            return stem, role
    return None


@dataclass
class LoraUpdate:
    """One LoRA file's update to one parameter of the DiT."""

    target: str                       # official parameter key ('blocks.0.self_attn.q.weight')
    source: str                       # the file key it came from, for messages
    up: torch.Tensor | None = None    # B [out, r] (conv: [out, r, 1, 1, 1])
    down: torch.Tensor | None = None  # A [r, in] (conv: [r, in, kt, kh, kw])
    alpha: float | None = None
    diff: torch.Tensor | None = None  # full delta (.diff, .diff_b, lora_B.bias)
    diff_scaled: bool = False         # lora_B.bias is scaled like the low-rank part; .diff is not

    @property
    def rank(self) -> int:
        return int(self.down.shape[0]) if self.down is not None else 0

    @property
    def scale(self) -> float:
        """alpha / rank when the file gives alpha, else 1."""
        return self.alpha / self.rank if self.alpha is not None and self.rank else 1.0

    def delta(self, shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
        """The float32 update to add to a parameter of ``shape`` (before strength)."""
        if self.diff is not None:
            diff = self.diff.to(device=device, dtype=torch.float32)
            return (diff * self.scale if self.diff_scaled else diff).reshape(shape)
        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        return (up @ down).reshape(shape) * self.scale


@dataclass
class Lora:
    """A LoRA file resolved against one DiT: updates by target, plus what did not fit."""

    name: str
    updates: dict[str, list[LoraUpdate]] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # not LoRA weights; names without wrapper
    unmatched: list[str] = field(default_factory=list)            # LoRA keys that hit no DiT parameter


# ---------------------------------------------------------------- reading
def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a LoRA file: .safetensors, or a .ckpt/.pt/.pth/.bin read with ``weights_only``."""
    path = Path(path)
    name = f"LoRA file '{path}'"
    if not path.is_file():
        raise InputError(name, "was not found", "a LoRA .safetensors (or .ckpt/.pt/.pth) file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path), device="cpu")
        if suffix in (".ckpt", ".pt", ".pth", ".bin"):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise InputError(name, f"has the extension '{suffix}'", ".safetensors, .ckpt, .pt, .pth or .bin")
    except InputError:
        raise
    except pickle.UnpicklingError as err:
        if not is_torch_checkpoint(path):
            raise InputError(name, "is not a PyTorch checkpoint (it starts as neither a zip archive nor a pickle)",
                             "a complete file written by torch.save, or a .safetensors") from err
        raise InputError(name, "holds Python objects besides tensors, which are not loaded for safety "
                         f"({pickle_refusal(err)})",
                         "a file of tensors only (convert it to .safetensors)") from err
    except Exception as err:
        raise InputError(name, f"could not be read ({first_line(err)})", "a complete LoRA file") from err
    return _tensor_dict(obj, name)


def _tensor_dict(obj, name: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint object, unwrapping Lightning's 'state_dict' / DeepSpeed's 'module'."""
    for wrapper in ("state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise InputError(name, f"holds a {type(obj).__name__}, not a dict of tensors", "a LoRA state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise InputError(name, "holds no tensors", "a LoRA state dict")
    return tensors


# ---------------------------------------------------------------- resolving
class _Targets:
    """The DiT's parameters, indexed by the names a LoRA file may use for them."""

    def __init__(self, params: Mapping[str, Sequence[int]]):
        self.shapes = {k: tuple(v) for k, v in params.items()}
        self.modules = {k.rpartition(".")[0] for k in self.shapes if k.endswith((".weight", ".bias"))}
        self.underscored: dict[str, str] = {}
        bare = [k for k in self.shapes if not k.endswith((".weight", ".bias"))]  # modulation, emb_pos
        for module in [*self.modules, *bare]:
            self.underscored[module.replace(".", "_")] = module
            diffusers = official_module_to_diffusers(module)
            if diffusers is not None:
                self.underscored.setdefault(diffusers.replace(".", "_"), module)

    def module(self, stem: str, diffusers: bool) -> str | None:
        """The official module (or bare parameter) a LoRA stem names, or None."""
        if stem.startswith(KOHYA_PREFIX):
            return self.underscored.get(stem[len(KOHYA_PREFIX):].lstrip("_"))
        name = strip_wrapper_prefix(stem)[1]
        if diffusers:
            name = diffusers_module_to_official(name) or name
        if name in self.modules or name in self.shapes:
            return name
        return None

    def parameter(self, module: str, role: str) -> str | None:
        if module in self.shapes:  # a bare parameter such as blocks.0.modulation (.diff only)
            return module if role == "diff" else None
        key = f"{module}.{'bias' if role in ('diff_b', 'bias') else 'weight'}"
        return key if key in self.shapes else None


def _model_params(model: nn.Module | Mapping[str, Sequence[int]]) -> dict[str, Sequence[int]]:
    if isinstance(model, nn.Module):
        return {k: tuple(v.shape) for k, v in model.named_parameters()}
    return {k: tuple(v.shape) if torch.is_tensor(v) else tuple(v) for k, v in model.items()}


# tensors that make a file another method's own: the node it belongs to
OTHER_METHODS = {"dwpose_embedding.": "UniAnimate-DiT's file (its pose encoders): load it with Load UniAnimate-DiT",
                 "randomref_embedding_pose.": "UniAnimate-DiT's file (its pose encoders): load it with Load "
                                              "UniAnimate-DiT",
                 "face_encoder.": "a Wan2.2-Animate DiT (its face encoder): load it with Load Wan2.2-Animate",
                 "motion_encoder.": "a Wan2.2-Animate DiT (its motion encoder): load it with Load Wan2.2-Animate"}


def parse_lora(state_dict: Mapping[str, torch.Tensor], model: nn.Module | Mapping[str, Sequence[int]],
               name: str = "LoRA", total: int | None = None) -> Lora:
    """Resolve a LoRA state dict against the DiT's parameters (a model, or key -> shape).

    Raises InputError for a LoRA that fits nothing, a broken pair, an
    unsupported kind (LoCon mid / DoRA) or a shape that does not fit; warns
    (by name, one line) about tensors it does not use, and refuses a file mostly unused or holding another
    method's own modules (:data:`OTHER_METHODS`). ``total``: the file's tensor count when the caller took
    some out before (UniAnimate's encoders); ``len(state_dict)`` otherwise.
    """
    targets = _Targets(_model_params(model))
    label = f"LoRA '{name}'"
    roles: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    lora = Lora(name)
    for key, tensor in state_dict.items():
        found = lora_role(key)
        if found is None:
            lora.extra[strip_wrapper_prefix(key, EXTRA_PREFIXES)[1]] = tensor
            continue
        stem, role = found
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(label, f"'{key}' holds NaN or infinite values (a damaged file, or one saved from a "
                             "diverged training)", "a LoRA with finite weights")
        if role == "unsupported":
            raise InputError(label, f"'{key}' is a LoCon/DoRA weight, which this loader does not merge",
                             "a plain LoRA (A/B or down/up pairs, optional alpha, .diff deltas)")
        roles.setdefault(stem, {})[role] = (key, tensor)
    if not roles:
        raise InputError(label, f"holds no LoRA weights (found keys like {sample_keys(state_dict)})", EXPECTED_LORA)
    diffusers = is_diffusers_layout(strip_wrapper_prefix(s)[1] for s in roles if not s.startswith(KOHYA_PREFIX))
    misfits: list[str] = []
    for stem, parts in roles.items():
        module = targets.module(stem, diffusers)
        for role, (key, tensor) in parts.items():
            if role == "alpha":
                continue
            target = targets.parameter(module, role) if module is not None else None
            if target is None:
                lora.unmatched.append(key)
                continue
            update = _update(label, target, key, role, tensor, parts)
            if update is None:
                continue
            misfit = _misfit(update, targets.shapes[target])
            if misfit is not None:
                misfits.append(misfit)
            elif not misfits:
                lora.updates.setdefault(target, []).append(update)
    if misfits:
        more = f"; {len(misfits) - 1} more of its weights do not fit either" if len(misfits) > 1 else ""
        raise InputError(label, misfits[0] + more, EXPECTED_LORA)
    if not lora.updates:
        raise InputError(label, f"is a LoRA for another architecture: none of its {len(lora.unmatched)} weights "
                         f"match a Wan DiT parameter (keys like {sample_keys(lora.unmatched)})", EXPECTED_LORA)
    for what in dict.fromkeys(OTHER_METHODS.values()):
        foreign = sorted(k for k in lora.extra if any(m in k for m, w in OTHER_METHODS.items() if w == what))
        if foreign:
            raise InputError(label, f"is {what} ({len(foreign)} tensor(s) like {sample_keys(foreign, 2)} that a "
                             "LoRA loader does not use)", EXPECTED_LORA)
    report_unused(label, [*lora.unmatched, *lora.extra], total or len(state_dict), "Wan DiT LoRA", EXPECTED_LORA)
    return lora


def _update(label: str, target: str, key: str, role: str, tensor: torch.Tensor,
            parts: Mapping[str, tuple[str, torch.Tensor]]) -> LoraUpdate | None:
    """The update one file key contributes (the 'up' key of a pair carries the pair)."""
    alpha = float(parts["alpha"][1].float().item()) if "alpha" in parts else None
    if role in ("diff", "diff_b"):
        return LoraUpdate(target, key, diff=tensor)
    if role == "bias":
        return LoraUpdate(target, key, diff=tensor, alpha=alpha, diff_scaled=True,
                          down=parts["down"][1] if "down" in parts else None)
    other = "down" if role == "up" else "up"
    if other not in parts:
        raise InputError(label, f"'{key}' has no matching {other} weight", "LoRA weights in up/down (B/A) pairs")
    if role == "down":
        return None
    return LoraUpdate(target, key, up=tensor, down=parts["down"][1], alpha=alpha)


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _misfit(update: LoraUpdate, shape: tuple[int, ...]) -> str | None:
    """Why ``update`` does not fit a parameter of ``shape`` (naming the file key and both shapes), or None."""
    numel = 1
    for s in shape:
        numel *= s
    if update.diff is not None:
        if _squeezed(update.diff.shape) == _squeezed(shape):  # a modulation may come as [6, dim] or [1, 6, dim]
            return None
        return (f"'{update.source}' has shape {list(update.diff.shape)}, which does not fit '{update.target}' "
                f"of shape {list(shape)}{_kind_hint(update, shape)}")
    up, down = update.up, update.down
    fits = (up.dim() >= 2 and down.dim() >= 2 and up.shape[0] == shape[0] and up[0].numel() == down.shape[0]
            and up.shape[0] * down[0].numel() == numel)
    if fits:
        return None
    return (f"'{update.source}' (up {list(up.shape)}, down {list(down.shape)}) does not fit "
            f"'{update.target}' of shape {list(shape)}{_kind_hint(update, shape)}")


def _kind_hint(update: LoraUpdate, shape: tuple[int, ...]) -> str:
    """What a misfit of the input layer means: a LoRA for the other kind of Wan DiT (T2V on I2V ...)."""
    if not update.target.startswith("patch_embedding.weight") or len(shape) < 2:
        return ""
    if update.down is not None:
        channels = int(update.down.shape[1]) if update.down.dim() == 5 else None
        width = int(update.up.shape[0])
    else:
        channels = int(update.diff.shape[1]) if update.diff.dim() == 5 else None
        width = int(update.diff.shape[0])
    if channels is None or width != shape[0] or channels == shape[1]:
        return ""
    kinds = {16: "T2V", 36: "I2V", 48: "Wan2.2 TI2V 5B"}
    return (f" (the LoRA is for a {kinds.get(channels, f'{channels}-channel')} DiT, the model is "
            f"{kinds.get(shape[1], f'a {shape[1]}-channel DiT')})")


def load_lora(path: str | Path, model: nn.Module | Mapping[str, Sequence[int]]) -> Lora:
    """Read a LoRA file and resolve it against ``model``'s parameters."""
    return parse_lora(read_lora_file(path), model, Path(path).name)


# ---------------------------------------------------------------- merging
@dataclass
class _Backup:
    weight: torch.Tensor
    scale: torch.Tensor | None
    had_scale: bool


class MergedLoras:
    """LoRAs merged into a model's weights; :meth:`restore` puts the originals back bit for bit.

    Merges stack: restore them in reverse order (the last merged first).
    """

    def __init__(self, model: nn.Module, backups: dict[str, _Backup], loras: list[tuple[Lora, float]]):
        self.model = model
        self.backups = backups
        self.loras = loras

    @property
    def touched(self) -> list[str]:
        return list(self.backups)

    def restore(self) -> None:
        stack = getattr(self.model, "_merged_loras", [])
        if not stack or stack[-1] is not self:
            raise RuntimeError("restore LoRA merges in reverse order of merging (or this one was already restored)")
        for key, backup in self.backups.items():
            module_name, _, param = key.rpartition(".")
            module = self.model.get_submodule(module_name) if module_name else self.model
            device = getattr(module, param).device
            set_module_tensor(module, param, backup.weight.to(device))
            if backup.had_scale:
                set_module_tensor(module, "scale_weight", backup.scale)
        stack.pop()
        self.backups = {}


@torch.no_grad()
def merge_loras(model: nn.Module, loras: Sequence[tuple[Lora, float]], backup_device: torch.device | str = "cpu",
                fp8_merged_dtype: torch.dtype = torch.bfloat16) -> MergedLoras:
    """Add ``strength * delta`` of each ``(lora, strength)`` into ``model``'s weights, in place.

    Returns the handle that restores them. Deltas of all LoRAs are summed in
    float32 first, so the weight is rounded once.
    """
    totals: dict[str, torch.Tensor] = {}
    for lora, strength in loras:
        check_strength(strength, lora.name)
        for target, updates in lora.updates.items():
            param = model.get_parameter(target)
            for update in updates:
                delta = update.delta(param.shape, param.device) * float(strength)
                totals[target] = totals[target] + delta if target in totals else delta
    backups: dict[str, _Backup] = {}
    for target, delta in totals.items():
        module_name, _, param_name = target.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        weight = getattr(module, param_name)
        scale = getattr(module, "scale_weight", None) if param_name == "weight" else None
        has_scale = torch.is_tensor(scale)
        backups[target] = _Backup(weight.detach().to(backup_device), scale, has_scale)
        if is_fp8(weight.dtype) or has_scale:
            merged = dequantize(weight, scale if has_scale else None, torch.float32) + delta
            dtype = fp8_merged_dtype if is_fp8(weight.dtype) else weight.dtype
            set_module_tensor(module, param_name, merged.to(dtype))
            if has_scale:
                set_module_tensor(module, "scale_weight", torch.ones((), dtype=torch.float32, device=scale.device))
        else:
            set_module_tensor(module, param_name, (weight.float() + delta).to(weight.dtype))
    handle = MergedLoras(model, backups, list(loras))
    if not hasattr(model, "_merged_loras"):
        object.__setattr__(model, "_merged_loras", [])
    model._merged_loras.append(handle)
    return handle


def check_strength(strength: float, name: str = "LoRA") -> float:
    """``strength`` as a float; any finite value (above 1, negative) is taken, NaN and infinity are refused."""
    value = float(strength)
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"strength of LoRA '{name}'", f"is {value}", "a finite number (1.0 is what it was trained "
                         "with; distill LoRAs are often run at 1 to 3)")
    return value


def extra_tensors(loras: Iterable[Lora]) -> dict[str, torch.Tensor]:
    """The non-LoRA tensors of several LoRAs together (later files win on equal names)."""
    merged: dict[str, torch.Tensor] = {}
    for lora in loras:
        merged.update(lora.extra)
    return merged
