"""The one weight-conversion path (convert_weights, attach_scales) and the one tensor check (check_tensors)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from poseanimate.errors import InputError
from poseanimate.models.checkpoint.convert import (FP8_COMPUTE, LAYER_CLASS_NAMES, attach_scales, check_tensors,
                                                   convert_weights, group_scales, layer_classes)
from poseanimate.models.checkpoint.fp8 import dequantize, expected_shapes
from poseanimate.models.ops import CastConv1d, CastLinear, CastOps

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


# ---------------------------------------------------------------------------------------------- check_tensors
def _raise(found, expected, **kw) -> str:
    with pytest.raises(InputError) as err:
        check_tensors(found, expected, "model file 'x.safetensors'", "T2V Wan DiT", "a whole Wan DiT", **kw)
    return str(err.value)


def test_check_tensors_passes_matching_tensors():
    shapes = {"a.weight": (4, 2), "a.bias": (4,)}
    check_tensors(dict(shapes), shapes, "file", "kind", "wanted")
    check_tensors({"a.weight": torch.Size([4, 2]), "a.bias": [4]}, shapes, "file", "kind", "wanted",
                  scales=["a.scale_weight", "a.weight_scale"])


def test_check_tensors_names_file_key_and_both_shapes():
    message = _raise({"a.weight": (4, 3), "a.bias": (4,)}, {"a.weight": (4, 2), "a.bias": (4,)})
    assert message == ("model file 'x.safetensors': has 1 tensor(s) of the wrong shape for the T2V Wan DiT: "
                       "'a.weight' has shape [4, 3] instead of [4, 2]; expected a whole Wan DiT")


def test_check_tensors_names_missing_and_unexpected_together():
    message = _raise({"a.weight": (4, 2), "b.weight": (1,), "c.weight": (9,)},
                     {"a.weight": (4, 2), "a.bias": (4,), "c.weight": (8,)})
    assert message.startswith("model file 'x.safetensors': ")
    assert "is missing 1 tensor(s) of the T2V Wan DiT: a.bias" in message
    assert "has 1 tensor(s) that are not part of the T2V Wan DiT: b.weight" in message
    assert "'c.weight' has shape [9] instead of [8]" in message
    assert message.endswith("; expected a whole Wan DiT")


def test_check_tensors_optional_keys_and_scales():
    expected = {"a.weight": (2, 2), "a.kernel": (4, 4)}
    check_tensors({"a.weight": (2, 2)}, expected, "f", "k", "w", optional={"a.kernel"})
    assert "is missing 1 tensor(s) of the T2V Wan DiT: a.kernel" in _raise({"a.weight": (2, 2)}, expected)
    message = _raise({"a.weight": (2, 2), "a.kernel": (4, 4)}, expected,
                     scales=["a.scale_weight", "b.scale_weight", "b.input_scale"])
    assert "has 2 tensor(s) that are not part of the T2V Wan DiT: b.input_scale, b.scale_weight" in message


def test_check_tensors_shortens_long_lists():
    expected = {f"w{i}": (1,) for i in range(9)}
    message = _raise({k: (2,) for k in expected}, expected)
    assert "has 9 tensor(s) of the wrong shape" in message and "... (9 in all)" in message
    assert message.count("instead of") == 6
    message = _raise({}, expected)
    assert "is missing 9 tensor(s)" in message and "... (9 in all)" in message


# ---------------------------------------------------------------------------------------------- fixtures
class SelfLoadingLinear(nn.Module):
    """Stands in for ComfyUI 0.8+'s mixed-precision Linear: no weight until its own loader reads the
    ``weight`` / ``weight_scale`` / ``input_scale`` / ``comfy_quant`` entries; other tensors in its factory dtype."""

    _full_precision_mm = False

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.factory_kwargs = {"device": device, "dtype": torch.float16}
        self.register_parameter("weight", None)
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=torch.float16)) if bias else None


class HostOps:
    Linear = SelfLoadingLinear


class ScaledLinear(nn.Linear):
    """ComfyUI 0.3.x scaled-fp8 ops: both scales are parameters, made on the layer's device."""

    def __init__(self, *args, device=None, **kw):
        super().__init__(*args, device=device, **kw)
        self.scale_weight = nn.Parameter(torch.empty((), device=device), requires_grad=False)
        self.scale_input = nn.Parameter(torch.empty((), device=device), requires_grad=False)


class ScaledOps:
    Linear = ScaledLinear


class Tiny(nn.Module):
    """A layer from ``ops`` (``proj``) and a plain parameter holder (``mod``, like the DiT's modulation)."""

    def __init__(self, ops=CastOps):
        super().__init__()
        self.proj = ops.Linear(4, 4, device="meta")
        self.mod = nn.Module()
        self.mod.weight = nn.Parameter(torch.empty(4, 4, device="meta"))


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(4, 4, generator=g)
    scale = weight.abs().amax() / 448.0
    return weight.to(torch.bfloat16), (weight / scale).to(E4M3), scale.reshape(())


