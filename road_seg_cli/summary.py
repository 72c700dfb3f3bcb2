"""`road-seg summary`: arguments of `road_seg_training.summary` (parameters, FLOPs and shapes of a model)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="training config YAML (its `model:` section) or model YAML")
    source.add_argument("--checkpoint", type=Path, help="a road_seg checkpoint (.pt)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the config, e.g. --set model.input_size=[384,640]")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="count at this input size (multiples of 32) instead of the config's")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from road_seg_training.summary import check_input_size, format_summary, load_model_config, summarize

    size = check_input_size(args.input_size) if args.input_size else None  # before loading anything
    config = load_model_config(args.config, args.checkpoint, args.overrides)
    info = summarize(config, size)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0
