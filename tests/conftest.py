"""Tests import the pack as ``poseanimate`` (see standalone.py)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import standalone  # noqa: E402

sys.path.remove(str(ROOT))  # keep the pack's sub-folders (models/, nodes/) from shadowing anything
standalone.load_pack()

FIXTURES = Path(__file__).resolve().parent / "fixtures"
