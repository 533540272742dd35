"""The Wan 2.1 video VAE: causal 3D convolutions, 16 latent channels, 8x8 spatial
and 4x temporal compression (``T_lat = 1 + (T - 1) // 4``).

Module names are the official checkpoint keys (``encoder.*``, ``decoder.*``,
``conv1.*``, ``conv2.*``), so ``Wan2.1_VAE.pth`` loads with ``strict=True``.

Every temporal convolution is causal: an output frame sees only its input
frame and earlier ones. That is what makes streaming exact. The encoder takes
the first frame alone, then chunks of 4 frames; the decoder takes one latent
frame at a time. Between chunks a :class:`FeatureCache` carries, for every
causal convolution, the last input frames its kernel still needs, so
processing chunk by chunk gives the same result as the official code, and
memory depends on the chunk size, not on the video length.

Two quirks of the official model are reproduced on purpose, because the
weights were trained with them: a temporal upsampling layer does not upsample
the first latent frame (it yields 1 frame, the others 2 each, so 1 + 4k
frames come out), and its first temporal convolution starts from zeros rather
than from the first frame's features. The temporal downsampling layers keep
only the last frame of the previous chunk.

Layers come from an ``operations`` namespace (the pack's CastOps, or
ComfyUI's comfy.ops in the host), which cast weights to the input's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import CastOps
from .latent_space import LATENT_CHANNELS, to_model_space, to_vae_space

_COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class WanVAEConfig:
    """Widths and layout. The defaults are the released Wan 2.1 VAE."""

    dim: int = 96
    z_dim: int = LATENT_CHANNELS
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # the official spelling

    def __post_init__(self):
        object.__setattr__(self, "dim_mult", tuple(int(m) for m in self.dim_mult))
        object.__setattr__(self, "attn_scales", tuple(float(s) for s in self.attn_scales))
        object.__setattr__(self, "temperal_downsample", tuple(bool(t) for t in self.temperal_downsample))
        if len(self.dim_mult) < 2 or len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"temperal_downsample needs one entry per downsampling stage "
                             f"({len(self.dim_mult) - 1}), got {self.temperal_downsample}")

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent cell along H and W (8 for Wan 2.1)."""
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first (4 for Wan 2.1)."""
        return 2 ** sum(self.temperal_downsample)

    def latent_frames(self, frames: int) -> int:
        """Latent frames for ``frames`` video frames; frames past ``1 + 4k`` are not encoded, as in Wan."""
        return 1 + (frames - 1) // self.temporal_factor if frames > 0 else 0

    def pixel_frames(self, latent_frames: int) -> int:
        """Video frames decoded from ``latent_frames`` latent frames (``1 + 4 (T_lat - 1)``)."""
        return 1 + self.temporal_factor * (latent_frames - 1) if latent_frames > 0 else 0

    def encode_chunks(self, frames: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of the frame chunks the encoder takes: the first frame, then 4 at a time."""
        step = self.temporal_factor
        return [(0, 1)] + [(1 + step * i, 1 + step * (i + 1)) for i in range(self.latent_frames(frames) - 1)]


