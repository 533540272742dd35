"""The parallel package's pieces in one process: splits, the ring's online-softmax merge, the face adapter
on slices, the guidance split seam, and the bad-input errors (no process group needed for these)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from poseanimate.errors import InputError
from poseanimate.methods.wan_animate.conditioning import face_adapter
from poseanimate.methods.wan_animate.face import FaceBlock
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import AdapterContext, WanDiT
from poseanimate.parallel.attention import attend_with_lse, merge_partial
from poseanimate.parallel.exchange import pad_tokens
from poseanimate.parallel.launch import check_gpu_count, start_from_env
from poseanimate.parallel.layout import SequenceGroup, check_sequence_split, make_layout, split_sizes
from poseanimate.parallel.sequence import SequenceParallel
from poseanimate.sampling.guidance import Guidance
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict


def test_uneven_splits_give_the_first_ranks_one_more_token():
    assert split_sizes(18, 3) == [6, 6, 6]
    assert split_sizes(32, 3) == [11, 11, 10]
    assert split_sizes(5, 4) == [2, 1, 1, 1]


def test_padding_is_at_the_end_of_the_sequence_axis():
    x = torch.ones(2, 3, 4, 5)
    padded = pad_tokens(x, 7, 1)
    assert padded.shape == (2, 7, 4, 5) and padded[:, 3:].abs().sum() == 0 and torch.equal(padded[:, :3], x)


def test_ring_merge_of_uneven_key_blocks_is_softmax_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 11, 3, 8, generator=g) for _ in range(3))
    out = lse = None
    for block in torch.split(torch.arange(11), [4, 4, 3]):
        part, part_lse = attend_with_lse(q, k[:, block], v[:, block], chunk=5)
        out, lse = merge_partial(out, lse, part, part_lse)
    reference = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    assert torch.allclose(out, reference.transpose(1, 2), atol=1e-6, rtol=1e-5)


def test_face_adapter_on_slices_equals_the_whole_sequence():
    """Slices that start and end inside latent frames (3 frames of 6 tokens, 2 extra tokens at the end)."""
    torch.manual_seed(0)
    block = FaceBlock(16, 2).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    adapter = face_adapter(block, torch.randn(1, 3, 5, 16), strength=0.7)
    assert adapter.sequence_sharded
    x = torch.randn(1, 20, 16)
    whole = adapter(x, AdapterContext(0, (3, 2, 3), 18, torch.float32))
    for sizes in ([7, 7, 6], [11, 9], [4, 5, 5, 6]):
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        parts = [adapter(x[:, s:s + n], AdapterContext(0, (3, 2, 3), 18, torch.float32, s))
                 for s, n in zip(starts, sizes)]
        assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-6), sizes
    assert torch.equal(whole[:, 18:], x[:, 18:])


def test_guidance_split_runs_only_when_both_branches_are_mixed():
    calls = []

    def split(model, x, t, positive, negative, scale):
        calls.append((positive, negative, scale))
        return x * 0

    model = lambda x, t, cond: x + (1.0 if cond == "pos" else 0.0)  # noqa: E731
    x, t = torch.zeros(1), torch.zeros(1)
    assert Guidance("pos", "neg", 3.0, split=split).velocity(model, x, t, 0).item() == 0.0
    assert Guidance("pos", "neg", 1.0, split=split).velocity(model, x, t, 0).item() == 1.0
    assert Guidance("pos", None, 3.0, split=split).velocity(model, x, t, 0).item() == 1.0
    assert calls == [("pos", "neg", 3.0)]


def test_more_ranks_than_tokens_names_the_limit():
    with pytest.raises(InputError, match=r"GPUs: 4 processes split the sequence but this video has only 3 tokens; "
                                         r"expected at most 3 processes"):
        check_sequence_split(3, 2, 4, "auto")


def test_ulysses_needs_heads_divisible_by_ranks_and_auto_falls_back_to_the_ring():
    with pytest.raises(InputError, match="3 processes cannot split 40 attention heads evenly"):
        check_sequence_split(100, 40, 3, "ulysses")
    assert check_sequence_split(100, 40, 3, "auto") == "ring"
    assert check_sequence_split(100, 40, 4, "auto") == "ulysses"
    with pytest.raises(InputError, match="sequence parallel mode: 'stripes' is not known"):
        check_sequence_split(100, 40, 4, "stripes")


def test_a_forward_with_too_many_ranks_fails_before_any_exchange():
    state = tiny_wan_state_dict("t2v", seed=1)
    dit = WanDiT(infer_config(state, num_heads=2))
    dit.load_state_dict(state)
    runner = SequenceParallel(SequenceGroup(None, tuple(range(8)), 0))
    with pytest.raises(InputError, match="8 processes split the sequence but this video has only 4 tokens"):
        dit(torch.randn(1, 16, 1, 4, 4), torch.tensor([500.0]), torch.randn(1, 3, 32), runner=runner)


def test_more_processes_than_gpus_is_refused():
    with pytest.raises(InputError, match=r"GPUs: 4 processes were started on this machine but it has 2 CUDA GPUs"):
        check_gpu_count(4, available=2)
    check_gpu_count(2, available=2)


def test_cfg_parallel_needs_an_even_number_of_processes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(InputError, match="CFG parallel: needs 2 or more processes"):
        start_from_env(cfg_degree=2)
    assert start_from_env() is None  # a lone process: nothing to join
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(InputError, match="two groups, and 1 is odd"):
            make_layout(cfg_degree=2)
        layout = make_layout()
        assert layout.is_main and layout.sequence.size == 1
    finally:
        dist.destroy_process_group()


def test_cost_model_counts_the_14b_forward_and_the_ulysses_bytes():
    from poseanimate.parallel.cost import WAN_14B, forward_flops, ring_bytes_per_block, ulysses_bytes_per_block
    assert abs(forward_flops(WAN_14B, 32760) / 1.686e15 - 1) < 0.01  # ~1,686 TFLOP at 480p x 81
    assert ulysses_bytes_per_block(WAN_14B, 32760, 1) == 0
    assert ulysses_bytes_per_block(WAN_14B, 32760, 2) == 4 * 16380 * 5120 * 2 / 2
    assert ring_bytes_per_block(WAN_14B, 32760, 2) == ulysses_bytes_per_block(WAN_14B, 32760, 2)
