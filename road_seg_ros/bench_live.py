"""Live runs of `road-seg bench`: sim_sensors -> perception_node as real processes over loopback (figures, not tests).

* `reception_run`: at a rate, image size and thermal drop rate, the share of left
  images published by sim_sensors that got a mask, and every loss by cause,
  counted by the processes themselves (their /diagnostics): DDS + subscription
  history (published by sim_sensors, never reached the node's callback), sync
  (reached the node, no set), superseded (a set replaced in the one-slot
  mailbox before the worker took it: the model is slower than the camera),
  failed (a set that could not be assembled or run); latency stamp -> publish
  p50/p99 and node CPU per frame.
* `soak_run`: the node's resident memory over a long run, sampled every few
  seconds, and its slope after a warm-up (MiB per 10 minutes).
* `bare_receive_run`: an empty rclpy subscriber on the node's inputs, the
  floor any subscriber pays.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from road_seg_core.launch_plan import perception_plan
from road_seg_core.processes import ProcessGroup
from road_seg_core.sensor_spec import PUBLISHED_TOPIC

OUT_TOPIC = "/road_seg/drivable_mask"


def summarise(samples_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "mean": float(values.mean())}


def find_bin_dir(name: str = "perception_node") -> str:
    here = Path(sys.executable).parent
    if (here / name).exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"cannot find the {name} executable; install the package (make venv / colcon build)")
    return str(Path(found).parent)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of a process (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def ros_env(domain: int, cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if cache_dir:
        env["ROAD_SEG_CACHE_DIR"] = str(cache_dir)
    return env


class Listener:
    """Mask stamps with their arrival time, and the latest /diagnostics of the node and of sim_sensors."""

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
        self.sim: list[tuple[float, dict[str, str]]] = []
        self.node.create_subscription(Image, OUT_TOPIC, self._on_mask, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.node.create_subscription(DiagnosticArray, PUBLISHED_TOPIC, self._on_diag, 50)  # sim_sensors
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _on_mask(self, msg) -> None:
        arrival = time.time_ns()
        with self.lock:
            self.masks.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, arrival))

    def _on_diag(self, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9  # when the sender counted (wall clock)
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            values["_stamp"] = str(stamp)
            with self.lock:
                if status.name.endswith("road_seg: perception"):
                    self.diagnostics.append((time.monotonic(), values))
                elif status.name.endswith("sim_sensors: published"):
                    self.sim.append((time.monotonic(), values))

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def latest_after(self, t: float, timeout: float) -> tuple[dict[str, str], dict[str, str]] | None:
        """The first node and sim_sensors diagnostics both received after monotonic time `t`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                node = next((v for stamp, v in self.diagnostics if stamp >= t), None)
                sim = next((v for stamp, v in self.sim if stamp >= t), None)
            if node is not None and sim is not None:
                return node, sim
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


