"""The SteadyDancer tests' shared fixtures: the parity fixture's tensors and the reference's weights loaded."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steadydancer_fixture import load_fixture, official_state, write_file  # noqa: E402

from poseanimate.methods.steadydancer import load_steadydancer  # noqa: E402


@pytest.fixture(scope="session")
def fx():
    return load_fixture()


@pytest.fixture(scope="session")
def model(fx, tmp_path_factory):
    """The reference's tiny weights as an official single file, through our loader (2 heads: no config.json)."""
    path = write_file(official_state(fx), tmp_path_factory.mktemp("steadydancer") / "steadydancer.safetensors")
    return load_steadydancer(path, storage_dtype="fp32", num_heads=2)
