"""The main job with a prompt and no embeddings file: umT5 and CLIP ViT-H run from tiny real-format files
(Comfy-Org layouts, the tokenizer inside the umT5 file), found in the models folder by name or by header."""
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import animate  # noqa: E402

sys.path.pop(0)
cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("sentencepiece")

from poseanimate import host  # noqa: E402
from poseanimate.models.checkpoint.clip_vision import load_clip_vision  # noqa: E402
from poseanimate.models.checkpoint.umt5 import load_umt5  # noqa: E402
from poseanimate.errors import InputError  # noqa: E402
from poseanimate.models.prompt_encoding import (CLIP_HEADER_KEY, WAN_I2V_NEGATIVE_PROMPT, encode_prompts,  # noqa: E402
                                                find_encoder)
from poseanimate.models.text.umt5 import encode_ids  # noqa: E402
from poseanimate.tiny_models.encoders import CLIP_VISION_FILE, UMT5_FILE, write_tiny_encoder_files  # noqa: E402
from poseanimate.tiny_models.model_files import write_tiny_model_files  # noqa: E402

TINY_POSE_MODELS = Path(__file__).resolve().parent.parent / "tiny_models" / "pose_models.py"
SIZE = ["--frames", "5", "--width", "48", "--height", "32", "--steps", "2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model_files(root)
    write_tiny_encoder_files(root)
    spec = importlib.util.spec_from_file_location("tiny_pose_models", TINY_POSE_MODELS)
    tiny_pose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_pose)
    tiny_pose.build_all(root / host.POSE_MODEL_FOLDER, names={"yolox": "yolox_l.onnx",
                                                              "rtmpose": "dw-ll_ucoco_384.onnx"})
    return root


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A reference PNG and a driving .mp4: a bright figure moving over a dark background."""
    root = tmp_path_factory.mktemp("media")
    frame = lambda x: cv2.rectangle(  # noqa: E731
        cv2.UMat(torch.full((96, 144, 3), 25, dtype=torch.uint8).numpy()), (x, 10), (x + 30, 90), (200, 200, 200), -1
    ).get()
    cv2.imwrite(str(root / "reference.png"), frame(50))
    writer = cv2.VideoWriter(str(root / "driving.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 16, (144, 96))
    for i in range(8):
        writer.write(frame(20 + 6 * i))
    writer.release()
    return root / "reference.png", root / "driving.mp4"


@pytest.fixture
def seen(monkeypatch):
    """What animate.py hands the UniAnimate conditioning: (context, negative, clip_fea)."""
    calls = []
    real = animate.build_unianimate_conditioning

    def spy(encoders, latent, ref_pose, poses, context, negative, clip, **kwargs):
        calls.append((context, negative, clip))
        return real(encoders, latent, ref_pose, poses, context, negative, clip, **kwargs)

    monkeypatch.setattr(animate, "build_unianimate_conditioning", spy)
    return calls


def run(models, media, tmp_path, *extra):
    out, latent = tmp_path / "a.mp4", tmp_path / "a.safetensors"
    argv = ["--models", str(models), "--reference", str(media[0]), "--driving", str(media[1]), "--out", str(out),
            "--latent-out", str(latent), *SIZE, *extra]
    assert animate.main(argv) == 0
    return out, load_file(str(latent))["latent"]


def test_prompt_runs_end_to_end_without_embeddings(models, media, tmp_path, seen, capsys):
    out, latent = run(models, media, tmp_path, "--prompt", "a woman dancing in a sunlit studio")
    assert out.is_file() and latent.shape == (1, 16, 2, 4, 6) and torch.isfinite(latent).all()
    assert "5 frames at 48x32" in capsys.readouterr().out
    context, negative, clip = seen[0]
    model, tokenizer = load_umt5(models / "text_encoders" / UMT5_FILE)
    torch.testing.assert_close(context, encode_ids(model, tokenizer("a woman dancing in a sunlit studio")))
    torch.testing.assert_close(negative, encode_ids(model, tokenizer(WAN_I2V_NEGATIVE_PROMPT)))
    assert clip.shape == (1, 5, 32) and torch.isfinite(clip).all()  # tiny CLIP: 28 px, 14 px patches


def test_prompts_change_the_video(models, media, tmp_path, seen):
    a = run(models, media, tmp_path / "a", "--prompt", "a woman dancing")[1]
    b = run(models, media, tmp_path / "b", "--prompt", "a man walks on the beach", "--negative-prompt", "")[1]
    assert not torch.allclose(a, b)
    assert seen[1][1].shape[1] == 1  # an empty negative prompt is the end token alone


def test_embeddings_without_clip_fea_get_it_from_the_reference(models, media, tmp_path, seen):
    emb = tmp_path / "emb.safetensors"
    save_file({"context": torch.randn(1, 7, 32)}, str(emb))
    run(models, media, tmp_path, "--embeddings", str(emb))
    clip = seen[0][2]
    assert clip is not None and clip.shape == (1, 5, 32)


def test_missing_text_encoder_is_one_clear_line(models, media, tmp_path, capsys):
    bare = tmp_path / "models"
    shutil.copytree(models, bare, ignore=shutil.ignore_patterns("text_encoders"))
    argv = ["--models", str(bare), "--reference", str(media[0]), "--driving", str(media[1]),
            "--out", str(tmp_path / "x.mp4"), *SIZE, "--prompt", "hello"]
    assert animate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "has no umT5 text encoder file" in err and "umt5_xxl_fp8_e4m3fn_scaled" in err and "\n" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_encoders_found_by_header_when_renamed(models, tmp_path):
    root = tmp_path / "m"
    (root / "clip").mkdir(parents=True)
    (root / "clip_vision").mkdir()
    shutil.copy(models / "text_encoders" / UMT5_FILE, root / "clip" / "my_text_encoder.safetensors")
    shutil.copy(models / "clip_vision" / CLIP_VISION_FILE, root / "clip_vision" / "vit.safetensors")
    (root / "clip_vision" / "notes.safetensors").write_bytes(b"not a model")
    encoded = encode_prompts(root, "hello", None, torch.rand(1, 40, 30, 3))
    assert encoded.context.shape[::2] == (1, 32) and encoded.clip_fea.shape == (1, 5, 32)
    shutil.copy(root / "clip_vision" / "vit.safetensors", root / "clip_vision" / "vit2.safetensors")
    with pytest.raises(InputError, match="holds 2 CLIP ViT-H image encoder files.*--clip-vision"):
        find_encoder(root, ("clip_vision",), ("clip_vision_h.safetensors",), CLIP_HEADER_KEY,
                     "CLIP ViT-H image encoder", "--clip-vision")
    assert load_clip_vision(root / "clip_vision" / "vit.safetensors").config.num_heads == 4
