"""Few-step distilled sampling: LightX2V's step-distill scheduler and ComfyUI's ``lcm`` sampler with its
``simple`` / ``beta`` schedules, against tests/fixtures/distill_parity.safetensors
(written by tests/fixtures/make_distill_parity.py from the reference code)."""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file


from poseanimate.errors import InputError
from poseanimate.sampling.loop import sample
from poseanimate.sampling.schedulers import (DEFAULT_STEP_LIST, SCHEDULER_NAMES, make_scheduler, parse_step_list)
from poseanimate.sampling.sigmas import _beta_ppf

PATH = Path(__file__).resolve().parents[1] / "fixtures" / "distill_parity.safetensors"
FIX = load_file(str(PATH))
with safe_open(str(PATH), "pt") as f:
    META = json.loads(f.metadata()["cases"])
SHAPE = tuple(META["shape"])
TOL = 1e-6


def velocity_field():
    g = torch.Generator().manual_seed(7)
    a = -0.5 + 0.3 * torch.rand(SHAPE, generator=g)
    b = torch.randn(SHAPE, generator=g)
    c = 0.1 * torch.randn(SHAPE, generator=g)
    return lambda x, t, step: a * x + b * (t.reshape(-1, 1, 1, 1, 1) / 1000.0) + c


def run(scheduler, seed=None):
    field = velocity_field()
    seen, states = [], []

    def velocity(x, t, step):
        seen.append(t.clone())
        return field(x, t, step)
    out = sample(velocity, FIX["start"].clone(), scheduler, progress=lambda *a: None,
                 check_interrupt=lambda: None, callback=lambda i, x, x0: states.append(x.clone()),
                 noise_seed=seed)
    assert torch.equal(out, states[-1])
    return torch.cat(seen), torch.stack(states)


def close(ours, ref):
    assert ours.shape == ref.shape
    assert (ours.double() - ref.double()).abs().max().item() <= TOL


@pytest.mark.parametrize("case", range(len(META["lightx2v"])))
def test_lightx2v_distill_equals_reference(case):
    steps, shift = META["lightx2v"][case]
    scheduler = make_scheduler("lightx2v_distill", 1, shift, ", ".join(map(str, steps)))
    close(scheduler.schedule.sigmas, FIX[f"lightx2v{case}.sigmas"])
    close(scheduler.schedule.timesteps, FIX[f"lightx2v{case}.timesteps"])
    assert scheduler.steps == len(steps)
    timesteps, states = run(scheduler)
    close(timesteps, FIX[f"lightx2v{case}.timesteps"])
    close(states, FIX[f"lightx2v{case}.states"])


@pytest.mark.parametrize("case", range(len(META["comfy"])))
def test_lcm_equals_comfyui(case):
    name, steps, shift = META["comfy"][case]
    scheduler = make_scheduler(f"lcm_{name}", steps, shift)
    close(scheduler.schedule.sigmas, FIX[f"comfy{case}.sigmas"])
    close(scheduler.schedule.timesteps, FIX[f"comfy{case}.timesteps"])
    timesteps, states = run(scheduler, seed=META["seed"])
    close(timesteps, FIX[f"comfy{case}.timesteps"])
    close(states, FIX[f"comfy{case}.states"])


def test_comfy_schedule_tables():
    steps_range, cases = META["table"]
    for name, shift in cases:
        for steps in steps_range:
            ours = make_scheduler(f"lcm_{name}", steps, shift).schedule.sigmas
            close(ours, FIX[f"table.{name}.{steps}.{shift}"])


def test_beta_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for q in [0.0, 1e-6, 0.01, 0.1, 0.25, 0.5, 0.7, 0.9, 0.999, 1.0]:
        assert abs(_beta_ppf(q, 0.6, 0.6) - float(stats.beta.ppf(q, 0.6, 0.6))) < 1e-12


def test_distill_names_and_default_step_list():
    assert {"lightx2v_distill", "lcm_simple", "lcm_beta"} <= set(SCHEDULER_NAMES)
    assert parse_step_list(DEFAULT_STEP_LIST) == (1000, 750, 500, 250)
    assert parse_step_list("") == (1000, 750, 500, 250)
    assert parse_step_list(" 1000,500 ; 250 ") == (1000, 500, 250)
    assert parse_step_list([1000, 600.0]) == (1000, 600)
    assert make_scheduler("lightx2v_distill", 50, 5.0, None).steps == 4


@pytest.mark.parametrize("text,words", [
    ("1000, 500, 750", "not decreasing"), ("1000, 1000", "not decreasing"), ("1200, 500", "outside 0..1000"),
    ("1000, -5", "outside 0..1000"), ("1000, nan", "NaN"), ("1000, abc", "not a number"),
    ("1000,,500", "empty entry"), ("1000, 500.5", "whole"), ("1000, 0", "implied")])
def test_bad_step_lists(text, words):
    with pytest.raises(InputError) as err:
        make_scheduler("lightx2v_distill", 4, 5.0, text)
    assert "step_list" in str(err.value) and words in str(err.value)


def test_lcm_noise_follows_the_seed():
    a = run(make_scheduler("lcm_simple", 4, 5.0), seed=3)[1]
    b = run(make_scheduler("lcm_simple", 4, 5.0), seed=3)[1]
    c = run(make_scheduler("lcm_simple", 4, 5.0), seed=4)[1]
    assert torch.equal(a, b) and not torch.equal(a[0], c[0])
    assert torch.equal(a[-1] - a[-1], torch.zeros_like(a[-1]))


def test_distill_equals_euler_update_up_to_rounding():
    """LightX2V's update is an Euler step written as x0 + v * sigma_next: same path within float32 rounding."""
    from poseanimate.sampling.schedulers import Scheduler
    distill = make_scheduler("lightx2v_distill", 1, 5.0, "1000, 750, 500, 250")
    euler = Scheduler("euler", distill.schedule)
    close(run(distill)[1], run(euler)[1])
