"""Helpers for tests that run real rclpy processes: collect topics (processes: `road_seg_core.processes`)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from road_seg_core.processes import ProcessGroup  # for type hints

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)


class Collector:
    """A node in its own context that records every message on the given topics."""

    def __init__(self, domain: int, topics: dict[str, type], qos: QoSProfile = RELIABLE) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("test_collector", context=self.context)
        self.messages: dict[str, list[Any]] = defaultdict(list)
        self.lock = threading.Lock()
        for topic, msg_type in topics.items():
            self.node.create_subscription(msg_type, topic, self._store(topic), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _store(self, topic: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self.lock:
                self.messages[topic].append(msg)
        return cb

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.messages[topic])

    def wait_for(self, predicate: Callable[[], bool], timeout: float, procs: ProcessGroup | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if procs is not None and not procs.alive():
                return False
            time.sleep(0.1)
        return predicate()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)
