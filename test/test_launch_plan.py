from road_seg_ros.launch_plan import perception_plan


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
