"""The one place where the core meets ComfyUI.

Device and memory, progress, interruption and model folders. Inside ComfyUI
each call goes to the host (its model management, ProgressBar, interrupt flag
and folder_paths); outside it, the same call falls back to plain torch, so the
core never asks which host it runs in. Nothing else in the core imports comfy.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import InputError, short_name
from .host_contract import (FALLBACKS, FP8_MIXED_OPS, FP8_SCALED_OPS, LATENT_PREVIEWS, PROGRESS_TEXT, HostFeatures,
                            probe, range_notice)

log = logging.getLogger(__name__)

POSE_MODEL_FOLDER = "poseanimate_pose"  # registered ComfyUI folder for the pose ONNX models


_features: HostFeatures | None = None
_checked = False


def host_features() -> HostFeatures | None:
    """What the running ComfyUI offers (looked up once per process, by feature and signature: see
    host_contract.py); None outside ComfyUI."""
    global _features, _checked
    if not _checked:
        _checked = True
        try:
            import comfy.model_management  # noqa: F401
            import folder_paths  # noqa: F401
        except ImportError:
            _features = None
        else:
            _features = probe()
    return _features


def in_host() -> bool:
    return host_features() is not None


def check_host() -> None:
    """At pack load: stop with one line when the host lacks a required piece; say once when it is outside
    the tested range or lacks an optional feature (and what the pack does instead)."""
    features = host_features()
    if features is None:
        return
    problem = features.incompatibility()
    if problem:
        raise HostIncompatible(problem)
    notice = range_notice(features.version)
    if notice:
        log.warning("%s", notice)
    if features.fp8_layers is None:
        log.info("ComfyUI %s has no scaled-fp8 layers the pack knows: %s; update ComfyUI to keep fp8 files "
                 "in its own layers", features.version, FALLBACKS["fp8"])
    for feature in (PROGRESS_TEXT, LATENT_PREVIEWS):
        if not features.has(feature):
            log.info("ComfyUI %s has no %s: %s; update ComfyUI for it", features.version, feature,
                     FALLBACKS[feature])


@short_name
class HostIncompatible(RuntimeError):
    """The running ComfyUI lacks something the pack cannot run without (raised at load time)."""


# ---------------------------------------------------------------- devices
def compute_device() -> torch.device:
    """Where models run: the host's choice, else CUDA when present, else CPU."""
    if in_host():
        import comfy.model_management as mm
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    if in_host():
        import comfy.model_management as mm
        return mm.unet_offload_device()
    return torch.device("cpu")


def operations(weight_dtype: torch.dtype | None = None, compute_dtype: torch.dtype | None = None,
               scaled_fp8: torch.dtype | None = None) -> Any:
    """Layer classes for building models: ComfyUI's ``comfy.ops`` in the host (low-VRAM weight
    streaming), the pack's casting layers outside.

    ``scaled_fp8`` (the fp8 format of a scaled-fp8 file whose weights stay fp8) asks for layers that
    keep fp8 weights with their scales: the host's per-layer quantization ops where it has them
    (ComfyUI 0.8 and newer), its scaled-fp8 ops in older hosts, the pack's own layers in a host with
    neither. ``models/checkpoint/fp8.py`` puts the weights on whichever layers these are.
    """
    features = host_features()
    if features is None:
        from .models.ops import CastOps
        return CastOps
    import comfy.ops
    kwargs: dict[str, Any] = {"load_device": compute_device()}
    if scaled_fp8 is not None:
        if features.fp8_layers == FP8_MIXED_OPS:
            kwargs["model_config"] = _QuantizedLayers()
            compute_dtype = compute_dtype or torch.bfloat16  # the host's layers need a concrete one
        elif features.fp8_layers == FP8_SCALED_OPS:
            kwargs["scaled_fp8"] = scaled_fp8
        else:
            from .models.ops import CastOps
            return CastOps
    return comfy.ops.pick_operations(weight_dtype, compute_dtype, **kwargs)


class _QuantizedLayers:
    """The part of a host model config that turns on its per-layer quantization ops: each Linear then
    reads its format from a ``comfy_quant`` entry when its weights are loaded."""

    quant_config = {"mixed_ops": True}


