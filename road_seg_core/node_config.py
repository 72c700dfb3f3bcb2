"""The perception node's configuration: one dataclass tree, read from ROS parameters or the same YAML file.

The bag evaluator reads config/perception.yaml through `PerceptionConfig.from_yaml`
without ROS, so the topics and sync settings it evaluates are the car's.
Parameter names are the dotted paths of the tree (e.g. `topics.left`, `sync.slop`).

One validation style: every section validates itself when it is constructed
(`__post_init__`, ValueError naming the field and the value), and `from_flat`
builds the tree by constructing each section from the parameters, prefixing
the error with the section's path, so a bad value is one line naming the
parameter. Thermal settings are `thermal.ThermalConfig` itself (parameters
`thermal.range` = `fixed_range`, `thermal.homography` = 9 values, row-major).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from road_seg_core.pothole_filter import PotholeFilterConfig
from road_seg_core.preprocess import PreprocessConfig
from road_seg_core.sensor_spec import Topics
from road_seg_core.thermal import ThermalConfig

NODE_NAME = "road_seg"
RELIABILITIES = ("reliable", "best_effort")
PRECISIONS = ("", "fp32", "fp16", "int8")
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)$")

__all__ = ["NODE_NAME", "PerceptionConfig", "flatten_params",
           "QosSettings", "SyncOffsets", "SyncSettings", "TopicQos", "Topics"]


@dataclass
class TopicQos:
    reliability: str = "reliable"  # "reliable" | "best_effort"
    depth: int = 2

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITIES:
            raise ValueError(f"reliability must be reliable or best_effort, got {self.reliability!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")


@dataclass
class QosSettings:
    """Per-input QoS. The ZED wrapper publishes reliable; Boson drivers usually best-effort."""

    left: TopicQos = field(default_factory=TopicQos)
    right: TopicQos = field(default_factory=TopicQos)
    depth: TopicQos = field(default_factory=TopicQos)
    disparity: TopicQos = field(default_factory=TopicQos)
    thermal: TopicQos = field(default_factory=lambda: TopicQos("best_effort", 2))


@dataclass
class SyncOffsets:
    """Seconds added to each input's stamp before matching (a sensor with a known latency)."""

    left: float = 0.0
    right: float = 0.0
    depth: float = 0.0
    disparity: float = 0.0
    thermal: float = 0.0


SYNC_POLICIES = ("left", "approximate", "message_filters")


