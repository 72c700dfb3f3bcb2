"""`road-seg` turns expected failures into one line on stderr and exit 2; `--debug` brings the traceback back.

Each case runs the real command (`python -m road_seg_cli`, a fresh process, as a user would) and fails
before any heavy work, so the file stays fast.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NPO_CONFIG = REPO / "road_seg_training" / "configs" / "npo.yaml"


def road_seg(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    environment.pop("ROAD_SEG_DEBUG", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "road_seg_cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=environment)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *names: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"road-seg {command}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A plain file where a command would need a folder."""
    path = tmp_path / "model.onnx"
    path.write_text("not a folder")
    return path


# -- paths that cannot be written ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, command, named", [
    (("train", "--dataset", "synthetic", "--out", "/proc/run", "--epochs", "1"), "train", "/proc/run"),
    (("export", "--format", "onnx", "--out", "/sys/x.onnx"), "export", "/sys/x.onnx"),
    (("export", "--format", "onnx", "--out", "model.onnx/x.onnx"), "export", "model.onnx/x.onnx"),
    (("eval-bag", "some_bag", "--report", "/proc/rep"), "eval-bag", "/proc/rep"),
])
def test_unwritable_output_paths(tmp_path, blocker, args, command, named):
    line = assert_one_line_error(road_seg(*args, cwd=tmp_path), command, named)
    assert "--out" in line or "--report" in line
    assert not (tmp_path / "x.onnx").exists()


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    out = tmp_path / "runs" / "npo"
    proc = road_seg("train", "--dataset", "npo", "--root", str(tmp_path / "no_such_dataset"), "--out", str(out),
                    "--epochs", "1", cwd=tmp_path)
    assert_one_line_error(proc, "train", "no_such_dataset")
    assert not (tmp_path / "runs").exists()


# -- values the command cannot use -----------------------------------------------------------------------------
def test_input_size_not_a_multiple_of_32(tmp_path):
    proc = road_seg("summary", "--config", str(NPO_CONFIG), "--input-size", "300", "500", cwd=tmp_path)
    assert_one_line_error(proc, "summary", "300 500", "32")


@pytest.mark.parametrize("args, command", [
    (("evaluate", "--dataset", "synthetic", "--frames", "1", "--backend", "foo"), "evaluate"),
    (("bench", "--backends", "foo", "--no-live"), "bench"),
])
def test_unknown_backend(tmp_path, args, command):
    assert_one_line_error(road_seg(*args, cwd=tmp_path), command, "torch", "onnxruntime")


def test_no_such_run_to_resume(tmp_path):
    proc = road_seg("train", "--dataset", "synthetic", "--out", str(tmp_path / "run"),
                    "--resume", "runs/nope", cwd=tmp_path)
    assert_one_line_error(proc, "train", "runs/nope", "no such run")
    assert not (tmp_path / "run").exists()


def test_conflicting_set_and_flag(tmp_path):
    proc = road_seg("train", "--epochs", "3", "--set", "schedule.epochs=5", "--print-config", cwd=tmp_path)
    assert_one_line_error(proc, "train", "schedule.epochs=5", "--epochs 3")


def test_bad_argument_is_one_line_too(tmp_path):
    proc = road_seg("train", "--epochs", "abc", cwd=tmp_path)
    assert_one_line_error(proc, "train", "--epochs", "abc")


def test_a_negative_montage_is_one_line(tmp_path):
    proc = road_seg("eval-bag", "some_bag", "--montage", "-1", cwd=tmp_path)
    assert_one_line_error(proc, "eval-bag", "--montage", "-1")


def test_negative_bench_threads_are_one_line(tmp_path):
    proc = road_seg("bench", "--threads", "-1", cwd=tmp_path)
    assert_one_line_error(proc, "bench", "--threads", "-1")


# Each of these ran minutes of work and then printed a traceback (or ran silently on a default): now one line,
# before the work starts.
@pytest.mark.parametrize("args, named", [
    (("bench", "--frames", "0"), ("--frames", "0")),  # was a KeyError after the model timing
    (("bench", "--batch", "0"), ("--batch", "0")),
    (("bench", "--sensor-width", "8"), ("--sensor-width 8", "16x16")),
    (("bench", "--rates", "0"), ("--rates 0",)),
    (("bench", "--sizes", "640x360,8x8"), ("--sizes 8x8",)),
    (("bench", "--thermal-drop", "1.5"), ("--thermal-drop 1.5",)),
    (("bench", "--height", "100", "--width", "96"), ("--height 100", "multiples of 32")),
    (("bench", "--soak", "1", "--soak-warmup", "2"), ("--soak-warmup 2", "--soak 1")),
    (("evaluate", "--dataset", "synthetic", "--width", "8"), ("--width 8", "16x16")),
    (("evaluate", "--dataset", "synthetic", "--frames", "0"), ("--frames", "0")),
    (("evaluate", "--dataset", "synthetic", "--confirm-frames", "2"), ("over 2 frames", "--drive")),
    (("evaluate", "--dataset", "synthetic", "--drive", "--confirm-frames", "11"), ("--confirm-frames", "11")),
    (("evaluate", "--dataset", "synthetic", "--thermal-contrast", "0.9"), ("--thermal-contrast", "0.9")),
    (("evaluate", "--dataset", "synthetic", "--drives", "3"), ("--drives 3", "--drive")),
    (("evaluate", "--dataset", "synthetic", "--params", "missing.yaml"), ("--params missing.yaml", "not found")),
    (("export", "--opset", "7"), ("opset 7", ">= 11")),
    (("export", "--opset", "99", "--out", "x.onnx"), ("opset 99", "cannot export")),
    (("export", "--max-batch", "0"), ("--max-batch", "0")),
    (("sim", "--record", "drive", "--frames-per-condition", "-3"), ("--frames-per-condition", "-3")),
    (("demo", "--duration", "0"), ("--duration", "0")),  # ran, then a summary of 0 frames with mIoU nan
    (("demo", "--width", "8"), ("--width 8", "16x16")),
    (("demo", "--model", "missing.pt"), ("missing.pt: file not found",)),  # was a FATAL line in the node's log
])
def test_out_of_range_numbers_are_one_line(tmp_path, args, named):
    proc = road_seg(*args, cwd=tmp_path)
    assert_one_line_error(proc, args[0], *named)


def test_model_bench_size_not_a_multiple_of_32_is_one_line(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "road_seg_core.bench", "--height", "100", "--width", "96"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=environment)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "python -m road_seg_core.bench: --height 100 --width 96: the model needs " \
                                  "multiples of 32", proc.stderr


# -- the traceback on request ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = ("summary", "--config", str(NPO_CONFIG), "--input-size", "300", "500")
    if how == "flag":
        proc = road_seg("--debug", *args, cwd=tmp_path)
    else:
        proc = road_seg(*args, cwd=tmp_path, env={"ROAD_SEG_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "UserError" in proc.stderr and "300 500" in proc.stderr