class FeatureCache:
    """What each causal layer remembers of the previous chunk, keyed by the layer.

    ``device`` (optional) is where the remembered frames are kept between
    chunks, e.g. the CPU when several spatial tiles each keep their own cache.
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else None
        self._tails: dict[nn.Module, torch.Tensor] = {}
        # called between the encoder's and decoder's blocks (an interrupt check: one chunk of a large frame
        # can take seconds on a CPU); None: no check
        self.between_blocks: Callable[[], None] | None = None

    def __contains__(self, layer: nn.Module) -> bool:
        return layer in self._tails

    def get(self, layer: nn.Module, like: torch.Tensor) -> torch.Tensor | None:
        tail = self._tails.get(layer)
        return None if tail is None else tail.to(device=like.device, dtype=like.dtype)

    def put(self, layer: nn.Module, tail: torch.Tensor) -> None:
        """Remember ``tail`` (copied, so the chunk it was sliced from can be freed)."""
        if self.device is not None and tail.device != self.device:
            self._tails[layer] = tail.to(self.device)
        else:
            self._tails[layer] = tail.clone()

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tails.values())


def causal_conv3d(ops, in_dim: int, out_dim: int, kernel: int | tuple[int, int, int], device=None,
                  dtype=None) -> nn.Module:
    """A Conv3d without built-in padding; :func:`run_causal` pads it causally in time
    (zeros, or the cached frames of the previous chunk) and symmetrically in space."""
    return ops.Conv3d(in_dim, out_dim, kernel, padding=0, device=device, dtype=dtype)


def run_causal(conv: nn.Module, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    """Apply a causal conv to ``x`` ``[B, C, T, H, W]``, continuing the stream in ``cache``.

    The conv sees the ``kt - 1`` frames before ``x`` (from the cache, zeros
    before the start of the video), so chunked and whole-sequence outputs agree.
    """
    kt, kh, kw = conv.kernel_size
    context = kt - 1
    if context and cache is not None:
        previous = cache.get(conv, x)
        if previous is not None:
            x = torch.cat([previous, x], dim=2)
            context = max(0, context - previous.shape[2])
        cache.put(conv, x[:, :, -(kt - 1):])
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    if context or ph or pw:
        x = F.pad(x, (pw, pw, ph, ph, context, 0))
    return conv(x)


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D ``fn`` to every frame of ``[B, C, T, H, W]``."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class RMSNormChannels(nn.Module):
    """L2-normalise over channels (dim 1) times ``sqrt(C) * gamma``, Wan's ``RMS_norm``.

    ``gamma`` has shape ``[C, 1, 1, 1]`` for videos and ``[C, 1, 1]`` for
    per-frame images, as in the checkpoints.
    """

    def __init__(self, dim: int, images: bool = False, device=None, dtype=None):
        super().__init__()
        shape = (dim, 1, 1) if images else (dim, 1, 1, 1)
        data = torch.empty(shape, device=device, dtype=dtype)
        if data.device.type != "meta":
            data.fill_(1.0)
        self.gamma = nn.Parameter(data)
        self.scale = dim ** 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma.to(device=x.device, dtype=x.dtype)


class _Nearest2x(nn.Module):
    """2x nearest upsampling of ``[N, C, H, W]``, computed in float32 (bf16 support), as in Wan."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


