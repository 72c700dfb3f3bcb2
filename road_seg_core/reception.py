"""One reception path: (input, decoded message, stamp) -> validated inputs -> synchronised sets -> SensorFrame.

perception_node (each subscription callback is one `Reception.receive` call),
`road-seg eval-bag` (bag replay), `road-seg bench` (node stages) and the demo
all receive sensor messages through this module, so what is measured offline
is what runs on the car: the same decoding and encoding checks, the same
rejection reasons, the same synchronisation policy for the same configuration
(`build_synchronizer`), the same frame assembly.

Messages may be rclpy or rosbags objects: both have the same field names, and
the only library-specific step, turning an Image's pixels into an array, can be
swapped (`decode_pixels`; the node passes cv_bridge where installed).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from road_seg_core.frame_assembly import DecodedInput, assemble_frame, check_encoding
from road_seg_core.frames import SensorFrame, StereoIntrinsics
from road_seg_core.image_codec import ImageFormatError, decode_image
from road_seg_core.input_plan import InputPlan, InputRejected
from road_seg_core.left_sync import LeftDrivenSynchronizer
from road_seg_core.mf_sync import MessageFiltersSynchronizer, load_message_filters
from road_seg_core.node_config import PerceptionConfig
from road_seg_core.sensor_spec import CameraInfoError, check_camera_info, disparity_intrinsics, \
    intrinsics_from_camera_info, stamp_ns
from road_seg_core.sensor_timeout import TolerantSynchronizer
from road_seg_core.sync import ApproximateTimeSynchronizer
from road_seg_core.telemetry import NodeStats

#: Called for every rejection: (topic, reason, detail, count so far); the node logs through it, throttled.
RejectHook = Callable[[str, str, str, int], None]


def image_array(msg: Any) -> np.ndarray:
    """Pixels of a sensor_msgs/Image (rclpy or rosbags) via road_seg_core's codec; ImageFormatError with a reason."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


Synchronizer = LeftDrivenSynchronizer | ApproximateTimeSynchronizer | TolerantSynchronizer | MessageFiltersSynchronizer


def check_sync_policy(cfg: PerceptionConfig) -> None:
    """StartupError (one line) when the configured policy cannot run here (message_filters not installed): callers
    check before loading a model, so the user hears it at once."""
    if cfg.sync.policy == "message_filters":
        load_message_filters()


def build_synchronizer(plan: InputPlan, cfg: PerceptionConfig,
                       on_reject: Callable[[int, Any, str], None] | None = None) -> Synchronizer:
    """The node's synchronisation policy over `plan`'s inputs (every caller of `Reception` gets this one).

    `sync.policy` "left" (default): `LeftDrivenSynchronizer`, a set per left image. "approximate":
    message_filters' rule; with `sync.sensor_timeout` > 0 inputs other than the left may go down without
    stopping the output (`TolerantSynchronizer`). "message_filters": the real package runs that rule
    (`mf_sync.MessageFiltersSynchronizer`; StartupError where it is not installed).
    """
    offsets = [float(getattr(cfg.sync.offsets, k)) for k in plan.keys]
    s = cfg.sync
    if s.policy == "left":
        return LeftDrivenSynchronizer(plan.keys, s.slop, offsets, max_wait_s=s.max_wait, stamp_window_s=s.stamp_window,
                                      sensor_timeout_s=s.sensor_timeout, queue_size=s.queue_size, on_reject=on_reject)
    if s.policy == "message_filters":  # the configuration has refused offsets and a sensor timeout
        return MessageFiltersSynchronizer(len(plan.sync_inputs), s.queue_size, s.slop, on_reject=on_reject)
    sync = ApproximateTimeSynchronizer(len(plan.sync_inputs), cfg.sync.queue_size, cfg.sync.slop, offsets)
    if cfg.sync.sensor_timeout <= 0 or len(plan.keys) == 1:
        return sync
    return TolerantSynchronizer(sync, plan.keys, [k == "left" for k in plan.keys], cfg.sync.sensor_timeout)


@dataclass
class Received:
    """A validated input: the message as delivered (its header stamps the outputs), its decoded pixels, and
    whatever the caller attached (`payload`: e.g. the bag's log time and raw bytes)."""

    key: str
    topic: str
    msg: Any
    decoded: DecodedInput
    decode_ms: float
    payload: Any = None


