"""The main job end to end on tiny random-weight models: poses, retargeting, rendering, UniAnimate conditioning,
windows, sampling, streamed decode, an .mp4; same seed, same latent."""
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import animate  # noqa: E402

sys.path.pop(0)
cv2 = pytest.importorskip("cv2")


def run(tmp_path, name, *extra):
    out, latent = tmp_path / f"{name}.mp4", tmp_path / f"{name}.safetensors"
    assert animate.main(["--out", str(out), "--latent-out", str(latent), "--steps", "2", *extra]) == 0
    return out, load_file(str(latent))["latent"]


def frames_of(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_writes_a_video_of_the_requested_length_and_size(tmp_path, capsys):
    video, latent = run(tmp_path, "a", "--seed", "7")
    frames = frames_of(video)
    assert len(frames) == 9 and frames[0].shape == (80, 48, 3)
    assert latent.shape == (1, 16, 3, 10, 6) and torch.isfinite(latent).all()
    out = capsys.readouterr().out
    assert "TINY RANDOM-WEIGHT" in out and "9 frames at 48x80" in out


def test_same_seed_bit_identical_and_seeds_differ(tmp_path):
    a = run(tmp_path, "a", "--seed", "7")[1]
    b = run(tmp_path, "b", "--seed", "7")[1]
    c = run(tmp_path, "c", "--seed", "8")[1]
    assert torch.equal(a, b) and not torch.allclose(a, c)


def recording_sampler(monkeypatch):
    """Patch animate's sample_video so every branch the sampler asks the conditioning for is recorded."""
    calls = []
    real = animate.sample_video

    def sample_video(model, cond, *args, **kwargs):
        class Recording:
            geometry = cond.geometry

            def branch(self, positive, step, steps, window=None):
                calls.append((positive, step, None if window is None else (window.start, window.end)))
                return cond.branch(positive, step, steps, window)

            def clear_cache(self):
                cond.clear_cache()

        return real(model, Recording(), *args, **kwargs)

    monkeypatch.setattr(animate, "sample_video", sample_video)
    return calls


def test_long_video_goes_through_windows(tmp_path, monkeypatch):
    calls = recording_sampler(monkeypatch)
    video, latent = run(tmp_path, "long", "--frames", "25", "--window", "4", "--overlap", "2")
    assert latent.shape[2] == 7 and len(frames_of(video)) == 25 and torch.isfinite(latent).all()
    # every step guided every window of the plan, both branches, in window order
    windows = [(0, 4), (2, 6), (3, 7)]
    for step in range(2):
        seen = [(positive, span) for positive, s, span in calls if s == step]
        assert [span for positive, span in seen if positive] == windows
        assert [span for positive, span in seen if not positive] == windows
    assert len(calls) == 2 * 2 * len(windows)
    # and the windows shaped the result: one pass over the same 7 latent frames gives another latent
    calls.clear()
    _, whole = run(tmp_path, "whole", "--frames", "25", "--window", "7", "--overlap", "2")
    assert {span for _, _, span in calls} == {None}
    assert whole.shape == latent.shape and not torch.allclose(whole, latent, atol=1e-3)


def test_bad_frame_count_names_the_nearest_valid_ones(tmp_path, capsys):
    assert animate.main(["--out", str(tmp_path / "x.mp4"), "--frames", "10"]) == 2
    err = capsys.readouterr().err
    assert "--frames" in err and "9 or 13" in err
    assert not (tmp_path / "x.mp4").exists()


def test_real_mode_without_embeddings_says_what_is_missing(tmp_path, capsys):
    from poseanimate.tiny_models.model_files import write_tiny_model_files
    write_tiny_model_files(tmp_path / "models")
    assert animate.main(["--models", str(tmp_path / "models"), "--out", str(tmp_path / "y.mp4"),
                         "--frames", "5", "--width", "32", "--height", "48"]) == 2
    assert "--embeddings" in capsys.readouterr().err


@pytest.mark.parametrize("option,value", [("--cfg", "nan"), ("--shift", "inf"), ("--fps", "-inf"), ("--cfg", "NaN")])
def test_non_finite_numbers_are_refused_before_work(tmp_path, capsys, option, value):
    assert animate.main(["--out", str(tmp_path / "x.mp4"), f"{option}={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {option}: is ") and "finite number" in err and "\n" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_cache_option_runs_and_reports(tmp_path, capsys):
    run(tmp_path, "cached", "--steps", "4", "--cache", "magcache", "--cache-threshold", "1.0", "--cache-start", "1")
    assert "magcache: " in capsys.readouterr().out


@pytest.mark.parametrize("value", ["nan", "1.5", "-1"])
def test_bad_cache_threshold_is_refused_before_work(tmp_path, capsys, value):
    assert animate.main(["--out", str(tmp_path / "x.mp4"), "--cache", "teacache", f"--cache-threshold={value}"]) == 2
    assert "cache-threshold" in capsys.readouterr().err.replace("_", "-")


def test_the_video_is_h264_with_normal_permissions(tmp_path):
    pytest.importorskip("av")
    from poseanimate.video.files import mp4_codec, new_file_mode
    video, _ = run(tmp_path, "h264")
    assert mp4_codec(video) == "h264"
    assert video.stat().st_mode & 0o777 == new_file_mode() and new_file_mode() & 0o044  # not 0600
    assert (tmp_path / "h264.safetensors").stat().st_mode & 0o777 == new_file_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h264.mp4", "h264.safetensors"]  # no partial left


def test_without_pyav_the_fallback_is_said(tmp_path, monkeypatch, capsys):
    from poseanimate.video import files
    monkeypatch.setattr(files, "have_pyav", lambda: False)
    video, _ = run(tmp_path, "mpeg4")
    assert files.mp4_codec(video) == "mpeg4" and len(frames_of(video)) == 9
    assert "pip install av" in capsys.readouterr().out


def driving_video(path, fps, frames=12, width=192, height=160):
    """A bright 'person' moving right on a dark background, H.264 at ``fps``."""
    import numpy as np
    from poseanimate.video.files import write_mp4
    images = np.full((frames, height, width, 3), 20, np.uint8)
    for t in range(frames):
        x = 20 + t * 8
        images[t, 30:height - 20, x:x + 40] = (200, 190, 180)
        images[t, 60:66, x + 17:x + 23] = 255
    write_mp4(images, path, fps)
    return path


def test_tiny_demo_takes_a_driving_video_and_its_fps(tmp_path, capsys):
    """The whole chain without downloads: the tiny DWPose stand-ins extract the driving poses; the output
    plays at the driving video's rate."""
    pytest.importorskip("av")
    pytest.importorskip("onnxruntime")
    import av
    from poseanimate.video.files import mp4_codec
    video, latent = run(tmp_path, "driven", "--driving", str(driving_video(tmp_path / "drive.mp4", 12)))
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 12 and stream.frames == 9
    assert mp4_codec(video) == "h264" and torch.isfinite(latent).all()
    assert "12 fps" in capsys.readouterr().out
    video, _ = run(tmp_path, "driven24", "--driving", str(tmp_path / "drive.mp4"), "--fps", "24")
    with av.open(str(video)) as container:
        assert container.streams.video[0].average_rate == 24


def test_tiny_demo_errors_never_point_into_its_temporary_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(animate, "copy_tiny_pose_models", lambda models: None)  # the pose files go missing
    assert animate.main(["--out", str(tmp_path / "x.mp4"), "--driving",
                         str(driving_video(tmp_path / "drive.mp4", 12))]) == 2
    err = capsys.readouterr().err
    assert "yolox_l.onnx" in err and "poseanimate-tiny-" not in err and "/tmp" not in err


def test_the_prebuilt_tiny_pose_models_are_what_the_builders_make(tmp_path):
    pytest.importorskip("onnx")
    import onnx
    from poseanimate.tiny_models import pose_models
    built = pose_models.write_demo_files(tmp_path)
    for kind, path in built.items():
        assert onnx.load(path) == onnx.load(str(pose_models.DEMO_FOLDER / f"{kind}.onnx")), kind


def test_stream_blocks_gives_the_same_latent(tmp_path, capsys):
    plain = run(tmp_path, "plain", "--seed", "3")[1]
    streamed = run(tmp_path, "streamed", "--seed", "3", "--stream-blocks", "--fp8-matmul", "off")[1]
    assert torch.equal(plain, streamed)
    assert "DiT on cpu, blocks streamed: plain" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_device_without_cuda_is_refused(tmp_path, capsys):
    assert animate.main(["--out", str(tmp_path / "x.mp4"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device: is cuda but this torch sees no CUDA device") and "\n" not in err.strip()