def _start(listener: Listener, procs: ProcessGroup, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and procs.alive():
        with listener.lock:
            if len(listener.masks) >= 5:
                return None
        time.sleep(0.2)
    return "no masks before the start-up timeout\n" + procs.logs()


def live_plan(checkpoint: str, backend: str, device: str, rate: float, sensor_size: tuple[int, int],
              thermal_drop: float = 0.0, jitter_ms: float = 3.0, node_parameters: dict | None = None,
              dds_profile: str | None = None):
    h, w = sensor_size
    return perception_plan(model=checkpoint, with_sim=True, dds_profile=dds_profile,
                           sim_parameters={"rate": float(rate), "width": w, "height": h, "loop_frames": 4,
                                           "publish_right": False, "seed": 5, "drop_rate.thermal": thermal_drop,
                                           "jitter_ms.thermal": jitter_ms, "jitter_ms.depth": jitter_ms},
                           node_parameters={"backend": backend, "device": device, **(node_parameters or {})})


def reception_run(checkpoint: str, backend: str, device: str, rate: float, duration: float,
                  sensor_size: tuple[int, int], cache_dir: str | None, log_dir: Path, thermal_drop: float = 0.0,
                  node_parameters: dict | None = None, dds_profile: str | None = None,
                  startup_timeout: float = 180.0) -> dict[str, Any]:
    """sim_sensors -> perception_node for `duration` s of steady state: where every left image went."""
    domain = random.randint(201, 230)
    plan = live_plan(checkpoint, backend, device, rate, sensor_size, thermal_drop, node_parameters=node_parameters,
                     dds_profile=dds_profile)
    commands = [(spec.name, spec.to_command(find_bin_dir()), spec.env) for spec in plan]
    listener = Listener(domain)
    result: dict[str, Any] = {"rate_hz": rate, "sensor_size": list(sensor_size), "thermal_drop": thermal_drop,
                              "node_parameters": node_parameters or {},
                              "dds_profile": plan[-1].env.get("FASTRTPS_DEFAULT_PROFILES_FILE", "none"),
                              "backend": backend, "device": device, "domain_id": domain}
    try:
        with ProcessGroup(commands, log_dir, ros_env(domain, cache_dir)) as procs:
            error = _start(listener, procs, startup_timeout)
            if error:
                result["error"] = error
                return result
            time.sleep(2.0)  # let queues and rates settle after start-up
            node_pid = procs.pid("road_seg")
            start = listener.latest_after(time.monotonic(), 5.0)
            t_start, cpu_start, wall_start = time.time_ns(), cpu_seconds(node_pid), time.monotonic()
            time.sleep(duration)
            end = listener.latest_after(time.monotonic(), 5.0)
            t_end, cpu_end, wall_end = time.time_ns(), cpu_seconds(node_pid), time.monotonic()
            if start is None or end is None or not procs.alive():
                result["error"] = "no diagnostics from the node or sim_sensors\n" + procs.logs()
                return result
    finally:
        listener.close()
    (n0, s0), (n1, s1) = start, end

    def delta(a: dict[str, str], b: dict[str, str], key: str) -> float:
        return _num(b, key) - _num(a, key)

    with listener.lock:
        latencies = [(arrival - stamp) / 1e6 for stamp, arrival in listener.masks if t_start <= arrival <= t_end]
    # The two processes count at different instants (up to a second apart): bring sim_sensors' left count to the
    # instant of the node's snapshot (it publishes left images at `rate`), so the share is not off by a second.
    sent_left = delta(s0, s1, "published.left") + rate * ((_num(n1, "_stamp") - _num(s1, "_stamp"))
                                                         - (_num(n0, "_stamp") - _num(s0, "_stamp")))
    received_left = delta(n0, n1, "left_images")
    synced = delta(n0, n1, "synchronised_sets")
    superseded = delta(n0, n1, "dropped_sets")
    failed = delta(n0, n1, "failed_sets")
    published = delta(n0, n1, "published")
    sent_thermal, received_thermal = delta(s0, s1, "published.thermal"), delta(n0, n1, "received.thermal")
    result.update(
        window_s=round(wall_end - wall_start, 2), left_published=sent_left, left_received=received_left,
        masks=published, mask_share=published / sent_left if sent_left > 0 else float("nan"),
        lost={"dds_or_history": sent_left - received_left, "sync": received_left - synced,
              "superseded": superseded, "failed": failed},
        thermal={"published": sent_thermal, "received": received_thermal,
                 "sets_without": delta(n0, n1, "missing.thermal")},
        depth_sets_without=delta(n0, n1, "missing.depth"),
        sensors_down_end=n1.get("sensors_down", ""),
        latency_publish_ms={"p50": _num(n1, "latency_ms.p50"), "p99": _num(n1, "latency_ms.p99")},
        latency_received_ms=summarise(latencies),
        node_stage_ms_p50={k.split(".")[1]: _num(n1, k) for k in n1 if k.startswith("stage_ms.")},
        node_cpu_ms_per_frame=(cpu_end - cpu_start) * 1e3 / published if published > 0 else float("nan"),
    )
    return result


def soak_run(checkpoint: str, backend: str, device: str, minutes: float, warmup_minutes: float, log_dir: Path,
             rate: float = 10.0, sensor_size: tuple[int, int] = (360, 640), cache_dir: str | None = None,
             sample_s: float = 5.0, log=print) -> dict[str, Any]:
    """The node's RSS over `minutes` of sim_sensors at `rate`; slope after `warmup_minutes`, MiB per 10 min."""
    domain = random.randint(201, 230)
    plan = live_plan(checkpoint, backend, device, rate, sensor_size)
    commands = [(spec.name, spec.to_command(find_bin_dir()), spec.env) for spec in plan]
    listener = Listener(domain)
    samples: list[tuple[float, float]] = []
    result: dict[str, Any] = {"minutes": minutes, "warmup_minutes": warmup_minutes, "rate_hz": rate,
                              "sensor_size": list(sensor_size)}
    try:
        with ProcessGroup(commands, log_dir, ros_env(domain, cache_dir)) as procs:
            error = _start(listener, procs, 180.0)
            if error:
                result["error"] = error
                return result
            pid, t0 = procs.pid("road_seg"), time.monotonic()
            while time.monotonic() - t0 < minutes * 60 and procs.alive():
                samples.append(((time.monotonic() - t0) / 60.0, rss_mib(pid)))
                if len(samples) % max(1, int(60 / sample_s)) == 0:
                    log(f"  soak {samples[-1][0]:.1f} min: RSS {samples[-1][1]:.1f} MiB")
                time.sleep(sample_s)
            with listener.lock:
                result["masks"] = len(listener.masks)
            if not procs.alive():
                result["error"] = "a process exited during the soak\n" + procs.logs()
    finally:
        listener.close()
    after = np.array([(t, m) for t, m in samples if t >= warmup_minutes])
    result["samples"] = samples
    if len(after) >= 3:
        slope = float(np.polyfit(after[:, 0], after[:, 1], 1)[0])  # MiB per minute
        result.update(rss_start_mib=float(after[0, 1]), rss_end_mib=float(after[-1, 1]),
                      slope_mib_per_10min=10.0 * slope)
    return result


def bare_receive_run(keys: Sequence[str], cfg, rate: float, sets: int, sensor_size: tuple[int, int],
                     log_dir: Path) -> dict[str, Any]:
    """sim_sensors -> an empty rclpy subscriber on the node's input topics with the node's QoS."""
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
    with ProcessGroup([("sim_sensors", sim.to_command(find_bin_dir("sim_sensors")), sim.env),
                       ("bare_subscriber", subscriber, sim.env)],
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


def _count(value: float) -> str:
    """A count for the table: the left images sent are estimated at the node's snapshot instant (a fraction), so a
    loss of -0.3 is none, never "-0"."""
    return str(round(value)) if math.isfinite(value) else "nan"


def format_reception(runs: list[dict[str, Any]]) -> list[str]:
    """The reception table: share of left images with a mask and losses by cause, one row per run."""
    lines = [f"{'rate':>5} {'size':>9} {'th.drop':>7} {'params':<28}{'left':>6}{'masks':>6}{'share':>7}"
             f"{'dds/hist':>9}{'sync':>5}{'supers.':>8}{'failed':>7}{'no th.':>7}{'pub p50':>8}{'p99':>7}"
             f"{'CPU ms':>7}"]
    for r in runs:
        h, w = r["sensor_size"]
        params = ",".join([f"{k}={v}" for k, v in r.get("node_parameters", {}).items()]
                          + ([f"dds:{Path(r['dds_profile']).stem}"] if r.get("dds_profile") else []))[:27]
        head = f"{r['rate_hz']:>5g} {f'{w}x{h}':>9} {r['thermal_drop']:>7g} {params:<28}"
        if "error" in r:
            lines.append(head + "error: " + r["error"][:300])
            continue
        lost = r["lost"]
        lines.append(head + f"{_count(r['left_published']):>6}{_count(r['masks']):>6}{r['mask_share']:>7.3f}"
                     f"{_count(lost['dds_or_history']):>9}{_count(lost['sync']):>5}{_count(lost['superseded']):>8}"
                     f"{_count(lost['failed']):>7}{_count(r['thermal']['sets_without']):>7}"
                     f"{r['latency_publish_ms']['p50']:>8.0f}{r['latency_publish_ms']['p99']:>7.0f}"
                     f"{r['node_cpu_ms_per_frame']:>7.1f}")
    lines.append("left: left images sim_sensors published in the window; share: masks / left; losses of left images: "
                 "dds/hist (never reached the node's callback), sync (no set), supers. (superseded in the mailbox: "
                 "model slower than the camera), failed; no th.: masks made without thermal; pub: left stamp -> "
                 "mask publish, ms; CPU: node CPU ms per mask")
    return lines
