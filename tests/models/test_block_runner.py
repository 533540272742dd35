"""The DiT's block-run hook: one runner per forward decides how the block stack runs.

A stub step cache (compute the blocks on every other call, otherwise reuse the residual
``x_out - x_in`` of the last computed call) shows that a runner can skip the blocks while
the method extensions stay where they are: added tokens and extra tokens are in the stack's
input on every call, adapters run with their blocks, and the output always has the video's shape.
"""
from __future__ import annotations

import pytest
import torch

from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import BlockStack, DiTExtensions, ExtraTokens, WanDiT, plain_blocks

DIM = 64
LATENT = (1, 16, 3, 4, 6)
N_VIDEO = 3 * 2 * 3


class EveryOtherStep:
    """A stub step-cache policy: calls 0, 2, 4, ... run the blocks; calls 1, 3, ... return
    ``tokens + (x_out - x_in)`` of the last computed call."""

    def __init__(self):
        self.calls = 0
        self.residual: torch.Tensor | None = None
        self.log: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (what, stack input, stack output)

    def __call__(self, stack: BlockStack, tokens: torch.Tensor) -> torch.Tensor:
        skip = self.calls % 2 == 1 and self.residual is not None
        self.calls += 1
        if skip:
            out = tokens + self.residual
            self.log.append(("skipped", tokens, out))
            return out
        out = stack.run(tokens)
        self.residual = out - tokens
        self.log.append(("computed", tokens, out))
        return out


class Recorder:
    """The plain runner, remembering the stack's input and output."""

    def __init__(self):
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, stack: BlockStack, tokens: torch.Tensor) -> torch.Tensor:
        out = plain_blocks(stack, tokens)
        self.seen.append((tokens, out))
        return out


@pytest.fixture(scope="module")
def model():
    state = tiny_wan_state_dict("t2v", seed=5)
    dit = WanDiT(infer_config(state, num_heads=2))
    dit.load_state_dict(state)
    return dit.eval()


def step_inputs(step: int):
    """Inputs of one sampling step: a new latent and timestep, and extensions that change per step."""
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(LATENT, generator=g)
    t = torch.tensor([900.0 - 300 * step])
    context = torch.randn(1, 5, 32, generator=g)
    added = 0.1 * torch.randn(1, N_VIDEO, DIM, generator=g)
    extra = ExtraTokens(torch.randn(1, 4, DIM, generator=g), torch.tensor([[5, 0, 0], [5, 0, 1], [5, 1, 0], [5, 1, 1]]))
    return x, t, context, added, extra


def extensions(added, extra, events):
    def adapter(tokens, ctx):
        events.append(ctx.block_index)
        return tokens + 0.01 * tokens[:, :1]
    return DiTExtensions(added_tokens=[added], extra_tokens=[extra], block_adapters={1: [adapter]})


@torch.no_grad()
def test_default_runner_is_plain_and_a_runner_can_be_set(model):
    x, t, context, added, extra = step_inputs(0)
    plain = model(x, t, context, ext=extensions(added, extra, []))
    assert model.block_runner is plain_blocks
    recorder = Recorder()
    model.set_block_runner(recorder)
    try:
        assert torch.equal(model(x, t, context, ext=extensions(added, extra, [])), plain)
    finally:
        model.set_block_runner(None)
    assert model.block_runner is plain_blocks and len(recorder.seen) == 1
    tokens_in, tokens_out = recorder.seen[0]
    assert tokens_in.shape == tokens_out.shape == (1, N_VIDEO + 4, DIM)  # video tokens, then the extra tokens


@torch.no_grad()
def test_step_cache_skips_blocks_and_keeps_the_extensions(model):
    cache = EveryOtherStep()
    blocks_run, adapters_run = [], []
    for step in range(4):
        x, t, context, added, extra = step_inputs(step)
        recorder = Recorder()
        plain = model(x, t, context, ext=extensions(added, extra, []), runner=recorder)
        cached = model(x, t, context, ext=extensions(added, extra, adapters_run), runner=cache,
                       on_block=blocks_run.append)
        what, tokens_in, tokens_out = cache.log[-1]
        assert cached.shape == x.shape == plain.shape  # extra tokens dropped before the head, skipped or not
        # the stack's input is this step's: patch embedding + this step's added tokens, then its extra tokens
        assert torch.equal(tokens_in, recorder.seen[0][0])
        assert torch.equal(tokens_in[:, N_VIDEO:], extra.tokens)
        if step % 2 == 0:
            assert what == "computed" and torch.equal(cached, plain)
        else:
            assert what == "skipped"
            assert torch.equal(tokens_out, tokens_in + cache.residual)
            # the head sees exactly x_in + cached residual: the same as a forward whose runner returns that
            residual = cache.residual
            want = model(x, t, context, ext=extensions(added, extra, []),
                         runner=lambda stack, tokens: tokens + residual)
            assert torch.equal(cached, want)
            assert not torch.allclose(cached, plain)  # a cache approximates; it is not the plain forward
    assert blocks_run == [0, 1, 0, 1]  # blocks (and on_block) only on the computed steps
    assert adapters_run == [1, 1]  # the face-block-like adapter ran with its block, on computed steps only
    assert [what for what, _, _ in cache.log] == ["computed", "skipped"] * 2


@torch.no_grad()
def test_a_skipped_call_with_unchanged_inputs_reproduces_the_computed_one(model):
    x, t, context, added, extra = step_inputs(0)
    cache = EveryOtherStep()
    first = model(x, t, context, ext=extensions(added, extra, []), runner=cache)
    second = model(x, t, context, ext=extensions(added, extra, []), runner=cache)
    assert [what for what, _, _ in cache.log] == ["computed", "skipped"]
    torch.testing.assert_close(second, first, rtol=1e-6, atol=1e-6)  # x_in + (x_out - x_in) == x_out up to rounding


@torch.no_grad()
def test_a_runner_can_run_the_blocks_its_own_way(model):
    """E.g. streamed or sharded: block by block through run_block, or in ranges, the same result."""
    x, t, context, added, extra = step_inputs(1)
    plain = model(x, t, context, ext=extensions(added, extra, []))

    def in_two_halves(stack, tokens):
        half = len(stack) // 2
        return stack.run(stack.run(tokens, 0, half), half)

    def one_by_one(stack, tokens):
        for index in range(len(stack)):
            tokens = stack.run_block(index, tokens)
        return tokens

    for runner in (in_two_halves, one_by_one):
        assert torch.equal(model(x, t, context, ext=extensions(added, extra, []), runner=runner), plain)


def test_the_sampler_runs_through_the_models_runner(model):
    """A step cache set on the model is what sample_video's forwards use: blocks on every other step."""
    from poseanimate.sampling.conditioning import VideoGeometry
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.video import sample_video
    from poseanimate.sampling.wan_denoiser import WanCond

    class Cond:
        geometry = VideoGeometry(3, 4, 6)

        def branch(self, positive, step, steps, window=None):
            return WanCond(context=torch.ones(1, 2, 32))

        def clear_cache(self):
            pass

    cache, blocks = EveryOtherStep(), []
    model.set_block_runner(cache)
    try:
        out = sample_video(model, Cond(), make_scheduler("euler", 4, 5.0), 1.0, seed=0,
                           progress=lambda d, t: None, check_interrupt=lambda: blocks.append(1))
    finally:
        model.set_block_runner(None)
    assert [what for what, _, _ in cache.log] == ["computed", "skipped"] * 2
    assert len(blocks) == 4 + 2 * 2  # an interrupt check per step, and per block on the two computed steps
    assert out.shape == LATENT and torch.isfinite(out).all()
