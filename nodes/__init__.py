"""The pack's nodes (legacy ComfyUI node API: plain classes; see README, developer section)."""
from __future__ import annotations

from .. import host

host.register_model_folders()

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
