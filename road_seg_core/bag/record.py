"""`road-seg sim --record OUT`: synthetic drives written straight to a rosbag2, no ROS install needed.

The bag holds what `sim_sensors` publishes, message for message: the same
topics (taken from the node's parameters file, ZED ROS 2 wrapper v5 and FLIR
Boson names by default), types, encodings and frame ids --
left/right colour `bgra8`, depth `32FC1` metres (NaN holes), thermal `mono16`
counts, left/right `CameraInfo` (the right one with Tx = -fx*B), optionally
`stereo_msgs/DisparityImage` (`--disparity`), ground truth on `/sim/labels`
(`mono8` class ids, the left image's header) and which pothole each pothole pixel
belongs to on `/sim/pothole_ids` (`mono16`, 0 = none) -- with the same per-topic stamps:
left, labels, pothole ids and both camera_info carry the frame's stamp, right/depth/
disparity/thermal that stamp plus Gaussian jitter (`--jitter-ms`), and any
sensor may drop frames (`--drop-rate`) to exercise synchronisation.

Each frame's lighting condition goes on `/sim/condition` (std_msgs/String,
"day" | "night" | "fog"), recorded at exactly the left image's stamp, so
`road-seg eval-bag` can break metrics down per condition: a frame's condition
is the last one recorded at or before its left stamp. The recorder's settings
are in the bag's metadata (custom_data `road_seg.sim`, JSON).

Recording (log) times are the publication times a live recorder would see:
frame i is published at start + i/rate in sim_sensors' order (condition,
camera_info, left, right, depth, disparity, thermal, labels, pothole ids), 1 us apart, so
`ros2 bag play BAG --clock` replays the drive in real time and readers of
either storage see one unambiguous order.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from road_seg_core.arg_types import positive_int
from road_seg_core.errors import UserError
from road_seg_core.bag import msgs
from road_seg_core.bag.bagio import STORAGES, BagError, open_writer
from road_seg_core.node_config import PerceptionConfig
from road_seg_core.sensor_spec import (CONDITION_TOPIC, DROPPABLE, GT_TOPIC, JITTERED, POTHOLE_IDS_TOPIC, RIGHT_FRAME,
                                      Topics, jitter_ns, scene_messages)
from road_seg_core.synthetic import CONDITIONS, SceneStream, SyntheticScene

METADATA_KEY = "road_seg.sim"
#: 2024-01-01T00:00:00Z: a fixed default start keeps a recording reproducible byte for byte.
DEFAULT_START_S = 1_704_067_200.0
_PUBLISH_SPACING_NS = 1_000


@dataclass
class SimRecording:
    """What to record; defaults mirror config/sim_sensors.yaml except the image size (640x360 keeps bags small)."""

    frames: int = 100
    rate: float = 10.0
    width: int = 640
    height: int = 360
    seed: int = 0
    conditions: tuple[str, ...] = ("day", "night", "fog")
    frames_per_condition: int | None = None  # None: the drive is split evenly between the conditions
    storage: str = "mcap"
    topics: Topics = field(default_factory=Topics)
    jitter_ms: dict[str, float] = field(default_factory=lambda: {"thermal": 3.0})
    drop_rate: dict[str, float] = field(default_factory=dict)
    publish_right: bool = True
    publish_disparity: bool = False
    start_s: float = DEFAULT_START_S

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {self.frames}")
        if not self.rate > 0:
            raise ValueError(f"--rate must be > 0, got {self.rate}")
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad or not self.conditions:
            raise ValueError(f"unknown condition(s) {bad}; known: {', '.join(CONDITIONS)}")
        if self.storage not in STORAGES:
            raise ValueError(f"unknown storage {self.storage!r}; known: {', '.join(sorted(STORAGES))}")
        for name, table, keys in (("--jitter-ms", self.jitter_ms, JITTERED), ("--drop-rate", self.drop_rate,
                                                                              DROPPABLE)):
            unknown = sorted(set(table) - set(keys))
            if unknown:
                raise ValueError(f"{name}: unknown input(s) {unknown}; known: {', '.join(keys)}")
        if any(v < 0 for v in self.jitter_ms.values()) or any(not 0 <= v <= 1 for v in self.drop_rate.values()):
            raise ValueError("jitter must be >= 0 ms and drop rates in [0, 1] (1: a dead sensor)")

    @property
    def condition_run(self) -> int:
        """Consecutive frames per condition."""
        if self.frames_per_condition:
            return self.frames_per_condition
        return max(1, math.ceil(self.frames / len(self.conditions)))

    def stamp_ns(self, index: int) -> int:
        """Left stamp of frame `index`."""
        return round(self.start_s * 1e9) + round(index * 1e9 / self.rate)

    def scene_stream(self) -> SceneStream:
        """The drive this recording renders (ego motion matched to the frame rate)."""
        return SceneStream(seed=self.seed, width=self.width, height=self.height, conditions=self.conditions,
                           fps=self.rate, frames_per_condition=self.condition_run)


@dataclass
class FrameMessages:
    """One frame's messages in publication order: (key, topic, message) with stamps already set."""

    condition: str
    left_stamp_ns: int
    messages: list[tuple[str, str, Any]]


