"""Helpers for tests that run the real ROS 2 launch system: a colcon-built workspace and `ros2 launch` in a child.

The launch packages come from a ROS install when one is sourced (its own packages win), else from
`../shared/ros2_overlay` on PYTHONPATH; `ros2_python_path()` is None when neither exists (the tests skip).
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OVERLAY = REPO.parent / "shared" / "ros2_overlay"
ROS_PACKAGES = ("launch", "launch_ros", "ros2launch", "message_filters")

# What `ros2 launch road_seg_ros perception.launch.py ARGS` runs once it has parsed its command line.
_DRIVER = """
import sys
from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file
path = get_share_file_path_from_package(package_name='road_seg_ros', file_name='perception.launch.py')
sys.exit(launch_a_launch_file(launch_file_path=path, launch_file_arguments=sys.argv[1:], noninteractive=True))
"""


def ros2_python_path() -> list[str] | None:
    """Extra PYTHONPATH entries for the real launch tools: [] if installed, [overlay] if present, else None."""
    if all(importlib.util.find_spec(name) is not None for name in ROS_PACKAGES):
        return []
    if all((OVERLAY / name).is_dir() for name in ROS_PACKAGES):
        return [str(OVERLAY)]
    return None


def colcon_build(ws: Path) -> Path:
    """Build this tree with colcon in workspace `ws` (source symlinked); returns the package's install prefix."""
    (ws / "src").mkdir(parents=True)
    os.symlink(REPO, ws / "src" / "road_seg_ros")
    result = subprocess.run([sys.executable, "-m", "colcon", "build", "--packages-select", "road_seg_ros",
                             "--build-base", "build", "--install-base", "install"],
                            cwd=ws, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"colcon build failed:\n{result.stdout}\n{result.stderr}")
    return ws / "install" / "road_seg_ros"


def workspace_env(prefix: Path, extra_python_path: list[str]) -> dict[str, str]:
    """The environment `source install/setup.bash` gives (for this one package), plus the launch tools."""
    env = dict(os.environ)
    site = next(prefix.glob("lib/python3*/site-packages"))
    env["PYTHONPATH"] = os.pathsep.join([str(site), *extra_python_path, *filter(None, [env.get("PYTHONPATH")])])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), *filter(None, [env.get("AMENT_PREFIX_PATH")])])
    env["PATH"] = os.pathsep.join([str(prefix / "bin"), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Launch:
    """`ros2 launch road_seg_ros perception.launch.py ARGS` in its own session; output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen([sys.executable, "-c", _DRIVER, *args], stdout=fh, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match or not self.alive():
                return match or re.search(pattern, self.output())
            time.sleep(0.2)
        return None

    def ctrl_c(self, timeout: float = 60.0) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C does (launch forwards another one)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
