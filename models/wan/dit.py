"""The Wan 2.1/2.2 diffusion transformer, with named extension points.

One implementation serves T2V, I2V with CLIP (Wan 2.1), I2V without it
(Wan 2.2) and FLF2V; module names are the official checkpoint keys, so
official state dicts load with ``strict=True``. Methods (UniAnimate,
RealisDance, Wan-Animate) never fork this file; they fill a
:class:`DiTExtensions`:

* ``added_tokens``: tensors added to the patch-embedded video tokens;
* ``extra_tokens``: tokens appended after the video, with RoPE at their own
  (frame, h, w) positions, taking part in self-attention and dropped before
  the head;
* ``block_adapters``: callables run after chosen blocks, ``x = f(x, ctx)``;
* ``block_forward``: how each block runs, for a method with a second token stream feeding the
  self-attention (Animate-2's pose branch): ``f(index, block, tokens, stack)``.
* ``latent_tokens``: callables of the noisy latent ``x`` (before ``y`` is
  concatenated) whose tokens are added like ``added_tokens`` (SteadyDancer's
  pose, aligned to the latent at every step);
* ``image_features``: more CLIP features, embedded by ``img_emb`` and summed
  with the main image tokens (SteadyDancer's first pose frame).

``forward(..., on_block=...)`` is called before each block, so a sampler can
check for interruption every block.

How the block stack runs is decided by one **block runner** per forward
(:data:`BlockRunner`, ``runner(stack, tokens) -> tokens``): the forward
embeds the video, adds the ``added_tokens``, appends the ``extra_tokens`` and
builds a :class:`BlockStack` (the blocks with their time modulation, RoPE,
text and image context, adapters and ``on_block``); the runner turns the
stack's input tokens into its output tokens; the forward drops the extra
tokens and applies the head. :func:`plain_blocks` (the default) runs every
block in order. A step cache returns ``tokens + cached residual`` instead;
sharded runners call :meth:`BlockStack.run_block` their own way. Block streaming
(``block_streaming.py``) sits under every runner: the stack then indexes a
sequence that moves each block to the device as it is asked for.
Accelerators and parallelism live behind this hook, never inside the blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from ...errors import InputError, short_name
from ..ops import CastOps
from .attention import Attention
from .config import WanDiTConfig
from .layers import Head, ImageEmbedding, TimeModulation, WanBlock, sinusoidal_embedding
from .rope import RopeRotation, concat_rotations, grid_rotation, rope_rotation


@short_name
class ExtensionError(ValueError):
    """A method filled the DiT's extension points wrongly: a bug in the method, not a user's mistake (the
    user's inputs are checked at the forward's entry, with InputError)."""

    def __init__(self, what: str, problem: str, expected: str):
        super().__init__(f"{what} {problem}; expected {expected}")


FLF_CLIP_TOKENS = 2 * 257  # first and last frame CLIP tokens, one learned position each
_COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass
class ExtraTokens:
    """Tokens appended after the video tokens (e.g. a RealisDance reference latent).

    ``tokens`` ``[B or 1, Le, dim]`` are in the model width (already embedded);
    ``positions`` ``LongTensor [Le, 3]`` are their (frame, h, w) RoPE positions;
    ``t`` ``[B, Le]`` is their timestep, by default each sample's first timestep.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    t: torch.Tensor | None = None


@dataclass(frozen=True)
class AdapterContext:
    """What a block adapter knows besides the hidden states."""

    block_index: int
    grid: tuple[int, int, int]  # (F, H, W) of the video tokens, in patches
    n_video: int  # the first n_video tokens of x are the video; extra tokens follow
    compute_dtype: torch.dtype  # the dtype the model's layers run in (x itself is float32)
    start: int = 0  # index in the whole sequence of x's first token (a sequence-parallel slice starts later)


BlockAdapter = Callable[[torch.Tensor, AdapterContext], torch.Tensor]
BlockForward = Callable[[int, nn.Module, torch.Tensor, "BlockStack"], torch.Tensor]
"""``f(index, block, tokens, stack) -> tokens``: how one block runs, for a method whose blocks read a second
token stream (Animate-2's pose branch); it calls ``block(..., self_attention=...)`` with the stack's pieces."""


