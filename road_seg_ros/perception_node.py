"""perception_node: synchronised ZED stereo / depth / thermal in, drivable-area and obstacle masks out.

A thin node over road_seg_core: subscriptions validate and decode each
message, a synchroniser groups them (road_seg_core's, which goes on without a
sensor that has gone silent; message_filters where that is switched off), the
newest set goes to one worker thread that runs `SegmentationPipeline`, and the
outputs are published with the left image's header. Nothing here knows about
the network.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from road_seg_core.bundled import resolve_model
from road_seg_core.checkpoint import CheckpointError
from road_seg_core.engines import create_engine
from road_seg_core.frames import SensorFrame
from road_seg_core.handoff import LatestSlot
from road_seg_core.image_codec import ImageFormatError
from road_seg_core.node_args import ArgumentError, check_ros_arguments
from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.sensor_timeout import TolerantSynchronizer
from road_seg_core.telemetry import NodeStats
from road_seg_ros.config import NODE_NAME, PerceptionConfig
from road_seg_ros.conversions import array_to_image, image_to_array, intrinsics_from_camera_info
from road_seg_ros.diagnostics import build_diagnostics
from road_seg_ros.frame_assembly import DecodedInput, assemble_frame, check_encoding, disparity_intrinsics
from road_seg_ros.inputs import InputPlan, InputRejected, StartupError, build_synchronizer, plan_inputs


@dataclass
class Received:
    """A validated input message: its header (what synchronisers read) and its decoded pixels."""

    header: Header
    decoded: DecodedInput


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    rel = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=rel)


def make_feeder(plan: InputPlan, cfg: PerceptionConfig, callback: Callable[..., None]
                ) -> tuple[Callable[[int, Received], None], str, TolerantSynchronizer | None]:
    """A function feeding input i into the synchroniser, the synchroniser's name, and the sensor-timeout wrapper.

    Uses message_filters' ApproximateTimeSynchronizer when it is installed, no per-input offsets are configured
    (it has none) and `sync.sensor_timeout` is 0 (it waits for every input); road_seg_core's otherwise.
    """
    offsets = [float(getattr(cfg.sync.offsets, k)) for k in plan.keys]
    if not any(offsets) and cfg.sync.sensor_timeout <= 0:
        try:
            import message_filters  # type: ignore
        except ImportError:
            message_filters = None
        if message_filters is not None:
            filters = [message_filters.SimpleFilter() for _ in plan.keys]
            sync = message_filters.ApproximateTimeSynchronizer(filters, cfg.sync.queue_size, cfg.sync.slop)
            sync.registerCallback(callback)
            return (lambda i, item: filters[i].signalMessage(item)), "message_filters", None
    core = build_synchronizer(plan, cfg)

    def feed(i: int, item: Received) -> None:
        for matched in core.add(i, stamp_ns(item.header.stamp), item):
            callback(*matched)

    return feed, "road_seg_core", core if isinstance(core, TolerantSynchronizer) else None


class PerceptionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = self._read_parameters()
        try:
            model_path = resolve_model(self.cfg.model)
            self.engine = create_engine(model_path, backend=self.cfg.backend, device=self.cfg.device,
                                        **self.cfg.engine_options())
        except (CheckpointError, FileNotFoundError, ValueError, RuntimeError, ImportError) as exc:
            raise StartupError(f"cannot load model: {exc}") from exc
        self.model_path = str(model_path)
        self.plan: InputPlan = plan_inputs(tuple(self.engine.meta.modalities), self.cfg)
        self.pipeline = SegmentationPipeline(self.engine, self.cfg.preprocess_config())
        self.stats = NodeStats()
        self._last_log: dict[tuple[str, str], float] = {}
        self._camera_info: dict[str, CameraInfo] = {}

        out_qos = qos_profile("reliable", 5)
        self.pub_drivable = self.create_publisher(Image, "~/drivable_mask", out_qos)
        self.pub_obstacle = self.create_publisher(Image, "~/obstacle_mask", out_qos)
        self.pub_labels = self.create_publisher(Image, "~/labels", out_qos)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self._feed, self.sync_impl, self._tolerant = make_feeder(self.plan, self.cfg, self._on_synchronised)
        self._down_logged: tuple[str, ...] = ()
        self._subs = []
        for index, inp in enumerate(self.plan.sync_inputs):
            q = getattr(self.cfg.qos, inp.key)
            msg_type = DisparityImage if inp.key == "disparity" else Image
            self._subs.append(self.create_subscription(
                msg_type, inp.topic, self._receiver(index, inp.key, inp.topic), qos_profile(q.reliability, q.depth)))
        if self.plan.needs_camera_info:
            info_qos = qos_profile("reliable", 1)
            for key in ("left_info", "right_info"):
                self._subs.append(self.create_subscription(
                    CameraInfo, getattr(self.cfg.topics, key), lambda m, k=key: self._camera_info.__setitem__(k, m),
                    info_qos))

        self._slot = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="road_seg_inference", daemon=True)
        self._worker.start()
        self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"model {self.model_path} ({', '.join(self.engine.meta.modalities)}; input "
            f"{self.engine.meta.input_size[1]}x{self.engine.meta.input_size[0]}) on {self.engine.backend}/"
            f"{self.engine.device}; sync {self.sync_impl} over "
            f"{', '.join(i.topic for i in self.plan.sync_inputs)}")

    # -- parameters ---------------------------------------------------------------------------------------------
    def _read_parameters(self) -> PerceptionConfig:
        """Declare every parameter and check each value (road_seg_core.node_params: type, length, range).

        Declared with dynamic typing, so rclpy takes whatever a file or `-p` gives (an integer for a double
        too) and our check names the parameter and the value in one line, instead of rclpy's type exception.
        The values are read once: later changes are refused (see _refuse_changes).
        """
        defaults = PerceptionConfig().flat()
        typed = ParameterDescriptor(dynamic_typing=True)
        for name, value in defaults.items():
            self.declare_parameter(name, value, typed)
        values = {name: self.get_parameter(name).value for name in defaults}
        try:
            cfg = PerceptionConfig.from_flat(values)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self._declared = frozenset(defaults)
        self.add_on_set_parameters_callback(self._refuse_changes)
        return cfg

    def _refuse_changes(self, params: list[Parameter]) -> SetParametersResult:
        """`ros2 param set` on a running node would change nothing it does: say so instead of accepting."""
        mine = [p.name for p in params if p.name in self._declared]
        if mine:
            return SetParametersResult(successful=False, reason=f"{', '.join(mine)}: {NODE_NAME} reads its "
                                       "parameters at start; restart it with the new value")
        return SetParametersResult(successful=True)

    # -- reception ----------------------------------------------------------------------------------------------
    def _receiver(self, index: int, key: str, topic: str) -> Callable[[Any], None]:
        def on_message(msg: Any) -> None:
            self.stats.received(key)
            try:
                image = msg.image if key == "disparity" else msg
                pixels = image_to_array(image, self.cfg.use_cv_bridge)  # unknown encodings, bad sizes
                check_encoding(key, image.encoding, topic)  # known encodings that cannot serve this input
                decoded = DecodedInput(stamp_ns(msg.header.stamp), msg.header.frame_id, image.encoding, pixels)
                if key == "disparity":
                    decoded.intrinsics = disparity_intrinsics(msg.f, msg.t, image.width, image.height)
                item = Received(msg.header, decoded)
            except (ImageFormatError, InputRejected) as exc:
                self._reject(topic if isinstance(exc, ImageFormatError) else exc.topic, exc.reason, str(exc))
                return
            self._feed(index, item)

        return on_message

    def _on_synchronised(self, *items: Received) -> None:
        with self.stats.lock:
            self.stats.synchronised += 1
            if self._slot.put(items):
                self.stats.dropped_sets += 1

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        count = self.stats.reject(topic, reason)
        now = time.monotonic()
        if now - self._last_log.get((topic, reason), -1e9) >= self.cfg.log_throttle:
            self._last_log[(topic, reason)] = now
            self.get_logger().warning(f"rejected message on {topic}: {reason}: {detail} ({count} so far)")

    # -- inference ----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            items = self._slot.take()
            if items is None:
                return
            t_start = time.perf_counter()
            try:
                frame = self._frame(items)
            except (InputRejected, ImageFormatError) as exc:
                with self.stats.lock:
                    self.stats.failed_sets += 1
                self._reject(getattr(exc, "topic", self.cfg.topics.left), exc.reason, str(exc))
                continue
            except Exception as exc:  # a bad set must never stop the worker
                with self.stats.lock:
                    self.stats.failed_sets += 1
                self._reject("sync", "conversion_error", repr(exc))
                continue
            t_conv = time.perf_counter()
            try:
                result = self.pipeline.run(frame, with_overlay=self.pub_overlay.get_subscription_count() > 0)
            except Exception as exc:
                with self.stats.lock:
                    self.stats.failed_sets += 1
                self._reject("model", "inference_error", repr(exc))
                continue
            t_pub = time.perf_counter()
            self._publish(items[0].header, result.masks)
            t_end = time.perf_counter()
            for name, ms in result.timings_ms.items():
                self.stats.stage(name, ms)
            self.stats.stage("convert", (t_conv - t_start) * 1e3)
            self.stats.stage("publish", (t_end - t_pub) * 1e3)

    def _frame(self, items: tuple[Received, ...]) -> SensorFrame:
        info = self._camera_info
        intrinsics = None
        if "left_info" in info and "right_info" in info:
            intrinsics = intrinsics_from_camera_info(info["left_info"], info["right_info"])
        topics = {**{i.key: i.topic for i in self.plan.sync_inputs}, "left_info": self.cfg.topics.left_info}
        return assemble_frame({key: item.decoded for key, item in zip(self.plan.keys, items) if item is not None},
                              topics, intrinsics, self.plan.needs_camera_info)

    @property
    def sensors_down(self) -> tuple[str, ...]:
        """Inputs the synchroniser currently goes on without (`sync.sensor_timeout`)."""
        return self._tolerant.down_names if self._tolerant is not None else ()

    def _publish(self, header: Header, masks) -> None:
        self.pub_drivable.publish(array_to_image(masks.drivable, "mono8", header))
        self.pub_obstacle.publish(array_to_image(masks.obstacle, "mono8", header))
        self.pub_labels.publish(array_to_image(masks.labels, "mono8", header))
        if masks.overlay is not None:
            self.pub_overlay.publish(array_to_image(masks.overlay, "rgb8", header))
        now_ns = self.get_clock().now().nanoseconds
        with self.stats.lock:
            self.stats.published += 1
            self.stats.output_rate.tick()
            self.stats.latency_ms.add((now_ns - stamp_ns(header.stamp)) / 1e6)

    # -- diagnostics --------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        down = self.sensors_down
        if down != self._down_logged:
            if down:
                self.get_logger().warning(f"running without {', '.join(down)}: no message for more than "
                                          f"{self.cfg.sync.sensor_timeout:g} s; the model sees it as absent")
            else:
                self.get_logger().info("every input is present again")
            self._down_logged = down
        msg = build_diagnostics(self.stats, self, self.get_clock().now().to_msg())
        self.pub_diag.publish(msg)

    def destroy_node(self) -> None:
        self._slot.close()
        self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # Before rcl parses the arguments: a missing --params-file would be "Failed to parse global arguments",
    # and a `-p` that a node-specific file entry overrides would be dropped in silence.
    try:
        check_ros_arguments(list(sys.argv if args is None else args), NODE_NAME, PerceptionConfig().flat(),
                            PerceptionConfig.from_flat)
    except ArgumentError as exc:
        print(f"perception_node: {exc}", file=sys.stderr)
        return 2
    try:
        rclpy.init(args=args)
    except RCLError as exc:
        print(f"perception_node: cannot start: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    try:
        node = PerceptionNode()
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        rclpy.try_shutdown()
        return 2
    if node.cfg.build_only:
        # create_engine has exported/built and cached what this backend needs: the car can prebuild and exit.
        node.engine.warmup(1)
        node.get_logger().info(f"build_only: {node.engine.backend} engine for {node.model_path} is ready; exiting")
        node.destroy_node()
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