class _PadRightBottom(nn.Module):
    """One zero column on the right and one zero row at the bottom before a stride-2 conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 1, 0, 1))


class ResidualBlock(nn.Module):
    """norm-SiLU-conv-norm-SiLU-conv plus a (1x1x1 conv) shortcut.

    ``residual`` keeps the official indices (0 norm, 2 conv, 3 norm, 6 conv;
    1, 4 are SiLU and 5 the training-time dropout).
    """

    def __init__(self, in_dim: int, out_dim: int, ops, device=None, dtype=None):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNormChannels(in_dim, device=device, dtype=dtype), nn.SiLU(),
            causal_conv3d(ops, in_dim, out_dim, 3, device, dtype),
            RMSNormChannels(out_dim, device=device, dtype=dtype), nn.SiLU(), nn.Identity(),
            causal_conv3d(ops, out_dim, out_dim, 3, device, dtype))
        self.shortcut = (causal_conv3d(ops, in_dim, out_dim, 1, device, dtype) if in_dim != out_dim
                         else nn.Identity())

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        r = self.residual
        h = run_causal(r[2], F.silu(r[0](x)), cache)
        h = run_causal(r[6], F.silu(r[3](h)), cache)
        return h + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no temporal context)."""

    def __init__(self, dim: int, ops, device=None, dtype=None):
        super().__init__()
        self.norm = RMSNormChannels(dim, images=True, device=device, dtype=dtype)
        self.to_qkv = ops.Conv2d(dim, dim * 3, 1, device=device, dtype=dtype)
        self.proj = ops.Conv2d(dim, dim, 1, device=device, dtype=dtype)

    def _frame(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(n, 1, 3 * c, h * w).transpose(2, 3)
        q, k, v = qkv.chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        return x + _per_frame(self._frame, x)


class Resample(nn.Module):
    """2x spatial down/upsampling, with a causal 2x temporal one for the ``*3d`` modes."""

    MODES = ("upsample2d", "upsample3d", "downsample2d", "downsample3d")

    def __init__(self, dim: int, mode: str, ops, device=None, dtype=None):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        if mode.startswith("up"):
            self.resample = nn.Sequential(_Nearest2x(),
                                          ops.Conv2d(dim, dim // 2, 3, padding=1, device=device, dtype=dtype))
        else:
            self.resample = nn.Sequential(_PadRightBottom(),
                                          ops.Conv2d(dim, dim, 3, stride=2, device=device, dtype=dtype))
        if mode == "upsample3d":  # each frame becomes two: the conv's two channel halves
            self.time_conv = causal_conv3d(ops, dim, dim * 2, (3, 1, 1), device, dtype)
        elif mode == "downsample3d":  # stride 2 over (last frame of the previous chunk, this chunk)
            self.time_conv = ops.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        if self.time_conv not in cache:  # the first chunk passes through; the stream starts after it
            cache.put(self.time_conv, x[:, :, :0])
            return x
        b, c, t, h, w = x.shape
        y = run_causal(self.time_conv, x, cache)  # [B, 2C, T, H, W]
        return y.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)

    def _downsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        previous = cache.get(self.time_conv, x)
        cache.put(self.time_conv, x[:, :, -1:])
        if previous is None:  # the first chunk passes through
            return x
        return self.time_conv(torch.cat([previous, x], dim=2))


def _head(out_dim: int, channels: int, ops, device, dtype) -> nn.Sequential:
    return nn.Sequential(RMSNormChannels(out_dim, device=device, dtype=dtype), nn.SiLU(),
                         causal_conv3d(ops, out_dim, channels, 3, device, dtype))


def _run(layers: nn.Sequential, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
    check = cache.between_blocks
    for layer in layers:
        if check is not None:
            check()
        x = layer(x, cache)
    return x


class Encoder3d(nn.Module):
    """Video ``[B, 3, T, H, W]`` -> ``[B, 2 z_dim, T_lat, H/8, W/8]`` (mean and log-variance)."""

    def __init__(self, config: WanVAEConfig, ops, device=None, dtype=None):
        super().__init__()
        cfg = config
        dims = [cfg.dim * m for m in (1,) + cfg.dim_mult]
        kw = dict(device=device, dtype=dtype)
        self.conv1 = causal_conv3d(ops, 3, dims[0], 3, **kw)
        layers: list[nn.Module] = []
        scale = 1.0
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim, ops, **kw))
                if scale in cfg.attn_scales:
                    layers.append(AttentionBlock(out_dim, ops, **kw))
                in_dim = out_dim
            if i < len(cfg.dim_mult) - 1:
                mode = "downsample3d" if cfg.temperal_downsample[i] else "downsample2d"
                layers.append(Resample(out_dim, mode, ops, **kw))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim, ops, **kw), AttentionBlock(out_dim, ops, **kw),
                                    ResidualBlock(out_dim, out_dim, ops, **kw))
        self.head = _head(out_dim, 2 * cfg.z_dim, ops, device, dtype)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = run_causal(self.conv1, x, cache)
        x = _run(self.middle, _run(self.downsamples, x, cache), cache)
        return run_causal(self.head[2], F.silu(self.head[0](x)), cache)


