"""The host contract against fake hosts: what a missing piece looks like, before any real host is at hand.

tests/integration/test_host_contract.py runs the same checks inside every vendored ComfyUI.
"""
import types

import pytest

from poseanimate import host_contract as hc


def _fake_host(version: str = "0.33.0", drop: tuple[str, ...] = (), pick_kwargs: str = "model_config"):
    """Modules shaped like a ComfyUI's, with the attributes the pack uses; ``drop`` removes some
    (``"module.attr"``); ``pick_kwargs`` names the fp8 keyword pick_operations takes."""
    def pick_operations(weight_dtype, compute_dtype, load_device=None, **_ignored):
        return None
    pick = {"model_config": lambda weight_dtype, compute_dtype, load_device=None, model_config=None: None,
            "scaled_fp8": lambda weight_dtype, compute_dtype, load_device=None, scaled_fp8=None: None}[pick_kwargs]

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0):
            pass

        def clone(self):
            pass

        def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
            pass

    class ProgressBar:
        def update_absolute(self, value, total=None, preview=None):
            pass

    class PromptServer:
        def send_progress_text(self, text, node_id, sid=None):
            pass

    def mixed_precision_ops(quant_config={}, compute_dtype=None, full_precision_mm=False, disabled=[]):  # noqa: B006
        pass

    modules = {
        "comfy.model_management": dict(get_torch_device=print, unet_offload_device=print, load_models_gpu=print,
                                       current_loaded_models=[], soft_empty_cache=print,
                                       interrupt_current_processing=print,
                                       throw_exception_if_processing_interrupted=print,
                                       InterruptProcessingException=BaseException),
        "comfy.ops": dict(pick_operations=pick, disable_weight_init=object, manual_cast=object,
                          mixed_precision_ops=mixed_precision_ops, scaled_fp8_ops=print),
        "comfy.model_patcher": dict(ModelPatcher=ModelPatcher),
        "comfy.weight_adapter": dict(LoRAAdapter=object),
        "comfy.utils": dict(ProgressBar=ProgressBar),
        "folder_paths": dict(models_dir="/m", folder_names_and_paths={},
                             add_model_folder_path=lambda name, path, is_default=False: None,
                             get_filename_list=print, get_full_path=print, get_folder_paths=print,
                             get_temp_directory=print),
        "comfy_execution.utils": dict(get_executing_context=print),
        "server": dict(PromptServer=PromptServer),
        "latent_preview": dict(get_previewer=print),
        "comfy.latent_formats": dict(Wan21=object),
        "comfyui_version": dict(__version__=version),
    }
    for dotted in drop:
        module, _, attr = dotted.rpartition(".")
        if module in modules and attr in modules[module]:
            del modules[module][attr]
        else:
            modules.pop(dotted)

    def importer(name: str):
        if name not in modules:
            raise ImportError(f"No module named '{name}'")
        return types.SimpleNamespace(**modules[name])
    return importer


def test_a_complete_host_has_every_piece():
    features = hc.probe(_fake_host())
    assert features.version == "0.33.0"
    assert features.incompatibility() is None
    assert [r.name for r in features.missing] == ["comfy.ops.pick_operations(scaled_fp8=)"]  # a new host
    assert features.fp8_layers == hc.FP8_MIXED_OPS
    assert features.has(hc.PROGRESS_TEXT) and features.has(hc.LATENT_PREVIEWS)


def test_an_old_host_serves_fp8_through_its_scaled_ops():
    features = hc.probe(_fake_host("0.3.64", drop=("comfy.ops.mixed_precision_ops",), pick_kwargs="scaled_fp8"))
    assert features.fp8_layers == hc.FP8_SCALED_OPS and features.incompatibility() is None


def test_missing_pieces_come_back_as_a_readable_list():
    features = hc.probe(_fake_host("0.40.0", drop=("comfy.model_management.load_models_gpu",
                                                   "comfy.weight_adapter", "comfy_execution.utils")))
    problems = features.problems()
    assert problems[0].startswith("comfy.model_management.load_models_gpu: missing, required")
    assert any(p.startswith("comfy.weight_adapter.LoRAAdapter: missing, required") for p in problems)
    assert any("get_executing_context: missing, optional (progress text on the node)" in p for p in problems)
    assert not features.has(hc.PROGRESS_TEXT)
    message = features.incompatibility()
    assert message.startswith("ComfyUI-PoseAnimate cannot run in ComfyUI 0.40.0: it lacks ")
    assert "load_models_gpu" in message and "LoRAAdapter" in message and "get_executing_context" not in message
    assert hc.OLDEST_TESTED in message and hc.NEWEST_TESTED in message


def test_a_changed_signature_counts_as_missing():
    importer = _fake_host()

    def narrowed(name):
        module = importer(name)
        if name == "folder_paths":
            module.add_model_folder_path = lambda name, path: None  # no is_default any more
        return module
    features = hc.probe(narrowed)
    assert "folder_paths.add_model_folder_path(is_default=): missing, required" in features.problems()[0]


@pytest.mark.parametrize("version, expected", [
    ("0.3.64", None), ("0.8.0", None), ("0.33.0", None),
    ("0.3.40", "older than the oldest tested (0.3.64)"),
    ("0.34.1", "newer than the newest tested (0.33.0)"),
    ("unknown", "could not be read"),
])
def test_the_range_notice_is_one_line_outside_the_tested_range(version, expected):
    notice = hc.range_notice(version)
    if expected is None:
        assert notice is None
    else:
        assert expected in notice and "\n" not in notice


def test_check_host_refuses_to_load_in_a_host_without_a_required_piece(monkeypatch):
    from poseanimate import host
    features = hc.probe(_fake_host("0.2.0", drop=("comfy.ops.pick_operations",)))
    monkeypatch.setattr(host, "_features", features)
    monkeypatch.setattr(host, "_checked", True)
    with pytest.raises(host.HostIncompatible, match=r"ComfyUI 0\.2\.0: it lacks comfy\.ops\.pick_operations"):
        host.check_host()


def test_check_host_warns_once_for_a_newer_host(monkeypatch, caplog):
    import logging
    from poseanimate import host
    monkeypatch.setattr(host, "_features", hc.probe(_fake_host("0.40.0")))
    monkeypatch.setattr(host, "_checked", True)
    with caplog.at_level(logging.INFO, logger="poseanimate.host"):
        host.check_host()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "ComfyUI 0.40.0 is newer than the newest tested" in warnings[0].getMessage()


def test_the_front_end_contract_lists_everything_web_calls():
    import re
    from pathlib import Path
    web = Path(hc.__file__).resolve().parent / "web"
    text = "\n".join(p.read_text() for p in web.rglob("*.js"))
    calls = {f"{obj}.{name}" for obj, name in re.findall(r"\b(app|api)\.([A-Za-z_]+)\(", text)}
    assert calls and calls <= set(hc.FRONTEND_CALLS), calls - set(hc.FRONTEND_CALLS)
    members = set(re.findall(r"\bnode\.([A-Za-z_]+)", text))
    hooks = {m for m in members if m.startswith("on")}  # callbacks the pack sets, not calls it makes
    assert members - hooks <= set(hc.FRONTEND_NODE_MEMBERS), members - hooks - set(hc.FRONTEND_NODE_MEMBERS)
    imports = set(re.findall(r'from "(?:\.\./)+(scripts/[a-z_]+\.js)"', text))
    assert {"/" + i for i in imports} == set(hc.FRONTEND_MODULE_EXPORTS)