@dataclass
class SyncSettings:
    #: "left": every left image gets a set, inputs that do not join in time are absent (road_seg_core.left_sync);
    #: "approximate": message_filters' ApproximateTimeSynchronizer rule, a set only when every input matches;
    #: "message_filters": the real ROS 2 message_filters package runs that rule (road_seg_core.mf_sync; needs it
    #: installed; no offsets, sensor_timeout 0).
    policy: str = "left"
    queue_size: int = 10
    slop: float = 0.05  # seconds; a ZED at 60 Hz and a Boson at 30 Hz need about half a Boson period
    offsets: SyncOffsets = field(default_factory=SyncOffsets)
    #: Seconds (of left-image stamps) an input other than the left may be silent before sets go on without it
    #: (the model sees it as absent); 0: never (the approximate policy then waits for every input forever, as
    #: message_filters does).
    sensor_timeout: float = 1.0
    #: "left" policy: stamp time a set waits for inputs that have not joined; 0 = 0.75 of the left image period.
    max_wait: float = 0.0
    #: "left" policy: an input's stamp further than this from the left clock is impossible and rejected.
    stamp_window: float = 2.0

    def __post_init__(self) -> None:
        if self.policy not in SYNC_POLICIES:
            raise ValueError(f"policy must be one of {', '.join(SYNC_POLICIES)}, got {self.policy!r}")
        if not self.max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 s, got {self.max_wait}")
        if not self.stamp_window > 0:
            raise ValueError(f"stamp_window must be > 0 s, got {self.stamp_window}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        if not self.slop > 0:
            raise ValueError(f"slop must be > 0 s, got {self.slop}")
        if not self.sensor_timeout >= 0:
            raise ValueError(f"sensor_timeout must be >= 0 s, got {self.sensor_timeout}")
        if self.policy == "message_filters":
            self._check_message_filters()

    def _check_message_filters(self) -> None:
        """message_filters has neither per-input offsets nor a sensor timeout: refuse them rather than ignore them."""
        if self.sensor_timeout != 0:
            raise ValueError(f"sensor_timeout must be 0 when sync.policy is message_filters (it waits for every "
                             f"input and has no timeout), got {self.sensor_timeout:g}")
        for f in fields(self.offsets):
            value = getattr(self.offsets, f.name)
            if value != 0:
                raise ValueError(f"offsets.{f.name} must be 0 when sync.policy is message_filters (it has no "
                                 f"per-input offsets), got {value:g}")


@dataclass
class PerceptionConfig:
    model: str = ""  # checkpoint (.pt) path; empty = the bundled demo model
    backend: str = "torch"  # torch | onnxruntime | tensorrt
    device: str = "auto"  # auto | cpu | cuda
    precision: str = ""  # "" = the backend's default (fp16 on CUDA); fp32 | fp16 | int8 (tensorrt)
    threads: int = 0  # CPU inference threads (torch, onnxruntime); 0 = the library's default
    preprocess_threads: int = 1  # OpenCV threads for the per-frame host work; 0 = OpenCV's default (all cores)
    build_only: bool = False  # build/cache the engine (e.g. TensorRT) and exit: prebuild on the car
    depth_source: str = "depth"  # depth | disparity | stereo
    min_depth: float = 0.3
    max_depth: float = 40.0
    use_cv_bridge: bool = True
    diagnostics_period: float = 1.0
    log_throttle: float = 5.0  # seconds between repeated warnings for the same topic and reason
    topics: Topics = field(default_factory=Topics)
    qos: QosSettings = field(default_factory=QosSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    #: `obstacles.*`: which predicted pothole blobs are published (depth verification, confirmation over frames).
    obstacles: PotholeFilterConfig = field(default_factory=PotholeFilterConfig)

    def __post_init__(self) -> None:
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: the library's default), got {self.threads}")
        if self.preprocess_threads < 0:
            raise ValueError(f"preprocess_threads must be >= 0 (0: OpenCV's default), got {self.preprocess_threads}")
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"min_depth and max_depth must satisfy 0 <= min_depth < max_depth, got "
                             f"{self.min_depth:g} and {self.max_depth:g}")
        if not self.diagnostics_period > 0:
            raise ValueError(f"diagnostics_period must be > 0 s, got {self.diagnostics_period}")
        if not self.log_throttle >= 0:
            raise ValueError(f"log_throttle must be >= 0 s, got {self.log_throttle}")
        self.preprocess_config()  # raises on a bad depth source
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be empty, fp32, fp16 or int8, got {self.precision!r}")
        if self.precision == "int8" and self.backend != "tensorrt":
            raise ValueError(f"precision int8 needs backend tensorrt, got backend {self.backend!r}")

    # -- conversions --------------------------------------------------------------------------------------------
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(depth_source=self.depth_source, min_depth_m=self.min_depth,
                                max_depth_m=self.max_depth, thermal=self.thermal,
                                opencv_threads=self.preprocess_threads)

    def engine_options(self) -> dict[str, Any]:
        """Backend-specific keyword arguments for road_seg_core.engines.create_engine."""
        options: dict[str, Any] = {}
        if self.threads > 0 and self.backend in ("torch", "onnxruntime"):
            options["threads"] = self.threads
        if self.precision and self.backend == "tensorrt":
            options["precision"] = self.precision
        elif self.precision and self.backend == "torch":
            options["fp16"] = self.precision == "fp16"
        return options

    def flat(self) -> dict[str, Any]:
        """{"topics.left": ..., ...}: the ROS parameter names and their values."""
        return _flatten(self)

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "PerceptionConfig":
        """Build and validate from ROS parameter values (any subset; the rest keep their defaults)."""
        known = cls().flat()
        for name in values:
            if name not in known:
                raise ValueError(f"unknown parameter {name!r}; known: {', '.join(sorted(known))}")
        return _build(cls(), values, "")

    @classmethod
    def from_yaml(cls, path: str | Path, node_name: str = NODE_NAME) -> "PerceptionConfig":
        """Read a ROS 2 parameters file (`<node>: ros__parameters: {...}`, nested or dotted keys)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"parameters file not found: {path}")
        doc = yaml.safe_load(path.read_text()) or {}
        section = (doc.get(node_name) or doc.get(f"/{node_name}") or doc.get(f"/**/{node_name}") or doc.get("/**")
                   or {})
        params = section.get("ros__parameters", {})
        return cls.from_flat(flatten_params(params))


# -- parameters <-> the tree ----------------------------------------------------------------------------------------
def _params_of(section: Any) -> dict[str, Any]:
    """A section's parameters (name within the section -> value or sub-section), in declaration order."""
    if isinstance(section, ThermalConfig):
        return {"mode": section.mode, "range": list(section.fixed_range), "percentiles": list(section.percentiles),
                "min_span": float(section.min_span),
                "homography": [float(v) for row in section.homography for v in row]}
    return {f.name: getattr(section, f.name) for f in fields(section)}


def _construct(default: Any, values: dict[str, Any]) -> Any:
    if isinstance(default, ThermalConfig):
        h = values["homography"]  # 9 values: _coerce checks a list's length against the default's
        return ThermalConfig(mode=values["mode"], fixed_range=values["range"], percentiles=values["percentiles"],
                             min_span=values["min_span"], homography=[h[0:3], h[3:6], h[6:9]])
    return type(default)(**values)


def _build(default: Any, flat: dict[str, Any], prefix: str) -> Any:
    values: dict[str, Any] = {}
    for name, current in _params_of(default).items():
        key = prefix + name
        if is_dataclass(current):
            values[name] = _build(current, flat, key + ".")
        else:
            values[name] = _coerce(current, flat[key], key) if key in flat else current
    try:
        return _construct(default, values)
    except ValueError as exc:
        message = str(exc)
        if isinstance(default, ThermalConfig):  # the parameter is thermal.range, the field fixed_range
            message = message.replace("fixed_range", "range")
        if prefix and not message.startswith(prefix):
            raise ValueError(f"{prefix}{message}") from None
        raise ValueError(message) from None


def _kind(value: Any) -> str:
    """How a value reads in ROS parameter terms (what the user gave)."""
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
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _coerce(current: Any, value: Any, key: str) -> Any:
    """`value` as the type of the default `current` (an integer is a fine double), else ValueError naming `key`
    and the value: no silent bool("false") or int(1.5)."""
    def fail(expected: str) -> ValueError:
        return ValueError(f"{key} must be {expected}, got {value!r} ({_kind(value)})")

    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if isinstance(current, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("an integer")
        return value
    if isinstance(current, float):
        if not _is_number(value):
            raise fail("a finite number")
        return float(value)
    if isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
            raise fail(f"an array of {len(current)} numbers")
        if len(value) != len(current):
            raise fail(f"{len(current)} numbers")
        return [float(v) for v in value]
    if isinstance(current, str):
        if not isinstance(value, str):
            raise fail("a string")
        return value
    return value


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in _params_of(obj).items():
        key = f"{prefix}{name}"
        if is_dataclass(value):
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def flatten_params(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"sync": {"slop": 0.1}} -> {"sync.slop": 0.1}: a parameters file's entries as the node declares them."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(v, key + "."))
        else:
            out[key] = v
    return out
