"""A bag through the node's data path: reception checks, approximate-time sync, frame assembly, pipeline.

Messages are delivered in recording order, as `ros2 bag play` would publish
them, to the same steps perception_node runs: decode and check each message
(rejects counted per topic and reason), feed the node's synchroniser
(`inputs.build_synchronizer`: queue size, slop, offsets, sensor timeout),
assemble each synchronised set with `frame_assembly`, run
`SegmentationPipeline`. Unlike the node, no set is ever superseded while the
model is busy: offline there is time for every one, which is what the node
does too when its CPU keeps up.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from rosbags.rosbag2 import Reader

from road_seg_core.frames import SensorFrame
from road_seg_core.image_codec import ImageFormatError
from road_seg_core.pipeline import PipelineResult, SegmentationPipeline
from road_seg_ros.bag import msgs
from road_seg_ros.bag.bagio import connections
from road_seg_ros.config import PerceptionConfig
from road_seg_ros.frame_assembly import DecodedInput, assemble_frame, check_encoding
from road_seg_ros.inputs import InputPlan, InputRejected, build_synchronizer


@dataclass
class _Item:
    """A received input waiting in the synchroniser."""

    decoded: DecodedInput
    log_ns: int
    raw: bytes | memoryview | None  # kept for the left image only, to copy it into an output bag
    decode_ms: float


@dataclass
class ReplayedFrame:
    """One synchronised set after the pipeline."""

    frame: SensorFrame
    result: PipelineResult
    left_log_ns: int
    left_raw: bytes | memoryview  # the left sensor_msgs/Image as recorded (CDR)
    timings_ms: dict[str, float]  # decode, convert, preprocess, model, postprocess, total


@dataclass
class ReplayCounters:
    messages: Counter = field(default_factory=Counter)  # per topic, as read from the bag
    rejected: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # topic -> reason -> n
    synchronised: int = 0
    failed_sets: Counter = field(default_factory=Counter)  # reason -> n

    def as_dict(self) -> dict[str, Any]:
        return {"messages": dict(sorted(self.messages.items())),
                "rejected": {t: dict(r) for t, r in sorted(self.rejected.items())},
                "synchronised_sets": self.synchronised, "failed_sets": dict(self.failed_sets)}


class BagReplay:
    """Iterate `frames()` to replay; `counters` and `sync.stats` describe what happened."""

    def __init__(self, reader: Reader, cfg: PerceptionConfig, plan: InputPlan, pipeline: SegmentationPipeline,
                 with_overlay: bool = False, warmup: bool = True) -> None:
        self.reader = reader
        #: Run the first set once untimed, so lazy initialisation (seconds on a CPU) stays out of the latencies.
        self._warm = not warmup
        self.cfg = cfg
        self.plan = plan
        self.pipeline = pipeline
        self.with_overlay = with_overlay
        self.topics = {i.key: i.topic for i in plan.sync_inputs}
        self.topics["left_info"] = cfg.topics.left_info
        self.counters = ReplayCounters()
        self.sync = build_synchronizer(plan, cfg)  # the node's policy, sensor_timeout included
        # Every topic is checked before anything runs, so a wrong --params fails at once, naming the bag's topics.
        self._index: dict[str, int] = {}
        self._conns = []
        for index, inp in enumerate(plan.sync_inputs):
            types = (msgs.DISPARITY_IMAGE,) if inp.key == "disparity" else (msgs.IMAGE,)
            self._conns += connections(reader, inp.topic, f"topics.{inp.key}", types)
            self._index[inp.topic] = index
        self._info_topics: dict[str, str] = {}
        if plan.needs_camera_info:
            for key in ("left_info", "right_info"):
                topic = getattr(cfg.topics, key)
                self._conns += connections(reader, topic, f"topics.{key}", (msgs.CAMERA_INFO,))
                self._info_topics[topic] = key
        self._camera_info: dict[str, Any] = {}

    @property
    def total_messages(self) -> int:
        return sum(c.msgcount for c in self._conns)

    def frames(self, on_message: Callable[[], None] | None = None) -> Iterator[ReplayedFrame]:
        """Replay the bag; `on_message` is called once per message read (a progress bar's update)."""
        for conn, log_ns, raw in self.reader.messages(connections=self._conns):
            self.counters.messages[conn.topic] += 1
            if on_message is not None:
                on_message()
            if conn.topic in self._info_topics:
                self._camera_info[self._info_topics[conn.topic]] = msgs.deserialize(raw, conn.msgtype)
                continue
            index = self._index[conn.topic]
            key = self.plan.keys[index]
            t0 = time.perf_counter()
            try:
                decoded = msgs.decode(msgs.deserialize(raw, conn.msgtype))
                check_encoding(key, decoded.encoding, conn.topic)
            except (ImageFormatError, InputRejected) as exc:
                self.counters.rejected[conn.topic][exc.reason] += 1
                continue
            item = _Item(decoded, int(log_ns), raw if key == "left" else None, (time.perf_counter() - t0) * 1e3)
            for matched in self.sync.add(index, decoded.stamp_ns, item):
                self.counters.synchronised += 1
                replayed = self._run(matched)
                if replayed is not None:
                    yield replayed

    def _run(self, items: tuple[_Item, ...]) -> ReplayedFrame | None:
        by_key = {k: it for k, it in zip(self.plan.keys, items) if it is not None}  # None: input down
        t0 = time.perf_counter()
        try:
            frame = assemble_frame({k: it.decoded for k, it in by_key.items()}, self.topics,
                                   self._camera_intrinsics(), self.plan.needs_camera_info)
        except (InputRejected, ImageFormatError) as exc:
            self.counters.failed_sets[exc.reason] += 1
            return None
        except ValueError:  # inconsistent camera_info (e.g. no baseline in the right projection matrix)
            self.counters.failed_sets["bad_camera_info"] += 1
            return None
        t1 = time.perf_counter()
        if not self._warm:
            self.pipeline.run(frame, with_overlay=self.with_overlay)
            self._warm = True
        t2 = time.perf_counter()
        result = self.pipeline.run(frame, with_overlay=self.with_overlay)
        t3 = time.perf_counter()
        timings = {"decode": sum(it.decode_ms for it in by_key.values()), "convert": (t1 - t0) * 1e3,
                   **result.timings_ms}
        timings["total"] = timings["decode"] + timings["convert"] + (t3 - t2) * 1e3
        left = by_key["left"]
        return ReplayedFrame(frame, result, left.log_ns, left.raw, timings)

    def _camera_intrinsics(self):
        if not self.plan.needs_camera_info:
            return None
        info = self._camera_info
        if "left_info" not in info or "right_info" not in info:
            return None
        return msgs.intrinsics(info["left_info"], info["right_info"])
