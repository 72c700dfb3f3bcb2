"""Ctrl-C ends a process once: the first SIGINT raises KeyboardInterrupt, later ones are ignored.

`ros2 launch` forwards SIGINT to every child, and a terminal's Ctrl-C reaches the
whole process group as well, so a node usually gets two SIGINTs a few
milliseconds apart. Python's default handler would raise the second
KeyboardInterrupt in the middle of `destroy_node` (a traceback and exit code -2
instead of a clean exit); after the first one the shutdown must run to the end.
"""
from __future__ import annotations

import signal
from types import FrameType


def _first_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def interrupt_once() -> None:
    """Install the handler; call it in the main thread before `rclpy.init` (rclpy chains to it)."""
    signal.signal(signal.SIGINT, _first_interrupt)
