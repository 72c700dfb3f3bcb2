"""The node's command line, checked before rcl parses it.

rcl reads `--ros-args` inside `rclpy.init`: a missing `--params-file` stops it
with "Failed to parse global arguments", and a `-p NAME:=VALUE` that a
node-specific entry of a parameters file outranks is dropped in silence. So
the node's main() first gathers what the command line gives this node (every
parameters file's sections for it, every `-p` for it), checks the names, and
builds the configuration from them with the same rules the node applies to
its declared parameters; a problem is one line naming the parameter, the
value and where it was given.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from road_seg_core.node_config import NODE_NAME, PerceptionConfig, flatten_params

#: Parameters rclpy declares on every node itself.
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")
#: ROS arguments that take one value (rcl's list); the others are flags.
_WITH_VALUE = {"-r", "--remap", "-p", "--param", "--params-file", "-e", "--enclave", "--log-level",
               "--log-config-file", "--log-file-name"}
_INT = re.compile(r"[-+]?\d+$")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_WILDCARDS = ("/**", "**")


class ArgumentError(ValueError):
    """The command line gives the node something it cannot run with; one line naming it."""


@dataclass(frozen=True)
class Given:
    """A parameter value from the command line, where it was given, and whether for every node ('/**')."""

    value: Any
    where: str
    every_node: bool = False


def parse_override(text: str) -> Any:
    """The value of `-p NAME:=VALUE` as rcl reads it (YAML: 3 an integer, 3.0 a double, [1, 2] an array,
    true a bool, anything else a string)."""
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


def ros_arguments(argv: list[str]) -> list[tuple[str, str]]:
    """(flag, value) pairs of the flags that take a value, inside `--ros-args ... [--]` sections."""
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


def _last_name(path: str) -> str:
    return path.strip().rstrip("/").split("/")[-1]


def _read_params_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise ArgumentError(f"--params-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"--params-file {path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise ArgumentError(f"--params-file {path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict):
        raise ArgumentError(f"--params-file {path}: expected '<node name>: ros__parameters: ...', "
                            f"got {type(doc).__name__}")
    return doc


def given_parameters(argv: list[str], node_name: str = NODE_NAME) -> dict[str, Given]:
    """Parameter name -> (value, where it was given) for this node: parameters files in order, then `-p`."""
    pairs = ros_arguments(argv)
    for flag, value in pairs:
        if flag in ("-r", "--remap") and value.startswith("__node:="):
            node_name = value.split(":=", 1)[1]
    given: dict[str, Given] = {}
    for flag, value in pairs:
        if flag != "--params-file":
            continue
        for section, body in _read_params_file(value).items():
            section = str(section)
            if section.strip() not in _WILDCARDS and _last_name(section) != node_name:
                continue
            params = body.get("ros__parameters") if isinstance(body, dict) else None
            if not isinstance(params, dict):
                raise ArgumentError(f"--params-file {value}: section {section!r} has no ros__parameters")
            wildcard = section.strip() in _WILDCARDS
            for name, v in flatten_params(params).items():
                given[name] = Given(v, f"--params-file {value} (section {section})", wildcard)
    for flag, value in pairs:
        if flag not in ("-p", "--param"):
            continue
        target, sep, text = value.partition(":=")
        if not sep or not target:
            raise ArgumentError(f"{flag} expects NAME:=VALUE, got {value!r}")
        node, _, name = target.rpartition(":")
        if node and _last_name(node) != node_name:
            continue  # meant for another node
        given[name] = Given(parse_override(text), f"{flag} {value}")
    return given


def check_ros_arguments(argv: list[str], node_name: str = NODE_NAME) -> PerceptionConfig:
    """The configuration the command line gives this node, or ArgumentError (one line) unless every parameter
    it gives is one the node has and PerceptionConfig accepts them all together."""
    given = given_parameters(argv, node_name)
    known = PerceptionConfig().flat()
    values: dict[str, Any] = {}
    for name, item in given.items():
        if name in known:
            values[name] = item.value
        elif item.every_node or name in BUILTIN_PARAMETERS or name.startswith("qos_overrides."):
            continue  # a '/**' section is every node's: a name this one does not have is another's
        else:
            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
            raise ArgumentError(f"parameter {name}: {node_name} has no such parameter, given by {item.where}; "
                                f"{hint}")
    try:
        return PerceptionConfig.from_flat(values)
    except ValueError as exc:
        message = str(exc)
        named = sorted((message.find(n), -len(n), n) for n in values if n in message)
        where = f", given by {given[named[0][2]].where}" if named else ""
        raise ArgumentError(f"{message}{where}") from None
