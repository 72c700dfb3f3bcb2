"""Training loop, evaluation and summary: real (tiny) trainings on synthetic scenes and the NPO sample.

Every training here runs on one CPU thread with small images and tiny models,
so the whole file stays within a few minutes on a 2-core machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from road_seg_core.checkpoint import load_checkpoint
from road_seg_core.engines import create_engine
from road_seg_training.config import TrainConfig, apply_overrides
from road_seg_training.evaluate import evaluate_split, evaluate_synthetic
from road_seg_training.train import MixedSampler, ResumeError, Trainer, poly_warmup_factor, train

REPO = Path(__file__).resolve().parent.parent
NPO_MINI = REPO.parent / "shared" / "data" / "npo_mini"
TINY_MODEL = {"encoder": "mobilenet_v3_small", "width_mult": 0.5, "decoder_channels": 16}


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Trainers set torch's process-wide thread count from their config; leave it as other tests expect."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_config(out: Path, **overrides) -> TrainConfig:
    """A synthetic-scene run small enough for a unit test; `overrides` are dotted paths."""
    data = {
        "model": {"modalities": ["rgb", "depth", "thermal"], "input_size": [64, 96], **TINY_MODEL},
        "data": {"datasets": [{"name": "synthetic", "options": {"frames": 8, "seed": 0, "cache": True},
                               "val_options": {"frames": 4}}]},
        "optim": {"name": "adamw", "lr": 0.003},
        "schedule": {"epochs": 2, "warmup_iters": 2},
        "batch_size": 4,
        "num_threads": 1,
        "log": {"progress": False, "tensorboard": False, "every_steps": 1},
        "out": str(out),
    }
    return TrainConfig.from_dict(apply_overrides(data, [f"{k}={v}" for k, v in overrides.items()]))


# -- configuration --------------------------------------------------------------------------------------------


def test_config_yaml_round_trip_and_overrides(tmp_path):
    cfg = tiny_config(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = TrainConfig.from_yaml(path, ["optim.lr=1e-3", "data.datasets.0.options.frames=3",
                                         "model.modalities=[rgb, thermal]"])
    assert again.optim.lr == pytest.approx(1e-3)
    assert again.data.datasets[0].options["frames"] == 3
    assert again.model.modalities == ("rgb", "thermal") and set(again.model.norms) == {"rgb", "thermal"}
    assert TrainConfig.from_yaml(path).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("override, message", [
    ("optim.learning_rate=0.1", "optim.learning_rate"),
    ("optim.name=adam", "unknown optimizer"),
    ("batch_size=two", "batch_size must be an integer"),
    ("class_weights=[1, 2]", "class_weights needs 4"),
    ("data.datasets.0.name=kitti", "unknown dataset"),
    ("data.datasets.3.root=/x", "not an index"),
    ("model.input_size=[100, 96]", "multiple of 32"),
])
def test_bad_configs_name_the_problem(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **dict([override.split("=", 1)]))


def test_shipped_configs_are_valid():
    for path in sorted((REPO / "road_seg_training" / "configs").glob("*.yaml")):
        cfg = TrainConfig.from_yaml(path)
        assert cfg.data.datasets, path


# -- sampling and schedule ------------------------------------------------------------------------------------


def test_mixed_sampler_weights_shards_and_determinism():
    sizes, weights = [100, 10], [1.0, 1.0]
    whole = MixedSampler(sizes, weights, seed=3).epoch_indices()
    from_small = np.count_nonzero(whole >= 100)
    assert len(whole) == 110 and from_small == 55  # equal shares although the second set is 10x smaller
    ranks = [list(MixedSampler(sizes, weights, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 55
    assert sorted(ranks[0] + ranks[1]) == sorted(whole.tolist())
    again = MixedSampler(sizes, weights, seed=3)
    assert np.array_equal(again.epoch_indices(), whole)
    again.set_epoch(1)
    assert not np.array_equal(again.epoch_indices(), whole)
    proportional = MixedSampler(sizes, [None, None], seed=0).epoch_indices()
    assert sorted(proportional.tolist()) == list(range(110))  # plain shuffle: every sample once


def test_poly_schedule_warms_up_then_decays(tmp_path):
    cfg = tiny_config(tmp_path, **{"schedule.warmup_iters": 10, "schedule.warmup_ratio": 0.1})
    factors = [poly_warmup_factor(s, 100, cfg) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))
    assert all(a > b for a, b in zip(factors[10:100], factors[11:101]))
    assert factors[100] == pytest.approx(0.0)


# -- training -------------------------------------------------------------------------------------------------


def test_short_synthetic_training_learns_the_road(tmp_path):
    """Seconds of training on synthetic scenes: the drivable IoU through the node's pipeline beats chance."""
    cfg = tiny_config(tmp_path / "run", **{
        "data.datasets.0.options.frames": 48, "data.datasets.0.val_options.frames": 8,
        "schedule.epochs": 10, "schedule.warmup_iters": 5, "batch_size": 8, "optim.lr": 0.01,
        "bn_momentum": 0.3})  # BN statistics must keep up with weights that change fast in 48 steps
    result = train(cfg, command="pytest")
    assert result.best_path.is_file() and result.last_path.is_file()
    losses = [loss for _, _, loss in result.step_losses]
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:3])

    engine = create_engine(result.best_path)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = evaluate_synthetic(engine, frames=9, seed=12345, width=192, height=108)
    finally:
        torch.set_num_threads(previous)
    drivable = metrics["per_class"]["drivable"]
    # Chance: calling every pixel drivable scores its share of the image (~0.4) and a coin flip less.
    assert drivable["iou"] > 0.6, metrics
    assert metrics["pixel_accuracy"] > 0.75, metrics

    provenance = load_checkpoint(result.best_path).provenance
    assert provenance["dataset"][0]["name"] == "synthetic"
    assert provenance["epochs"] == result.best_epoch and provenance["command"] == "pytest"
    assert provenance["metrics"]["val"]["miou"] == pytest.approx(result.best_miou)
    assert "git" in provenance and provenance["train_config"]["schedule"]["epochs"] == 10


