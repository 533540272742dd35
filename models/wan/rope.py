"""Wan's 3-D rotary position embedding, for any (frame, height, width) positions.

Each head's channel pairs are split over three axes: the frame axis gets
``c - 2 * (c // 3)`` pairs and height and width ``c // 3`` each (``c`` =
head_dim / 2), every axis with its own frequencies ``theta ** (-2i / axis_dim)``,
as in the official ``rope_params``/``rope_apply``. Positions are explicit
integer triples rather than a fixed grid, because extension tokens (a
RealisDance reference latent, say) sit at positions of their own.

Angles are computed in float64 on the CPU like the reference (MPS has no
float64) and kept as float32 cos/sin on the compute device; the rotation
itself runs in float32, which stays within ~1e-7 of the reference's complex128
product. Nothing here is a module buffer, so the tables never enter a state
dict and a model built on the meta device needs no fix-up after loading.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import InputError

THETA = 10000.0
_GRID_CACHE: dict[tuple, "RopeRotation"] = {}
_GRID_CACHE_SIZE = 16


class RopeRotation(NamedTuple):
    """cos and sin of every (token, channel pair) angle: float32 ``[L, head_dim // 2]``."""

    cos: torch.Tensor
    sin: torch.Tensor

    @property
    def tokens(self) -> int:
        return self.cos.shape[0]


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Channel pairs given to the (frame, height, width) axes."""
    if head_dim % 2:
        raise InputError("head_dim", f"{head_dim} is odd", "an even attention head width")
    pairs = head_dim // 2
    return pairs - 2 * (pairs // 3), pairs // 3, pairs // 3


def _inverse_frequencies(head_dim: int, theta: float) -> list[torch.Tensor]:
    """Per axis, ``1 / theta ** (2i / axis_dim)`` in float64 (the official rope_params)."""
    result = []
    for pairs in axis_pairs(head_dim):
        axis_dim = 2 * pairs
        exponent = torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim
        result.append(1.0 / torch.pow(theta, exponent))
    return result


def grid_positions(frames: int, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(frame, h, w) of every token of a video grid, in patch-embedding order: LongTensor ``[F*H*W, 3]``."""
    axes = [torch.arange(n, dtype=torch.long, device=device) for n in (frames, height, width)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def shifted_grid_positions(frames: int, height: int, width: int, offset: tuple[int, int, int] = (0, 0, 0),
                           device: torch.device | str | None = None) -> torch.Tensor:
    """:func:`grid_positions` moved by ``offset`` (frame, h, w): extra tokens placed beside the video.

    Methods that append a grid of tokens (a reference image's latent, say) give
    it positions of its own, e.g. starting right after the video's last row
    and column, so attention can tell it from the video frame at the same
    indices.
    """
    shift = torch.tensor([int(o) for o in offset], dtype=torch.long, device=device)
    return grid_positions(frames, height, width, device) + shift


def rope_rotation(positions: torch.Tensor, head_dim: int, device: torch.device | str | None = None,
                  theta: float = THETA) -> RopeRotation:
    """The rotation for tokens at integer ``positions`` ``[L, 3]`` (frame, h, w), on ``device``."""
    if positions.dim() != 2 or positions.shape[1] != 3 or positions.is_floating_point():
        raise InputError("positions", f"has shape {tuple(positions.shape)} and dtype {positions.dtype}",
                         "an integer tensor [L, 3] of (frame, height, width) indices")
    device = positions.device if device is None else torch.device(device)
    pos = positions.detach().to("cpu", torch.float64)
    angles = torch.cat([pos[:, axis, None] * inv[None, :]
                        for axis, inv in enumerate(_inverse_frequencies(head_dim, theta))], dim=1)
    return RopeRotation(torch.cos(angles).to(device, torch.float32), torch.sin(angles).to(device, torch.float32))


def grid_rotation(frames: int, height: int, width: int, head_dim: int, device: torch.device | str,
                  theta: float = THETA) -> RopeRotation:
    """The rotation for a whole video grid, cached per (grid, head_dim, device)."""
    device = torch.device(device)
    key = (frames, height, width, head_dim, theta, device.type, device.index)
    rotation = _GRID_CACHE.get(key)
    if rotation is None:
        if len(_GRID_CACHE) >= _GRID_CACHE_SIZE:
            _GRID_CACHE.pop(next(iter(_GRID_CACHE)))
        rotation = rope_rotation(grid_positions(frames, height, width), head_dim, device, theta)
        _GRID_CACHE[key] = rotation
    return rotation


def concat_rotations(rotations: list[RopeRotation]) -> RopeRotation:
    """Join rotations along tokens (the video grid, then each group of extra tokens)."""
    if len(rotations) == 1:
        return rotations[0]
    return RopeRotation(torch.cat([r.cos for r in rotations]), torch.cat([r.sin for r in rotations]))


def apply_rope(x: torch.Tensor, rotation: RopeRotation) -> torch.Tensor:
    """Rotate ``x`` ``[B, L, heads, head_dim]`` by ``rotation`` (adjacent channels form a pair).

    Computed in float32 (or wider), returned in ``x``'s dtype.
    """
    if x.shape[1] != rotation.tokens or x.shape[-1] != 2 * rotation.cos.shape[-1]:
        raise ValueError(f"rope: x {tuple(x.shape)} does not match a rotation for {rotation.tokens} tokens "
                         f"of head_dim {2 * rotation.cos.shape[-1]}")
    work = torch.promote_types(x.dtype, torch.float32)
    # one complex multiply (x_re + i x_im)(cos + i sin): the same products as the real form, in one kernel
    # instead of six temporaries (a measurable share of a bf16 forward on the CPU)
    pairs = torch.view_as_complex(x.to(work).unflatten(-1, (-1, 2)).contiguous())
    turn = torch.complex(rotation.cos.to(work), rotation.sin.to(work))[None, :, None, :]
    return torch.view_as_real(pairs * turn).flatten(-2).to(x.dtype)
