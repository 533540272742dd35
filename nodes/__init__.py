"""The pack's nodes (legacy ComfyUI node API: plain classes; see README, developer section)."""
from __future__ import annotations

from .. import host
from .input_checks import guarded
from . import (animate2_nodes, dit_loaders, pose_data_nodes, pose_extract_nodes, pose_render_nodes,
               realisdance_nodes, sampler_nodes, steadydancer_nodes,
               unianimate_nodes, vae_nodes, video_nodes, wan_animate_nodes)

host.register_model_folders()

_MODULES = (dit_loaders, pose_extract_nodes, pose_data_nodes, pose_render_nodes, unianimate_nodes, realisdance_nodes,
            wan_animate_nodes, animate2_nodes, steadydancer_nodes, sampler_nodes, vae_nodes, video_nodes)
# every node's FLOAT inputs are checked finite before it runs (input_checks.py)
NODE_CLASS_MAPPINGS: dict[str, type] = guarded({k: cls for m in _MODULES for k, (cls, _) in m.NODES.items()})
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {k: name for m in _MODULES for k, (_, name) in m.NODES.items()}
