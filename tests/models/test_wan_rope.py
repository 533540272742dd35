"""Wan's 3-D RoPE: axis split, positions, and the rotation against complex float64 math."""
from __future__ import annotations

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.models.wan.rope import (apply_rope, axis_pairs, concat_rotations, grid_positions, grid_rotation,
                                         rope_rotation)


def complex_rope(x: torch.Tensor, positions: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The official scheme written out: per-axis angles pos * 10000^(-2i/axis_dim), complex128 product."""
    angles = []
    for axis, pairs in enumerate(axis_pairs(head_dim)):
        inv = 10000.0 ** (-torch.arange(pairs, dtype=torch.float64) * 2 / (2 * pairs))
        angles.append(positions[:, axis, None].double() * inv)
    rotation = torch.polar(torch.ones(1, dtype=torch.float64), torch.cat(angles, dim=1))
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation[None, :, None, :]).flatten(-2)


def test_axis_split_matches_official_table_widths():
    assert axis_pairs(128) == (22, 21, 21)  # 128 - 4*21 = 44 channels for frames, 42 for h and w
    assert axis_pairs(64) == (12, 10, 10)
    with pytest.raises(InputError):
        axis_pairs(63)


def test_grid_positions_follow_patch_embedding_order():
    positions = grid_positions(2, 3, 4)
    assert positions.shape == (24, 3)
    assert positions[0].tolist() == [0, 0, 0] and positions[5].tolist() == [0, 1, 1]
    assert positions[13].tolist() == [1, 0, 1] and positions[-1].tolist() == [1, 2, 3]


@pytest.mark.parametrize("head_dim", [64, 128])
def test_rotation_matches_complex_float64(head_dim):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 30, 3, head_dim, generator=gen)
    positions = torch.cat([grid_positions(2, 3, 4), torch.tensor([[81, 7, 0], [2000, 3, 1], [0, 0, 0],
                                                                 [5, 2, 9], [3, 1, 1], [1, 1, 1]])])
    out = apply_rope(x, rope_rotation(positions, head_dim))
    expected = complex_rope(x, positions, head_dim)
    assert out.dtype == torch.float32
    assert ((out.double() - expected).abs().max() / expected.abs().max()).item() < 1e-6


def test_positions_give_the_same_rotation_as_the_grid():
    grid = grid_rotation(3, 4, 5, 128, "cpu")
    positions = grid_positions(3, 4, 5)
    picked = rope_rotation(positions[[7, 0, 59]], 128)
    assert torch.equal(picked.cos, grid.cos[[7, 0, 59]]) and torch.equal(picked.sin, grid.sin[[7, 0, 59]])
    both = concat_rotations([grid, picked])
    assert both.tokens == 63 and torch.equal(both.cos[60:], picked.cos)


def test_grid_rotation_is_cached_per_device():
    assert grid_rotation(2, 2, 2, 64, "cpu") is grid_rotation(2, 2, 2, 64, torch.device("cpu"))
    assert grid_rotation(2, 2, 2, 64, "cpu") is not grid_rotation(2, 2, 3, 64, "cpu")


def test_half_precision_input_keeps_its_dtype():
    x = torch.randn(1, 8, 2, 64, dtype=torch.bfloat16)
    out = apply_rope(x, grid_rotation(2, 2, 2, 64, "cpu"))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), complex_rope(x.float(), grid_positions(2, 2, 2), 64).float(), atol=3e-2)


def test_bad_positions_raise():
    with pytest.raises(InputError, match="positions"):
        rope_rotation(torch.zeros(4, 2, dtype=torch.long), 64)
    with pytest.raises(InputError, match="integer"):
        rope_rotation(torch.zeros(4, 3), 64)
