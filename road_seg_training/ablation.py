"""What each sensor buys: a modality ablation on synthetic scenes (a benchmark script, not a test).

    python -m road_seg_training.ablation --out runs/ablation --threads 1   # ~35 min on a 2-core CPU with the defaults

Trains the same small network, with the same budget (optimiser steps, batch,
input size, seed), on rgb / rgb+depth / rgb+depth+thermal, and once more on
rgb+depth+thermal with random modality dropout; then runs every model through
the node's `SegmentationPipeline` on held-out synthetic frames (equal shares of
day, night and fog) and prints:

- mIoU of rgb-only vs rgb+depth vs rgb+depth+thermal;
- negative-obstacle IoU without vs with depth (rgb vs rgb+depth);
- positive-obstacle IoU at night without vs with thermal (rgb+depth vs rgb+depth+thermal);
- mIoU lost when one sensor is down at test time, for the tri-modal model trained without and with
  modality dropout;
- what the road-plane residual buys (rgb+depth+thermal vs rgb+depth+thermal+height, the height above the
  road plane fitted to the depth; `road_seg_core.road_plane`), per condition: negative-obstacle IoU,
  pothole recall by object (all, and nearer than 20 m), phantom-pothole frames, positive-obstacle IoU.

    python -m road_seg_training.ablation --only rgb+depth+thermal rgb+depth+thermal+height   # the residual alone

The synthetic scenes are built so that each modality carries something the
others lack (potholes dip in depth but barely show in colour; people and cars
at night are bright in thermal and dark in colour), so fusion must beat rgb on
the obstacle classes; if it does not, the scenes or the fusion are broken.
Models are kept under ``--out`` and reused by ``--reuse``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from road_seg_core.pothole_filter import PotholeFilterConfig
from road_seg_training.config import TrainConfig
from road_seg_training.evaluate import evaluate_scenes, synthetic_scenes


@dataclass(frozen=True)
class Variant:
    key: str
    modalities: tuple[str, ...]
    modality_dropout: float = 0.0


VARIANTS = (
    Variant("rgb", ("rgb",)),
    Variant("rgb+depth", ("rgb", "depth")),
    Variant("rgb+depth+thermal", ("rgb", "depth", "thermal")),
    Variant("rgb+depth+thermal+dropout", ("rgb", "depth", "thermal"), 0.3),
    Variant("rgb+depth+thermal+height", ("rgb", "depth", "thermal", "height")),
)
#: Sensors that can be down at test time; "height" is derived from depth and goes with it.
SENSORS = ("rgb", "depth", "disparity", "thermal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m road_seg_training.ablation", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/ablation"), help="where models and results go")
    p.add_argument("--train-frames", type=int, default=400, help="synthetic training scenes (default 400)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per model (default 20)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--input-size", type=int, nargs=2, default=(160, 288), metavar=("H", "W"))
    p.add_argument("--width-mult", type=float, default=0.5, help="MobileNetV3-Small width (default 0.5)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-frames", type=int, default=90, help="held-out frames, day/night/fog cycled (default 90)")
    p.add_argument("--eval-seed", type=int, default=12345, help="first held-out scene seed (default 12345)")
    p.add_argument("--eval-size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"),
                   help="camera resolution of the held-out frames (default 360 640)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="reuse models already trained under --out")
    p.add_argument("--summarize", action="store_true", help="only print the figures of --out/results.json")
    p.add_argument("--only", nargs="+", choices=[v.key for v in VARIANTS], help="run only these variants")
    return p.parse_args(argv)


def variant_config(args: argparse.Namespace, variant: Variant) -> TrainConfig:
    dropout = {"modality_dropout": variant.modality_dropout, "dropout_modalities": list(variant.modalities)} \
        if variant.modality_dropout else {}
    return TrainConfig.from_dict({
        "model": {"modalities": list(variant.modalities), "encoder": "mobilenet_v3_small",
                  "width_mult": args.width_mult, "fusion": "gated", "decoder_channels": 32,
                  "input_size": list(args.input_size)},
        "data": {"datasets": [{"name": "synthetic", "val_split": None,
                               "options": {"frames": args.train_frames, "seed": args.seed,
                                           "conditions": ["day", "night", "fog"], "cache": True}}],
                 "augment": True, **dropout},
        "optim": {"name": "adamw", "lr": args.lr, "weight_decay": 1e-4},
        "schedule": {"epochs": args.epochs, "warmup_iters": 20},
        "batch_size": args.batch_size,
        "class_weights": [1.0, 1.0, 2.0, 4.0],
        "seed": args.seed,
        "num_threads": args.threads,
        "log": {"progress": False, "tensorboard": False},
        "out": str(args.out / variant.key),
    })


def train_variant(args: argparse.Namespace, variant: Variant) -> tuple[Path, float]:
    from road_seg_training.train import train

    cfg = variant_config(args, variant)
    last = Path(cfg.out) / "last.pt"
    if args.reuse and last.is_file():
        return last, 0.0
    started = time.perf_counter()
    # the ablation owns its variant folders: without --reuse it retrains them, as documented
    train(cfg, command="python -m road_seg_training.ablation " + " ".join(sys.argv[1:]), overwrite=True)
    return last, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from road_seg_core.engines import create_engine

    args = parse_args(argv)
    if args.summarize:  # re-print a finished run's figures
        saved = json.loads((args.out / "results.json").read_text())
        print(format_summary(summarize(saved["results"]), saved["results"], saved["budget"]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v for v in VARIANTS if not args.only or v.key in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    h, w = args.eval_size
    print(f"rendering {args.eval_frames} held-out frames ({w}x{h}, seeds {args.eval_seed}..)", file=sys.stderr)
    scenes = list(synthetic_scenes(args.eval_frames, args.eval_seed, w, h, ("day", "night", "fog")))

    # The networks' own output: the node's depth check of pothole blobs applies only to models fed depth, so it
    # would mix a post-filter into what each input buys.
    raw = PotholeFilterConfig(min_depth_share=0.0)
    results: dict[str, Any] = {}
    for variant in variants:
        print(f"training {variant.key}", file=sys.stderr, flush=True)
        path, seconds = train_variant(args, variant)
        engine = create_engine(path)
        entry = {"train_seconds": round(seconds, 1), "full": evaluate_scenes(engine, scenes, pothole_filter=raw)}
        if len(variant.modalities) > 1:
            entry["removed"] = {m: evaluate_scenes(engine, scenes, drop=(m,), pothole_filter=raw)
                                for m in variant.modalities if m in SENSORS}
        results[variant.key] = entry
        print(f"  {variant.key}: mIoU {entry['full']['miou']:.3f} ({seconds:.0f} s training)", file=sys.stderr)

    summary = summarize(results)
    budget = (f"budget per model: {args.epochs} epochs x {args.train_frames // args.batch_size} steps of "
              f"batch {args.batch_size} at {args.input_size[0]}x{args.input_size[1]} (MobileNetV3-Small "
              f"x{args.width_mult:g}, seed {args.seed}), CPU threads {args.threads or torch.get_num_threads()}; "
              f"evaluated on {args.eval_frames} held-out frames at {w}x{h} through SegmentationPipeline")
    (args.out / "results.json").write_text(json.dumps({"budget": budget, "summary": summary, "results": results},
                                                      indent=1, allow_nan=False))
    print(format_summary(summary, results, budget))
    return 0


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the ablation exists for (None where a variant was not run)."""
    def iou(key: str, cls: str, condition: str | None = None) -> float | None:
        if key not in results:
            return None
        full = results[key]["full"]
        return full["by_condition"][condition]["iou"][cls] if condition else full["per_class"][cls]["iou"]

    def removed_iou(key: str, modality: str, cls: str) -> float | None:
        if key not in results or modality not in results[key].get("removed", {}):
            return None
        return results[key]["removed"][modality]["per_class"][cls]["iou"]

    def miou(key: str) -> float | None:
        return results[key]["full"]["miou"] if key in results else None

    def losses(key: str) -> dict[str, float] | None:
        if key not in results or "removed" not in results[key]:
            return None
        base = results[key]["full"]["miou"]
        return {m: base - r["miou"] for m, r in results[key]["removed"].items()}

    def residual(key: str) -> dict[str, Any] | None:
        """Per condition: the obstacle figures the road-plane residual is meant to move."""
        if key not in results:
            return None
        out = {}
        for condition, entry in results[key]["full"]["by_condition"].items():
            obstacles = entry.get("obstacles") or {}
            out[condition] = {"negative_obstacle_iou": entry["iou"]["negative_obstacle"],
                              "positive_obstacle_iou": entry["iou"]["positive_obstacle"],
                              "pothole_recall": obstacles.get("pothole_recall"),
                              "pothole_recall_near_20m": obstacles.get("pothole_recall_near_20m"),
                              "phantom_frame_rate": obstacles.get("phantom_frame_rate")}
        return out

    return {
        "miou": {k: miou(k) for k in ("rgb", "rgb+depth", "rgb+depth+thermal", "rgb+depth+thermal+dropout",
                                      "rgb+depth+thermal+height")},
        "negative_obstacle_iou": {"without_depth": iou("rgb", "negative_obstacle"),
                                  "with_depth": iou("rgb+depth", "negative_obstacle"),
                                  "tri_modal": iou("rgb+depth+thermal", "negative_obstacle"),
                                  "tri_modal_depth_removed": removed_iou("rgb+depth+thermal", "depth",
                                                                         "negative_obstacle"),
                                  "tri_modal_thermal_removed": removed_iou("rgb+depth+thermal", "thermal",
                                                                           "negative_obstacle")},
        "positive_obstacle_iou_night": {"without_thermal": iou("rgb+depth", "positive_obstacle", "night"),
                                        "with_thermal": iou("rgb+depth+thermal", "positive_obstacle", "night")},
        "positive_obstacle_iou": {k: iou(k, "positive_obstacle") for k in ("rgb", "rgb+depth", "rgb+depth+thermal")},
        "miou_lost_when_removed": {"no_dropout": losses("rgb+depth+thermal"),
                                   "with_dropout": losses("rgb+depth+thermal+dropout")},
        "road_plane_residual": {"without": residual("rgb+depth+thermal"),
                                "with": residual("rgb+depth+thermal+height")},
    }


