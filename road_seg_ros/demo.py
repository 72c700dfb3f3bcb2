"""`road-seg demo` / `make demo`: sim_sensors + perception_node with the bundled model, on this machine.

Starts the same two processes as `ros2 launch road_seg_ros perception.launch.py
with_sim:=true` (road_seg_core.launch_plan), listens to the node's outputs and
the simulator's ground truth, and after a while writes overlay images and a
summary (frames, latency, IoU against /sim/labels) to the output folder.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from road_seg_core.arg_types import check_image_size, non_negative_int, positive_float
from road_seg_core.bundled import resolve_model
from road_seg_core.errors import UserError
from road_seg_core.metrics import ConfusionMatrix, to_json
from road_seg_core.image_codec import to_rgb8
from road_seg_core.obstacle_metrics import ObstacleCounter
from road_seg_core.reception import image_array
from road_seg_core.sensor_spec import CONDITION_TOPIC, GT_TOPIC, POTHOLE_IDS_TOPIC, Topics, stamp_ns
from road_seg_core.visualize import compose

OUTPUTS = {"labels": "/road_seg/labels"}
CAMERA_KEEP = 60  # recent camera frames kept to pair with the node's labels (the node lags a few frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="folder for overlays and summary.json")
    parser.add_argument("--duration", type=positive_float, default=30.0, help="seconds of simulated driving")
    parser.add_argument("--rate", type=positive_float, default=5.0, help="sim_sensors frame rate (Hz)")
    parser.add_argument("--width", type=int, default=640, help="simulated camera width in pixels")
    parser.add_argument("--height", type=int, default=360, help="simulated camera height in pixels")
    parser.add_argument("--model", default="", help="checkpoint (default: the bundled model)")
    parser.add_argument("--device", default="cpu",
                        help="torch device the node runs the model on (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--threads", type=non_negative_int, default=1,
                        help="node inference threads (sim, node and this listener share the CPU)")
    parser.add_argument("--save", type=non_negative_int, default=8, help="number of overlay images to save")


def _find_executable(name: str) -> str:
    """Console scripts sit next to this Python in a venv, or in lib/road_seg_ros of a colcon install."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here.parent)
    found = shutil.which(name)
    if found:
        return str(Path(found).parent)
    raise FileNotFoundError(f"cannot find the {name} executable; install the package (make venv or colcon build)")


