"""`road-seg train`: the training loop (single process, or multi-GPU under `torchrun` with no other change).

Outputs in ``--out``:

- ``last.pt`` / ``best.pt`` — self-describing road_seg checkpoints (the node and
  every backend load them as they are); ``best.pt`` is the epoch with the
  highest validation mIoU, ``last.pt`` the most recent one.
- ``last.state.pt`` — what resuming needs beyond the weights: optimiser,
  LR scheduler, AMP scaler, epoch, step, best score and every RNG state, so
  ``--resume`` continues exactly where an uninterrupted run would be.
- ``config.yaml`` (the resolved config), ``log.jsonl`` (one JSON line per
  logged step and per validation) and ``tb/`` (TensorBoard: losses, LR,
  per-class IoU, overlays).

Examples::

    road-seg train --config training/configs/npo.yaml --set data.datasets.0.root=/data/NPO
    road-seg train --dataset synthetic --epochs 5 --out runs/quick
    torchrun --nproc_per_node=4 -m training.cli train --config training/configs/mixed.yaml   # DDP, 4 GPUs
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from road_seg_core import labels as L
from road_seg_core.checkpoint import load_checkpoint, save_checkpoint
from road_seg_core.models import MODALITY_CHANNELS, ModelConfig, build_model
from training.config import DatasetSpec, TrainConfig

STATE_SUFFIX = ".state.pt"


class ResumeError(RuntimeError):
    """A run cannot be resumed from the given path (no training state beside it, or another model)."""


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="training YAML (see training/configs/); defaults otherwise")
    parser.add_argument("--dataset", choices=("npo", "drno", "mfnet", "synthetic", "folder"),
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
    parser.add_argument("--export-bundled", action="store_true",
                        help="after training, copy best.pt to road_seg_core/data/demo_model.pt (the bundled model)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = resolve_config(args)
    except ValueError as exc:
        print(f"road-seg train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    program = Path(sys.argv[0]).name
    command = shlex.join(["road-seg" if program in ("road-seg", "cli.py") else program, *sys.argv[1:]])
    from road_seg_core.checkpoint import CheckpointError
    from training.datasets import DatasetError

    try:
        result = train(cfg, resume=args.resume, command=command)
    except (DatasetError, CheckpointError, ResumeError) as exc:
        print(f"road-seg train: {exc}", file=sys.stderr)
        return 2
    if args.export_bundled and result.is_main:
        from road_seg_core.bundled import BUNDLED_MODEL_NAME

        target = Path(__file__).resolve().parent.parent / "road_seg_core" / "data" / BUNDLED_MODEL_NAME
        shutil.copyfile(result.best_path, target)
        print(f"bundled model updated: {target}", file=sys.stderr)
    return 0


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """YAML (or defaults) <- --set overrides <- the dedicated flags (--dataset, --root, --epochs, --out, ...)."""
    from training.config import apply_overrides

    if args.config:
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
    else:
        cfg = TrainConfig.from_dict(apply_overrides(TrainConfig().to_dict(), args.overrides))
    if args.dataset:
        cfg.data.datasets = [DatasetSpec(name=args.dataset, root=args.root)]
    elif args.root:
        if len(cfg.data.datasets) != 1:
            raise ValueError("--root is ambiguous with several datasets; use --set data.datasets.N.root=DIR")
        cfg.data.datasets[0].root = args.root
    if args.epochs is not None:
        cfg.schedule.epochs = args.epochs
    if args.out:
        cfg.out = args.out
    if args.batch_size is not None:
        cfg.batch_size = args.batch_size
    if args.device:
        cfg.device = args.device
    return cfg.validate()


# ---------------------------------------------------------------------------------------------------------------
# Distributed set-up (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return info


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def build_split(cfg: TrainConfig, spec: DatasetSpec, train: bool) -> Dataset:
    """One dataset split through the data side's builder, in the model's modalities and input size.

    Training splits get augmentation and modality dropout (a sensor failing);
    validation splits neither, plus their `val_options`.
    """
    from training.datasets import build_dataset

    options = dict(spec.options)
    if train:
        if cfg.data.modality_dropout > 0:
            options["modality_dropout"] = cfg.data.modality_dropout
            if cfg.data.dropout_modalities:
                options["dropout_modalities"] = tuple(cfg.data.dropout_modalities)
    else:
        options.update(spec.val_options)
    split = spec.train_split if train else spec.val_split
    return build_dataset(spec.name, spec.root, split, modalities=tuple(cfg.model.modalities),
                         input_size=tuple(cfg.model.input_size), augment=train and cfg.data.augment, **options)


class MixedSampler(Sampler[int]):
    """Epoch sample order over concatenated datasets, weighted per dataset, sharded across processes.

    Every process draws the same permutation from ``(seed, epoch)`` and takes
    its own slice, so the order depends on nothing but the seed and the epoch:
    resuming at an epoch boundary reproduces it, and it is the same whatever
    the number of data-loader workers. A dataset with weight w gets
    ``round(total * w / sum(w))`` samples per epoch (drawn without replacement
    while it lasts), ``total`` being the summed dataset sizes.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float | None], seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.sizes = [int(s) for s in sizes]
        total = sum(self.sizes)
        if total == 0:
            raise ValueError("all training datasets are empty")
        resolved = [float(s) if w is None else float(w) for s, w in zip(self.sizes, weights)]
        norm = sum(r for r, s in zip(resolved, self.sizes) if s > 0)
        self.counts = [int(round(total * r / norm)) if s > 0 else 0 for r, s in zip(resolved, self.sizes)]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.per_rank = math.ceil(sum(self.counts) / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_indices(self) -> np.ndarray:
        """The full (all ranks) ordered index list of this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        parts = []
        for size, count, offset in zip(self.sizes, self.counts, self.offsets):
            if count == 0:
                continue
            repeats = -(-count // size)
            picks = np.concatenate([rng.permutation(size) for _ in range(repeats)])[:count]
            parts.append(picks + offset)
        order = np.concatenate(parts)
        order = order[rng.permutation(len(order))]
        padded = self.per_rank * self.world_size
        if padded > len(order):  # equal shard lengths keep DDP ranks in lock-step
            order = np.concatenate([order, order[: padded - len(order)]])
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank


def make_collate(model_cfg: ModelConfig):
    """Batch samples, filling a modality a dataset lacks with zeros (validity 0) so mixed datasets share batches."""
    modalities = tuple(model_cfg.modalities)

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        first = samples[0]
        height, width = first["labels"].shape[-2:]
        inputs = {}
        for m in modalities:
            tensors = []
            for s in samples:
                x = s["inputs"].get(m)
                tensors.append(torch.zeros((MODALITY_CHANNELS[m], height, width), dtype=torch.float32)
                               if x is None else torch.as_tensor(x, dtype=torch.float32))
            inputs[m] = torch.stack(tensors)
        return {
            "inputs": inputs,
            "target": torch.stack([torch.as_tensor(s["target"]) for s in samples]),
            "labels": torch.stack([torch.as_tensor(s["labels"]) for s in samples]),
            "meta": [s.get("meta", {}) for s in samples],
        }

    return collate


# ---------------------------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------------------------
def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on norms and biases (decaying BN scales only hurts)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.momentum, 0.999))


def poly_warmup_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """LR multiplier at optimiser step `step`: linear warm-up, then poly decay to min_lr."""
    s = cfg.schedule
    warmup = min(s.warmup_iters, max(total_steps - 1, 0))
    if step < warmup:
        factor = s.warmup_ratio + (1.0 - s.warmup_ratio) * step / warmup
    else:
        progress = (step - warmup) / max(total_steps - warmup, 1)
        factor = (1.0 - min(progress, 1.0)) ** s.power
    return max(factor, s.min_lr / cfg.optim.lr)


def build_loss(cfg: TrainConfig, device: torch.device) -> nn.Module:
    from training.losses import PartialLabelCrossEntropy

    return PartialLabelCrossEntropy(class_weights=cfg.class_weights or None, focal_gamma=cfg.focal_gamma,
                                    hard_pixel_fraction=cfg.hard_pixel_fraction).to(device)


# ---------------------------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, in types `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: numpy/random seeded from torch's per-worker seed (itself from the loop's RNG)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------------------------
def git_commit(start: Path | None = None) -> str | None:
    """HEAD commit of the source checkout, read from .git files (no git process, nothing written); None if absent."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        git = folder / ".git"
        if git.is_file():  # worktree: "gitdir: <path>"
            text = git.read_text().strip()
            git = (folder / text.partition("gitdir:")[2].strip()).resolve()
        if not git.is_dir():
            continue
        head = (git / "HEAD").read_text().strip() if (git / "HEAD").is_file() else ""
        if not head.startswith("ref:"):
            return head or None
        ref = head.partition("ref:")[2].strip()
        common = git / "commondir"
        roots = [git] + ([(git / common.read_text().strip()).resolve()] if common.is_file() else [])
        for root in roots:
            if (root / ref).is_file():
                return (root / ref).read_text().strip()
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
        return None
    return None


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    out: Path
    best_path: Path
    last_path: Path
    best_miou: float
    best_epoch: int
    #: (epoch, step, loss) of every optimiser step this invocation ran (all of them, not only logged ones).
    step_losses: list[tuple[int, int, float]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # validation results per validated epoch
    is_main: bool = True


class Trainer:
    """Owns model, optimiser, scheduler, scaler and data of one run; `fit()` trains to the configured epoch."""

    def __init__(self, cfg: TrainConfig, command: str = "", dist_info: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.command = command
        kind = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist = dist_info or init_distributed(kind)
        self.device = resolve_device(cfg.device, self.dist)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)  # process-wide; `train()` restores the previous value
        self.out = Path(cfg.out)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)

        self.model_cfg = cfg.model
        model = build_model(cfg.model)
        if cfg.init_from:
            from training.warm_start import warm_start

            self.warm_start = warm_start(model, cfg.init_from, cfg.init_streams)
        model = model.to(self.device)
        if cfg.bn_momentum is not None:  # not saved in checkpoints: affects training statistics only
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = cfg.bn_momentum
        if self.dist.enabled and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ddp = (nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type
                                                        == "cuda" else None) if self.dist.enabled else model)
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = build_loss(cfg, self.device)
        self.optimizer = build_optimizer(model, cfg)

        self._build_data()
        steps_per_epoch = len(self.train_loader) // cfg.grad_accum
        if cfg.schedule.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, cfg.schedule.max_steps_per_epoch)
        if steps_per_epoch < 1:
            raise ValueError(f"an epoch has {len(self.train_loader)} batches of {cfg.batch_size}: too few for "
                             f"grad_accum={cfg.grad_accum}; lower batch_size/grad_accum or add data")
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * cfg.schedule.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: poly_warmup_factor(step, self.total_steps, cfg))
        self.epoch = 0  # next epoch to run
        self.step = 0
        self.best_miou = -1.0
        self.best_epoch = -1
        self.writer = None
        self.result = TrainResult(out=self.out, best_path=self.out / "best.pt", last_path=self.out / "last.pt",
                                  best_miou=-1.0, best_epoch=-1, is_main=self.dist.is_main)

    # -- data -------------------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        from training.datasets import build_mixed

        cfg = self.cfg
        train_sets = [build_split(cfg, s, train=True) for s in cfg.data.datasets]
        self._check_units(train_sets)
        self.train_sampler = MixedSampler([len(d) for d in train_sets], [s.weight for s in cfg.data.datasets],
                                          cfg.seed, self.dist.rank, self.dist.world_size)
        workers = cfg.data.num_workers
        self.train_loader = DataLoader(
            build_mixed(train_sets), batch_size=cfg.batch_size, sampler=self.train_sampler,
            num_workers=workers, collate_fn=make_collate(cfg.model), drop_last=True,
            pin_memory=self.device.type == "cuda", worker_init_fn=_seed_worker if workers else None,
            persistent_workers=False)
        self.val_sets: list[tuple[str, Dataset]] = []
        for i, spec in enumerate(cfg.data.datasets):
            if spec.val_split:
                name = spec.name if sum(s.name == spec.name for s in cfg.data.datasets) == 1 else f"{spec.name}{i}"
                self.val_sets.append((name, build_split(cfg, spec, train=False)))

    def _check_units(self, datasets: Sequence[Dataset]) -> None:
        """Warn when a dataset delivers a modality in units the model's normalisation does not expect.

        NPO/DRNO depth PNGs are relative 0..255 values, not metres: a model trained
        on them must say so in its norms (scale 255), or the car, which feeds
        metres, would see inputs unlike anything it was trained on.
        """
        if not self.dist.is_main:
            return
        for ds in datasets:
            scales = getattr(ds, "suggested_norm_scales", lambda: {})()
            for modality, scale in scales.items():
                norm = self.model_cfg.norms.get(modality)
                if norm is not None and abs(norm.scale - scale) > 1e-6 * scale:
                    print(f"warning: {getattr(ds, 'name', 'dataset')} delivers {modality} in units "
                          f"{ds.units.get(modality)!r} (suggested norm scale {scale:g}) but the model's "
                          f"norms.{modality}.scale is {norm.scale:g}; set model.norms.{modality}.scale",
                          file=sys.stderr)

    # -- state --------------------------------------------------------------------------------------------------
    def provenance(self, metrics: dict[str, Any] | None) -> dict[str, Any]:
        c = self.cfg
        return {
            "dataset": [{"name": s.name, "root": s.root, "train_split": s.train_split, "val_split": s.val_split,
                         "options": s.options} for s in c.data.datasets],
            "epochs": self.epoch,
            "epochs_planned": c.schedule.epochs,
            "steps": self.step,
            "metrics": metrics or {},
            "command": self.command,
            "git": git_commit(),
            "seed": c.seed,
            "world_size": self.dist.world_size,
            "train_config": c.to_dict(),
        }

    def save(self, metrics: dict[str, Any], is_best: bool) -> None:
        """last.pt + last.state.pt every epoch, best.pt when the validation mIoU improved (rank 0 only)."""
        if not self.dist.is_main:
            return
        prov = self.provenance(metrics)
        save_checkpoint(self.result.last_path, self.model, self.model_cfg, prov)
        state = {
            "epoch": self.epoch, "step": self.step, "best_miou": self.best_miou, "best_epoch": self.best_epoch,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "train_config": self.cfg.to_dict(),
        }
        tmp = self.out / f".last{STATE_SUFFIX}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / f"last{STATE_SUFFIX}")
        if is_best:
            shutil.copyfile(self.result.last_path, self.result.best_path)

    def resume(self, path: Path) -> None:
        """Restore weights, optimiser, scheduler, scaler, counters and RNGs from a run's last.pt."""
        path = Path(path)
        ckpt_path = path / "last.pt" if path.is_dir() else path
        state_path = ckpt_path.with_name(ckpt_path.name.removesuffix(".pt") + STATE_SUFFIX)
        if not state_path.is_file():
            raise ResumeError(f"cannot resume from {ckpt_path}: training state {state_path} is missing "
                                    "(best.pt and exported checkpoints carry weights only)")
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.config.to_dict() != self.model_cfg.to_dict():
            raise ResumeError(f"cannot resume from {ckpt_path}: its model config differs from this run's "
                              "(resume with the run's own config.yaml)")
        self.model.load_state_dict(ckpt.state_dict)
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_miou, self.best_epoch = float(state["best_miou"]), int(state["best_epoch"])
        set_rng_state(state["rng"])
        source_best = ckpt_path.parent / "best.pt"
        if self.dist.is_main and source_best.is_file() and not self.result.best_path.exists():
            shutil.copyfile(source_best, self.result.best_path)  # resuming into another folder keeps the best

    # -- one epoch ----------------------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        cfg = self.cfg
        self.ddp.train()
        self.train_sampler.set_epoch(self.epoch)
        accum = cfg.grad_accum
        bar = self._progress(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{cfg.schedule.epochs}")
        running, count, step_loss = 0.0, 0, 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(self.train_loader):
            if i // accum >= self.steps_per_epoch:
                break
            inputs = {m: x.to(self.device, non_blocking=True) for m, x in batch["inputs"].items()}
            target = batch["target"].to(self.device, non_blocking=True)
            last_micro = (i + 1) % accum == 0
            sync = nullcontext() if last_micro or not self.dist.enabled else self.ddp.no_sync()
            with sync:
                with self._autocast():
                    logits = self.ddp(inputs)
                loss = self.loss_fn(logits.float(), target)
                self.scaler.scale(loss / accum).backward()
            step_loss += float(loss.detach()) / accum
            if not last_micro:
                continue
            if cfg.optim.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"loss is {step_loss} at step {self.step}; lower optim.lr or enable "
                                         "optim.grad_clip")
            self.result.step_losses.append((self.epoch, self.step, step_loss))
            running += step_loss
            count += 1
            if self.step % cfg.log.every_steps == 0:
                self._log({"kind": "train", "epoch": self.epoch, "step": self.step, "loss": step_loss, "lr": lr})
                if self.writer:
                    self.writer.add_scalar("train/loss", step_loss, self.step)
                    self.writer.add_scalar("train/lr", lr, self.step)
            self.step += 1
            step_loss = 0.0
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{running / count:.4f}", lr=f"{lr:.2e}")
        if bar:
            bar.close()
        return running / max(count, 1)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Confusion-matrix metrics per validation set (counts summed over ranks) and their mean mIoU.

        A dataset with its own evaluation classes (``eval_space``, e.g. NPO's three)
        is scored there too, and that mIoU is the one used for model selection:
        in the node's four classes its ambiguous pixels would simply be missing.
        """
        from road_seg_core.metrics import ConfusionMatrix
        from training.evaluate import matrix_report

        self.ddp.eval()
        per_set: dict[str, Any] = {}
        scores: list[float] = []
        overlays: list[np.ndarray] = []
        names = tuple(self.model_cfg.class_names)
        for set_index, (name, dataset) in enumerate(self.val_sets):
            space = getattr(dataset, "eval_space", None)
            if space is not None and tuple(space.class_names) == names:
                space = None  # judged in the node's own classes: nothing to add
            indices = list(range(self.dist.rank, len(dataset), self.dist.world_size))
            loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=self.cfg.batch_size,
                                shuffle=False, num_workers=self.cfg.data.num_workers,
                                collate_fn=make_collate(self.cfg.model))
            node = ConfusionMatrix(len(names), names)
            native = ConfusionMatrix(space.num_classes, space.class_names) if space is not None else None
            for batch in loader:
                inputs = {m: x.to(self.device) for m, x in batch["inputs"].items()}
                with self._autocast():
                    pred = self.model(inputs).argmax(dim=1)
                node.update(pred, batch["labels"].to(self.device))
                if native is not None:
                    native.update(space.pred(pred), space.target(batch["target"].to(self.device)))
                if self.dist.is_main and set_index == 0 and len(overlays) < self.cfg.log.overlays:
                    overlays += render_overlays(batch, pred.cpu().numpy(), self.cfg.log.overlays - len(overlays))
            report = matrix_report(self._all_reduce(node.matrix), names)
            if native is not None:
                report["dataset_space"] = {"classes": list(space.class_names),
                                           **matrix_report(self._all_reduce(native.matrix), space.class_names)}
                score = report["dataset_space"]["miou"]
            else:
                score = report["miou"]
            per_set[name] = report
            if score is not None:
                scores.append(score)
        result = {"miou": float(np.mean(scores)) if scores else None, "datasets": per_set}
        if self.writer:
            for name, report in per_set.items():
                if report["miou"] is not None:
                    self.writer.add_scalar(f"val/{name}/miou", report["miou"], self.epoch)
                for cls, m in report["per_class"].items():
                    if m["iou"] is not None:
                        self.writer.add_scalar(f"val/{name}/iou/{cls}", m["iou"], self.epoch)
            for i, image in enumerate(overlays):
                self.writer.add_image(f"val/overlay_{i}", image, self.epoch, dataformats="HWC")
        return result

    def _all_reduce(self, matrix: np.ndarray) -> np.ndarray:
        if not self.dist.enabled:
            return matrix
        t = torch.as_tensor(matrix, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().numpy().astype(np.int64)

    # -- driver ---------------------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train up to `schedule.epochs` (or only `stop_after` more epochs: an interruption that `resume` undoes)."""
        cfg = self.cfg
        final = cfg.schedule.epochs if stop_after is None else min(cfg.schedule.epochs, self.epoch + stop_after)
        if self.dist.is_main:
            (self.out / "config.yaml").write_text(cfg.to_yaml())
            if cfg.log.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "tb"))
        try:
            while self.epoch < final:
                started = time.perf_counter()
                train_loss = self.train_epoch()
                self.epoch += 1
                last = self.epoch == cfg.schedule.epochs
                metrics: dict[str, Any] = {"train_loss": train_loss}
                is_best = False
                if self.val_sets and (self.epoch % cfg.data.val_every == 0 or last):
                    val = self.validate()
                    metrics["val"] = val
                    score = val["miou"] if val["miou"] is not None else -1.0
                    if score > self.best_miou:
                        self.best_miou, self.best_epoch, is_best = score, self.epoch, True
                    self.result.history.append({"epoch": self.epoch, **val})
                elif not self.val_sets:  # nothing to select on: the latest epoch is the best we know
                    is_best = True
                metrics["seconds"] = time.perf_counter() - started
                self._log({"kind": "epoch", "epoch": self.epoch, "step": self.step, **_summary(metrics)})
                self.save(metrics, is_best)
                if self.dist.enabled:
                    dist.barrier()
        finally:
            if self.writer:
                self.writer.close()
        self.result.best_miou, self.result.best_epoch = self.best_miou, self.best_epoch
        return self.result

    # -- helpers --------------------------------------------------------------------------------------------------
    def _autocast(self):
        """fp16 autocast on CUDA when AMP is on; nothing on CPU (CPU autocast would only slow this network)."""
        return torch.autocast("cuda", dtype=torch.float16) if self.use_amp else nullcontext()

    def _progress(self, total: int, desc: str):
        if not (self.dist.is_main and self.cfg.log.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if record["kind"] == "epoch":
            parts = [f"epoch {record['epoch']}/{self.cfg.schedule.epochs}", f"loss {record['train_loss']:.4f}"]
            if record.get("val_miou") is not None:
                parts.append(f"val mIoU {record['val_miou']:.4f}")
                parts.append(" ".join(f"{k}={v:.3f}" for k, v in record.get("val_iou", {}).items() if v is not None))
            parts.append(f"{record['seconds']:.0f}s")
            print(" | ".join(parts), file=sys.stderr, flush=True)


def render_overlays(batch: dict[str, Any], pred: np.ndarray, limit: int) -> list[np.ndarray]:
    """[ground truth | prediction] overlays on the colour image (thermal/depth as grey if there is no rgb)."""
    from road_seg_core.postprocess import overlay

    images = []
    inputs = batch["inputs"]
    for b in range(min(limit, pred.shape[0])):
        if "rgb" in inputs:
            base = inputs["rgb"][b].permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy()
        else:
            x = next(iter(inputs.values()))[b, 0].numpy()
            grey = (255 * x / max(float(x.max()), 1e-6)).astype(np.uint8)
            base = np.repeat(grey[..., None], 3, axis=2)
        base = np.ascontiguousarray(base)
        gt = batch["labels"][b].numpy().astype(np.uint8)
        gt = np.where(gt == L.IGNORE, L.BACKGROUND, gt).astype(np.uint8)
        images.append(np.concatenate([overlay(base, gt), overlay(base, pred[b].astype(np.uint8))], axis=1))
    return images


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {"train_loss": metrics["train_loss"], "seconds": metrics["seconds"]}
    val = metrics.get("val")
    if val:
        out["val_miou"] = val["miou"]
        first = next(iter(val["datasets"].values()))
        first = first.get("dataset_space", first)  # e.g. NPO's own classes: its node-space view lacks road
        out["val_iou"] = {cls: m["iou"] for cls, m in first["per_class"].items()}
    return out


def train(cfg: TrainConfig, resume: Path | None = None, command: str = "") -> TrainResult:
    """Train (or resume) one run; returns where the checkpoints are and what happened."""
    previous_threads = torch.get_num_threads()
    trainer = None
    try:
        trainer = Trainer(cfg.validate(), command=command)
        if resume:
            trainer.resume(resume)
        return trainer.fit()
    finally:
        torch.set_num_threads(previous_threads)
        if trainer is not None and trainer.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()