PLAIN, SCALED = "plain", "scaled fp8"
REQUESTS = (None, torch.float16, E4M3, E5M2)


def _convert(model, ops, request, stored, name="proj", **kw):
    bf16, fp8, scale = _weights()
    tensors = {f"{name}.weight": bf16 if stored == PLAIN else fp8}
    scales = {} if stored == PLAIN else {name: {"scale_weight": scale}}
    return convert_weights(model, tensors, scales, ops, request, "cpu", **kw), (bf16, fp8, scale)


# ---------------------------------------------------------------------------------------------- storage matrix
@pytest.mark.parametrize("request_dtype", REQUESTS, ids=str)
@pytest.mark.parametrize("stored", (PLAIN, SCALED))
def test_a_layer_that_takes_the_scale(request_dtype, stored):
    out, (bf16, fp8, scale) = _convert(Tiny(), CastOps, request_dtype, stored)
    weight = out.state["proj.weight"]
    assert set(out.state) == {"proj.weight"} and weight.device.type == "cpu"
    if stored == PLAIN:
        want = bf16 if request_dtype is None else bf16.to(request_dtype)  # fp8 requested: a plain cast
        assert weight.dtype == want.dtype and torch.equal(weight.float(), want.float())
        assert out.scales == {} and out.kept_fp8 is None
    elif request_dtype in (None, E4M3):  # kept in fp8, the scale goes to the layer
        assert weight.dtype == E4M3 and torch.equal(weight.float(), fp8.float())
        assert out.scales == {"proj": {"scale_weight": scale}} and out.kept_fp8 == E4M3
    else:  # a float request or another fp8 format: dequantized once, then stored
        assert torch.equal(weight.float(), dequantize(fp8, scale, request_dtype).float())
        assert weight.dtype == request_dtype and out.scales == {} and out.kept_fp8 is None
    assert out.file_dtypes == {(torch.bfloat16 if stored == PLAIN else E4M3): 16}


@pytest.mark.parametrize("request_dtype", REQUESTS, ids=str)
@pytest.mark.parametrize("stored", (PLAIN, SCALED))
def test_a_plain_parameter_is_never_fp8(request_dtype, stored):
    out, (bf16, fp8, scale) = _convert(Tiny(), CastOps, request_dtype, stored, name="mod")
    weight = out.state["mod.weight"]
    float_request = request_dtype is torch.float16
    if stored == PLAIN:
        assert weight.dtype == (torch.float16 if float_request else torch.bfloat16)
        assert torch.equal(weight, bf16.to(weight.dtype))
    else:
        assert weight.dtype == (torch.float16 if float_request else torch.float32)
        assert torch.equal(weight, dequantize(fp8, scale, weight.dtype))
    assert out.scales == {} and out.kept_fp8 is None


def test_a_scaled_weight_on_a_layer_without_a_scale_slot_is_dequantized_to_bf16():
    class NoScaleOps:
        Linear = nn.Linear  # an ops layer that neither takes scale_weight nor loads itself

    out, (_, fp8, scale) = _convert(Tiny(NoScaleOps), NoScaleOps, None, SCALED)
    assert out.state["proj.weight"].dtype == FP8_COMPUTE
    assert torch.equal(out.state["proj.weight"], dequantize(fp8, scale, FP8_COMPUTE)) and out.scales == {}


@pytest.mark.parametrize("request_dtype", REQUESTS, ids=str)
@pytest.mark.parametrize("stored", (PLAIN, SCALED))
def test_a_self_loading_host_layer(request_dtype, stored):
    model = Tiny(HostOps)
    bf16, fp8, scale = _weights()
    bias = torch.randn(4, dtype=torch.bfloat16)
    tensors = {"proj.weight": bf16 if stored == PLAIN else fp8, "proj.bias": bias}
    scales = {} if stored == PLAIN else {"proj": {"scale_weight": scale, "scale_input": torch.tensor(0.5)}}
    out = convert_weights(model, tensors, scales, HostOps, request_dtype, "cpu")
    assert model.proj.factory_kwargs["device"] == torch.device("cpu")  # told before loading
    assert out.state["proj.bias"].dtype == torch.float16  # its factory dtype
    assert out.scales == {}  # nothing to set as attributes: the layer loads its own
    if stored == SCALED and request_dtype in (None, E4M3):
        assert set(out.state) == {"proj.weight", "proj.bias", "proj.weight_scale", "proj.input_scale",
                                  "proj.comfy_quant"}
        assert out.state["proj.weight"].dtype == E4M3 and torch.equal(out.state["proj.weight_scale"], scale)
        assert out.state["proj.input_scale"].item() == 0.5 and out.kept_fp8 == E4M3
        assert json.loads(bytes(out.state["proj.comfy_quant"].tolist())) == {"format": "float8_e4m3fn"}
    else:  # anything not kept scaled goes in the factory dtype
        assert set(out.state) == {"proj.weight", "proj.bias"} and out.state["proj.weight"].dtype == torch.float16
        want = bf16 if stored == PLAIN else dequantize(fp8, scale, torch.float32)
        assert torch.equal(out.state["proj.weight"], want.to(torch.float16))
    assert expected_shapes(model)["proj.weight"] == (4, 4)  # known before its weight exists


