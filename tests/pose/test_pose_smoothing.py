"""One-Euro smoothing: calms jitter, follows motion, never smooths across a gap."""
import numpy as np

from poseanimate.pose import keypoints as kp
from poseanimate.pose.smoothing import one_euro


def _track(xs, ys, conf):
    frames = []
    for x, y, c in zip(xs, ys, conf):
        people = kp.empty_people(1)
        people[0, 0] = (x, y, c)
        frames.append(kp.PoseFrame(people, 640, 480))
    return frames


def test_still_point_jitter_is_reduced_and_confidences_kept():
    rng = np.random.default_rng(0)
    n = 120
    xs = 300 + rng.normal(0, 3, n)
    ys = 200 + rng.normal(0, 3, n)
    out = one_euro(_track(xs, ys, np.full(n, 0.8)), min_cutoff=1.0, beta=0.5)
    smooth = np.array([f.people[0, 0] for f in out])
    assert smooth[20:, 0].std() < 0.5 * xs[20:].std()
    assert abs(smooth[20:, 0].mean() - 300) < 1.0
    assert (smooth[:, 2] == 0.8).all()
    assert smooth[0, 0] == xs[0]                                  # the filter starts on the first sample


def test_moving_point_is_followed_with_little_lag():
    n = 60
    xs = np.linspace(100, 500, n)                                 # 400 px in 2 s at 30 fps
    out = one_euro(_track(xs, np.full(n, 240.0), np.full(n, 0.9)), min_cutoff=1.0, beta=1.0)
    lag = xs[-1] - out[-1].people[0, 0, 0]
    assert 0 <= lag < 15


def test_nothing_is_smoothed_across_a_gap():
    xs = [100.0] * 10 + [0.0] + [400.0] * 5
    conf = [0.9] * 10 + [0.1] + [0.9] * 5
    out = one_euro(_track(xs, [50.0] * 16, conf))
    assert out[10].people[0, 0, 0] == 0.0                         # unseen point passed through
    assert out[11].people[0, 0, 0] == 400.0                       # restarts where it reappears


def test_people_slots_appearing_start_fresh():
    a = kp.empty_people(1)
    a[0, 0] = (100, 100, 0.9)
    two = np.concatenate([a, a + np.array([[[200.0, 0, 0]]])])
    frames = [kp.PoseFrame(a, 640, 480), kp.PoseFrame(two, 640, 480), kp.PoseFrame(a, 640, 480)]
    out = one_euro(frames)
    assert out[1].people[1, 0, 0] == 300.0 and out[2].count == 1
