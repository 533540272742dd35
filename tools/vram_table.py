"""The README's VRAM table, from the pack's own memory estimates (an estimate, not a measurement).

    python tools/vram_table.py            # prints the Markdown table

For each method's usual video size it adds the DiT's weights (parameters counted from the real 14B shapes:
Wan2.1 I2V for UniAnimate-DiT, the same plus Wan2.2-Animate's modules for Animate; 2 bytes each in bf16/fp16,
1 in fp8) to one window's work at its peak (``memory_budget.dit_window``: the residual stream, q/k/v, the FFN,
the pose tokens; the VAE and the encoders run before and after and are smaller) and a fixed allowance for the
CUDA context and the small modules (:data:`OVERHEAD_GB`). A GPU class fits a setting "resident" when that total
is within the 90% of its memory the pack plans with (``memory_budget.HEADROOM``), and "offloaded" when the
work alone plus the blocks being streamed (:data:`STREAMED_GB`) fits: then ComfyUI keeps the weights in RAM and
streams them in (its low-VRAM mode; slower, and the machine needs the weights' size in free RAM).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import standalone  # noqa: E402

sys.path.pop(0)
standalone.load_pack()

from poseanimate import memory_budget as mb  # noqa: E402
from poseanimate.methods.wan_animate.modules import AnimateConfig, AnimateModules  # noqa: E402
from poseanimate.tiny_models.wan_dit import wan_official_shapes  # noqa: E402

GB = mb.GB
OVERHEAD_GB = 1.5   # CUDA context, cuBLAS workspace, the pose encoders, the latents and the noise
STREAMED_GB = 2.0   # a few 14B blocks (0.4 GB each in bf16) on the GPU at once while the rest streams
GPU_CLASSES = (("12 GB", "RTX 3060 12G, 4070"), ("16 GB", "RTX 4060 Ti 16G, 4080, 5080"),
               ("24 GB", "RTX 3090, 4090"), ("32 GB", "RTX 5090"), ("48 GB", "RTX A6000, L40S"),
               ("80 GB", "A100 80G, H100"))
SETTINGS = (  # (label, extra parameters, frames, height, width)
    ("UniAnimate-DiT 480x832, 81 frames", "unianimate", 81, 832, 480),
    ("UniAnimate-DiT 720x1280, 81 frames", "unianimate", 81, 1280, 720),
    ("Wan2.2-Animate 720x1280, 77-frame clips", "animate", 77, 1280, 720),
)


def dit_parameters(method: str) -> int:
    shapes = wan_official_shapes("i2v", dim=5120, num_layers=40, ffn_dim=13824, text_dim=4096, freq_dim=256,
                                 clip_dim=1280)
    count = sum(math.prod(s) for s in shapes.values())
    if method == "animate":
        count += sum(p.numel() for p in AnimateModules(AnimateConfig(), device="meta").parameters())
    return count


def work_bytes(frames: int, height: int, width: int, method: str) -> int:
    latent_frames = (frames - 1) // 4 + 1 + (1 if method == "animate" else 0)  # Animate's reference frame
    tokens = mb.dit_tokens(latent_frames, height // 8, width // 8)
    return mb.dit_window(tokens, 5120, 13824, torch.bfloat16)


def verdict(gpu_gb: float, weights: float, work: float) -> str:
    budget = gpu_gb * mb.HEADROOM
    if weights + work + OVERHEAD_GB <= budget:
        return "resident"
    if work + STREAMED_GB + OVERHEAD_GB <= budget:
        return "offloaded"
    return "no"


def table() -> str:
    rows = ["| GPU memory (e.g.) | " + " | ".join(label for label, *_ in SETTINGS) + " |",
            "| --- |" + " --- |" * len(SETTINGS)]
    needs = []
    for label, method, frames, height, width in SETTINGS:
        params = dit_parameters(method)
        work = work_bytes(frames, height, width, method) / GB
        needs.append((params * 2 / GB, params / GB, work))
    rows.append("| weights bf16 / fp8; one window's work | " + " | ".join(
        f"{bf16:.1f} / {fp8:.1f} GB; {work:.1f} GB" for bf16, fp8, work in needs) + " |")
    for name, examples in GPU_CLASSES:
        gpu = float(name.split()[0])
        cells = []
        for bf16, fp8, work in needs:
            cells.append(f"bf16 {verdict(gpu, bf16, work)}, fp8 {verdict(gpu, fp8, work)}")
        rows.append(f"| {name} ({examples}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
