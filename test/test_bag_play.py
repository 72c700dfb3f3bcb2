"""`road-seg play`: a rosbag2 published with rclpy as `ros2 bag play` would, and replayed into the live node."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.interfaces import QosDurability

rclpy = pytest.importorskip("rclpy")
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

from road_seg_core.bag import msgs  # noqa: E402
from road_seg_core.bag.bagio import open_reader, open_writer  # noqa: E402
from road_seg_core.bag.outbag import output_topics  # noqa: E402
from road_seg_core.launch_plan import perception_plan  # noqa: E402
from road_seg_core.processes import ProcessGroup  # noqa: E402
from road_seg_core.reception import image_array  # noqa: E402
from road_seg_core.sensor_spec import Topics, stamp_ns  # noqa: E402
from rosutil import RELIABLE, Collector  # noqa: E402
from road_seg_cli.main import main  # noqa: E402

T = Topics()
NS = 1_000_000_000


def _play_cmd(bag: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "road_seg_cli", "play", str(bag), "--no-progress", *extra]


def _sim(out: Path, *extra: str) -> Path:
    assert main(["sim", "--record", str(out), "--width", "160", "--height", "96", "--no-progress", *extra]) == 0
    return out


def _recorded(bag: Path, topic: str) -> list[tuple[int, bytes]]:
    with closing(open_reader(bag)) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, bytes(raw)) for _, t, raw in reader.messages(connections=conns)]


def _stamp(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# -- errors before anything is published ----------------------------------------------------------------------------
def test_missing_bag_unknown_storage_and_bad_options(tmp_path, capsys):
    assert main(["play", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, "bag not found", "nope")
    bag = _sim(tmp_path / "b", "--frames", "2", "--storage", "sqlite3")
    capsys.readouterr()
    odd = tmp_path / "odd"
    odd.mkdir()
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["storage_identifier"] = "hdf5"
    (odd / "metadata.yaml").write_text(yaml.safe_dump(meta))
    assert main(["play", str(odd)]) == 2
    _one_line_error(capsys, "unknown storage 'hdf5'")
    assert main(["play", str(bag), "--topics", "/nope"]) == 2
    _one_line_error(capsys, "--topics: /nope not in bag", T.left)
    assert main(["play", str(bag), "--remap", "/a=/b"]) == 2
    _one_line_error(capsys, "--remap expects OLD:=NEW", "/a=/b")
    assert main(["play", str(bag), "--rate", "-1"]) == 2
    _one_line_error(capsys, "--rate must be > 0", "-1")


def test_a_type_without_python_messages_is_one_line_naming_it(tmp_path, capsys):
    bag = tmp_path / "odom"
    writer = open_writer(bag, "mcap")
    store = msgs.TYPESTORE
    odom_type = "nav_msgs/msg/Odometry"
    try:
        __import__("nav_msgs.msg")
        pytest.skip("nav_msgs is installed here: pick another type")
    except ImportError:
        pass
    conn = writer.add_connection("/odom", odom_type, typestore=store, offered_qos_profiles=[msgs.offered_qos()])
    odom = store.types[odom_type](header=msgs.header(1, "odom"), child_frame_id="base_link",
                                  pose=store.types["geometry_msgs/msg/PoseWithCovariance"](
                                      pose=store.types["geometry_msgs/msg/Pose"](
                                          position=store.types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                          orientation=store.types["geometry_msgs/msg/Quaternion"](
                                              x=0.0, y=0.0, z=0.0, w=1.0)),
                                      covariance=np.zeros(36)),
                                  twist=store.types["geometry_msgs/msg/TwistWithCovariance"](
                                      twist=store.types["geometry_msgs/msg/Twist"](
                                          linear=store.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                                          angular=store.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)),
                                      covariance=np.zeros(36)))
    writer.write(conn, 1, store.serialize_cdr(odom, odom_type))
    writer.close()
    assert main(["play", str(bag)]) == 2
    _one_line_error(capsys, "cannot publish /odom", odom_type, "--exclude /odom")


# -- what goes out ---------------------------------------------------------------------------------------------------
@pytest.mark.ros
def test_recorded_qos_bytes_timing_window_remap_and_clock(ros_domain, tmp_path):
    bag = tmp_path / "qos"
    writer = open_writer(bag, "sqlite3")
    qos = {"/reliable": msgs.offered_qos(reliable=True), "/best_effort": msgs.offered_qos(reliable=False)}
    qos["/latched"] = msgs.offered_qos(reliable=True)._replace(durability=QosDurability.TRANSIENT_LOCAL)
    conns = {t: writer.add_connection(t, msgs.STRING, typestore=msgs.TYPESTORE, offered_qos_profiles=[q])
             for t, q in qos.items()}
    start = 1_704_067_200 * NS
    for i in range(20):  # 2 s at 10 Hz
        writer.write(conns["/reliable"], start + i * NS // 10, msgs.serialize(msgs.string(f"r{i}")))
    writer.write(conns["/best_effort"], start, msgs.serialize(msgs.string("b")))
    writer.write(conns["/latched"], start, msgs.serialize(msgs.string("l")))
    writer.close()

    from std_msgs.msg import String

    collector = Collector(ros_domain, {"/moved": String, "/latched": String})
    clocks: list[int] = []  # /clock is best effort, as rclpy's time source subscribes to it
    collector.node.create_subscription(Clock, "/clock", lambda c: clocks.append(c.clock.sec * NS + c.clock.nanosec),
                                       qos_profile_sensor_data)
    arrivals: list[float] = []
    collector.node.create_subscription(String, "/moved", lambda m: arrivals.append(time.monotonic()), RELIABLE)
    try:
        # A window of the bag: 0.5 s after its start, 0.8 s long, at double speed; /reliable remapped.
        proc = subprocess.Popen(_play_cmd(bag, "--rate", "2", "--clock", "--start-offset", "0.5", "--duration",
                                          "0.8", "--remap", "/reliable:=/moved", "--wait-for-subscribers", "30",
                                          "--exclude", "/best_effort", "--delay", "0.2"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        graph = collector.node
        assert collector.wait_for(lambda: graph.count_publishers("/moved") and graph.count_publishers("/latched"), 60)
        infos = {t: graph.get_publishers_info_by_topic(t) for t in ("/moved", "/latched", "/best_effort")}
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert collector.wait_for(lambda: collector.count("/moved") >= 8, 60), out + err
        time.sleep(0.3)
    finally:
        collector.close()
    assert [m.data for m in collector.messages["/moved"]] == [f"r{i}" for i in range(5, 13)]  # [0.5 s, 1.3 s)
    assert arrivals[-1] - arrivals[0] >= 0.3  # 0.7 s of bag at x2 takes 0.35 s: the player is never early
    assert infos["/moved"][0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert infos["/latched"][0].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert infos["/best_effort"] == []  # excluded
    assert clocks and clocks == sorted(clocks)
    assert start + NS // 2 <= clocks[0] and clocks[-1] <= start + 13 * NS // 10 + NS // 10, clocks
    assert "played 8 messages on 2 topics" in out, out  # /latched's one message is before the window


@pytest.mark.ros
@pytest.mark.parametrize("sig, said", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_best_effort_recording_plays_best_effort_and_a_loop_stops_on_a_signal(ros_domain, tmp_path, sig, said):
    """SIGTERM (`timeout`, `kill`) stops as Ctrl-C does, and the summary says which stopped it."""
    bag = tmp_path / "be"
    writer = open_writer(bag, "mcap")
    conn = writer.add_connection("/be", msgs.STRING, typestore=msgs.TYPESTORE,
                                 offered_qos_profiles=[msgs.offered_qos(reliable=False)])
    for i in range(5):
        writer.write(conn, i * NS // 20, msgs.serialize(msgs.string(str(i))))
    writer.close()
    from std_msgs.msg import String

    collector = Collector(ros_domain, {})
    got: list[str] = []
    collector.node.create_subscription(String, "/be", lambda m: got.append(m.data), qos_profile_sensor_data)
    proc = subprocess.Popen(_play_cmd(bag, "--loop"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert collector.wait_for(lambda: collector.node.count_publishers("/be") > 0, 60)
        info = collector.node.get_publishers_info_by_topic("/be")
        assert info[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert collector.wait_for(lambda: len(got) >= 12, 60)  # played more than twice: it loops
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert f"stopped ({said}) after" in out, out


# -- online equals offline -------------------------------------------------------------------------------------------
def _diag_values(msg: DiagnosticArray) -> dict[str, str] | None:
    for status in msg.status:
        if status.name.startswith("road_seg"):
            return {kv.key: kv.value for kv in status.values}
    return None


def _offline_masks(out_bag: Path) -> dict[int, dict[str, np.ndarray]]:
    topics = output_topics()
    keys = {topics[k]: k for k in ("labels", "drivable", "obstacle")}
    masks: dict[int, dict[str, np.ndarray]] = {}
    with closing(open_reader(out_bag)) as reader:
        conns = [c for c in reader.connections if c.topic in keys]
        for conn, _, raw in reader.messages(connections=conns):
            msg = msgs.deserialize(raw, conn.msgtype)
            masks.setdefault(stamp_ns(msg), {})[keys[conn.topic]] = image_array(msg).copy()
    return masks


def _array(msg: Image) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width]


@pytest.mark.ros
def test_played_into_the_node_gives_the_masks_eval_bag_writes(ros_domain, bin_dir, tiny_checkpoint, tmp_path):
    bag = _sim(tmp_path / "drive", "--frames", "24", "--rate", "10", "--seed", "5", "--drop-rate", "thermal=0.1")
    out_bag = tmp_path / "masks"
    assert main(["eval-bag", str(bag), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--threads", "1",
                 "--report", str(tmp_path / "report"), "--write-bag", str(out_bag), "--no-progress"]) == 0
    offline = _offline_masks(out_bag)
    assert len(offline) >= 12  # (thermal drops: some sets go on without it, as configured)

    topics = output_topics()
    # The node as launched with use_sim_time:=true; input queues deep enough that no input message is lost on a
    # loaded machine (QoS does not change a mask), one inference thread as eval-bag --threads 1.
    params = {"device": "cpu", "threads": 1, **{f"qos.{k}.depth": 20 for k in ("left", "depth", "thermal")}}
    plan = perception_plan(model=str(tiny_checkpoint), use_sim_time=True, node_parameters=params)
    collector = Collector(ros_domain, {topics["labels"]: Image, topics["drivable"]: Image,
                                       topics["obstacle"]: Image, "/diagnostics": DiagnosticArray})
    clock = collector.node.create_publisher(Clock, "/clock", 10)
    inputs = [T.left, T.depth, T.thermal]
    try:
        with ProcessGroup.from_plan(plan, bin_dir, tmp_path) as procs:
            ready = collector.wait_for(lambda: all(collector.node.count_subscribers(t) > 0 for t in inputs)
                                       and collector.node.count_publishers(topics["labels"]) > 0, 120, procs)
            assert ready, procs.logs()
            player = subprocess.run(_play_cmd(bag, "--clock", "--topics", *inputs, "--wait-for-subscribers", "60"),
                                    capture_output=True, text=True, timeout=120)
            assert player.returncode == 0, player.stderr
            assert "no subscriber" not in player.stderr, player.stderr
            # Sim time goes on after the bag (the node's diagnostics timer runs on it) until every set is accounted.
            with closing(open_reader(bag)) as reader:
                now = reader.end_time

            def settled() -> dict[str, str] | None:
                nonlocal now
                now += NS // 10
                clock.publish(Clock(clock=rclpy.time.Time(nanoseconds=now).to_msg()))
                with collector.lock:
                    diags = [d for d in map(_diag_values, collector.messages["/diagnostics"]) if d]
                if not diags:
                    return None
                d = diags[-1]
                done = int(d["published"]) + int(d["dropped_sets"]) + int(d["failed_sets"])
                if int(d["synchronised_sets"]) == len(offline) and done == len(offline) \
                        and collector.count(topics["labels"]) == int(d["published"]):
                    return d
                return None

            assert collector.wait_for(lambda: settled() is not None, 120, procs), procs.logs()
            diag = settled()
            logs = procs.logs()
    finally:
        collector.close()
    online = {_stamp(m): m for m in collector.messages[topics["labels"]]}
    assert online and set(online) <= set(offline), logs
    assert len(offline) - len(online) == int(diag["dropped_sets"]) and diag["failed_sets"] == "0", diag
    # Sets are formed in stamp time, so the bag's order makes eval-bag's sets. Live, DDS may hand the node a newer
    # left image before an older depth or thermal one (a loaded machine): that set goes on without the late input,
    # which the node counts (missing.<input>). Only so many frames may differ, each counted; the rest are exact.
    without = json.loads((tmp_path / "report" / "metrics.json").read_text())["sync"]["sets_without"]
    late = sum(max(0, int(n) - int(without.get(k[len("missing."):], 0))) for k, n in diag.items()
               if k.startswith("missing."))
    differ = {_stamp(msg) for key in ("labels", "drivable", "obstacle") for msg in collector.messages[topics[key]]
              if not np.array_equal(_array(msg), offline[_stamp(msg)][key])}
    assert len(differ) <= late, (sorted(differ), late, without, diag)
