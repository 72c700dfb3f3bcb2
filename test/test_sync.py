"""Approximate-time synchroniser: message_filters' Python test scenarios plus the
situations a car meets (jitter, dropped frames, sensor latency, looping bags)."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from road_seg_core import sync as sync_module
from road_seg_core.sync import ApproximateTimeSynchronizer, SyncStats

MS = 1_000_000
S = 1_000_000_000
FRAME_NS = 16_666_667  # 60 Hz


def collect(sync: ApproximateTimeSynchronizer, events) -> list[tuple]:
    """Feed (input, stamp_ns, item) events and return every set produced, in order."""
    out: list[tuple] = []
    for index, stamp, item in events:
        out.extend(sync.add(index, stamp, item))
    return out


class ExhaustiveSync:
    """The matching rule written the slow, obvious way: walk the product of the
    per-input candidate lists (closest first, earlier arrival on ties) and take
    the first tuple whose spread is below slop."""

    def __init__(self, num_inputs: int, queue_size: int, slop_ns: int) -> None:
        self.queues: list[dict[int, tuple[int, object]]] = [{} for _ in range(num_inputs)]
        self.queue_size = queue_size
        self.slop_ns = slop_ns
        self.arrivals = 0

    def add(self, index: int, stamp: int, item) -> list[tuple]:
        queue = self.queues[index]
        arrival = queue[stamp][0] if stamp in queue else self.arrivals
        queue[stamp] = (arrival, item)
        self.arrivals += 1
        while len(queue) > self.queue_size:
            del queue[min(queue)]
        if stamp not in queue:
            return []
        lists = []
        for j, other in enumerate(self.queues):
            if j == index:
                lists.append([stamp])
                continue
            near = [s for s in other if abs(s - stamp) <= self.slop_ns]
            if not near:
                return []
            lists.append(sorted(near, key=lambda s, q=other: (abs(s - stamp), q[s][0])))
        for combo in itertools.product(*lists):
            if max(combo) - min(combo) < self.slop_ns:
                return [tuple(self.queues[j].pop(s)[1] for j, s in enumerate(combo))]
        return []


def assert_stats_balance(sync: ApproximateTimeSynchronizer) -> None:
    st = sync.stats
    for i, queued in enumerate(sync.queue_lengths()):
        assert st.received[i] == st.matched + st.dropped[i] + st.cleared[i] + st.rejected[i] + queued, i


# --- scenarios of message_filters' test_approxsync.py -------------------------------------------

def test_pairs_with_queue_size_one_are_emitted_on_the_second_message():
    sync = ApproximateTimeSynchronizer(2, queue_size=1, slop_s=0.1)
    for t in range(10):
        first, second = ("a", t), ("b", t)
        assert sync.add(0, t * S, first) == []
        assert sync.add(1, t * S, second) == [(first, second)]
    assert sync.stats.matched == 10
    assert sync.queue_lengths() == [0, 0]


@pytest.mark.parametrize("n", range(1, 10))
def test_shuffled_sequences_are_recombined(n):
    rng = random.Random(n)
    seq0 = [(0, t, rng.random()) for t in range(n)]
    seq1 = [(1, t, rng.random()) for t in range(n)]
    # Out-of-order arrival by whole seconds is the point here, so no time-jump resets.
    sync = ApproximateTimeSynchronizer(2, queue_size=n, slop_s=0.1, backwards_tolerance_s=math.inf)
    assert collect(sync, [(0, m[1] * S, m) for m in rng.sample(seq0, n)]) == []
    out = collect(sync, [(1, m[1] * S, m) for m in rng.sample(seq1, n)])
    assert len(out) == n
    assert set(out) == set(zip(seq0, seq1))
    assert sync.stats.resets == 0


@pytest.mark.parametrize("n", range(1, 10))
def test_headerless_items_take_the_arrival_clock_and_pair_in_order(n):
    now = [1_700_000_000 * S]
    rng = random.Random(100 + n)
    seq0 = [(now[0] + t * S, rng.random()) for t in range(n)]
    seq1 = [("headerless", rng.random()) for _ in range(n)]
    sync = ApproximateTimeSynchronizer(2, queue_size=n, slop_s=10.0, allow_headerless=True,
                                       clock=lambda: now[0])
    assert collect(sync, [(0, m[0], m) for m in rng.sample(seq0, n)]) == []
    out = []
    for m in seq1:
        now[0] += 1000  # 1 us between callbacks
        out.extend(sync.add(1, None, m))
    # Each headerless item is stamped ~now, so it takes the oldest remaining stamped one.
    assert out == list(zip(seq0, seq1))


def test_headerless_items_are_refused_unless_allowed():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.1, clock=lambda: 5 * S)
    assert sync.add(0, 5 * S, "stamped") == []
    assert sync.add(1, None, "no stamp") == []
    assert sync.stats.rejected == [0, 1]
    assert sync.queue_lengths() == [1, 0]
    assert_stats_balance(sync)


# --- matching rule details ----------------------------------------------------------------------

def test_spread_must_be_strictly_below_slop():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.010)
    sync.add(0, 0, "a")
    assert sync.add(1, 10 * MS, "b") == []  # spread == slop
    assert sync.add(1, 10 * MS - 1, "c") == [("a", "c")]


def test_first_input_closest_candidate_wins_like_message_filters():
    # Pivot on input 2 at t=0. Input 0's closest (-1 ms) completes a valid set with
    # input 1 at +6 ms (spread 7 ms), so it is taken although {+5, +6} is tighter.
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop_s=0.010)
    collect(sync, [(0, -1 * MS, "a-1"), (0, 5 * MS, "a+5"), (1, 6 * MS, "b+6")])
    assert sync.add(2, 0, "pivot") == [("a-1", "b+6", "pivot")]
    assert sync.queue_lengths() == [1, 0, 0]


def test_closest_candidate_is_skipped_when_no_set_can_contain_it():
    # Input 0's closest (-5 ms) cannot share a set with input 1's only candidate
    # (+8 ms, spread 13 ms), so the search moves on to +7 ms.
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop_s=0.010)
    collect(sync, [(0, -5 * MS, "a-5"), (0, 7 * MS, "a+7"), (1, 8 * MS, "b+8")])
    assert sync.add(2, 0, "pivot") == [("a+7", "b+8", "pivot")]


def test_equidistant_candidates_go_to_the_earlier_arrival():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.010)
    collect(sync, [(0, 3 * MS, "late stamp, first"), (0, -3 * MS, "early stamp, second")])
    assert sync.add(1, 0, "pivot") == [("late stamp, first", "pivot")]


def test_same_stamp_on_one_input_replaces_the_queued_item():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.010)
    sync.add(0, 7 * S, "old")
    sync.add(0, 7 * S, "new")
    assert sync.stats.dropped == [1, 0]
    assert sync.add(1, 7 * S, "b") == [("new", "b")]
    assert_stats_balance(sync)


def test_single_input_passes_items_straight_through():
    sync = ApproximateTimeSynchronizer(1, queue_size=1, slop_s=0.01)
    assert collect(sync, [(0, t * MS, t) for t in range(3)]) == [(0,), (1,), (2,)]


@pytest.mark.parametrize("seed", range(200))
def test_matches_the_exhaustive_product_search(seed):
    # Coarse stamps make ties, duplicate stamps, exact-slop spreads and
    # out-of-order arrival common, where a shortcut would diverge.
    rng = random.Random(seed)
    n = rng.randint(2, 5)
    queue_size = rng.randint(1, 8)
    slop_ms = rng.choice([1, 5, 10, 20, 50])
    fast = ApproximateTimeSynchronizer(n, queue_size, slop_ms / 1000, backwards_tolerance_s=math.inf)
    slow = ExhaustiveSync(n, queue_size, slop_ms * MS)
    for k in range(rng.randint(20, 150)):
        index = rng.randrange(n)
        stamp = rng.randint(0, 40) * rng.choice([1, 5]) * MS
        assert fast.add(index, stamp, k) == slow.add(index, stamp, k), (seed, k)
    assert_stats_balance(fast)


# --- what a car meets ---------------------------------------------------------------------------

def camera_events(num_frames: int, num_inputs: int, rng: random.Random, jitter_ns: int,
                  drop=lambda frame, index: False, lag_ns=(0,) * 5):
    """Per-frame items (frame, input) stamped at 60 Hz with jitter, delivered in arrival order."""
    events = []
    for frame in range(num_frames):
        for index in range(num_inputs):
            if drop(frame, index):
                continue
            stamp = frame * FRAME_NS + rng.randint(-jitter_ns, jitter_ns) + lag_ns[index]
            arrival = stamp + rng.randint(0, 8 * MS)  # transport delay reorders inputs
            events.append((arrival, index, stamp, (frame, index)))
    events.sort()
    return [(index, stamp, item) for _, index, stamp, item in events]


def assert_one_frame_per_set(sets):
    for s in sets:
        frames = {frame for frame, _ in s}
        assert len(frames) == 1, s
        assert [index for _, index in s] == list(range(len(s)))


def test_five_jittery_cameras_are_matched_frame_by_frame():
    rng = random.Random(1)
    sync = ApproximateTimeSynchronizer(5, queue_size=10, slop_s=0.008)
    out = collect(sync, camera_events(600, 5, rng, jitter_ns=2 * MS))
    assert_one_frame_per_set(out)
    assert sorted(s[0][0] for s in out) == list(range(600))
    assert sync.stats.matched == 600
    assert sync.stats.dropped == [0] * 5


def test_frames_dropped_on_one_input_cost_only_those_frames():
    rng = random.Random(2)
    missing = {f for f in range(600) if f % 7 == 3}
    sync = ApproximateTimeSynchronizer(4, queue_size=5, slop_s=0.008)
    events = camera_events(600, 4, rng, jitter_ns=2 * MS, drop=lambda f, i: i == 2 and f in missing)
    out = collect(sync, events)
    assert_one_frame_per_set(out)
    assert {s[0][0] for s in out} == set(range(600)) - missing
    # The orphans of each missing frame wait, then fall out of the bounded queues.
    assert sync.queue_lengths()[2] == 0
    assert all(length <= 5 for length in sync.queue_lengths())
    assert sum(sync.stats.dropped) + sum(sync.queue_lengths()) == 3 * len(missing)
    assert_stats_balance(sync)


def test_offset_aligns_a_sensor_with_known_latency():
    lag = (0, 0, 25 * MS)  # the thermal camera stamps 25 ms late: 1.5 frames, > slop from any frame
    events = camera_events(300, 3, random.Random(3), jitter_ns=1 * MS, lag_ns=lag)
    plain = ApproximateTimeSynchronizer(3, queue_size=10, slop_s=0.005)
    assert collect(plain, events) == []
    aligned = ApproximateTimeSynchronizer(3, queue_size=10, slop_s=0.005, offsets_s=(0.0, 0.0, -0.025))
    out = collect(aligned, events)
    assert_one_frame_per_set(out)
    assert len(out) == 300


def test_looping_bag_clears_queues_once_and_matching_resumes():
    rng = random.Random(4)
    loop = camera_events(120, 3, rng, jitter_ns=1 * MS)
    # A frame whose third input is lost right before the loop leaves orphans that
    # would otherwise sit in the queues across the jump.
    loop = [e for e in loop if not (e[2][0] == 119 and e[0] == 2)]
    sync = ApproximateTimeSynchronizer(3, queue_size=10, slop_s=0.005)
    first = collect(sync, loop)
    assert len(first) == 119 and sync.stats.resets == 0
    orphans = sum(sync.queue_lengths())
    assert orphans == 2
    second = collect(sync, loop)  # the bag starts over: stamps jump back 2 s
    assert sync.stats.resets == 1
    assert sync.stats.cleared[0] + sync.stats.cleared[1] == orphans
    assert_one_frame_per_set(second)
    assert len(second) == 119
    assert_stats_balance(sync)


def test_jitter_within_tolerance_does_not_reset():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop_s=0.010)
    collect(sync, [(0, 100 * MS, "a"), (0, 95 * MS, "slightly older"), (0, 90 * MS, "10 ms behind")])
    assert sync.stats.resets == 0
    assert sync.add(0, 89 * MS, "11 ms behind") == []
    assert sync.stats.resets == 1
    assert sync.stats.cleared == [3, 0]
    assert sync.queue_lengths() == [1, 0]


def test_backwards_tolerance_is_configurable():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop_s=0.010, backwards_tolerance_s=1.0)
    collect(sync, [(0, 5 * S, "a"), (0, 4 * S + 1, "b")])
    assert sync.stats.resets == 0
    sync.add(0, 3 * S, "c")
    assert sync.stats.resets == 1


def test_queues_are_bounded_and_drop_the_oldest_stamp():
    # Probing older frames below goes back in time on inputs 1 and 2: no resets here.
    sync = ApproximateTimeSynchronizer(3, queue_size=4, slop_s=0.010, backwards_tolerance_s=math.inf)
    for frame in range(1000):
        assert sync.add(0, frame * FRAME_NS, frame) == []
    assert sync.queue_lengths() == [4, 0, 0]
    assert sync.stats.dropped == [996, 0, 0]
    # What is left are the newest four frames.
    sync.add(1, 999 * FRAME_NS, "b")
    assert sync.add(2, 999 * FRAME_NS, "c") == [(999, "b", "c")]
    sync.add(1, 996 * FRAME_NS, "b")
    assert sync.add(2, 996 * FRAME_NS, "c") == [(996, "b", "c")]
    sync.add(1, 995 * FRAME_NS, "b")
    assert sync.add(2, 995 * FRAME_NS, "c") == []


def test_new_item_older_than_a_full_queue_is_dropped_at_once():
    sync = ApproximateTimeSynchronizer(2, queue_size=2, slop_s=0.010, backwards_tolerance_s=math.inf)
    sync.add(1, 0, "partner")
    collect(sync, [(0, 50 * MS, "x"), (0, 60 * MS, "y")])
    assert sync.add(0, 0, "too old") == []  # evicted on arrival, so it cannot pair
    assert sync.stats.dropped == [1, 0]
    assert sync.queue_lengths() == [2, 1]


def test_reset_forgets_queued_items_and_newest_stamps():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop_s=0.010)
    sync.add(0, 10 * S, "a")
    sync.reset()
    assert sync.queue_lengths() == [0, 0]
    assert sync.stats.cleared == [1, 0]
    sync.add(0, 1 * S, "earlier timeline")
    assert sync.stats.resets == 0  # reset() also forgot input 0's newest stamp
    assert sync.add(1, 10 * S, "b") == []


def test_stats_account_for_every_item():
    rng = random.Random(5)
    sync = ApproximateTimeSynchronizer(3, queue_size=3, slop_s=0.005)
    events = camera_events(200, 3, rng, jitter_ns=3 * MS, drop=lambda f, i: rng.random() < 0.1)
    collect(sync, events)
    collect(sync, events)  # loop: one reset
    sync.add(1, None, "headerless")
    assert sync.stats.resets == 1
    assert sync.stats.rejected == [0, 1, 0]
    assert sync.stats.received == [2 * sum(1 for e in events if e[0] == i) + (i == 1) for i in range(3)]
    assert_stats_balance(sync)
    sync.reset()
    assert_stats_balance(sync)
    d = sync.stats.as_dict()
    assert d["matched"] == sync.stats.matched and d["dropped"] == sync.stats.dropped
    assert SyncStats.zeros(2).received == [0, 0]


def test_search_stays_polynomial_when_no_set_exists(monkeypatch):
    # Every other input holds 20 candidates within slop of the pivot, but input 4's
    # only sit too far on the other side: the product has 20**4 tuples, none valid.
    # The work is counted (window look-ups), not timed: a timed test fails on a busy machine.
    sync = ApproximateTimeSynchronizer(5, queue_size=20, slop_s=0.100)
    for i in (1, 2, 3):
        collect(sync, [(i, S - 99 * MS + k * 2 * MS, k) for k in range(20)])
    collect(sync, [(4, S + 60 * MS + k * MS // 10, k) for k in range(20)])
    lookups = 0
    has_stamp_in = sync_module._has_stamp_in

    def counting(*args):
        nonlocal lookups
        lookups += 1
        return has_stamp_in(*args)

    monkeypatch.setattr(sync_module, "_has_stamp_in", counting)
    for k in range(20):
        assert sync.add(0, S + k, k) == []
    assert 0 < lookups < 20 * 20 ** 2  # per pivot: far below the 20**4 tuples an exhaustive search visits


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_inputs=0, queue_size=1, slop_s=0.1), "num_inputs"),
    (dict(num_inputs=2, queue_size=0, slop_s=0.1), "queue_size"),
    (dict(num_inputs=2, queue_size=1, slop_s=0.0), "slop_s"),
    (dict(num_inputs=2, queue_size=1, slop_s=0.1, offsets_s=(0.0,)), "offsets_s"),
    (dict(num_inputs=2, queue_size=1, slop_s=0.1, offsets_s=(0.0, math.nan)), "finite"),
    (dict(num_inputs=2, queue_size=1, slop_s=0.1, backwards_tolerance_s=-1.0), "backwards_tolerance_s"),
])
def test_invalid_configuration_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ApproximateTimeSynchronizer(**kwargs)


def test_unknown_input_index_is_an_error():
    sync = ApproximateTimeSynchronizer(2, queue_size=1, slop_s=0.1)
    with pytest.raises(IndexError):
        sync.add(2, 0, "x")
