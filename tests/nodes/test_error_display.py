"""How the pack's errors look where ComfyUI shows them: the type as ``PoseAnimate.InputError`` (not the pack
folder's path), folder-relative file names (not the user's directories), no terminal escape codes."""
import argparse
import pickle

import pytest
import torch

from poseanimate import host
from poseanimate.errors import InputError, pickle_refusal, plain
from poseanimate.models.wan.dit import ExtensionError
from poseanimate.nodes.input_checks import guard_node
from poseanimate.nodes.vae_nodes import PoseAnimateVAELoader


def comfy_type_name(cls: type) -> str:
    """What ComfyUI's execution_error shows as exception_type (execution.py's full_type_name)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def test_error_types_have_short_names():
    assert comfy_type_name(InputError) == "PoseAnimate.InputError"
    assert comfy_type_name(ExtensionError) == "PoseAnimate.ExtensionError"
    assert comfy_type_name(host.HostIncompatible) == "PoseAnimate.HostIncompatible"


def test_input_error_survives_pickling():
    err = pickle.loads(pickle.dumps(InputError("steps", "is 0", "1 or more")))
    assert isinstance(err, InputError) and str(err) == "steps: is 0; expected 1 or more" and err.expected


def test_escape_codes_never_reach_a_message():
    assert plain("\x1b[1mbold\x1b[0m and \x1b[31mred\x1b[0m") == "bold and red"
    assert str(InputError("x", "\x1b[1mdo it\x1b[0m only\n if")) == "x: do it only if"


@pytest.fixture
def models(tmp_path, monkeypatch):
    root = tmp_path / "my home" / "models"
    for folder in ("loras", "vae"):
        (root / folder).mkdir(parents=True)
    monkeypatch.setenv("POSEANIMATE_MODELS", str(root))
    return root


def test_a_node_error_names_files_relative_to_their_folder(models):
    (models / "vae" / "broken.safetensors").write_bytes(b"\x00" * 10)
    guard_node(PoseAnimateVAELoader)
    with pytest.raises(InputError) as err:
        PoseAnimateVAELoader().load("broken.safetensors", "fp32", 0, 8)
    message = str(err.value)
    assert "vae/broken.safetensors" in message and str(models) not in message and "my home" not in message
    with pytest.raises(InputError) as err:
        PoseAnimateVAELoader().load("missing.safetensors", "fp32", 0, 8)
    assert "'vae' model folder" in str(err.value) and str(models) not in str(err.value)


def test_the_pickle_refusal_is_short_and_plain(models):
    """torch's weights-only refusal for an unknown class carries bold escape codes and a page of advice."""
    torch.save({"x": argparse.Namespace(a=1)}, str(models / "vae" / "objects.pth"))
    with pytest.raises(pickle.UnpicklingError) as raw:
        torch.load(str(models / "vae" / "objects.pth"), weights_only=True)
    assert pickle_refusal(raw.value) == "it refers to argparse.Namespace"
    guard_node(PoseAnimateVAELoader)
    with pytest.raises(InputError) as err:
        PoseAnimateVAELoader().load("objects.pth", "fp32", 0, 8)
    message = str(err.value)
    assert "\x1b" not in message and "\n" not in message and "not loaded for safety" in message
    assert "it refers to argparse.Namespace" in message and "vae/objects.pth" in message
    assert str(models) not in message
