"""Ground truth for bag evaluation: a label topic in the bag, or a folder of label PNGs.

Labels are in the node's label space (0 background, 1 drivable, 2 positive
obstacle, 3 negative obstacle, 255 ignore), one per left image, matched to a
frame by the left image's header stamp:

* `--gt-topic TOPIC`: sensor_msgs/Image `mono8` (or `8UC1`) messages whose
  header stamp equals the left image's (what `sim_sensors` publishes on
  `/sim/labels`);
* `--gt-dir DIR`: single-channel 8-bit PNGs named `<left stamp in ns>.png`,
  e.g. `1704067200100000000.png`, for annotated drives of your own.

Ground truth must have the left image's size. A left image without ground
truth is run but not scored (counted as `frames_without_gt`). Where the bag
also has `/sim/pothole_ids` (mono16, which pothole each pothole pixel is, as
sim_sensors and `road-seg sim` record it), recall by object counts those
potholes; else each connected component of pothole pixels is one.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from rosbags.rosbag2 import Reader

from road_seg_core import labels as L
from road_seg_core.image_codec import ImageFormatError
from road_seg_core.bag import msgs
from road_seg_core.bag.bagio import BagError, connections
from road_seg_core.reception import image_array
from road_seg_core.sensor_spec import stamp_ns

GT_ENCODINGS = ("mono8", "8UC1")
ID_ENCODINGS = ("mono16", "16UC1")
_VALID_IDS = np.zeros(256, bool)
_VALID_IDS[list(range(L.NUM_CLASSES)) + [L.IGNORE]] = True


class GroundTruthError(ValueError):
    """Ground truth that cannot be scored against the predictions (size, encoding, ids)."""


class GroundTruth(Protocol):
    description: str

    def get(self, stamp_ns: int) -> np.ndarray | None:
        """HxW uint8 labels for the left image stamped `stamp_ns`, or None if there are none."""

    def __len__(self) -> int: ...


def check_labels(gt: np.ndarray, size: tuple[int, int], where: str) -> np.ndarray:
    """`gt` as HxW uint8 if it fits a left image of `size` (H, W); GroundTruthError saying why not."""
    if gt.ndim != 2 or gt.dtype != np.uint8:
        raise GroundTruthError(f"ground truth {where} must be single-channel 8-bit labels, got shape {gt.shape} "
                               f"{gt.dtype}")
    if gt.shape != tuple(size):
        raise GroundTruthError(f"ground truth {where} is {gt.shape[1]}x{gt.shape[0]} but the left image is "
                               f"{size[1]}x{size[0]}")
    present = np.flatnonzero(np.bincount(gt.reshape(-1), minlength=256))
    bad = present[~_VALID_IDS[present]]
    if bad.size:
        raise GroundTruthError(f"ground truth {where} has label ids {bad.tolist()}; the node label space is "
                               f"0..{L.NUM_CLASSES - 1} ({', '.join(L.CLASS_NAMES)}) and {L.IGNORE} = ignore")
    return gt


class TopicGroundTruth:
    """Labels (or pothole ids: `encodings=ID_ENCODINGS`) from a topic of the bag, kept PNG-compressed (a few kB
    per frame) until their frame is scored."""

    def __init__(self, topic: str, encodings: tuple[str, ...] = GT_ENCODINGS) -> None:
        self.topic = topic
        self.description = f"topic {topic}"
        self.encodings = encodings
        self._png: dict[int, bytes] = {}

    def add(self, msg) -> None:
        """Store one sensor_msgs/Image (rosbags message) of the topic."""
        stamp = stamp_ns(msg.header)
        if msg.encoding not in self.encodings:
            raise GroundTruthError(f"ground truth on {self.topic} at stamp {stamp} has encoding {msg.encoding!r}; "
                                   f"expected {' or '.join(self.encodings)}")
        try:
            labels = image_array(msg)
        except ImageFormatError as exc:
            raise GroundTruthError(f"ground truth on {self.topic} at stamp {stamp}: {exc}") from None
        ok, png = cv2.imencode(".png", np.ascontiguousarray(labels))
        if not ok:
            raise GroundTruthError(f"cannot compress ground truth on {self.topic} at stamp {stamp}")
        self._png[stamp] = png.tobytes()

    def __len__(self) -> int:
        return len(self._png)

    def get(self, stamp_ns: int) -> np.ndarray | None:
        png = self._png.get(int(stamp_ns))
        if png is None:
            return None
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


class DirGroundTruth:
    """Labels from `<stamp_ns>.png` files; files with other names are ignored."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise GroundTruthError(f"ground truth directory not found: {self.directory}")
        self.description = f"directory {self.directory}"
        self._files = {int(p.stem): p for p in self.directory.glob("*.png") if p.stem.isdigit()}
        if not self._files:
            raise GroundTruthError(f"no <stamp_ns>.png label files in {self.directory}")

    def __len__(self) -> int:
        return len(self._files)

    def get(self, stamp_ns: int) -> np.ndarray | None:
        path = self._files.get(int(stamp_ns))
        if path is None:
            return None
        gt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if gt is None:
            raise GroundTruthError(f"cannot read ground truth image {path}")
        return gt


class Conditions:
    """Condition per left stamp from a header-less String topic: the last one recorded at or before the stamp."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._times: list[int] = []
        self._names: list[str] = []

    def add(self, log_ns: int, name: str) -> None:
        i = bisect.bisect_right(self._times, int(log_ns))
        self._times.insert(i, int(log_ns))
        self._names.insert(i, name)

    def __bool__(self) -> bool:
        return bool(self._times)

    def at(self, stamp_ns: int) -> str | None:
        i = bisect.bisect_right(self._times, int(stamp_ns)) - 1
        return self._names[i] if i >= 0 else None


def read_annotations(reader: Reader, gt_topic: str | None, condition_topic: str, ids_topic: str | None = None
                     ) -> tuple[TopicGroundTruth | None, Conditions, TopicGroundTruth | None]:
    """One pass over the bag's ground-truth, condition and pothole-id topics (the last two optional: the pothole
    ids are None when `ids_topic` is not in the bag)."""
    gt = TopicGroundTruth(gt_topic) if gt_topic else None
    conditions = Conditions(condition_topic)
    wanted = connections(reader, gt_topic, "ground truth", (msgs.IMAGE,)) if gt_topic else []
    ids = None
    if ids_topic and ids_topic in reader.topics:
        ids = TopicGroundTruth(ids_topic, ID_ENCODINGS)
        wanted += connections(reader, ids_topic, "pothole ids", (msgs.IMAGE,))
    cond_conns = [c for c in reader.connections if c.topic == condition_topic]
    if any(c.msgtype != msgs.STRING for c in cond_conns):
        raise BagError(f"topic {condition_topic} (conditions) must be {msgs.STRING}, got "
                       f"{', '.join(sorted({c.msgtype for c in cond_conns}))}")
    wanted += cond_conns
    if not wanted:
        return gt, conditions, ids
    for conn, log_ns, raw in reader.messages(connections=wanted):
        msg = msgs.deserialize(raw, conn.msgtype)
        if conn.topic == condition_topic:
            conditions.add(log_ns, str(msg.data))
        elif conn.topic == ids_topic:
            ids.add(msg)
        else:
            gt.add(msg)
    return gt, conditions, ids
