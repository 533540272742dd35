"""Peak memory of the streamed Wan VAE decode for N and 4N latent frames.

Streaming decodes one latent frame at a time with a fixed-size feature cache
and writes the frames into a preallocated CPU IMAGE buffer, so the working
memory should not grow with the video length. This script decodes N and 4N
latent frames of the same size and prints each run's working peak and the
ratio (4N / N), which should stay at or below 1.15.

The output buffer ([frames, H, W, 3] on the CPU) grows with N by definition;
it is allocated and touched before the measurement starts, so it is not in
the working peak, and its size is printed in its own column.

How memory is measured:

* CUDA: ``torch.cuda.max_memory_allocated()`` minus what was allocated just
  before the decode (weights, latent), after ``reset_peak_memory_stats``:
  exactly the tensor memory the decode itself needed on the GPU.
* CPU: torch keeps no statistics for its CPU allocator and tracemalloc does
  not see it, so each run is a fresh child process that reads the kernel's
  peak resident set (``VmHWM`` in /proc/self/status). The child builds the
  model, the latent and the output buffer, runs a 2-latent-frame warm-up
  decode (so one-time costs such as oneDNN's kernel caches, identical for
  every N and flattering the ratio, are left out), resets the peak
  (``echo 5 > /proc/self/clear_refs``), notes the current RSS, decodes, and
  reports peak - baseline. glibc would keep freed blocks mapped, so the
  children run with ``MALLOC_MMAP_THRESHOLD_=65536`` (blocks above 64 KiB
  are mmapped and returned to the kernel on free): resident memory then
  follows live memory instead of the heap's history. (``--malloc default``
  keeps glibc's dynamic threshold; the figure then depends on how much freed
  heap the warm-up left for reuse and swings both ways: 43 MiB for 4 latent
  frames and 127 MiB for 16, but 121 MiB for 2 and 146 MiB for 8 on the
  same config. It measures the allocator, not the decode.)
  As a cross-check independent of the allocator, the child then decodes
  again under torch's profiler and reads its memory timeline: the peak of
  live tensor bytes above those at the start (``--no-timeline`` skips it).

Usage (CPU defaults: a reduced width, dim 32, at 128x128 pixels, so a run
takes about a minute on two cores; the released width is dim 96, ~9x the work):

    python bench/vae_memory.py                     # CPU, dim 32, latent 16x16, N = 3 and 12
    python bench/vae_memory.py --device cuda --dim 96 --latent 60x104 --frames 3 --dtype bf16
    python bench/vae_memory.py --tile 8 --overlap 2  # spatial tiling
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def measure(args: argparse.Namespace, latent_frames: int) -> dict:
    """One decode of ``latent_frames`` frames in this process; returns the figures as a dict."""
    sys.path.insert(0, str(ROOT))
    import standalone
    sys.path.remove(str(ROOT))
    standalone.load_pack()
    import torch

    from poseanimate.models.wan import vae_streaming as vs
    from poseanimate.models.wan.vae import WanVAE, WanVAEConfig

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, DTYPES[args.dtype])
    vae = WanVAE(WanVAEConfig(dim=args.dim), dtype=dtype).to(device).eval().requires_grad_(False)
    h, w = (int(v) for v in args.latent.split("x"))
    latent = torch.randn(1, 16, latent_frames, h, w)  # stays on the CPU: frames move one at a time
    quiet = dict(progress=lambda done, total: None, check_interrupt=lambda: None,
                 tile=args.tile, overlap=args.overlap, cache_device=args.cache_device)
    out = torch.zeros(vs.images_shape(vae, latent), dtype=torch.float16)  # allocated and touched
    warm = latent[:, :, :2]
    vs.decode_to_images(vae, warm, torch.zeros(vs.images_shape(vae, warm), dtype=torch.float16), **quiet)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        baseline = _status_kb("VmRSS") * 1024
    start = time.perf_counter()
    vs.decode_to_images(vae, latent, out, **quiet)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kb("VmHWM") * 1024
    result = {"latent_frames": latent_frames, "frames": out.shape[0], "seconds": time.perf_counter() - start,
              "work_mb": (peak - baseline) / 2**20, "baseline_mb": baseline / 2**20,
              "output_mb": out.numel() * out.element_size() / 2**20}
    if device.type == "cpu" and args.timeline:
        result["tensor_mb"] = _profiler_peak(lambda: vs.decode_to_images(vae, latent, out, **quiet)) / 2**20
    return result


def _profiler_peak(run) -> float:
    """Peak live tensor bytes during ``run()`` above those at its start, from torch's profiler memory timeline."""
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        run()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA in favour of memory snapshots
        path = Path(folder) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(s) for s in sizes]
    return max(totals) - totals[0]


