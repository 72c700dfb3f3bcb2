"""Per-parameter rules of the perception node: type, length, range and allowed values, checked one by one.

The node's parameters come from a parameters file, `-p NAME:=VALUE` on the
command line, a launch file, or (for the bag tools) the same YAML read without
ROS. Each value is checked here against its default's type and the rules
below, so a bad value stops the start with one line naming the parameter and
the value, wherever it came from. Rules that relate several parameters (e.g.
min_depth < max_depth) are checked on the whole configuration (node_config).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from road_seg_core.preprocess import DEPTH_SOURCES
from road_seg_core.thermal import _MODES as THERMAL_MODES

_INT = re.compile(r"[-+]?\d+$")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
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


def parse_override(text: str) -> Any:
    """The value of a command-line `-p NAME:=VALUE` as rcl reads it (YAML: 3 is an integer, 3.0 a double,
    [1, 2] an array, true a bool, anything else a string)."""
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # numbers YAML 1.1 leaves as text but rcl reads as numbers (1e3, +2)
        if _INT.match(value):
            return int(value)
        if _FLOAT.match(value):
            return float(value)
    return "" if value is None else value


# -- the command line, before rcl reads it ------------------------------------------------------------------------
#: Parameters rclpy declares on every node itself.
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")
#: ROS arguments that take one value (rcl's list); the others are flags.
_WITH_VALUE = {"-r", "--remap", "-p", "--param", "--params-file", "-e", "--enclave", "--log-level",
               "--log-config-file", "--log-file-name"}


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"sync": {"slop": 0.1}} -> {"sync.slop": 0.1}: parameter names as the node declares them."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_dict(v, key + "."))
        else:
            out[key] = v
    return out


def _ros_arguments(argv: list[str]) -> list[tuple[str, str]]:
    """(flag, value) pairs inside `--ros-args ... [--]` sections."""
    pairs, inside, i = [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside and arg in _WITH_VALUE:
            pairs.append((arg, argv[i + 1] if i + 1 < len(argv) else ""))
            i += 1
        i += 1
    return pairs


def _check_one(name: str, value: Any, defaults: dict[str, Any], node_name: str, where: str,
               others_too: bool = False) -> None:
    """One parameter given to this node; `others_too`: given to every node (an unknown name is someone else's)."""
    if name in defaults:
        try:
            check_parameter(name, value, defaults[name])
        except ParameterError as exc:
            raise ParameterError(f"{exc}, given by {where}") from None
    elif not others_too and name not in BUILTIN_PARAMETERS and not name.startswith("qos_overrides."):
        close = difflib.get_close_matches(name, list(defaults), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(sorted(defaults))}"
        raise ParameterError(f"parameter {name}: {node_name} has no such parameter, given by {where}; {hint}")


def _applies_to(section: str, node_name: str) -> bool:
    """Whether a parameters-file section ('/**', 'road_seg', '/ns/road_seg', '/**/road_seg') is this node's."""
    return section.strip() in ("/**", "**") or section.rstrip("/").split("/")[-1] == node_name


def check_ros_arguments(argv: list[str], defaults: dict[str, Any], node_name: str) -> None:
    """Check what the command line gives the node before rcl parses it: every `--params-file` exists and is a
    parameters file whose entries for this node are known and valid; every `-p NAME:=VALUE` for this node
    names a parameter it has, with a valid value. (A `-p` that a node-specific file entry overrides would
    otherwise be dropped in silence.) ParameterError with one line otherwise."""
    import yaml

    pairs = _ros_arguments(argv)
    for flag, value in pairs:
        if flag in ("-r", "--remap") and value.startswith("__node:="):
            node_name = value.split(":=", 1)[1]
    for flag, value in pairs:
        if flag in ("-p", "--param"):
            target, sep, text = value.partition(":=")
            if not sep or not target:
                raise ParameterError(f"{flag} expects NAME:=VALUE, got {value!r}")
            node, _, name = target.rpartition(":")
            if node and node.rstrip("/").split("/")[-1] != node_name:
                continue  # meant for another node
            _check_one(name, parse_override(text), defaults, node_name, f"{flag} {value}")
        elif flag == "--params-file":
            path = value
            try:
                with open(path, encoding="utf-8") as f:
                    doc = yaml.safe_load(f)
            except FileNotFoundError:
                raise ParameterError(f"--params-file {path}: no such file") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ParameterError(f"--params-file {path}: cannot read it ({exc})") from None
            except yaml.YAMLError as exc:
                problem = " ".join(str(exc).split())
                raise ParameterError(f"--params-file {path}: not valid YAML ({problem})") from None
            if not isinstance(doc, dict):
                raise ParameterError(f"--params-file {path}: expected '<node name>: ros__parameters: ...', "
                                     f"got {type(doc).__name__}")
            for section, body in doc.items():
                if not _applies_to(str(section), node_name):
                    continue
                params = body.get("ros__parameters") if isinstance(body, dict) else None
                if not isinstance(params, dict):
                    raise ParameterError(f"--params-file {path}: section {section!r} has no ros__parameters")
                for name, v in flatten_dict(params).items():
                    _check_one(name, v, defaults, node_name, f"--params-file {path} (section {section})",
                               others_too=str(section).strip() in ("/**", "**"))
