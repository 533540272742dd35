"""What the pose workflow needs in a test server: tiny pose models under the real file names, and a short
driving video in input/. Used by test_host_pose_workflow.py and tests/browser (loaded by file path: tests are
not packages).

The video is a bright block (the tiny detector's "person") walking right over a dark background, with a white
spot on it (where the tiny keypoint model puts every point); it is written by the host's own python (PyAV), so
the host's LoadVideo reads exactly what it would read from a user.
"""
from __future__ import annotations

import importlib.util
import subprocess
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
POSE_MODEL_FOLDER = "poseanimate_pose"
POSE_MODEL_NAMES = {"yolox": "yolox_l.onnx", "rtmpose": "dw-ll_ucoco_384.onnx"}   # the workflow's DWPose pair
VIDEO_NAME = "driving_video.mp4"        # the name workflows/pose_extraction.* load
VIDEO_FRAMES, VIDEO_WIDTH, VIDEO_HEIGHT, VIDEO_FPS = 12, 192, 160, 12


def _tiny_models():
    spec = importlib.util.spec_from_file_location("tiny_pose_models", TESTS.parent / "tiny_models" / "pose_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_pose_models(models_dir: Path, names: dict[str, str] | None = None) -> dict[str, str]:
    """Tiny stand-ins under the real names in ``models/poseanimate_pose/``: by default the YOLOX and RTMPose
    pair (``yolox_l.onnx``, ``dw-ll_ucoco_384.onnx``); ``names`` maps other kinds (yolov10, vitpose) to names."""
    tiny = _tiny_models()
    folder = Path(models_dir) / POSE_MODEL_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return {kind: getattr(tiny, kind)(folder / name) for kind, name in (names or POSE_MODEL_NAMES).items()}


_VIDEO = textwrap.dedent("""
    import sys
    import av
    import numpy as np
    path, frames, width, height, fps = sys.argv[1], *map(int, sys.argv[2:6])
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10"}
        for t in range(frames):
            image = np.full((height, width, 3), 20, np.uint8)
            x = 20 + t * (width - 80) // max(frames - 1, 1)
            image[30:height - 20, x:x + 40] = (200, 190, 180)          # the "person"
            image[60:66, x + 17:x + 23] = 255                           # the spot every keypoint goes to
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
""")


def write_driving_video(host_python: str, input_dir: Path, name: str = VIDEO_NAME) -> Path:
    """An H.264 mp4 of ``VIDEO_FRAMES`` frames, ``VIDEO_WIDTH`` x ``VIDEO_HEIGHT``, in ``input_dir``."""
    path = Path(input_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([host_python, "-c", _VIDEO, str(path), str(VIDEO_FRAMES), str(VIDEO_WIDTH),
                           str(VIDEO_HEIGHT), str(VIDEO_FPS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and path.is_file(), f"could not write the test video:\n{proc.stderr[-3000:]}"
    return path


_PROBE = textwrap.dedent("""
    import json, sys
    import av
    with av.open(sys.argv[1]) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    print(json.dumps({"frames": len(frames), "height": frames[0].shape[0], "width": frames[0].shape[1],
                      "mean": [float(f.mean()) for f in frames]}))
""")


def probe_video(host_python: str, path: Path) -> dict:
    """Frame count, size and per-frame mean brightness of a video, read with the host's PyAV."""
    import json
    proc = subprocess.run([host_python, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
