"""perception.launch.py under the real ROS 2 launch system (what `ros2 launch` runs), after a colcon build.

Two launches (each costs tens of seconds here), each checking several things at once:
sim + node in a namespace with a parameters file (message_filters' synchronisation rule: policy approximate,
no sensor timeout), then Ctrl-C; and a missing model, which must stop the whole launch with one FATAL line.
(The node's rule is checked against the real message_filters in test_sync_message_filters.py.)
"""
from __future__ import annotations

import re
import struct
import threading

import pytest

from launchutil import Launch, colcon_build, ros2_python_path, workspace_env

ROS_PATH = ros2_python_path()
pytestmark = [pytest.mark.ros, pytest.mark.launch,
              pytest.mark.skipif(ROS_PATH is None, reason="neither a ROS 2 install nor ../shared/ros2_overlay")]

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from road_seg_core.sensor_spec import Topics  # noqa: E402
from rosutil import RELIABLE, Collector  # noqa: E402

LEFT = Topics().left
LABELS = "/car1/road_seg/labels"


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory) -> dict[str, str]:
    prefix = colcon_build(tmp_path_factory.mktemp("colcon_ws"))
    return workspace_env(prefix, ROS_PATH)


def _rviz2_installed(env: dict[str, str]) -> bool:
    import os

    return any(os.path.isfile(os.path.join(p, "share", "ament_index", "resource_index", "packages", "rviz2"))
               for p in env["AMENT_PREFIX_PATH"].split(os.pathsep) if p)


def _stamp(msg) -> tuple[int, int, str]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id


def _raw_header(raw: bytes) -> tuple[int, int, str]:
    """std_msgs/Header at the start of a serialised (little-endian CDR) message, without decoding the pixels."""
    sec, nanosec, length = struct.unpack_from("<iII", raw, 4)
    return sec, nanosec, raw[16:16 + length - 1].decode()


def test_sim_namespace_params_file_approximate_sync_rviz_and_ctrl_c(ros_env, ros_domain, tiny_checkpoint, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**/road_seg:\n  ros__parameters:\n"
                      f"    model: {tiny_checkpoint}\n    device: cpu\n    threads: 1\n"
                      "    sync: {policy: approximate, sensor_timeout: 0.0}\n")  # message_filters' rule
    args = ["with_sim:=true", "namespace:=car1", f"params_file:={params}"]
    rviz = not _rviz2_installed(ros_env)  # where rviz2 exists it would open a window: only the message is tested
    if rviz:
        args.append("rviz:=true")
    env = {**ros_env, "ROS_DOMAIN_ID": str(ros_domain)}
    collector = Collector(ros_domain, {LABELS: Image})
    lefts: set[tuple[int, int, str]] = set()  # headers only: decoding every 1280x720 image would fall behind
    lefts_lock = threading.Lock()

    def on_left(raw: bytes) -> None:
        with lefts_lock:
            lefts.add(_raw_header(raw))

    collector.node.create_subscription(Image, LEFT, on_left, RELIABLE, raw=True)
    launch = Launch(args, env, tmp_path / "launch.log")
    try:
        pattern = rf"\[car1\.road_seg\]: model {re.escape(str(tiny_checkpoint))} .* on torch/cpu; sync"
        assert launch.wait_for_output(pattern, 120), launch.output()  # namespace and parameters file applied
        if rviz:
            assert "rviz2 is not installed here" in launch.output()

        def labels_since_first_left() -> list[tuple[int, int, str]]:
            with lefts_lock, collector.lock:
                first = min(lefts, default=None)
                return [_stamp(m) for m in collector.messages[LABELS] if first is not None and _stamp(m) >= first]

        assert collector.wait_for(lambda: len(labels_since_first_left()) >= 3, 120), launch.output()[-4000:]
        got = labels_since_first_left()
        with lefts_lock:  # every mask carries the header (stamp and frame id) of a left image sim_sensors published
            missing = [h for h in got if h not in lefts]
            assert not missing, (missing, sorted(lefts)[:5], len(got), len(lefts))
        assert launch.alive(), launch.output()[-4000:]
        code = launch.ctrl_c()
    finally:
        launch.kill()
        collector.close()
    out = launch.output()
    assert code == 0, out[-4000:]
    for proc in ("sim_sensors-1", "perception_node-2"):
        assert re.search(rf"\[INFO\] \[{proc}\]: process has finished cleanly", out), out[-4000:]
    assert "process has died" not in out and "Traceback" not in out and "SIGTERM" not in out, out[-4000:]


def test_missing_model_is_one_fatal_line_and_stops_the_launch(ros_env, ros_domain, tmp_path):
    missing = tmp_path / "no_such_model.pt"
    env = {**ros_env, "ROS_DOMAIN_ID": str(ros_domain)}
    launch = Launch(["with_sim:=true", f"model:={missing}"], env, tmp_path / "launch.log")
    try:
        launch.wait(180)  # ends by itself: perception_node's exit shuts the launch down, sim_sensors included
    finally:
        launch.kill()
    out = launch.output()
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and str(missing) in fatal[0], out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert re.search(r"\[INFO\] \[sim_sensors-1\]: process has finished cleanly", out), out[-4000:]
