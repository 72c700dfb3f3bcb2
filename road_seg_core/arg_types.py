"""argparse value types shared by the commands: a wrong value is one usage line naming the flag and the value.

argparse turns a ValueError raised by a `type=` function into ``argument --flag: invalid <name> value: '<text>'``,
so a negative count never reaches the code as a silent default or an IndexError, and a zero frame count never
runs a benchmark for minutes before failing on its empty statistics.
"""
from __future__ import annotations

import math

__all__ = ["non_negative_float", "non_negative_int", "positive_float", "positive_int"]


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
