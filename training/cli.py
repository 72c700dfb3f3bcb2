"""`road-seg`: the offline command line (training, evaluation, export, benchmarks, bags, demo).

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so
`road-seg export` never pays for matplotlib and `road-seg train` never for rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training.train", "train a model (writes self-describing .pt checkpoints)"),
    "evaluate": ("training.evaluate", "evaluate a checkpoint on a dataset split; prints JSON metrics"),
    "summary": ("training.summary", "parameters, FLOPs and output shapes of a model config"),
    "export": ("road_seg_core.export", "export a checkpoint to ONNX or a TensorRT engine"),
    "bench": ("road_seg_ros.bench", "speed benchmark of backends and the node (not a test)"),
    "sim": ("road_seg_ros.bag.record", "record synthetic drives to a rosbag2 (sqlite3 or MCAP)"),
    "play": ("road_seg_ros.bag_player", "publish a rosbag2 as `ros2 bag play` would (--clock, --rate, --loop)"),
    "eval-bag": ("road_seg_ros.bag.evaluate", "replay a rosbag through the pipeline: metrics, report, output bag"),
    "demo": ("road_seg_ros.demo", "sim_sensors + perception_node with the bundled model; saves overlays and a summary"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="road-seg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage / the error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"road-seg {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
