"""install.py never adds a second OpenCV or onnxruntime distribution."""
import importlib.metadata as md
import sys
from pathlib import Path

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