def format_summary(summary: dict[str, Any], results: dict[str, Any], budget: str) -> str:
    def f(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:.3f}"

    m = summary["miou"]
    neg = summary["negative_obstacle_iou"]
    night = summary["positive_obstacle_iou_night"]
    lines = [budget, "",
             f"mIoU                          rgb {f(m['rgb'])} | rgb+depth {f(m['rgb+depth'])} | "
             f"rgb+depth+thermal {f(m['rgb+depth+thermal'])} | +modality dropout {f(m['rgb+depth+thermal+dropout'])}",
             f"negative-obstacle IoU         without depth {f(neg['without_depth'])} -> with depth "
             f"{f(neg['with_depth'])} (rgb -> rgb+depth); rgb+depth+thermal {f(neg['tri_modal'])}, with depth "
             f"down {f(neg['tri_modal_depth_removed'])}, with thermal down {f(neg['tri_modal_thermal_removed'])}",
             f"positive-obstacle IoU, night  without thermal {f(night['without_thermal'])} -> with thermal "
             f"{f(night['with_thermal'])}",
             "positive-obstacle IoU         " + " | ".join(
                 f"{k} {f(v)}" for k, v in summary["positive_obstacle_iou"].items()),
             "", "mIoU lost when one sensor is down at test time (tri-modal model):",
             f"  {'':<22}{'rgb':>8}{'depth':>8}{'thermal':>8}"]
    for label, key in (("trained without dropout", "no_dropout"), ("trained with dropout", "with_dropout")):
        row = summary["miou_lost_when_removed"][key]
        if row:
            lines.append(f"  {label:<22}" + "".join(f"{row.get(mod, float('nan')):>8.3f}"
                                                     for mod in ("rgb", "depth", "thermal")))
    plane = summary.get("road_plane_residual") or {}
    if plane.get("without") or plane.get("with"):
        lines += ["", "road-plane residual (rgb+depth+thermal without -> with height), per condition:",
                  f"  {'condition':<10}{'neg IoU':>16}{'recall':>16}{'recall <20m':>16}{'phantom':>16}"
                  f"{'pos IoU':>16}"]
        without, with_ = plane.get("without") or {}, plane.get("with") or {}
        keys = ("negative_obstacle_iou", "pothole_recall", "pothole_recall_near_20m", "phantom_frame_rate",
                "positive_obstacle_iou")
        for condition in sorted(set(without) | set(with_)):
            a, b = without.get(condition, {}), with_.get(condition, {})
            lines.append(f"  {condition:<10}" + "".join(f"{f(a.get(k)):>7} -> {f(b.get(k)):<6}" for k in keys))
    lines += ["", "per-class IoU (all conditions):"]
    for key, entry in results.items():
        per = entry["full"]["per_class"]
        lines.append(f"  {key:<27}" + "  ".join(f"{c[:8]} {f(v['iou'])}" for c, v in per.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
