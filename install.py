"""Install the pack's optional binary dependencies without creating duplicates.

ComfyUI-Manager runs this file after ``pip install -r requirements.txt``.
OpenCV and onnxruntime each ship as several PyPI distributions that install
the same top-level module (``cv2``, ``onnxruntime``) and clobber each other in
one environment. requirements.txt therefore names neither; this script installs
one only when no distribution of it is present, and never touches torch.
"""
from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")
ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml",
                             "onnxruntime-openvino", "onnxruntime-silicon")


def installed(names: tuple[str, ...]) -> list[str]:
    found = []
    for name in names:
        try:
            md.version(name)
            found.append(name)
        except md.PackageNotFoundError:
            pass
    return found


def wanted_onnxruntime() -> str:
    """onnxruntime-gpu where torch sees CUDA (it also runs on CPU), else the CPU build."""
    try:
        import torch
        return "onnxruntime-gpu" if torch.cuda.is_available() else "onnxruntime"
    except Exception:
        return "onnxruntime"


def plan() -> list[str]:
    """The distributions to install: only those with no equivalent already present."""
    todo = []
    if not installed(OPENCV_DISTRIBUTIONS):
        todo.append("opencv-python")
    if not installed(ONNXRUNTIME_DISTRIBUTIONS):
        todo.append(wanted_onnxruntime())
    return todo


def main() -> int:
    todo = plan()
    for group in (OPENCV_DISTRIBUTIONS, ONNXRUNTIME_DISTRIBUTIONS):
        present = installed(group)
        if len(present) > 1:
            print(f"[PoseAnimate] warning: several distributions of one module are installed: {', '.join(present)}; "
                  f"keep one (pip uninstall the others) or imports may break.")
    if not todo:
        return 0
    print(f"[PoseAnimate] installing {' '.join(todo)}")
    return subprocess.call([sys.executable, "-m", "pip", "install", *todo])


if __name__ == "__main__":
    sys.exit(main())
