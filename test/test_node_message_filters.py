"""`sync.policy: message_filters` in real processes: the node synchronises with the real ROS 2 message_filters
(a ROS install's, else ../shared/ros2_overlay on the node's PYTHONPATH), and where the package cannot be imported
the node and `road-seg eval-bag` refuse the policy in one line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OVERLAY = REPO.parent / "shared" / "ros2_overlay"
POLICY = {"sync.policy": "message_filters", "sync.sensor_timeout": 0.0}
SIM = {"rate": 10.0, "width": 320, "height": 180, "loop_frames": 4, "jitter_ms.thermal": 4.0, "seed": 5}


def _imports_message_filters(extra_env: dict[str, str]) -> bool:
    """Whether a child with this environment can import message_filters (asked of a child: this process's
    sys.path may hold the overlay already, put there by another test module)."""
    env = {**os.environ, **extra_env}
    return subprocess.run([sys.executable, "-c", "import message_filters"], env=env, capture_output=True,
                          timeout=60).returncode == 0


def _message_filters_env() -> dict[str, str] | None:
    """What a child's environment needs for the real message_filters: {} where it is installed, the overlay on
    PYTHONPATH where only that is there, None where neither is."""
    if _imports_message_filters({}):
        return {}
    if (OVERLAY / "message_filters").is_dir():
        return {"PYTHONPATH": os.pathsep.join([str(OVERLAY), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return None


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.mark.ros
def test_masks_flow_with_the_real_message_filters(ros_domain, bin_dir, tiny_checkpoint, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from road_seg_core.launch_plan import perception_plan
    from road_seg_core.node_config import Topics
    from road_seg_core.processes import ProcessGroup
    from rosutil import Collector

    extra = _message_filters_env()
    if extra is None:
        pytest.skip("neither a ROS 2 install's message_filters nor ../shared/ros2_overlay")
    plan = perception_plan(model=str(tiny_checkpoint), with_sim=True, sim_parameters=SIM,
                           node_parameters={"device": "cpu", "threads": 1, **POLICY})
    node = next(spec for spec in plan if spec.executable == "perception_node")
    node.env.update(extra)
    left, drivable = Topics().left, "/road_seg/drivable_mask"
    collector = Collector(ros_domain, {left: Image, drivable: Image, "/diagnostics": DiagnosticArray})

    def sync_implementation() -> str | None:
        statuses = [s for m in collector.messages["/diagnostics"] for s in m.status if s.name.startswith("road_seg")]
        values = {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}
        return values.get("sync")

    try:
        with ProcessGroup.from_plan(plan, bin_dir, tmp_path) as procs:
            assert collector.wait_for(lambda: collector.count(drivable) >= 10 and sync_implementation(), 120, procs), \
                procs.logs()
            logs = procs.logs()
        assert sync_implementation() == "message_filters"
        assert "sync message_filters (message_filters)" in logs, logs
        sent = {_stamp(m): m for m in collector.messages[left]}
        masks = [m for m in collector.messages[drivable] if _stamp(m) >= min(sent)]
        assert len(masks) >= 5, (len(masks), logs)
        for mask in masks:  # every mask carries a published left image's header
            src = sent.get(_stamp(mask))
            assert src is not None, f"mask stamp {_stamp(mask)} is no published left stamp"
            assert mask.header.frame_id == src.header.frame_id and (mask.height, mask.width) == (src.height, src.width)
    finally:
        collector.close()


def _without_message_filters() -> dict[str, str]:
    env = {"PYTHONPATH": str(REPO)}
    if _imports_message_filters(env):
        pytest.skip("message_filters is installed here: the policy cannot be refused")
    return env


@pytest.mark.ros
def test_the_node_says_in_one_line_that_message_filters_is_not_installed(ros_domain, bin_dir, tiny_checkpoint):
    from road_seg_core.launch_plan import perception_plan

    env = {**os.environ, **_without_message_filters()}
    spec = perception_plan(model=str(tiny_checkpoint), node_parameters={"device": "cpu", **POLICY})[0]
    result = subprocess.run(spec.to_command(bin_dir), capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, lines)
    assert len(lines) == 1 and "FATAL" in lines[0], lines
    assert "sync.policy message_filters" in lines[0] and "not installed" in lines[0], lines[0]


def test_eval_bag_says_in_one_line_that_message_filters_is_not_installed(tmp_path):
    env = {**os.environ, **_without_message_filters(), "OMP_NUM_THREADS": "1"}
    bag = tmp_path / "drive.mcap"
    bag.write_bytes(b"")  # never opened: the policy is refused first
    params = tmp_path / "mf.yaml"
    params.write_text("road_seg:\n  ros__parameters:\n    sync: {policy: message_filters, sensor_timeout: 0.0}\n")
    result = subprocess.run([sys.executable, "-m", "road_seg_cli", "eval-bag", str(bag), "--params", str(params)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("road-seg eval-bag: error: "), lines
    assert "sync.policy message_filters" in lines[0] and "not installed" in lines[0], lines[0]
