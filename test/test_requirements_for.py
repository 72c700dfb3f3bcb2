"""The per-target requirements (scripts/requirements_for.py): what each venv installs, what the car's system keeps."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("requirements_for", REPO / "scripts" / "requirements_for.py")
requirements_for = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(requirements_for)

JAZZY = REPO / "constraints" / "jazzy-noble.txt"
REQUIREMENTS = REPO / "requirements.txt"


def _names(lines: list[str]) -> list[str]:
    return [requirements_for.requirement_name(line) for line in lines]


def test_without_constraints_it_is_requirements_txt():
    lines = requirements_for.target_requirements(REQUIREMENTS, None)
    expected = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()
                if line.split("#")[0].strip()]
    assert lines == expected


def test_jazzy_takes_ubuntu_numpy_and_keeps_every_other_pin():
    base = requirements_for.target_requirements(REQUIREMENTS, None)
    jazzy = requirements_for.target_requirements(REQUIREMENTS, JAZZY)
    assert _names(jazzy) == _names(base)  # the same packages, in the same order
    assert "numpy==1.26.4" in jazzy and "opencv-python-headless==4.9.0.80" in jazzy
    pins, _ = requirements_for.read_constraints(JAZZY)
    assert [line for line in jazzy if line not in base] == [pins[n] for n in _names(jazzy) if n in pins]


def test_the_car_venv_leaves_what_apt_and_rosdep_provide_to_the_system():
    car = requirements_for.target_requirements(REQUIREMENTS, JAZZY, "without")
    system = requirements_for.target_requirements(REQUIREMENTS, JAZZY, "only")
    names = _names(car)
    assert "torch" in names and "onnxruntime" in names and "rosbags" in names
    assert not any(n.startswith("ros-jazzy-") for n in names)
    assert {"numpy", "pyyaml", "pytest", "colcon-common-extensions"}.isdisjoint(names)
    assert sorted(names + _names(system)) == sorted(_names(requirements_for.target_requirements(REQUIREMENTS, None)))
    assert "numpy==1.26.4" in system and "pyyaml==6.0.1" in system  # the system's own versions
    assert "ros-jazzy-rclpy==7.1.6" in system  # a pattern takes requirements.txt's pin


def test_names_are_compared_as_pip_does(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("PyYAML==6.0.3  # comment\n--find-links x\n\nOpencv_Python.Headless==5.0.0.93\n")
    con = tmp_path / "c.txt"
    con.write_text("pyyaml==6.0.1\nopencv-python-headless==4.9.0.80\n")
    assert requirements_for.target_requirements(req, con) == ["pyyaml==6.0.1", "opencv-python-headless==4.9.0.80"]


def test_a_missing_file_is_one_line():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "requirements_for.py"), "nope.txt"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip() == "requirements_for: no such file: nope.txt"
