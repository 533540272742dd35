"""Long videos in bounded memory: sample AND decode N and 4N latent frames, compare peaks and times.

The whole long-video path on tiny random-weight models: the Wan 2.1 I2V DiT
with UniAnimate-DiT's LoRA merged and its pose encoders (``--method
unianimate``, the default; ``--method toy``: a MethodConditioning that only
slices a per-frame condition), ``sampling.video.sample_video`` with windows
(UniAnimate's 21 latent frames, overlap 4, its private-frame blending by
default), then ``models.wan.vae_streaming.decode_to_images`` one latent frame
at a time into a preallocated CPU IMAGE. It prints, for N and 4N latent frames,
the working peak, the time, and the ratios 4N/N: the memory ratio should stay
at or below 1.15, the time ratio no worse than linear (about 4, at most 4.4).

What is in the peak and what is not. The inputs and the output grow with the
video by definition: the pose frames (an IMAGE of every video frame, as the
host hands it over), the reference latent ``y`` and the output IMAGE buffer.
They are built, and the buffer touched, before the measurement starts and are
printed in their own columns. Everything the run itself allocates is in the
peak, including what grows with the video inside the run: the sampler's
latent state (with the solver's history and the windows' private frames) and
UniAnimate's cache of pose tokens (one entry per window, kept for the run).
Their sizes are printed too, so the figures can be scaled to the real model.

How memory is measured:

* CUDA: ``torch.cuda.max_memory_allocated()`` above what was allocated just
  before the run (models, inputs, after ``reset_peak_memory_stats``): exactly
  the tensor memory the run needed on the GPU.
* CPU: torch keeps no statistics for its CPU allocator and ``tracemalloc``
  does not see it (it traces Python's allocator only), so each run is a fresh
  child process that reads the kernel's peak resident set. The child builds
  everything, runs a warm-up (one step over a 2-window video and a 2-frame
  decode, the same for N and 4N, so one-time costs such as oneDNN's kernel
  caches are left out), resets the peak (``echo 5 > /proc/self/clear_refs``),
  notes the resident set (``VmRSS``), runs, and reports ``VmHWM`` minus that.
  The kernel keeps ``VmHWM`` itself, so no short-lived peak is missed. glibc
  would keep freed blocks mapped (the figure would then measure the heap's
  history), so the children run with ``MALLOC_MMAP_THRESHOLD_=65536``: blocks
  above 64 KiB are mmapped and returned on free, and resident memory follows
  live memory. As a cross-check the child also samples ``/proc/self/statm``
  from a background thread every millisecond (torch releases the GIL in its
  kernels). A sampler can miss short peaks, and its own thread (stack,
  buffers) counts in its figure; on this machine the two agree within 0.2 MiB.

Usage:

    python bench/long_video_memory.py --threads 1               # CPU, N = 42 latent frames (165 video frames)
    python bench/long_video_memory.py --method toy
    python bench/long_video_memory.py --device cuda --latent 30x52 --dim 512
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


class StatmSampler:
    """Samples the resident set from /proc/self/statm in a background thread (a lower bound of the peak)."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.is_set():
                statm.seek(0)
                self.peak = max(self.peak, int(statm.read().split()[1]) * PAGE)
                time.sleep(self.interval)

    def __enter__(self) -> "StatmSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _load_pack():
    sys.path.insert(0, str(ROOT))
    import standalone
    sys.path.remove(str(ROOT))
    return standalone.load_pack()


