"""perception_node: synchronised ZED stereo / depth / thermal in, drivable-area and obstacle masks out.

A thin node over road_seg_core: each subscription callback is one call into
`road_seg_core.reception.Reception` (validate, decode, synchronise with the
configured policy), the newest set goes to one worker thread that assembles
the frame and runs `SegmentationPipeline`, and the outputs are published with
the left image's header. Nothing here knows about the network.
"""
from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from road_seg_core.bundled import resolve_model
from road_seg_core.checkpoint import CheckpointError
from road_seg_core.engines import create_engine
from road_seg_core.handoff import LatestSlot
from road_seg_core.image_codec import ImageFormatError
from road_seg_core.input_plan import InputPlan, InputRejected, StartupError, plan_inputs
from road_seg_core.node_args import ArgumentError, check_ros_arguments
from road_seg_core.node_config import NODE_NAME, PerceptionConfig
from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.reception import Reception, SyncedSet, check_sync_policy
from road_seg_core.sensor_spec import stamp_ns
from road_seg_core.telemetry import NodeStats
from road_seg_ros.conversions import image_to_array
from road_seg_ros.diagnostics import build_diagnostics
from road_seg_ros.mask_publisher import MaskPublishers
from road_seg_ros.node_exit import StopSignals, end_process


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    rel = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=rel)


class PerceptionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = self._read_parameters()
        check_sync_policy(self.cfg)  # before the model loads: message_filters missing is one FATAL line at once
        try:
            model_path = resolve_model(self.cfg.model)
            self.engine = create_engine(model_path, backend=self.cfg.backend, device=self.cfg.device,
                                        **self.cfg.engine_options())
        except (CheckpointError, FileNotFoundError, ValueError, RuntimeError, ImportError) as exc:
            raise StartupError(f"cannot load model: {exc}") from exc
        self.model_path = str(model_path)
        self.plan: InputPlan = plan_inputs(tuple(self.engine.meta.modalities), self.cfg)
        self.pipeline = SegmentationPipeline(self.engine, self.cfg.preprocess_config(), obstacles=self.cfg.obstacles)
        self.stats = NodeStats()
        self._last_log: dict[tuple[str, str], float] = {}

        out_qos = qos_profile("reliable", 5)
        self.outputs = MaskPublishers(self, out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.reception = Reception(self.plan, self.cfg,
                                   decode_pixels=functools.partial(image_to_array, use_cv_bridge=self.cfg.use_cv_bridge),
                                   stats=self.stats, on_reject=self._log_reject)
        self.sync_impl = self.reception.implementation
        self._down_logged: tuple[str, ...] = ()
        self._down_log_time = -1e9
        # Sensor down / back is reported through this node's logger (throttled), not the synchroniser's own log.
        logging.getLogger("road_seg_core.sensor_timeout").setLevel(logging.ERROR)
        self._subs = []
        # Messages are collected per wait of the executor and fed to the synchroniser in stamp order once the
        # wait's subscriptions are all taken (`Reception.receive_batch`: after a stall, the order of the
        # subscriptions would otherwise decide which message a set gets).
        self._pending: list[tuple[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._batch_done = self.create_guard_condition(self._feed_pending)
        for inp in self.plan.sync_inputs:
            q = getattr(self.cfg.qos, inp.key)
            msg_type = DisparityImage if inp.key == "disparity" else Image
            self._subs.append(self.create_subscription(
                msg_type, inp.topic, self._receiver(inp.key), qos_profile(q.reliability, q.depth)))
        if self.plan.needs_camera_info:
            info_qos = qos_profile("reliable", 1)
            for key in ("left_info", "right_info"):
                self._subs.append(self.create_subscription(
                    CameraInfo, getattr(self.cfg.topics, key),
                    functools.partial(self.reception.receive_camera_info, key), info_qos))

        self._slot = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="road_seg_inference", daemon=True)
        self._worker.start()
        self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"model {self.model_path} ({', '.join(self.engine.meta.modalities)}; input "
            f"{self.engine.meta.input_size[1]}x{self.engine.meta.input_size[0]}) on {self.engine.backend}/"
            f"{self.engine.device}; sync {self.cfg.sync.policy} ({self.sync_impl}) over "
            f"{', '.join(i.topic for i in self.plan.sync_inputs)}")

    # -- parameters ---------------------------------------------------------------------------------------------
    def _read_parameters(self) -> PerceptionConfig:
        """Declare every parameter and check each value (PerceptionConfig.from_flat: type, length, range).

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
    def _receiver(self, key: str) -> Callable[[Any], None]:
        def on_message(msg: Any) -> None:
            with self._pending_lock:
                self._pending.append((key, msg))
            # Its callback runs after this wait's subscriptions: a guard triggered now is seen by the next wait.
            self._batch_done.trigger()

        return on_message

    def _feed_pending(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        for synced in self.reception.receive_batch(batch):
            self._hand_off(synced)

    def _hand_off(self, synced: SyncedSet) -> None:
        if self._slot.put(synced):
            with self.stats.lock:
                self.stats.dropped_sets += 1

    def _log_reject(self, topic: str, reason: str, detail: str, count: int) -> None:
        now = time.monotonic()
        if now - self._last_log.get((topic, reason), -1e9) >= self.cfg.log_throttle:
            self._last_log[(topic, reason)] = now
            self.get_logger().warning(f"rejected message on {topic}: {reason}: {detail} ({count} so far)")

    # -- inference ----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            synced = self._slot.take()
            if synced is None:
                return
            t_start = time.perf_counter()
            try:
                frame = self.reception.assemble(synced)
            except (InputRejected, ImageFormatError) as exc:
                with self.stats.lock:
                    self.stats.failed_sets += 1
                self.reception.reject(getattr(exc, "topic", self.cfg.topics.left), exc.reason, str(exc))
                continue
            except Exception as exc:  # a bad set must never stop the worker
                with self.stats.lock:
                    self.stats.failed_sets += 1
                self.reception.reject("sync", "conversion_error", repr(exc))
                continue
            t_conv = time.perf_counter()
            try:
                with_overlay = self.outputs.overlay_wanted
                result = self.pipeline.run(frame, with_overlay, out=self.outputs.buffers(frame.size, with_overlay))
            except Exception as exc:
                with self.stats.lock:
                    self.stats.failed_sets += 1
                self.reception.reject("model", "inference_error", repr(exc))
                continue
            t_pub = time.perf_counter()
            try:
                self._publish(synced.left.msg.header, result.masks)
            except Exception as exc:
                if self._slot.closed:  # shutting down: the set is dropped quietly
                    return
                self.reception.reject("output", "publish_error", repr(exc))
                continue
            t_end = time.perf_counter()
            for name, ms in result.timings_ms.items():
                self.stats.stage(name, ms)
            self.stats.stage("convert", (t_conv - t_start) * 1e3)
            self.stats.stage("publish", (t_end - t_pub) * 1e3)

    @property
    def sensors_down(self) -> tuple[str, ...]:
        """Inputs the synchroniser currently goes on without (`sync.sensor_timeout`)."""
        return self.reception.sensors_down

    def _publish(self, header: Header, masks) -> None:
        self.outputs.publish(header, masks)
        now_ns = self.get_clock().now().nanoseconds
        with self.stats.lock:
            self.stats.published += 1
            self.stats.output_rate.tick()
            self.stats.latency_ms.add((now_ns - stamp_ns(header)) / 1e6)

    # -- diagnostics --------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        self._log_sensors_down()
        msg = build_diagnostics(self.stats, self, self.get_clock().now().to_msg())
        self.pub_diag.publish(msg)

    def _log_sensors_down(self) -> None:
        """Sensor down / back, through the node's logger, at most once per `log_throttle` (a flapping sensor
        gives one line per period, with the state at that moment)."""
        down = self.sensors_down
        now = time.monotonic()
        if down == self._down_logged or now - self._down_log_time < self.cfg.log_throttle:
            return
        back = [k for k in self._down_logged if k not in down]
        if down:
            self.get_logger().warning(f"running without {', '.join(down)}: no usable message for more than "
                                      f"{self.cfg.sync.sensor_timeout:g} s; the model sees it as absent"
                                      + (f" ({', '.join(back)} back)" if back else ""))
        else:
            self.get_logger().info(f"every input is present again ({', '.join(back)} back)")
        self._down_logged, self._down_log_time = down, now

    def stop_worker(self, timeout: float = 10.0) -> None:
        """End the inference thread (it finishes and publishes the set it is on) while the context still works."""
        self._slot.close()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=timeout)

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # Before rcl parses the arguments: a missing --params-file would be "Failed to parse global arguments",
    # and a `-p` that a node-specific file entry overrides would be dropped in silence.
    try:
        check_ros_arguments(list(sys.argv if args is None else args))
    except ArgumentError as exc:
        print(f"perception_node: {exc}", file=sys.stderr)
        return 2
    # rclpy's own handlers would invalidate the context at once, under a worker that is still publishing; here a
    # signal only stops the spin, the worker ends, and then the context goes.
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as exc:
        print(f"perception_node: cannot start: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    stop = StopSignals()
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
        while not stop.requested and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.get_logger().info("shutting down")
        node.stop_worker()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    end_process(0)  # shut down cleanly: skip the interpreter teardown (see node_exit)


if __name__ == "__main__":
    sys.exit(main())
