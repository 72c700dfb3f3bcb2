"""`road-seg`: the offline command line (training, evaluation, export, benchmarks, bags, demo).

Each command is a module with `add_arguments(parser)` and `run(args) -> int`,
imported by a small loader function only when that command runs, so
`road-seg export` never pays for matplotlib and `road-seg train` never for rclpy.

Errors: a `road_seg_core.errors.UserError` (a path that cannot be written, a
size that is not a multiple of 32, a run that does not exist, ...) and a bad
argument print one line, ``road-seg <command>: error: <message>``, and exit 2.
Anything else is a bug and keeps its traceback. ``--debug`` (or
``ROAD_SEG_DEBUG=1``) shows the traceback of user errors too.

Stopping: SIGTERM and SIGHUP (`timeout`, `kill`, a closed terminal, a cancelled
job) end a command as Ctrl-C does, through its `finally` blocks, so the nodes a
benchmark or the demo started are stopped with it instead of running on with
nobody to stop them; the exit status is 128 + the signal, unless the command
takes the stop as its end (`play` prints its summary and exits 0, as for Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Mapping, NoReturn, Protocol

from road_seg_core.errors import UserError, check_output_dir, check_output_file

#: Exit status of every expected failure (argparse's own choice for usage errors).
USER_ERROR_EXIT = 2
DEBUG_ENV = "ROAD_SEG_DEBUG"


class CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True)
class Command:
    help: str
    load: Callable[[], CommandModule | ModuleType]
    #: argument dest -> "file" | "dir": output paths checked for writability before the command starts.
    outputs: Mapping[str, str] = field(default_factory=dict)


def _train() -> CommandModule:
    from road_seg_cli import train
    return train


def _evaluate() -> CommandModule:
    from road_seg_cli import evaluate
    return evaluate


def _summary() -> CommandModule:
    from road_seg_cli import summary
    return summary


def _export() -> CommandModule:
    from road_seg_core import export_command
    return export_command


def _sim() -> CommandModule:
    from road_seg_core.bag import record
    return record


def _eval_bag() -> CommandModule:
    from road_seg_core.bag import evaluate
    return evaluate


def _play() -> CommandModule:
    from road_seg_ros import bag_player
    return bag_player


def _bench() -> CommandModule:
    from road_seg_ros import bench
    return bench


def _demo() -> CommandModule:
    from road_seg_ros import demo
    return demo


COMMANDS: dict[str, Command] = {
    "train": Command("train a model (writes self-describing .pt checkpoints)", _train),
    "evaluate": Command("evaluate a checkpoint on a dataset split; prints JSON metrics", _evaluate),
    "summary": Command("parameters, FLOPs and output shapes of a model config", _summary),
    "export": Command("export a checkpoint to ONNX or a TensorRT engine", _export, {"out": "file"}),
    "bench": Command("speed benchmark of backends and the node (not a test)", _bench),
    "sim": Command("record synthetic drives to a rosbag2 (sqlite3 or MCAP)", _sim, {"record": "dir"}),
    "play": Command("publish a rosbag2 as `ros2 bag play` would (--clock, --rate, --loop)", _play),
    "eval-bag": Command("replay a rosbag through the pipeline: metrics, report, output bag", _eval_bag,
                        {"report": "dir", "write_bag": "dir"}),
    "demo": Command("sim_sensors + perception_node with the bundled model; saves overlays and a summary", _demo,
                    {"out": "dir"}),
}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's KeyboardInterrupt would be, so the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum: int, frame: object) -> None:
    for sig in _STOP_SIGNALS:  # once: a second signal must not break the clean-up the first one started
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def stop_like_ctrl_c() -> None:
    """Make SIGTERM and SIGHUP unwind the command as Ctrl-C does (main thread only)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _terminate)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line naming the argument (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USER_ERROR_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="road-seg", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=f"tracebacks for user errors too (or {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The full parser of one command (imports its module)."""
    command = COMMANDS[name]
    parser = OneLineParser(prog=f"road-seg {name}", description=command.help)
    command.load().add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help=f"tracebacks for user errors too (or {DEBUG_ENV}=1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints help / the one-line error and exits
        return USER_ERROR_EXIT
    name, rest = argv[0], argv[1:]
    stop_like_ctrl_c()
    try:
        args = command_parser(name).parse_args(rest)
        debug = debug or args.debug
        for dest, kind in COMMANDS[name].outputs.items():
            value = getattr(args, dest, None)
            if value:
                flag = "--" + dest.replace("_", "-")
                (check_output_file if kind == "file" else check_output_dir)(value, flag)
        return int(COMMANDS[name].load().run(args) or 0)
    except UserError as exc:
        if debug:
            raise
        message = " ".join(str(exc).split())
        print(f"road-seg {name}: error: {message}", file=sys.stderr)
        return USER_ERROR_EXIT
    except Terminated as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `road-seg summary | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
