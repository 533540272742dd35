"""install.py never adds a second OpenCV or onnxruntime distribution."""
import importlib.metadata as md
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import install  # noqa: E402

sys.path.pop(0)


def fake_versions(present):
    def version(name):
        if name in present:
            return "1.0"
        raise md.PackageNotFoundError(name)
    return version


def test_nothing_installed_when_one_of_each_is_present(monkeypatch):
    monkeypatch.setattr(install.md, "version", fake_versions({"opencv-contrib-python-headless", "onnxruntime"}))
    assert install.plan() == []


def test_missing_ones_are_installed_once(monkeypatch):
    monkeypatch.setattr(install.md, "version", fake_versions(set()))
    monkeypatch.setattr(install, "wanted_onnxruntime", lambda: "onnxruntime-gpu")
    assert install.plan() == ["opencv-python", "onnxruntime-gpu"]


def test_only_the_missing_family_is_installed(monkeypatch):
    monkeypatch.setattr(install.md, "version", fake_versions({"opencv-python"}))
    monkeypatch.setattr(install, "wanted_onnxruntime", lambda: "onnxruntime")
    assert install.plan() == ["onnxruntime"]


def test_requirements_never_name_torch_opencv_or_onnxruntime():
    lines = [line.split("#")[0].strip().lower() for line in
             (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()]
    names = {line.split("=")[0].split(">")[0].split("<")[0].strip() for line in lines if line}
    assert not names & {"torch", "torchvision", "torchaudio", *install.OPENCV_DISTRIBUTIONS,
                        *install.ONNXRUNTIME_DISTRIBUTIONS}


ROOT = Path(__file__).resolve().parents[1]


def readme_test_commands() -> list[str]:
    """The command lines of the README's "Run the tests" block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Run the tests", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_commands():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    assert commands[2:] == readme_test_commands()


def test_test_requirements_leave_opencv_and_onnxruntime_to_install_py():
    commands = readme_test_commands()
    pip = next(i for i, c in enumerate(commands) if " pip install " in c)
    assert "python3 install.py" in commands[pip + 1:]
    names = [line.split("#")[0].strip().lower() for line in (ROOT / "tests" / "requirements.txt").read_text()
             .splitlines()]
    assert not {n for n in names if n} & {*install.OPENCV_DISTRIBUTIONS, *install.ONNXRUNTIME_DISTRIBUTIONS}


@pytest.mark.slow
def test_a_fresh_environment_ends_with_one_opencv_and_one_onnxruntime(tmp_path):
    """The README's test install resolved by pip in a brand-new venv (no system site packages, nothing
    installed: ``--dry-run --report``) together with what install.py adds, in either order: one distribution
    of each family."""
    commands = readme_test_commands()
    pip_line = next(c for c in commands if " pip install " in c)
    args = shlex.split(pip_line.split(" pip install ", 1)[1])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    report = tmp_path / "report.json"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = json.loads(report.read_text())["install"]
    resolved = {item["metadata"]["name"].lower().replace("_", "-") for item in items}
    def install_py_adds(present):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(install.md, "version", fake_versions(present))
            return set(install.plan())

    # the README's test commands on a fresh machine (install.py after pip), and on a user's install, where
    # install.py ran first (README "Install") and the test requirements come on top
    for environment in (resolved | install_py_adds(resolved), install_py_adds(set()) | resolved):
        for family in (install.OPENCV_DISTRIBUTIONS, install.ONNXRUNTIME_DISTRIBUTIONS):
            assert len(environment & set(family)) == 1, (family, sorted(environment))


def test_license_publisher_and_clone_url():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    license_text = (ROOT / pyproject["project"]["license"]["file"]).read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in license_text
    assert pyproject["tool"]["comfy"].get("PublisherId", "real") not in ("", "poseanimate")  # none, or a real id
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    clone = [line for line in readme.splitlines() if line.startswith("git clone ")]
    assert clone and all(line.split()[2] == pyproject["project"]["urls"]["Repository"] for line in clone)
    assert "<this repository>" not in readme and "python_embeded\\python.exe" in readme


def test_readme_vram_table_is_what_the_estimates_give():
    spec = importlib.util.spec_from_file_location("vram_table", ROOT / "tools" / "vram_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in (ROOT / "README.md").read_text(encoding="utf-8")
