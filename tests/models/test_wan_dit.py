"""WanDiT against the official Wan model (committed fixtures), and its extension points.

The fixtures come from tests/fixtures/make_wan_dit_parity.py (official
wan.modules.model, float32, tiny random configs); these tests need neither
the reference code nor a GPU.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from poseanimate.errors import InputError
from poseanimate.models.ops import CastOps
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import AdapterContext, DiTExtensions, ExtensionError, ExtraTokens, WanDiT
from poseanimate.models.wan.rope import grid_positions

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "wan_dit_parity.safetensors"
CASES = [("t2v", 1), ("t2v", 3), ("i2v", 1), ("i2v", 3), ("flf2v", 2), ("i2v22", 3)]


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(PARITY), "pt") as f:
        metadata = f.metadata()
    return load_file(str(PARITY)), metadata


def state_dict(fixture, case: str) -> dict[str, torch.Tensor]:
    tensors, _ = fixture
    prefix = f"{case}/sd/"
    return {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}


def build(fixture, case: str, **kwargs) -> WanDiT:
    """The fixture's model the way the checkpoint loader builds it: on meta, then assigned."""
    sd = state_dict(fixture, case)
    config = infer_config(sd, num_heads=int(fixture[1][f"{case}.num_heads"]))
    model = WanDiT(config, device="meta", **kwargs)
    model.load_state_dict(sd, strict=True, assign=True)
    return model


def inputs(fixture, case: str, frames: int) -> dict[str, torch.Tensor]:
    tensors, _ = fixture
    prefix = f"{case}/f{frames}/"
    names = ("x", "t", "context", "clip_fea", "y")
    return {n: tensors[prefix + n] for n in names if prefix + n in tensors}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def t2v(fixture):
    return build(fixture, "t2v").eval()


@pytest.fixture(scope="module")
def t2v_inputs(fixture):
    return inputs(fixture, "t2v", 3)


@pytest.fixture(scope="module")
def t2v_base(t2v, t2v_inputs):
    with torch.no_grad():
        return t2v(**t2v_inputs)


def run(model, ext=None, **kw):
    with torch.no_grad():
        return model(ext=ext, **kw)


