"""fp8 matmul: scaled-fp8 layers computing with torch._scaled_mm (per-tensor scales, the repacks' input scale).

torch's CPU build runs ``_scaled_mm`` for e4m3 (2.13), so the math path is checked here against the upcast
path and against an emulation in float32; the CUDA path is the same call behind the capability check.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from poseanimate.errors import InputError
from poseanimate.models import fp8_matmul
from poseanimate.models.checkpoint.wan_dit import load_wan_dit
from poseanimate.models.fp8_matmul import fp8_linear, has_fp8_tensor_cores, set_fp8_matmul
from poseanimate.tiny_models.wan_dit import quantize_scaled_fp8, save_comfy_single_file, tiny_wan_state_dict

E4M3 = torch.float8_e4m3fn


def _quantized(out_features=24, in_features=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=g) / in_features ** 0.5
    scale = weight.abs().max() / torch.finfo(E4M3).max
    return (weight / scale).to(E4M3), scale, torch.randn(out_features, generator=g) * 0.1


def _emulated(x, w8, scale_weight, scale_input, bias):
    """What _scaled_mm computes: both operands as fp8 values, products accumulated in float32, scaled."""
    a_scale = torch.tensor(1.0) if scale_input is None else scale_input
    x8 = (x.float() / a_scale if scale_input is not None else x).clamp(-448, 448).to(E4M3)
    out = (x8.float() @ w8.float().t()) * a_scale * scale_weight + bias
    return out.to(x.dtype)


@pytest.mark.parametrize("scale_input", [None, torch.tensor(0.05)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scaled_mm_equals_its_emulation_and_stays_near_the_upcast_path(scale_input, dtype):
    w8, scale, bias = _quantized()
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = fp8_linear(x, w8, scale, scale_input, bias)
    assert out.shape == (2, 5, 24) and out.dtype == dtype
    emulated = _emulated(x.reshape(-1, 32), w8, scale, scale_input, bias.to(dtype)).reshape(2, 5, 24)
    torch.testing.assert_close(out.float(), emulated.float(), rtol=1e-2 if dtype == torch.bfloat16 else 1e-5,
                               atol=1e-2 if dtype == torch.bfloat16 else 1e-5)
    upcast = F.linear(x.float(), w8.float() * scale, bias)
    rel = ((out.float() - upcast).norm() / upcast.norm()).item()
    assert 0 < rel < 0.06  # the input's fp8 quantization: a few percent, never exact


def test_input_beyond_the_fp8_range_is_clamped_without_an_input_scale_as_comfyui_does():
    w8, scale, bias = _quantized()
    x = torch.full((1, 32), 1000.0)
    out = fp8_linear(x, w8, scale, None, bias)
    torch.testing.assert_close(out, (torch.full((1, 32), 448.0) @ (w8.float() * scale).t()) + bias, rtol=1e-5,
                               atol=1e-3)


def test_cpu_has_no_fp8_tensor_cores():
    assert not has_fp8_tensor_cores("cpu")


@pytest.fixture(scope="module")
def scaled_model(tmp_path_factory):
    state, _ = quantize_scaled_fp8(tiny_wan_state_dict("t2v"), generation="comfy_quant")
    path = save_comfy_single_file(state, tmp_path_factory.mktemp("fp8") / "wan_fp8_scaled.safetensors")
    model, _ = load_wan_dit(path)
    return model.eval()


def _forward(model):
    g = torch.Generator().manual_seed(2)
    x, context = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 8, model.config.text_dim, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([700.0]), context)


def test_modes_switch_the_fp8_layers_of_a_loaded_scaled_file(scaled_model, caplog):
    q = scaled_model.blocks[0].self_attn.q
    assert q.weight.dtype == E4M3 and q.scale_input.item() == pytest.approx(0.05)  # the file's input_scale kept
    upcast = _forward(scaled_model)
    assert set_fp8_matmul(scaled_model, "auto", "cpu") == 0  # no fp8 tensor cores: upcast stays
    assert torch.equal(_forward(scaled_model), upcast)
    layers = sum(1 for m in scaled_model.blocks.modules() if getattr(m, "weight", None) is not None
                 and m.weight.dtype == E4M3)
    with caplog.at_level(logging.INFO):
        assert set_fp8_matmul(scaled_model, "on", "cpu") == layers > 0
    assert "torch._scaled_mm" in caplog.text
    fast = _forward(scaled_model)
    rel = ((fast - upcast).norm() / upcast.norm()).item()
    assert 0 < rel < 0.1
    assert set_fp8_matmul(scaled_model, "off", "cpu") == 0
    assert torch.equal(_forward(scaled_model), upcast)


def test_on_without_a_scaled_mm_kernel_and_unknown_modes_are_one_line_errors(scaled_model, monkeypatch):
    monkeypatch.setattr(fp8_matmul, "_scaled_mm_runs", lambda device: "no kernel for this device")
    with pytest.raises(InputError, match=r"^fp8_matmul: is 'on' but torch .* cannot run fp8 matrix multiplication "
                                         r"on cpu \(no kernel for this device\); expected 'auto'"):
        set_fp8_matmul(scaled_model, "on", "cpu")
    with pytest.raises(InputError, match="fp8_matmul: 'fast' is not a mode; expected one of auto, off, on"):
        set_fp8_matmul(scaled_model, "fast", "cpu")
