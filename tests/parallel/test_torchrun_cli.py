"""``torchrun --nproc-per-node 2 animate.py`` (tiny models, CPU, gloo): the latent of one process, one
video written, one rank printing; and the command's bad inputs."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import animate  # noqa: E402

sys.path.pop(0)
ARGS = ["--steps", "2", "--frames", "5", "--seed", "3"]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_two_processes_write_the_one_process_latent_once(tmp_path):
    one = tmp_path / "one.safetensors"
    assert animate.main(["--out", str(tmp_path / "one.mp4"), "--latent-out", str(one), *ARGS]) == 0
    two = tmp_path / "two.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = ["torchrun", "--master-addr", "127.0.0.1", "--master-port", str(port), "--nproc-per-node", "2",
               str(ROOT / "animate.py"), "--out", str(tmp_path / "two.mp4"), "--latent-out", str(two), *ARGS]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as process:  # its own group: a hang is killed whole
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert process.returncode == 0, stderr[-2000:]
    assert stdout.count("saved to") == 1 and (tmp_path / "two.mp4").stat().st_size > 0
    a, b = load_file(str(one))["latent"], load_file(str(two))["latent"]
    assert ((a - b).abs().max() / a.abs().max()).item() < 1e-5


def test_cfg_parallel_alone_says_it_needs_processes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert animate.main(["--out", str(tmp_path / "x.mp4"), "--cfg-parallel", *ARGS]) == 2
    assert "CFG parallel: needs 2 or more processes" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
