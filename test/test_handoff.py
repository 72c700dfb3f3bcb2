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
    t.join(timeout=2)
    assert not t.is_alive() and got == [None]
