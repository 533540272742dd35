"""Integration tests: the pack inside a real ComfyUI server.

Set ``COMFYUI_ROOT`` to a ComfyUI checkout (and ``COMFYUI_PYTHON`` to the python
of a venv that runs it; default ``$COMFYUI_ROOT/../comfy-venv/bin/python``, else
the python running pytest). ``tests/integration/setup_host_venv.sh`` makes that
venv. Without ``COMFYUI_ROOT`` every test here is skipped.

The session fixture ``comfy`` starts one server on a free port of 127.0.0.1 with
a throw-away base directory: ``custom_nodes/<PACK_FOLDER>`` is a symlink to this
repository, models/input/output/user live in the temporary folder, and all other
custom nodes are disabled. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import textwrap
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER = "ComfyUI-PoseAnimate"  # a folder name that is not a Python identifier, as users clone it
STARTUP_TIMEOUT_S = 180.0
HERE = Path(__file__).resolve().parent
TESTKIT_FOLDER = "poseanimate_testkit"  # test-only nodes standing in for the host's big encoders (testkit/)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


# ---------------------------------------------------------------- where the host is
@dataclass(frozen=True)
class HostPaths:
    root: Path      # the ComfyUI checkout
    python: str     # the interpreter that runs it


@pytest.fixture(scope="session")
def host_paths() -> HostPaths:
    root = os.environ.get("COMFYUI_ROOT")
    if not root:
        pytest.skip("integration tests need a ComfyUI checkout: set COMFYUI_ROOT (and COMFYUI_PYTHON); "
                    "see tests/integration/setup_host_venv.sh")
    root_path = Path(root).resolve()
    if not (root_path / "main.py").is_file() or not (root_path / "comfy" / "cli_args.py").is_file():
        pytest.fail(f"COMFYUI_ROOT={root} is not a ComfyUI checkout (no main.py / comfy/cli_args.py)")
    python = os.environ.get("COMFYUI_PYTHON")
    if not python:
        venv_python = root_path.parent / "comfy-venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
    return HostPaths(root_path, python)


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory, host_paths) -> Path:
    """A ComfyUI base directory: custom_nodes/<PACK_FOLDER> -> this repository, empty model folders."""
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    link = base / "custom_nodes" / PACK_FOLDER
    try:
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    except OSError:  # no symlinks (some Windows setups): copy the sources
        shutil.copytree(REPO_ROOT, link, ignore=shutil.ignore_patterns(".git", "__pycache__", "models_dir"))
    (base / "custom_nodes" / TESTKIT_FOLDER).symlink_to(HERE / "testkit", target_is_directory=True)
    for sub in ("models", "input", "output", "temp", "user"):
        (base / sub).mkdir()
    return base


# ---------------------------------------------------------------- the client
class WorkflowRejected(AssertionError):
    """POST /prompt answered 400: the workflow did not validate."""

    def __init__(self, body: dict):
        self.body = body
        self.node_errors = body.get("node_errors", {})
        super().__init__(f"workflow rejected: {json.dumps(body)[:2000]}")


@dataclass
class RunResult:
    prompt_id: str
    status: str                      # 'success' or 'error'
    outputs: dict[str, Any]          # node id -> that node's UI outputs
    messages: list = field(default_factory=list)

    @property
    def error(self) -> dict | None:
        """The execution_error message's data (exception_message, node_type, traceback...), if any."""
        for name, data in self.messages:
            if name == "execution_error":
                return data
        return None

    @property
    def interrupted(self) -> bool:
        return any(name == "execution_interrupted" for name, _ in self.messages)


