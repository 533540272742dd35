"""Browser tests: the pack's workflows and canvas widgets in the real ComfyUI front end, driven through
Playwright in a headless Chromium.

They need what the integration suite needs (``COMFYUI_ROOT``, ``COMFYUI_PYTHON``; its server fixture is reused
from tests/integration/conftest.py) plus the ``playwright`` Python package and a Chromium: ``POSEANIMATE_CHROMIUM``
or the first of chromium, chromium-browser, google-chrome on the PATH. Playwright never downloads a browser
here. Without any of these every test is skipped, with the reason.

The server gets front-end settings that keep the canvas clean (no first-run template dialog, no minimap, no
canvas stats), the tiny pose models under the real file names and a short driving video (pose_inputs.py).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"]
VIEWPORT = {"width": 1920, "height": 1080}
FRONTEND_SETTINGS = {
    "Comfy.TutorialCompleted": True,           # no "Get started with a template" dialog
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,           # no T/I/N/V/FPS corner text in the screenshots
}
READY = "window.app?.graph && window.app.extensions?.some(e => e.name === 'PoseAnimate.core')"


def _load(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The integration suite's server fixtures (host_paths, comfy_base, comfy), reused as they are.
_host = _load("poseanimate_integration_conftest", INTEGRATION / "conftest.py")
host_paths = _host.host_paths
comfy_base = _host.comfy_base
comfy = _host.comfy
pose_inputs = _load("pose_inputs", INTEGRATION / "pose_inputs.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def chromium_path() -> str | None:
    explicit = os.environ.get("POSEANIMATE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="session")
def browser(host_paths):
    """A headless Chromium (skips without Playwright or a Chromium; host_paths skips without COMFYUI_ROOT)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package "
                                   "(pip install playwright; no browser download needed)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("browser tests need a Chromium: install one (Debian: apt-get install chromium) or set "
                    "POSEANIMATE_CHROMIUM to its executable")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def frontend_server(comfy, host_paths, browser):
    """The server with front-end settings, the tiny pose models and the driving video in place (written
    before any page loads: the front end reads the model and input lists once, when it starts)."""
    pytest.importorskip("onnx")
    settings = comfy.base_dir / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(FRONTEND_SETTINGS))
    pose_inputs.write_pose_models(comfy.models_dir)
    pose_inputs.write_driving_video(host_paths.python, comfy.input_dir)
    return comfy


class Frontend:
    """One page of the ComfyUI front end, with what its console said."""

    def __init__(self, page, url: str):
        self.page = page
        self.url = url
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, timeout_ms: int = 90_000) -> "Frontend":
        self.page.goto(self.url)
        self.page.wait_for_function(READY, timeout=timeout_ms)
        return self

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def errors(self) -> list[str]:
        """Console errors other than the front end's own 404 probes (user files, templates, news)."""
        return [m for m in self.console if (m.startswith("error") or m.startswith("pageerror"))
                and "404" not in m and "ERR_NAME_NOT_RESOLVED" not in m and "ERR_INTERNET" not in m]


@pytest.fixture
def frontend(browser, frontend_server):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        yield Frontend(page, frontend_server.url).open()
    finally:
        context.close()
