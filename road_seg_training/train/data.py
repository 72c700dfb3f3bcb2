"""Training data of a run: dataset splits, the epoch sampler over mixed datasets and the loaders."""
from __future__ import annotations

import math
import sys
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from road_seg_core.errors import UserError
from road_seg_training.config import DatasetSpec, TrainConfig
from road_seg_training.datasets import build_dataset, build_mixed, make_collate
from road_seg_training.train.distributed import DistInfo
from road_seg_training.train.repro import seed_worker


def build_split(cfg: TrainConfig, spec: DatasetSpec, train: bool) -> Dataset:
    """One dataset split through the data side's builder, in the model's modalities and input size.

    Training splits get augmentation and modality dropout (a sensor failing);
    validation splits neither, plus their `val_options`.
    """
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
            raise UserError("all training datasets are empty")
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


def fit_batch_size(cfg: TrainConfig, samples_per_rank: int, dist_info: DistInfo) -> int:
    """The batch size an epoch can fill: `cfg.batch_size`, or fewer (logged) when the training set is smaller.

    An epoch drops its last incomplete batch, so a training set smaller than
    ``batch_size * grad_accum`` would have no step at all. Batch norm needs two
    samples per batch, so fewer than ``2 * grad_accum`` per process is refused.
    """
    needed = cfg.batch_size * cfg.grad_accum
    if samples_per_rank >= needed:
        return cfg.batch_size
    fitted = samples_per_rank // cfg.grad_accum
    if fitted < 2:
        per = f" per process ({dist_info.world_size} processes)" if dist_info.enabled else ""
        raise UserError(f"the training set has {samples_per_rank} samples{per}: too few for a batch of 2 "
                        f"with grad_accum={cfg.grad_accum}; add data or lower grad_accum")
    if dist_info.is_main:
        print(f"road-seg train: the training set has {samples_per_rank} samples, fewer than batch_size "
              f"{cfg.batch_size} x grad_accum {cfg.grad_accum}: training with batch_size {fitted}",
              file=sys.stderr, flush=True)
    return fitted


def build_train_loader(cfg: TrainConfig, train_sets: Sequence[Dataset], dist_info: DistInfo,
                       pin_memory: bool) -> tuple[DataLoader, MixedSampler]:
    """The epoch loader over the (mixed) training sets; `cfg.batch_size` must already fit (`fit_batch_size`)."""
    sampler = MixedSampler([len(d) for d in train_sets], [s.weight for s in cfg.data.datasets], cfg.seed,
                           dist_info.rank, dist_info.world_size)
    workers = cfg.data.num_workers
    loader = DataLoader(build_mixed(train_sets), batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=make_collate(cfg.model), drop_last=True, pin_memory=pin_memory,
                        worker_init_fn=seed_worker if workers else None, persistent_workers=False)
    return loader, sampler


def validation_sets(cfg: TrainConfig) -> list[tuple[str, Dataset]]:
    """(name, split) of every dataset with a validation split; a name used twice gets its index appended."""
    sets: list[tuple[str, Dataset]] = []
    for i, spec in enumerate(cfg.data.datasets):
        if spec.val_split:
            name = spec.name if sum(s.name == spec.name for s in cfg.data.datasets) == 1 else f"{spec.name}{i}"
            sets.append((name, build_split(cfg, spec, train=False)))
    return sets


def check_units(cfg: TrainConfig, datasets: Sequence[Dataset]) -> None:
    """Warn when a dataset delivers a modality in units the model's normalisation does not expect.

    NPO/DRNO depth PNGs are relative 0..255 values, not metres: a model trained
    on them must say so in its norms (scale 255), or the car, which feeds
    metres, would see inputs unlike anything it was trained on.
    """
    for ds in datasets:
        scales = getattr(ds, "suggested_norm_scales", lambda: {})()
        for modality, scale in scales.items():
            norm = cfg.model.norms.get(modality)
            if norm is not None and abs(norm.scale - scale) > 1e-6 * scale:
                print(f"warning: {getattr(ds, 'name', 'dataset')} delivers {modality} in units "
                      f"{ds.units.get(modality)!r} (suggested norm scale {scale:g}) but the model's "
                      f"norms.{modality}.scale is {norm.scale:g}; set model.norms.{modality}.scale",
                      file=sys.stderr)