def frame_messages(scene: SyntheticScene, left_stamp: int, rec: SimRecording,
                   rng: np.random.Generator) -> FrameMessages:
    """Encode one scene (`sensor_spec.scene_messages`, as sim_sensors does) with the stamps it has at `left_stamp`."""
    t = rec.topics
    scene_msgs = scene_messages(scene, rec.publish_disparity, with_right=rec.publish_right)
    images, intr, left_frame = scene_msgs.images, scene_msgs.intrinsics, scene_msgs.left_frame
    stamps = {key: left_stamp + jitter_ns(rng, rec.jitter_ms.get(key, 0.0)) for key in JITTERED}
    stamps["left"] = left_stamp
    out: list[tuple[str, str, Any]] = [
        ("left_info", t.left_info, msgs.camera_info(intr, left_stamp, left_frame)),
        ("right_info", t.right_info, msgs.camera_info(intr, left_stamp, RIGHT_FRAME, right=True)),
    ]
    for key in ("left", "right", "depth", "disparity", "thermal"):
        if key in images:
            out.append((key, getattr(t, key), msgs.sensor_image(images[key], stamps[key])))
    kept = [m for m in out if not _dropped(rng, rec.drop_rate.get(m[0], 0.0))]
    kept.append(("labels", GT_TOPIC, msgs.sensor_image(images["labels"], left_stamp)))
    if "pothole_ids" in images:
        kept.append(("pothole_ids", POTHOLE_IDS_TOPIC, msgs.sensor_image(images["pothole_ids"], left_stamp)))
    return FrameMessages(scene.condition, left_stamp, kept)


def _dropped(rng: np.random.Generator, rate: float) -> bool:
    return rate > 0 and bool(rng.random() < rate)


def record(out: str | Path, rec: SimRecording, progress: bool | None = None,
           compress: bool = False) -> dict[str, int]:
    """Write the drive to a new bag at `out` (zstd-compressed with `compress`); returns messages written per topic."""
    stream = rec.scene_stream()
    rng = np.random.default_rng(rec.seed)
    writer = open_writer(out, rec.storage, compress)
    qos = [msgs.offered_qos(reliable=True, depth=5)]  # sim_sensors' publishers
    conns: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def write(topic: str, msg: Any, log_ns: int) -> None:
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=msgs.TYPESTORE,
                                                 offered_qos_profiles=qos)
        writer.write(conns[topic], log_ns, msgs.serialize(msg))
        counts[topic] = counts.get(topic, 0) + 1

    try:
        settings = asdict(rec)
        settings["topics"] = vars(rec.topics)
        writer.set_custom_data(METADATA_KEY, json.dumps(settings, sort_keys=True))
        for index in tqdm(range(rec.frames), desc="sim", unit="frame", disable=None if progress is None
                          else not progress, file=sys.stderr):
            stamp = rec.stamp_ns(index)
            frame = frame_messages(next(stream), stamp, rec, rng)
            write(CONDITION_TOPIC, msgs.string(frame.condition), stamp)
            for k, (_, topic, msg) in enumerate(frame.messages, start=1):
                write(topic, msg, stamp + k * _PUBLISH_SPACING_NS)
    except BaseException:
        writer.close()
        raise
    writer.close()
    return counts