def test_resume_continues_exactly(tmp_path):
    """Interrupt after one epoch, resume: the next losses and final weights equal an uninterrupted run's."""
    augmenting = {"data.augment": True, "data.modality_dropout": 0.3}  # randomness the resume must restore
    full = train(tiny_config(tmp_path / "full", **augmenting))
    first = Trainer(tiny_config(tmp_path / "split", **augmenting))
    first.fit(stop_after=1)
    assert (tmp_path / "split" / "last.state.pt").is_file()
    second = Trainer(tiny_config(tmp_path / "split", **augmenting))
    second.resume(tmp_path / "split")
    assert second.epoch == 1
    resumed = second.fit()
    expected = [(e, s, loss) for e, s, loss in full.step_losses if e == 1]
    assert len(expected) == len(resumed.step_losses) == 2
    for (e1, s1, l1), (e2, s2, l2) in zip(expected, resumed.step_losses):
        assert (e1, s1) == (e2, s2) and l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    a = load_checkpoint(full.last_path).state_dict
    b = load_checkpoint(resumed.last_path).state_dict
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_resume_refuses_a_weights_only_checkpoint(tmp_path):
    run = train(tiny_config(tmp_path / "run", **{"schedule.epochs": 1}))
    trainer = Trainer(tiny_config(tmp_path / "again", **{"schedule.epochs": 1}))
    with pytest.raises(ResumeError, match="training state"):
        trainer.resume(run.best_path)


@pytest.mark.skipif(not NPO_MINI.is_dir(), reason=f"NPO sample not found at {NPO_MINI}")
def test_overfits_npo_mini(tmp_path):
    """Five real NPO frames, rgb + relative depth: the network must be able to memorise them."""
    cfg = TrainConfig.from_dict({
        "model": {"modalities": ["rgb", "depth"], "input_size": [96, 160], **TINY_MODEL, "decoder_channels": 24,
                  "norms": {"depth": {"scale": 255.0, "mean": [0.5], "std": [0.5]}}},
        "data": {"datasets": [{"name": "npo", "root": str(NPO_MINI), "val_split": None}], "augment": False},
        "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "schedule": {"epochs": 80, "warmup_iters": 5},  # one step per epoch: the whole split is one batch
        "batch_size": 5,
        "bn_momentum": 0.5,
        "class_weights": [1.0, 1.0, 3.0, 3.0],
        "num_threads": 1,
        "log": {"progress": False, "tensorboard": False},
        "out": str(tmp_path / "npo"),
    })
    result = train(cfg)
    metrics = evaluate_split(create_engine(result.last_path), "npo", str(NPO_MINI), "train", {}, batch_size=5)
    native = metrics["dataset_space"]
    assert native["classes"] == ["background", "negative_obstacle", "positive_obstacle"]
    assert native["miou"] > 0.7, native
    assert native["pixel_accuracy"] > 0.97, native
    assert result.step_losses[-1][2] < 0.25 * result.step_losses[0][2]


