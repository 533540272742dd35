"""WorkerPool (parallel/pool.py): persistent CPU workers (gloo) give one process's video, stop together on
an interrupt, report a killed worker as a clear error, and the next pool runs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pool_jobs  # noqa: E402

from poseanimate.host import Interrupted  # noqa: E402
from poseanimate.parallel.pool import WorkerCrashed, WorkerPool  # noqa: E402


def test_pool_runs_match_one_process_stop_together_and_survive_a_dead_worker():
    reference = pool_jobs.serial("unianimate")
    pool = WorkerPool(2, extra_paths=(str(HERE),))
    try:
        out, checks = pool.run("pool_jobs", "sample_case", "unianimate")
        assert ((out - reference).abs().max() / reference.abs().max()).item() < 1e-5
        with pytest.raises(Interrupted):
            pool.run("pool_jobs", "sample_case", "unianimate", stop_at_check=checks // 2)
        again, _ = pool.run("pool_jobs", "sample_case", "unianimate")  # the same workers, model kept
        assert torch.equal(again, out)
        with pytest.raises(WorkerCrashed, match=r"worker process rank 1 \(exit code 3\) ended during the run"):
            pool.run("pool_jobs", "sample_case", "unianimate", die_at_check=checks // 2)
        assert not pool.alive()
    finally:
        pool.close()
    pool = WorkerPool(2, extra_paths=(str(HERE),))
    try:
        out, _ = pool.run("pool_jobs", "sample_case", "unianimate")
        assert ((out - reference).abs().max() / reference.abs().max()).item() < 1e-5
    finally:
        pool.close()
