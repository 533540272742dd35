"""Checks every node's inputs go through, applied once by the node registry (nodes/__init__.py).

The host checks a FLOAT widget against its ``min`` and ``max``, but NaN compares false with both and
passes: a NaN cfg or LoRA strength would run and give an all-black video. :func:`guard_node` wraps a
node class's FUNCTION so that every argument declared FLOAT in its INPUT_TYPES is checked to be a
finite number before the node does any work, with the pack's one-line InputError; a node that fails
or is interrupted has the host free its cached memory on the way out.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any

from .. import host
from ..errors import InputError

GUARDED = "_poseanimate_guarded"


def check_finite(name: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    """``value`` is a finite real number (bools are not numbers here); else an InputError naming ``name``."""
    bounds = f" from {low} to {high}" if low is not None and high is not None else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(name, f"is {type(value).__name__} {value!r}", f"a number{bounds}")
    if not math.isfinite(value):
        raise InputError(name, f"is {value} (not a finite number)", f"a finite number{bounds}")


def float_inputs(cls: type) -> dict[str, dict]:
    """Name -> options of every input ``cls`` declares FLOAT (required and optional)."""
    declared = cls.INPUT_TYPES()
    found = {}
    for section in ("required", "optional"):
        for name, spec in (declared.get(section) or {}).items():
            if isinstance(spec, (tuple, list)) and spec and spec[0] == "FLOAT":
                found[name] = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return found


def check_float_inputs(cls: type, arguments: dict[str, Any]) -> None:
    """Every FLOAT input of ``cls`` present in ``arguments`` is finite."""
    for name, options in float_inputs(cls).items():
        if name in arguments and arguments[name] is not None:
            check_finite(name, arguments[name], options.get("min"), options.get("max"))


def guard_node(cls: type) -> type:
    """Wrap ``cls``'s FUNCTION so its FLOAT inputs are checked before it runs and memory is freed when it
    fails (once per class)."""
    function_name = getattr(cls, "FUNCTION", None)
    method = getattr(cls, function_name, None) if function_name else None
    if method is None or getattr(method, GUARDED, False):
        return cls
    signature = inspect.signature(method)
    floats: dict[str, dict] = {}  # looked up at the first run (INPUT_TYPES may list model folders)

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not floats:
            floats.update(float_inputs(cls) or {"": {}})
        arguments = dict(kwargs)
        for name, value in signature.bind_partial(*args, **kwargs).arguments.items():
            if signature.parameters[name].kind is not inspect.Parameter.VAR_KEYWORD:
                arguments[name] = value
        for name, options in floats.items():
            if name in arguments and arguments[name] is not None:
                check_finite(name, arguments[name], options.get("min"), options.get("max"))
        try:
            return method(*args, **kwargs)
        except BaseException as err:
            host.free_memory()  # an interrupted or failed node leaves no cached device memory behind
            if isinstance(err, InputError):  # shown in the UI: folder-relative names, not the user's paths
                err.args = (host.relative_model_paths(str(err)),)
            raise

    setattr(checked, GUARDED, True)
    setattr(cls, function_name, checked)
    return cls


def guarded(nodes: dict[str, type]) -> dict[str, type]:
    for cls in nodes.values():
        guard_node(cls)
    return nodes