# -- command line ---------------------------------------------------------------------------------------------


class _Run:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """`road-seg ARGS...` in this process (the entry point's own `main`), returning code and captured output."""
    from road_seg_cli.main import main

    def call(*args: str) -> _Run:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return _Run(code, out.out, out.err)

    return call


def test_cli_evaluate_prints_one_json_object(cli, tiny_checkpoint):
    proc = cli("evaluate", "--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic", "--frames", "3",
                "--seed", "7", "--width", "192", "--height", "108")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert set(metrics["per_class"]) == {"background", "drivable", "positive_obstacle", "negative_obstacle"}
    for row in metrics["per_class"].values():
        assert set(row) >= {"iou", "precision", "recall", "f1"}
        assert all(v is None or 0.0 <= v <= 1.0 for k, v in row.items() if k != "support")
    assert 0.0 <= metrics["pixel_accuracy"] <= 1.0 and (metrics["miou"] is None or 0.0 <= metrics["miou"] <= 1.0)
    assert metrics["frames"] == 3 and set(metrics["by_condition"]) == {"day", "night", "fog"}
    assert "convention" in metrics and metrics["miou_without_background"] is not None


@pytest.mark.skipif(not NPO_MINI.is_dir(), reason=f"NPO sample not found at {NPO_MINI}")
def test_cli_evaluate_on_a_dataset_split(cli, tiny_checkpoint):
    proc = cli("evaluate", "--checkpoint", str(tiny_checkpoint), "--dataset", "npo", "--root", str(NPO_MINI),
                "--split", "test", "--quiet")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["samples"] == 2 and metrics["split"] == "test"
    assert metrics["dataset_space"]["classes"] == ["background", "negative_obstacle", "positive_obstacle"]


def test_cli_errors_are_one_line(cli, tmp_path):
    proc = cli("evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--dataset", "synthetic")
    assert proc.returncode == 2 and "missing.pt" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("train", "--dataset", "npo", "--epochs", "1")
    assert proc.returncode == 2 and "root" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_summary_reports_parameters_flops_and_shapes(cli, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(tiny_config(tmp_path).to_yaml())
    proc = cli("summary", "--config", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    from road_seg_core.models import build_model, count_parameters

    cfg = tiny_config(tmp_path).model
    assert info["parameters"] == count_parameters(build_model(cfg))
    assert info["output"] == [1, 4, 64, 96] and info["gflops"] > 0
    assert [s[2:] for s in info["stage_shapes"]["rgb"]] == [[16, 24], [8, 12], [4, 6], [2, 3]]
    bigger = cli("summary", "--config", str(path), "--json", "--set", "model.decoder_channels=64")
    assert json.loads(bigger.stdout)["gflops"] > info["gflops"]


def test_cli_train_then_resume_from_the_output_folder(cli, tmp_path):
    out = tmp_path / "cli"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(tiny_config(out, **{"schedule.epochs": 1}).to_yaml())
    proc = cli("train", "--config", str(cfg_path), "--set", "log.tensorboard=true")
    assert proc.returncode == 0, proc.stderr
    assert {"best.pt", "last.pt", "last.state.pt", "config.yaml", "log.jsonl"} <= {p.name for p in out.iterdir()}
    assert any((out / "tb").iterdir())
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "epoch" and records[-1]["epoch"] == 1
    proc = cli("train", "--config", str(cfg_path), "--epochs", "2", "--resume", str(out))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert load_checkpoint(out / "last.pt").provenance["epochs"] == 2


def test_torchrun_two_processes_train_one_model(tmp_path):
    """`torchrun --nproc_per_node=2` (gloo on CPU here, NCCL on GPUs): sharded data, one writer."""
    out = tmp_path / "ddp"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(tiny_config(out, **{"schedule.epochs": 1, "batch_size": 2}).to_yaml())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "road_seg_cli", "train", "--config", str(cfg_path), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    provenance = load_checkpoint(out / "last.pt").provenance
    assert provenance["world_size"] == 2
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # 8 scenes, batch 2 per process, 2 processes: 2 steps, each logged once (only rank 0 writes)
    assert [r["step"] for r in records if r["kind"] == "train"] == [0, 1]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]


# -- runs are never lost; one configuration path ---------------------------------------------------------------


def test_training_into_a_folder_with_a_run_is_refused_unless_overwrite(cli, tmp_path):
    out = tmp_path / "run"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(tiny_config(out, **{"schedule.epochs": 1}).to_yaml())
    first = cli("train", "--config", str(cfg_path))
    assert first.returncode == 0, first.stderr
    assert "best epoch 1: val mIoU" in first.stderr and str(out / "best.pt") in first.stderr
    best = (out / "best.pt").read_bytes()
    again = cli("train", "--config", str(cfg_path))
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 2 and len(lines) == 1 and "Traceback" not in again.stderr
    assert "already holds a run" in lines[0] and "--resume" in lines[0] and "--overwrite" in lines[0]
    assert (out / "best.pt").read_bytes() == best  # untouched
    replaced = cli("train", "--config", str(cfg_path), "--overwrite", "--set", "seed=1")
    assert replaced.returncode == 0, replaced.stderr
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]  # one run's log, not two appended
    assert load_checkpoint(out / "last.pt").provenance["seed"] == 1