def run_child(args: argparse.Namespace, latent_frames: int) -> dict:
    env = dict(os.environ)
    if args.malloc == "mmap":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    command = [sys.executable, __file__, "--child", str(latent_frames)] + _forwarded(args)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"child run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _forwarded(args: argparse.Namespace) -> list[str]:
    out = [] if args.timeline else ["--no-timeline"]
    out += ["--device", args.device, "--dim", str(args.dim), "--latent", args.latent, "--dtype", args.dtype,
           "--threads", str(args.threads)]
    if args.tile is not None:
        out += ["--tile", str(args.tile)]
    if args.overlap is not None:
        out += ["--overlap", str(args.overlap)]
    if args.cache_device is not None:
        out += ["--cache-device", args.cache_device]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=32, help="VAE width (the released model: 96)")
    parser.add_argument("--latent", default="16x16", help="latent HxW (pixels are 8x)")
    parser.add_argument("--frames", type=int, default=3, help="N: the short run's latent frames (the long one: 4N)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--tile", type=int, default=None, help="spatial tile, latent cells")
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap, latent cells")
    parser.add_argument("--cache-device", default=None,
                        help="where tiles keep their feature caches between steps (e.g. cpu while decoding on cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--malloc", choices=("mmap", "default"), default="mmap", help="CPU children's glibc malloc")
    parser.add_argument("--no-timeline", dest="timeline", action="store_false",
                        help="CPU: skip the second, profiled decode (torch's live tensor bytes)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.child)))
        return
    if args.device == "cpu":
        runs = [run_child(args, n) for n in (args.frames, 4 * args.frames)]
        method = f"peak RSS per child process (VmHWM, malloc={args.malloc})"
    else:
        runs = [measure(args, n) for n in (args.frames, 4 * args.frames)]
        method = "torch.cuda.max_memory_allocated"
    print(f"device {args.device}, dim {args.dim}, latent {args.latent}, dtype {args.dtype}, "
          f"tile {args.tile}, overlap {args.overlap}, cache device {args.cache_device}; memory: {method}")
    tensors = all("tensor_mb" in r for r in runs)
    extra = " live tensors MiB (profiler) |" if tensors else ""
    print(f"| latent frames | video frames | working peak MiB |{extra} output buffer MiB (CPU, excluded) | seconds |")
    print("|---|---|---|---|---|" + ("---|" if tensors else ""))
    for r in runs:
        cell = f" {r['tensor_mb']:.1f} |" if tensors else ""
        print(f"| {r['latent_frames']} | {r['frames']} | {r['work_mb']:.1f} |{cell} {r['output_mb']:.1f} | "
              f"{r['seconds']:.1f} |")
    ratio = runs[1]["work_mb"] / runs[0]["work_mb"]
    print(f"ratio 4N/N of the working peak: {ratio:.3f} ({'ok' if ratio <= 1.15 else 'ABOVE 1.15'})")
    if tensors:
        print(f"ratio 4N/N of the live tensor peak: {runs[1]['tensor_mb'] / runs[0]['tensor_mb']:.3f}")


if __name__ == "__main__":
    main()
