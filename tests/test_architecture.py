"""The layering, read from the code: which package may import which (DESIGN.md, "Layers").

Imports are read with ``ast`` (every ``import``/``from ... import``, also those inside functions),
relative ones resolved against the pack, so a lazy import cannot hide a wrong dependency:

* ``sampling/`` owns the conditioning contract and never imports a method; ``models/`` never
  imports a method either (methods fill the DiT's extension points, not the other way round);
* the core (``models``, ``sampling``, ``methods``, ``pose``, ``video``) imports no ComfyUI module
  and none of the pack's nodes: only ``host.py`` meets ComfyUI;
* and the core really imports on its own: every core module imports in a fresh interpreter where
  any ComfyUI module would fail to import, without the pack's ``__init__`` (so without its nodes).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("models", "sampling", "methods", "pose", "video", "parallel")
COMFY_MODULES = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "folder_paths", "server",
                 "nodes", "latent_preview", "execution", "node_helpers", "app", "utils")
"""Top-level modules of a ComfyUI checkout. The pack imports its own modules relatively, so an absolute
``import nodes`` or ``import utils`` inside it is ComfyUI's."""


def pack_modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, module, relative)`` of every import in ``path``; relative ones as pack module names
    (``sampling.windows``), absolute ones as written (``torch``, ``comfy.ops``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or "", False))
                continue
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            if node.level - 1 > len(package):
                raise AssertionError(f"{path}:{node.lineno}: relative import above the pack")
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                found.append((node.lineno, target, True))
            else:  # from . import host, x: each name may be a module
                found += [(node.lineno, f"{target}.{alias.name}" if target else alias.name, True)
                          for alias in node.names]
    return found


def violations(packages, forbidden) -> list[str]:
    out = []
    for package in packages:
        for path in pack_modules(package):
            for line, module, relative in imports(path):
                if forbidden(module, relative):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {'.' if relative else ''}{module}")
    return out


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_import_reader_resolves_relative_imports(tmp_path):
    assert module_name(ROOT / "sampling" / "video.py") == "sampling.video"
    found = imports(ROOT / "sampling" / "video.py")
    assert (any(module == "sampling.conditioning" and relative for _, module, relative in found))
    assert any(module == "torch" and not relative for _, module, relative in found)
    found = imports(ROOT / "models" / "wan" / "dit.py")
    assert any(module == "errors" and relative for _, module, relative in found)  # from ...errors import


def test_sampling_never_imports_a_method():
    assert violations(["sampling"], lambda module, relative: relative and _inside(module, "methods")) == []


def test_models_never_import_a_method():
    assert violations(["models"], lambda module, relative: relative and _inside(module, "methods")) == []


def test_the_core_imports_no_comfyui_module_and_no_node():
    def forbidden(module: str, relative: bool) -> bool:
        if relative:
            return _inside(module, "nodes")
        return module.split(".")[0] in COMFY_MODULES

    assert violations(CORE, forbidden) == []


_PROBE = r"""
import importlib, importlib.abc, importlib.util, json, sys, types
root, core, comfy = sys.argv[1], json.loads(sys.argv[2]), set(json.loads(sys.argv[3]))

class NoComfy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in comfy:
            raise ImportError(f"the core imported ComfyUI's {name}")
        return None

sys.meta_path.insert(0, NoComfy())
pack = types.ModuleType("poseanimate")  # the package without its __init__: no nodes
pack.__path__ = [root]
sys.modules["poseanimate"] = pack
for name in core:
    importlib.import_module("poseanimate." + name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in comfy or m.startswith("poseanimate.nodes"))
print(json.dumps({"imported": len(core), "unexpected": loaded}))
"""


def test_the_core_imports_without_the_host():
    names = [module_name(p) for package in CORE for p in pack_modules(package)]
    names = [n for n in names if not n.endswith("__main__")]
    result = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT), json.dumps(names), json.dumps(COMFY_MODULES)],
                            capture_output=True, text=True, timeout=300, cwd=str(ROOT.parent))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"imported": len(names), "unexpected": []}


@pytest.mark.parametrize("package", CORE)
def test_every_core_package_is_read(package):
    assert pack_modules(package), f"no modules found under {package}/"
