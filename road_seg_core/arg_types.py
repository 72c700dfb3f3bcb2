"""argparse value types shared by the commands: a wrong value is one usage line naming the flag and the value.

argparse turns a ValueError raised by a `type=` function into ``argument --flag: invalid <name> value: '<text>'``,
so a negative count never reaches the code as a silent default or an IndexError.
"""
from __future__ import annotations

__all__ = ["non_negative_int"]


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a count, a thread number where 0 means the library's default)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value