@dataclass
class SyncedSet:
    """One synchronised set, in input-plan order; None where an input is absent for this frame."""

    keys: tuple[str, ...]
    items: tuple[Received | None, ...]

    @property
    def left(self) -> Received:
        return self.items[0]  # type: ignore[return-value]  # the left image is always present

    def present(self) -> dict[str, Received]:
        return {k: it for k, it in zip(self.keys, self.items) if it is not None}

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(k for k, it in zip(self.keys, self.items) if it is None)


class Reception:
    """Validates, decodes and synchronises one input plan's messages; counts what it refuses.

    Args:
        plan: which inputs (and topics) the model needs (`input_plan.plan_inputs`).
        cfg: the node configuration (sync settings, topics).
        decode_pixels: Image message -> array (default `image_array`).
        stats: counters to update (input rates, rejections, synchronised sets); a new NodeStats if None.
        on_reject: called after each rejection is counted (the node logs through it).
    """

    def __init__(self, plan: InputPlan, cfg: PerceptionConfig, decode_pixels: Callable[[Any], np.ndarray] = image_array,
                 stats: NodeStats | None = None, on_reject: RejectHook | None = None) -> None:
        self.plan = plan
        self.cfg = cfg
        self.decode_pixels = decode_pixels
        self.stats = stats if stats is not None else NodeStats()
        self.on_reject = on_reject
        self.sync = build_synchronizer(plan, cfg, self._sync_rejected)
        self.topics: dict[str, str] = {i.key: i.topic for i in plan.sync_inputs}
        self.topics["left_info"] = cfg.topics.left_info
        self.topics["right_info"] = cfg.topics.right_info
        self._index: dict[str, int] = {}
        for index, inp in enumerate(plan.sync_inputs):
            self._index[inp.key] = self._index[inp.topic] = index
        self._camera_info: dict[str, Any] = {}

    # -- input -----------------------------------------------------------------------------------------------------
    def index(self, key_or_topic: str) -> int:
        """Position in the plan of an input given by key ('left') or topic."""
        try:
            return self._index[key_or_topic]
        except KeyError:
            raise KeyError(f"{key_or_topic!r} is not an input of this plan ({', '.join(self.plan.keys)})") from None

    def receive(self, key_or_topic: str, msg: Any, stamp: int | None = None, payload: Any = None) -> list[SyncedSet]:
        """Validate and decode one message of a synchronised input and feed it to the synchroniser.

        `stamp` (ns) defaults to the message's header stamp. Returns the sets it completed (usually none or one);
        a message that cannot be used is counted under (topic, reason) and returns [].
        """
        index = self.index(key_or_topic)
        key, topic = self.plan.keys[index], self.plan.sync_inputs[index].topic
        self.stats.received(key)
        t0 = time.perf_counter()
        try:
            decoded = self._decode(key, topic, msg, stamp_ns(msg) if stamp is None else int(stamp))
        except ImageFormatError as exc:
            self.reject(topic, exc.reason, str(exc))
            return []
        except InputRejected as exc:
            self.reject(exc.topic, exc.reason, str(exc))
            return []
        item = Received(key, topic, msg, decoded, (time.perf_counter() - t0) * 1e3, payload)
        sets = [SyncedSet(self.plan.keys, tuple(m)) for m in self.sync.add(index, decoded.stamp_ns, item)]
        if sets:
            with self.stats.lock:
                self.stats.synchronised += len(sets)
        return sets

    def receive_batch(self, batch: Sequence[tuple[str, Any]]) -> list[SyncedSet]:
        """`receive` for messages taken together (one wait of a node's executor), in the order of their stamps.

        After a stall (the process descheduled for a frame period) the messages of several frames wait at
        once, and an executor takes them in the order of its subscriptions: fed so, the next frame's message
        would prove an older set's wait over before that set's own message, already there, joined it. In stamp
        order they join as in a replay of the same messages. Messages without a readable stamp go first (`receive`
        refuses them); the sort is stable, so equal stamps keep their arrival order.
        """
        def stamp_or_first(item: tuple[str, Any]) -> int:
            try:
                return stamp_ns(item[1])
            except (AttributeError, TypeError, ValueError):
                return -1

        return [s for key, msg in sorted(batch, key=stamp_or_first) for s in self.receive(key, msg)]

    def _sync_rejected(self, index: int, item: Received, reason: str) -> None:
        stamp = item.decoded.stamp_ns
        if stamp < 0:
            detail = f"stamp {stamp} ns is before 1970"
        else:
            detail = f"stamp {stamp} ns is more than {self.cfg.sync.stamp_window:g} s from the left image clock"
        self.reject(item.topic, reason, detail)

    def flush(self) -> list[SyncedSet]:
        """Release the sets still waiting (the end of a bag); the left policy only, others hold none."""
        flush = getattr(self.sync, "flush", None)
        sets = [SyncedSet(self.plan.keys, tuple(m)) for m in flush()] if flush else []
        with self.stats.lock:
            self.stats.synchronised += len(sets)
        return sets

    def _decode(self, key: str, topic: str, msg: Any, stamp: int) -> DecodedInput:
        image = msg.image if key == "disparity" else msg
        pixels = self.decode_pixels(image)  # unknown encodings, bad sizes
        check_encoding(key, image.encoding, topic)  # known encodings that cannot serve this input
        decoded = DecodedInput(stamp, msg.header.frame_id, image.encoding, pixels)
        if key == "disparity":
            decoded.intrinsics = disparity_intrinsics(msg.f, msg.t, int(image.width), int(image.height))
        return decoded

    def receive_camera_info(self, key: str, msg: Any) -> bool:
        """Keep the latest usable left/right camera_info (`key` 'left_info' or 'right_info'); count others."""
        try:
            check_camera_info(msg, right=key == "right_info")
        except CameraInfoError as exc:
            self.reject(self.topics[key], "unusable_camera_info", str(exc))
            return False
        self._camera_info[key] = msg
        return True

    def camera_intrinsics(self) -> StereoIntrinsics | None:
        """Stereo intrinsics from the latest left and right camera_info, once both have arrived."""
        info = self._camera_info
        if "left_info" not in info or "right_info" not in info:
            return None
        return intrinsics_from_camera_info(info["left_info"], info["right_info"])

    # -- output ----------------------------------------------------------------------------------------------------
    def assemble(self, synced: SyncedSet) -> SensorFrame:
        """The set's SensorFrame (raises InputRejected or ImageFormatError for a set that cannot be used)."""
        intrinsics = self.camera_intrinsics() if self.plan.needs_camera_info else None
        return assemble_frame({k: it.decoded for k, it in synced.present().items()}, self.topics, intrinsics,
                              self.plan.requires_camera_info)

    def reject(self, topic: str, reason: str, detail: str) -> int:
        """Count a refused message or set under (topic, reason); returns the count so far."""
        count = self.stats.reject(topic, reason)
        if self.on_reject is not None:
            self.on_reject(topic, reason, detail, count)
        return count

    @property
    def implementation(self) -> str:
        """Who runs the synchronisation rule: "message_filters" (the real package) or "road_seg_core"."""
        return getattr(self.sync, "implementation", "road_seg_core")

    @property
    def sensors_down(self) -> tuple[str, ...]:
        """Inputs the synchroniser currently goes on without (`sync.sensor_timeout`)."""
        return getattr(self.sync, "down_names", ())

    @property
    def missing(self) -> dict[str, int]:
        """Per input other than the left: sets that went without it."""
        counts = getattr(self.sync, "substituted", None) or [0] * len(self.plan.keys)
        return {k: int(n) for k, n in zip(self.plan.keys[1:], counts[1:])}

    def describe(self) -> dict[str, Any]:
        """The synchronisation policy in effect: equal for equal plans and configurations."""
        sync = self.sync.sync if isinstance(self.sync, TolerantSynchronizer) else self.sync
        out: dict[str, Any] = {"policy": type(self.sync).__name__, "keys": self.plan.keys,
                               "queue_size": sync.queue_size, "slop_s": sync.slop_s, "offsets_s": sync.offsets_s}
        if isinstance(self.sync, TolerantSynchronizer):
            out.update(required=self.sync.required, timeout_ns=self.sync.timeout_ns)
        if isinstance(self.sync, LeftDrivenSynchronizer):
            out.update(max_wait_s=sync.max_wait_s, stamp_window_s=sync.stamp_window_s,
                       sensor_timeout_s=sync.sensor_timeout_s)
        return out