@dataclass
class DiTExtensions:
    """The places where a method plugs into the DiT (see the module docstring)."""

    added_tokens: list[torch.Tensor] = field(default_factory=list)
    extra_tokens: list[ExtraTokens] = field(default_factory=list)
    block_adapters: dict[int, list[BlockAdapter]] = field(default_factory=dict)
    block_forward: BlockForward | None = None  # replaces each block's plain call (one per forward)
    latent_tokens: list[Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=list)
    image_features: list[torch.Tensor] = field(default_factory=list)


@dataclass
class BlockStack:
    """The block stack of one forward, ready to run: the blocks and everything they read.

    ``tokens`` handed to a runner are ``[B, n_video + extra, dim]`` float32 (video
    tokens with the added tokens, then the extra tokens); a runner returns the
    same shape. :meth:`run_block` runs one block with ``on_block`` before it and
    the block's adapters after it; :meth:`run` runs a range of blocks in order.
    """

    blocks: nn.ModuleList
    time: TimeModulation
    rope: RopeRotation
    text: torch.Tensor
    image: torch.Tensor | None
    attention: Attention
    compute_dtype: torch.dtype
    grid: tuple[int, int, int]
    n_video: int
    adapters: dict[int, list[BlockAdapter]]
    on_block: Callable[[int], None] | None = None
    block_forward: BlockForward | None = None

    def __len__(self) -> int:
        return len(self.blocks)

    def run_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        if self.on_block is not None:
            self.on_block(index)
        if self.block_forward is not None:
            tokens = self.block_forward(index, self.blocks[index], tokens, self)
        else:
            tokens = self.blocks[index](tokens, self.time, self.rope, self.text, self.image, self.attention,
                                        self.compute_dtype)
        for adapter in self.adapters.get(index, ()):
            tokens = adapter(tokens, AdapterContext(index, self.grid, self.n_video, self.compute_dtype))
        return tokens

    def run(self, tokens: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Blocks ``start .. stop - 1`` (all by default), in order."""
        for index in range(start, len(self.blocks) if stop is None else stop):
            tokens = self.run_block(index, tokens)
        return tokens


class BlockRunner(Protocol):
    """Decides how one forward's block stack runs: ``runner(stack, tokens) -> tokens``."""

    def __call__(self, stack: BlockStack, tokens: torch.Tensor) -> torch.Tensor:
        ...


def plain_blocks(stack: BlockStack, tokens: torch.Tensor) -> torch.Tensor:
    """The default runner: every block in order, each with ``on_block`` before and its adapters after."""
    return stack.run(tokens)


def _default_compute_dtype(dtype: torch.dtype | None) -> torch.dtype:
    if dtype is None or dtype in _COMPUTE_DTYPES:
        return dtype or torch.float32
    return torch.bfloat16  # fp8 storage computes in bf16


class WanDiT(nn.Module):
    """The Wan DiT. Layers compute in ``compute_dtype`` (default: the weight dtype,
    bf16 for fp8 weights); residual stream and modulation stay in float32."""

    def __init__(self, config: WanDiTConfig, operations=CastOps, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.compute_dtype = _default_compute_dtype(dtype)
        self.attention = Attention()
        self.block_runner: BlockRunner = plain_blocks
        self.block_streamer = None  # a block_streaming.BlockStreamer: blocks moved to the device one at a time
        ops, dim = operations, config.dim
        self.patch_embedding = ops.Conv3d(config.in_dim, dim, kernel_size=config.patch_size,
                                          stride=config.patch_size, device=device, dtype=dtype)
        self.text_embedding = nn.Sequential(ops.Linear(config.text_dim, dim, device=device, dtype=dtype),
                                            nn.GELU(approximate="tanh"),
                                            ops.Linear(dim, dim, device=device, dtype=dtype))
        self.time_embedding = nn.Sequential(ops.Linear(config.freq_dim, dim, device=device, dtype=dtype),
                                            nn.SiLU(), ops.Linear(dim, dim, device=device, dtype=dtype))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(dim, 6 * dim, device=device, dtype=dtype))
        self.blocks = nn.ModuleList(WanBlock(config, ops, device, dtype) for _ in range(config.num_layers))
        self.head = Head(config, ops, device, dtype)
        if config.has_image_branch:
            flf_tokens = FLF_CLIP_TOKENS if config.flf_pos_emb else None
            self.img_emb = ImageEmbedding(config.image_embed_dim, dim, flf_tokens, ops, device, dtype)

    def set_attention(self, backend: str = "sdpa", chunk_size: int | None = None) -> None:
        """Choose the attention kernel (``sdpa``, ``flash_attn``, ``sageattention``) and query chunking."""
        self.attention = Attention(backend, chunk_size)

    def set_block_runner(self, runner: BlockRunner | None = None) -> None:
        """How every later forward runs the block stack (see :data:`BlockRunner`); None: :func:`plain_blocks`."""
        self.block_runner = runner if runner is not None else plain_blocks

    def set_block_streaming(self, streamer=None) -> None:
        """Stream the blocks through ``streamer`` (see ``block_streaming.py``) in every later forward; None: off."""
        self.block_streamer = streamer

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, clip_fea: torch.Tensor | None = None,
                y: torch.Tensor | None = None, ext: DiTExtensions | None = None,
                on_block: Callable[[int], None] | None = None, runner: BlockRunner | None = None) -> torch.Tensor:
        """Predict the flow for latents ``x`` ``[B, C, F, H, W]``; returns float32 ``[B, out_dim, F, H, W]``.

        ``t``: ``[B]`` or per video token ``[B, F*H*W / patch]``; ``context``: text
        embeddings ``[B, Lt <= 512, text_dim]`` (zero-padded to 512 inside);
        ``clip_fea``: ``[B, 257, 1280]`` (FLF2V ``[B, 514, 1280]``) for models
        with a CLIP branch; ``y``: the I2V conditioning latent, concatenated to
        ``x`` on channels. ``runner`` runs the block stack for this call (default:
        the model's :attr:`block_runner`, :func:`plain_blocks` unless set).
        """
        ext = ext or DiTExtensions()
        cdt = self.compute_dtype
        t = self._check_inputs(x, t, context, clip_fea, y)
        latent = x
        if y is not None:
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        tokens = self.patch_embedding(x.to(cdt)).float()
        grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2)
        batch, n_video = tokens.shape[:2]
        for i, added in enumerate(ext.added_tokens):
            tokens = tokens + self._check_added(i, added, batch, n_video).to(tokens.device)
        for i, make in enumerate(ext.latent_tokens):
            added = make(latent)
            tokens = tokens + self._check_added(len(ext.added_tokens) + i, added, batch, n_video).to(tokens.device)
        extras = [self._check_extra(i, extra, batch) for i, extra in enumerate(ext.extra_tokens)]
        stray = sorted(i for i in ext.block_adapters if not 0 <= i < len(self.blocks))
        if stray:
            raise ExtensionError("block adapters", f"are attached to blocks {stray}",
                                 f"block indices 0..{len(self.blocks) - 1} of this {len(self.blocks)}-block model")
        rope = self._rope(grid, extras, tokens.device)
        if extras:
            tokens = torch.cat([tokens] + [e.tokens.to(tokens.device, torch.float32).expand(batch, -1, -1)
                                           for e in extras], dim=1)
        time = self._time_modulation(t, extras, n_video, tokens.device)
        text = self._embed_text(context.to(tokens.device)).expand(batch, -1, -1)
        image = self.img_emb(clip_fea.to(tokens.device, cdt)) if clip_fea is not None else None
        for features in ext.image_features:
            if image is None or features.shape != clip_fea.shape:
                main = None if clip_fea is None else tuple(clip_fea.shape)
                raise ExtensionError("image features", f"have shape {tuple(features.shape)}",
                                     f"the shape of the main CLIP features {main}")
            image = image + self.img_emb(features.to(tokens.device, cdt))
        streamer = self.block_streamer
        blocks = self.blocks if streamer is None else streamer.sequence()
        stack = BlockStack(blocks, time, rope, text, image, self.attention, cdt, grid, n_video,
                           ext.block_adapters, on_block, ext.block_forward)
        try:
            tokens = (runner if runner is not None else self.block_runner)(stack, tokens)
        finally:
            if streamer is not None:
                streamer.finish()
        out = self.head(tokens[:, :n_video], time.select(n_video), cdt)
        return self.unpatchify(out, grid)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, F*H*W, out_dim * prod(patch)]`` -> ``[B, out_dim, F*pt, H*ph, W*pw]``."""
        pt, ph, pw = self.config.patch_size
        f, h, w = grid
        out = tokens.reshape(tokens.shape[0], f, h, w, pt, ph, pw, self.config.out_dim)
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(tokens.shape[0], self.config.out_dim, f * pt, h * ph, w * pw)

    # ------------------------------------------------------------------ pieces
    def _rope(self, grid: tuple[int, int, int], extras: list[ExtraTokens], device: torch.device) -> RopeRotation:
        head_dim = self.config.head_dim
        rotations = [grid_rotation(*grid, head_dim, device)]
        rotations += [rope_rotation(e.positions, head_dim, device) for e in extras]
        return concat_rotations(rotations)

    def _time_modulation(self, t: torch.Tensor, extras: list[ExtraTokens], n_video: int,
                         device: torch.device) -> TimeModulation:
        """Embed each distinct timestep once; index them per sample or per token."""
        t = t.to(device, torch.float64)
        if t.dim() == 1 and not any(e.t is not None for e in extras):
            token_t = t[:, None]
        else:
            first = t if t.dim() == 1 else t[:, 0]
            parts = [t[:, None].expand(-1, n_video) if t.dim() == 1 else t]
            parts += [e.t.to(device, t.dtype) if e.t is not None else first[:, None].expand(-1, e.tokens.shape[1])
                      for e in extras]
            token_t = torch.cat(parts, dim=1)
        values, index = torch.unique(token_t, return_inverse=True)
        sinusoid = sinusoidal_embedding(self.config.freq_dim, values).float().to(self.compute_dtype)
        embedded = self.time_embedding(sinusoid)
        table = self.time_projection(embedded).float().unflatten(1, (6, self.config.dim))
        return TimeModulation(table, embedded.float(), index)

    def _embed_text(self, context: torch.Tensor) -> torch.Tensor:
        """Zero-pad to ``text_len`` tokens, then embed (the padding tokens are attended, as in the reference)."""
        pad = self.config.text_len - context.shape[1]
        context = torch.cat([context, context.new_zeros(context.shape[0], pad, context.shape[2])], dim=1)
        return self.text_embedding(context.to(self.compute_dtype))

    # ------------------------------------------------------------------ validation
    def _check_inputs(self, x, t, context, clip_fea, y) -> torch.Tensor:
        """Raise InputError for a mistake a user can make; return ``t`` as ``[B]`` or ``[B, L]``."""
        cfg = self.config
        if x.dim() != 5:
            raise InputError("latent", f"has shape {tuple(x.shape)}", "a video latent [B, C, F, H, W]")
        batch = x.shape[0]
        for axis, size, patch in zip(("frames", "height", "width"), x.shape[2:], cfg.patch_size):
            if size % patch:
                lower, upper = size - size % patch, size - size % patch + patch
                nearest = f"{lower} or {upper}" if lower else f"{upper}"
                raise InputError("latent", f"{axis} {size} is not divisible by the patch size {patch}",
                                 f"a latent {axis} of {nearest} (the image {axis} a multiple of {patch} x the "
                                 "VAE's stride, e.g. 16 px for the Wan 2.1 VAE)")
        if y is not None and (y.dim() != 5 or y.shape[0] != batch or y.shape[2:] != x.shape[2:]):
            raise InputError("image conditioning (y)", f"has shape {tuple(y.shape)}",
                             f"[{batch}, C, {', '.join(map(str, x.shape[2:]))}] matching the latent")
        channels = x.shape[1] + (y.shape[1] if y is not None else 0)
        if channels != cfg.in_dim:
            if y is None and cfg.in_dim > x.shape[1]:
                raise InputError("image conditioning (y)", f"is missing: this {cfg.kind.upper()} model takes "
                                 f"{cfg.in_dim} input channels and the latent has {x.shape[1]}",
                                 f"y with {cfg.in_dim - x.shape[1]} channels (mask and encoded start image)")
            got = f"{x.shape[1]} (latent)" + (f" + {y.shape[1]} (y)" if y is not None else "")
            raise InputError("latent", f"has {got} = {channels} channels",
                             f"{cfg.in_dim} channels in total (in_dim of this model, including y)")
        if context.dim() != 3 or context.shape[0] not in (1, batch) or context.shape[2] != cfg.text_dim:
            raise InputError("text context", f"has shape {tuple(context.shape)}",
                             f"text embeddings [{batch}, tokens, {cfg.text_dim}] (umT5-XXL output)")
        if context.shape[1] > cfg.text_len:
            raise InputError("text context", f"has {context.shape[1]} tokens", f"at most {cfg.text_len}")
        self._check_clip(clip_fea, batch)
        return self._check_t(t, batch, x.shape[2:])

    def _check_clip(self, clip_fea, batch: int) -> None:
        cfg = self.config
        tokens = FLF_CLIP_TOKENS if cfg.flf_pos_emb else FLF_CLIP_TOKENS // 2
        expected = f"CLIP vision features [{batch}, {tokens}, {cfg.image_embed_dim}]"
        if not cfg.has_image_branch:
            if clip_fea is not None:
                raise InputError("clip vision output", "was given but this model has no CLIP image branch "
                                 "(Wan 2.2 and T2V models do not use one)", "no clip vision input")
            return
        if clip_fea is None:
            raise InputError("clip vision output", f"is missing: this Wan 2.1 {cfg.kind.upper()} model needs it",
                             expected)
        if clip_fea.dim() != 3 or clip_fea.shape[0] != batch or clip_fea.shape[2] != cfg.image_embed_dim or (
                cfg.flf_pos_emb and clip_fea.shape[1] > FLF_CLIP_TOKENS):
            raise InputError("clip vision output", f"has shape {tuple(clip_fea.shape)}", expected)

    def _check_t(self, t, batch: int, latent_shape) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.tensor(t, dtype=torch.float32)
        n_video = math.prod(s // p for s, p in zip(latent_shape, self.config.patch_size))
        if t.dim() == 0 or (t.dim() == 1 and t.shape[0] == 1):
            t = t.reshape(1).expand(batch)
        if not ((t.dim() == 1 and t.shape[0] == batch) or (t.dim() == 2 and tuple(t.shape) == (batch, n_video))):
            raise InputError("timestep", f"has shape {tuple(t.shape)}",
                             f"[{batch}] (one per sample) or [{batch}, {n_video}] (one per video token)")
        return t

    def _check_added(self, i: int, added: torch.Tensor, batch: int, n_video: int) -> torch.Tensor:
        dim = self.config.dim
        try:
            shape = torch.broadcast_shapes(added.shape, (batch, n_video, dim))
        except RuntimeError:
            shape = None
        if shape != (batch, n_video, dim):
            raise ExtensionError(f"added tokens {i}", f"have shape {tuple(added.shape)}",
                                 f"a tensor broadcastable to the video tokens [{batch}, {n_video}, {dim}]")
        return added.float()

    def _check_extra(self, i: int, extra: ExtraTokens, batch: int) -> ExtraTokens:
        tokens, positions = extra.tokens, extra.positions
        if tokens.dim() != 3 or tokens.shape[0] not in (1, batch) or tokens.shape[2] != self.config.dim:
            raise ExtensionError(f"extra tokens {i}", f"have shape {tuple(tokens.shape)}",
                                 f"[{batch}, tokens, {self.config.dim}]")
        if tuple(positions.shape) != (tokens.shape[1], 3) or positions.is_floating_point():
            raise ExtensionError(f"extra tokens {i} positions", f"have shape {tuple(positions.shape)}",
                                 f"an integer tensor [{tokens.shape[1]}, 3] of (frame, h, w) positions")
        if extra.t is not None and tuple(extra.t.shape) != (batch, tokens.shape[1]):
            raise ExtensionError(f"extra tokens {i} timestep", f"has shape {tuple(extra.t.shape)}",
                                 f"[{batch}, {tokens.shape[1]}]")
        return extra