def test_flags_and_set_compose_in_one_documented_order(tmp_path):
    from road_seg_training.config import ConfigError
    from road_seg_training.train import TrainRequest, resolve_config

    cfg = resolve_config(TrainRequest(dataset="synthetic", epochs=3,
                                      overrides=["data.datasets.0.options.frames=48", "optim.lr=0.02"]))
    assert cfg.data.datasets[0].name == "synthetic" and cfg.data.datasets[0].options == {"frames": 48}
    assert cfg.schedule.epochs == 3 and cfg.optim.lr == pytest.approx(0.02)
    with pytest.raises(ConfigError, match=r"--set schedule.epochs=5 conflicts with --epochs 3"):
        resolve_config(TrainRequest(epochs=3, overrides=["schedule.epochs=5"]))
    with pytest.raises(ConfigError, match=r"data.datasets.0.name=npo conflicts with --dataset synthetic"):
        resolve_config(TrainRequest(dataset="synthetic", overrides=["data.datasets.0.name=npo"]))
    with pytest.raises(ConfigError, match=r"optim.learning_rate"):
        resolve_config(TrainRequest(dataset="synthetic", overrides=["optim.learning_rate=0.1"]))
    # a config file's own model inputs are kept: only flags-only datasets bring theirs
    path = tmp_path / "c.yaml"
    path.write_text(tiny_config(tmp_path).to_yaml())
    assert resolve_config(TrainRequest(config=path)).model.modalities == ("rgb", "depth", "thermal")


@pytest.mark.skipif(not NPO_MINI.is_dir(), reason=f"NPO sample not found at {NPO_MINI}")
def test_npo_from_flags_alone_builds_an_npo_model(cli, tmp_path):
    """`--dataset npo --root` alone: rgb+depth (NPO has no thermal camera), depth scale 255, batch fitted to 5 frames."""
    from road_seg_training.train import TrainRequest, resolve_config

    logged: list[str] = []
    cfg = resolve_config(TrainRequest(dataset="npo", root=str(NPO_MINI)), log=logged.append)
    assert cfg.model.modalities == ("rgb", "depth")
    assert cfg.model.norms["depth"].scale == pytest.approx(255.0) and cfg.model.norms["rgb"].scale == 255.0
    assert "model.modalities [rgb, depth]" in logged[0] and "model.norms.depth.scale 255" in logged[0]
    kept = resolve_config(TrainRequest(dataset="npo", root=str(NPO_MINI),
                                       overrides=["model.modalities=[rgb]"]), log=logged.append)
    assert kept.model.modalities == ("rgb",)

    out = tmp_path / "npo"
    proc = cli("train", "--dataset", "npo", "--root", str(NPO_MINI), "--epochs", "1", "--out", str(out),
               "--set", "model.input_size=[64,96]", "--set", f"model.encoder={TINY_MODEL['encoder']}",
               "--set", "model.decoder_channels=16", "--set", "num_threads=1", "--set", "log.progress=false",
               "--set", "log.tensorboard=false")
    assert proc.returncode == 0, proc.stderr
    assert "training with batch_size 5" in proc.stderr and "warning" not in proc.stderr
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.config.modalities == ("rgb", "depth") and ckpt.config.norms["depth"].scale == 255.0