# ------------------------------------------------------------------ parity with the official model
@pytest.mark.parametrize("case,frames", CASES)
def test_matches_official_model(fixture, case, frames):
    model = build(fixture, case)
    out = run(model, **inputs(fixture, case, frames))
    ref = fixture[0][f"{case}/f{frames}/out"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    error = relative_error(out, ref)
    print(f"{case} f{frames}: max relative error {error:.2e}")  # ~5e-7 on CPU
    assert error < 1e-5


def test_config_kinds_from_fixture_weights(fixture):
    kinds = {case: build(fixture, case).config for case in ("t2v", "i2v", "flf2v", "i2v22")}
    assert [kinds[c].kind for c in ("t2v", "i2v", "flf2v", "i2v22")] == ["t2v", "i2v", "flf2v", "i2v"]
    assert kinds["i2v"].image_embed_dim == 64 and kinds["i2v22"].image_embed_dim is None


def test_state_dict_keys_are_exactly_official(fixture):
    for case in ("t2v", "i2v", "flf2v", "i2v22"):
        sd = state_dict(fixture, case)
        model = WanDiT(infer_config(sd, num_heads=2))  # built for real: no rope table or buffer appears
        assert set(model.state_dict()) == set(sd)
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
        assert not list(model.buffers())


def test_per_token_timesteps_equal_per_sample(t2v, t2v_inputs, t2v_base):
    per_token = t2v_inputs["t"][:, None].expand(-1, 36)
    out = run(t2v, **dict(t2v_inputs, t=per_token))
    assert relative_error(out, t2v_base) < 1e-6


def test_shorter_context_is_zero_padded(t2v, t2v_inputs, t2v_base):
    context = torch.cat([t2v_inputs["context"], torch.zeros(2, 20, 64)], dim=1)
    assert torch.equal(run(t2v, **dict(t2v_inputs, context=context)), t2v_base)


def test_chunked_attention_equals_unchunked(fixture, t2v_inputs, t2v_base):
    model = build(fixture, "t2v")
    model.set_attention("sdpa", chunk_size=5)
    assert relative_error(run(model, **t2v_inputs), t2v_base) < 1e-6


# ------------------------------------------------------------------ precision plumbing
class _StrictLinear(nn.Linear):
    """Like comfy's ops when no cast is needed: input dtype must equal the weight's."""

    def forward(self, x):
        assert x.dtype == self.weight.dtype, (x.dtype, self.weight.dtype)
        return super().forward(x)


class _StrictConv3d(nn.Conv3d):
    def forward(self, x):
        assert x.dtype == self.weight.dtype, (x.dtype, self.weight.dtype)
        return super().forward(x)


class _StrictLayerNorm(nn.LayerNorm):
    def forward(self, x):
        assert self.weight is None or x.dtype == self.weight.dtype, (x.dtype, self.weight.dtype)
        return super().forward(x)


class StrictOps:
    Linear, Conv3d, LayerNorm = _StrictLinear, _StrictConv3d, _StrictLayerNorm


def test_bf16_weights_with_non_casting_ops(fixture):
    sd = {k: v.to(torch.bfloat16) for k, v in state_dict(fixture, "i2v").items()}
    model = WanDiT(infer_config(sd, num_heads=2), operations=StrictOps, device="meta", dtype=torch.bfloat16)
    model.load_state_dict(sd, strict=True, assign=True)
    assert model.compute_dtype == torch.bfloat16
    out = run(model, **inputs(fixture, "i2v", 3))
    assert out.dtype == torch.float32
    assert relative_error(out, fixture[0]["i2v/f3/out"]) < 2e-2  # ~4e-3


# ------------------------------------------------------------------ extension points
def test_zero_added_tokens_change_nothing(t2v, t2v_inputs, t2v_base):
    out = run(t2v, DiTExtensions(added_tokens=[torch.zeros(2, 36, 128), torch.zeros(1, 1, 128)]), **t2v_inputs)
    assert torch.equal(out, t2v_base)


def test_added_constant_equals_patch_embedding_bias(fixture, t2v, t2v_inputs, t2v_base):
    shift = 0.3 * torch.randn(128, generator=torch.Generator().manual_seed(1))
    out = run(t2v, DiTExtensions(added_tokens=[shift]), **t2v_inputs)
    sd = state_dict(fixture, "t2v")
    sd["patch_embedding.bias"] = sd["patch_embedding.bias"] + shift
    shifted = WanDiT(t2v.config)
    shifted.load_state_dict(sd)
    assert relative_error(out, t2v_base) > 1e-2
    assert relative_error(out, run(shifted, **t2v_inputs)) < 1e-6


def test_added_tokens_equal_embedding_a_changed_latent(t2v, t2v_inputs):
    x = t2v_inputs["x"]
    dx = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        embed = lambda v: t2v.patch_embedding(v).flatten(2).transpose(1, 2)  # noqa: E731
        added = embed(x + dx) - embed(x)
    out = run(t2v, DiTExtensions(added_tokens=[added]), **t2v_inputs)
    assert relative_error(out, run(t2v, **dict(t2v_inputs, x=x + dx))) < 1e-5


def test_latent_tokens_see_the_noisy_latent_and_equal_added_tokens(t2v, t2v_inputs):
    """A latent_tokens callable gets ``x`` itself (before any ``y``) and adds like added_tokens."""
    seen = []
    x = t2v_inputs["x"]
    shift = 0.3 * torch.randn(1, 1, 128, generator=torch.Generator().manual_seed(5))

    def tokens(latent):
        seen.append(latent)
        return shift * latent.mean()

    out = run(t2v, DiTExtensions(latent_tokens=[tokens]), **t2v_inputs)
    assert seen[0] is x
    assert torch.equal(out, run(t2v, DiTExtensions(added_tokens=[shift * x.mean()]), **t2v_inputs))
    with pytest.raises(ExtensionError, match=r"added tokens 0 have shape \(2, 35, 128\)"):
        run(t2v, DiTExtensions(latent_tokens=[lambda latent: torch.zeros(2, 35, 128)]), **t2v_inputs)


def test_image_features_are_embedded_and_summed_with_the_clip_tokens(fixture):
    """img_emb(a) + img_emb(b) (SteadyDancer's reference and first pose frame): the same as adding the second
    embedding by hand through the image tokens the blocks read."""
    model = build(fixture, "i2v").eval()
    good = inputs(fixture, "i2v", 1)
    other = torch.randn(good["clip_fea"].shape, generator=torch.Generator().manual_seed(6))
    seen = []
    runner = lambda stack, tokens: (seen.append(stack.image), stack.run(tokens))[1]  # noqa: E731
    with torch.no_grad():
        model(**good, ext=DiTExtensions(image_features=[other]), runner=runner)
        expected = model.img_emb(good["clip_fea"]) + model.img_emb(other)
    assert torch.equal(seen[0], expected)
    with pytest.raises(ExtensionError, match="image features have shape"):
        run(model, DiTExtensions(image_features=[other[:, :5]]), **good)


def _video_tokens(model, x):
    with torch.no_grad():
        return model.patch_embedding(x).flatten(2).transpose(1, 2)


def test_extra_tokens_attend_and_are_dropped(t2v, t2v_inputs, t2v_base):
    gen = torch.Generator().manual_seed(3)
    positions = torch.tensor([[10, 4 + i, i % 3] for i in range(5)])
    first = run(t2v, DiTExtensions(extra_tokens=[ExtraTokens(torch.randn(2, 5, 128, generator=gen), positions)]),
                **t2v_inputs)
    second = run(t2v, DiTExtensions(extra_tokens=[ExtraTokens(torch.randn(1, 5, 128, generator=gen), positions)]),
                 **t2v_inputs)
    assert first.shape == t2v_base.shape
    assert relative_error(first, t2v_base) > 1e-3 and relative_error(first, second) > 1e-3


def test_extra_tokens_duplicating_the_video_change_nothing(t2v, t2v_inputs, t2v_base):
    """A copy of every video token at the same position adds each key twice: softmax weights halve, output stays."""
    copy = ExtraTokens(_video_tokens(t2v, t2v_inputs["x"]), grid_positions(3, 4, 3))
    out = run(t2v, DiTExtensions(extra_tokens=[copy]), **t2v_inputs)
    assert relative_error(out, t2v_base) < 1e-5
    shifted = ExtraTokens(copy.tokens, copy.positions + torch.tensor([0, 1, 0]))
    assert relative_error(run(t2v, DiTExtensions(extra_tokens=[shifted]), **t2v_inputs), t2v_base) > 1e-3


def test_extra_tokens_timestep(t2v, t2v_inputs, t2v_base):
    tokens = _video_tokens(t2v, t2v_inputs["x"])
    same_t = ExtraTokens(tokens, grid_positions(3, 4, 3), t=t2v_inputs["t"][:, None].expand(-1, 36))
    assert relative_error(run(t2v, DiTExtensions(extra_tokens=[same_t]), **t2v_inputs), t2v_base) < 1e-5
    clean = ExtraTokens(tokens, grid_positions(3, 4, 3), t=torch.zeros(2, 36))
    assert relative_error(run(t2v, DiTExtensions(extra_tokens=[clean]), **t2v_inputs), t2v_base) > 1e-3


def test_identity_adapter_changes_nothing(t2v, t2v_inputs, t2v_base):
    ext = DiTExtensions(block_adapters={0: [lambda x, ctx: x], 1: [lambda x, ctx: x]})
    assert torch.equal(run(t2v, ext, **t2v_inputs), t2v_base)


def test_adapters_and_on_block_are_called_in_order(t2v, t2v_inputs, t2v_base):
    events: list = []

    def adapter(x, ctx: AdapterContext):
        events.append(("adapter", ctx.block_index, ctx.grid, ctx.n_video, x.shape[1], ctx.compute_dtype))
        return x + 0.01

    extra = ExtraTokens(torch.zeros(1, 4, 128), torch.zeros(4, 3, dtype=torch.long))
    ext = DiTExtensions(extra_tokens=[extra], block_adapters={1: [adapter]})
    out = run(t2v, ext, on_block=lambda i: events.append(("block", i)), **t2v_inputs)
    assert events == [("block", 0), ("block", 1), ("adapter", 1, (3, 4, 3), 36, 40, torch.float32)]
    assert relative_error(out, t2v_base) > 1e-4


def test_on_block_can_interrupt_before_a_block(t2v, t2v_inputs):
    called = []

    def stop_at_one(i):
        if i == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(t2v, DiTExtensions(block_adapters={0: [lambda x, c: called.append(0) or x],
                                               1: [lambda x, c: called.append(1) or x]}),
            on_block=stop_at_one, **t2v_inputs)
    assert called == [0]


# ------------------------------------------------------------------ user mistakes
def _error(model, **kw) -> str:
    with pytest.raises(InputError) as info:
        run(model, **kw)
    return str(info.value)


def test_bad_latent_size_names_the_nearest_valid_sizes(t2v, t2v_inputs):
    message = _error(t2v, **dict(t2v_inputs, x=torch.zeros(2, 16, 3, 7, 6)))
    assert "height 7" in message and "6 or 8" in message
    assert "1 or 2" not in _error(t2v, **dict(t2v_inputs, x=torch.zeros(2, 16, 3, 8, 1)))
    assert "width 1" in _error(t2v, **dict(t2v_inputs, x=torch.zeros(2, 16, 3, 8, 1)))


def test_wrong_channel_count(t2v, t2v_inputs):
    message = _error(t2v, **dict(t2v_inputs, x=torch.zeros(2, 17, 3, 8, 6)))
    assert "17" in message and "16 channels" in message


def test_missing_image_inputs(fixture):
    model = build(fixture, "i2v")
    good = inputs(fixture, "i2v", 1)
    message = _error(model, **{k: v for k, v in good.items() if k != "y"})
    assert "(y)" in message and "missing" in message and "20 channels" in message
    message = _error(model, **{k: v for k, v in good.items() if k != "clip_fea"})
    assert "clip" in message and "missing" in message and "[2, 257, 64]" in message
    message = _error(model, **dict(good, y=good["y"][:, :4]))
    assert "16 (latent) + 4 (y)" in message and "36 channels" in message


def test_other_bad_inputs(fixture, t2v, t2v_inputs):
    assert "[2, tokens, 64]" in _error(t2v, **dict(t2v_inputs, context=torch.zeros(2, 5, 4096)))
    assert "at most 512" in _error(t2v, **dict(t2v_inputs, context=torch.zeros(2, 513, 64)))
    assert "no CLIP image branch" in _error(t2v, **dict(t2v_inputs, clip_fea=torch.zeros(2, 257, 64)))
    assert "[2, 36]" in _error(t2v, **dict(t2v_inputs, t=torch.zeros(3)))
    wan22 = build(fixture, "i2v22")
    with_clip = dict(inputs(fixture, "i2v22", 3), clip_fea=torch.zeros(2, 257, 64))
    assert "no CLIP image branch" in _error(wan22, **with_clip)
    ext = DiTExtensions(added_tokens=[torch.zeros(2, 35, 128)])
    with pytest.raises(ExtensionError, match="added tokens 0"):
        run(t2v, ext, **t2v_inputs)
    with pytest.raises(ExtensionError, match=r"blocks \[2\].*0\.\.1"):
        run(t2v, DiTExtensions(block_adapters={2: [lambda x, c: x]}), **t2v_inputs)
    bad_positions = ExtraTokens(torch.zeros(2, 4, 128), torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ExtensionError, match=r"positions"):
        run(t2v, DiTExtensions(extra_tokens=[bad_positions]), **t2v_inputs)


def test_builds_with_cast_ops_in_half_storage(fixture):
    """fp16 storage with float32 compute: CastOps casts each weight on use."""
    sd = {k: v.half() for k, v in state_dict(fixture, "t2v").items()}
    model = WanDiT(infer_config(sd, num_heads=2), operations=CastOps, device="meta", dtype=torch.float16)
    model.load_state_dict(sd, strict=True, assign=True)
    model.compute_dtype = torch.float32  # fixture weights are fp16-exact, so this is the reference run
    out = run(model, **inputs(fixture, "t2v", 1))
    assert relative_error(out, fixture[0]["t2v/f1/out"]) < 1e-5
