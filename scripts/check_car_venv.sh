#!/usr/bin/env bash
# Usage: scripts/check_car_venv.sh [WORKDIR]   (default build/car-check; `make check-car-venv`, run by .ci/run)
#
# Tests the car's install path (scripts/car_venv.sh, README "A ROS 2 workspace") as far as a machine without
# Ubuntu 24.04 and /opt/ros/jazzy can: a copy of a Python 3.12 installation stands in for the car's system Python,
# holding what apt/rosdep would (constraints/jazzy-noble.txt's `#system:` packages: numpy 1.26.4, PyYAML, pytest,
# colcon, and the ROS 2 Jazzy PyPI wheels for rclpy and the messages) and then marked externally managed as Ubuntu
# marks its own; a generated setup.bash stands in for /opt/ros/jazzy/setup.bash. Then, as the README says:
# car_venv.sh, a colcon build with the venv's Python, and a quick test subset in the venv. Not represented:
# apt's OpenCV 4.6 (the venv's albumentations brings opencv-python-headless 4.9.0.80 in front of it on the car too).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-build/car-check}
mkdir -p "$work" && work=$(cd "$work" && pwd)
constraints=constraints/jazzy-noble.txt
system=$work/system
say() { echo "check_car_venv: $*"; }

# 1. The stand-in system Python (kept between runs: it is rebuilt only when the system pins change).
pins=$(python3 scripts/requirements_for.py requirements.txt --constraints "$constraints" --system-only)
if [ ! -f "$system/.pins" ] || [ "$(cat "$system/.pins")" != "$pins" ]; then
  python312=$(scripts/find_python.sh 3.12)
  base=$("$python312" -c 'import sys; print(sys.base_prefix)')
  say "stand-in system Python: a copy of $base with the system's packages"
  rm -rf "$system" && cp -a "$base" "$system"
  find "$system" -name EXTERNALLY-MANAGED -delete
  "$system/bin/python3.12" -m pip install --quiet --root-user-action=ignore $pins
  cat > "$system/lib/python3.12/EXTERNALLY-MANAGED" <<'MARK'
[externally-managed]
Error=This stands in for Ubuntu 24.04's system Python: install into a venv (scripts/car_venv.sh).
MARK
  ln -sf python3.12 "$system/bin/python3"
  printf '%s\n' "$pins" > "$system/.pins"
fi
# The stand-in for /opt/ros/jazzy/setup.bash: what it sets for Python processes.
cat > "$system/setup.bash" <<SETUP
export ROS_DISTRO=jazzy ROS_VERSION=2 ROS_PYTHON_VERSION=3
export PATH=$system/bin:\$PATH
export AMENT_PREFIX_PATH=$system
export LD_LIBRARY_PATH=$system/lib:$(ls -d "$system"/lib/python3.12/site-packages/ros_*.libs | paste -sd:)\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
# launch, launch_ros, message_filters: /opt/ros/jazzy/lib/python3.12/site-packages on a car
[ -d "$repo/../shared/ros2_overlay" ] && export PYTHONPATH=$repo/../shared/ros2_overlay\${PYTHONPATH:+:\$PYTHONPATH}
SETUP

# 2. Ubuntu's rule holds in the stand-in: pip refuses to install into the system Python.
if "$system/bin/python3" -m pip install --dry-run --quiet six >/dev/null 2>"$work/pep668.txt"; then
  say "FAIL: the stand-in system Python accepted pip install"; exit 1
fi
grep -q externally-managed "$work/pep668.txt" || { cat "$work/pep668.txt"; exit 1; }
say "system pip install refused (externally-managed-environment), as on Ubuntu 24.04"

# 3. The README's car path.
# shellcheck disable=SC1091
source "$system/setup.bash"
venv=$work/venv
rm -rf "$venv"
/usr/bin/time -f "check_car_venv: car_venv.sh took %e s" scripts/car_venv.sh "$venv"
rm -rf "$work/ws" && mkdir -p "$work/ws/src" && ln -s "$repo" "$work/ws/src/road_seg_ros"
(cd "$work/ws" && "$venv/bin/python" -m colcon build --packages-select road_seg_ros > "$work/colcon.log" 2>&1) \
  || { tail -30 "$work/colcon.log"; say "FAIL: colcon build"; exit 1; }
exe=$work/ws/install/road_seg_ros/lib/road_seg_ros/perception_node
head -1 "$exe" | grep -q "^#!$venv/bin/python" || { say "FAIL: $exe does not run the venv's Python: $(head -1 "$exe")"; exit 1; }
(set +u && source "$work/ws/install/setup.bash" && "$work/ws/install/road_seg_ros/lib/road_seg_ros/road-seg" --help >/dev/null) \
  || { say "FAIL: the colcon-installed road-seg does not run"; exit 1; }
"$venv/bin/python" - "$constraints" <<'PY'
import sys, numpy, cv2, rclpy, torch
import road_seg_ros.perception_node  # noqa: F401  (from the source tree: imports every layer the node needs)
want = next(l.split("==")[1].strip() for l in open(sys.argv[1]) if l.startswith("numpy=="))
assert numpy.__version__ == want, f"numpy {numpy.__version__}, the system's is {want}"
assert not numpy.__file__.startswith(sys.prefix), f"numpy comes from the venv: {numpy.__file__}"
print(f"check_car_venv: node imports; numpy {numpy.__version__} (system), cv2 {cv2.__version__}, torch {torch.__version__}")
PY
say "colcon build with the venv's Python: perception_node runs $(head -1 "$exe" | cut -c3-)"

# 4. A quick subset of the suite in the car venv (the package installed editable, for the console scripts).
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
"$venv/bin/python" -m pytest -q -p no:cacheprovider test/test_image_codec.py test/test_conversions.py \
  test/test_preprocess.py test/test_sync.py "test/test_node_integration.py::test_masks_follow_left_images"
