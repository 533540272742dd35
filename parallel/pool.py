"""Persistent worker processes for a process that cannot be started by torchrun (a server, a notebook).

:class:`WorkerPool` starts ``processes - 1`` workers (``python parallel/worker_main.py``, each in its own
session), joins them in one process group as rank 0 and keeps them between jobs. A job is a function of
the pack named by module and name plus picklable arguments: every rank runs it under the pool's layout,
rank 0's result is returned. Workers keep what a job memoises (:func:`memo`: a loaded model) for the
next job, so the main process names the model file and every worker loads it once.

* An interrupt is agreed on: the job's interrupt check (:func:`agreed_check`) all-reduces a flag, so
  every rank stops at the same block and no rank is left waiting in a collective.
* A worker that dies closes its connections: the gloo collective on rank 0 fails at once, the pool
  ends the other workers and raises :class:`WorkerCrashed`; the next job starts a fresh pool. (NCCL
  does not notice a dead peer; there the process group's ``timeout`` bounds the wait.)
* :meth:`close` (a host's "free memory", server exit) stops the workers.
"""
from __future__ import annotations

import datetime
import importlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import InputError
from .launch import check_gpu_count, use_layout
from .layout import make_layout

WORKER_SCRIPT = Path(__file__).with_name("worker_main.py")
PACK = __name__.rsplit(".", 2)[0]  # the pack's import name in this process
_MEMO: dict[Any, Any] = {}


class WorkerCrashed(RuntimeError):
    """A worker process ended during a job."""


def memo(key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` once per process for ``key`` (a model by its file and options), kept between jobs."""
    if key not in _MEMO:
        _MEMO[key] = build()
    return _MEMO[key]


def agreed_check(local_check: Callable[[], None]) -> Callable[[], None]:
    """An interrupt check every rank calls at the same points: any rank's stop stops them all there."""
    def check() -> None:
        error: BaseException | None = None
        try:
            local_check()
        except BaseException as raised:  # the host's interrupt exception, whatever its type
            error = raised
        flag = torch.tensor([0.0 if error is None else 1.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            raise error if error is not None else InterruptedOnAnotherRank("run interrupted")
    return check


class InterruptedOnAnotherRank(RuntimeError):
    """Raised on the ranks that did not see the interrupt themselves."""


def run_job(module: str, name: str, args: tuple, kwargs: dict) -> Any:
    """``module.name(*args, **kwargs)``; a module starting with '.' is the pack's (``.parallel.jobs``)."""
    function = getattr(importlib.import_module(module, PACK) if module.startswith(".") else
                       importlib.import_module(module), name)
    return function(*args, **kwargs)


class WorkerPool:
    """``processes`` ranks: this process (rank 0) and ``processes - 1`` persistent workers on ``device``."""

    def __init__(self, processes: int, device: str = "cpu", timeout_s: float = 120.0,
                 extra_paths: tuple[str, ...] = ()):
        if processes < 2:
            raise InputError("GPUs", f"{processes} asks for no worker processes", "2 or more for a pool")
        if torch.device(device).type == "cuda":
            check_gpu_count(processes)
        self.processes, self.device = processes, device
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        self.workers = [subprocess.Popen([sys.executable, str(WORKER_SCRIPT), str(rank), str(processes), str(port),
                                          device, str(timeout_s), *extra_paths], env=env, start_new_session=True)
                        for rank in range(1, processes)]
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(0)  # rank r uses GPU r (worker_main.py sets its own)
        try:
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=processes,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except BaseException:
            self._kill()
            raise
        self.layout = make_layout()

    def alive(self) -> bool:
        return all(w.poll() is None for w in self.workers)

    def run(self, module: str, name: str, *args, **kwargs) -> Any:
        """Run ``module.name(*args, **kwargs)`` on every rank (see :func:`run_job`); rank 0's result."""
        if not self.alive():
            raise WorkerCrashed(self._crash_message())
        use_layout(self.layout)
        try:
            dist.broadcast_object_list([("run", module, name, args, kwargs)], src=0)
            return run_job(module, name, args, kwargs)
        except RuntimeError as error:
            if not self.alive() or "closed by peer" in str(error).lower():
                message = self._crash_message()
                self.close()
                raise WorkerCrashed(message) from error
            raise
        finally:
            use_layout(None)

    def close(self) -> None:
        """Stop the workers and leave the process group (idempotent)."""
        if dist.is_initialized():
            if self.alive():
                try:
                    dist.broadcast_object_list([("stop",)], src=0)
                except RuntimeError:
                    pass
            dist.destroy_process_group()
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._kill()

    def _kill(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    def _crash_message(self) -> str:
        dead = [(rank, w.poll()) for rank, w in enumerate(self.workers, start=1) if w.poll() is not None]
        which = ", ".join(f"rank {rank} (exit code {code})" for rank, code in dead) or "a worker"
        return f"GPUs: worker process {which} ended during the run; the pool was shut down and the next run " \
               "starts new workers"


def serve(rank: int, world: int, port: int, device: str, timeout_s: float) -> None:
    """A worker's life: join the group, run jobs as rank 0 broadcasts them, until told to stop."""
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    layout = make_layout()
    use_layout(layout)
    try:
        while True:
            message = [None]
            dist.broadcast_object_list(message, src=0)
            if message[0][0] == "stop":
                break
            _, module, name, args, kwargs = message[0]
            try:
                run_job(module, name, args, kwargs)
            except InterruptedOnAnotherRank:
                continue
    finally:
        dist.destroy_process_group()
