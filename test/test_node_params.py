"""perception_node checks every parameter at start: one line naming the parameter and the value, a non-zero exit,
no traceback; wherever the value came from (-p, a parameters file), and before rcl parses a missing file."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from road_seg_core.node_args import ArgumentError, check_ros_arguments, parse_override
from road_seg_core.node_config import NODE_NAME, PerceptionConfig
from road_seg_core.launch_plan import config_dir

PARAMS = str(config_dir() / "perception.yaml")


# -- the rules, without ROS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, value, message", [
    ("sync.slop", "abc", "sync.slop must be a finite number, got 'abc' (string)"),
    ("sync.slop", -1.0, "sync.slop must be > 0 s, got -1.0"),
    ("threads", "abc", "threads must be an integer, got 'abc' (string)"),
    ("threads", 1.5, "threads must be an integer, got 1.5 (double)"),
    ("threads", -2, "threads must be >= 0"),
    ("build_only", "false", "build_only must be true or false, got 'false' (string)"),
    ("thermal.homography", [1.0] * 8, "thermal.homography must be 9 numbers, got [1.0"),
    ("thermal.homography", [0.0] * 9, "thermal.homography is singular"),
    ("thermal.range", [9000.0, 7000.0], "thermal.range must be (lo, hi) with lo < hi"),
    ("thermal.percentiles", [99.0, 1.0], "thermal.percentiles must be (lo, hi)"),
    ("qos.thermal.reliability", "sometimes", "qos.thermal.reliability must be reliable or best_effort"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("min_depth", 50.0, "min_depth and max_depth must satisfy 0 <= min_depth < max_depth, got 50 and 40"),
    ("sync.policy", "message_filters", "sync.sensor_timeout must be 0 when sync.policy is message_filters"),
])
def test_each_rule_names_the_parameter_and_the_value(name, value, message):
    with pytest.raises(ValueError) as err:
        PerceptionConfig.from_flat({name: value})
    assert str(err.value).startswith(message)


def test_message_filters_refuses_offsets_it_does_not_have():
    with pytest.raises(ValueError) as err:
        PerceptionConfig.from_flat({"sync.policy": "message_filters", "sync.sensor_timeout": 0,
                                    "sync.offsets.thermal": -0.03})
    assert str(err.value).startswith("sync.offsets.thermal must be 0 when sync.policy is message_filters")
    assert "got -0.03" in str(err.value)
    assert PerceptionConfig.from_flat({"sync.policy": "message_filters", "sync.sensor_timeout": 0}).sync.policy \
        == "message_filters"


def test_good_values_pass_and_an_integer_is_a_fine_double():
    cfg = PerceptionConfig.from_flat({"sync.slop": 1, "thermal.homography": [2, 0, 0, 0, 1, 0, 0, 0, 1],
                                      "device": "cuda:1"})
    assert cfg.sync.slop == 1.0 and isinstance(cfg.sync.slop, float) and cfg.thermal.homography[0][0] == 2.0
    assert (parse_override("abc"), parse_override("3"), parse_override("1e-2"), parse_override("[1, 2]"),
            parse_override("true"), parse_override("")) == ("abc", 3, 0.01, [1, 2], True, "")


def test_the_same_rules_hold_for_the_bag_tools_reading_the_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("road_seg:\n  ros__parameters:\n    sync: {slop: fast}\n")
    with pytest.raises(ValueError, match="sync.slop must be a finite number, got 'fast'"):
        PerceptionConfig.from_yaml(path)


def test_command_line_checks_files_and_overrides_for_this_node_only(tmp_path):
    def check(*ros_args: str) -> None:
        check_ros_arguments(["perception_node", "--ros-args", *ros_args])

    check("--params-file", PARAMS, "-p", "threads:=2", "-p", "sim_sensors:rate:=abc", "-p", "use_sim_time:=true")
    with pytest.raises(ArgumentError, match=r"^--params-file .*nope.yaml: no such file$"):
        check("--params-file", str(tmp_path / "nope.yaml"))
    with pytest.raises(ArgumentError, match="did you mean threads"):
        check("-p", "thread:=2")
    with pytest.raises(ArgumentError, match="threads.*'x'.*, given by -p road_seg:threads:=x$"):
        check("-p", "road_seg:threads:=x")
    with pytest.raises(ArgumentError, match="given by -p renamed:threads:=x"):
        check("-r", "__node:=renamed", "-p", "renamed:threads:=x")
    with pytest.raises(ArgumentError, match="expects NAME:=VALUE"):
        check("-p", "threads")
    shared = tmp_path / "shared.yaml"  # '/**' applies to every node: names it does not know are someone else's
    shared.write_text("/**:\n  ros__parameters:\n    rate: 5.0\n    threads: many\n")
    with pytest.raises(ArgumentError, match=r"threads.*'many'.*given by --params-file .*\(section /\*\*\)$"):
        check("--params-file", str(shared))
    # rules across parameters see everything given: max_depth from the file, min_depth from -p
    deep = tmp_path / "deep.yaml"
    deep.write_text("road_seg:\n  ros__parameters:\n    max_depth: 100.0\n")
    check("--params-file", str(deep), "-p", "min_depth:=50.0")
    with pytest.raises(ArgumentError, match="min_depth"):
        check("-p", "min_depth:=50.0")


# -- real processes -----------------------------------------------------------------------------------------------
CASES = {
    "slop": (["-p", "sync.slop:=abc"], "sync.slop", "'abc'"),
    "threads": (["-p", "threads:=abc"], "threads", "'abc'"),
    # a node-specific file entry (threads: 0) outranks a global -p in rcl: the -p would be dropped in silence
    "threads_under_file": (["--params-file", PARAMS, "-p", "threads:=abc"], "threads", "'abc'"),
    "homography": (["-p", "thermal.homography:=[1.0,0.0,0.0,0.0,1.0,0.0,0.0,0.0]"], "thermal.homography",
                   "array of 8"),
    "missing_file": (["--params-file", "/nonexistent/perception.yaml"], "--params-file", "no such file"),
    # passes each rule alone, refused when the node reads its whole configuration
    "int8_on_torch": (["-p", "precision:=int8", "-p", "backend:=torch"], "precision", "'torch'"),
}


@pytest.fixture(scope="module")
def failed_starts(tiny_checkpoint, tmp_path_factory):
    """Every case started at once (each mostly imports), then waited for."""
    domain = int(os.environ.get("ROAD_SEG_TEST_DOMAIN_BASE", "60")) % 200 + 1
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    exe = str(Path(sys.executable).parent / "perception_node")
    procs = {name: subprocess.Popen([exe, "--ros-args", "-p", f"model:={tiny_checkpoint}", *args], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _, _) in CASES.items()}
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_node_refuses_a_bad_parameter_in_one_line(failed_starts, case):
    code, out, err = failed_starts[case]
    _, parameter, value = CASES[case]
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code not in (0, None, -9), (code, out, err)
    assert len(lines) == 1, lines
    assert parameter in lines[0] and value in lines[0], lines[0]
    assert "Traceback" not in out + err


def test_values_given_past_the_command_line_are_checked_when_the_node_declares_them(ros_domain):
    """In-process overrides (a component container, a test) never pass main(): the declared values are checked."""
    from rclpy.parameter import Parameter

    from road_seg_core.input_plan import StartupError
    from road_seg_ros.perception_node import PerceptionNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        for override, message in ((Parameter("threads", value="abc"), "threads must be an integer, got 'abc'"),
                                  (Parameter("sync.slop", value=1), None)):  # an integer is a fine double
            try:
                node = PerceptionNode(context=context,
                                      parameter_overrides=[override, Parameter("model", value="/nope.pt")])
            except StartupError as exc:
                if message is None:
                    assert "cannot load model" in str(exc)  # got past the parameters
                else:
                    assert str(exc).startswith(message) and "\n" not in str(exc)
            else:
                node.destroy_node()
                pytest.fail("the node started with /nope.pt")
    finally:
        rclpy.try_shutdown(context=context)


def test_running_node_refuses_parameter_changes_instead_of_ignoring_them(tiny_checkpoint, ros_domain):
    exe = str(Path(sys.executable).parent / "perception_node")
    proc = subprocess.Popen([exe, "--ros-args", "-p", f"model:={tiny_checkpoint}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        node = rclpy.create_node("test_param_client", context=context)
        client = node.create_client(SetParameters, f"/{NODE_NAME}/set_parameters")
        deadline = time.monotonic() + 180
        while not client.wait_for_service(timeout_sec=0.5):
            assert proc.poll() is None and time.monotonic() < deadline, "the node did not come up"
        request = SetParameters.Request(parameters=[ParameterMsg(
            name="threads", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="abc"))])
        future = client.call_async(request)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=60)
        result = future.result().results[0]
        assert not result.successful and "threads" in result.reason and "restart" in result.reason
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        rclpy.try_shutdown(context=context)
