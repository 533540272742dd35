"""Pose extraction: frames per second batched versus one frame at a time.

Builds the tiny ONNX stand-ins from tiny_models/pose_models.py (the real
models' names and shapes, dynamic batch; needs the ``onnx`` package), makes a
clip with two bright figures per frame, and runs the pack's whole extraction
(detector + keypoint model, with all pre- and post-processing) once with
batches of ``--batch`` and once with batches of 1, on the same models. Prints
frames per second for both and the ratio; exits 1 if batching is not faster.

    python bench/pose_batching.py [--frames 48] [--batch 16] [--pair yolox,rtmpose|yolov10,vitpose] [--device cpu]

The stand-ins are cheap image reductions plus a dense head (``--dense`` units,
like the dense layers real pose models end in): one image at a time, each
call streams the head's weights for a matrix-vector product; in batches the
weights are read once per batch. So this measures what batching saves in the
pack's pipeline (per-call overhead, weight reuse), not the real models' speed,
which on a GPU depends on the GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import standalone  # noqa: E402

sys.path.remove(str(ROOT))
standalone.load_pack()

from poseanimate.pose.extract import load_pose_estimator  # noqa: E402


def tiny_models():
    spec = importlib.util.spec_from_file_location("tiny_pose_models", ROOT / "tiny_models" / "pose_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip(frames: int, height: int = 360, width: int = 480) -> np.ndarray:
    out = np.zeros((frames, height, width, 3), np.uint8)
    for t in range(frames):
        x = 40 + (t * 5) % 120
        out[t, 40:320, x:x + 90] = 200
        out[t, 30:300, x + 220:x + 320] = 180
        out[t, 100, x + 45] = 255
    return out


class NetworkClock:
    """Adds up the time spent inside the ONNX sessions (the rest is the
    pack's pre- and post-processing)."""

    def __init__(self, *models):
        self.seconds = 0.0
        for model in models:
            run = model.run

            def timed_run(batch, run=run):
                start = time.perf_counter()
                try:
                    return run(batch)
                finally:
                    self.seconds += time.perf_counter() - start
            model.run = timed_run


def timed(estimator, frames, batches: tuple[int, ...], runs: int) -> dict[int, tuple[float, float]]:
    """Median seconds per clip, and the network's share of it, for each batch
    size; runs interleaved so that load from other processes slows all alike."""
    clock = NetworkClock(estimator.detector.model, estimator.keypoints.model)
    times: dict[int, list[tuple[float, float]]] = {b: [] for b in batches}
    for _ in range(runs):
        for batch in batches:
            clock.seconds = 0.0
            start = time.perf_counter()
            poses = estimator(frames, batch_size=batch, max_people=2)
            total = time.perf_counter() - start
            times[batch].append((total, clock.seconds))
            assert len(poses) == len(frames)
    return {b: (statistics.median(t for t, _ in v), statistics.median(n for _, n in v)) for b, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pair", default="yolox,rtmpose", choices=["yolox,rtmpose", "yolov10,vitpose"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dense", type=int, default=2048, help="units of the stand-ins' dense head (0: none)")
    args = parser.parse_args()

    tiny = tiny_models()
    detector_kind, keypoint_kind = args.pair.split(",")
    frames = clip(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        detector = getattr(tiny, detector_kind)(Path(tmp) / f"{detector_kind}.onnx", dynamic=True, dense=args.dense)
        keypoints = getattr(tiny, keypoint_kind)(Path(tmp) / f"{keypoint_kind}.onnx", dynamic=True, dense=args.dense)
        estimator = load_pose_estimator(keypoints, detector, device=args.device)
        estimator(frames[:4], batch_size=args.batch)                      # warm-up
        estimator(frames[:4], batch_size=1)
        result = timed(estimator, frames, (1, args.batch), args.runs)
    (single, single_net), (batched, batched_net) = result[1], result[args.batch]
    print(f"{args.pair} on {args.device}, {args.frames} frames of 360x480, 2 people each, "
          f"dense head {args.dense}, median of {args.runs}")
    print(f"  one frame at a time : {args.frames / single:8.1f} frames/s  (network {single_net / single:4.0%} of it)")
    print(f"  batches of {args.batch:<9d}: {args.frames / batched:8.1f} frames/s  "
          f"(network {batched_net / batched:4.0%} of it)")
    print(f"  batched / single    : {single / batched:8.2f}x overall, {single_net / batched_net:.2f}x in the network")
    return 0 if batched < single else 1

if __name__ == "__main__":
    sys.exit(main())
