"""Everything the pack uses of ComfyUI, as data, and what a running host offers of it.

The host changes every week, so the seam (``host.py``) never asks for a
version: it asks this module, once per process, which of the features below
the running host has, checking each function's signature for the keyword
arguments the pack passes. A required piece that is gone stops the pack at load
time with one line that names the host version and the piece; an optional one
that is gone switches the pack to its fallback, said once in the log.

The same list drives the contract test (tests/integration/test_host_contract.py),
which runs it inside every vendored host and fails with a readable list of what
is missing. Nothing here imports ComfyUI at import time.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

# Tested in CI against every host source in shared/vendor/ (see README "Host versions").
OLDEST_TESTED = "0.3.64"
NEWEST_TESTED = "0.33.0"
MIN_FRONTEND = "1.27.10"  # the front end ComfyUI 0.3.64 pins; web/ uses nothing newer

# Optional features: the pack runs without them, with the fallback said once in the log.
FP8_SCALED_OPS = "fp8 layers: scaled_fp8_ops"        # hosts up to 0.3.x (scaled_fp8= passed only where it exists)
FP8_MIXED_OPS = "fp8 layers: mixed_precision_ops"    # hosts from 0.8: per-layer quantization (comfy_quant)
PROGRESS_TEXT = "progress text on the node"
LATENT_PREVIEWS = "latent previews"


@dataclass(frozen=True)
class Requirement:
    """One host attribute the pack uses: ``module.attribute`` (dotted for class members), with the
    keyword arguments the pack passes when it is callable. ``feature`` is None for a piece the pack
    cannot run without, else the name of the optional feature it belongs to."""

    module: str
    attribute: str
    kwargs: tuple[str, ...] = ()
    feature: str | None = None
    why: str = ""

    @property
    def name(self) -> str:
        call = f"({', '.join(k + '=' for k in self.kwargs)})" if self.kwargs else ""
        return f"{self.module}.{self.attribute}{call}"


R = Requirement
REQUIREMENTS: tuple[Requirement, ...] = (
    R("comfy.model_management", "get_torch_device", why="the compute device"),
    R("comfy.model_management", "unet_offload_device", why="where weights wait between runs"),
    R("comfy.model_management", "load_models_gpu", why="loading the DiT through the host's memory manager"),
    R("comfy.model_management", "current_loaded_models", why="the host's list of loaded models"),
    R("comfy.model_management", "soft_empty_cache", why="freeing memory after a run"),
    R("comfy.model_management", "interrupt_current_processing", why="stopping a run"),
    R("comfy.model_management", "throw_exception_if_processing_interrupted", why="the queue's interrupt"),
    R("comfy.model_management", "InterruptProcessingException", why="the queue's interrupt"),
    R("comfy.ops", "pick_operations", ("load_device",), why="the host's layers (low-VRAM streaming)"),
    R("comfy.ops", "disable_weight_init", why="the host's layers"),
    R("comfy.ops", "manual_cast", why="the host's casting layers"),
    R("comfy.model_patcher", "ModelPatcher", ("load_device", "offload_device"), why="the host's model manager"),
    R("comfy.model_patcher", "ModelPatcher.clone", why="LoRAs on a copy of the model"),
    R("comfy.model_patcher", "ModelPatcher.add_patches", why="LoRAs as the host's weight patches"),
    R("comfy.weight_adapter", "LoRAAdapter", why="LoRAs as the host's weight patches"),
    R("comfy.utils", "ProgressBar", why="the node's progress bar"),
    R("comfy.utils", "ProgressBar.update_absolute", why="the node's progress bar"),
    R("folder_paths", "models_dir", why="model folders"),
    R("folder_paths", "folder_names_and_paths", why="model folders"),
    R("folder_paths", "add_model_folder_path", ("is_default",), why="the pose-model folder"),
    R("folder_paths", "get_filename_list", why="model dropdowns"),
    R("folder_paths", "get_full_path", why="model files"),
    R("folder_paths", "get_folder_paths", why="model folders"),
    R("folder_paths", "get_temp_directory", why="canvas previews"),
    R("comfy.ops", "pick_operations", ("scaled_fp8",), FP8_SCALED_OPS, "fp8-scaled files kept in fp8"),
    R("comfy.ops", "scaled_fp8_ops", (), FP8_SCALED_OPS, "fp8-scaled files kept in fp8"),
    R("comfy.ops", "pick_operations", ("model_config",), FP8_MIXED_OPS, "fp8-scaled files kept in fp8"),
    R("comfy.ops", "mixed_precision_ops", ("quant_config", "compute_dtype", "disabled"), FP8_MIXED_OPS,
      "fp8-scaled files kept in fp8"),
    R("comfy_execution.utils", "get_executing_context", (), PROGRESS_TEXT, "'window w/W, step s/S' on the node"),
    R("server", "PromptServer.send_progress_text", (), PROGRESS_TEXT, "'window w/W, step s/S' on the node"),
    R("latent_preview", "get_previewer", (), LATENT_PREVIEWS, "previews while sampling"),
    R("comfy.latent_formats", "Wan21", (), LATENT_PREVIEWS, "previews while sampling"),
)
# What web/ calls in the front end: module exports and members of a node on the canvas (checked by the browser
# suite in the newest host, tests/browser/test_workflows_in_frontend.py).
FRONTEND_MODULE_EXPORTS: dict[str, tuple[str, ...]] = {
    "/scripts/app.js": ("app",),
    "/scripts/api.js": ("api",),
}
FRONTEND_CALLS = ("app.registerExtension", "api.apiURL")
FRONTEND_NODE_MEMBERS = ("addDOMWidget", "setSize", "setDirtyCanvas", "computeSize", "widgets", "size", "id")

FALLBACKS = {  # what the pack does without a feature (either fp8 generation serves: HostFeatures.fp8_layers)
    "fp8": "fp8-scaled files run on the pack's own fp8 layers (kept in fp8, without the host's low-VRAM streaming)",
    PROGRESS_TEXT: "window and step go to the log instead",
    LATENT_PREVIEWS: "no previews while sampling",
}


@dataclass(frozen=True)
class HostFeatures:
    """What the running host offers the pack: its version, the pieces that are missing, and for each
    optional feature whether it is there."""

    version: str
    missing: tuple[Requirement, ...] = ()
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def required_missing(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.missing if r.feature is None)

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def fp8_layers(self) -> str | None:
        """Which host layers keep scaled fp8 weights in fp8: the per-layer quantization of hosts from
        0.8 (preferred when both exist), the scaled-fp8 ops of older ones, or None (the pack's own)."""
        if self.has(FP8_MIXED_OPS):
            return FP8_MIXED_OPS
        if self.has(FP8_SCALED_OPS):
            return FP8_SCALED_OPS
        return None

    def problems(self) -> list[str]:
        """One readable line per missing piece (required ones first)."""
        lines = []
        for r in sorted(self.missing, key=lambda r: r.feature is not None):
            kind = "required" if r.feature is None else f"optional ({r.feature})"
            lines.append(f"{r.name}: missing, {kind}; used for {r.why}")
        return lines

    def incompatibility(self) -> str | None:
        """The one-line load-time error for a host the pack cannot run in, or None."""
        required = self.required_missing
        if not required:
            return None
        names = ", ".join(r.name for r in required)
        return (f"ComfyUI-PoseAnimate cannot run in ComfyUI {self.version}: it lacks {names}. "
                f"The pack is tested with ComfyUI {OLDEST_TESTED} to {NEWEST_TESTED}; update ComfyUI, or the "
                "pack if this ComfyUI is newer.")


def _lookup(module: Any, dotted: str) -> Any:
    value = module
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _accepts(fn: Any, kwargs: tuple[str, ...]) -> bool:
    if not kwargs:
        return True
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True  # a builtin without a signature: cannot tell, assume it takes them
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(k in params for k in kwargs)


def check(requirement: Requirement, importer: Callable[[str], Any] = importlib.import_module) -> bool:
    """True when the host has ``requirement``: the module imports, the attribute exists, and a callable
    takes the keyword arguments the pack passes."""
    try:
        value = _lookup(importer(requirement.module), requirement.attribute)
    except (ImportError, AttributeError):
        return False
    except Exception as exc:  # a host module that fails to import for its own reasons
        log.debug("importing %s failed: %s", requirement.module, exc)
        return False
    return _accepts(value, requirement.kwargs)


def host_version(importer: Callable[[str], Any] = importlib.import_module) -> str:
    """The host's version (``comfyui_version.__version__``, else the one in its pyproject.toml)."""
    try:
        return str(importer("comfyui_version").__version__)
    except Exception:  # noqa: BLE001 - an old or unusual checkout
        pass
    try:
        root = Path(importer("folder_paths").__file__).resolve().parent
        for line in (root / "pyproject.toml").read_text().splitlines():
            if line.strip().startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    except Exception:  # noqa: BLE001
        pass
    return "unknown"


def probe(importer: Callable[[str], Any] = importlib.import_module,
          requirements: tuple[Requirement, ...] = REQUIREMENTS) -> HostFeatures:
    """Check every requirement against the host ``importer`` reaches (the real one by default)."""
    missing = tuple(r for r in requirements if not check(r, importer))
    features = {r.feature for r in requirements if r.feature is not None}
    features -= {r.feature for r in missing if r.feature is not None}
    return HostFeatures(host_version(importer), missing, frozenset(features))


def version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in version.split("+")[0].split("-")[0].split("."))
    except ValueError:
        return None


def range_notice(version: str) -> str | None:
    """One line when the host is outside the tested range (or its version cannot be read), else None."""
    found = version_tuple(version)
    if found is None:
        return (f"ComfyUI-PoseAnimate: this ComfyUI's version could not be read ('{version}'); the pack is "
                f"tested with {OLDEST_TESTED} to {NEWEST_TESTED}")
    if found < version_tuple(OLDEST_TESTED):
        return (f"ComfyUI-PoseAnimate: ComfyUI {version} is older than the oldest tested ({OLDEST_TESTED}); "
                "update ComfyUI if a node fails")
    if found > version_tuple(NEWEST_TESTED):
        return (f"ComfyUI-PoseAnimate: ComfyUI {version} is newer than the newest tested ({NEWEST_TESTED}); "
                "the pack checked what it uses and found it, but report anything that breaks")
    return None
