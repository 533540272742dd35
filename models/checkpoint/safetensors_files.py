"""Find a checkpoint's .safetensors files and read them one tensor at a time.

A 14B DiT is 28 GB in bf16: it must never be held twice. Files are opened
with ``safe_open`` and each tensor is read (and converted) only when asked for,
so the caller can put it in place before the next one is read.

Layouts understood here (key names are wan_keys.py's job):
- one ``.safetensors`` file (Comfy-Org repackaged, or any single file);
- the official sharded layout: ``diffusion_pytorch_model-0000k-of-0000n.safetensors``
  plus ``diffusion_pytorch_model.safetensors.index.json``, given as the index,
  any shard, the folder, or a list of the shard paths;
- the diffusers layout: a folder with ``transformer/`` holding ``config.json``
  and one or several ``diffusion_pytorch_model*.safetensors``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import torch

from ...errors import InputError, first_line

PathLike = Union[str, Path]
SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<index>\d+)-of-(?P<total>\d+)\.safetensors$")
INDEX_SUFFIX = ".safetensors.index.json"
NOT_SAFETENSORS = {
    ".pth": "a PyTorch pickle (in the official Wan folders the .pth files are the VAE, "
            "the T5 text encoder and the CLIP image encoder)",
    ".pt": "a PyTorch pickle",
    ".ckpt": "a PyTorch pickle",
    ".bin": "a PyTorch pickle",
    ".gguf": "a GGUF file (quantized models need the ComfyUI-GGUF loader)",
}
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
EXPECTED = "a Wan DiT .safetensors file, the official sharded folder (or its index.json), or a diffusers folder"


@dataclass
class CheckpointFiles:
    """Where a checkpoint's tensors live."""

    name: str                       # the path as the user gave it, for messages
    files: list[Path]
    layout: str                     # 'single' | 'sharded' | 'diffusers'
    config: dict = field(default_factory=dict)  # config.json beside the weights, {} if none
    weight_map: dict[str, str] | None = None    # key -> file name, from an index


def resolve_checkpoint(path_or_paths: PathLike | Sequence[PathLike]) -> CheckpointFiles:
    """The files of the checkpoint at ``path_or_paths`` (a file, a folder, an index or a list of shards)."""
    if isinstance(path_or_paths, (list, tuple)):
        paths = [Path(p) for p in path_or_paths]
        if len(paths) == 1:
            return resolve_checkpoint(paths[0])
        name = ", ".join(str(p) for p in paths)
        if not paths:
            raise InputError("model file", "no file was given", EXPECTED)
        for p in paths:
            _check_safetensors_file(p, str(p))
        return CheckpointFiles(name, paths, "sharded", _read_config(paths[0].parent, required=False))
    path = Path(path_or_paths)
    name = str(path_or_paths)
    if not path.exists():
        raise InputError(f"model file '{name}'", "was not found", EXPECTED)
    if path.is_dir():
        return _resolve_folder(path, name)
    if path.name.endswith(INDEX_SUFFIX) or path.name.endswith(".index.json"):
        return _from_index(path, name)
    if SHARD_NAME.match(path.name):
        return _from_shard(path, name)
    _check_safetensors_file(path, name)
    config = _read_config(path.parent, required=False) if path.name.startswith("diffusion_pytorch_model") else {}
    return CheckpointFiles(name, [path], "single", config)


def _check_safetensors_file(path: Path, name: str) -> None:
    if not path.is_file():
        raise InputError(f"model file '{name}'", "was not found", EXPECTED)
    suffix = path.suffix.lower()
    if suffix != ".safetensors":
        what = NOT_SAFETENSORS.get(suffix, f"a '{suffix or 'no extension'}' file")
        raise InputError(f"model file '{name}'", f"is {what}, not a .safetensors file", EXPECTED)


def _read_config(folder: Path, required: bool) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        if required:
            raise InputError(f"model folder '{folder}'", "has no config.json", "the diffusers transformer/config.json")
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"model file '{path}'", f"could not be read as JSON ({first_line(err)})",
                         "a valid config.json") from err
    return config if isinstance(config, dict) else {}


