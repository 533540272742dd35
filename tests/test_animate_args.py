"""animate.py's command line: every bad value is one line naming the option and the valid range, with a
non-zero exit, no traceback, and nothing loaded first; every option has help and a default."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import animate  # noqa: E402

sys.path.pop(0)


@pytest.fixture
def nothing_loads(monkeypatch):
    """Every loader and file writer animate.py would reach fails the test if called."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded (or written) before the arguments were checked")
    for name in ("load_wan_dit", "load_unianimate", "load_wan_vae", "write_tiny_model_files",
                 "copy_tiny_pose_models", "read_image", "read_video", "demo_reference"):
        monkeypatch.setattr(animate, name, refuse)


@pytest.fixture
def files(tmp_path):
    """A models folder with the real names (empty stand-ins: nothing may read them), and embeddings files."""
    models = tmp_path / "models"
    for folder, name in (("diffusion_models", animate.animate_args.DIT_FILE),
                         ("loras", animate.animate_args.UNIANIMATE_FILE), ("vae", animate.animate_args.VAE_FILE)):
        (models / folder).mkdir(parents=True)
        (models / folder / name).write_bytes(b"")
    save_file({"context": torch.zeros(1, 2, 4)}, str(tmp_path / "good.safetensors"))
    save_file({"clip_fea": torch.zeros(1, 2, 4)}, str(tmp_path / "nocontext.safetensors"))
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (tmp_path / "emb.pt").write_bytes(b"PK")
    (tmp_path / "ref.png").write_bytes(b"")
    return tmp_path


REAL = ["--models", "{t}/models", "--embeddings", "{t}/good.safetensors"]
BAD = [  # (arguments, words the one line must hold)
    (["--frames", "0"], ["--frames", "0 is out of range", "1 to 10001"]),
    (["--frames", "-5"], ["--frames", "1 to 10001"]),
    (["--frames", "10"], ["--frames", "4k+1", "9 or 13"]),
    (["--frames", "20001"], ["--frames", "1 to 10001"]),
    (["--width", "0"], ["--width", "16 to 4096"]),
    (["--height", "-16"], ["--height", "16 to 4096"]),
    (["--width", "8192"], ["--width", "16 to 4096"]),
    (["--width", "40"], ["--width", "multiple of 16", "32 or 48"]),
    (["--steps", "0"], ["--steps", "1 to 200"]),
    (["--steps", "-3"], ["--steps", "1 to 200"]),
    (["--cfg", "0"], ["--cfg", "1 to 20"]),
    (["--cfg", "inf"], ["--cfg", "finite"]),
    (["--shift", "0"], ["--shift", "above 0 to 20"]),
    (["--shift", "-1"], ["--shift", "above 0 to 20"]),
    (["--fps", "0"], ["--fps", "1 to 240"]),
    (["--fps", "-24"], ["--fps", "1 to 240"]),
    (["--window", "1"], ["--window", "2 to 64"]),
    (["--overlap", "-1"], ["--overlap", "0 to 32"]),
    (["--window", "4", "--overlap", "4"], ["--overlap", "below --window 4", "0 to 3"]),
    (["--seed", "-1"], ["--seed", "0 to 18446744073709551615"]),
    (["--cache", "teacache", "--cache-threshold", "2"], ["--cache-threshold", "0 to 1"]),
    (["--cache", "teacache", "--cache-start", "-1"], ["--cache-start", "0 to 200"]),
    (["--cache", "teacache", "--cache-start", "5", "--cache-end", "3"], ["--cache-end", "after cache_start"]),
    (["--step-list", "1000,500"], ["--step-list", "--sampler lightx2v_distill"]),
    (["--sampler", "lightx2v_distill", "--step-list", "abc"], ["--step-list"]),
    (["--out", "{t}/video.avi"], ["--out", ".mp4"]),
    (["--latent-out", "{t}/latent.pt"], ["--latent-out", ".safetensors"]),
    (["--reference", "{t}/missing.png"], ["--reference", "does not exist", "PNG or JPEG"]),
    (["--driving", "{t}/missing.mp4"], ["--driving", "does not exist", "video"]),
    (["--driving", "{t}"], ["--driving", "is not a file"]),
    (["--dit", "other.safetensors"], ["--dit", "without --models"]),
    (["--embeddings", "{t}/missing.safetensors"], ["--embeddings", "does not exist", ".safetensors"]),
    (["--embeddings", "{t}/emb.pt"], ["--embeddings", "is not a .safetensors file"]),
    (["--embeddings", "{t}/corrupt.safetensors"], ["--embeddings", "not a readable safetensors file"]),
    (["--embeddings", "{t}/nocontext.safetensors"], ["--embeddings", "no 'context' tensor"]),
    (["--models", "{t}/nowhere"], ["--models", "is not a folder"]),
    (["--models", "{t}/models"], ["--prompt", "is missing"]),
    ([*REAL, "--dit", "missing.safetensors"], ["--dit", "not found in diffusion_models/"]),
    ([*REAL, "--vae", "../loras/" + animate.animate_args.UNIANIMATE_FILE], ["--vae", "outside vae/"]),
    ([*REAL, "--frames", "0"], ["--frames", "1 to 10001"]),
    ([*REAL, "--driving", "{t}/ref.png"], ["--driving", "needs pose model 'yolox_l.onnx'", "poseanimate_pose/"]),
]


@pytest.mark.parametrize("argv,words", BAD, ids=[" ".join(a).replace("{t}/", "") for a, _ in BAD])
def test_bad_input_is_one_line_before_anything_loads(files, nothing_loads, capsys, argv, words):
    argv = [a.replace("{t}", str(files)) for a in argv]
    code = animate.main(["--out", str(files / "out.mp4"), *argv])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err and not (files / "out.mp4").exists()


@pytest.mark.parametrize("argv,words", [(["--frames", "abc"], ["--frames", "invalid int value"]),
                                        (["--colour", "red"], ["unrecognized arguments: --colour"]),
                                        (["--sampler", "fast"], ["--sampler", "invalid choice"])])
def test_argparse_errors_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        animate.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    for word in words:
        assert word in err


def test_the_command_itself_prints_one_line(files):
    """The real process: exit status 2, one line on stderr, nothing on stdout before it (no NOTE, no load)."""
    for argv in (["--frames", "0"], ["--embeddings", str(files / "missing.safetensors")]):
        proc = subprocess.run([sys.executable, str(ROOT / "animate.py"), *argv], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith(f"error: {argv[0]}")


def test_every_option_has_help_and_says_its_default():
    parser = animate.animate_args.build_parser()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        assert action.default is not None or "default" in action.help, action.dest
    text = " ".join(parser.format_help().split())
    for flag in ("--cfg", "--shift", "--seed", "--fps", "--frames", "--steps"):
        assert flag in text
    assert "(default: 1.5)" in text and "(default: 5.0)" in text and "(default: 0)" in text
    assert "default: 81; tiny mode: 9" in text and "(default: None)" not in text


def test_given_zero_is_not_replaced_by_the_default():
    args = animate.parse_args(["--frames", "0", "--steps", "0"])
    sizes = animate.animate_args.resolve_sizes(args, tiny=True)
    assert (sizes.frames, sizes.steps, sizes.width) == (0, 0, 48)
