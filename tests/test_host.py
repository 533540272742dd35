"""The host seam outside ComfyUI: plain-torch fallbacks and model-folder safety."""
import pytest
import torch

from poseanimate import host
from poseanimate.errors import InputError


def test_outside_the_host_falls_back_to_plain_torch():
    assert not host.in_host()
    assert host.compute_device().type in ("cpu", "cuda")
    from poseanimate.models.ops import CastOps
    assert host.operations() is CastOps


def test_interrupt_raises_once_at_the_next_check():
    host.check_interrupt()
    host.request_interrupt()
    with pytest.raises(host.Interrupted):
        host.check_interrupt()
    host.check_interrupt()  # cleared


def test_progress_reports_to_callback():
    seen = []
    p = host.Progress(3, callback=lambda c, t: seen.append((c, t)))
    p.update()
    p.update(5)
    assert seen == [(1, 3), (3, 3)]


def test_progress_reports_each_value_once_with_its_preview():
    """The sampler hands a preview after each step, then the step: one host update per step, carrying
    that step's preview (the host sends every update with an image, so each value used to arrive twice)."""
    sent, seen = [], []

    class Bar:
        def update_absolute(self, value, total, image):
            sent.append((value, total, image))

    class Previewer:
        def decode_latent_to_preview_image(self, fmt, latent):
            return f"{fmt}:{int(latent.flatten()[0])}"

    p = host.Progress(3, callback=lambda c, t: seen.append((c, t)))
    p._bar, p._previewer = Bar(), Previewer()
    for step in range(3):
        p.update(0, preview=torch.full((1, 1, 1, 1, 1), float(step)))
        p.update(1)
    p.update(0)
    assert sent == [(1, 3, "JPEG:0"), (2, 3, "JPEG:1"), (3, 3, "JPEG:2")]
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("name", ["../secret.safetensors", "/etc/passwd", "a/../../b", ""])
def test_model_names_cannot_escape_the_folder(name, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEANIMATE_MODELS", str(tmp_path))
    with pytest.raises(InputError, match="model file"):
        host.model_file("diffusion_models", name)


def test_missing_model_file_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEANIMATE_MODELS", str(tmp_path))
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "a.safetensors").write_bytes(b"x")
    assert host.list_model_files("loras") == ["a.safetensors"]
    assert host.model_file("loras", "a.safetensors").endswith("a.safetensors")
    with pytest.raises(InputError, match="b.safetensors.*not found"):
        host.model_file("loras", "b.safetensors")


def test_cast_linear_computes_in_input_dtype_with_fp8_scale():
    from poseanimate.models.ops import CastLinear
    lin = CastLinear(4, 3)
    ref = torch.nn.functional.linear(torch.ones(2, 4), lin.weight * 0.5, lin.bias)
    lin.scale_weight = torch.tensor(0.5)
    out = lin(torch.ones(2, 4))
    assert torch.allclose(out, ref)


def test_progress_text_outside_the_host_is_only_logged(caplog):
    import logging
    with caplog.at_level(logging.DEBUG):
        host.progress_text("window 2/3, step 1/4")
    assert "window 2/3, step 1/4" in caplog.text
