"""The left-driven synchroniser: every left image gets exactly one set, whatever the other inputs do."""
from __future__ import annotations

import random

import pytest

from road_seg_core.left_sync import OUT_OF_RANGE, LeftDrivenSynchronizer

MS = 1_000_000
S = 1_000_000_000
T0 = 1_704_067_200 * S
PERIOD = 100 * MS  # 10 Hz
NAMES = ("left", "depth", "thermal")


class Feed:
    """Feeds (input, stamp) events; items are (name, stamp) so sets can be read back."""

    def __init__(self, **kw) -> None:
        self.rejected: list[tuple[str, int, str]] = []
        kw.setdefault("slop_s", 0.05)
        self.sync = LeftDrivenSynchronizer(NAMES, on_reject=lambda i, item, why: self.rejected.append(
            (NAMES[i], item[1], why)), **kw)
        self.sets: list[tuple] = []

    def __call__(self, index: int, stamp: int) -> list[tuple]:
        out = self.sync.add(index, stamp, (NAMES[index], stamp))
        self.sets += out
        return out

    def frame(self, stamp: int, depth: int | None = 0, thermal: int | None = 0) -> list[tuple]:
        """A left image at `stamp`, then depth / thermal at stamp + the given offset (None: lost)."""
        out = self(0, stamp)
        if depth is not None:
            out += self(1, stamp + depth)
        if thermal is not None:
            out += self(2, stamp + thermal)
        return out

    def lefts(self) -> list[int]:
        return [s[0][1] for s in self.sets]

    def present(self, k: int) -> tuple[str, ...]:
        return tuple(NAMES[i] for i, it in enumerate(self.sets[k]) if it is not None)


def test_complete_frames_leave_as_soon_as_every_input_joined():
    f = Feed()
    for k in range(5):
        out = f.frame(T0 + k * PERIOD, depth=2 * MS, thermal=-3 * MS)
        assert len(out) == 1 and out[0] == (("left", T0 + k * PERIOD), ("depth", T0 + k * PERIOD + 2 * MS),
                                            ("thermal", T0 + k * PERIOD - 3 * MS))
    assert f.sync.stats.released == 5 and f.sync.substituted == [0, 0, 0]


def test_missing_input_is_absent_and_the_next_left_image_releases_the_set():
    f = Feed()
    f.frame(T0)
    f.frame(T0 + PERIOD)
    assert f.frame(T0 + 2 * PERIOD, thermal=None) == []  # waits for thermal ...
    out = f(0, T0 + 3 * PERIOD)  # ... until the next left image
    assert [s[0][1] for s in out] == [T0 + 2 * PERIOD] and out[0][2] is None and out[0][1] is not None
    assert f.sync.stats.missing == [0, 0, 1]


def test_late_input_still_joins_before_the_deadline():
    f = Feed()
    f.frame(T0)
    f.frame(T0 + PERIOD)
    f(0, T0 + 2 * PERIOD)
    f(1, T0 + 2 * PERIOD)
    f(0, T0 + 2 * PERIOD + 60 * MS)  # an early next left image (60 ms < 0.75 period): not a deadline
    f(2, T0 + 2 * PERIOD + 1 * MS)  # thermal arrives after it
    assert f.present(2) == NAMES and f.lefts()[2] == T0 + 2 * PERIOD


def test_input_after_the_deadline_is_too_late_and_harms_nothing():
    f = Feed()
    f.frame(T0)
    f.frame(T0 + PERIOD)
    f.frame(T0 + 2 * PERIOD, thermal=None)
    f(0, T0 + 3 * PERIOD)  # deadline of frame 2 passed: released without thermal
    f(2, T0 + 2 * PERIOD)  # frame 2's thermal, too late
    f(1, T0 + 3 * PERIOD)
    f(2, T0 + 3 * PERIOD)
    assert f.lefts() == [T0 + k * PERIOD for k in range(4)]
    assert f.present(2) == ("left", "depth") and f.present(3) == NAMES
    assert f.sets[3][2] == ("thermal", T0 + 3 * PERIOD)  # its own thermal, the nearest


def test_stamp_time_of_other_inputs_releases_a_waiting_set_too():
    f = Feed(max_wait_s=0.05)
    f.frame(T0, thermal=None)
    assert f(1, T0 + 60 * MS) and f.present(0) == ("left", "depth")  # depth's stamp proves 50 ms have passed


def test_offsets_shift_an_input_before_matching():
    lag = Feed(slop_s=0.02)
    lag.frame(T0, thermal=-30 * MS)
    lag.frame(T0 + PERIOD, thermal=-30 * MS)
    lag(0, T0 + 2 * PERIOD)
    assert lag.sync.stats.missing[2] == 2  # 30 ms away: never joins
    shifted = Feed(slop_s=0.02, offsets_s=(0.0, 0.0, 0.03))
    for k in range(3):
        shifted.frame(T0 + k * PERIOD, thermal=-30 * MS)
    assert shifted.sync.stats.missing == [0, 0, 0] and len(shifted.sets) == 3


def test_slop_is_exclusive_and_truncated_like_rclpy_duration():
    f = Feed(slop_s=0.0638)  # rclpy: 63 799 999 ns
    f(0, T0)
    f(1, T0 + 63_799_999)
    f(2, T0 + 63_799_998)
    f(0, T0 + PERIOD)
    assert f.present(0) == ("left", "thermal")