def _number(value: str | None) -> int | float | None:
    """A diagnostics value (always a string on the wire) as the number it is; None if absent or not a number."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None  # "nan" (an empty window) is no number JSON can hold


def run(args: argparse.Namespace) -> int:
    from road_seg_core.checkpoint import load_checkpoint

    try:
        check_image_size(f"--width {args.width} --height {args.height}", args.width, args.height)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model = str(resolve_model(args.model or None))
    load_checkpoint(model)  # a missing or broken model is one line (CheckpointError), not a node dying in its log
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["ROS_DOMAIN_ID"] = os.environ.get("ROAD_SEG_DEMO_DOMAIN", str(random.randint(120, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    # Imported here: rclpy reads the environment at import/init time.
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from road_seg_core.launch_plan import perception_plan
    from road_seg_core.processes import ProcessGroup

    plan = perception_plan(model=model, with_sim=True,
                           sim_parameters={"rate": args.rate, "width": args.width, "height": args.height},
                           node_parameters={"device": args.device, "threads": args.threads})
    procs = ProcessGroup.from_plan(plan, _find_executable("perception_node"), out)
    print(f"demo: sim_sensors {args.width}x{args.height} @ {args.rate:g} Hz -> perception_node ({model}); "
          f"{args.duration:g} s; ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}", flush=True)

    rclpy.init()
    node = rclpy.create_node("road_seg_demo")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.RELIABLE)
    lock = threading.Lock()
    gt: dict[int, np.ndarray] = {}
    pothole_ids: dict[int, np.ndarray] = {}  # which pothole each ground-truth pothole pixel is, by stamp
    labels: dict[int, np.ndarray] = {}
    camera: dict[int, np.ndarray] = {}  # the last CAMERA_KEEP left images, by stamp
    shown: dict[int, np.ndarray] = {}  # camera images of the first --save frames the node labelled
    diag: dict[str, str] = {}
    condition: list[str] = []  # latest announced condition
    condition_of: dict[int, str] = {}  # ground-truth stamp -> condition current when it arrived

    def keep(store: dict, limit: int = 400):
        def cb(msg) -> None:  # the node's outputs and ground truth, decoded as the node decodes its inputs
            with lock:
                if len(store) < limit:
                    store[stamp_ns(msg)] = image_array(msg).copy()
        return cb

    def on_camera(msg) -> None:
        rgb = to_rgb8(image_array(msg), msg.encoding)
        with lock:
            camera[stamp_ns(msg)] = rgb
            while len(camera) > CAMERA_KEEP:
                camera.pop(next(iter(camera)))

    store_labels = keep(labels)

    def on_labels(msg) -> None:
        store_labels(msg)
        with lock:
            s = stamp_ns(msg)
            if len(shown) < args.save and s in camera:
                shown[s] = camera[s]

    def on_diag(msg) -> None:
        for status in msg.status:
            if status.name.startswith("road_seg"):
                with lock:
                    diag.update({kv.key: kv.value for kv in status.values})

    def on_condition(msg) -> None:
        with lock:
            condition[:] = [str(msg.data)]

    keep_gt = keep(gt)

    def on_gt(msg) -> None:
        keep_gt(msg)
        with lock:
            if condition:
                condition_of[stamp_ns(msg)] = condition[0]

    node.create_subscription(String, CONDITION_TOPIC, on_condition, qos)
    node.create_subscription(Image, GT_TOPIC, on_gt, qos)
    node.create_subscription(Image, POTHOLE_IDS_TOPIC, keep(pothole_ids), qos)
    node.create_subscription(Image, OUTPUTS["labels"], on_labels, qos)
    node.create_subscription(Image, Topics().left, on_camera, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.duration
    failed = None
    try:
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if procs.exited():
                name, code = procs.exited()[0]
                failed = f"{name} exited early (code {code}); see the logs in {out}"
                break
    finally:
        procs.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if failed:
        print(f"demo: {failed}", file=sys.stderr)
        return 1

    with lock:
        matched = sorted(set(gt) & set(labels))
        cm = ConfusionMatrix()
        obstacles = ObstacleCounter()
        by_condition: dict[str, ObstacleCounter] = {}
        for s in matched:
            cm.update(labels[s], gt[s])
            ids = pothole_ids.get(s)
            ids = ids if ids is not None and ids.shape == gt[s].shape else None  # else: connected components
            obstacles.update(labels[s], gt[s], instances=ids)
            if s in condition_of:
                by_condition.setdefault(condition_of[s], ObstacleCounter()).update(labels[s], gt[s], instances=ids)
        for i, (s, rgb) in enumerate(sorted(shown.items())):
            picture = compose(rgb, labels[s], gt.get(s), caption=f"demo frame {i}, stamp {s}")
            cv2.imwrite(str(out / f"overlay_{i:02d}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    metrics = cm.compute()
    summary = {
        "model": model,
        "frames_published_by_node": _number(diag.get("published")) or 0,
        "frames_evaluated": len(matched),
        "sim": {"width": args.width, "height": args.height, "rate_hz": args.rate, "duration_s": args.duration},
        "latency_ms": {"p50": _number(diag.get("latency_ms.p50")), "p99": _number(diag.get("latency_ms.p99"))},
        "stage_ms_p50": {k.split(".")[1]: _number(v) for k, v in diag.items() if k.startswith("stage_ms.")},
        "dropped_sets": _number(diag.get("dropped_sets")),
        "rejected_total": _number(diag.get("rejected_total")),
        "metrics": to_json(metrics),
        # Misses and false alarms of the negative-obstacle mask (road_seg_core.obstacle_metrics); per condition when
        # the simulator announces conditions on /sim/condition.
        "obstacles": to_json(obstacles.compute()),
        "obstacles_by_condition": {c: to_json(o.compute()) for c, o in sorted(by_condition.items())},
        "overlays": sorted(p.name for p in out.glob("overlay_*.png")),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    per = metrics["per_class"]
    print(f"demo: {len(matched)} frames evaluated against {GT_TOPIC}; mIoU {metrics['miou']:.3f}; IoU drivable "
          f"{per['drivable']['iou']:.3f}, positive obstacle {per['positive_obstacle']['iou']:.3f}, negative obstacle "
          f"{per['negative_obstacle']['iou']:.3f}; latency p50 {summary['latency_ms']['p50']} ms, p99 "
          f"{summary['latency_ms']['p99']} ms")
    ob = summary["obstacles"]
    print(f"demo: potholes found {ob['potholes_found']}/{ob['potholes']} by object; phantom pothole frames "
          f"{ob['phantom_frames']}/{ob['clear_frames']} of the frames without a pothole; false pothole blobs "
          f"{ob['false_pothole_blobs']}/{ob['pothole_blobs']}")
    print(f"demo: overlays (camera | prediction | ground truth) and summary.json in {out.resolve()}")
    return 0 if matched else 1
