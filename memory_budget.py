"""Memory estimates before work, for the nodes that allocate in proportion to frames x pixels.

Each estimate is a count of the large tensors a step holds at its peak, from sizes and dtypes (written
next to each function; not a measurement). :func:`check_fits` compares it with what the device can hold
(CUDA: the device's whole memory, which the host frees for a node by offloading models; the CPU:
``MemAvailable`` of /proc/meminfo, psutil where that file is missing) and stops the node before it allocates, with an
InputError naming the input, the estimate and what would fit. Tests and users may set the budget with
:func:`set_budget` or ``POSEANIMATE_MEMORY_BUDGET_GB``.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

from .errors import InputError

GB = 1024 ** 3
MAX_FRAMES = 10001  # above ~10 minutes at 16 fps a frame count is a typo, whatever the memory
HEADROOM = 0.9      # of the free memory a node may plan to use

_budget: Callable[[torch.device], int] | None = None


def set_budget(budget: int | Callable[[torch.device], int] | None) -> None:
    """Bytes a node may use (a number, or a function of the device); None: measure it."""
    global _budget
    _budget = (lambda _device: budget) if isinstance(budget, int) else budget


def available(device: torch.device | str) -> int:
    """Bytes the device (or, on the CPU, the process) can still hold."""
    device = torch.device(device)
    if _budget is not None:
        return int(_budget(device))
    env = os.environ.get("POSEANIMATE_MEMORY_BUDGET_GB")
    if env:
        return int(float(env) * GB)
    if device.type == "cuda" and torch.cuda.is_available():
        # the whole device: the host's model management offloads models to make room for a node's work,
        # so what must fit is the work itself (a node does not know what the host could free)
        _free, total = torch.cuda.mem_get_info(device)
        return int(total * HEADROOM)
    return int(_cpu_available() * HEADROOM)


def _cpu_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        return 1 << 62  # unknown: do not refuse


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def check_frames(count: int, input_name: str = "frames") -> None:
    """A frame count within :data:`MAX_FRAMES`."""
    if count > MAX_FRAMES:
        raise InputError(input_name, f"{count} frames is more than the {MAX_FRAMES} the pack takes",
                         f"at most {MAX_FRAMES} frames (make longer videos in parts)")


def gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def check_fits(input_name: str, what: str, needed: int, device: torch.device | str,
               fitting: Callable[[int], str] | None = None) -> None:
    """Stop before allocating when ``needed`` bytes do not fit ``device``; ``fitting(budget)`` says what would."""
    budget = available(device)
    if needed > budget:
        expected = fitting(budget) if fitting is not None else f"a request under {gb(budget)}"
        raise InputError(input_name, f"{what} needs about {gb(needed)}, more than the {gb(budget)} "
                         f"{torch.device(device).type} memory available", expected)


# ---------------------------------------------------------------- estimates (bytes at the peak)
def image_frames(frames: int, height: int, width: int, dtype: torch.dtype = torch.float32, copies: int = 1) -> int:
    """``copies`` IMAGE tensors ``[frames, height, width, 3]``."""
    return copies * frames * height * width * 3 * dtype_bytes(dtype)


VAE_ACTIVATIONS = 14  # full-resolution activations of dim x 4 frames alive at a VAE chunk's peak (measured)
VAE_TILE_CACHE = 25   # the causal convolutions' caches of one tile, in dim x its pixels (counted: 24.6 decode,
                      # 14.7 encode, at every VAE width)


def vae_step(height: int, width: int, dtype: torch.dtype, tile: int | None, dim: int = 96, overlap: int = 8) -> int:
    """One streamed VAE chunk: at full resolution the blocks hold ``dim`` channels x 4 frames per activation,
    and :data:`VAE_ACTIVATIONS` of them are alive at the peak (input, output, residual, causal caches, the
    convolutions' workspace): bench/memory_estimates.py measured 3.0-3.2x a first count of 4 for the decode
    and 2.1-3.7x for the encode on the CPU, so 14 makes the estimate an upper bound there (ratios 0.83-0.92
    above 0.5 Mpx; ComfyUI's own Wan VAE estimate is of the same order).

    Tiles (``tile`` x 8 pixels a side, ``overlap`` latent cells shared) bound the activations to one tile's
    (counted at twice its side, the overlap rounded into the factor), but every tile keeps its own causal caches
    between chunks: :data:`VAE_TILE_CACHE` x ``dim`` over all the tiles' pixels, overlaps counted twice, plus
    the whole frame's blended chunk (float32: the sum, the result and the weights)."""
    size = dtype_bytes(dtype)
    if not tile or (tile * 8 >= height and tile * 8 >= width):
        return VAE_ACTIVATIONS * dim * 4 * height * width * size
    tile_h, tile_w = min(height, tile * 8 * 2), min(width, tile * 8 * 2)
    cached = _tiled_cells(height // 8, tile, overlap) * _tiled_cells(width // 8, tile, overlap) * 64
    blended = (2 * 3 * 4 + 1) * height * width * 4
    return VAE_ACTIVATIONS * dim * 4 * tile_h * tile_w * size + VAE_TILE_CACHE * dim * cached * size + blended


def _tiled_cells(size: int, tile: int, overlap: int) -> int:
    """Latent cells the tiles cover along one axis, overlaps counted each time (as the VAE's tile plan)."""
    if tile >= size:
        return size
    overlap = min(max(overlap, 0), tile - 1)
    return (len(range(0, size - tile, tile - overlap)) + 1) * tile


def unianimate_pose_embedding(frames: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> int:
    """UniAnimate's pose encoder: two full-resolution 16-channel activations over frames + 3 leading repeats."""
    return 2 * 16 * (frames + 3) * height * width * dtype_bytes(dtype)


REALISDANCE_LATENT_CHANNELS = 104  # float32 latent channels RealisDance-DiT Conditioning holds at its peak


def realisdance_latents(frames: int, height: int, width: int) -> int:
    """RealisDance-DiT Conditioning's outputs, float32 at the latent's size: the SMPL-CS and HaMeR latents
    (16 + 16 channels) and their concatenation (32), VAE(grey video) (16), and ``y`` = mask (4) + that (16)
    while the mask (4) is alive: :data:`REALISDANCE_LATENT_CHANNELS` channels over ``1 + (frames - 1) // 4``
    latent frames of ``height/8 x width/8``. The pixels pass through the streamed VAE one chunk at a time (the
    grey video is one frame's view), so these are all that grows with frames: 1/7 of the IMAGE frames' bytes."""
    latent_frames = (max(frames, 1) - 1) // 4 + 1
    return REALISDANCE_LATENT_CHANNELS * latent_frames * (height // 8) * (width // 8) * 4


def pixel_frames_fitting(per_frame: int, fixed: int, budget: int) -> str:
    """'at most N frames at this size' for an estimate ``fixed + per_frame * frames``."""
    most = max(0, (budget - fixed) // max(per_frame, 1))
    most = (most - 1) // 4 * 4 + 1 if most >= 1 else 0
    return f"at most {most} frames at this size, or a smaller size" if most else "a smaller size (or tiles)"


def dit_window(tokens: int, dim: int, ffn_dim: int, compute_dtype: torch.dtype, extra_tokens: int = 0) -> int:
    """One DiT block over a window's ``tokens`` (plus ``extra_tokens``: RealisDance's reference, Wan-Animate's
    face), at its peak: the float32 residual stream and its normed/modulated copy (2 x ``dim`` float32), q, k,
    v and the attention output (4 x ``dim`` in the compute dtype), the FFN's hidden layer and output
    (``ffn_dim`` + ``dim``), and the method's float32 pose tokens (``dim``). Attention itself runs in
    memory-efficient kernels (SDPA, flash, sage, or chunked), which hold O(tokens) -- no tokens^2 term. The
    weights are not counted: the host streams or offloads them; what must fit is the work."""
    per_token = 3 * dim * 4 + (5 * dim + ffn_dim) * dtype_bytes(compute_dtype)
    return (tokens + extra_tokens) * per_token


def dit_tokens(latent_frames: int, latent_height: int, latent_width: int) -> int:
    """Tokens of a window: the DiT patchifies latents 1 x 2 x 2."""
    return latent_frames * (latent_height // 2) * (latent_width // 2)


def window_frames_fitting(per_latent_frame: int, budget: int, input_name: str = "window_length") -> str:
    """'window_length at most N' for an estimate linear in a window's latent frames."""
    most = budget // max(per_latent_frame, 1)
    if most >= 2:
        return f"{input_name} at most {most} latent frames at this size, or a smaller size"
    return "a smaller size (the pixels of one latent frame alone do not fit)"
