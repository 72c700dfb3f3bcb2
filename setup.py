"""One tree, two installs: an ament_python package for colcon, and a plain pip package for a venv."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "road_seg_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["road_seg_core", "road_seg_core.*", "road_seg_ros", "road_seg_ros.*",
                                    "road_seg_training", "road_seg_training.*", "road_seg_cli", "road_seg_cli.*"]),
    package_data={"road_seg_core": ["data/*.pt"], "road_seg_training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    # Run-time dependencies are declared in package.xml (rosdep) and pinned once, in requirements.txt (venv);
    # listing them here would make colcon's setup.py run try to fetch them.
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="road_seg maintainers",
    maintainer_email="road-seg@example.com",
    description="Multi-modal fusion segmentation for road vehicles: drivable area and obstacles.",
    license="MIT",
    extras_require={"test": ["pytest"]},  # colcon test picks pytest from here
    entry_points={
        "console_scripts": [
            "perception_node = road_seg_ros.perception_node:main",
            "sim_sensors = road_seg_ros.sim_sensors:main",
            "road-seg = road_seg_cli.main:main",
        ],
    },
)