def _resolve_folder(folder: Path, name: str) -> CheckpointFiles:
    diffusers = False
    if (folder / "transformer").is_dir():
        if (folder / "transformer_2").is_dir():  # Wan 2.2 A14B: two experts, the user must pick one
            raise InputError(f"model folder '{name}'", "holds two transformers (transformer/ and transformer_2/, "
                             "Wan 2.2's high- and low-noise experts)", "the path of the one to load")
        folder, diffusers = folder / "transformer", True
    config = _read_config(folder, required=diffusers)
    diffusers = diffusers or "num_attention_heads" in config or config.get("_class_name") == "WanTransformer3DModel"
    indexes = sorted(folder.glob("*" + INDEX_SUFFIX))
    if len(indexes) == 1:
        found = _from_index(indexes[0], name)
        found.layout = "diffusers" if diffusers else found.layout
        return found
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        inner = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.safetensors")))
        where = f" (its sub-folders {', '.join(inner)} do: pick one)" if inner else ""
        raise InputError(f"model folder '{name}'", f"holds no .safetensors files{where}", EXPECTED)
    if len(files) == 1:
        return CheckpointFiles(name, files, "diffusers" if diffusers else "single", config)
    shards = [f for f in files if SHARD_NAME.match(f.name)]
    if shards and len(shards) == len(files):
        found = _from_shard(shards[0], name)
        found.layout = "diffusers" if diffusers else found.layout
        return found
    listed = ", ".join(f.name for f in files[:6])
    raise InputError(f"model folder '{name}'", f"holds several unrelated .safetensors files ({listed})",
                     "one model per folder, or the path of the file to load")


def _from_index(index: Path, name: str) -> CheckpointFiles:
    try:
        data = json.loads(index.read_text())
        weight_map = dict(data["weight_map"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"model file '{name}'", f"is not a readable safetensors index ({err!r})",
                         "a *.safetensors.index.json with a 'weight_map'") from err
    folder = index.parent
    names = sorted(set(weight_map.values()))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(f"model file '{name}'",
                         f"shard {', '.join(missing)} listed in {index.name} is missing from {folder}",
                         "every shard the index lists, in the same folder")
    return CheckpointFiles(name, [folder / n for n in names], "sharded", _read_config(folder, required=False),
                           weight_map)


def _from_shard(shard: Path, name: str) -> CheckpointFiles:
    m = SHARD_NAME.match(shard.name)
    stem = m.group("stem")
    index = shard.parent / f"{stem}{INDEX_SUFFIX}"
    if index.is_file():
        return _from_index(index, name)
    total, width = int(m.group("total")), len(m.group("index"))
    expected = [shard.parent / f"{stem}-{i:0{width}d}-of-{m.group('total')}.safetensors" for i in range(1, total + 1)]
    missing = [p.name for p in expected if not p.is_file()]
    if missing:
        raise InputError(f"model file '{name}'", f"shard {', '.join(missing)} is missing from {shard.parent}",
                         f"all {total} shards in the same folder")
    return CheckpointFiles(name, expected, "sharded", _read_config(shard.parent, required=False))


class TensorReader:
    """Lazy access to the tensors of several .safetensors files, by key.

    Shapes and dtypes come from the headers alone; :meth:`get` reads one tensor.
    """

    def __init__(self, files: CheckpointFiles):
        from safetensors import safe_open  # imported here: only loaders need it

        self.files = files
        self._handles = {}
        self._where: dict[str, Path] = {}
        self.metadata: dict[str, str] = {}
        for path in files.files:
            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
                keys = list(handle.keys())
                meta = handle.metadata() or {}
            except Exception as err:  # safetensors raises its own error types for corrupt headers
                raise InputError(f"model file '{path}'", f"could not be read as safetensors ({first_line(err)})",
                                 "a complete .safetensors file (download it again if it was cut off)") from err
            self._handles[path] = handle
            self.metadata.update(meta)
            for key in keys:
                if key in self._where:
                    raise InputError(f"model file '{files.name}'",
                                     f"tensor '{key}' is in both {self._where[key].name} and {path.name}",
                                     "each tensor in one shard only")
                self._where[key] = path
        if files.weight_map:
            for key, fname in files.weight_map.items():
                where = self._where.get(key)
                if where is None or where.name != fname:
                    raise InputError(f"model file '{files.name}'",
                                     f"the index lists '{key}' in {fname} but that shard does not hold it",
                                     "an index that matches its shards (download them again)")

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handles[self._where[key]].get_slice(key).get_shape())

    def dtype(self, key: str) -> torch.dtype | str:
        name = self._handles[self._where[key]].get_slice(key).get_dtype()
        return SAFETENSORS_DTYPES.get(name, name)

    def get(self, key: str) -> torch.Tensor:
        path = self._where[key]
        try:
            return self._handles[path].get_tensor(key)
        except Exception as err:
            raise InputError(f"model file '{path}'", f"tensor '{key}' could not be read ({first_line(err)})",
                             "a complete .safetensors file (download it again if it was cut off)") from err

    def file_of(self, key: str) -> Path:
        return self._where[key]

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