def manage(model: torch.nn.Module) -> Any:
    """Hand a model to the host's memory manager: a ModelPatcher inside ComfyUI
    (so the host can load, offload and free it), the module itself outside."""
    if in_host():
        import comfy.model_patcher
        return comfy.model_patcher.ModelPatcher(model, load_device=compute_device(),
                                                offload_device=offload_device())
    return model


def add_lora_patches(managed: Any, updates: dict[str, list[Any]], strength: float) -> Any:
    """A copy of ``managed`` with LoRA updates applied, the host's way inside ComfyUI.

    ``updates`` maps a parameter key to objects with ``up``, ``down``, ``alpha``
    and ``diff`` (models/lora.py's LoraUpdate). Inside the host they become the
    host's own weight patches on a clone of the ModelPatcher, applied (and
    removed) as it loads and unloads the model, low-VRAM streaming included.
    A parameter the host's loader never patches (a block's ``modulation``:
    its module has sub-modules) goes in merged, as an object patch.
    Outside the host the caller merges with models/lora.py instead; this
    returns ``managed`` unchanged there.
    """
    if not in_host():
        return managed
    from comfy.weight_adapter import LoRAAdapter
    patched = managed.clone()
    rounds: list[dict[str, Any]] = []  # the host takes one patch per key per call
    for key, items in updates.items():
        if _outside_load_list(patched.model, key):
            _add_merged_object_patch(patched, key, items, strength)
            continue
        for r, update in enumerate(items):
            if len(rounds) <= r:
                rounds.append({})
            if update.diff is not None:
                diff = update.diff * update.scale if getattr(update, "diff_scaled", False) else update.diff
                rounds[r][key] = ("diff", (diff,))
            else:
                rounds[r][key] = LoRAAdapter(set(), (update.up, update.down, update.alpha, None, None, None))
    for patches in rounds:
        patched.add_patches(patches, strength)
    return patched


def _outside_load_list(model: torch.nn.Module, key: str) -> bool:
    """Whether ``key`` is a parameter of a module that also has sub-modules with parameters (a block's
    ``modulation``, the head's). The host's loader walks only modules whose parameters are all their own and
    never applies a weight patch to such a parameter: a LoRA's delta on it would be dropped silently."""
    module_name, _, _ = key.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        return False
    return any(True for child in module.children() for _ in child.parameters())


def _add_merged_object_patch(patched: Any, key: str, items: list[Any], strength: float) -> None:
    """Put ``key``'s LoRA deltas on the host's patcher as an object patch: the merged parameter, which the
    host swaps in when it loads the model and takes out (restoring the original) when it unloads it.
    Such parameters are small (a modulation is 6 x width), so the merged copy costs little."""
    current = patched.object_patches.get(key)
    if current is None:
        current = patched.object_patches_backup.get(key)  # the original while another clone is patched in
    if current is None:
        current = patched.model.get_parameter(key)
    merged = current.detach().float()
    for update in items:
        merged = merged + update.delta(tuple(current.shape), current.device) * float(strength)
    patched.add_object_patch(key, torch.nn.Parameter(merged.to(current.dtype), requires_grad=False))


def load_to_device(model: Any) -> Any:
    """Make ``model`` ready to run. In the host ``model`` is a ModelPatcher and is
    loaded through ``load_models_gpu`` so the host sees and can free its memory."""
    if in_host() and hasattr(model, "model") and hasattr(model, "load_device"):
        import comfy.model_management as mm
        mm.load_models_gpu([model])
        return model.model
    if isinstance(model, torch.nn.Module):
        return model.to(compute_device())
    return model


def free_memory() -> None:
    """Release cached allocator memory after an interrupted or finished run."""
    if in_host():
        import comfy.model_management as mm
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- interruption
class Interrupted(RuntimeError):
    """Raised outside the host when :func:`request_interrupt` was called."""


_interrupt = threading.Event()


def request_interrupt() -> None:
    """Ask the running loop to stop at its next check (outside the host)."""
    if in_host():
        import comfy.model_management as mm
        mm.interrupt_current_processing(True)
    else:
        _interrupt.set()


