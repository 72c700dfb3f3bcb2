"""sim_sensors -> perception_node -> this test's subscriber, as real rclpy processes over loopback."""
from __future__ import annotations

import array
import subprocess

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from road_seg_core.node_config import Topics
from road_seg_core.launch_plan import perception_plan
from road_seg_core.pothole_filter import COUNTS
from road_seg_core.processes import ProcessGroup
from rosutil import RELIABLE, Collector

pytestmark = pytest.mark.ros

OUT = {"drivable": "/road_seg/drivable_mask", "obstacle": "/road_seg/obstacle_mask", "labels": "/road_seg/labels",
       "overlay": "/road_seg/overlay"}
LEFT = Topics().left
SIM = {"rate": 10.0, "width": 320, "height": 180, "loop_frames": 4, "jitter_ms.thermal": 4.0, "seed": 3}


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _node_diag(collector: Collector) -> dict[str, str]:
    """The node's latest diagnostics values; {} before its first (sim_sensors publishes /diagnostics too)."""
    msgs = collector.messages["/diagnostics"]
    statuses = [s for m in msgs for s in m.status if s.name.startswith("road_seg")]
    return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}


def _diag_values(collector: Collector) -> dict[str, str]:
    diag = _node_diag(collector)
    assert diag, "no diagnostics from road_seg"
    return diag


def test_masks_follow_left_images(ros_domain, bin_dir, tiny_checkpoint, tmp_path):
    plan = perception_plan(model=str(tiny_checkpoint), with_sim=True, sim_parameters=SIM,
                           node_parameters={"device": "cpu", "threads": 1})
    topics = {LEFT: Image, "/sim/labels": Image, "/diagnostics": DiagnosticArray, **{t: Image for t in OUT.values()}}
    collector = Collector(ros_domain, topics)
    try:
        with ProcessGroup.from_plan(plan, bin_dir, tmp_path) as procs:
            # Wait for what is checked below, never count what happened inside a time window: 15 outputs per
            # topic, and a diagnostics snapshot that has seen at least 10 synchronised sets and an output rate.
            def done() -> bool:
                diag = _node_diag(collector)
                return (min(collector.count(t) for t in OUT.values()) >= 15 and bool(diag)
                        and int(diag["synchronised_sets"]) >= 10 and float(diag["output_rate_hz"]) > 0.0)

            assert collector.wait_for(done, 120, procs), procs.logs()
            diag = _diag_values(collector)
        left = {_stamp(m): m for m in collector.messages[LEFT]}
        for name, topic in OUT.items():
            # Every left image gets a mask, also those sent before this subscriber was matched: check the others.
            for msg in (m for m in collector.messages[topic] if _stamp(m) >= min(left)):
                src = left.get(_stamp(msg))
                assert src is not None, f"{topic} stamp {_stamp(msg)} is no published left stamp"
                assert msg.header.frame_id == src.header.frame_id
                assert (msg.height, msg.width) == (src.height, src.width)
                assert msg.encoding == ("rgb8" if name == "overlay" else "mono8")
        for d, o, lab in zip(collector.messages[OUT["drivable"]], collector.messages[OUT["obstacle"]],
                             collector.messages[OUT["labels"]]):
            assert _stamp(d) == _stamp(o) == _stamp(lab)
            labels = np.frombuffer(lab.data, np.uint8).reshape(lab.height, lab.width)
            drivable = np.frombuffer(d.data, np.uint8).reshape(d.height, d.width)
            obstacle = np.frombuffer(o.data, np.uint8).reshape(o.height, o.width)
            assert labels.max() <= 3
            np.testing.assert_array_equal(drivable, np.where(labels == 1, 255, 0))
            np.testing.assert_array_equal(obstacle, np.where((labels == 2) | (labels == 3), 255, 0))
        # Well-formed input is never rejected; a busy machine may supersede sets (dropped_sets), so that and the
        # output rate are figures (road-seg bench), not assertions.
        assert int(diag["rejected_total"]) == 0, diag
        assert diag["sync"] in ("road_seg_core", "message_filters")
        potholes = {k: int(diag[f"potholes.{k}"]) for k in COUNTS}  # the pothole checks' counts, every one there
        assert potholes["published"] + potholes["without_depth"] - potholes["kept_on_thermal"] <= potholes["blobs"]
    finally:
        collector.close()


def _bad_images() -> list[tuple[str, Image]]:
    def img(encoding: str, h: int, w: int, step: int, n: int) -> Image:
        m = Image(height=h, width=w, encoding=encoding, step=step)
        m.data = array.array("B", bytes(n))
        return m

    return [
        ("unknown_encoding", img("yuv422_weird", 180, 320, 640, 180 * 640)),
        ("size_mismatch", img("bgra8", 180, 320, 1280, 1000)),
        ("zero_size", img("bgra8", 0, 0, 0, 0)),
    ]


