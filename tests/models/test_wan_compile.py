"""Regional compilation of the DiT's blocks: same output, no recompile for another size, clear errors.

Inductor on the CPU takes minutes to build kernels, so the mechanics are checked with torch's
``aot_eager`` backend (dynamo traces and guards exactly as for inductor, without generating C++); a
missing compiler is simulated by making the probe fail as inductor does without one.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch._dynamo

from poseanimate.errors import InputError
from poseanimate.models.wan import compile as wan_compile
from poseanimate.models.wan.compile import is_compiled, set_compiled_blocks
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import WanDiT
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict


@pytest.fixture()
def model():
    state = tiny_wan_state_dict("t2v")
    dit = WanDiT(infer_config(state)).eval()
    dit.load_state_dict(state)
    yield dit
    set_compiled_blocks(dit, "off", "cpu")
    torch._dynamo.reset()


def _forward(model, frames, height, width, t=500.0):
    g = torch.Generator().manual_seed(frames * 100 + height * 10 + width)
    x = torch.randn(1, 16, frames, height, width, generator=g)
    context = torch.randn(1, 8, model.config.text_dim, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([t]), context)


def test_compiled_blocks_give_the_plain_output_and_another_size_does_not_recompile(model):
    sizes = [(2, 4, 6), (2, 4, 8), (3, 6, 6)]
    plain = [_forward(model, *size) for size in sizes]
    assert set_compiled_blocks(model, "on", "cpu", backend="aot_eager") and is_compiled(model)
    torch.testing.assert_close(_forward(model, *sizes[0]), plain[0], rtol=1e-5, atol=1e-5)
    _forward(model, *sizes[0], t=300.0)  # settles dynamo's one automatic-dynamic recompile
    frames_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for size, reference in zip(sizes[1:], plain[1:]):
        torch.testing.assert_close(_forward(model, *size), reference, rtol=1e-5, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames_before  # size: no recompile
    assert set_compiled_blocks(model, "on", "cpu", backend="aot_eager")  # idempotent: keeps the compiled code
    assert not set_compiled_blocks(model, "off", "cpu") and not is_compiled(model)


@pytest.fixture()
def no_compiler(monkeypatch):
    def failing_compile(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx")

    wan_compile._compiler_problem.cache_clear()
    monkeypatch.setattr(wan_compile.torch, "compile", failing_compile)
    yield
    wan_compile._compiler_problem.cache_clear()


def test_on_without_a_compiler_stops_with_one_line(model, no_compiler):
    with pytest.raises(InputError) as error:
        set_compiled_blocks(model, "on", "cpu")
    message = str(error.value)
    assert message.startswith("compile: is 'on' but torch ") and "\n" not in message
    assert "cannot compile for cpu with 'inductor' (InvalidCxxCompiler: No working C++ compiler" in message
    assert message.endswith("expected 'auto' (runs uncompiled when no compiler works), 'off', or a working C "
                            "compiler (CPU) / triton (GPU)")
    assert not is_compiled(model)


def test_auto_without_a_compiler_logs_one_line_and_runs_uncompiled(model, no_compiler, caplog):
    reference = _forward(model, 2, 4, 6)
    with caplog.at_level(logging.WARNING):
        assert set_compiled_blocks(model, "auto", "cpu") is False
    lines = [r.getMessage() for r in caplog.records if "compile" in r.getMessage()]
    assert len(lines) == 1 and "the blocks run uncompiled" in lines[0] and "No working C++ compiler" in lines[0]
    assert not is_compiled(model) and torch.equal(_forward(model, 2, 4, 6), reference)


def test_unknown_mode_names_the_input(model):
    with pytest.raises(InputError, match="^compile: 'max' is not a mode; expected one of off, auto, on$"):
        set_compiled_blocks(model, "max", "cpu")