def interrupt_check(check: Callable[[], None] | None = None) -> Callable[[], None]:
    """``check``, or the host's interrupt check when None: the one place the core's long loops (the
    sampler's building blocks, the streamed VAE) take their default from."""
    return check if check is not None else check_interrupt


def check_interrupt() -> None:
    """Raise if the user asked to stop: the host's exception inside ComfyUI."""
    if in_host():
        import comfy.model_management as mm
        mm.throw_exception_if_processing_interrupted()
    elif _interrupt.is_set():
        _interrupt.clear()
        raise Interrupted("run interrupted")


# ---------------------------------------------------------------- progress
class Progress:
    """Progress over ``total`` steps: the host's ProgressBar (with latent previews) or a callback.

    ``latent_format`` names the latent space of the previews ``update`` gets
    (``"wan21"``: the Wan DiT's normalised latent); inside the host they are
    turned into the preview images its front end shows, the host's own way.
    """

    def __init__(self, total: int, callback: Callable[[int, int], None] | None = None,
                 latent_format: str | None = None):
        self.total = total
        self.current = 0
        self._callback = callback
        self._bar = None
        self._previewer = None
        self._pending_preview: Any = None
        if in_host():
            import comfy.utils
            self._bar = comfy.utils.ProgressBar(total)
            features = host_features()
            if latent_format is not None and features is not None and features.has(LATENT_PREVIEWS):
                self._previewer = _host_previewer(latent_format)

    def update(self, steps: int = 1, preview: Any = None) -> None:
        """Advance by ``steps``; ``preview`` is a latent ``[B, C, T, H, W]`` to show, or None.

        Each value is reported once: a preview given without a step (``steps=0``, the sampler's
        per-step callback) waits for the step that follows and goes out with it, since the host
        sends every update that carries an image, so reporting it at once repeated the value.
        """
        if preview is not None:
            self._pending_preview = preview
        if steps <= 0:
            return
        self.current = min(self.total, self.current + steps)
        preview, self._pending_preview = self._pending_preview, None
        if self._bar is not None:
            image = None
            if preview is not None and self._previewer is not None:
                image = self._previewer.decode_latent_to_preview_image("JPEG", preview.detach().float().cpu())
            self._bar.update_absolute(self.current, self.total, image)
        if self._callback is not None:
            self._callback(self.current, self.total)


def progress_text(text: str) -> None:
    """Show ``text`` on the running node (the host's progress text, e.g. "window 3/7, step 12/30");
    logged at debug level outside the host or when the host cannot show it."""
    features = host_features()
    if features is not None and features.has(PROGRESS_TEXT):
        from comfy_execution.utils import get_executing_context
        from server import PromptServer
        context = get_executing_context()
        if context is not None and PromptServer.instance is not None:
            PromptServer.instance.send_progress_text(text, context.node_id)
            return
    log.debug("%s", text)


def _host_previewer(latent_format: str) -> Any:
    """The host's latent previewer for a latent space (None when previews are off)."""
    import comfy.latent_formats
    import latent_preview
    formats = {"wan21": comfy.latent_formats.Wan21}
    return latent_preview.get_previewer(torch.device("cpu"), formats[latent_format]())


# ---------------------------------------------------------------- model folders
def _standalone_models_root() -> Path:
    return Path(os.environ.get("POSEANIMATE_MODELS", Path(__file__).resolve().parent / "models_dir"))


def register_model_folders() -> None:
    """Register the pack's own folder for pose ONNX models with the host."""
    if not in_host():
        return
    import folder_paths
    folder_paths.add_model_folder_path(POSE_MODEL_FOLDER, os.path.join(folder_paths.models_dir, POSE_MODEL_FOLDER),
                                       is_default=True)
    paths, extensions = folder_paths.folder_names_and_paths[POSE_MODEL_FOLDER]
    # an extra_model_paths.yaml entry may have created the folder with no extension filter
    folder_paths.folder_names_and_paths[POSE_MODEL_FOLDER] = (paths, set(extensions) | {".onnx"})