class ComfyClient:
    """A small HTTP client for one running ComfyUI server (API-format workflows only)."""

    def __init__(self, url: str, log_path: Path, base_dir: Path, process: subprocess.Popen):
        self.url = url
        self.log_path = log_path
        self.base_dir = base_dir
        self.models_dir = base_dir / "models"
        self.output_dir = base_dir / "output"
        self.input_dir = base_dir / "input"
        self.process = process
        self.client_id = uuid.uuid4().hex
        self.pack_folder = PACK_FOLDER
        self.pack_path = base_dir / "custom_nodes" / PACK_FOLDER  # the path ComfyUI imports the pack from

    Rejected = WorkflowRejected  # tests catch it without importing this conftest

    # -- plumbing
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        status, raw = self._request("GET", path, timeout=timeout)
        assert status == 200, f"GET {path} -> {status}: {raw[:500]!r}"
        return json.loads(raw)

    def get_bytes(self, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
        return self._request("GET", path, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- the API
    def object_info(self, node_class: str | None = None) -> dict:
        return self.get_json("/object_info" + (f"/{node_class}" if node_class else ""))

    def queue(self, workflow: dict) -> str:
        """Queue an API-format workflow; raises WorkflowRejected with node_errors on HTTP 400."""
        status, raw = self._request("POST", "/prompt", {"prompt": workflow, "client_id": self.client_id})
        body = json.loads(raw) if raw else {}
        if status == 400:
            raise WorkflowRejected(body)
        assert status == 200, f"POST /prompt -> {status}: {raw[:500]!r}"
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0, poll_s: float = 0.25) -> RunResult:
        """Poll /history/<id> until the run finished (success, error or interrupt)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("status_str") in ("success", "error")):
                st = entry["status"]
                return RunResult(prompt_id, st["status_str"], entry.get("outputs", {}), st.get("messages", []))
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI exited (code {self.process.returncode}) while running "
                                     f"{prompt_id}; log tail:\n{self.log()[-4000:]}")
            time.sleep(poll_s)
        raise TimeoutError(f"workflow {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, workflow: dict, timeout: float = 600.0) -> RunResult:
        return self.wait(self.queue(workflow), timeout=timeout)

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        status, raw = self._request("POST", "/free", {"unload_models": unload_models, "free_memory": free_memory})
        assert status == 200, f"POST /free -> {status}: {raw[:300]!r}"

    def interrupt(self, prompt_id: str | None = None) -> None:
        status, raw = self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
        assert status == 200, f"POST /interrupt -> {status}: {raw[:300]!r}"

    def queue_state(self) -> dict:
        return self.get_json("/queue")

    def wait_for_progress(self, prompt_id: str, node_id: str, at_least: int, timeout: float = 120.0) -> float:
        """Block until the server reports ``node_id`` of ``prompt_id`` at progress ``at_least`` (over the
        WebSocket this client is registered on); returns the monotonic time it saw it. A test that acts
        on a run in a given phase waits for it here instead of sleeping, so no race decides the result."""
        sys.path.insert(0, str(REPO_ROOT / "tools"))
        try:
            from websocket_client import WebSocket
        finally:
            sys.path.remove(str(REPO_ROOT / "tools"))
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        deadline = time.monotonic() + timeout
        ws = WebSocket.connect(ws_url, timeout=10.0)
        try:
            while time.monotonic() < deadline:
                text = ws.recv_text(timeout=max(0.1, deadline - time.monotonic()))
                if text is None:
                    continue
                message = json.loads(text)
                data = message.get("data") or {}
                if (message.get("type") == "progress" and data.get("prompt_id") == prompt_id
                        and str(data.get("node")) == node_id and int(data.get("value", 0)) >= at_least):
                    return time.monotonic()
        finally:
            ws.close()
        raise TimeoutError(f"node {node_id} of {prompt_id} did not reach progress {at_least} within {timeout:.0f} s")


# ---------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(host_paths: HostPaths, base: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [host_paths.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--base-directory", str(base),
           "--database-url", "sqlite:///:memory:",  # keep the checkout's user/ folder untouched
           "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_FOLDER, TESTKIT_FOLDER]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(cmd, cwd=host_paths.root, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/system_stats", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    return False


@pytest.fixture(scope="session")
def comfy(host_paths, comfy_base) -> ComfyClient:
    """One ComfyUI server for the session, with only this pack among the custom nodes."""
    log_path = comfy_base / "comfyui.log"
    for _attempt in range(3):  # a port taken between picking and binding: try another
        proc, url = _start(host_paths, comfy_base, log_path)
        if _wait_ready(proc, url, STARTUP_TIMEOUT_S):
            break
        _stop(proc)
        log = log_path.read_text(errors="replace")
        if "address already in use" not in log.lower():
            pytest.fail(f"ComfyUI did not start within {STARTUP_TIMEOUT_S:.0f} s; log tail:\n{log[-6000:]}")
    else:
        pytest.fail("ComfyUI could not bind a free port in 3 attempts")
    client = ComfyClient(url, log_path, comfy_base, proc)
    try:
        yield client
    finally:
        _stop(proc)


# ---------------------------------------------------------------- what the method workflows need
def _pose_inputs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("pose_inputs", HERE / "pose_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_REFERENCE_PNG = textwrap.dedent("""
    import sys
    import numpy as np
    from PIL import Image
    image = np.full((160, 240, 3), 20, np.uint8)
    image[20:150, 100:140] = (200, 190, 180)
    image[50:56, 117:123] = 255
    Image.fromarray(image).save(sys.argv[1])
""")


@pytest.fixture(scope="session")
def method_server(comfy, host_paths):
    """The server with everything the method workflows load: tiny models under the real names, the pose
    models, a driving video and a reference image in input/."""
    from poseanimate.tiny_models.model_files import write_tiny_model_files
    write_tiny_model_files(comfy.models_dir, text_dim=4096, clip_dim=1280)
    inputs = _pose_inputs()
    inputs.write_pose_models(comfy.models_dir)
    inputs.write_pose_models(comfy.models_dir, {"yolov10": "yolov10m.onnx", "vitpose": "vitpose_h_wholebody.onnx"})
    inputs.write_driving_video(host_paths.python, comfy.input_dir)
    proc = subprocess.run([host_paths.python, "-c", _REFERENCE_PNG, str(comfy.input_dir / "reference.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return comfy


# ---------------------------------------------------------------- code run inside the host's python
PROBE_PREAMBLE = textwrap.dedent("""
    import json, sys
    comfy_root, repo_root, base = sys.argv[1:4]
    probe_args = sys.argv[4:]
    sys.argv = ["probe", "--cpu", "--base-directory", base]
    sys.path.insert(0, comfy_root)
    import comfy.options
    comfy.options.enable_args_parsing()
    sys.path.insert(0, repo_root)
    import standalone
    sys.path.remove(repo_root)
    standalone.load_pack()
""")


@pytest.fixture
def host_probe(host_paths, comfy_base, tmp_path):
    """Run a script inside the host's python (ComfyUI importable, the pack loaded as ``poseanimate``, the
    test base directory as ComfyUI's); the script prints ``PROBE<json>``, which is returned as a dict."""
    def run(body: str, timeout: float = 600, args: tuple[str, ...] = ()) -> dict:
        script = PROBE_PREAMBLE + textwrap.dedent(body)
        proc = subprocess.run([host_paths.python, "-c", script, str(host_paths.root), str(REPO_ROOT),
                               str(comfy_base), *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")]
        assert proc.returncode == 0 and lines, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return json.loads(lines[-1][len("PROBE"):])
    return run
