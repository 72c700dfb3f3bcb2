"""Training a model: the loop (`trainer`), its data (`data`), optimisation (`optim`), reproducibility (`repro`),
processes (`distributed`) and the run folder (`run_dir`). Single process, or multi-GPU under `torchrun` unchanged.

Examples::

    road-seg train --config road_seg_training/configs/npo.yaml --set data.datasets.0.root=/data/NPO
    road-seg train --dataset synthetic --epochs 5 --out runs/quick
    torchrun --nproc_per_node=4 -m road_seg_cli train --config road_seg_training/configs/mixed.yaml   # DDP, 4 GPUs
"""
from road_seg_training.train.data import MixedSampler, build_split, fit_batch_size
from road_seg_training.train.distributed import DistInfo
from road_seg_training.train.optim import build_optimizer, poly_warmup_factor
from road_seg_training.train.resolve import TrainRequest, resolve_config
from road_seg_training.train.run_dir import ResumeError, RunFolder
from road_seg_training.train.trainer import Trainer, TrainResult, train

__all__ = ["DistInfo", "MixedSampler", "ResumeError", "RunFolder", "TrainRequest", "TrainResult", "Trainer",
           "build_optimizer", "build_split", "fit_batch_size", "poly_warmup_factor", "resolve_config", "train"]
