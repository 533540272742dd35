"""The sampling loop: seeds, guidance passes, progress, interruption.

The loop integrates a plain ``(x, timestep, step) -> velocity`` callable; ``Guidance.bind`` makes one."""
import pytest
import torch

from poseanimate import host
from poseanimate.sampling.guidance import Guidance, cfg
from poseanimate.sampling.loop import make_noise, sample
from poseanimate.sampling.schedulers import make_scheduler

SHAPE = (1, 2, 3, 4, 4)
POS, NEG = torch.tensor(0.5), torch.tensor(-0.2)  # conditioning objects, told apart by identity


class ToyDenoiser:
    """Deterministic stand-in for the DiT that records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, timestep, cond):
        self.calls.append((cond, timestep.clone()))
        tau = timestep.to(x.dtype).view(-1, 1, 1, 1, 1) / 1000.0
        return 0.8 * x + cond * (1.0 - tau)


def no_interrupt():
    pass


def run(seed, scheduler="unipc", steps=6, guidance=None, **kwargs):
    noise = make_noise(SHAPE, seed)
    guidance = guidance or Guidance(positive=torch.tensor(0.5), negative=torch.tensor(-0.2), scale=4.0)
    kwargs.setdefault("check_interrupt", no_interrupt)
    kwargs.setdefault("progress", lambda done, total: None)
    return sample(guidance.bind(ToyDenoiser()), noise, make_scheduler(scheduler, steps, 5.0), **kwargs)


def test_make_noise_is_the_cpu_generators_and_moves():
    want = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(42))
    assert torch.equal(make_noise(SHAPE, 42), want)
    half = make_noise(SHAPE, 42, device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, want.to(torch.bfloat16))
    assert not torch.equal(make_noise(SHAPE, 43), want)
    assert make_noise(SHAPE, 2**64 - 1).shape == SHAPE  # ComfyUI's seed widget goes this far


@pytest.mark.parametrize("scheduler", ["unipc", "dpm++", "euler"])
def test_same_seed_same_latent_bit_for_bit(scheduler):
    a, b = run(7, scheduler), run(7, scheduler)
    assert torch.equal(a, b)
    assert not torch.allclose(a, run(8, scheduler))
    assert torch.isfinite(a).all() and a.dtype == torch.float32


def test_cfg_math():
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    assert torch.equal(cfg(cond, uncond, 1.0), cond)
    assert torch.equal(cfg(cond, uncond, 0.0), uncond)
    assert cfg(cond, uncond, 5.0).tolist() == [0.5 + 5 * 0.5, -1.0 + 5 * 3.0]


def test_guidance_passes_and_mix():
    model = ToyDenoiser()
    x, t = torch.ones(1, 1, 1, 1, 1), torch.tensor([500])
    pos, neg = torch.tensor(0.5), torch.tensor(-0.2)
    out = Guidance(pos, neg, 3.0).velocity(model, x, t, 0)
    assert [c for c, _ in model.calls] == [pos, neg]
    want = cfg(0.8 * x + 0.5 * 0.5, 0.8 * x - 0.2 * 0.5, 3.0)
    torch.testing.assert_close(out, want)


def test_scale_one_skips_the_negative_pass():
    model = ToyDenoiser()
    sched = make_scheduler("dpm++", 5, 5.0)
    sample(Guidance(POS, NEG, 1.0).bind(model), make_noise(SHAPE, 0), sched,
           progress=lambda d, t: None, check_interrupt=no_interrupt)
    assert [c for c, _ in model.calls] == [POS] * 5

    model = ToyDenoiser()
    sample(Guidance(POS, NEG, 2.5).bind(model), make_noise(SHAPE, 0), sched,
           progress=lambda d, t: None, check_interrupt=no_interrupt)
    assert [c for c, _ in model.calls] == [POS, NEG] * 5


def test_scale_can_change_per_step():
    model = ToyDenoiser()
    scale = lambda step, t: 1.0 if step >= 2 else 5.0  # noqa: E731  (e.g. a CFG that stops early)
    sample(Guidance(POS, NEG, scale).bind(model), make_noise(SHAPE, 0), make_scheduler("euler", 4, 5.0),
           progress=lambda d, t: None, check_interrupt=no_interrupt)
    assert [c for c, _ in model.calls] == [POS, NEG, POS, NEG, POS, POS]


def test_model_sees_the_schedules_timesteps_per_batch_item():
    model = ToyDenoiser()
    sched = make_scheduler("unipc", 4, 5.0)
    noise = make_noise((2, 1, 1, 2, 2), 0)
    sample(Guidance(torch.tensor(0.5)).bind(model), noise, sched, progress=lambda d, t: None,
           check_interrupt=no_interrupt)
    seen = torch.stack([t for _, t in model.calls])
    assert seen.dtype == torch.int64 and seen.shape == (4, 2)
    assert torch.equal(seen, sched.schedule.timesteps[:, None].expand(4, 2))


def test_progress_once_per_step_and_callback():
    reports, seen = [], []
    out = run(0, steps=5, progress=lambda done, total: reports.append((done, total)),
              callback=lambda i, x, x0: seen.append((i, x.clone(), x0.clone())))
    assert reports == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert [i for i, _, _ in seen] == [0, 1, 2, 3, 4]
    assert torch.equal(seen[-1][1], out)
    torch.testing.assert_close(seen[-1][2], out)  # UniPC's last step lands on the x0 estimate


def test_interruption_stops_before_the_next_model_call_and_leaves_nothing_behind():
    class Stop(Exception):
        pass

    checks = []

    def interrupt_at_third_step():
        checks.append(len(checks))
        if len(checks) == 3:
            raise Stop

    model = ToyDenoiser()
    noise = make_noise(SHAPE, 5)
    noise_before = noise.clone()
    sched = make_scheduler("unipc", 6, 5.0)
    guidance = Guidance(torch.tensor(0.5), torch.tensor(-0.2), 4.0)
    reports = []
    with pytest.raises(Stop):
        sample(guidance.bind(model), noise, sched, progress=lambda d, t: reports.append(d),
               check_interrupt=interrupt_at_third_step)
    assert len(model.calls) == 4 and reports == [1, 2]  # two full steps (2 passes each), then stop
    assert torch.equal(noise, noise_before)
    # the same scheduler and noise afterwards give exactly an uninterrupted run
    again = sample(guidance.bind(ToyDenoiser()), noise, sched, progress=lambda d, t: None, check_interrupt=no_interrupt)
    assert torch.equal(again, run(5, steps=6))


def test_defaults_use_the_host_seam():
    """Outside ComfyUI: host.request_interrupt stops the loop, and the flag is cleared after."""
    host.request_interrupt()
    with pytest.raises(host.Interrupted):
        sample(Guidance(torch.tensor(0.5)).bind(ToyDenoiser()), make_noise(SHAPE, 0), make_scheduler("euler", 3, 5.0))
    out = sample(Guidance(torch.tensor(0.5)).bind(ToyDenoiser()), make_noise(SHAPE, 0), make_scheduler("euler", 3, 5.0))
    assert torch.isfinite(out).all()


def test_loop_takes_any_velocity_callable():
    """No guidance object needed: the loop calls ``(x, timestep, step)`` once per step, in order."""
    seen = []

    def velocity(x, timestep, step):
        seen.append((step, int(timestep[0])))
        return 0.5 * x

    sched = make_scheduler("euler", 4, 5.0)
    out = sample(velocity, make_noise(SHAPE, 0), sched, progress=lambda d, t: None, check_interrupt=no_interrupt)
    assert seen == [(i, int(t)) for i, t in enumerate(sched.schedule.timesteps)]
    x = make_noise(SHAPE, 0)
    for i in range(4):  # Euler by hand: x += (sigma_next - sigma) * v
        x = x + (float(sched.schedule.sigmas[i + 1]) - float(sched.schedule.sigmas[i])) * (0.5 * x)
    torch.testing.assert_close(out, x)
