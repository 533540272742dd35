"""Peak memory of UniAnimate-DiT Conditioning, RealisDance-DiT Conditioning and the streamed VAE decode (whole
frames and tiled) against memory_budget's estimates.

For each size (frames x pixels) the node runs once in a fresh child process on the CPU, and the script prints
the measured peak, the estimate the node checks before work, and their ratio measured/estimate. A ratio at or
below 1 means the estimate is an upper bound (the node refuses nothing that would have fitted by more than the
ratio's slack); above 1, the estimate would let a run through that then needs more than it said.

How memory is measured (the choice, as in ``vae_memory.py``): torch keeps no statistics for its CPU allocator
and tracemalloc does not see its allocations, and ``getrusage``'s ``ru_maxrss`` cannot be reset, so each run is
a child process that loads the models, makes its inputs, runs a small warm-up call of the same node (one-time
costs such as oneDNN's kernel caches are not the node's), resets the kernel's peak resident set
(``echo 5 > /proc/self/clear_refs``), notes the current RSS, runs the node, and reports ``VmHWM`` - baseline:
everything the node held at its peak, inputs excluded, output included (the estimates count the output too).
The children run with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed blocks go back to the kernel and resident
memory follows live memory rather than the heap's history.

The estimates are those the nodes check, with the model's real width: on a CPU-only host the "device" part
(one VAE chunk; for conditioning also the pose encoder) and the CPU part (IMAGE frames) are both in the one
process, so the estimate compared is their sum. The VAE is built at ``--dim`` (default 32, a third of the
released 96, so the run takes minutes on two cores) and the estimate uses the same width.

    python bench/memory_estimates.py                  # all four, 4 sizes
    python bench/memory_estimates.py --kinds realisdance,decode_tiled
    python bench/memory_estimates.py --dim 96         # the released VAE width (slow on a CPU)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((9, 128, 128), (9, 256, 256), (17, 256, 384), (41, 256, 256))  # (frames, height, width)
TILE, TILE_OVERLAP = 8, 2  # decode_tiled: 64-pixel tiles (Load Wan VAE's smallest), so every size has several


def _status_kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def measure(kind: str, frames: int, height: int, width: int, dim: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import standalone
    sys.path.remove(str(ROOT))
    standalone.load_pack()
    import torch

    from poseanimate import memory_budget as mb
    from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader
    from poseanimate.nodes.unianimate_nodes import (POSE_WINDOW_FRAMES, PoseAnimateUniAnimateConditioning,
                                                    PoseAnimateUniAnimateLoader)
    from poseanimate.nodes.vae_nodes import PoseAnimateVAEDecode, PoseAnimateVAELoader
    from poseanimate.tiny_models.model_files import DIT_FILE, UNIANIMATE_FILE, VAE_FILE, write_tiny_model_files

    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="poseanimate_bench_"))
    write_tiny_model_files(root, vae_dim=dim)
    os.environ["POSEANIMATE_MODELS"] = str(root)
    (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
    g = torch.Generator().manual_seed(0)
    if kind == "conditioning":
        (dit,) = PoseAnimateDiTLoader().load(DIT_FILE, "fp32", "fp32", "sdpa")
        _, unianimate = PoseAnimateUniAnimateLoader().load(dit, UNIANIMATE_FILE, 1.0)
        text = torch.randn(1, 5, 32, generator=g)
        clip = torch.randn(1, 257, 32, generator=g)

        def make(count, h, w):
            poses = torch.rand(count, h, w, 3, generator=g)
            return (unianimate, vae, text, text, torch.rand(1, h, w, 3, generator=g), poses, poses[:1], count,
                    1.0, 0.0, 1.0, clip)

        def run(inputs):
            return PoseAnimateUniAnimateConditioning().build(*inputs)
        # as the node's _check_memory with the pack's VAE: the pose video on the CPU (the gray frames are one
        # view), one VAE chunk or one window's pose encoder on the device
        cpu = mb.image_frames(1, height, width) * frames
        device = max(mb.vae_step(height, width, torch.float32, None, dim=dim),
                     mb.unianimate_pose_embedding(min(frames, POSE_WINDOW_FRAMES), height, width))
    elif kind == "realisdance":
        from poseanimate.nodes.realisdance_nodes import (PoseAnimateRealisDanceConditioning,
                                                         PoseAnimateRealisDanceLoader, PoseAnimateRealisDanceReference)
        from poseanimate.tiny_models.model_files import REALISDANCE_FILE
        _, realisdance = PoseAnimateRealisDanceLoader().load(REALISDANCE_FILE, "fp32", "fp32", "sdpa")
        text = torch.randn(1, 5, 32, generator=g)
        clip = torch.randn(1, 257, 32, generator=g)

        def make(count, h, w):  # the reference tokens (another node) are made before the measurement
            (reference,) = PoseAnimateRealisDanceReference().encode(
                realisdance, vae, torch.rand(1, h, w, 3, generator=g), w, h, "model", "model", "model")
            return (realisdance, reference, vae, text, text, torch.rand(count, h, w, 3, generator=g),
                    torch.rand(count, h, w, 3, generator=g), count, 1.0, clip, clip)

        def run(inputs):
            return PoseAnimateRealisDanceConditioning().build(*inputs)
        # as the node's _check_memory with the pack's VAE: the latents on the CPU, one VAE chunk on the device
        cpu = mb.realisdance_latents(frames, height, width)
        device = mb.vae_step(height, width, torch.float32, None, dim=dim)
    else:
        tile, overlap = (TILE, TILE_OVERLAP) if kind == "decode_tiled" else (None, 8)
        if tile:
            (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", tile, overlap)

        def make(count, h, w):
            return {"samples": torch.randn(1, 16, (count - 1) // 4 + 1, h // 8, w // 8, generator=g)}

        def run(latent):
            return PoseAnimateVAEDecode().decode(latent, vae)
        cpu = mb.image_frames(frames, height, width)
        device = mb.vae_step(height, width, torch.float32, tile, dim=dim, overlap=overlap)
    run(make(1, 64, 64))  # warm-up: kernel caches and lazy imports are not the node's
    inputs = make(frames, height, width)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = _status_kb("VmRSS")
    started = time.perf_counter()
    out = run(inputs)
    seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM") - baseline
    del out
    return {"kind": kind, "frames": frames, "height": height, "width": width, "measured_mib": peak / 1024,
            "estimate_mib": (cpu + device) / 2 ** 20, "cpu_mib": cpu / 2 ** 20, "device_mib": device / 2 ** 20,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=32, help="VAE width (96 released)")
    parser.add_argument("--kinds", default="conditioning,decode,realisdance,decode_tiled")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "FRAMES", "HEIGHT", "WIDTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, frames, height, width = args.child
        print(json.dumps(measure(kind, int(frames), int(height), int(width), args.dim)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    print(f"VAE dim {args.dim}, float32, CPU ({os.cpu_count()} cores), torch threads default")
    print(f"{'node':<14}{'frames x HxW':>16}{'Mpx':>8}{'measured MiB':>14}{'estimate MiB':>14}"
          f"{' (cpu + device)':>18}{'ratio':>8}{'s':>7}")
    for kind in args.kinds.split(","):
        for frames, height, width in SIZES:
            done = subprocess.run([sys.executable, __file__, "--dim", str(args.dim), "--child", kind, str(frames),
                                   str(height), str(width)], env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-3000:])
                raise SystemExit(done.returncode)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            size = f"{frames} x {height}x{width}"
            parts = " ({:.0f} + {:.0f})".format(r["cpu_mib"], r["device_mib"])
            print(f"{kind:<14}{size:>16}{frames * height * width / 1e6:>8.2f}"
                  f"{r['measured_mib']:>14.1f}{r['estimate_mib']:>14.1f}{parts:>18}"
                  f"{r['measured_mib'] / r['estimate_mib']:>8.2f}{r['seconds']:>7.1f}")


if __name__ == "__main__":
    main()
