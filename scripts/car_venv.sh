#!/usr/bin/env bash
# Usage: scripts/car_venv.sh [VENV]   (default .venv-car; `make car-venv`)
#
# The car's Python environment on Ubuntu 24.04 + ROS 2 Jazzy. Ubuntu refuses `pip install` into its own Python
# (PEP 668, "externally-managed-environment"), and a pip numpy 2 under ROS' numpy-1.26 modules would break them, so:
# a venv on top of the system Python (--system-site-packages: apt's numpy, PyYAML, pytest, colcon and ROS' rclpy
# and messages stay visible and are used as they are), holding only what apt/rosdep cannot provide (torch,
# torchvision, onnx, onnxruntime, rosbags, training packages), at requirements.txt's pins, with
# constraints/jazzy-noble.txt keeping apt's numpy. Run it after `source /opt/ros/jazzy/setup.bash` and rosdep.
# PYTHON (default python3) and CONSTRAINTS (default constraints/jazzy-noble.txt) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-car}
python=${PYTHON:-python3}
constraints=${CONSTRAINTS:-constraints/jazzy-noble.txt}
fail() { echo "car_venv: $*" >&2; exit 1; }

[ "${ROS_DISTRO:-}" = jazzy ] || fail "ROS 2 Jazzy is not sourced (ROS_DISTRO='${ROS_DISTRO:-}'): run 'source /opt/ros/jazzy/setup.bash' first"
command -v "$python" >/dev/null || fail "no $python on PATH"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$version" = 3.12 ] || fail "$python is Python $version; ROS 2 Jazzy on Ubuntu 24.04 runs Python 3.12 (set PYTHON=)"
"$python" -c 'import rclpy, sensor_msgs.msg, stereo_msgs.msg, diagnostic_msgs.msg' 2>/dev/null \
  || fail "$python cannot import rclpy and the message packages: run 'rosdep install --from-paths . --ignore-src -y'"

"$python" -m venv --system-site-packages "$venv"
touch "$venv/COLCON_IGNORE"  # the venv may sit inside a colcon workspace: never crawl it for packages
"$venv/bin/python" scripts/requirements_for.py requirements.txt --constraints "$constraints" --without-system \
  > "$venv/requirements.txt"
"$venv/bin/python" -m pip install --quiet -r "$venv/requirements.txt" -c "$constraints"

# What the system provides must still come from the system: pip put none of it into the venv.
own=$("$venv/bin/python" -m pip list --format freeze --path "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')")
system=$("$venv/bin/python" scripts/requirements_for.py requirements.txt --constraints "$constraints" --system-only \
  | sed 's/[=<>!~ ].*//')
for name in $system; do
  if grep -qi "^${name}==" <<<"$own"; then fail "pip installed $name into $venv; it should come from the system"; fi
done
"$venv/bin/python" -c 'import numpy, rclpy, torch; print(f"car venv {__import__("sys").prefix}: numpy {numpy.__version__} from {numpy.__file__}, torch {torch.__version__}")'
echo "car_venv: done. Build with it: source $venv/bin/activate && cd ~/ros2_ws && python -m colcon build --packages-select road_seg_ros"
