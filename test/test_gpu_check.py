"""tools/gpu_check.py (`make gpu-check`): without CUDA it refuses in one line; its dry run writes the report.

The figures of a dry run on the CPU mean nothing; what is checked is that every step runs the project's real
code and lands in the one JSON file, so the check is known to work before a GPU machine is at hand.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_models import TINY, save_calibrated

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.py"


def _run(args: list[str], tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_without_cuda_it_says_so_in_one_line_and_fails(tmp_path):
    proc = _run(["--out", str(tmp_path / "report.json")], tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: ") and "CUDA" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "report.json").exists()


def test_bad_sizes_are_one_line(tmp_path):
    proc = _run(["--sizes", "100x7"], tmp_path, timeout=120)
    assert proc.returncode == 2 and "multiples of 32" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.ros
def test_dry_run_on_the_cpu_writes_every_step_into_one_report(tmp_path):
    ckpt = save_calibrated(tmp_path / "tiny.pt")
    h, w = TINY.input_size
    out = tmp_path / "report.json"
    proc = _run(["--allow-cpu", "--checkpoint", str(ckpt), "--sizes", f"{h}x{w},{2 * h}x{2 * w}",
                 "--sensor-size", f"{2 * h}x{2 * w}", "--iterations", "3", "--frames", "3", "--threads", "1",
                 "--tests", str(ROOT / "test" / "test_tensorrt.py"), "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["cuda"] is False and report["dry_run"] is True and report["machine"]["cpus"]
    tests = report["gpu_tests"]
    assert tests["ok"] and "skipped" in tests["summary"] and "-m gpu" in tests["command"]
    assert [entry["input_size"] for entry in report["model"]] == [[h, w], [2 * h, 2 * w]]
    for entry in report["model"]:
        by_name = {(r["backend"], r["precision"]): r for r in entry["results"]}
        assert by_name[("torch", "fp32")]["p50_ms"] > 0 and by_name[("onnxruntime", "fp32")]["p50_ms"] > 0
        assert by_name[("torch", "fp32")]["input_size"] == entry["input_size"]
        assert by_name[("tensorrt", "fp16")]["skipped"]  # with its reason
    stages = report["node_stages"]
    assert stages["sensor_size"] == [2 * h, 2 * w] and stages["device"] == "cpu"
    host = stages["stages"]["host"]  # on a CPU "auto" is the host path: there is no engine-side run to compare
    assert set(stages["stages"]) == {"host", "back_to_back_deserialise_ms"}
    assert host["deserialise"]["n"] == 3 and host["overhead_cpu_per_deserialise"]["p50"] > 0
    assert host["model"]["n"] == 3 and host["preprocess"]["p50"] > 0 and host["overhead_cpu"]["n"] == 3
    assert set(report["step_seconds"]) == {"gpu_tests", "model", "node_stages"}
    assert f"wrote {out}" in proc.stdout
