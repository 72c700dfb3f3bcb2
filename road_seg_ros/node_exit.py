"""How a node process ends: Ctrl-C is handled once, and a clean shutdown exits without interpreter teardown.

`ros2 launch` forwards SIGINT to every child, and a terminal's Ctrl-C reaches the
whole process group as well, so a node usually gets two SIGINTs a few
milliseconds apart. Python's default handler would raise the second
KeyboardInterrupt in the middle of `destroy_node` (a traceback and exit code -2
instead of a clean exit); after the first one the shutdown must run to the end.

Once the node is destroyed and rclpy shut down, nothing is left to release, but
Python's own teardown of torch, OpenCV and friends takes seconds on a loaded
CPU -- longer than the 5 s `ros2 launch` waits before it escalates to SIGTERM.

A node that must finish its work before it stops (the perception node's worker
publishes the set it is on) asks with `StopSignals` instead of an exception.
"""
from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn


def _first_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def interrupt_once() -> None:
    """Install the handler; call it in the main thread before `rclpy.init` (rclpy chains to it)."""
    signal.signal(signal.SIGINT, _first_interrupt)


class StopSignals:
    """SIGINT and SIGTERM ask the main loop to stop: `requested` turns True, and nothing else happens.

    The handler runs between two bytecodes of the main thread -- also inside itself, when the second SIGINT
    of a Ctrl-C under launch lands while the first is handled -- so it takes no lock: `threading.Event.set`
    there deadlocks (its lock is held by the handler the second signal interrupted), and the process then
    ignores every later signal until launch kills it.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.requested = False
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def end_process(code: int) -> NoReturn:
    """Exit now with `code`, after flushing stdout/stderr; only for a node's main once it has shut down."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
