"""TolerantSynchronizer: sets go on without an optional input that has gone silent, and take it back."""
from __future__ import annotations

import logging

import pytest

from road_seg_core.sensor_timeout import TolerantSynchronizer
from road_seg_core.sync import ApproximateTimeSynchronizer

MS = 1_000_000
NAMES = ("left", "depth", "thermal")


def make(timeout_s: float = 0.5, offsets=None) -> TolerantSynchronizer:
    sync = ApproximateTimeSynchronizer(3, queue_size=10, slop_s=0.02, offsets_s=offsets)
    return TolerantSynchronizer(sync, NAMES, [True, False, False], timeout_s)


def feed(tol: TolerantSynchronizer, frame: int, keys=NAMES, period_ms: int = 100) -> list[tuple]:
    """One frame of every input in `keys` (the left last, as cameras often deliver), stamped frame * period."""
    stamp = frame * period_ms * MS
    sets = []
    for key in sorted(keys, key=lambda k: k == "left"):
        sets += tol.add(NAMES.index(key), stamp + (3 * MS if key == "thermal" else 0), f"{key}{frame}")
    return sets


def test_all_inputs_flowing_gives_what_the_plain_synchroniser_gives():
    tol, plain = make(), ApproximateTimeSynchronizer(3, queue_size=10, slop_s=0.02)
    got, want = [], []
    for frame in range(30):
        got += feed(tol, frame)
        stamp = frame * 100 * MS
        for i, key in ((1, "depth"), (2, "thermal"), (0, "left")):
            want += plain.add(i, stamp + (3 * MS if key == "thermal" else 0), f"{key}{frame}")
    assert got == want and len(got) == 30
    assert tol.down_names == () and tol.substituted == [0, 0, 0]


def test_silent_thermal_is_dropped_after_the_timeout_and_taken_back(caplog):
    tol = make(timeout_s=0.5)
    caplog.set_level(logging.WARNING, logger="road_seg_core.sensor_timeout")
    sets = []
    for frame in range(10):
        sets += feed(tol, frame)
    assert [s[2] for s in sets] == [f"thermal{f}" for f in range(10)]

    sets = []
    for frame in range(10, 30):  # the thermal camera fails at frame 10 (1.0 s)
        sets += feed(tol, frame, keys=("left", "depth"))
    # frames 10..14 are within 0.5 s of the last thermal (0.9 s): they wait, and are never completed
    assert [s[0] for s in sets] == [f"left{f}" for f in range(15, 30)]
    assert all(s[1] == s[0].replace("left", "depth") and s[2] is None for s in sets)
    assert tol.down_names == ("thermal",) and tol.substituted[2] == 15
    assert "thermal silent" in caplog.text

    sets = []
    for frame in range(30, 35):  # it is back
        sets += feed(tol, frame)
    assert tol.down_names == ()
    assert [s[2] for s in sets] == [f"thermal{f}" for f in range(30, 35)]
    assert "thermal is back" in caplog.text


def test_an_input_that_never_arrives_is_down_after_the_timeout():
    tol = make(timeout_s=0.25)
    sets = []
    for frame in range(8):
        sets += feed(tol, frame, keys=("left", "depth"))
    assert [s[0] for s in sets] == ["left3", "left4", "left5", "left6", "left7"]  # 0.3 s after the first left
    assert tol.down_names == ("thermal",)


def test_two_inputs_down_leaves_the_left_alone():
    tol = make(timeout_s=0.25)
    sets = []
    for frame in range(6):
        sets += feed(tol, frame, keys=("left",))
    assert sets and all(s[1] is None and s[2] is None for s in sets)
    assert tol.down_names == ("depth", "thermal")


def test_offsets_are_honoured_for_the_stand_ins():
    # thermal stamps run 40 ms late and are corrected by an offset; a stand-in must land where a real one would
    tol = make(timeout_s=0.25, offsets=[0.0, 0.0, -0.04])
    sets = []
    for frame in range(8):
        sets += feed(tol, frame, keys=("left", "depth"))
    assert len(sets) == 5 and all(s[2] is None for s in sets)


def test_time_going_back_makes_every_input_up_again():
    tol = make(timeout_s=0.25)
    for frame in range(100, 106):
        feed(tol, frame, keys=("left", "depth"))
    assert tol.down_names == ("thermal",)
    sets = feed(tol, 0)  # the bag loops: everything present again
    assert tol.down_names == ()
    assert sets == [("left0", "depth0", "thermal0")]


def test_the_left_is_required():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.02)
    with pytest.raises(ValueError, match="clock input"):
        TolerantSynchronizer(sync, ("left", "thermal"), [False, False], 1.0)
    with pytest.raises(ValueError, match="timeout_s"):
        TolerantSynchronizer(sync, ("left", "thermal"), [True, False], 0.0)
    with pytest.raises(ValueError, match="one entry per input"):
        TolerantSynchronizer(sync, ("left",), [True], 1.0)
