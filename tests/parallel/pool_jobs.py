"""Jobs the worker-pool test runs on every rank (imported by name in the workers)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

import method_cases


def _build(name: str):
    import tempfile
    from pathlib import Path
    method_cases.load_pack()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        built = method_cases.BUILDERS[name](Path(tmp))
    return built[0] if isinstance(built, list) else built


def _case(name: str):
    from poseanimate.parallel.pool import memo
    return memo(("case", name), lambda: _build(name))


def sample_case(name: str, stop_at_check: int | None = None, die_at_check: int | None = None):
    """A 4-step run of a method case under the active layout; rank 0 may stop at its n-th interrupt check,
    rank 1 may die there."""
    from poseanimate.host import Interrupted
    from poseanimate.parallel.launch import active_layout
    from poseanimate.parallel.pool import agreed_check
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.video import sample_video
    case, rank, calls = _case(name), dist.get_rank(), [0]

    def local_check() -> None:
        calls[0] += 1
        if rank == 0 and calls[0] == stop_at_check:
            raise Interrupted("run interrupted")
        if rank == 1 and calls[0] == die_at_check:
            os._exit(3)

    case.conditioning.clear_cache()
    out = sample_video(case.model, case.conditioning, make_scheduler("euler", 4, 5.0), case.cfg, 7, case.windows,
                       progress=lambda *_: None, check_interrupt=agreed_check(local_check), layout=active_layout())
    return out, calls[0]


def serial(name: str) -> torch.Tensor:
    return method_cases.sampled(_case(name), None)
