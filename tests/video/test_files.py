"""Output files: H.264 through PyAV (read back from the file's own sample description), OpenCV's MPEG-4 as the
fallback, the fps kept, normal permissions, and nothing left under the output's name when writing fails."""
import os
from pathlib import Path

import numpy as np
import pytest

from poseanimate.video import files

FRAMES = (np.arange(5 * 32 * 48 * 3) % 251).astype(np.uint8).reshape(5, 32, 48, 3)


def test_h264_with_the_requested_fps(tmp_path):
    av = pytest.importorskip("av")
    out = tmp_path / "a.mp4"
    assert files.write_mp4(FRAMES, out, 12.5) == files.H264 == files.mp4_codec(out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 12.5
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (32, 48, 3)
    assert out.stat().st_mode & 0o777 == files.new_file_mode()


def test_without_pyav_opencv_writes_mpeg4(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    monkeypatch.setattr(files, "have_pyav", lambda: False)
    out = tmp_path / "b.mp4"
    assert files.write_mp4(FRAMES, out, 16) == files.MPEG4 == files.mp4_codec(out)


def test_the_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with files.atomic_output(tmp_path / "c.bin", ".bin") as tmp:
            Path(tmp).write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "c.bin").stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with files.atomic_output(tmp_path / "d.mp4", ".mp4") as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="even sizes"):
        files.write_mp4(FRAMES[:, :31], tmp_path / "e.mp4", 16)
    assert files.mp4_codec(Path(__file__)) is None
