"""How a node process is asked to stop: a signal handler that survives a second signal landing inside it."""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

import pytest

from road_seg_ros.node_exit import StopSignals

Handler = Callable[[int, object], None]


def _nested_at_line(handler: Handler, k: int) -> tuple[bool, int]:
    """Run `handler`; at its k-th executed line (in any frame it calls) run it again, as a second SIGINT
    landing there would. Returns (it finished within 2 s, the lines it executed)."""
    seen = [0]

    def tracer(frame, event, arg):
        if event == "line":
            seen[0] += 1
            if seen[0] == k:
                sys.settrace(None)
                handler(signal.SIGINT, None)
                return None
        return tracer

    def body() -> None:
        sys.settrace(tracer)
        try:
            handler(signal.SIGINT, None)
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(2.0)
    return not thread.is_alive(), seen[0]


def _survives_nesting_everywhere(make: Callable[[], tuple[Handler, Callable[[], bool]]],
                                 first_only: bool = False) -> list[int]:
    """The lines of the handler at which a nested call deadlocked or left the stop unrequested."""
    bad: list[int] = []
    for k in range(1, 200):
        handler, requested = make()
        finished, seen = _nested_at_line(handler, k)
        if not finished or not requested():
            bad.append(k)
            if first_only:
                return bad
        if finished and seen < k:  # the whole handler ran before line k: every line was tried
            return bad
    raise AssertionError("the handler executes more than 200 lines")


@pytest.fixture
def restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_second_signal_anywhere_inside_the_handler_neither_deadlocks_nor_is_lost(restore_signals):
    def make():
        stop = StopSignals()
        return signal.getsignal(signal.SIGINT), lambda: stop.requested

    assert _survives_nesting_everywhere(make) == []


def test_the_check_catches_the_event_handler_that_deadlocked_a_node_under_launch():
    # The perception node's handler before: `threading.Event.set` holds a plain Lock, so a second Ctrl-C
    # SIGINT inside it blocked the main thread for good (launch killed the node after SIGTERM).
    def make():
        event = threading.Event()
        return (lambda *_: event.set()), event.is_set

    assert _survives_nesting_everywhere(make, first_only=True) != []


def test_sigint_and_sigterm_request_the_stop_and_nothing_else(restore_signals):
    for sig in (signal.SIGINT, signal.SIGTERM):
        stop = StopSignals()
        assert not stop.requested
        os.kill(os.getpid(), sig)  # delivered to the main thread (this one) before kill returns here
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary: pending handlers have run
        assert stop.requested, sig