# -- CLI ------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimRecording()
    parser.add_argument("--record", required=True, metavar="OUT", help="bag directory to create (must not exist)")
    parser.add_argument("--frames", type=int, default=d.frames, help="frames to record (default %(default)s)")
    parser.add_argument("--rate", type=float, default=d.rate, metavar="HZ", help="frame rate (default %(default)s)")
    parser.add_argument("--storage", default=d.storage, metavar="{mcap,sqlite3}",
                        help="rosbag2 storage (default %(default)s)")
    parser.add_argument("--compress", action="store_true",
                        help="zstd compression (MCAP: compressed chunks; sqlite3: per message); a 640x360 sim drive "
                             "comes out about 1.8x smaller")
    parser.add_argument("--conditions", default=",".join(d.conditions),
                        help="comma-separated conditions, cycled in runs (default %(default)s)")
    parser.add_argument("--frames-per-condition", type=positive_int, default=None, metavar="N",
                        help="consecutive frames per condition (default: the drive split evenly)")
    parser.add_argument("--width", type=int, default=d.width, help="image width (default %(default)s)")
    parser.add_argument("--height", type=int, default=d.height, help="image height (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="drive seed (default %(default)s)")
    parser.add_argument("--params", default=None, metavar="YAML",
                        help="take topic names from the node's parameters file (default: the built-in ZED/Boson "
                             "names, as config/perception.yaml)")
    parser.add_argument("--jitter-ms", default="thermal=3", metavar="KEY=MS,...",
                        help=f"stamp jitter (std dev) per input of {', '.join(JITTERED)} (default %(default)s)")
    parser.add_argument("--drop-rate", default="", metavar="KEY=P,...",
                        help=f"drop probability per input of {', '.join(DROPPABLE)} (default none)")
    parser.add_argument("--disparity", action="store_true", help="also record stereo_msgs/DisparityImage")
    parser.add_argument("--no-right", action="store_true", help="do not record the right image")
    parser.add_argument("--start", type=float, default=DEFAULT_START_S, metavar="EPOCH_S",
                        help="stamp of the first frame, seconds since the epoch (default 2024-01-01T00:00:00Z)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _key_values(text: str, option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{option}: expected KEY=NUMBER, got {item!r}") from None
        if not sep:
            raise ValueError(f"{option}: expected KEY=NUMBER, got {item!r}")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        topics = PerceptionConfig.from_yaml(args.params).topics if args.params else Topics()
        rec = SimRecording(
            frames=args.frames, rate=args.rate, width=args.width, height=args.height, seed=args.seed,
            conditions=tuple(c.strip() for c in args.conditions.split(",") if c.strip()),
            frames_per_condition=args.frames_per_condition, storage=args.storage, topics=topics,
            jitter_ms=_key_values(args.jitter_ms, "--jitter-ms"), drop_rate=_key_values(args.drop_rate, "--drop-rate"),
            publish_right=not args.no_right, publish_disparity=args.disparity, start_s=args.start)
        counts = record(args.record, rec, progress=False if args.no_progress else None, compress=args.compress)
    except (BagError, ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    total = sum(counts.values())
    storage = f"{rec.storage}, zstd" if args.compress else rec.storage
    print(f"wrote {args.record} ({storage}): {rec.frames} frames of {rec.width}x{rec.height} at {rec.rate:g} Hz, "
          f"{total} messages on {len(counts)} topics")
    return 0
