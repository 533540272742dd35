"""Every loader node given a truncated, empty or random file (issue 19): the pack's one-line InputError naming
the file, and the next load of the intact file works."""
import os
import pickle
import random
import sys
from pathlib import Path

import pytest

from poseanimate.errors import InputError
from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader, PoseAnimateLoRA
from poseanimate.nodes.pose_extract_nodes import PoseAnimatePoseModelLoader
from poseanimate.nodes.realisdance_nodes import PoseAnimateRealisDanceLoader
from poseanimate.nodes.steadydancer_nodes import PoseAnimateSteadyDancerLoader
from poseanimate.nodes.unianimate_nodes import PoseAnimateUniAnimateLoader
from poseanimate.nodes.vae_nodes import PoseAnimateVAELoader
from poseanimate.nodes.wan_animate_nodes import PoseAnimateRelightLoRA, PoseAnimateWanAnimateLoader
from poseanimate.tiny_models.model_files import write_tiny_model_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import pose_inputs  # noqa: E402

sys.path.pop(0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = write_tiny_model_files(root)
    pose_inputs.write_pose_models(root)
    paths["keypoints"] = root / "poseanimate_pose" / "dw-ll_ucoco_384.onnx"
    paths["detector"] = root / "poseanimate_pose" / "yolox_l.onnx"
    mp = pytest.MonkeyPatch()
    mp.setenv("POSEANIMATE_MODELS", str(root))
    yield root, paths
    mp.undo()


@pytest.fixture(scope="module")
def handles(models):
    _, paths = models
    (dit,) = PoseAnimateDiTLoader().load(paths["dit"].name, "fp32", "fp32", "sdpa")
    animate_dit, animate = PoseAnimateWanAnimateLoader().load(paths["animate"].name, "fp32", "fp32", "sdpa")
    return {"dit": dit, "animate_dit": animate_dit, "animate": animate}


# loader -> (the intact file's key in ``models``, a call taking a file name)
LOADERS = {
    "Load Wan DiT": ("dit", lambda h, n: PoseAnimateDiTLoader().load(n, "fp32", "fp32", "sdpa")),
    "Load Wan VAE": ("vae", lambda h, n: PoseAnimateVAELoader().load(n, "fp32", 0, 8)),
    "Load Pose Models (keypoint model)": (
        "keypoints", lambda h, n: PoseAnimatePoseModelLoader().load("yolox_l.onnx", n, "cpu")),
    "Load Pose Models (detector)": (
        "detector", lambda h, n: PoseAnimatePoseModelLoader().load(n, "dw-ll_ucoco_384.onnx", "cpu")),
    "Load UniAnimate-DiT": ("unianimate", lambda h, n: PoseAnimateUniAnimateLoader().load(h["dit"], n, 1.0)),
    "Load RealisDance-DiT": (
        "realisdance", lambda h, n: PoseAnimateRealisDanceLoader().load(n, "fp32", "fp32", "sdpa")),
    "Load SteadyDancer": (
        "steadydancer", lambda h, n: PoseAnimateSteadyDancerLoader().load(n, "fp32", "fp32", "sdpa")),
    "Load Wan2.2-Animate": ("animate", lambda h, n: PoseAnimateWanAnimateLoader().load(n, "fp32", "fp32", "sdpa")),
    "Wan DiT LoRA": ("relight", lambda h, n: PoseAnimateLoRA().apply(h["dit"], n, 1.0)),
    "Relighting LoRA": (
        "relight", lambda h, n: PoseAnimateRelightLoRA().apply(h["animate_dit"], h["animate"], n, 1.0, True)),
}


def _random_bytes(size: int) -> bytes:
    data = bytearray(random.Random(19).randbytes(size))
    data[0] = 0x13  # neither a zip archive ('PK') nor a pickle (0x80): no chance of a valid header
    return bytes(data)


def _bad_contents(good: bytes) -> dict[str, bytes]:
    return {"truncated": good[: len(good) // 2], "empty": b"", "random": _random_bytes(4096)}


@pytest.mark.parametrize("kind", ["truncated", "empty", "random"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_broken_files_give_one_line_naming_the_file(models, handles, loader, kind):
    root, paths = models
    key, call = LOADERS[loader]
    good = paths[key]
    name = f"broken_{key}_{kind}{good.suffix}"
    (good.parent / name).write_bytes(_bad_contents(good.read_bytes())[kind])
    with pytest.raises(InputError) as err:
        call(handles, name)
    message = str(err.value)
    assert "\n" not in message, message
    assert name in message.split(":")[0] or name in message.split(";")[0], message
    assert "not loaded for safety" not in message, message  # a broken file is not mistaken for a malicious one
    call(handles, good.name)  # the intact file still loads after the refusal


@pytest.mark.parametrize("loader,key", [("Load UniAnimate-DiT", "unianimate"), ("Load Wan VAE", "vae")])
def test_random_bytes_as_a_pickle_file_are_not_called_unsafe(models, handles, loader, key, tmp_path):
    root, paths = models
    folder = paths[key].parent
    (folder / "noise.pth").write_bytes(_random_bytes(4096))
    with pytest.raises(InputError, match="is not a PyTorch checkpoint"):
        LOADERS[loader][1](handles, "noise.pth")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pickle-ran",))


@pytest.mark.parametrize("loader,key", [("Load UniAnimate-DiT", "unianimate"), ("Load Wan VAE", "vae"),
                                        ("Wan DiT LoRA", "relight")])
def test_a_pickle_with_code_is_refused_for_safety(models, handles, loader, key):
    _, paths = models
    (paths[key].parent / "code.ckpt").write_bytes(pickle.dumps({"x": _Payload()}, protocol=2))
    with pytest.raises(InputError, match="not loaded for safety") as err:
        LOADERS[loader][1](handles, "code.ckpt")
    assert "code.ckpt" in str(err.value).split(";")[0]
