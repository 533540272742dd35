"""Schedules and solvers against Wan's FlowUniPC / FlowDPMSolver, step for step.

The fixture comes from tests/fixtures/make_scheduler_parity.py (Wan's own
scheduler classes on a fixed velocity field); this test needs neither Wan nor diffusers.
"""
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from poseanimate.errors import InputError
from poseanimate.sampling.schedulers import SCHEDULER_NAMES, make_scheduler
from poseanimate.sampling.sigmas import euler_schedule, shift_sigmas

STEPS = (1, 2, 4, 7, 10, 20, 40)
SHIFTS = (1.0, 3.0, 5.0, 8.0)
CASES = [(name, key, n, s) for n in STEPS for s in SHIFTS for name, key in (("unipc", "unipc"), ("dpm++", "dpm"))]
PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "scheduler_parity.safetensors"
TOL = 1e-6  # of the latent's scale (max |x|), per step


@pytest.fixture(scope="module")
def ref():
    return load_file(str(PARITY))


def velocity(x, t, offset):
    """The fixture's stand-in model (same formula as make_scheduler_parity.py)."""
    tau = t.to(torch.float32) / 1000.0
    return 0.7 * x + 0.3 * x / (1.0 + x * x) + (0.5 * tau * tau - 0.3 * tau) + offset


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def case_id(case):
    return f"{case[0]}-n{case[2]}-s{case[3]:g}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_schedule_is_wans(ref, case):
    name, key, steps, shift = case
    schedule = make_scheduler(name, steps, shift).schedule
    want_t, want_s = ref[f"{key}_n{steps}_s{shift:g}_timesteps"], ref[f"{key}_n{steps}_s{shift:g}_sigmas"]
    assert schedule.timesteps.dtype == torch.int64 and torch.equal(schedule.timesteps, want_t)
    assert schedule.sigmas.dtype == torch.float32 and torch.equal(schedule.sigmas, want_s)  # bit for bit


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_solver_step_for_step(ref, case):
    """Each step from the reference's own previous latent: isolates one step's arithmetic."""
    name, key, steps, shift = case
    xs = ref[f"{key}_n{steps}_s{shift:g}_xs"]
    scheduler = make_scheduler(name, steps, shift)
    solver = scheduler.solver()
    for i in range(steps):
        v = velocity(xs[i], scheduler.schedule.timesteps[i:i + 1], ref["offset"])
        out = solver.step(v, i, xs[i])
        assert rel_err(out, xs[i + 1]) < TOL, (i, rel_err(out, xs[i + 1]))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_solver_trajectory(ref, case):
    """Free-running from the same noise: float32 rounding on both sides accumulates, still < 1e-6."""
    name, key, steps, shift = case
    xs = ref[f"{key}_n{steps}_s{shift:g}_xs"]
    scheduler = make_scheduler(name, steps, shift)
    solver = scheduler.solver()
    x = ref["noise"].clone()
    for i in range(steps):
        x = solver.step(velocity(x, scheduler.schedule.timesteps[i:i + 1], ref["offset"]), i, x)
        assert rel_err(x, xs[i + 1]) < TOL, (i, rel_err(x, xs[i + 1]))


@pytest.mark.parametrize("name", ["unipc", "dpm++"])
def test_last_step_lands_on_x0_estimate(name):
    """Both Wan solvers drop to first order at the end: the result is exactly x - sigma * v."""
    scheduler = make_scheduler(name, 5, 5.0)
    solver = scheduler.solver()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 2, 3, 3, generator=g)
    for i in range(5):
        v = 0.5 * x + torch.randn(x.shape, generator=g)
        x_prev, x = x, solver.step(v, i, x)
    x0 = x_prev - float(scheduler.schedule.sigmas[4]) * v
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)


def test_euler_schedule_by_hand():
    s = euler_schedule(3, 5.0)
    # s = 1, 2/3, 1/3 -> 5s / (1 + 4s) = 1, 10/11, 5/7, then 0
    want = [1.0, 10 / 11, 5 / 7, 0.0]
    assert s.sigmas.tolist() == pytest.approx(want, abs=1e-7)
    assert s.timesteps.dtype == torch.float32  # DiffSynth feeds float timesteps
    assert s.timesteps.tolist() == pytest.approx([1000.0, 10000 / 11, 5000 / 7], abs=1e-4)


