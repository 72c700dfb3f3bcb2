"""The tree builds as a ROS 2 ament_python package with colcon, installing what `ros2 run/launch` look for."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLCON = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")


@pytest.mark.skipif(COLCON is None, reason="colcon (colcon-common-extensions) is not installed")
def test_colcon_build_installs_executables_launch_config_and_model(tmp_path):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    os.symlink(REPO, ws / "src" / "road_seg_ros")
    result = subprocess.run([COLCON, "build", "--packages-select", "road_seg_ros", "--build-base", "build",
                             "--install-base", "install"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = ws / "install" / "road_seg_ros"
    for exe in ("perception_node", "sim_sensors", "road-seg"):
        assert (prefix / "lib" / "road_seg_ros" / exe).is_file(), exe  # where `ros2 run road_seg_ros` looks
    share = prefix / "share" / "road_seg_ros"
    for rel in ("package.xml", "launch/perception.launch.py", "config/perception.yaml", "config/perception.rviz",
                "config/sim_sensors.yaml"):
        assert (share / rel).is_file(), rel
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "road_seg_ros").is_file()
    assert list(prefix.rglob("road_seg_core/data/demo_model.pt")), "bundled model not installed"
    for rel in ("road_seg_cli/main.py", "road_seg_training/train/trainer.py", "road_seg_training/configs/npo.yaml"):
        assert list(prefix.rglob(rel)), f"{rel} not installed"
    assert not [p for p in prefix.rglob("training") if p.parent.name in ("site-packages", "dist-packages")], \
        "a top-level package named `training` is installed"