def list_model_files(folder: str) -> list[str]:
    """File names in a model folder, as the dropdowns list them."""
    if in_host():
        import folder_paths
        return folder_paths.get_filename_list(folder)
    root = _standalone_models_root() / folder
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def model_file(folder: str, name: str) -> str:
    """Resolve a model file name from a workflow to a path inside ``folder``.

    Names that would escape the folder (absolute paths, ``..``) are refused;
    a missing file is an error that names the file and the folder.
    """
    if not name or os.path.isabs(name) or ".." in Path(name).parts:
        raise InputError(f"model file '{name}'", "is not a plain file name inside the model folder",
                         f"a file listed in ComfyUI/models/{folder}/")
    if in_host():
        import folder_paths
        path = folder_paths.get_full_path(folder, name)
        if path is None:
            raise InputError(f"model file '{name}'", f"was not found in the '{folder}' model folder",
                             f"the file placed in ComfyUI/models/{folder}/ (see the README's model table)")
        return path
    root = _standalone_models_root() / folder
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        raise InputError(f"model file '{name}'", "escapes the model folder", f"a file inside models/{folder}/")
    if not path.exists():
        raise InputError(f"model file '{name}'", f"was not found in the '{folder}' model folder",
                         f"the file placed in models/{folder}/ (see the README's model table)")
    return str(path)


def _model_roots() -> list[tuple[str, str]]:
    """(absolute folder, the name to show for it) of every model folder, longest first: inside the models
    directory its relative path (``loras``, ``diffusion_models``), elsewhere (extra_model_paths) its kind."""
    roots: dict[str, str] = {}
    if in_host():
        import folder_paths
        base = os.path.normpath(folder_paths.models_dir)
        for kind, (paths, _extensions) in folder_paths.folder_names_and_paths.items():
            for folder in paths:
                folder = os.path.normpath(folder)
                inside = folder.startswith(base + os.sep)
                roots.setdefault(folder, os.path.relpath(folder, base).replace(os.sep, "/") if inside else kind)
        roots.setdefault(base, "models")
    else:
        for base in {os.path.normpath(_standalone_models_root()), os.path.realpath(_standalone_models_root())}:
            roots[base] = "models"
            if os.path.isdir(base):
                roots.update({entry.path: entry.name for entry in os.scandir(base) if entry.is_dir()})
    return sorted(roots.items(), key=lambda item: -len(item[0]))


def relative_model_paths(text: str) -> str:
    """``text`` with every absolute model-folder path replaced by its folder-relative name
    (``/home/me/ComfyUI/models/loras/x.ckpt`` -> ``loras/x.ckpt``), so messages show no user's directories."""
    try:
        roots = _model_roots()
    except Exception:  # noqa: BLE001 - a message is still better shown unchanged than not at all
        return text
    for folder, label in roots:
        text = text.replace(folder + os.sep, label + "/").replace(folder, label)
    return text


# ---------------------------------------------------------------- canvas previews
def temp_preview_images(images: Any, prefix: str = "poseanimate_preview") -> list[dict[str, str]]:
    """Save small preview frames (uint8 ``[N, H, W, 3]``) as JPEG files in the host's
    temp folder, for a node's UI output; the front end fetches them from ``/view``.

    Returns one ``{"filename", "subfolder", "type": "temp"}`` per frame, the way the
    host's own preview nodes describe images. The host empties its temp folder when
    it starts. Outside the host there is no front end to show them: nothing is
    written and the list is empty.
    """
    if not in_host():
        return []
    import uuid

    import folder_paths
    from PIL import Image
    subfolder = "poseanimate"
    folder = os.path.join(folder_paths.get_temp_directory(), subfolder)
    os.makedirs(folder, exist_ok=True)
    run = uuid.uuid4().hex[:12]
    saved = []
    for i, image in enumerate(images):
        name = f"{prefix}_{run}_{i:04d}.jpg"
        Image.fromarray(image).save(os.path.join(folder, name), quality=85)
        saved.append({"filename": name, "subfolder": subfolder, "type": "temp"})
    return saved
