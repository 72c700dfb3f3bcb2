"""rosbag2 tools without a ROS install: record synthetic drives (`road-seg sim`) and replay bags through the
pipeline (`road-seg eval-bag`). Everything here uses the `rosbags` library and its ROS 2 Jazzy typestore;
nothing imports rclpy, so the tools run in a plain virtual environment or in CI.
"""
