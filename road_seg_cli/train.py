"""`road-seg train`: arguments of a training run, resolved into one `TrainConfig` (see
`road_seg_training.train.resolve` for the order in which file, flags and ``--set`` compose)."""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from road_seg_training.datasets import DATASET_NAMES

    parser.epilog = ("Order: --config file (or defaults) < flags < --set; a --set of what a flag sets is refused. "
                     "--dataset alone also takes model inputs and their normalisation from the dataset.")
    parser.add_argument("--config", type=Path,
                        help="training YAML (see road_seg_training/configs/); defaults otherwise")
    parser.add_argument("--dataset", choices=DATASET_NAMES,
                        help="train on this one dataset (replaces the config's data.datasets)")
    parser.add_argument("--root", help="dataset root folder (for --dataset, or the config's only dataset)")
    parser.add_argument("--epochs", type=int, help="number of epochs (schedule.epochs)")
    parser.add_argument("--out", help="output folder for checkpoints, logs and TensorBoard (default: config's out)")
    parser.add_argument("--batch-size", type=int, help="per-process batch size")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (default: config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value by dotted path, e.g. --set optim.lr=0.01 (repeatable)")
    parser.add_argument("--resume", type=Path, metavar="PATH",
                        help="continue a run: its output folder or its last.pt (needs last.state.pt beside it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (without it, training there is refused)")
    parser.add_argument("--export-bundled", action="store_true",
                        help="after training, copy best.pt to road_seg_core/data/demo_model.pt (the bundled model)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")


def run(args: argparse.Namespace) -> int:
    from road_seg_training.train import TrainRequest, resolve_config, train

    request = TrainRequest(config=args.config, overrides=list(args.overrides), dataset=args.dataset,
                           root=args.root, epochs=args.epochs, out=args.out, batch_size=args.batch_size,
                           device=args.device)
    notes: list[str] = []
    cfg = resolve_config(request, log=notes.append)
    if args.print_config:
        for line in notes:
            print(f"road-seg train: {line}", file=sys.stderr)
        print(cfg.to_yaml(), end="")
        return 0
    program = Path(sys.argv[0]).name
    shown = "road-seg" if program in ("road-seg", "main.py", "__main__.py", "-m") else program
    result = train(cfg, resume=args.resume, command=shlex.join([shown, *sys.argv[1:]]), overwrite=args.overwrite,
                   notes=notes)
    if args.export_bundled and result.is_main:
        import road_seg_core
        from road_seg_core.bundled import BUNDLED_MODEL_NAME

        target = Path(road_seg_core.__file__).resolve().parent / "data" / BUNDLED_MODEL_NAME
        shutil.copyfile(result.best_path, target)
        print(f"bundled model updated: {target}", file=sys.stderr)
    return 0
