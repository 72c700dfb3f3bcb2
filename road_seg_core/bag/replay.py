"""A bag through the node's data path: `road_seg_core.reception` (checks, synchroniser, frame assembly), pipeline.

Messages are delivered in recording order, as `ros2 bag play` would publish
them, to the node's own reception path (`Reception`: decode and check each
message, rejects counted per topic and reason, the node's synchroniser with
queue size, slop, offsets and sensor timeout, frame assembly), then to
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

from road_seg_core.bag import msgs
from road_seg_core.bag.bagio import connections
from road_seg_core.frames import SensorFrame
from road_seg_core.image_codec import ImageFormatError
from road_seg_core.input_plan import InputPlan, InputRejected
from road_seg_core.node_config import PerceptionConfig
from road_seg_core.pipeline import PipelineResult, SegmentationPipeline
from road_seg_core.reception import Reception, SyncedSet
from road_seg_core.sensor_spec import CAMERA_INFO, INPUT_MSGTYPES


@dataclass
class _Bagged:
    """What the replay attaches to each received message."""

    log_ns: int
    raw: bytes | memoryview | None  # kept for the left image only, to copy it into an output bag
    deserialise_ms: float


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
    failed_sets: Counter = field(default_factory=Counter)  # reason -> n
    reception: Any = None  # the Reception whose counters (rejections, synchronised sets) these include

    @property
    def rejected(self) -> dict[str, Counter]:
        """topic -> reason -> n, as counted by the reception path."""
        out: dict[str, Counter] = defaultdict(Counter)
        if self.reception is not None:
            with self.reception.stats.lock:
                for (topic, reason), n in self.reception.stats.rejected.items():
                    out[topic][reason] += n
        return out

    @property
    def synchronised(self) -> int:
        return self.reception.stats.synchronised if self.reception is not None else 0

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
        self.reception = Reception(plan, cfg)  # the node's reception path and synchroniser
        self.sync = self.reception.sync
        self.counters = ReplayCounters(reception=self.reception)
        # Every topic is checked before anything runs, so a wrong --params fails at once, naming the bag's topics.
        self._conns = []
        for inp in plan.sync_inputs:
            self._conns += connections(reader, inp.topic, f"topics.{inp.key}", (INPUT_MSGTYPES[inp.key],))
        self._info_topics: dict[str, str] = {}
        if plan.needs_camera_info:
            for key in ("left_info", "right_info"):
                topic = getattr(cfg.topics, key)
                self._conns += connections(reader, topic, f"topics.{key}", (CAMERA_INFO,))
                self._info_topics[topic] = key

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
                self.reception.receive_camera_info(self._info_topics[conn.topic], msgs.deserialize(raw, conn.msgtype))
                continue
            t0 = time.perf_counter()
            msg = msgs.deserialize(raw, conn.msgtype)
            payload = _Bagged(int(log_ns), raw if conn.topic == self.plan.sync_inputs[0].topic else None,
                              (time.perf_counter() - t0) * 1e3)
            for synced in self.reception.receive(conn.topic, msg, payload=payload):
                replayed = self._run(synced)
                if replayed is not None:
                    yield replayed
        for synced in self.reception.flush():  # the bag's last left images: nothing else will come for them
            replayed = self._run(synced)
            if replayed is not None:
                yield replayed

    def _run(self, synced: SyncedSet) -> ReplayedFrame | None:
        t0 = time.perf_counter()
        try:
            frame = self.reception.assemble(synced)
        except (InputRejected, ImageFormatError) as exc:
            self.counters.failed_sets[exc.reason] += 1
            return None
        t1 = time.perf_counter()
        if not self._warm:
            self.pipeline.run(frame, with_overlay=self.with_overlay)
            self.pipeline.reset()  # the warm-up frame must not count as seen (plane track, pothole confirmation)
            self._warm = True
        t2 = time.perf_counter()
        result = self.pipeline.run(frame, with_overlay=self.with_overlay)
        t3 = time.perf_counter()
        present = synced.present().values()
        timings = {"decode": sum(it.decode_ms + it.payload.deserialise_ms for it in present), "convert": (t1 - t0) * 1e3,
                   **result.timings_ms}
        timings["total"] = timings["decode"] + timings["convert"] + (t3 - t2) * 1e3
        left = synced.left
        return ReplayedFrame(frame, result, left.payload.log_ns, left.payload.raw, timings)
