import threading

from road_seg_core.handoff import LatestSlot


def test_latest_wins_and_superseded_are_counted():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0.1) == 3
    assert slot.superseded == 2
    assert slot.take(timeout=0.01) is None


def test_close_wakes_a_waiting_worker():
    slot = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take()))
    t.start()
    slot.close()
    t.join(timeout=30)
    assert not t.is_alive() and got == [None]


def test_an_idle_worker_gets_two_sets_released_back_to_back():
    slot = LatestSlot()
    got = []
    started = threading.Event()

    def worker():
        started.set()
        got.append(slot.take(timeout=5))

    t = threading.Thread(target=worker)
    with slot._cond:  # hold the lock: the worker is waiting in take() but cannot run before both puts
        t.start()
        started.wait(30)
    while True:  # until the worker is inside take()
        with slot._cond:
            if slot._waiting:
                assert slot.put("first") is False and slot.put("second") is False
                break
    t.join(timeout=30)
    assert got == ["first"] and slot.take(timeout=0.1) == "second" and slot.superseded == 0
    # a busy worker (nobody in take()): latest wins again
    assert slot.put(1) is False and slot.put(2) is True and slot.take(timeout=0.1) == 2
