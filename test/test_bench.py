"""The benchmark's building blocks on a tiny model: backends timed or skipped with a reason, node stages timed.

Figures are not asserted (they depend on the machine); what is asserted is that
the benchmark runs the node's real code paths and reports what it claims to.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import rclpy
import torch

from road_seg_core import bench as model_bench
from road_seg_core.engines import create_engine
from road_seg_ros import bench as node_bench
from road_seg_ros import bench_stages
from road_seg_core.node_config import PerceptionConfig
from tiny_models import TINY, save_calibrated


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_calibrated(tmp_path_factory.mktemp("bench") / "tiny.pt")


def test_model_bench_times_available_backends_and_explains_the_others(ckpt, tmp_path):
    results = model_bench.bench_backends(ckpt, ("torch", "onnxruntime", "tensorrt"), device="cpu", iterations=4,
                                         warmup=1, cache_dir=tmp_path, threads=1, rounds=2, log=lambda _: None)
    by_name = {(r.backend, r.precision): r for r in results}
    for key in (("torch", "fp32"), ("onnxruntime", "fp32")):
        r = by_name[key]
        assert not r.skipped and r.iterations == 4 and r.input_size == TINY.input_size
        assert 0 < r.p50_ms <= r.p99_ms and r.fps == pytest.approx(1e3 / r.mean_ms)
    trt = [r for r in results if r.backend == "tensorrt"]
    assert trt and all(r.skipped for r in trt) or torch.cuda.is_available()
    table = model_bench.format_table(results)
    assert "onnxruntime" in table and "p50 ms" in table
    for reason in {r.skipped for r in trt if r.skipped}:
        assert table.count(reason) == 1  # fp16 and fp32 skipped for one reason: said once
        assert all(r.device == "-" for r in trt)  # not "cpu": a skipped backend ran nowhere


def test_stage_bench_runs_the_node_code_paths(ckpt, tmp_path):
    engine = create_engine(ckpt, backend="onnxruntime", device="cpu", cache_dir=tmp_path, threads=1)
    messages = bench_stages.received_messages((180, 320), frames=1)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(201, 230))
    try:
        node = rclpy.create_node("road_seg", context=context)
        stages = bench_stages.StageBench(engine, PerceptionConfig(), messages, node)
        assert stages.plan.keys == ("left", "depth", "thermal")
        plain = stages.run(3, warmup=1)
        with_overlay = stages.run(3, with_overlay=True, warmup=1)
        on_engine = bench_stages.StageBench(engine, PerceptionConfig(), messages, node, "engine")
        assert on_engine.pipeline.on_device and not stages.pipeline.on_device  # auto on a CPU: the host
        engine_side = on_engine.run(3, warmup=1)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    for result in (plain, with_overlay):
        assert set(bench_stages.STAGES) <= set(result)
        assert all(result[s]["n"] == 3 and result[s]["p50"] >= 0 for s in bench_stages.STAGES)
        assert result["model_cpu"]["n"] == 3 and result["overhead_cpu"]["p50"] > 0
        # "overhead" is every stage but the model: never more than the sum of the per-stage maxima.
        assert result["overhead"]["p50"] <= sum(result[s]["p99"] for s in bench_stages.STAGES if s != "model") + 1e-6
    # Preprocessing inside the engine call: no host stage, and its CPU time is the engine's, not overhead.
    assert engine_side["preprocess"]["p50"] == 0.0 and engine_side["model_cpu"]["p50"] > 0
    summary = node_bench.summary_line({
        "model": [model_bench.BackendResult("onnxruntime", "fp32", "cpu", (64, 96), 1, 3, 1.0, 2.0, 1.0, 1e3,
                                            0.1).to_dict()],
        "node_stages": {"sensor_size": [180, 320], "without_overlay": plain},
        "transport": {"empty_subscriber": {"cpu_ms_per_set": 2.0}}})
    assert summary.startswith("bench: ") and "x bare receive" in summary and "\n" not in summary
    assert np.isfinite(plain["overhead_cpu"]["p50"])


def test_benchmark_node_and_bag_replay_share_one_reception_path(ckpt, tmp_path):
    """The benchmark, the node and eval-bag receive through `Reception` with the same synchroniser for the same
    configuration (the default: the left-driven policy with the default `sync.sensor_timeout`)."""
    from rclpy.parameter import Parameter

    from road_seg_core.bag.replay import BagReplay
    from road_seg_core.bag.record import SimRecording, record
    from road_seg_core.bag.bagio import open_reader
    from road_seg_core.reception import Reception
    from road_seg_core.left_sync import LeftDrivenSynchronizer
    from road_seg_ros.perception_node import PerceptionNode

    cfg = PerceptionConfig()
    engine = create_engine(ckpt, backend="onnxruntime", device="cpu", cache_dir=tmp_path, threads=1)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(201, 230))
    try:
        helper = rclpy.create_node("road_seg_bench", context=context)
        stages = bench_stages.StageBench(engine, cfg, bench_stages.received_messages((90, 160), frames=1), helper)
        node = PerceptionNode(context=context, parameter_overrides=[
            Parameter("model", value=str(ckpt)), Parameter("backend", value="onnxruntime"),
            Parameter("device", value="cpu")])
        try:
            node_policy = node.reception.describe()
            assert isinstance(node.reception, Reception) and isinstance(node.reception.sync, LeftDrivenSynchronizer)
        finally:
            node.destroy_node()
        helper.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert isinstance(stages.reception, Reception)
    assert stages.reception.describe() == node_policy
    record(tmp_path / "bag", SimRecording(frames=2, width=64, height=48), progress=False)
    reader = open_reader(tmp_path / "bag")
    try:
        replay = BagReplay(reader, cfg, stages.plan, stages.pipeline)
        assert replay.reception.describe() == node_policy
    finally:
        reader.close()


def test_threads_reach_the_node_stages_and_the_live_node(ckpt, tmp_path, monkeypatch):
    """`--threads` is documented as the threads "as the node runs them": the node stages' engine gets them (as
    onnxruntime reports its session's options) and so does the live node, unless --node-param says otherwise."""
    import json

    from road_seg_cli.main import main

    import inspect

    seen: list[dict] = []
    real = inspect.signature(node_bench.bench_live.reception_run)
    monkeypatch.setattr(node_bench.bench_live, "reception_run", lambda *args, **kwargs: seen.append(
        real.bind(*args, **kwargs).arguments["node_parameters"]) or {})
    out = tmp_path / "bench.json"
    args = ["bench", "--checkpoint", str(ckpt), "--backends", "onnxruntime", "--device", "cpu", "--iterations", "2",
            "--frames", "2", "--threads", "1", "--cache-dir", str(tmp_path / "cache"), "--rates", "5",
            "--sizes", "64x48", "--thermal-drop", "0", "--duration", "0.1", "--json", str(out)]
    monkeypatch.setattr(node_bench.bench_live, "bare_receive_run", lambda *a, **k: {"cpu_ms_per_set": 1.0})
    monkeypatch.setattr(node_bench, "render", lambda report: "")
    monkeypatch.setattr(node_bench, "summary_line", lambda report: "bench:")
    assert main(args) == 0
    assert json.loads(out.read_text())["node_stages"]["threads"] == 1
    assert seen == [{"threads": 1}]


def test_reception_table_counts_are_whole_and_never_minus_zero():
    """The left images sim_sensors sent are estimated at the node's snapshot instant, a fraction: the table rounds
    the counts (a loss of -0.3 is "0", not "-0")."""
    run = {"sensor_size": [720, 1280], "rate_hz": 10.0, "thermal_drop": 0.0, "node_parameters": {"threads": 1},
           "left_published": 209.7, "masks": 210.0, "mask_share": 1.0,
           "lost": {"dds_or_history": -0.3, "sync": 0.0, "superseded": 0.0, "failed": 0.0},
           "thermal": {"sets_without": 0.0}, "latency_publish_ms": {"p50": 42.0, "p99": 56.0},
           "node_cpu_ms_per_frame": 40.7}
    row = node_bench.bench_live.format_reception([run])[1]
    assert row.split()[4:13] == ["210", "210", "1.000", "0", "0", "0", "0", "0", "42"], row
    assert "-0" not in row
