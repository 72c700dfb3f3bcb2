"""`road-seg bench`: how fast the model backends and the node are, against the sensors' frame budget (not a test).

Four measurements, printed as tables and written as JSON, with a one-line
summary last:

1. Model: every backend and precision this machine can run
   (`road_seg_core.bench`), latency p50/p99 and throughput.
2. Node stages at the sensor resolution (1280x720): the node's own code paths
   on sim_sensors' messages — decode (image_to_array + encoding check +
   synchroniser), convert (frame assembly: to_rgb8 / to_metres), preprocess,
   model, postprocess (make_masks), publish (array_to_image + rclpy publish),
   in one process, frame after frame.
3. Transport reference: an empty rclpy subscriber process receiving the same
   input topics from sim_sensors with the node's QoS; its CPU time per set is
   the bare cost of receiving them, so the node's own overhead (all stages but
   the model) reads as a ratio of it.
4. Sensor rates: sim_sensors -> perception_node as real processes over
   loopback (isolated ROS_DOMAIN_ID, RELIABLE QoS) at 30 and 60 Hz:
   end-to-end latency (left stamp -> mask publish, from the node's
   /diagnostics, and -> mask received), the share of synchronised sets dropped,
   and the node's CPU time per published frame.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from road_seg_core import bench as model_bench
from road_seg_core.processes import ProcessGroup

OUT_TOPIC = "/road_seg/drivable_mask"
NODE_OUTPUTS = ("drivable_mask", "obstacle_mask", "labels")
STAGES = ("decode", "convert", "preprocess", "model", "postprocess", "publish")


# -- statistics -----------------------------------------------------------------------------------------------------
def summarise(samples_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "mean": float(values.mean())}


# -- 2. node stages in one process ----------------------------------------------------------------------------------
def received_messages(sensor_size: tuple[int, int], scenes: int = 3, seed: int = 0) -> list[Any]:
    """sim_sensors' messages for a few scenes, round-tripped through rclpy serialisation so every field has the
    type a subscription callback sees (e.g. `data` as array.array)."""
    from rclpy.serialization import deserialize_message, serialize_message

    from road_seg_core.synthetic import render_scene
    from road_seg_ros.sim_sensors import encode_scene

    h, w = sensor_size
    conditions = ("day", "night", "fog")
    out = []
    for i in range(scenes):
        msgs = encode_scene(render_scene(seed + i, width=w, height=h, condition=conditions[i % 3]), True)
        for field in ("left", "right", "depth", "disparity", "thermal", "left_info", "right_info"):
            msg = getattr(msgs, field)
            setattr(msgs, field, deserialize_message(serialize_message(msg), type(msg)))
        out.append(msgs)
    return out


class StageBench:
    """Runs the node's per-frame code on prepared messages and times each stage."""

    def __init__(self, engine, cfg, messages: list[Any], ros_node) -> None:
        import functools

        from sensor_msgs.msg import Image

        from road_seg_core.input_plan import plan_inputs
        from road_seg_core.pipeline import SegmentationPipeline
        from road_seg_core.reception import Reception
        from road_seg_ros.conversions import image_to_array

        self.engine, self.cfg, self.messages = engine, cfg, messages
        self.plan = plan_inputs(tuple(engine.meta.modalities), cfg)
        self.pipeline = SegmentationPipeline(engine, cfg.preprocess_config())
        # The node's reception path, built the way the node builds it (same synchroniser for the same config).
        self.reception = Reception(self.plan, cfg, functools.partial(image_to_array, use_cv_bridge=cfg.use_cv_bridge))
        first = messages[0]
        self.reception.receive_camera_info("left_info", first.left_info)
        self.reception.receive_camera_info("right_info", first.right_info)
        self.publishers = {name: ros_node.create_publisher(Image, f"~/{name}", 5) for name in NODE_OUTPUTS}
        self.overlay_publisher = ros_node.create_publisher(Image, "~/overlay", 5)
        self._timed = _CpuTimedEngine(engine)
        self.pipeline.engine = self._timed  # same pipeline code; the wrapper only times the model call

    def frame_once(self, index: int, with_overlay: bool = False) -> tuple[dict[str, float], dict[str, float]]:
        """One frame through every stage: (wall ms per stage, process CPU ms per stage).

        CPU time counts every thread of this process (OpenCV's and the runtime's workers included) and,
        unlike wall time, not the time spent waiting for a core on a busy machine.
        """
        from road_seg_ros.conversions import array_to_image

        msgs = self.messages[index % len(self.messages)]
        stamp = 1_000_000_000 + index * 33_000_000
        c0, t0 = time.process_time(), time.perf_counter()
        matched: list = []
        for key in self.plan.keys:
            matched += self.reception.receive(key, getattr(msgs, key), stamp)
        c1, t1 = time.process_time(), time.perf_counter()
        if len(matched) != 1 or matched[0].missing:
            raise RuntimeError(f"synchroniser produced {len(matched)} sets for one frame "
                               f"(rejected: {dict(self.reception.stats.rejected)})")
        frame = self.reception.assemble(matched[0])
        c2, t2 = time.process_time(), time.perf_counter()
        result = self.pipeline.run(frame, with_overlay=with_overlay)
        c3, t3 = time.process_time(), time.perf_counter()
        header = msgs.left.header
        masks = result.masks
        for name, mask in zip(NODE_OUTPUTS, (masks.drivable, masks.obstacle, masks.labels)):
            self.publishers[name].publish(array_to_image(mask, "mono8", header))
        if masks.overlay is not None:
            self.overlay_publisher.publish(array_to_image(masks.overlay, "rgb8", header))
        c4, t4 = time.process_time(), time.perf_counter()
        wall = {"decode": (t1 - t0) * 1e3, "convert": (t2 - t1) * 1e3, **result.timings_ms,
                "publish": (t4 - t3) * 1e3}
        cpu = {"decode": (c1 - c0) * 1e3, "convert": (c2 - c1) * 1e3, "pipeline": (c3 - c2) * 1e3,
               "publish": (c4 - c3) * 1e3}
        return wall, cpu

    def run(self, frames: int, with_overlay: bool = False, warmup: int = 3) -> dict[str, dict[str, float]]:
        """Per-stage wall-time statistics, plus "overhead" (all stages but the model) in wall and CPU time."""
        for i in range(warmup):
            self.frame_once(i, with_overlay)
        samples: dict[str, list[float]] = {s: [] for s in STAGES}
        overhead_wall, overhead_cpu, model_cpu = [], [], []
        for i in range(frames):
            wall, cpu = self.frame_once(warmup + i, with_overlay)
            for name, ms in wall.items():
                samples[name].append(ms)
            overhead_wall.append(sum(ms for name, ms in wall.items() if name != "model"))
            model_cpu.append(self._timed.cpu_ms)
            overhead_cpu.append(sum(cpu.values()) - self._timed.cpu_ms)
        out = {name: summarise(values) for name, values in samples.items()}
        out["overhead"] = summarise(overhead_wall)  # everything the node does per frame except the model
        out["overhead_cpu"] = summarise(overhead_cpu)
        out["model_cpu"] = summarise(model_cpu)
        return out


