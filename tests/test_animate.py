"""The main job end to end on tiny random-weight models: real loaders, LoRA, sampler; same seed, same latent."""
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import animate  # noqa: E402

sys.path.pop(0)


def run(tmp_path, name, *extra):
    out = tmp_path / name
    assert animate.main(["--out", str(out), "--steps", "3", *extra]) == 0
    return load_file(str(out))["latent"]


def test_same_seed_bit_identical_and_seeds_differ(tmp_path, capsys):
    a = run(tmp_path, "a.safetensors", "--seed", "7")
    b = run(tmp_path, "b.safetensors", "--seed", "7")
    c = run(tmp_path, "c.safetensors", "--seed", "8")
    assert a.shape == (1, 16, 3, 8, 12)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert "TINY RANDOM-WEIGHT" in capsys.readouterr().out


@pytest.mark.parametrize("sampler", ["euler", "dpm++"])
def test_every_sampler_runs_the_tiny_model(tmp_path, sampler):
    latent = run(tmp_path, f"{sampler}.safetensors", "--sampler", sampler, "--frames", "5")
    assert latent.shape == (1, 16, 2, 8, 12) and torch.isfinite(latent).all()


def test_bad_frame_count_names_the_nearest_valid_one(tmp_path, capsys):
    assert animate.main(["--out", str(tmp_path / "x.safetensors"), "--frames", "10"]) == 2
    err = capsys.readouterr().err
    assert "--frames" in err and "9" in err
    assert not (tmp_path / "x.safetensors").exists()
