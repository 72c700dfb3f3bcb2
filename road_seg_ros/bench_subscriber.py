"""The benchmark's reference: an rclpy process that subscribes to the node's inputs and does nothing else.

Its CPU time per received set is the bare cost of getting those messages into
Python (DDS receive, deserialisation, executor) — what any subscriber pays —
so `road-seg bench` can state the node's own per-frame work as a ratio of it.
Subscriptions use the node's QoS for each input. Run as
``python -m road_seg_ros.bench_subscriber --out FILE --sets N TOPIC=QOS...``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def _qos(spec: str) -> QoSProfile:
    reliability, _, depth = spec.partition(":")
    rel = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth or 2), reliability=rel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m road_seg_ros.bench_subscriber")
    parser.add_argument("--out", required=True, help="JSON result file")
    parser.add_argument("--sets", type=int, default=300, help="sets (messages on the first topic) to measure")
    parser.add_argument("--warmup", type=int, default=30, help="sets received before measuring starts")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("topics", nargs="+", help="TOPIC=RELIABILITY:DEPTH; the first topic counts the sets")
    args = parser.parse_args(argv)
    topics = [(t.partition("=")[0], _qos(t.partition("=")[2] or "reliable:2")) for t in args.topics]

    rclpy.init()
    node = rclpy.create_node("bench_empty_subscriber")
    counts = {name: 0 for name, _ in topics}
    marks: dict[str, float] = {}
    first = topics[0][0]

    def receiver(name: str):
        def on_message(msg: Image) -> None:
            counts[name] += 1
            if name == first:
                if counts[first] == args.warmup:
                    marks["cpu0"], marks["wall0"] = time.process_time(), time.perf_counter()
                    marks["counts0"] = dict(counts)
                elif counts[first] == args.warmup + args.sets:
                    marks["cpu1"], marks["wall1"] = time.process_time(), time.perf_counter()
                    marks["counts1"] = dict(counts)
        return on_message

    subs = [node.create_subscription(Image, name, receiver(name), qos) for name, qos in topics]
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.timeout
    try:
        while "cpu1" not in marks and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        del subs
        node.destroy_node()
        rclpy.try_shutdown()
    result: dict = {"topics": [name for name, _ in topics], "counts": counts, "pid": os.getpid()}
    if "cpu1" in marks:
        sets = args.sets
        received = {k: marks["counts1"][k] - marks["counts0"][k] for k in counts}
        result.update(sets=sets, received=received,
                      cpu_ms_per_set=(marks["cpu1"] - marks["cpu0"]) * 1e3 / sets,
                      rate_hz=sets / (marks["wall1"] - marks["wall0"]))
    else:
        result["error"] = f"timed out after {args.timeout:.0f} s with {counts} messages"
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if "cpu1" in marks else 1


if __name__ == "__main__":
    sys.exit(main())
