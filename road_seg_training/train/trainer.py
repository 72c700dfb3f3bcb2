"""The training loop of one run: `Trainer` owns model, optimiser, scheduler, scaler and data; `train()` drives it.

Outputs in the run folder (`cfg.out`):

- ``last.pt`` / ``best.pt`` — self-describing road_seg checkpoints (the node and
  every backend load them as they are); ``best.pt`` is the epoch with the
  highest validation mIoU, ``last.pt`` the most recent one.
- ``last.state.pt`` — what resuming needs beyond the weights: optimiser,
  LR scheduler, AMP scaler, epoch, step, best score and every RNG state, so a
  resumed run continues exactly where an uninterrupted run would be.
- ``config.yaml`` (the resolved config), ``log.jsonl`` (one JSON line per
  logged step and per validation) and ``tb/`` (TensorBoard: losses, LR,
  per-class IoU, overlays).
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from road_seg_core.atomic import atomic_open
from road_seg_core.checkpoint import load_checkpoint, save_checkpoint
from road_seg_core.models import build_model
from road_seg_training.config import TrainConfig
from road_seg_training.datasets import make_collate
from road_seg_training.split_eval import own_space, score_batches, selection_score
from road_seg_training.train.data import (build_split, build_train_loader, check_units, fit_batch_size,
                                         validation_sets)
from road_seg_training.train.distributed import (DistInfo, all_reduce_counts, barrier, device_kind,
                                                init_distributed, resolve_device, shutdown)
from road_seg_training.train.optim import build_loss, build_optimizer, build_scheduler
from road_seg_training.train.overlays import render_overlays
from road_seg_training.train.repro import git_commit, rng_state, seed_everything, set_rng_state
from road_seg_training.train.run_dir import STATE_SUFFIX, ResumeError, RunFolder, locate_resume


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
        self.command = command
        self.dist = dist_info or init_distributed(device_kind(cfg.device))
        self.device = resolve_device(cfg.device, self.dist)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)  # process-wide; `train()` restores the previous value
        self.out = Path(cfg.out)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        train_sets = [build_split(cfg, s, train=True) for s in cfg.data.datasets]
        if self.dist.is_main:
            check_units(cfg, train_sets)
        per_rank = math.ceil(sum(len(d) for d in train_sets) / self.dist.world_size)
        cfg = replace(cfg, batch_size=fit_batch_size(cfg, per_rank, self.dist))
        self.cfg = cfg
        self.train_loader, self.train_sampler = build_train_loader(cfg, train_sets, self.dist,
                                                                   pin_memory=self.device.type == "cuda")
        self.val_sets = validation_sets(cfg)

        seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
        self.model_cfg = cfg.model
        model = build_model(cfg.model)
        if cfg.init_from:
            from road_seg_training.warm_start import warm_start

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

        steps_per_epoch = len(self.train_loader) // cfg.grad_accum
        if cfg.schedule.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, cfg.schedule.max_steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * cfg.schedule.epochs
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, cfg)
        self.epoch = 0  # next epoch to run
        self.step = 0
        self.best_miou = -1.0
        self.best_epoch = -1
        self.writer = None
        self.result = TrainResult(out=self.out, best_path=self.out / "best.pt", last_path=self.out / "last.pt",
                                  best_miou=-1.0, best_epoch=-1, is_main=self.dist.is_main)

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
        save_checkpoint(self.result.last_path, self.model, self.model_cfg, self.provenance(metrics))
        state = {
            "epoch": self.epoch, "step": self.step, "best_miou": self.best_miou, "best_epoch": self.best_epoch,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "train_config": self.cfg.to_dict(),
        }
        with atomic_open(self.out / f"last{STATE_SUFFIX}") as handle:
            torch.save(state, handle)
        if is_best:
            shutil.copyfile(self.result.last_path, self.result.best_path)

    def resume(self, path: Path) -> None:
        """Restore weights, optimiser, scheduler, scaler, counters and RNGs from a run's last.pt."""
        ckpt_path, state_path = locate_resume(path)
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
        """`split_eval` metrics per validation set (counts summed over ranks) and their mean selection mIoU."""
        self.ddp.eval()
        per_set: dict[str, Any] = {}
        scores: list[float] = []
        overlays: list[np.ndarray] = []
        names = tuple(self.model_cfg.class_names)

        def predict(batch: dict[str, Any]) -> torch.Tensor:
            inputs = {m: x.to(self.device) for m, x in batch["inputs"].items()}
            with self._autocast():
                return self.model(inputs).argmax(dim=1)

        def keep_overlays(batch: dict[str, Any], pred: torch.Tensor) -> None:
            if len(overlays) < self.cfg.log.overlays:
                overlays.extend(render_overlays(batch, pred.cpu().numpy(), self.cfg.log.overlays - len(overlays)))

        reduce = lambda m: all_reduce_counts(m, self.dist, self.device)  # noqa: E731
        for set_index, (name, dataset) in enumerate(self.val_sets):
            indices = list(range(self.dist.rank, len(dataset), self.dist.world_size))
            loader = DataLoader(Subset(dataset, indices), batch_size=self.cfg.batch_size, shuffle=False,
                                num_workers=self.cfg.data.num_workers, collate_fn=make_collate(self.cfg.model))
            on_batch = keep_overlays if self.dist.is_main and set_index == 0 else None
            report = score_batches(loader, predict, names, own_space(dataset, names), on_batch).report(reduce)
            per_set[name] = report
            score = selection_score(report)
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
                    self.best_epoch, is_best = self.epoch, True
                metrics["seconds"] = time.perf_counter() - started
                self._log({"kind": "epoch", "epoch": self.epoch, "step": self.step, **_summary(metrics)})
                self.save(metrics, is_best)
                barrier(self.dist)
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


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {"train_loss": metrics["train_loss"], "seconds": metrics["seconds"]}
    val = metrics.get("val")
    if val:
        out["val_miou"] = val["miou"]
        first = next(iter(val["datasets"].values()))
        first = first.get("dataset_space", first)  # e.g. NPO's own classes: its node-space view lacks road
        out["val_iou"] = {cls: m["iou"] for cls, m in first["per_class"].items()}
    return out