def _publish_until(collector: Collector, pub, msg, condition, procs: ProcessGroup, tries: int = 20) -> bool:
    """Publishes `msg` until `condition` holds: again after each 5 s without it (a lost sample), `tries` times."""
    for _ in range(tries):
        pub.publish(msg)
        if collector.wait_for(condition, 5, procs):
            return True
    return False


def test_bad_input_is_rejected_and_masks_keep_flowing(ros_domain, bin_dir, tiny_checkpoint, tmp_path):
    plan = perception_plan(model=str(tiny_checkpoint), with_sim=True, sim_parameters=SIM,
                           node_parameters={"device": "cpu", "threads": 1, "log_throttle": 0.0})
    collector = Collector(ros_domain, {OUT["drivable"]: Image, "/diagnostics": DiagnosticArray})
    bad_pub = collector.node.create_publisher(Image, LEFT, RELIABLE)
    try:
        with ProcessGroup.from_plan(plan, bin_dir, tmp_path) as procs:
            assert collector.wait_for(lambda: collector.count(OUT["drivable"]) >= 3, 90, procs), procs.logs()
            assert collector.wait_for(lambda: bad_pub.get_subscription_count() > 0, 60, procs)

            def rejected(reason: str) -> int:
                return int(_node_diag(collector).get(f"rejected.{reason}.{LEFT}", 0))

            # The node keeps the last 2 left images (QoS depth), so a bad image may be replaced by a good one
            # before it is read: publish each until the node has counted it, rather than pacing by the clock.
            for reason, msg in _bad_images():
                msg.header = Header(frame_id="bad")
                for n in range(1, 4):
                    counted = _publish_until(collector, bad_pub, msg, lambda: rejected(reason) >= n, procs)
                    assert counted, (reason, n, procs.logs())
            before = collector.count(OUT["drivable"])
            assert collector.wait_for(lambda: collector.count(OUT["drivable"]) >= before + 10, 90, procs), \
                procs.logs()
            logs = procs.logs()
            assert "rejected message on" in logs and "unknown_encoding" in logs
            assert procs.alive()
    finally:
        collector.close()


def test_a_silent_thermal_camera_does_not_stop_the_masks(ros_domain, bin_dir, tiny_checkpoint, tmp_path):
    """sim_sensors never publishes thermal: after sync.sensor_timeout the node runs without it and says so."""
    plan = perception_plan(model=str(tiny_checkpoint), with_sim=True,
                           sim_parameters={**SIM, "drop_rate.thermal": 1.0},
                           node_parameters={"device": "cpu", "threads": 1, "sync.sensor_timeout": 0.5})
    collector = Collector(ros_domain, {OUT["drivable"]: Image, "/diagnostics": DiagnosticArray})
    try:
        with ProcessGroup.from_plan(plan, bin_dir, tmp_path) as procs:
            assert collector.wait_for(lambda: collector.count(OUT["drivable"]) >= 10, 90, procs), procs.logs()

            def warned() -> bool:
                statuses = [s for m in collector.messages["/diagnostics"] for s in m.status
                            if s.name.startswith("road_seg")]
                return bool(statuses) and "running without thermal" in statuses[-1].message

            assert collector.wait_for(warned, 60, procs), _diag_values(collector)
            assert _diag_values(collector)["sensors_down"] == "thermal"
            assert "running without thermal" in procs.logs()
    finally:
        collector.close()


def _run_node(bin_dir: str, model: str, extra: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    spec = perception_plan(model=model, node_parameters={"device": "cpu", **(extra or {})})[0]
    return subprocess.run(spec.to_command(bin_dir), capture_output=True, text=True, timeout=timeout)


def test_corrupt_checkpoint_stops_startup(ros_domain, bin_dir, tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint at all" * 10)
    result = _run_node(bin_dir, str(bad))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "cannot load model" in out and "corrupt.pt" in out


def test_missing_checkpoint_stops_startup(ros_domain, bin_dir, tmp_path):
    result = _run_node(bin_dir, str(tmp_path / "nope.pt"))
    assert result.returncode != 0
    assert "nope.pt" in result.stdout + result.stderr


def test_unservable_modalities_stop_startup(ros_domain, bin_dir, tiny_checkpoint):
    result = _run_node(bin_dir, str(tiny_checkpoint), {"topics.thermal": ""})
    assert result.returncode != 0
    assert "topics.thermal is empty" in result.stdout + result.stderr


def test_build_only_prepares_the_engine_and_exits(ros_domain, bin_dir, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ROAD_SEG_CACHE_DIR", str(tmp_path / "cache"))
    result = _run_node(bin_dir, str(tiny_checkpoint), {"backend": "onnxruntime", "build_only": True})
    assert result.returncode == 0, result.stderr
    assert "build_only" in result.stdout + result.stderr
    assert list((tmp_path / "cache").rglob("*.onnx")), "the ONNX export was not cached"