def test_evaluate_splits_near_pothole_recall_by_the_depth_cameras_measurement(tiny_checkpoint):
    """Drive 3 has near potholes in its first day frames; they are counted twice: all of them, and those the
    depth camera measured. With the depth sensor down none was measured, and the near count itself does not
    change (it comes from exact distances)."""
    from road_seg_core.engines import create_engine

    engine = create_engine(str(tiny_checkpoint), backend="torch", device="cpu")
    up = evaluate_synthetic(engine, frames=6, seed=3, width=192, height=108, conditions=("day",), drive=True)
    down = evaluate_synthetic(engine, frames=6, seed=3, width=192, height=108, conditions=("day",), drive=True,
                              drop=("depth",))
    ob_up, ob_down = up["obstacles"], down["obstacles"]
    assert ob_up["near_potholes"] > 0 and ob_up["near_potholes"] == ob_down["near_potholes"]
    assert 0 < ob_up["near_potholes_with_sensor_depth"] <= ob_up["near_potholes"]
    assert ob_down["near_potholes_with_sensor_depth"] == 0
    assert ob_down["pothole_recall_near_20m_with_sensor_depth"] is None  # NaN in JSON terms: nothing to count


def test_evaluate_scores_a_drive_with_the_nodes_pothole_confirmation(tmp_path):
    """A seeded untrained model paints potholes here and there: confirmed over two frames, the first frame of the
    drive has none and blobs seen once are dropped, so it finds fewer potholes (by object) than unconfirmed;
    independent scenes refuse it."""
    from road_seg_core.engines import create_engine
    from road_seg_core.errors import UserError
    from road_seg_core.pothole_filter import PotholeFilterConfig
    from tiny_models import save_calibrated

    engine = create_engine(str(save_calibrated(tmp_path / "seeded.pt", seed=1)), backend="torch", device="cpu")
    args = dict(frames=4, seed=3, width=192, height=108, conditions=("day",), drive=True)
    plain = evaluate_synthetic(engine, **args)["obstacles"]
    confirmed = evaluate_synthetic(engine, **args, pothole_filter=PotholeFilterConfig(confirm_frames=2))["obstacles"]
    assert plain["potholes"] == confirmed["potholes"] > 0
    assert plain["potholes_found"] > 0, "the seeded model predicts potholes: the test can tell"
    assert confirmed["potholes_found"] < plain["potholes_found"]
    with pytest.raises(UserError, match="needs successive frames"):
        evaluate_synthetic(engine, **{**args, "drive": False}, pothole_filter=PotholeFilterConfig(confirm_frames=2))


def test_evaluate_pools_drives_each_scored_as_its_own_sequence(tmp_path):
    """Two drives in one call: each drive's entry equals that drive evaluated alone (so the road plane and the
    pothole confirmation start afresh per drive), and the pooled counts are their sums."""
    from road_seg_core.engines import create_engine
    from road_seg_core.errors import UserError
    from road_seg_core.pothole_filter import PotholeFilterConfig
    from tiny_models import save_calibrated

    engine = create_engine(str(save_calibrated(tmp_path / "seeded.pt", seed=1)), backend="torch", device="cpu")
    args = dict(frames=3, width=192, height=108, conditions=("day",), drive=True,
                pothole_filter=PotholeFilterConfig(confirm_frames=2, min_depth_share=0.0))
    pooled = evaluate_synthetic(engine, seed=3, drives=2, **args)
    alone = {str(s): evaluate_synthetic(engine, seed=s, **args) for s in (3, 4)}
    assert list(pooled["by_drive"]) == ["3", "4"]
    for key, single in alone.items():
        entry = pooled["by_drive"][key]
        assert entry["iou"] == {name: m["iou"] for name, m in single["per_class"].items()}
        assert entry["obstacles"] == single["obstacles"]
        assert entry["by_condition"]["day"]["obstacles"] == single["by_condition"]["day"]["obstacles"]
    assert sum(s["obstacles"]["potholes_found"] for s in alone.values()) > 0, "the seeded model finds some"
    for count in ("frames", "potholes", "potholes_found", "pothole_blobs", "near_potholes"):
        assert pooled["obstacles"][count] == sum(s["obstacles"][count] for s in alone.values())
    for name, metrics in pooled["per_class"].items():
        assert metrics["support"] == sum(s["per_class"][name]["support"] for s in alone.values())
    with pytest.raises(UserError, match="needs --drive"):
        evaluate_synthetic(engine, seed=3, drives=2, **{**args, "drive": False,
                                                         "pothole_filter": PotholeFilterConfig()})
