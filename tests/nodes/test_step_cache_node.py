"""The sampler node's optional step-cache inputs, on the RealisDance chain (extra tokens on every step)."""
import logging
import math

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.nodes.sampler_nodes import PoseAnimateSampler

from .test_realisdance_chain import SAMPLE, _conditioning, loaded  # noqa: F401 (the fixture)

STEPS = dict(SAMPLE, steps=6)


def test_cache_inputs_are_optional_and_off_by_default():
    types = PoseAnimateSampler.INPUT_TYPES()
    assert {"cache", "cache_threshold", "cache_start", "cache_end"} <= set(types["optional"])
    assert not {"cache", "cache_threshold"} & set(types["required"])
    assert types["optional"]["cache"][1]["default"] == "none"


@pytest.mark.parametrize("cache", ["teacache", "magcache", "easycache"])
def test_zero_threshold_equals_uncached_and_a_high_one_skips(loaded, cache, caplog):  # noqa: F811
    dit = loaded[0]
    (plain,) = PoseAnimateSampler().sample(dit, _conditioning(loaded, frames=9)[1], **STEPS)
    (zero,) = PoseAnimateSampler().sample(dit, _conditioning(loaded, frames=9)[1], **STEPS, cache=cache,
                                          cache_threshold=0.0, cache_start=0)
    assert torch.equal(plain["samples"], zero["samples"])
    with caplog.at_level(logging.INFO):
        (fast,) = PoseAnimateSampler().sample(dit, _conditioning(loaded, frames=9)[1], **STEPS, cache=cache,
                                              cache_threshold=1.0, cache_start=1)
    assert torch.isfinite(fast["samples"]).all()
    assert any(f"{cache}: " in r.message and "block passes skipped" in r.message for r in caplog.records)


@pytest.mark.parametrize("threshold", [math.nan, -0.5, 1.5])
def test_bad_threshold_names_the_input(loaded, threshold):  # noqa: F811
    with pytest.raises(InputError, match="cache_threshold"):
        PoseAnimateSampler().sample(loaded[0], _conditioning(loaded)[1], **STEPS, cache="teacache",
                                    cache_threshold=threshold)


def test_end_before_start_is_refused(loaded):  # noqa: F811
    with pytest.raises(InputError, match="cache_end"):
        PoseAnimateSampler().sample(loaded[0], _conditioning(loaded)[1], **STEPS, cache="magcache",
                                    cache_start=4, cache_end=2)
