"""Encode and decode long videos with the Wan VAE in bounded memory.

The VAE is causal in time (see models/wan/vae.py), so a video can pass
through it chunk by chunk: the encoder takes the first frame, then 4 frames at
a time; the decoder one latent frame at a time (1 video frame, then 4 each).
Only one chunk and the per-layer feature caches are on the compute device at
once, so peak memory depends on the chunk and tile size, not on the number of
frames. Frames come from (and go to) wherever the caller keeps them, typically
the CPU.

Spatial tiling (optional) cuts each frame into overlapping tiles, each with
its own feature cache, and blends the overlaps with linear ramps. It lowers
the activation peak further, at the price of a small seam error (the
tiles do not see each other's context; see tests/models/test_wan_vae.py for
the measured bound). ``cache_device='cpu'`` parks each tile's cache on the
CPU while the other tiles run.

Tile sizes and overlaps are in latent cells (8 pixels each).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ... import host
from ...errors import InputError
from .latent_space import to_model_space, to_vae_space
from .vae import FeatureCache, WanVAE

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""``(steps done, total steps)``; a step is one chunk (or latent frame) of one tile."""
_IMAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.uint8)
_OTHER_LATENTS = {4: "an SD 1.x/2.x/SDXL latent", 16: "a Wan 2.1 latent", 48: "a Wan 2.2 TI2V-5B latent",
                  128: "an LTX-Video latent"}


@dataclass
class DecodedFrames:
    """Video frames ``[B, 3, n, H, W]`` (float32, -1..1, on the compute device) starting at frame ``start``."""

    start: int
    frames: torch.Tensor


# ---------------------------------------------------------------- checks
def _nearest_multiples(size: int, factor: int) -> str:
    lower = size - size % factor
    options = [s for s in (lower, lower + factor) if s > 0]
    return " or ".join(str(s) for s in options)


def check_frame_size(height: int, width: int, factor: int, input_name: str) -> None:
    """Raise unless both sides are positive multiples of ``factor`` (8), naming the nearest valid sizes."""
    for side, size in (("height", height), ("width", width)):
        if size <= 0 or size % factor:
            raise InputError(input_name, f"{side} {size} is not a multiple of {factor}",
                             f"a {side} that is a multiple of {factor}, e.g. {_nearest_multiples(size, factor)} "
                             f"(resize or crop the frames)")


def check_latent(latent: torch.Tensor, z_dim: int, input_name: str = "latent") -> None:
    """Raise unless ``latent`` is a non-empty ``[B, z_dim, T, h, w]`` float tensor."""
    if not isinstance(latent, torch.Tensor) or latent.dim() != 5:
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise InputError(input_name, f"has shape {shape}", f"a video latent [B, {z_dim}, T, h, w]")
    if latent.shape[1] != z_dim:
        what = _OTHER_LATENTS.get(latent.shape[1])
        like = f" (it looks like {what})" if what else ""
        raise InputError(input_name, f"has {latent.shape[1]} channels{like}",
                         f"{z_dim} channels, a Wan 2.1 VAE latent")
    if latent.numel() == 0:
        raise InputError(input_name, f"is empty (shape {tuple(latent.shape)})", "at least one latent frame")
    if not latent.is_floating_point():
        raise InputError(input_name, f"has dtype {latent.dtype}", "a floating-point latent")


def _tile_pair(value: int | tuple[int, int] | None, name: str) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) for v in pair):
        raise InputError(name, f"is {value!r}", "an int or a (height, width) pair of ints, in latent cells")
    return pair


def plan_tiles(size: int, tile: int | None, overlap: int, input_name: str = "tile size") -> list[tuple[int, int]]:
    """``(start, stop)`` spans covering ``0..size`` with tiles of ``tile`` overlapping by at least ``overlap``.

    The last tile is shifted back to end at ``size`` (so it may overlap more).
    """
    if tile is None or tile >= size:
        return [(0, size)]
    if tile < 1:
        raise InputError(input_name, f"is {tile}", "at least 1 latent cell")
    if not 0 <= overlap < tile:
        raise InputError("tile overlap", f"is {overlap} for tiles of {tile}",
                         "at least 0 and less than the tile size (in latent cells)")
    starts = list(range(0, size - tile, tile - overlap)) + [size - tile]
    return [(s, s + tile) for s in dict.fromkeys(starts)]


def _axis_weights(spans: list[tuple[int, int]], index: int, factor: int) -> torch.Tensor:
    """Blend weights along one axis of tile ``index`` in output units: linear ramps over its overlaps."""
    start, stop = spans[index]
    n = (stop - start) * factor
    weight = torch.ones(n)
    if index > 0:
        length = (spans[index - 1][1] - start) * factor
        weight[:length] = torch.minimum(weight[:length], (torch.arange(length) + 0.5) / length)
    if index < len(spans) - 1:
        length = (stop - spans[index + 1][0]) * factor
        weight[n - length:] = torch.minimum(weight[n - length:], (torch.arange(length, 0, -1) - 0.5) / length)
    return weight