def build(args: argparse.Namespace, device):
    """The tiny DiT (UniAnimate's LoRA merged when used), the pose encoders and the VAE, on ``device``."""
    from poseanimate.methods.unianimate import parse_unianimate
    from poseanimate.models.lora import merge_loras
    from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict
    from poseanimate.tiny_models.model_files import unianimate_state_dict, vae_state_dict
    from poseanimate.models.wan.config import infer_config
    from poseanimate.models.wan.dit import WanDiT
    from poseanimate.models.wan.vae import WanVAE, WanVAEConfig

    widths = dict(dim=args.dim, num_layers=args.layers, ffn_dim=2 * args.dim, text_dim=32, clip_dim=32)
    state = tiny_wan_state_dict("i2v", seed=0, **widths)
    dit = WanDiT(infer_config(state, num_heads=max(1, args.dim // 32)))
    dit.load_state_dict(state)
    encoders = None
    if args.method == "unianimate":
        weights = parse_unianimate(unianimate_state_dict(seed=1, **widths), dit)
        merge_loras(dit, [(weights.lora, 1.0)])
        encoders = weights.encoders.to(device)
    vae = WanVAE(WanVAEConfig(dim=args.vae_dim))
    vae.load_state_dict(vae_state_dict(args.vae_dim, seed=2))
    return dit.to(device).eval().requires_grad_(False), encoders, vae.to(device).eval().requires_grad_(False)


def conditioning(args: argparse.Namespace, encoders, latent_frames: int):
    """The method's conditioning for ``latent_frames`` (inputs on the CPU, as the host holds them)."""
    import torch

    from poseanimate.models.wan.latent_space import pixel_frames
    from poseanimate.sampling.conditioning import VideoGeometry
    from poseanimate.methods.unianimate import build_unianimate_conditioning
    from poseanimate.sampling.wan_denoiser import WanCond
    from poseanimate.sampling.windows import slice_frames

    h, w = (int(v) for v in args.latent.split("x"))
    frames = pixel_frames(latent_frames)
    g = torch.Generator().manual_seed(latent_frames)
    context = torch.randn(1, 12, 32, generator=g)
    negative = torch.zeros(1, 1, 32)
    clip = torch.randn(1, 257, 32, generator=g)
    y_latent = torch.randn(1, 16, latent_frames, h, w, generator=g)
    if args.method == "unianimate":
        poses = torch.rand(frames, 8 * h, 8 * w, 3, generator=g)
        ref_pose = torch.rand(8 * h, 8 * w, 3, generator=g)
        cond = build_unianimate_conditioning(encoders, y_latent, ref_pose, poses, context, negative, clip,
                                             frames=frames)
        return cond, {"pose frames": poses, "y": cond.y}

    class ToyConditioning:
        """Text, CLIP and a per-frame ``y`` cut to each window."""

        geometry = VideoGeometry(latent_frames, h, w)
        y = torch.cat([torch.zeros(1, 4, latent_frames, h, w), y_latent], 1)

        def branch(self, positive, step, steps, window=None):
            y = self.y if window is None else slice_frames(self.y, window, dim=2)
            return WanCond(context if positive else negative, clip, y)

        def clear_cache(self):
            pass

    cond = ToyConditioning()
    return cond, {"y": cond.y}


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(args: argparse.Namespace, latent_frames: int) -> dict:
    """One sample + decode of ``latent_frames`` in this process; the figures as a dict."""
    _load_pack()
    import torch

    from poseanimate.models.wan import vae_streaming as vs
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.video import WindowSettings, sample_video, window_count

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dit, encoders, vae = build(args, device)
    windows = WindowSettings(args.window, args.overlap, args.blending)
    quiet = dict(progress=lambda done, total: None, check_interrupt=lambda: None)

    def run(cond, steps: int, out) -> float:
        """Sample, then decode into ``out``; the seconds the sampling took."""
        start = time.perf_counter()
        latent = sample_video(dit, cond, make_scheduler(args.scheduler, steps, 5.0), args.cfg, 0, windows, **quiet)
        if device.type == "cuda":
            torch.cuda.synchronize()
        sampled = time.perf_counter() - start
        cond.clear_cache()
        vs.decode_to_images(vae, latent, out, **quiet)
        return sampled

    warm, _ = conditioning(args, encoders, args.window + 1)  # 2 windows, whatever N is
    warm_out = torch.zeros(vs.images_shape(vae, torch.empty(warm.geometry.latent_shape, device="meta")))
    run(warm, 1, warm_out)
    del warm, warm_out
    cond, inputs = conditioning(args, encoders, latent_frames)
    out = torch.zeros(vs.images_shape(vae, torch.empty(cond.geometry.latent_shape, device="meta")))  # touched

    cache = {}
    if args.method == "unianimate":  # record what the pose-token cache holds before the run frees it
        clear = cond.clear_cache
        cond.clear_cache = lambda: (cache.setdefault("bytes", _nbytes(cond._tokens.values())), clear())

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        baseline = _status_kb("VmRSS") * 1024
    start = time.perf_counter()
    with StatmSampler() as sampler:
        sample_seconds = run(cond, args.steps, out)
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _status_kb("VmHWM") * 1024
    latent_bytes = 4 * 16 * latent_frames * cond.geometry.height * cond.geometry.width
    return {"latent_frames": latent_frames, "frames": out.shape[0], "seconds": seconds,
            "sample_seconds": sample_seconds,
            "windows": window_count(latent_frames, windows),
            "work_mb": (peak - baseline) / 2**20,
            "sampled_mb": (sampler.peak - baseline) / 2**20 if device.type == "cpu" else float("nan"),
            "baseline_mb": baseline / 2**20, "output_mb": _nbytes([out]) / 2**20,
            "inputs_mb": _nbytes(inputs.values()) / 2**20, "latent_mb": latent_bytes / 2**20,
            "token_cache_mb": cache.get("bytes", 0) / 2**20}


def run_child(args: argparse.Namespace, latent_frames: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, __file__, "--child", str(latent_frames)] + _forwarded(args)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"child run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _forwarded(args: argparse.Namespace) -> list[str]:
    names = ("device", "method", "dim", "layers", "vae_dim", "latent", "window", "overlap", "blending", "steps",
             "cfg", "scheduler", "threads")
    out = []
    for name in names:
        out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", choices=("unianimate", "toy"), default="unianimate")
    parser.add_argument("--dim", type=int, default=64, help="DiT width (the 14B model: 5120)")
    parser.add_argument("--layers", type=int, default=2, help="DiT blocks")
    parser.add_argument("--vae-dim", type=int, default=8, help="VAE width (the released model: 96)")
    parser.add_argument("--latent", default="8x8", help="latent HxW (pixels are 8x; must be even)")
    parser.add_argument("--frames", type=int, default=42, help="N latent frames (the long run: 4N)")
    parser.add_argument("--window", type=int, default=21, help="window, latent frames")
    parser.add_argument("--overlap", type=int, default=4, help="window overlap, latent frames")
    parser.add_argument("--blending", default="unianimate")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cfg", type=float, default=1.5)
    parser.add_argument("--scheduler", default="euler")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.child)))
        return
    counts = (args.frames, 4 * args.frames)
    if args.device == "cpu":
        runs = [run_child(args, n) for n in counts]
        method = "peak RSS per child process (VmHWM, mmap threshold 64 KiB); sampled: /proc/self/statm every 1 ms"
    else:
        runs = [measure(args, n) for n in counts]
        method = "torch.cuda.max_memory_allocated"
    print(f"device {args.device}, method {args.method}, DiT dim {args.dim} x {args.layers} blocks, VAE dim "
          f"{args.vae_dim}, latent {args.latent}, window {args.window}/{args.overlap} {args.blending}, "
          f"{args.steps} {args.scheduler} steps, cfg {args.cfg}; memory: {method}")
    print("| latent frames | video frames | windows | working peak MiB | sampled MiB | seconds (sampling + decoding) | "
          "latent MiB | pose-token cache MiB | inputs MiB (excluded) | output MiB (excluded) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['latent_frames']} | {r['frames']} | {r['windows']} | {r['work_mb']:.1f} | "
              f"{r['sampled_mb']:.1f} | {r['seconds']:.2f} ({r['sample_seconds']:.2f} + "
              f"{r['seconds'] - r['sample_seconds']:.2f}) | {r['latent_mb']:.2f} | {r['token_cache_mb']:.2f} | "
              f"{r['inputs_mb']:.1f} | {r['output_mb']:.1f} |")
    memory = runs[1]["work_mb"] / runs[0]["work_mb"]
    seconds = runs[1]["seconds"] / runs[0]["seconds"]
    sampling = runs[1]["sample_seconds"] / runs[0]["sample_seconds"]
    decoding = (runs[1]["seconds"] - runs[1]["sample_seconds"]) / (runs[0]["seconds"] - runs[0]["sample_seconds"])
    print(f"ratio 4N/N: working peak {memory:.3f} ({'ok' if memory <= 1.15 else 'ABOVE 1.15'}), "
          f"time {seconds:.2f} ({'ok' if seconds <= 4.4 else 'ABOVE 4.4'}; sampling {sampling:.2f}, decoding "
          f"{decoding:.2f}; windows "
          f"{runs[1]['windows'] / runs[0]['windows']:.2f}, video frames {runs[1]['frames'] / runs[0]['frames']:.2f})")


if __name__ == "__main__":
    main()