def test_euler_schedule_matches_diffsynth_within_an_ulp():
    """DiffSynth builds the grid in float32 torch: linspace(1, 0, n + 1)[:-1], shifted."""
    for steps, shift in [(10, 5.0), (20, 3.0), (40, 8.0)]:
        grid = torch.linspace(1.0, 0.0, steps + 1)[:-1]
        theirs = shift * grid / (1 + (shift - 1) * grid)
        ours = euler_schedule(steps, shift).sigmas[:-1]
        assert (ours - theirs).abs().max().item() <= 1.2e-7


def test_euler_steps_by_hand():
    steps, shift = 4, 3.0
    scheduler = make_scheduler("euler", steps, shift)
    sig = [shift * s / (1 + (shift - 1) * s) for s in (1.0, 0.75, 0.5, 0.25)] + [0.0]
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 2, 2, 2, 2, generator=g, dtype=torch.float64)
    offset = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    field = lambda x, s: 0.4 * x + s * offset  # noqa: E731

    ours, hand = x0.float(), x0.clone()
    solver = scheduler.solver()
    for i in range(steps):
        ours = solver.step(field(ours, float(scheduler.schedule.sigmas[i])), i, ours)
        hand = hand + field(hand, sig[i]) * (sig[i + 1] - sig[i])
    torch.testing.assert_close(ours.double(), hand, rtol=1e-6, atol=1e-6)
    # a constant velocity carries noise to noise - v over the whole sigma range 1 -> 0
    solver, x = scheduler.solver(), x0.float()
    for i in range(steps):
        x = solver.step(offset.float(), i, x)
    torch.testing.assert_close(x, (x0 - offset).float(), rtol=1e-6, atol=1e-6)


def test_dpm_first_step_is_ddim_from_pure_noise():
    scheduler = make_scheduler("dpm++", 6, 5.0)
    x = torch.randn(1, 1, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    s1 = float(scheduler.schedule.sigmas[1])
    out = scheduler.solver().step(v, 0, x)
    torch.testing.assert_close(out, s1 * x + (1 - s1) * (x - v), rtol=1e-6, atol=1e-6)


def test_shift_formula():
    s = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert shift_sigmas(s, 1.0).tolist() == s.tolist()
    assert shift_sigmas(s, 5.0).tolist() == pytest.approx([0.0, 1.25 / 2, 2.5 / 3, 1.0])


def test_unipc_starts_below_pure_noise():
    """Wan's UniPC inherits sigma_max = float32(0.999) from its 1000-step training grid."""
    sched = make_scheduler("unipc", 10, 1.0).schedule
    assert math.isclose(float(sched.sigmas[0]), 0.999, abs_tol=1e-7)
    assert sched.timesteps[0].item() == 999 and make_scheduler("dpm++", 10, 1.0).schedule.timesteps[0].item() == 1000


def test_solver_refuses_out_of_order_steps():
    solver = make_scheduler("unipc", 4, 5.0).solver()
    x = torch.zeros(1, 1, 1, 1, 1)
    solver.step(x, 0, x)
    with pytest.raises(RuntimeError, match="expected 1"):
        solver.step(x, 2, x)


@pytest.mark.parametrize("kwargs, input_name", [
    (dict(name="ddim", steps=4, shift=5.0), "scheduler"),
    (dict(name="unipc", steps=0, shift=5.0), "steps"),
    (dict(name="unipc", steps=2.5, shift=5.0), "steps"),
    (dict(name="euler", steps=4, shift=0.0), "shift"),
    (dict(name="euler", steps=4, shift=float("nan")), "shift"),
    (dict(name="euler", steps=4, shift=float("inf")), "shift"),
])
def test_bad_settings_name_the_input(kwargs, input_name):
    with pytest.raises(InputError) as err:
        make_scheduler(**kwargs)
    assert err.value.input_name == input_name


def test_scheduler_names():
    assert SCHEDULER_NAMES == ("unipc", "dpm++", "euler", "euler_diffusers", "lightx2v_distill", "lcm_simple",
                               "lcm_beta")