@pytest.mark.parametrize("bad", [0, -1000 * S, (2**31 - 1) * S, T0 + 10**6 * S])
@pytest.mark.parametrize("index", [1, 2])
def test_impossible_stamp_of_another_input_is_rejected_and_changes_nothing(bad, index):
    f = Feed()
    f.frame(T0)
    f(index, bad)
    f.frame(T0 + PERIOD)
    f.frame(T0 + 2 * PERIOD)
    assert f.rejected == [(NAMES[index], bad, OUT_OF_RANGE)]
    assert [f.present(k) for k in range(3)] == [NAMES] * 3
    assert f.sync.stats.rejected[index] == 1


@pytest.mark.parametrize("bad", [0, -1000 * S, (2**31 - 1) * S])
def test_a_whole_set_of_impossible_stamps_leaves_the_next_frame_complete(bad):
    f = Feed()
    f.frame(T0)
    f.frame(bad)  # left, depth and thermal all stamped `bad`: a set of its own
    f.frame(T0 + PERIOD)
    f.frame(T0 + 2 * PERIOD)
    assert f.lefts() == [T0, bad, T0 + PERIOD, T0 + 2 * PERIOD]
    assert f.present(2) == NAMES and f.present(3) == NAMES
    assert f.sync.stats.resets == 0 and f.sync.down_names == ()


def test_far_future_stamp_then_silence_does_not_stop_the_sets():
    f = Feed(sensor_timeout_s=0.5)
    f.frame(T0)
    f.frame(T0 + PERIOD, depth=10**6 * S)  # depth stamped a million seconds ahead, then silent
    for k in range(2, 30):
        f.frame(T0 + k * PERIOD, depth=None)
    assert f.lefts()[:29] == [T0 + k * PERIOD for k in range(29)]
    assert f.sync.down_names == ("depth",)
    assert f.rejected == [("depth", T0 + PERIOD + 10**6 * S, OUT_OF_RANGE)]
    # once down, sets stop waiting for depth: the last frame left as soon as its thermal came
    assert f.sets[-1][0][1] == T0 + 29 * PERIOD and f.present(len(f.sets) - 1) == ("left", "thermal")
    f.frame(T0 + 30 * PERIOD)  # depth is back
    assert f.sync.down_names == () and f.present(len(f.sets) - 1) == NAMES


@pytest.mark.parametrize("first", ["left", "others"])
def test_left_going_backwards_resets_and_the_next_set_uses_every_sensor(first):
    f = Feed()
    for k in range(30):
        f.frame(T0 + k * PERIOD)
    start = len(f.sets)
    for k in range(3):  # the bag loops: stamps start again at T0
        if first == "others":  # depth and thermal of the looped frame before its left image
            f(1, T0 + k * PERIOD)
            f(2, T0 + k * PERIOD)
            f(0, T0 + k * PERIOD)
        else:
            f.frame(T0 + k * PERIOD)
    assert f.lefts()[start:] == [T0, T0 + PERIOD, T0 + 2 * PERIOD]
    assert all(f.present(k) == NAMES for k in range(start, start + 3))
    assert f.sync.stats.resets == 1 and f.rejected == []


def test_a_pause_of_every_input_resumes_with_every_sensor():
    f = Feed()
    for k in range(10):
        f.frame(T0 + k * PERIOD)
    resume = T0 + 9 * PERIOD + 5 * S
    for k in range(3):
        f.frame(resume + k * PERIOD)
    assert f.lefts()[10:] == [resume, resume + PERIOD, resume + 2 * PERIOD]
    assert all(f.present(k) == NAMES for k in range(10, 13)) and f.rejected == []


def test_short_backwards_step_within_the_window_is_a_new_timeline_too():
    f = Feed()
    for k in range(10):
        f.frame(T0 + k * PERIOD)
    f.frame(T0 + 5 * PERIOD)  # 0.4 s back: within the 2 s window, more than a frame
    assert f.present(10) == NAMES and f.sync.stats.resets == 1


def test_every_left_image_gets_exactly_one_set_on_random_streams():
    rng = random.Random(4)
    for trial in range(40):
        f = Feed(sensor_timeout_s=rng.choice([0.0, 0.3, 1.0]), max_wait_s=rng.choice([0.0, 0.05, 0.2]))
        lefts = []
        stamp = T0
        for k in range(60):
            stamp += PERIOD + rng.randint(-3, 3) * MS
            if rng.random() < 0.03:
                stamp = rng.choice([0, T0 - 50 * S, stamp + 400 * S])  # impossible / new timeline
            events = [(0, stamp)]
            for i in (1, 2):
                r = rng.random()
                if r < 0.2:
                    continue  # lost
                if r < 0.25:
                    events.append((i, rng.choice([0, -S, stamp + 10**6 * S])))
                else:
                    events.append((i, stamp + rng.randint(-20, 20) * MS))
            rng.shuffle(events)
            for index, s in events:
                f(index, s)
                if index == 0:
                    lefts.append(s)
        f.sets += f.sync.flush()
        assert sorted(f.lefts()) == sorted(lefts), trial
        for s in f.sets:  # joined items are within slop of their left image
            for it in s[1:]:
                assert it is None or abs(it[1] - s[0][1]) < 50 * MS
