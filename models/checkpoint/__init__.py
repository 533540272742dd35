"""Checkpoint formats for the Wan DiT: files, the one key map, fp8, the one conversion path (convert.py), the loader."""
from .safetensors_files import CheckpointFiles, TensorReader, resolve_checkpoint
from .wan_dit import (STORAGE_DTYPES, CheckpointScan, WanCheckpointInfo, load_wan_dit, scan_checkpoint,
                      storage_dtype_from_name)
from .wan_keys import official_key_to_diffusers, to_official_keys

__all__ = ["STORAGE_DTYPES", "CheckpointFiles", "CheckpointScan", "TensorReader", "WanCheckpointInfo", "load_wan_dit",
           "official_key_to_diffusers", "resolve_checkpoint", "scan_checkpoint", "storage_dtype_from_name",
           "to_official_keys"]