def test_scale_getters_are_read_lazily():
    bf16, fp8, scale = _weights()
    reads = []

    def getter(name, value):
        def read():
            reads.append(name)
            return value
        return read

    tensors = {"proj.weight": getter("w", fp8), "mod.weight": getter("m", bf16)}
    scales = {"proj": {"scale_weight": getter("s", scale), "scale_input": getter("i", torch.tensor(2.0))}}
    out = convert_weights(Tiny(), tensors, scales, CastOps, torch.float16, "cpu")
    assert reads == ["w", "s", "m"]  # dequantized: the activation scale is never read
    assert out.state["proj.weight"].dtype == torch.float16
    reads.clear()
    out = convert_weights(Tiny(), tensors, scales, CastOps, None, "cpu")
    assert reads == ["w", "s", "i", "m"] and set(out.scales["proj"]) == {"scale_weight", "scale_input"}


def test_dequantize_fp8_keeps_everything_else_as_stored():
    bf16, fp8, scale = _weights()
    tensors = {"proj.weight": fp8, "proj.bias": torch.ones(4, dtype=E5M2), "mod.weight": bf16.half()}
    out = convert_weights(Tiny(), tensors, {"proj": {"scale_weight": scale}}, CastOps, None, "cpu",
                          dequantize_fp8=torch.bfloat16)
    assert torch.equal(out.state["proj.weight"], dequantize(fp8, scale, torch.bfloat16))
    assert out.state["proj.bias"].dtype == torch.bfloat16 and out.state["mod.weight"].dtype == torch.float16
    assert out.scales == {} and out.kept_fp8 is None
    with pytest.raises(ValueError):
        convert_weights(Tiny(), tensors, {}, CastOps, torch.float16, "cpu", dequantize_fp8=torch.bfloat16)


# ---------------------------------------------------------------------------------------------- scales
def test_attach_scales_sets_kept_scales_and_neutralises_unfilled_slots():
    model = Tiny()
    out, (_, fp8, scale) = _convert(model, CastOps, None, SCALED)
    out.scales["proj"]["scale_input"] = torch.tensor(0.5)  # kept by the pack's layers for fp8 matmul
    model.load_state_dict(out.state, strict=False, assign=True)
    attach_scales(model, out.scales, "cpu")
    assert torch.equal(model.proj.scale_weight, scale) and model.proj.scale_input.item() == 0.5
    assert "scale_input" not in model.proj._buffers  # an attribute, as scale_weight: upcast ignores it

    scaled = Tiny(ScaledOps)
    out, _ = _convert(scaled, ScaledOps, None, SCALED)
    out.scales["proj"]["scale_input"] = torch.tensor(0.5)
    scaled.load_state_dict(out.state, strict=False, assign=True)
    attach_scales(scaled, out.scales, "cpu")
    assert isinstance(scaled.proj.scale_weight, nn.Parameter) and scaled.proj.scale_weight.item() == scale.item()
    assert scaled.proj.scale_input.item() == 0.5

    unfilled = Tiny(ScaledOps)
    out, _ = _convert(unfilled, ScaledOps, None, PLAIN)
    unfilled.load_state_dict(out.state, strict=False, assign=True)
    attach_scales(unfilled, out.scales, "cpu")
    assert unfilled.proj.scale_weight.item() == 1.0 and unfilled.proj.scale_weight.dtype == torch.float32
    assert unfilled.proj.scale_weight.device.type == "cpu" and unfilled.proj.scale_input is None


def test_group_scales_reads_both_generations():
    one, two = torch.tensor(1.0), torch.tensor(2.0)
    assert group_scales({"a.weight": one, "a.scale_weight": one, "b.weight_scale": two, "b.input_scale": one}) == {
        "a": {"scale_weight": one}, "b": {"scale_weight": two, "scale_input": one}}


def test_one_list_of_layer_classes():
    assert set(layer_classes(CastOps)) == {CastOps.Linear, CastOps.Conv2d, CastOps.Conv3d, CastOps.LayerNorm,
                                           CastConv1d}

    class Host:
        pass

    for name in LAYER_CLASS_NAMES:
        setattr(Host, name, type(name, (nn.Module,), {}))
    assert set(layer_classes(Host)) == {getattr(Host, n) for n in LAYER_CLASS_NAMES} | {CastConv1d}
    assert CastLinear in layer_classes(CastOps)