class Decoder3d(nn.Module):
    """Latent ``[B, z_dim, T_lat, h, w]`` -> video ``[B, 3, 1 + 4 (T_lat - 1), 8h, 8w]``."""

    def __init__(self, config: WanVAEConfig, ops, device=None, dtype=None):
        super().__init__()
        cfg = config
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1],) + cfg.dim_mult[::-1]]
        temporal_upsample = cfg.temperal_downsample[::-1]
        kw = dict(device=device, dtype=dtype)
        self.conv1 = causal_conv3d(ops, cfg.z_dim, dims[0], 3, **kw)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0], ops, **kw), AttentionBlock(dims[0], ops, **kw),
                                    ResidualBlock(dims[0], dims[0], ops, **kw))
        layers: list[nn.Module] = []
        scale = 1.0 / 2 ** (len(cfg.dim_mult) - 2)
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:  # the previous stage's upsampling conv halved the channels
                in_dim //= 2
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim, ops, **kw))
                if scale in cfg.attn_scales:
                    layers.append(AttentionBlock(out_dim, ops, **kw))
                in_dim = out_dim
            if i < len(cfg.dim_mult) - 1:
                mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
                layers.append(Resample(out_dim, mode, ops, **kw))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = _head(out_dim, 3, ops, device, dtype)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = run_causal(self.conv1, x, cache)
        x = _run(self.upsamples, _run(self.middle, x, cache), cache)
        return run_causal(self.head[2], F.silu(self.head[0](x)), cache)


class WanVAE(nn.Module):
    """The Wan 2.1 VAE (official key names). Layers compute in ``compute_dtype``
    (default: the weight dtype); encode/decode return float32.

    Whole-video helpers: :meth:`encode` / :meth:`decode` work in the DiT's
    normalised *model space* (as the official ``WanVAE`` wrapper does),
    :meth:`encode_raw` / :meth:`decode_raw` in the raw VAE space (ComfyUI's
    LATENT). They keep the whole video on the input's device; for long videos
    use ``models/wan/vae_streaming.py``, built on :meth:`encode_chunk` and
    :meth:`decode_step`.
    """

    def __init__(self, config: WanVAEConfig | None = None, operations: Any = CastOps, device=None, dtype=None):
        super().__init__()
        self.config = config = config or WanVAEConfig()
        self.compute_dtype = dtype if dtype in _COMPUTE_DTYPES else (torch.float32 if dtype is None else torch.bfloat16)
        ops = operations or CastOps
        z2 = 2 * config.z_dim
        self.encoder = Encoder3d(config, ops, device, dtype)
        self.conv1 = causal_conv3d(ops, z2, z2, 1, device, dtype)
        self.conv2 = causal_conv3d(ops, config.z_dim, config.z_dim, 1, device, dtype)
        self.decoder = Decoder3d(config, ops, device, dtype)

    # ------------------------------------------------------------ streaming steps
    def encode_chunk(self, frames: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """Raw latent mean (float32) of one chunk: the first frame, then 4 frames per call."""
        out = self.conv1(self.encoder(frames.to(self.compute_dtype), cache))
        return out[:, : self.config.z_dim].float()

    def decode_step(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """Video frames (float32, unclamped) of one raw latent frame ``[B, z_dim, 1, h, w]``:
        1 frame for the first call on ``cache``, 4 for each later one."""
        return self.decoder(self.conv2(z.to(self.compute_dtype)), cache).float()

    # ------------------------------------------------------------ whole videos
    @torch.no_grad()
    def encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        """Video ``[B, 3, T, H, W]`` in -1..1 -> raw latent mean ``[B, z, 1 + (T-1)//4, H/8, W/8]``."""
        cache = FeatureCache()
        chunks = self.config.encode_chunks(video.shape[2])
        return torch.cat([self.encode_chunk(video[:, :, a:b], cache) for a, b in chunks], dim=2)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video in -1..1 -> the DiT's latent, ``(mu - mean) * (1 / std)`` as in Wan."""
        return to_model_space(self.encode_raw(video))

    @torch.no_grad()
    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[B, z, T_lat, h, w]`` -> video ``[B, 3, 1 + 4 (T_lat-1), 8h, 8w]``, unclamped."""
        cache = FeatureCache()
        return torch.cat([self.decode_step(z[:, :, t:t + 1], cache) for t in range(z.shape[2])], dim=2)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """The DiT's latent -> video clamped to -1..1, as the official ``WanVAE.decode``."""
        return self.decode_raw(to_vae_space(latent)).clamp_(-1.0, 1.0)
