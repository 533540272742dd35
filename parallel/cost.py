"""The FLOP and communication model of one DiT forward under sequence parallelism (docs/scaling.md).

Counts are per forward (one guidance branch, one step), multiply-adds as 2
FLOPs, the head and embeddings left out (< 0.1 %). Bytes are what one rank
sends: Ulysses moves q, k, v to heads and the output back (4 all-to-alls of
``L / N x dim`` values, each keeping ``1 / N`` at home); the ring sends its
K/V slice on ``N - 1`` times; the final all-gather of the block stack's
output (``L x dim`` float32) happens once per forward, not per block.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiTShape:
    dim: int = 5120
    heads: int = 40
    blocks: int = 40
    ffn_dim: int = 13824
    text_tokens: int = 512
    image_tokens: int = 257  # CLIP tokens of Wan 2.1 I2V (0 for T2V / Wan 2.2)


WAN_14B = DiTShape()


def block_flops(shape: DiTShape, tokens: int) -> dict[str, float]:
    """FLOPs of one block on ``tokens`` video tokens, by part."""
    d, n = shape.dim, tokens
    context = shape.text_tokens + shape.image_tokens
    image_kv = 2 if shape.image_tokens else 0
    return {
        "self-attention projections": 2 * n * d * d * 4,
        "self-attention scores": 2 * 2 * n * n * d,
        "cross-attention": 2 * n * d * d * 2 + 2 * context * d * d * (2 + image_kv) + 2 * 2 * n * context * d,
        "ffn": 2 * 2 * n * d * shape.ffn_dim,
    }


def forward_flops(shape: DiTShape, tokens: int) -> float:
    return shape.blocks * sum(block_flops(shape, tokens).values())


def ulysses_bytes_per_block(shape: DiTShape, tokens: int, ranks: int, element_bytes: int = 2) -> float:
    """Bytes one rank sends per block (q, k, v out, attention output back), padding ignored."""
    if ranks == 1:
        return 0.0
    return 4 * (tokens / ranks) * shape.dim * element_bytes * (ranks - 1) / ranks


def ring_bytes_per_block(shape: DiTShape, tokens: int, ranks: int, element_bytes: int = 2) -> float:
    """Bytes one rank sends per block in ring attention: its K and V slices, ``N - 1`` hops."""
    return 2 * (tokens / ranks) * shape.dim * element_bytes * (ranks - 1)


def gather_bytes(shape: DiTShape, tokens: int, ranks: int) -> float:
    """Bytes one rank sends in the forward's final all-gather (float32 residual stream)."""
    return 0.0 if ranks == 1 else (tokens / ranks) * shape.dim * 4 * (ranks - 1)


def step_time(shape: DiTShape, tokens: int, ranks: int, flops_per_s: float, bytes_per_s: float,
              ring: bool = False, element_bytes: int = 2) -> tuple[float, float]:
    """(compute seconds, communication seconds) of one forward on each of ``ranks`` GPUs, no overlap."""
    compute = forward_flops(shape, tokens) / ranks / flops_per_s
    per_block = (ring_bytes_per_block if ring else ulysses_bytes_per_block)(shape, tokens, ranks, element_bytes)
    comm = (shape.blocks * per_block + gather_bytes(shape, tokens, ranks)) / bytes_per_s
    return compute, comm
