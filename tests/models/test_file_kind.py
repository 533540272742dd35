"""What a model file is, from its index only (safetensors header, index.json, a torch zip's data.pkl), and the
loaders' dropdowns that list their own files first and preselect one of them."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from poseanimate.models.checkpoint import file_kind as fk
from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader, PoseAnimateLoRA
from poseanimate.nodes.model_lists import model_choices
from poseanimate.nodes.realisdance_nodes import PoseAnimateRealisDanceLoader
from poseanimate.nodes.unianimate_nodes import PoseAnimateUniAnimateLoader
from poseanimate.nodes.vae_nodes import PoseAnimateVAELoader
from poseanimate.nodes.wan_animate_nodes import PoseAnimateRelightLoRA, PoseAnimateWanAnimateLoader
from poseanimate.tiny_models.model_files import write_tiny_model_files


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny files under the real names, plus names that sort before them alphabetically."""
    root = tmp_path_factory.mktemp("models")
    paths = write_tiny_model_files(root)
    (root / "diffusion_models" / "0_notes.txt").write_text("not a model")
    (root / "loras" / "a_old_pickle.pt").write_bytes(b"\x80\x02}q\x00.")  # a protocol-2 pickle: no index
    return root, paths


def test_each_tiny_file_is_recognised_from_its_index(models):
    _, paths = models
    assert {key: fk.file_kind(path) for key, path in paths.items()} == {
        "dit": fk.WAN_DIT, "unianimate": fk.UNIANIMATE, "vae": fk.WAN_VAE, "realisdance": fk.REALISDANCE,
        "animate": fk.WAN_ANIMATE, "relight": fk.LORA, "steadydancer": fk.STEADYDANCER,
        "animate2": fk.ANIMATE2, "animate2_distilled": fk.ANIMATE2}


def test_only_the_index_is_read(models, tmp_path, monkeypatch):
    """A safetensors file whose tensor bytes are missing is still recognised: the data is never touched."""
    _, paths = models
    data = paths["animate"].read_bytes()
    size = int.from_bytes(data[:8], "little")
    (tmp_path / "header_only.safetensors").write_bytes(data[:8 + size])
    assert fk.file_kind(tmp_path / "header_only.safetensors") == fk.WAN_ANIMATE
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was loaded"))
    assert fk.file_kind(paths["unianimate"]) == fk.UNIANIMATE  # the zip's data.pkl searched as bytes


def test_sharded_index_and_unknown_files(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"blocks.0.attn1.to_q.weight": "a", "add_conv_in.weight": "b"}}))
    assert fk.file_kind(tmp_path / "model.safetensors.index.json") == fk.REALISDANCE
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    (tmp_path / "te.safetensors").write_bytes(b"")
    save_file({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(2, 2)}, str(tmp_path / "t5.safetensors"))
    assert [fk.file_kind(tmp_path / n) for n in ("bad.safetensors", "te.safetensors", "t5.safetensors",
                                                  "missing.safetensors")] == [None] * 4


def test_the_kind_is_cached_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "x.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(path))
    assert fk.file_kind(path) == fk.WAN_DIT
    reads = []
    real = fk.index_keys
    monkeypatch.setattr(fk, "index_keys", lambda p: reads.append(p) or real(p))
    assert fk.file_kind(path) == fk.WAN_DIT and reads == []
    save_file({"encoder.conv1.weight": torch.zeros(2, 2), "decoder.head.0.gamma": torch.zeros(2)}, str(path))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert fk.file_kind(path) == fk.WAN_VAE and len(reads) == 1


def test_each_loader_lists_its_own_files_first(models, monkeypatch, tmp_path):
    root, paths = models
    monkeypatch.setenv("POSEANIMATE_MODELS", str(root))
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 64),  # a LoRA that sorts
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(64, 4)},   # before the relight one
              str(root / "loras" / "A_distill_lora.safetensors"))
    first = {cls.__name__: cls.INPUT_TYPES()["required"][name][0][0] for cls, name in (
        (PoseAnimateDiTLoader, "dit_name"), (PoseAnimateRealisDanceLoader, "dit_name"),
        (PoseAnimateWanAnimateLoader, "dit_name"), (PoseAnimateUniAnimateLoader, "unianimate_name"),
        (PoseAnimateLoRA, "lora_name"), (PoseAnimateRelightLoRA, "lora_name"), (PoseAnimateVAELoader, "vae_name"))}
    assert first == {
        "PoseAnimateDiTLoader": paths["dit"].name, "PoseAnimateRealisDanceLoader": paths["realisdance"].name,
        "PoseAnimateWanAnimateLoader": paths["animate"].name,
        "PoseAnimateUniAnimateLoader": paths["unianimate"].name,
        "PoseAnimateLoRA": "A_distill_lora.safetensors", "PoseAnimateRelightLoRA": paths["relight"].name,
        "PoseAnimateVAELoader": paths["vae"].name}
    # the rest follows: files of unknown kind, then other kinds; nothing is dropped
    loras = model_choices("loras", fk.UNIANIMATE)
    assert loras[:2] == [paths["unianimate"].name, "a_old_pickle.pt"] and len(loras) == 4
    assert model_choices("diffusion_models", fk.WAN_ANIMATE)[1] == "0_notes.txt"
