"""Person selection and the no-person policies."""
import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import keypoints as kp
from poseanimate.pose.people import fill_empty_frames, select_people, track_ids


def _person(x, y, size, conf=0.9):
    p = kp.empty_people(1)[0]
    p[kp.BODY, 0] = x + np.linspace(0, size, 18)
    p[kp.BODY, 1] = y + np.linspace(0, 2 * size, 18)
    p[kp.BODY, 2] = conf
    return p


def _frame(*people, w=100, h=100):
    return kp.PoseFrame(np.stack(people) if people else kp.empty_people(), w, h)


def test_select_largest_index_and_all():
    frames = [_frame(_person(0, 0, 10), _person(50, 0, 30)), _frame(_person(0, 0, 5)), _frame()]
    largest = select_people(frames, "largest")
    # the largest person is one track for the whole video: the small person of frame 1 is the other track
    assert [f.count for f in largest] == [1, 0, 0]
    assert largest[0].people[0, 0, 0] == 50
    second = select_people(frames, "index", 1)
    assert [f.count for f in second] == [1, 0, 0] and second[0].people[0, 0, 0] == 50
    assert select_people(frames, "all")[0].count == 2


def test_low_confidence_people_do_not_count_as_large():
    frames = [_frame(_person(0, 0, 10), _person(50, 0, 40, conf=0.1))]
    assert select_people(frames, "largest")[0].people[0, 0, 0] == 0


def test_hold_and_interpolate_fill_gaps():
    a, b = _person(0, 0, 10), _person(30, 60, 10)
    frames = [_frame(), _frame(a), _frame(), _frame(), _frame(b), _frame()]
    held = fill_empty_frames(frames, "hold")
    assert [f.count for f in held] == [1] * 6
    np.testing.assert_array_equal(held[0].people[0], a)          # the clip's start takes the first pose
    np.testing.assert_array_equal(held[3].people[0], a)
    np.testing.assert_array_equal(held[5].people[0], b)
    lerp = fill_empty_frames(frames, "interpolate")
    np.testing.assert_allclose(lerp[2].people[0, kp.BODY, :2], a[kp.BODY, :2] + (b - a)[kp.BODY, :2] / 3)
    np.testing.assert_allclose(lerp[3].people[0, kp.BODY, :2], a[kp.BODY, :2] + 2 * (b - a)[kp.BODY, :2] / 3)
    np.testing.assert_array_equal(lerp[0].people[0], a)
    np.testing.assert_array_equal(lerp[5].people[0], b)
    assert (lerp[2].people[0, kp.LEFT_HAND, 2] == 0).all()       # missing at both ends stays missing
    assert fill_empty_frames(frames, "empty")[0].count == 0


def test_interpolating_a_point_missing_on_one_side_takes_the_nearer_frame():
    a, b = _person(0, 0, 10), _person(30, 60, 10)
    b[3] = 0
    frames = [_frame(a), _frame(), _frame(), _frame(), _frame(b)]
    out = fill_empty_frames(frames, "interpolate")
    np.testing.assert_array_equal(out[1].people[0, 3], a[3])
    np.testing.assert_array_equal(out[3].people[0, 3], b[3])


def test_held_pose_is_rescaled_to_a_frame_of_another_size():
    frames = [_frame(_person(10, 10, 10)), _frame(w=200, h=50)]
    out = fill_empty_frames(frames, "hold")
    np.testing.assert_allclose(out[1].people[0, 0, :2], (20, 5))


@pytest.mark.parametrize("policy", ["empty", "hold", "interpolate"])
def test_all_empty_and_empty_batches_never_crash(policy):
    frames = [_frame(), _frame()]
    assert [f.count for f in fill_empty_frames(frames, policy)] == [0, 0]
    assert fill_empty_frames([], policy) == []
    assert select_people([], "largest") == []


def test_bad_choices_are_input_errors():
    with pytest.raises(InputError, match="person selection"):
        select_people([_frame()], "tallest")
    with pytest.raises(InputError, match="no-person policy"):
        fill_empty_frames([_frame()], "guess")
    with pytest.raises(InputError, match="person index"):
        select_people([_frame()], "index", -1)


def _walker(x0, dx, frames, size=20, y=10):
    return [_person(x0 + dx * t, y, size) for t in range(frames)]


def test_two_crossing_people_keep_their_tracks():
    """A walks right, B walks left; the detector lists them in a different order
    every frame, and they overlap mid-way: each track stays with its walker."""
    a, b = _walker(0, 6, 11), _walker(60, -6, 11, size=18, y=14)
    frames = [_frame(a[t], b[t]) if t % 2 else _frame(b[t], a[t]) for t in range(11)]
    for mode, index, expected in (("index", 0, b), ("index", 1, a), ("largest", 0, a)):
        kept = select_people(frames, mode, index)
        assert all(f.count == 1 for f in kept)
        for f, want in zip(kept, expected):
            np.testing.assert_array_equal(f.people[0], want)
    ordered = select_people(frames, "all")
    assert all(np.array_equal(f.people[0], b[t]) for t, f in enumerate(ordered))


def test_a_jump_past_the_limit_starts_a_new_track():
    a = _walker(0, 2, 3)
    far = _person(90, 60, 20)                          # another person appears while A is lost
    frames = [_frame(a[0], _person(300, 300, 5)), _frame(a[1]), _frame(far), _frame(a[2])]
    kept = select_people(frames, "index", 0)
    assert [f.count for f in kept] == [1, 1, 0, 1]
    ids = track_ids(frames)
    assert [i.tolist() for i in ids] == [[0, 1], [0], [2], [0]]
