"""Shared by the SteadyDancer tests: the committed parity fixture, rebuilt into tensors and a model file.

tests/fixtures/make_steadydancer_parity.py wrote it from SteadyDancer's own
``model_dancer.py`` and ``image2video_dancer.py``; ``weights/*`` are the
reference's tiny ``WanModel`` under the released file's (official) names,
``lowrank/<name>/u|v`` the 1280-wide tensors stored as two factors.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "steadydancer_parity.safetensors"
WEIGHTS = "weights/"


def load_fixture() -> dict[str, torch.Tensor]:
    """The fixture's tensors, low-rank ones rebuilt (``u @ v``, as the generating script made them)."""
    raw = load_file(str(FIXTURE))
    tensors = {k: v for k, v in raw.items() if not k.startswith("lowrank/")}
    names = {k[len("lowrank/"):].rpartition("/")[0] for k in raw if k.startswith("lowrank/")}
    for name in names:
        tensors[name] = raw[f"lowrank/{name}/u"] @ raw[f"lowrank/{name}/v"]
    tensors["weights/img_emb.proj.1.weight"] = tensors["weights/img_emb.proj.1.weight"] / 1280 ** 0.5
    for name in ("forward/clip_fea", "forward/clip_fea_c"):
        tensors[name] = tensors[name].view(2, 257, -1)
    for name in ("sample/clip_fea", "sample/clip_fea_pose"):
        tensors[name] = tensors[name][None]
    return tensors


def official_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(WEIGHTS):]: v.contiguous() for k, v in tensors.items() if k.startswith(WEIGHTS)}


def write_file(state: dict[str, torch.Tensor], path: Path, prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