def train(cfg: TrainConfig, resume: Path | None = None, command: str = "", overwrite: bool = False,
          notes: Sequence[str] = ()) -> TrainResult:
    """Train (or resume) one run into `cfg.out`; returns where the checkpoints are and what happened.

    Refuses (UserError) a folder that already holds another run unless `overwrite`;
    a start that fails before its first checkpoint leaves no folder behind. `notes`
    (what configuration decided for the user) go to stderr once the run folder is accepted.
    """
    cfg = cfg.validate()
    if resume is not None:
        locate_resume(resume)  # "no such run" before minutes of data loading
    previous_threads = torch.get_num_threads()
    info = init_distributed(device_kind(cfg.device))
    try:
        with RunFolder(Path(cfg.out), overwrite=overwrite, resume=resume, is_main=info.is_main):
            for line in notes if info.is_main else ():
                print(f"road-seg train: {line}", file=sys.stderr, flush=True)
            trainer = Trainer(cfg, command=command, dist_info=info)
            if resume:
                trainer.resume(resume)
            result = trainer.fit()
        if result.is_main:
            print(_closing_line(result), file=sys.stderr, flush=True)
        return result
    finally:
        torch.set_num_threads(previous_threads)
        shutdown(info)


def _closing_line(result: TrainResult) -> str:
    """The one line a user needs at the end: which epoch won, its score, where its checkpoint is."""
    if result.best_miou >= 0:
        return (f"best epoch {result.best_epoch}: val mIoU {result.best_miou:.4f}, checkpoint {result.best_path} "
                f"(latest: {result.last_path})")
    return f"no validation split: best.pt is the last epoch ({result.best_epoch}), checkpoint {result.best_path}"
