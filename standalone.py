"""Import the pack outside ComfyUI, for tests, benchmarks and the command line.

The pack uses relative imports (its folder name under custom_nodes is not
fixed), so it must be imported as a package. This loads the folder this file
sits in under the fixed name ``poseanimate``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "poseanimate"
ROOT = Path(__file__).resolve().parent


def load_pack() -> ModuleType:
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module
