"""ComfyUI-PoseAnimate: pose-driven character animation on the Wan 2.1/2.2 DiT.

ComfyUI imports this folder as a package and reads NODE_CLASS_MAPPINGS,
NODE_DISPLAY_NAME_MAPPINGS and WEB_DIRECTORY from it. The host is checked first
(host_contract.py): a ComfyUI that lacks what the pack needs stops the import
with one line that says what is missing.
"""
from . import host

host.check_host()

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
