"""Step-cache policies (sampling/step_cache.py) behind the DiT's block-run hook."""
import json
import math
from pathlib import Path

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import DiTExtensions, ExtraTokens, WanDiT
from poseanimate.sampling.conditioning import VideoGeometry
from poseanimate.sampling.schedulers import make_scheduler
from poseanimate.sampling.step_cache import (CACHE_NAMES, TEACACHE_COEFFICIENTS, EasyCache, MagCache, StepCache,
                                             TeaCache, _State, make_step_cache)
from poseanimate.sampling.video import WindowSettings, sample_video
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict

from .test_video_sampler import ToyConditioning, quiet

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "step_cache_parity.json"
POLICIES = [name for name in CACHE_NAMES if name != "none"]


@pytest.fixture(scope="module")
def dit():
    state = tiny_wan_state_dict("t2v", seed=3)
    model = WanDiT(infer_config(state, num_heads=2))
    model.load_state_dict(state)
    return model.eval()


class Keys(StepCache):
    """Records the state key and step of every forward; never caches."""

    name = "keys"

    def __init__(self):
        super().__init__(0.0)
        self.seen = []

    def decide(self, state, stack, tokens, step, steps, in_bounds):
        self.seen.append((self._key, step, steps))
        return False


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("windowed", [False, True])
def test_zero_threshold_equals_uncached_exactly(dit, name, windowed):
    geometry = VideoGeometry(6 if windowed else 3, 4, 4)
    windows = WindowSettings(4, 2, "uniform") if windowed else None
    scheduler = make_scheduler("euler", 8, 5.0)
    plain = sample_video(dit, ToyConditioning(geometry), scheduler, 2.0, 7, windows, **quiet())
    cache = make_step_cache(name, 0.0, start=0)
    cached = sample_video(dit, ToyConditioning(geometry), scheduler, 2.0, 7, windows, cache=cache, **quiet())
    assert torch.equal(plain, cached)
    assert cache.skipped == 0 and cache.skipped_blocks == 0 and cache.computed > 0


@pytest.mark.parametrize("name", POLICIES)
def test_a_high_threshold_skips_and_reports_block_passes(dit, name):
    scheduler = make_scheduler("euler", 10, 5.0)
    cache = make_step_cache(name, 1.0, start=1)
    plain = sample_video(dit, ToyConditioning(VideoGeometry(3, 4, 4)), scheduler, 2.0, 7, **quiet())
    out = sample_video(dit, ToyConditioning(VideoGeometry(3, 4, 4)), scheduler, 2.0, 7, cache=cache, **quiet())
    assert cache.skipped > 0 and cache.skipped_blocks == cache.skipped * len(dit.blocks)
    assert cache.computed + cache.skipped == 20 and cache.total_blocks == 20 * len(dit.blocks)
    assert f"{cache.skipped_blocks} of {cache.total_blocks} block passes skipped" in cache.report()
    assert torch.isfinite(out).all() and not torch.equal(out, plain)


def test_state_is_keyed_by_branch_and_window_and_reset_per_call(dit):
    keys = Keys()
    scheduler = make_scheduler("euler", 2, 5.0)
    sample_video(dit, ToyConditioning(VideoGeometry(6, 4, 4)), scheduler, 2.0, 7, WindowSettings(4, 2, "uniform"),
                 cache=keys, **quiet())
    windows = {key[1] for key, _, _ in keys.seen}
    assert len(windows) > 1 and None not in windows
    assert {key for key, _, _ in keys.seen} == {(p, w) for p in (True, False) for w in windows}
    assert {(step, steps) for _, step, steps in keys.seen} == {(0, 2), (1, 2)}
    assert set(keys._states) == {(p, w) for p in (True, False) for w in windows}
    sample_video(dit, ToyConditioning(VideoGeometry(3, 4, 4)), scheduler, 1.0, 7, cache=keys, **quiet())
    assert set(keys._states) == {(True, None)}  # reset: nothing from the windowed run survives


def test_no_residual_crosses_a_branch(dit):
    """A cached call adds the residual of its own branch's last computed call, never the other branch's."""
    cache = MagCache(1.0, start=1)
    applied = []
    original = cache.decide

    def decide(state, stack, tokens, step, steps, in_bounds):
        skip = original(state, stack, tokens, step, steps, in_bounds)
        if skip:
            applied.append((cache._key, state.residual, {k: v.residual for k, v in cache._states.items()}))
        return skip
    cache.decide = decide
    sample_video(dit, ToyConditioning(VideoGeometry(3, 4, 4)), make_scheduler("euler", 4, 5.0), 2.0, 7,
                 cache=cache, **quiet())
    assert cache.skipped > 0
    for key, residual, residuals in applied:
        other = residuals[(not key[0], key[1])]
        assert residual is residuals[key] and not torch.allclose(residual, other)


