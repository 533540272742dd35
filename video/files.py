"""Writing output files: atomically, with the permissions any new file gets, and videos that play everywhere.

The job's outputs go through a temporary file beside the target and take its name only when complete, so a
crash or an interrupt never leaves a half-written video under the output's name. ``tempfile.mkstemp`` makes
that file 0600; the finished file gets the mode a plain ``open()`` would give it (0666 less the umask).

Videos are H.264 (yuv420p, ``+faststart``) through PyAV, the FFmpeg binding ComfyUI itself requires: the codec
every browser and player decodes. Outside ComfyUI PyAV is optional (``pip install av``); without it the video is
written by OpenCV as MPEG-4 Part 2, whose PyPI wheels carry no H.264 encoder, and the caller is told so.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

H264 = "h264"
MPEG4 = "mpeg4"


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` would create a file with: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_output(out: Path, suffix: str) -> Iterator[str]:
    """Yield a temporary path beside ``out``; when the block ends without error it becomes ``out`` with
    normal permissions, otherwise it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=f".partial{suffix}")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def write_mp4(frames: np.ndarray, out: Path, fps: float, crf: int = 19) -> str:
    """Write ``frames`` (uint8 RGB ``[N, H, W, 3]``, even sizes) as an .mp4 at ``fps``; returns the codec
    written: ``"h264"`` with PyAV, ``"mpeg4"`` (OpenCV's fallback) without it."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
    with atomic_output(out, out.suffix or ".mp4") as tmp:
        if have_pyav():
            _write_h264(frames, tmp, fps, crf)
            return H264
        _write_mpeg4(frames, tmp, fps)
        return MPEG4


def _write_h264(frames: np.ndarray, path: str, fps: float, crf: int) -> None:
    import av
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _write_mpeg4(frames: np.ndarray, path: str, fps: float) -> None:
    import cv2
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV could not open a video writer for {Path(path).name}")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()


def mp4_codec(path: str | Path) -> str | None:
    """The video codec named in an .mp4's sample description (``stsd``): ``"h264"`` for ``avc1``/``avc3``,
    ``"mpeg4"`` for ``mp4v``, ``"hevc"``, ``"av1"``, ``"vp9"``; None when there is none. Reads the boxes only,
    without a decoder, so a test can check what a player will see."""
    names = {b"avc1": H264, b"avc3": H264, b"mp4v": MPEG4, b"hvc1": "hevc", b"hev1": "hevc", b"av01": "av1",
             b"vp09": "vp9"}
    data = Path(path).read_bytes()
    at = data.find(b"stsd")
    while at >= 0:
        entry = data[at + 12: at + 20]  # version/flags (4), entry count (4), then the first entry's size and type
        if entry[4:8] in names:
            return names[entry[4:8]]
        at = data.find(b"stsd", at + 4)
    return None
