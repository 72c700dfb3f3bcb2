"""Per-parameter rules of the perception node: type, length, range and allowed values, checked one by one.

The node's parameters come from a parameters file, `-p NAME:=VALUE` on the
command line, a launch file, or (for the bag tools) the same YAML read without
ROS. Each value is checked here against its default's type and the rules
below, so a bad value stops the start with one line naming the parameter and
the value, wherever it came from. Rules that relate several parameters (e.g.
min_depth < max_depth) are checked on the whole configuration (node_config).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from road_seg_core.preprocess import DEPTH_SOURCES
from road_seg_core.thermal import _MODES as THERMAL_MODES

_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)$")


class ParameterError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter and the value."""


@dataclass(frozen=True)
class Rule:
    """What a parameter accepts beyond its type: a bound, a set of values, a pattern."""

    test: Callable[[Any], bool]
    expected: str  # said when the test fails, e.g. "> 0"


def _at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f">= {low:g}")


def _above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"> {low:g}")


def _one_of(*values: str) -> Rule:
    return Rule(lambda v: v in values, "one of " + ", ".join(repr(v) for v in values))


_QOS_INPUTS = ("left", "right", "depth", "disparity", "thermal")

#: Rules by parameter name (the dotted path in PerceptionConfig); parameters not listed accept any value of
#: their type. Topic names must not be empty unless the input is unused, which plan_inputs checks.
RULES: dict[str, Rule] = {
    "device": Rule(lambda v: bool(_DEVICE.match(v)), "auto, cpu, cuda or cuda:N"),
    "precision": _one_of("", "fp32", "fp16", "int8"),
    "threads": _at_least(0),
    "depth_source": _one_of(*DEPTH_SOURCES),
    "min_depth": _at_least(0),
    "max_depth": _above(0),
    "diagnostics_period": _above(0),
    "log_throttle": _at_least(0),
    "sync.queue_size": _at_least(1),
    "sync.slop": _above(0),
    "sync.sensor_timeout": _at_least(0),
    "thermal.mode": _one_of(*THERMAL_MODES),
    "thermal.percentiles": Rule(lambda v: all(0 <= x <= 100 for x in v) and v[0] < v[1],
                                "two percentiles with 0 <= low < high <= 100"),
    "thermal.range": Rule(lambda v: v[0] < v[1], "two values, low < high"),
    **{f"qos.{k}.reliability": _one_of("reliable", "best_effort") for k in _QOS_INPUTS},
    **{f"qos.{k}.depth": _at_least(1) for k in _QOS_INPUTS},
}


def _kind(value: Any) -> str:
    """How the user's value reads, in ROS parameter terms."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return f"array of {len(value)}"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(name: str, value: Any, expected: str) -> ParameterError:
    return ParameterError(f"parameter {name}: expected {expected}, got {value!r} ({_kind(value)})")


def check_parameter(name: str, value: Any, default: Any) -> Any:
    """`value` converted to the type of `default` (an integer is a fine double); ParameterError if it is not
    of that type, has another length than the default's list, or breaks the parameter's rule."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _fail(name, value, "true or false")
    elif isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(name, value, "an integer")
    elif isinstance(default, float):
        if not _is_number(value) or not math.isfinite(value):
            raise _fail(name, value, "a finite number")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise _fail(name, value, "a string")
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) and math.isfinite(v) for v in value):
            raise _fail(name, value, f"an array of {len(default)} numbers")
        if len(value) != len(default):
            raise _fail(name, value, f"{len(default)} numbers")
        value = [float(v) for v in value]
    rule = RULES.get(name)
    if rule is not None and not rule.test(value):
        raise _fail(name, value, rule.expected)
    return value
