"""One rank of a gloo process group in a spawned test: runs the cases under each layout, saves what it got."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

import method_cases


def run_rank(rank: int, world: int, port: int, out: str, jobs: tuple[str, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cases = method_cases.build_cases()
        from poseanimate.parallel.layout import make_layout
        results: dict[str, torch.Tensor] = {}
        for job in jobs:  # "velocity[:mode]", "sample[:short]" (no windows), "cfg", "cache:<policy>"
            kind, _, option = job.partition(":")
            layout = make_layout(2 if kind == "cfg" else 1, option if kind == "velocity" and option else "auto")
            for case in cases:
                if kind == "velocity":
                    results.update({f"{job}/{k}": v for k, v in method_cases.velocities(case, layout).items()})
                elif not (option == "short" and case.windows is not None):
                    cache = option if kind == "cache" else "none"
                    results[f"{job}/{case.name}"] = method_cases.sampled(case, layout, cache=cache)
        torch.save(results, str(Path(out) / f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
