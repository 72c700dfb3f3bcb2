"""Start a launch plan's processes without the ROS launch system, and always stop them again.

Used where `ros2 launch` is not available or not wanted: the demo, the benchmark
and the integration tests. Each child runs in its own session with its output in
`<log_dir>/<name>.log`; leaving the `with` block sends SIGINT (the node's clean
shutdown path) and, after a grace period, SIGKILL to the whole session.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

from road_seg_core.launch_plan import ProcessSpec


class ProcessGroup:
    """Named child processes, stopped together; their logs kept for error messages."""

    def __init__(self, commands: Iterable[tuple], log_dir: Path,
                 env: Mapping[str, str] | None = None, grace_s: float = 10.0) -> None:
        """`commands`: (name, argv) or (name, argv, extra environment) per process."""
        self.grace_s = grace_s
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        try:
            for name, cmd, *extra in commands:
                log = Path(log_dir) / f"{name}.log"
                proc_env = {**(env if env is not None else os.environ), **(extra[0] if extra else {})}
                with open(log, "wb") as fh:
                    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=proc_env,
                                            start_new_session=True)
                self.procs.append((name, proc, log))
        except BaseException:
            self.stop()
            raise

    @classmethod
    def from_plan(cls, plan: Iterable[ProcessSpec], bin_dir: str | None, log_dir: Path,
                  env: Mapping[str, str] | None = None) -> "ProcessGroup":
        """The processes of a launch plan (`launch_plan.perception_plan`), as `ros2 launch` would start them."""
        return cls([(spec.name, spec.to_command(bin_dir), spec.env) for spec in plan], log_dir, env)

    def process(self, name: str) -> subprocess.Popen:
        return next(p for n, p, _ in self.procs if n == name)

    def pid(self, name: str) -> int:
        return self.process(name).pid

    def alive(self) -> bool:
        return all(p.poll() is None for _, p, _ in self.procs)

    def exited(self) -> list[tuple[str, int]]:
        """(name, exit code) of every process that has ended."""
        return [(n, p.returncode) for n, p, _ in self.procs if p.poll() is not None]

    def logs(self, tail_chars: int = 4000) -> str:
        return "\n".join(f"--- {n} ---\n{log.read_text(errors='replace')[-tail_chars:]}" for n, _, log in self.procs)

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
