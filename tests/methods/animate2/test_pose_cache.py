"""The pose-branch cache: the error of each storage precision, and no room is a clear error."""
from __future__ import annotations

import pytest
import torch

from poseanimate import memory_budget
from poseanimate.errors import InputError
from poseanimate.methods.animate2 import PoseBranchCache
from poseanimate.methods.animate2.pose_cache import storage_bytes


def stored(storage: str, x: torch.Tensor) -> torch.Tensor:
    cache = PoseBranchCache(storage)
    cache.put("k", 0, x)
    return cache.take("k", 0, "cpu")


@pytest.fixture
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 60, 64, generator=g)
    x[:, :, 5] *= 125.0  # the outlier channels the real pose stream has
    return x


def test_float32_is_exact(x):
    assert torch.equal(stored("float32", x), x)


def test_bfloat16_error_is_within_half_a_unit_of_its_8_bit_significand(x):
    err = (stored("bfloat16", x) - x).abs()
    assert (err <= x.abs() * 2.0 ** -8).all()
    assert err.max() > 0


def test_int8_error_is_within_half_a_step_of_each_tokens_scale(x):
    err = (stored("int8", x) - x).abs()
    bound = x.abs().amax(dim=-1, keepdim=True) / 254.0
    assert (err <= bound * (1 + 1e-6)).all()
    assert err.max() > 0


def test_sizes_per_storage():
    assert storage_bytes(100, 64, 3, "float32") == 3 * 100 * 64 * 4
    assert storage_bytes(100, 64, 3, "bfloat16") == 3 * 100 * 64 * 2
    assert storage_bytes(100, 64, 3, "int8") == 3 * (100 * 64 + 4 * 100)
    cache = PoseBranchCache("int8")
    cache.put("k", 0, torch.ones(1, 100, 64))
    assert cache.memory_bytes() == 100 * 64 + 4 * 100


def test_no_room_for_the_cache_is_a_clear_error_and_stores_nothing():
    memory_budget.set_budget(1000)
    try:
        cache = PoseBranchCache("float32")
        with pytest.raises(InputError, match=r"pose cache: needs .* GB on cpu .* 40 blocks x 3000 pose tokens"):
            cache.reserve("w0", 3000, 5120, 40)
        assert cache.slots == {}
    finally:
        memory_budget.set_budget(None)


def test_unknown_storage_is_refused():
    with pytest.raises(InputError, match="pose cache storage: 'int4' is not known"):
        PoseBranchCache("int4")