class _TiledStream:
    """Runs one step (chunk or latent frame) over every tile, each tile with its own cache,
    and blends the tiles' outputs. With one tile it returns that tile's output as is."""

    def __init__(self, height: int, width: int, tile, overlap, out_factor: int, cache_device):
        tile_h, tile_w = _tile_pair(tile, "tile size")
        if overlap is None:
            overlap_h, overlap_w = (tile_h or 0) // 4, (tile_w or 0) // 4
        else:
            overlap_h, overlap_w = _tile_pair(overlap, "tile overlap")
        self.rows = plan_tiles(height, tile_h, overlap_h)
        self.cols = plan_tiles(width, tile_w, overlap_w)
        self.tiles = [(r, c) for r in range(len(self.rows)) for c in range(len(self.cols))]
        self.caches = [FeatureCache(cache_device) for _ in self.tiles]
        self.factor = out_factor
        self._weights: list[torch.Tensor] = []
        self._total: torch.Tensor | None = None
        if len(self.tiles) > 1:
            row_w = [_axis_weights(self.rows, i, out_factor) for i in range(len(self.rows))]
            col_w = [_axis_weights(self.cols, i, out_factor) for i in range(len(self.cols))]
            total = torch.zeros(height * out_factor, width * out_factor)
            for r, c in self.tiles:
                weight = row_w[r][:, None] * col_w[c][None, :]
                self._weights.append(weight)
                total[self._out_slice(r, c)] += weight
            self._total = total

    def __len__(self) -> int:
        return len(self.tiles)

    def _out_slice(self, r: int, c: int) -> tuple[slice, slice]:
        (r0, r1), (c0, c1), f = self.rows[r], self.cols[c], self.factor
        return slice(r0 * f, r1 * f), slice(c0 * f, c1 * f)

    def in_slice(self, index: int, in_factor: int) -> tuple[slice, slice]:
        r, c = self.tiles[index]
        (r0, r1), (c0, c1) = self.rows[r], self.cols[c]
        return slice(r0 * in_factor, r1 * in_factor), slice(c0 * in_factor, c1 * in_factor)

    def step(self, run: Callable[[int, FeatureCache], torch.Tensor], before_tile: Callable[[], None],
             after_tile: Callable[[], None]) -> torch.Tensor:
        out = None
        for index, (r, c) in enumerate(self.tiles):
            before_tile()
            y = run(index, self.caches[index])
            after_tile()
            if len(self.tiles) == 1:
                return y
            if out is None:
                out = y.new_zeros(*y.shape[:-2], *self._total.shape)
            rows, cols = self._out_slice(r, c)
            out[..., rows, cols] += y * self._weights[index].to(y)
            del y
        return out / self._total.to(out)


def _progress_and_interrupt(total: int, progress: ProgressFn | None, check_interrupt: Callable[[], None] | None):
    if progress is None:
        bar = host.Progress(total)
        progress = lambda done, total: bar.update(1)  # noqa: E731
    check = host.interrupt_check(check_interrupt)
    done = [0]

    def advance() -> None:
        done[0] += 1
        progress(done[0], total)

    return check, advance