def test_cached_steps_keep_added_and_extra_tokens_and_skip_adapters(dit):
    """On a cached call the stack input still carries this step's added tokens and extra tokens (so the
    output moves with them); the block adapters run only on computed calls."""
    events = []

    def adapter(tokens, ctx):
        events.append(ctx.block_index)
        return tokens + 0.01 * tokens[:, :1]

    x = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    context = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(2))
    positions = torch.tensor([[5, 0, 0], [5, 0, 1]])

    def run(added_scale):
        cache = MagCache(1.0, start=1)
        inputs = []
        original = cache.decide

        def decide(state, stack, tokens, step, steps, in_bounds):
            inputs.append(tokens.clone())
            return original(state, stack, tokens, step, steps, in_bounds)
        cache.decide = decide
        outs = []
        for step, t in enumerate((900.0, 880.0)):
            added = added_scale * (step + 1) * torch.ones(1, 12, 64)
            extra = ExtraTokens(torch.full((1, 2, 64), 0.5 * (step + 1)), positions)
            ext = DiTExtensions(added_tokens=[added], extra_tokens=[extra], block_adapters={1: [adapter]})
            cache.begin((True, None), step, 2)
            outs.append(dit(x, torch.tensor([t]), context, ext=ext, runner=cache))
        return cache, inputs, outs

    events.clear()
    cache, inputs, outs = run(0.1)
    assert (cache.computed, cache.skipped) == (1, 1)
    assert events == [1]  # the adapter ran with the computed call only
    assert torch.equal(inputs[1][:, 12:], torch.full((1, 2, 64), 1.0))  # this step's extra tokens
    _, inputs_b, outs_b = run(0.3)
    assert not torch.allclose(inputs[1][:, :12], inputs_b[1][:, :12])  # this step's added tokens reach it
    assert not torch.allclose(outs[1], outs_b[1])
    assert outs[1].shape == x.shape


@pytest.mark.parametrize("value", [float("nan"), -0.1, 1.5, float("inf")])
@pytest.mark.parametrize("name", ["teacache", "magcache"])
def test_bad_threshold_is_refused_naming_the_input(name, value):
    with pytest.raises(InputError, match="cache_threshold"):
        make_step_cache(name, value)


def test_bad_names_and_bounds():
    with pytest.raises(InputError, match="cache"):
        make_step_cache("fastcache")
    with pytest.raises(InputError, match="cache_start"):
        make_step_cache("teacache", 0.1, start=-1)
    with pytest.raises(InputError, match="cache_preset"):
        TeaCache(0.1, preset="wan9")
    with pytest.raises(InputError, match="cache_threshold"):
        EasyCache(float("nan"))
    assert make_step_cache("none") is None


def test_teacache_default_bounds_follow_the_reference():
    ret, plain = TeaCache(0.2), TeaCache(0.2, use_ret_steps=False)
    assert [ret.in_bounds(s, 10) for s in range(10)] == [s >= 5 for s in range(10)]
    assert [plain.in_bounds(s, 10) for s in range(10)] == [1 <= s < 9 for s in range(10)]


def _teacache_decisions(case, sequences):
    cache = TeaCache(case["threshold"], preset=case["preset"], use_ret_steps=case["use_ret_steps"])
    states = {}
    decisions = []
    coefficients = TEACACHE_COEFFICIENTS[case["preset"] + ("_ret" if case["use_ret_steps"] else "")]
    steps = case["steps"]
    calls = [m for m in sequences[case["sequence"]] for _ in range(2)]  # positive, negative per step
    for call, modulated in enumerate(calls):
        step, odd = divmod(call, 2)
        state = states.setdefault(odd, _State())
        modulated = torch.tensor(modulated, dtype=torch.float32)
        previous = state.extra.get("previous")
        state.extra["previous"] = modulated
        distance = None if previous is None else (
            ((modulated - previous).abs().mean() / previous.abs().mean()).item())
        decisions.append(not cache.decide_distance(state, distance, cache.in_bounds(step, steps), coefficients))
    return decisions


def test_teacache_decisions_equal_the_reference():
    fixture = json.loads(FIXTURE.read_text())
    cases = fixture["teacache"]
    assert any(0 < sum(c["should_calc"]) < len(c["should_calc"]) - 4 for c in cases)  # mixed decisions
    for case in cases:
        assert _teacache_decisions(case, fixture["sequences"]) == case["should_calc"], (case["preset"],
                                                                                        case["threshold"])


def test_magcache_decisions_equal_the_reference():
    cases = json.loads(FIXTURE.read_text())["magcache"]
    assert any(sum(c["skip"]) for c in cases)
    for case in cases:
        cache = MagCache(case["threshold"], preset=case["preset"], k=case["k"],
                         retention_ratio=case["retention_ratio"])
        states = {True: _State(), False: _State()}
        steps = case["steps"]
        got = []
        for call in range(2 * steps):
            step, odd = divmod(call, 2)
            positive = not odd
            ratio = float(cache.ratios(case["preset"], positive, steps)[step])
            in_bounds = step >= cache.first_step(positive, steps)
            got.append(cache.decide_ratio(states[positive], ratio, in_bounds))
        assert got == case["skip"], (case["preset"], case["threshold"], steps)


def test_magcache_first_step_matches_interleaved_calls():
    cache = MagCache(0.1)
    for steps in (4, 7, 25, 40, 50):
        first_call = int(2 * steps * 0.2)
        for positive in (True, False):
            first = cache.first_step(positive, steps)
            assert 2 * first + (0 if positive else 1) >= first_call
            assert first == 0 or 2 * (first - 1) + (0 if positive else 1) < first_call
    assert math.isclose(MagCache(0.12).threshold, 0.12)
