from road_seg_core.launch_plan import perception_plan


def test_plan_matches_the_launch_arguments():
    plan = perception_plan(model="/m.pt", use_sim_time=True, namespace="car1", with_sim=True)
    assert [p.executable for p in plan] == ["sim_sensors", "perception_node"]
    node = plan[1]
    cmd = node.to_command("/opt/bin")
    assert cmd[0] == "/opt/bin/perception_node"
    assert "__node:=road_seg" in cmd and "__ns:=/car1" in cmd
    assert "model:=/m.pt" in cmd and "use_sim_time:=true" in cmd
    assert cmd[cmd.index("--params-file") + 1].endswith("config/perception.yaml")


def test_without_sim_only_the_node_starts():
    assert [p.executable for p in perception_plan()] == ["perception_node"]


def test_process_group_reports_exits_keeps_logs_and_stops_what_ignores_sigint(tmp_path):
    import sys
    import time

    from road_seg_core.processes import ProcessGroup

    stubborn = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    with ProcessGroup([("quick", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"]),
                       ("stubborn", [sys.executable, "-c", stubborn])], tmp_path) as group:
        group.grace_s = 0.5
        group.process("quick").wait(timeout=30)
        deadline = time.monotonic() + 30
        while "up" not in (tmp_path / "stubborn.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # SIGINT is ignored from here on
        assert group.exited() == [("quick", 3)] and not group.alive()
    assert group.process("stubborn").returncode == -9  # SIGKILL after the grace period
    assert "bye" in group.logs()
