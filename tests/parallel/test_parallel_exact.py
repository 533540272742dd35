"""Sequence- and CFG-parallel sampling give one process's result, on the CPU with gloo.

Each world size is one spawn: the ranks rebuild every method's tiny model from its parity fixture
(UniAnimate's added pose tokens, RealisDance's appended reference tokens, Wan2.2-Animate's face
adapters) and a stand-in with a timestep per token, compute both branches' velocity and a 4-step
guided run (UniAnimate also over context windows) under the layouts named in ``jobs``, and save
them; this process computes the same serially and compares.

* 2 ranks: Ulysses (2 heads over 2 ranks), the ring forced, CFG-parallel (one branch per rank), and
  a step cache (EasyCache) wrapped by the sequence-parallel runner: every rank skips the same steps;
* 3 ranks: the ring (2 heads do not split over 3), uneven slices (18 tokens: 6/6/6 cross no frame
  boundary, RealisDance's 24 + 8 reference tokens split 11/11/10 and cut the reference off; the windowed
  run is left to 2 ranks, to keep the test short).
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import method_cases  # noqa: E402
import rank_worker  # noqa: E402

TOLERANCE = 1e-5
JOBS = {2: ("velocity", "velocity:ring", "sample", "cfg", "cache:easycache"), 3: ("velocity", "sample:short")}
CACHE = "easycache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def serial():
    cases = method_cases.build_cases()
    results = {}
    for case in cases:
        results.update(method_cases.velocities(case, None))
        results[f"sample/{case.name}"] = method_cases.sampled(case, None)
        results[f"cache:{CACHE}/{case.name}"] = method_cases.sampled(case, None, cache=CACHE)
    return results


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_give_the_serial_velocities_and_videos(world, serial, tmp_path):
    jobs = JOBS[world]
    mp.start_processes(rank_worker.run_rank, args=(world, free_port(), str(tmp_path), jobs), nprocs=world,
                       start_method="spawn")
    ranks = [torch.load(str(tmp_path / f"rank{r}.pt"), weights_only=True) for r in range(world)]
    checked = 0
    for key, value in ranks[0].items():
        for other in ranks[1:]:
            assert torch.equal(other[key], value), f"{key}: ranks disagree"
        job, _, name = key.partition("/")
        whole_run = job in ("sample", "sample:short", "cfg")
        reference = serial[f"sample/{name}"] if whole_run else serial.get(key, serial.get(name))
        err = relative_error(value, reference)
        assert err < TOLERANCE, (key, err)
        checked += 1
    runs = {"velocity": 8, "sample:short": 4}  # 4 forward cases x 2 branches; runs without the windowed one
    assert checked == sum(runs.get(j, runs["velocity"] if j.startswith("velocity") else 5) for j in jobs)