def _device_of(vae: WanVAE, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(vae.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# ---------------------------------------------------------------- frame sources
class _FrameSource:
    """Frames ``[B, 3, n, H, W]`` in -1..1 by frame range, converted as they are fetched."""

    batch: int
    frames: int
    height: int
    width: int

    def chunk(self, start: int, stop: int, rows: slice, cols: slice, device: torch.device) -> torch.Tensor:
        raise NotImplementedError


class _VideoSource(_FrameSource):
    def __init__(self, video: torch.Tensor, name: str):
        if not isinstance(video, torch.Tensor) or video.dim() != 5 or video.shape[1] != 3:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise InputError(name, f"has shape {shape}", "a video [B, 3, T, H, W] in -1..1")
        if video.shape[0] == 0 or video.shape[2] == 0:
            raise InputError(name, f"is empty (shape {tuple(video.shape)})", "at least one frame")
        self.video = video
        self.batch, _, self.frames, self.height, self.width = video.shape

    def chunk(self, start, stop, rows, cols, device):
        return self.video[:, :, start:stop, rows, cols].to(device=device, dtype=torch.float32)


class _ImageSource(_FrameSource):
    """ComfyUI IMAGE frames ``[H, W, C]`` in 0..1 (RGBA loses its alpha), as one video."""

    def __init__(self, images: torch.Tensor | Sequence[torch.Tensor], name: str):
        if isinstance(images, torch.Tensor):
            if images.dim() == 3:
                images = images[None]
            parts = [images]
        else:
            parts = [p if p.dim() == 4 else p[None] for p in images]
        frames: list[torch.Tensor] = []
        for part in parts:
            if part.dim() != 4 or part.shape[-1] < 3:
                raise InputError(name, f"holds a tensor of shape {tuple(part.shape)}",
                                 "images [N, H, W, 3] in 0..1 (ComfyUI IMAGE)")
            frames.extend(part.unbind(0))
        if not frames:
            raise InputError(name, "holds no frames", "at least one image")
        height, width = frames[0].shape[:2]
        for i, frame in enumerate(frames):
            if tuple(frame.shape[:2]) != (height, width):
                raise InputError(name, f"frame {i} is {frame.shape[1]}x{frame.shape[0]} (WxH) but frame 0 is "
                                 f"{width}x{height}", "all frames the same size (resize them first)")
        self.images = frames
        self.batch, self.frames, self.height, self.width = 1, len(frames), height, width

    def chunk(self, start, stop, rows, cols, device):
        frames = torch.stack([f[rows, cols, :3] for f in self.images[start:stop]])
        frames = frames.to(device=device, dtype=torch.float32)
        if self.images[0].dtype == torch.uint8:
            frames = frames / 255.0
        return (frames * 2.0 - 1.0).permute(3, 0, 1, 2)[None]


# ---------------------------------------------------------------- encode
def _encode(vae: WanVAE, source: _FrameSource, name: str, normalize: bool, tile, overlap, device, out_device,
            cache_device, check_interrupt, progress) -> torch.Tensor:
    cfg = vae.config
    factor = cfg.spatial_factor
    check_frame_size(source.height, source.width, factor, name)
    chunks = cfg.encode_chunks(source.frames)
    used = chunks[-1][1]
    if used < source.frames:
        log.info("%s: %d frames; the VAE encodes 1 + 4k frames, so the last %d are not encoded",
                 name, source.frames, source.frames - used)
    device = _device_of(vae, device)
    h, w = source.height // factor, source.width // factor
    stream = _TiledStream(h, w, tile, overlap, 1, cache_device)
    check, advance = _progress_and_interrupt(len(chunks) * len(stream), progress, check_interrupt)
    for cache in stream.caches:  # interrupts are also checked between the blocks of one chunk
        cache.between_blocks = check
    out = torch.empty(source.batch, cfg.z_dim, len(chunks), h, w, dtype=torch.float32, device=out_device)
    with torch.no_grad():
        for t, (start, stop) in enumerate(chunks):
            def run(index: int, cache: FeatureCache) -> torch.Tensor:
                rows, cols = stream.in_slice(index, factor)
                return vae.encode_chunk(source.chunk(start, stop, rows, cols, device), cache)

            mu = stream.step(run, check, advance)
            out[:, :, t:t + 1] = (to_model_space(mu) if normalize else mu).to(out_device)
    return out


def encode_video(vae: WanVAE, video: torch.Tensor, *, normalize: bool = True, tile=None, overlap=None,
                 device: torch.device | str | None = None, out_device: torch.device | str = "cpu",
                 cache_device: torch.device | str | None = None, check_interrupt: Callable[[], None] | None = None,
                 progress: ProgressFn | None = None) -> torch.Tensor:
    """Video ``[B, 3, T, H, W]`` in -1..1 (any device) -> latent ``[B, 16, 1 + (T-1)//4, H/8, W/8]``.

    ``normalize``: True gives the DiT's model-space latent (as Wan's encode),
    False the raw VAE latent (ComfyUI's LATENT). Frames move to ``device``
    (default: the VAE's) one chunk at a time; the latent is written to
    ``out_device``. ``tile``/``overlap`` (latent cells) turn on spatial tiling.
    """
    return _encode(vae, _VideoSource(video, "video"), "video", normalize, tile, overlap, device, out_device,
                   cache_device, check_interrupt, progress)


def encode_images(vae: WanVAE, images: torch.Tensor | Sequence[torch.Tensor], *, normalize: bool = True,
                  tile=None, overlap=None, device: torch.device | str | None = None,
                  out_device: torch.device | str = "cpu", cache_device: torch.device | str | None = None,
                  check_interrupt: Callable[[], None] | None = None,
                  progress: ProgressFn | None = None) -> torch.Tensor:
    """ComfyUI IMAGE frames (``[N, H, W, 3]`` in 0..1, or a list of such batches / single
    ``[H, W, 3]`` frames) as one video -> latent ``[1, 16, 1 + (N-1)//4, H/8, W/8]``."""
    return _encode(vae, _ImageSource(images, "images"), "images", normalize, tile, overlap, device, out_device,
                   cache_device, check_interrupt, progress)


# ---------------------------------------------------------------- decode
def decode_frames(vae: WanVAE, latent: torch.Tensor, *, normalized: bool = True, tile=None, overlap=None,
                  clamp: bool = True, device: torch.device | str | None = None,
                  cache_device: torch.device | str | None = None, check_interrupt: Callable[[], None] | None = None,
                  progress: ProgressFn | None = None) -> Iterator[DecodedFrames]:
    """Decode ``latent`` ``[B, 16, T_lat, h, w]`` one latent frame at a time, yielding the video
    frames of each (1 for the first latent frame, 4 for each later one) as soon as they exist.

    ``normalized``: the latent is the DiT's (model space); False for a raw VAE
    latent (ComfyUI's LATENT). The latent may stay on the CPU: each frame (and
    tile) moves to ``device`` (default: the VAE's) when it is decoded. Frames are
    clamped to -1..1 like Wan's decode unless ``clamp`` is False.
    """
    check_latent(latent, vae.config.z_dim)
    device = _device_of(vae, device)
    steps = latent.shape[2]
    stream = _TiledStream(latent.shape[3], latent.shape[4], tile, overlap, vae.config.spatial_factor, cache_device)
    check, advance = _progress_and_interrupt(steps * len(stream), progress, check_interrupt)
    for cache in stream.caches:  # interrupts are also checked between the blocks of one chunk
        cache.between_blocks = check
    start = 0
    for t in range(steps):
        def run(index: int, cache: FeatureCache) -> torch.Tensor:
            rows, cols = stream.in_slice(index, 1)
            z = latent[:, :, t:t + 1, rows, cols].to(device)
            z = to_vae_space(z) if normalized else z.float()
            return vae.decode_step(z, cache)

        with torch.no_grad():
            frames = stream.step(run, check, advance)
            if clamp:
                frames = frames.clamp_(-1.0, 1.0)
        yield DecodedFrames(start, frames)
        start += frames.shape[2]
        del frames


def images_shape(vae: WanVAE, latent: torch.Tensor) -> tuple[int, int, int, int]:
    """``[B * T, H, W, 3]``: the IMAGE batch :func:`decode_to_images` fills for ``latent``."""
    b, _, t, h, w = latent.shape
    f = vae.config.spatial_factor
    return b * vae.config.pixel_frames(t), h * f, w * f, 3


def decode_to_images(vae: WanVAE, latent: torch.Tensor, out: torch.Tensor | None = None, *,
                     out_dtype: torch.dtype = torch.float32, normalized: bool = True, tile=None, overlap=None,
                     device: torch.device | str | None = None, cache_device: torch.device | str | None = None,
                     check_interrupt: Callable[[], None] | None = None,
                     progress: ProgressFn | None = None) -> torch.Tensor:
    """Decode into a ComfyUI IMAGE ``[B * T, H, W, 3]`` (video by video), preallocated on the CPU.

    Values are 0..1 for float dtypes and 0..255 (rounded) for uint8. ``out``:
    a buffer of :func:`images_shape` to fill (any device, float or uint8), else
    one of ``out_dtype`` is allocated on the CPU. Only one latent frame's
    output is on the compute device at a time.
    """
    check_latent(latent, vae.config.z_dim)
    shape = images_shape(vae, latent)
    if out is None:
        if out_dtype not in _IMAGE_DTYPES:
            raise InputError("output dtype", f"is {out_dtype}", "float32, float16, bfloat16 or uint8")
        out = torch.empty(shape, dtype=out_dtype)
    elif tuple(out.shape) != shape or out.dtype not in _IMAGE_DTYPES:
        raise InputError("output buffer", f"has shape {tuple(out.shape)} and dtype {out.dtype}",
                         f"shape {list(shape)} and dtype float32, float16, bfloat16 or uint8")
    frames_per_video = shape[0] // latent.shape[0]
    for chunk in decode_frames(vae, latent, normalized=normalized, tile=tile, overlap=overlap, device=device,
                               cache_device=cache_device, check_interrupt=check_interrupt, progress=progress):
        images = (chunk.frames.permute(0, 2, 3, 4, 1) + 1.0) * 0.5  # [B, n, H, W, 3] in 0..1
        if out.dtype == torch.uint8:
            images = (images * 255.0).round_()
        images = images.to(out.dtype).to(out.device)
        n = images.shape[1]
        for b in range(images.shape[0]):
            first = b * frames_per_video + chunk.start
            out[first:first + n] = images[b]
        del images, chunk
    return out
