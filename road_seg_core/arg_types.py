"""argparse value types shared by the commands: a wrong value is one usage line naming the flag and the value.

argparse turns a ValueError raised by a `type=` function into ``argument --flag: invalid <name> value: '<text>'``,
so a negative count never reaches the code as a silent default or an IndexError, and a zero frame count never
runs a benchmark for minutes before failing on its empty statistics.
"""
from __future__ import annotations

import math

__all__ = ["check_image_size", "non_negative_float", "non_negative_int", "positive_float", "positive_int"]


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a count, a thread number where 0 means the library's default)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (frames, iterations, a batch)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a duration, a rate)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (minutes of an optional run, where 0 means none)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(text)
    return value


def check_image_size(flags: str, width: int, height: int) -> None:
    """The simulator's size rule (`synthetic.render.check_size`) for an image size given on the command line;
    ValueError prefixed with the flags as the user typed them (e.g. ``--width 8 --height 360``)."""
    from road_seg_core.synthetic.render import check_size  # imported here: rendering is heavy, argparse is not

    try:
        check_size(width, height)
    except ValueError as exc:
        raise ValueError(f"{flags}: {exc}") from None
