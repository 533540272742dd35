"""Wan2.2-Animate's chained clips with an lcm sampler: no clip's re-noise stream is another clip's start noise."""
from poseanimate.methods.wan_animate.run import renoise_seed


def test_renoise_streams_never_start_on_a_clip_seed():
    for seed in (0, 7, 2**40):
        for clips in (1, 2, 3, 9):
            starts = {seed + i for i in range(clips)}  # clip i's starting noise
            renoise = [renoise_seed(seed, i, clips) + 1 for i in range(clips)]  # lcm's generator seed
            assert not starts & set(renoise) and len(set(renoise)) == clips


def test_one_clip_keeps_comfyuis_seed_plus_one():
    assert renoise_seed(42, 0, 1) + 1 == 43
