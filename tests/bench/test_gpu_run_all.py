"""bench/gpu/run_all.py runs end to end on the CPU at its tiny preset and writes each figure as it goes."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from poseanimate.models.wan.config import WanDiTConfig

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("bench_gpu_run_all", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_forward_flops_match_the_issue_figure_for_14b_at_480p(run_all):
    config = WanDiTConfig(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824, in_dim=36, out_dim=16,
                          image_embed_dim=1280)
    assert run_all.forward_flops(config, 21 * 30 * 52) / 1e12 == pytest.approx(1686, abs=1)


def test_tiny_preset_writes_every_figure_in_order(run_all, tmp_path, monkeypatch):
    monkeypatch.delenv("COMFYUI_ROOT", raising=False)
    assert run_all.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), "--skip", "compile",
                         "--threads", "1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "figures.jsonl").read_text().splitlines()]
    names = [row["figure"] for row in rows]
    assert names[:7] == ["forward_480p", "native_480p", "e2e_4step_480p", "fp8_upcast_480p", "fp8_scaled_mm_480p",
                         "forward_720p", "attention_480p"]
    assert names[-1] == "done" and "compiled_480p" not in names
    by_name = {row["figure"]: row for row in rows}
    assert by_name["native_480p"]["unavailable"].startswith("no --comfyui")
    assert by_name["forward_480p"]["tokens"] == 12 and math.isfinite(by_name["forward_480p"]["seconds"])
    assert by_name["e2e_4step_480p"]["frames"] == "5x32x48"
    # fp8: quantizing the weights costs a few percent; _scaled_mm (torch's CPU kernel here) about as much again
    assert 0 < by_name["fp8_upcast_480p"]["rel_err_vs_unquantized"] < 0.1
    assert 0 < by_name["fp8_scaled_mm_480p"]["rel_err_vs_upcast"] < 0.1
    sdpa = [row for row in rows if row["figure"] == "attention_480p" and row["backend"] == "sdpa"][0]
    assert sdpa["max_abs_err_vs_fp32"] == 0.0
    md = (tmp_path / "figures.md").read_text()
    assert md.count("- **") == len(rows) and "preset tiny" in md


def test_a_section_that_would_not_fit_the_budget_is_skipped_and_said_so(run_all, tmp_path):
    assert run_all.main(["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), "--budget-s", "7",
                         "--skip", "native,e2e,fp8,p720,attention"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "figures.jsonl").read_text().splitlines()]
    compiled = [row for row in rows if row["figure"] == "compile"]
    assert compiled and compiled[0]["skipped"].startswith("budget")