class _CpuTimedEngine:
    """Delegates to an engine and records the process CPU time of its last `infer_labels` call, so the
    pipeline's CPU time can be split into model and everything else without changing the pipeline."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.cpu_ms = 0.0

    def infer_labels(self, inputs):
        start = time.process_time()
        try:
            return self._engine.infer_labels(inputs)
        finally:
            self.cpu_ms = (time.process_time() - start) * 1e3

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


def transport_in_process(messages: list[Any], keys: Sequence[str]) -> dict[str, float]:
    """rclpy (de)serialisation of one input set: the Python-side floor of any subscriber/publisher."""
    from rclpy.serialization import deserialize_message, serialize_message

    blobs = [[(serialize_message(getattr(m, k)), type(getattr(m, k))) for k in keys] for m in messages]
    samples = []
    for i in range(30):
        start = time.perf_counter()
        for blob, kind in blobs[i % len(blobs)]:
            deserialize_message(blob, kind)
        samples.append((time.perf_counter() - start) * 1e3)
    return summarise(samples)


# -- processes ------------------------------------------------------------------------------------------------------
def find_bin_dir(name: str = "perception_node") -> str:
    here = Path(sys.executable).parent
    if (here / name).exists():
        return str(here)
    import shutil

    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"cannot find the {name} executable; install the package (make venv / colcon build)")
    return str(Path(found).parent)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ros_env(domain: int, cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if cache_dir:
        env["ROAD_SEG_CACHE_DIR"] = str(cache_dir)
    return env


class Listener:
    """Mask stamps with their arrival time, and the node's latest diagnostics, in an rclpy context of its own."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("road_seg_bench_listener", context=self.context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.masks: list[tuple[int, int]] = []  # (stamp ns, arrival ns)
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.node.create_subscription(Image, OUT_TOPIC, self._on_mask, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _on_mask(self, msg) -> None:
        arrival = time.time_ns()
        with self.lock:
            self.masks.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, arrival))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("road_seg"):
                with self.lock:
                    self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def latest_diag_after(self, t: float, timeout: float) -> dict[str, str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for stamp, values in self.diagnostics:
                    if stamp >= t:
                        return values
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


def _num(values: dict[str, str], key: str) -> float:
    try:
        return float(values.get(key, "nan"))
    except ValueError:
        return float("nan")


def sensor_rate_run(checkpoint: str, backend: str, device: str, rate: float, duration: float,
                    sensor_size: tuple[int, int], cache_dir: str | None, log_dir: Path,
                    startup_timeout: float = 180.0) -> dict[str, Any]:
    """sim_sensors -> perception_node at `rate` Hz for `duration` s of steady state."""
    from road_seg_core.launch_plan import perception_plan

    domain = random.randint(201, 230)
    h, w = sensor_size
    plan = perception_plan(model=checkpoint, with_sim=True,
                           sim_parameters={"rate": float(rate), "width": w, "height": h, "loop_frames": 4,
                                           "publish_right": False, "seed": 5},
                           node_parameters={"backend": backend, "device": device})
    bin_dir = find_bin_dir()
    commands = [(spec.name, spec.to_command(bin_dir)) for spec in plan]
    listener = Listener(domain)
    result: dict[str, Any] = {"rate_hz": rate, "backend": backend, "device": device, "domain_id": domain}
    try:
        with ProcessGroup(commands, log_dir, ros_env(domain, cache_dir)) as procs:
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline and procs.alive():
                with listener.lock:
                    if len(listener.masks) >= 5:
                        break
                time.sleep(0.2)
            else:
                result["error"] = "no masks before the start-up timeout\n" + procs.logs()
                return result
            time.sleep(2.0)  # let queues and rates settle after start-up
            node_pid = procs.pid("road_seg")
            start = listener.latest_diag_after(time.monotonic(), 5.0)
            t_start, cpu_start, wall_start = time.time_ns(), cpu_seconds(node_pid), time.monotonic()
            time.sleep(duration)
            end = listener.latest_diag_after(time.monotonic(), 5.0)
            t_end, cpu_end, wall_end = time.time_ns(), cpu_seconds(node_pid), time.monotonic()
            if start is None or end is None or not procs.alive():
                result["error"] = "no diagnostics from the node\n" + procs.logs()
                return result
    finally:
        listener.close()
    with listener.lock:
        latencies = [(arrival - stamp) / 1e6 for stamp, arrival in listener.masks if t_start <= arrival <= t_end]
    synced = _num(end, "synchronised_sets") - _num(start, "synchronised_sets")
    dropped = _num(end, "dropped_sets") - _num(start, "dropped_sets")
    published = _num(end, "published") - _num(start, "published")
    result.update(
        window_s=round(wall_end - wall_start, 2),
        input_rate_hz={k.split(".", 1)[1]: _num(end, k) for k in end if k.startswith("input_rate_hz.")},
        output_rate_hz=_num(end, "output_rate_hz"),
        synchronised_sets=synced, dropped_sets=dropped, published=published,
        dropped_share=dropped / synced if synced > 0 else float("nan"),
        # Left images the node received that never formed a set (an input overwritten in its QoS queue
        # before its partners arrived): estimated from the node's input rate over the window.
        unsynchronised_share=max(0.0, 1.0 - synced / (_num(end, "input_rate_hz.left") * (wall_end - wall_start)))
        if _num(end, "input_rate_hz.left") > 0 else float("nan"),
        latency_publish_ms={"p50": _num(end, "latency_ms.p50"), "p99": _num(end, "latency_ms.p99"),
                            "source": "node /diagnostics: left stamp -> mask publish (last 1000 frames)"},
        latency_received_ms={**summarise(latencies), "source": "left stamp -> mask received by a subscriber"},
        node_stage_ms_p50={k.split(".")[1]: _num(end, k) for k in end if k.startswith("stage_ms.")},
        node_cpu_ms_per_frame=(cpu_end - cpu_start) * 1e3 / published if published > 0 else float("nan"),
    )
    return result


def bare_receive_run(keys: Sequence[str], cfg, rate: float, sets: int, sensor_size: tuple[int, int],
                     log_dir: Path) -> dict[str, Any]:
    """sim_sensors -> an empty rclpy subscriber on the node's input topics with the node's QoS."""
    from road_seg_core.launch_plan import perception_plan

    domain = random.randint(201, 230)
    h, w = sensor_size
    sim = perception_plan(with_sim=True, sim_parameters={"rate": float(rate), "width": w, "height": h,
                                                         "loop_frames": 4, "publish_right": False, "seed": 5})[0]
    topics = []
    for key in keys:
        q = getattr(cfg.qos, key)
        topics.append(f"{getattr(cfg.topics, key)}={q.reliability}:{q.depth}")
    out = log_dir / "bare_receive.json"
    subscriber = [sys.executable, "-m", "road_seg_ros.bench_subscriber", "--out", str(out), "--sets", str(sets),
                  "--timeout", str(120 + sets / rate), *topics]
    with ProcessGroup([("sim_sensors", sim.to_command(find_bin_dir("sim_sensors"))), ("bare_subscriber", subscriber)],
                      log_dir, ros_env(domain, None)) as procs:
        proc = procs.process("bare_subscriber")
        try:
            proc.wait(timeout=150 + sets / rate)
        except subprocess.TimeoutExpired:
            return {"error": "empty subscriber did not finish\n" + procs.logs()}
        if not out.is_file():
            return {"error": "empty subscriber wrote no result\n" + procs.logs()}
    result = json.loads(out.read_text())
    result["rate_hz_requested"] = rate
    return result


# -- command line ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    model_bench.add_model_arguments(parser)
    parser.add_argument("--sensor-width", type=int, default=1280, help="sensor image width for the node runs")
    parser.add_argument("--sensor-height", type=int, default=720, help="sensor image height for the node runs")
    parser.add_argument("--frames", type=int, default=40, help="frames timed per node-stage measurement")
    parser.add_argument("--rates", default="30,60", help="sim_sensors rates (Hz) for the live runs")
    parser.add_argument("--duration", type=float, default=10.0, help="steady-state seconds per live run")
    parser.add_argument("--node-backend", default="", help="backend of the node runs (default: the fastest "
                                                           "model backend measured here)")
    parser.add_argument("--no-live", action="store_true", help="skip the sim_sensors/perception_node runs")


def run(args: argparse.Namespace) -> int:
    import rclpy

    from road_seg_core.bundled import resolve_model
    from road_seg_core.engines import create_engine, resolve_auto_device
    from road_seg_core.node_config import PerceptionConfig

    from road_seg_core.checkpoint import CheckpointError, load_checkpoint

    try:
        checkpoint = str(resolve_model(args.checkpoint or None))
        load_checkpoint(checkpoint)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"road-seg bench: {exc}; pass --checkpoint", file=sys.stderr)
        return 2
    device = resolve_auto_device(args.device)
    cache_dir = args.cache_dir or None
    sensor_size = (args.sensor_height, args.sensor_width)
    report: dict[str, Any] = {"machine": model_bench.machine(), "checkpoint": checkpoint}

    print(f"[1/4] model backends ({checkpoint})")
    results = model_bench.bench_backends(checkpoint, args.backends, device, model_bench.model_input_size(args),
                                         args.batch, args.iterations, cache_dir=cache_dir, int8=args.int8,
                                         threads=args.threads)
    report["model"] = [r.to_dict() for r in results]
    ran = [r for r in results if not r.skipped]
    node_backend = args.node_backend or (min(ran, key=lambda r: r.p50_ms).backend if ran else "torch")
    node_device = "cpu" if device == "cpu" else device

    h, w = sensor_size
    print(f"[2/4] node stages at {w}x{h} ({node_backend} on {node_device}, {args.frames} frames)")
    cfg = PerceptionConfig()
    engine = create_engine(checkpoint, backend=node_backend, device=node_device,
                           **({"cache_dir": cache_dir} if node_backend != "torch" else {}))
    messages = received_messages(sensor_size)
    domain = random.randint(201, 230)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        ros_node = rclpy.create_node("road_seg", context=context)
        stages = StageBench(engine, cfg, messages, ros_node)
        report["node_stages"] = {"sensor_size": [h, w], "backend": node_backend, "device": engine.device,
                                 "inputs": list(stages.plan.keys), "without_overlay": stages.run(args.frames),
                                 "with_overlay": stages.run(max(10, args.frames // 2), with_overlay=True)}
        ros_node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    report["transport"] = {"in_process_deserialise_ms": transport_in_process(messages, stages.plan.keys)}

    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with tempfile.TemporaryDirectory(prefix="road_seg_bench_") as tmp:
        log_dir = Path(tmp)
        if not args.no_live:
            print(f"[3/4] bare receive: empty rclpy subscriber on {', '.join(stages.plan.keys)} at {rates[0]:g} Hz")
            report["transport"]["empty_subscriber"] = bare_receive_run(
                stages.plan.keys, cfg, rates[0], int(rates[0] * args.duration), sensor_size, log_dir)
            report["sensor_rates"] = []
            for rate in rates:
                print(f"[4/4] sim_sensors -> perception_node at {rate:g} Hz ({w}x{h}, {node_backend})")
                report["sensor_rates"].append(sensor_rate_run(checkpoint, node_backend, node_device, rate,
                                                              args.duration, sensor_size, cache_dir, log_dir))
    report["machine"]["load_average_1m_end"] = model_bench.machine().get("load_average_1m")
    print()
    print(render(report))
    summary = summary_line(report)
    report["summary"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
        print(f"wrote {args.json}")
    print(summary)
    return 0


def render(report: dict[str, Any]) -> str:
    """The human-readable tables."""
    lines = ["== model backends ==", model_bench.format_table(
        [model_bench.BackendResult(**r) for r in report["model"]])]
    ns = report["node_stages"]
    h, w = ns["sensor_size"]
    lines += ["", f"== node per-frame cost at {w}x{h} ({ns['backend']} on {ns['device']}; inputs "
                  f"{', '.join(ns['inputs'])}) ==",
              f"{'stage':<14}{'p50 ms':>7}{'p99 ms':>9}{'+overlay p50':>14}"]
    for stage in STAGES + ("overhead", "overhead_cpu"):
        a, b = ns["without_overlay"][stage], ns["with_overlay"][stage]
        label = {"overhead": "all but model", "overhead_cpu": "  (CPU time)"}.get(stage, stage)
        lines.append(f"{label:<14}{a['p50']:>7.2f}{a['p99']:>9.2f}{b['p50']:>14.2f}")
    tr = report["transport"]
    lines += ["", "== transport reference (same input messages) ==",
              f"rclpy deserialisation in process: {tr['in_process_deserialise_ms']['p50']:.2f} ms per set"]
    bare = tr.get("empty_subscriber")
    if bare and "cpu_ms_per_set" in bare:
        lines.append(f"empty rclpy subscriber process: {bare['cpu_ms_per_set']:.2f} ms CPU per set at "
                     f"{bare['rate_hz']:.1f} Hz ({bare['sets']} sets)")
        cpu, wall = ns["without_overlay"]["overhead_cpu"]["p50"], ns["without_overlay"]["overhead"]["p50"]
        lines.append(f"node's own overhead / bare receive (CPU time): {cpu:.2f} / {bare['cpu_ms_per_set']:.2f} = "
                     f"{cpu / bare['cpu_ms_per_set']:.2f}x (wall time {wall:.2f} ms: "
                     f"{wall / bare['cpu_ms_per_set']:.2f}x)")
    elif bare:
        lines.append(f"empty subscriber: {bare.get('error', 'no result')[:300]}")
    if report.get("sensor_rates"):
        lines += ["", "== sim_sensors -> perception_node (live processes, loopback) ==",
                  f"{'rate':>6}{'in Hz':>8}{'out Hz':>8}{'sets':>7}{'unsynced':>9}{'dropped':>9}{'pub p50':>9}"
                  f"{'pub p99':>9}"
                  f"{'rx p50':>9}{'rx p99':>9}{'CPU ms/frame':>14}"]
        for r in report["sensor_rates"]:
            if "error" in r:
                lines.append(f"{r['rate_hz']:>6g}  error: {r['error'][:400]}")
                continue
            left_rate = r["input_rate_hz"].get("left", float("nan"))
            lines.append(f"{r['rate_hz']:>6g}{left_rate:>8.1f}{r['output_rate_hz']:>8.1f}"
                         f"{r['synchronised_sets']:>7.0f}{100 * r['unsynchronised_share']:>8.1f}%"
                         f"{100 * r['dropped_share']:>8.1f}%"
                         f"{r['latency_publish_ms']['p50']:>9.1f}{r['latency_publish_ms']['p99']:>9.1f}"
                         f"{r['latency_received_ms'].get('p50', float('nan')):>9.1f}"
                         f"{r['latency_received_ms'].get('p99', float('nan')):>9.1f}"
                         f"{r['node_cpu_ms_per_frame']:>14.1f}")
        lines.append("in Hz: left images reaching the node; unsynced: of those, never part of a synchronised set; "
                     "dropped: synchronised sets superseded before the worker took them; latency: pub = left stamp "
                     "-> mask publish (node diagnostics), rx = -> mask received by a subscriber")
    m = report["machine"]
    lines += ["", f"machine: {m.get('processor')} x{m.get('cpus')}, load average {m.get('load_average_1m')} -> "
                  f"{m.get('load_average_1m_end')}, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
                  f"onnxruntime {m.get('onnxruntime')}, tensorrt {m.get('tensorrt', 'absent')}"]
    return "\n".join(lines)


def summary_line(report: dict[str, Any]) -> str:
    parts = []
    ran = [r for r in report["model"] if not r["skipped"]]
    if ran:
        best = min(ran, key=lambda r: r["p50_ms"])
        torch_cpu = next((r for r in ran if r["backend"] == "torch" and r["precision"] == "fp32"), None)
        speedup = f" ({torch_cpu['p50_ms'] / best['p50_ms']:.1f}x torch fp32)" if torch_cpu and best is not \
            torch_cpu else ""
        h, w = best["input_size"]
        parts.append(f"model {best['backend']}/{best['precision']} {w}x{h} {best['p50_ms']:.1f} ms p50"
                     f"{speedup}")
    ns = report["node_stages"]
    overhead = ns["without_overlay"]["overhead_cpu"]["p50"]
    bare = report["transport"].get("empty_subscriber", {})
    ratio = f" = {overhead / bare['cpu_ms_per_set']:.2f}x bare receive ({bare['cpu_ms_per_set']:.1f} ms)" \
        if "cpu_ms_per_set" in bare else ""
    parts.append(f"node overhead {overhead:.1f} ms CPU/frame at {ns['sensor_size'][1]}x{ns['sensor_size'][0]}"
                 f"{ratio}")
    for r in report.get("sensor_rates", []):
        if "error" in r:
            parts.append(f"{r['rate_hz']:g} Hz: failed")
        else:
            parts.append(f"{r['rate_hz']:g} Hz: e2e p99 {r['latency_publish_ms']['p99']:.0f} ms, "
                         f"{100 * r['dropped_share']:.0f}% sets dropped")
    return "bench: " + "; ".join(parts)
