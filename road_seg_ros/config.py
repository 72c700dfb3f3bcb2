"""The perception node's configuration: one dataclass tree, read from ROS parameters or the same YAML file.

The bag evaluator reads config/perception.yaml through `PerceptionConfig.from_yaml`
without ROS, so the topics and sync settings it evaluates are the car's.
Parameter names are the dotted paths of the tree (e.g. `topics.left`, `sync.slop`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from road_seg_core.node_args import flatten_params
from road_seg_core.node_params import ParameterError, check_parameter
from road_seg_core.preprocess import PreprocessConfig
from road_seg_core.thermal import ThermalConfig

NODE_NAME = "road_seg"


@dataclass
class Topics:
    """Input topics; defaults are the ZED ROS 2 wrapper v5 names and a FLIR Boson driver."""

    left: str = "/zed/zed_node/left/color/rect/image"
    right: str = "/zed/zed_node/right/color/rect/image"
    depth: str = "/zed/zed_node/depth/depth_registered"
    disparity: str = "/zed/zed_node/disparity/map"
    left_info: str = "/zed/zed_node/left/color/rect/camera_info"
    right_info: str = "/zed/zed_node/right/color/rect/camera_info"
    thermal: str = "/flir_boson/image_raw"


@dataclass
class TopicQos:
    reliability: str = "reliable"  # "reliable" | "best_effort"
    depth: int = 2


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


@dataclass
class SyncSettings:
    queue_size: int = 10
    slop: float = 0.05  # seconds; a ZED at 60 Hz and a Boson at 30 Hz need about half a Boson period
    offsets: SyncOffsets = field(default_factory=SyncOffsets)
    #: Seconds (of left-image stamps) an input other than the left may be silent before sets go on without it
    #: (the model sees it as absent); 0 waits for every input forever, as message_filters does.
    sensor_timeout: float = 1.0


@dataclass
class ThermalSettings:
    mode: str = "percentile"  # "fixed" (radiometric counts) | "percentile" (per frame)
    range: list[float] = field(default_factory=lambda: [7000.0, 9000.0])
    percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    # 3x3, row-major, thermal pixel -> left image pixel
    homography: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])


@dataclass
class PerceptionConfig:
    model: str = ""  # checkpoint (.pt) path; empty = the bundled demo model
    backend: str = "torch"  # torch | onnxruntime | tensorrt
    device: str = "auto"  # auto | cpu | cuda
    precision: str = ""  # "" = the backend's default (fp16 on CUDA); fp32 | fp16 | int8 (tensorrt)
    threads: int = 0  # CPU inference threads (torch, onnxruntime); 0 = the library's default
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
    thermal: ThermalSettings = field(default_factory=ThermalSettings)

    # -- conversions --------------------------------------------------------------------------------------------
    def preprocess_config(self) -> PreprocessConfig:
        t = self.thermal
        thermal = ThermalConfig(mode=t.mode, fixed_range=tuple(t.range), percentiles=tuple(t.percentiles),
                                homography=[list(map(float, t.homography[i:i + 3])) for i in (0, 3, 6)])
        return PreprocessConfig(depth_source=self.depth_source, min_depth_m=self.min_depth,
                                max_depth_m=self.max_depth, thermal=thermal)

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
        cfg = cls()
        known = cfg.flat()
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown parameter {name!r}; known: {', '.join(sorted(known))}")
            _set_path(cfg, name.split("."), check_parameter(name, value, known[name]))
        validate(cfg)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, node_name: str = NODE_NAME) -> "PerceptionConfig":
        """Read a ROS 2 parameters file (`<node>: ros__parameters: {...}`, nested or dotted keys)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"parameters file not found: {path}")
        doc = yaml.safe_load(path.read_text()) or {}
        section = doc.get(node_name) or doc.get(f"/{node_name}") or doc.get("/**") or {}
        params = section.get("ros__parameters", {})
        return cls.from_flat(flatten_params(params))


def validate(cfg: PerceptionConfig) -> None:
    """What relates several parameters (each one alone is checked by road_seg_core.node_params)."""
    if cfg.precision == "int8" and cfg.backend != "tensorrt":
        raise ParameterError(f"parameter precision: int8 needs backend tensorrt, got backend {cfg.backend!r}")
    if cfg.min_depth >= cfg.max_depth:
        raise ParameterError(f"parameters min_depth and max_depth: need min_depth < max_depth, got "
                             f"{cfg.min_depth:g} and {cfg.max_depth:g}")
    try:
        cfg.preprocess_config()
    except ValueError as exc:  # what is left after the rules: a singular thermal.homography
        where = "parameter thermal.homography" if "homography" in str(exc) else "preprocessing parameters"
        raise ParameterError(f"{where}: {exc}") from None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _set_path(obj: Any, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        obj = getattr(obj, part)
    setattr(obj, path[-1], value)
