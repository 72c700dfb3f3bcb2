"""`road-seg` stopped by SIGTERM (`timeout`, `kill`, a cancelled job) stops the nodes it started, as Ctrl-C does.

Before, SIGTERM ended Python without unwinding: `road-seg bench` and `road-seg demo` left sim_sensors and
perception_node running (in their own sessions, so nothing else stopped them), each keeping a core busy.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODES = ("sim_sensors", "perception_node")


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is `pid`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmdline
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_nodes_a_benchmark_started(tiny_checkpoint, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "road_seg_cli", "bench", "--live-only", "--checkpoint", str(tiny_checkpoint),
           "--node-backend", "torch", "--rates", "5", "--sizes", "320x192", "--thermal-drop", "0",
           "--duration", "120", "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    nodes: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            nodes = {p: c for p, c in _children(proc.pid).items() if any(n in c for n in NODES)}
            if len(nodes) == len(NODES):
                break
            time.sleep(0.2)
        assert len(nodes) == len(NODES), (nodes, proc.poll())
        time.sleep(1.0)  # the nodes past their start
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read() if proc.stdout else ""
        left = [pid for pid in nodes if _running(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, (left, out[-3000:])
    assert code == 128 + signal.SIGTERM, (code, out[-3000:])
    assert "Traceback" not in out, out[-3000:]
