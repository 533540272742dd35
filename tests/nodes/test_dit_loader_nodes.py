"""The DiT loader and LoRA nodes outside the host: real files by name, tooltips, no mutation of cached outputs."""
import pytest
import torch
from safetensors.torch import save_file

from poseanimate import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY
from poseanimate.errors import InputError
from poseanimate.tiny_models.wan_dit import save_comfy_single_file, tiny_wan_state_dict
from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader, PoseAnimateLoRA

DIT = "wan2.1_i2v_480p_14B_fp16.safetensors"


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEANIMATE_MODELS", str(tmp_path))
    state = tiny_wan_state_dict("i2v", seed=3)
    (tmp_path / "diffusion_models").mkdir()
    save_comfy_single_file(state, tmp_path / "diffusion_models" / DIT, dtype=torch.float16, num_heads=2)
    g = torch.Generator().manual_seed(0)
    lora = {"diffusion_model.blocks.1.ffn.0.lora_A.weight": torch.randn(2, 64, generator=g),
            "diffusion_model.blocks.1.ffn.0.lora_B.weight": torch.randn(128, 2, generator=g)}
    (tmp_path / "loras").mkdir()
    save_file(lora, str(tmp_path / "loras" / "style.safetensors"))
    return tmp_path, state, lora


def test_registration_and_tooltips_on_every_input():
    assert set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS)
    assert WEB_DIRECTORY == "./web"
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY.startswith("PoseAnimate") and cls.DESCRIPTION
        for spec in cls.INPUT_TYPES()["required"].values():
            assert spec[1].get("tooltip"), name


def test_loader_lists_and_loads_by_name(models_root):
    root, state, _ = models_root
    assert DIT in PoseAnimateDiTLoader.INPUT_TYPES()["required"]["dit_name"][0]
    (handle,) = PoseAnimateDiTLoader().load(DIT, "fp32", "fp32", "sdpa_chunked")
    weight = handle.model.get_parameter("blocks.0.self_attn.q.weight")
    assert weight.dtype == torch.float32
    assert torch.equal(weight, state["blocks.0.self_attn.q.weight"].half().float())
    assert handle.model.attention.chunk_size is not None


def test_lora_node_returns_a_new_handle_and_keeps_the_cached_one(models_root):
    _, _, lora = models_root
    (base,) = PoseAnimateDiTLoader().load(DIT, "default", "auto", "sdpa")
    (with_lora,) = PoseAnimateLoRA().apply(base, "style.safetensors", 0.5)
    assert base.loras == () and len(with_lora.loras) == 1
    parsed, strength = with_lora.loras[0]
    assert strength == 0.5 and list(parsed.updates) == ["blocks.1.ffn.0.weight"]
    up = lora["diffusion_model.blocks.1.ffn.0.lora_B.weight"]
    down = lora["diffusion_model.blocks.1.ffn.0.lora_A.weight"]
    assert torch.allclose(parsed.updates["blocks.1.ffn.0.weight"][0].delta((128, 64)), up @ down)


def test_names_escaping_the_folder_are_refused(models_root):
    with pytest.raises(InputError, match="model file"):
        PoseAnimateDiTLoader().load("../diffusion_models/" + DIT, "default", "auto", "sdpa")
    with pytest.raises(InputError, match="not found"):
        PoseAnimateDiTLoader().load("missing.safetensors", "default", "auto", "sdpa")
