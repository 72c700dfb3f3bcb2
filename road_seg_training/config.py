"""Training configuration: one dataclass tree, read from YAML and overridden from the command line.

A run is fully described by its `TrainConfig` (it is copied into the output
folder as ``config.yaml`` and into every checkpoint's provenance), so any run
can be repeated from its files alone. Unknown keys are errors everywhere: a
typo such as ``optim.learning_rate`` must fail, not silently train with the
default.

Example (road_seg_training/configs/npo.yaml)::

    model: {modalities: [rgb, depth], encoder: resnet18, input_size: [288, 512]}
    data:
      datasets:
        - {name: npo, root: /data/NPO, options: {class_order: [background, negative_obstacle, positive_obstacle]}}
    optim: {name: sgd, lr: 0.01}
    schedule: {epochs: 100, warmup_iters: 500}

Overrides use dotted paths and YAML values: ``--set optim.lr=0.005 --set model.modalities=[rgb,thermal]``;
list items are addressed by index: ``--set data.datasets.0.root=/data/NPO``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from road_seg_core.errors import UserError
from road_seg_core.models.config import ModelConfig
from road_seg_training.datasets import DATASET_NAMES



class ConfigError(UserError, ValueError):
    """A training config (file, --set override or flag) is invalid; the message lists every problem by key."""


OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DatasetSpec:
    """One dataset of a (possibly mixed) training run.

    `train_split` / `val_split` are split names as the dataset's loader knows
    them (e.g. NPO ``validation``, DRNO ``val``); `val_split: null` skips
    validation on this dataset. `weight` is its share of each epoch's samples
    in mixed training; ``null`` means proportional to its size. `options` go
    to the dataset's builder unchanged (e.g. NPO ``class_order``, synthetic
    ``frames``/``seed``).
    """

    name: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    weight: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Options that apply to the validation split only (merged over `options`), e.g. other synthetic seeds.
    val_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> list[str]:
        problems = []
        if self.name not in DATASET_NAMES:
            problems.append(f"unknown dataset {self.name!r}; known: {', '.join(DATASET_NAMES)}")
        if self.name != "synthetic" and not self.root:
            problems.append(f"dataset {self.name!r} needs a root folder (data.datasets[].root or --root)")
        if self.weight is not None and not self.weight > 0:
            problems.append(f"dataset {self.name!r}: weight must be > 0 or null, got {self.weight}")
        return problems


@dataclass
class DataConfig:
    """What the model sees: datasets, augmentation and simulated sensor failures."""

    datasets: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec()])
    augment: bool = True
    #: Probability, per training sample and per modality in `dropout_modalities`, that the modality is fed as
    #: zeros (a failed sensor). At least one modality with data is always kept.
    modality_dropout: float = 0.0
    #: Modalities that may be dropped; empty = the dataset's default (every modality it has except rgb).
    dropout_modalities: list[str] = field(default_factory=list)
    num_workers: int = 0
    #: Validate every N epochs (and always after the last one).
    val_every: int = 1

    def validate(self) -> list[str]:
        problems = []
        if not self.datasets:
            problems.append("data.datasets is empty")
        for spec in self.datasets:
            problems.extend(spec.validate())
        if not 0.0 <= self.modality_dropout < 1.0:
            problems.append(f"data.modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.num_workers < 0:
            problems.append(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.val_every < 1:
            problems.append(f"data.val_every must be >= 1, got {self.val_every}")
        return problems


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD momentum; AdamW uses it as beta1
    nesterov: bool = False
    #: Clip the gradient norm to this value (0 = off); helps the first steps of from-scratch training.
    grad_clip: float = 0.0

    def validate(self) -> list[str]:
        problems = []
        if self.name not in OPTIMIZERS:
            problems.append(f"unknown optimizer {self.name!r}; known: {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            problems.append(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            problems.append(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if self.grad_clip < 0:
            problems.append(f"optim.grad_clip must be >= 0, got {self.grad_clip}")
        return problems


@dataclass
class ScheduleConfig:
    """Poly learning-rate decay, ``lr * (1 - t/T) ** power``, after a linear warm-up from ``lr * warmup_ratio``."""

    epochs: int = 50
    warmup_iters: int = 100
    warmup_ratio: float = 0.1
    power: float = 0.9
    min_lr: float = 0.0
    #: Optimiser steps per epoch cap (0 = the whole epoch); handy for budgeted runs on large datasets.
    max_steps_per_epoch: int = 0

    def validate(self) -> list[str]:
        problems = []
        if self.epochs < 1:
            problems.append(f"schedule.epochs must be >= 1, got {self.epochs}")
        if self.warmup_iters < 0:
            problems.append(f"schedule.warmup_iters must be >= 0, got {self.warmup_iters}")
        if not 0 < self.warmup_ratio <= 1:
            problems.append(f"schedule.warmup_ratio must be in (0, 1], got {self.warmup_ratio}")
        if self.power <= 0:
            problems.append(f"schedule.power must be > 0, got {self.power}")
        if self.min_lr < 0:
            problems.append(f"schedule.min_lr must be >= 0, got {self.min_lr}")
        if self.max_steps_per_epoch < 0:
            problems.append(f"schedule.max_steps_per_epoch must be >= 0, got {self.max_steps_per_epoch}")
        return problems


@dataclass
class LogConfig:
    tensorboard: bool = True
    #: Log the training loss every N optimiser steps.
    every_steps: int = 10
    #: Validation overlays written to TensorBoard per validation.
    overlays: int = 4
    progress: bool = True  # tqdm bars (stderr)

    def validate(self) -> list[str]:
        problems = []
        if self.every_steps < 1:
            problems.append(f"log.every_steps must be >= 1, got {self.every_steps}")
        if self.overlays < 0:
            problems.append(f"log.overlays must be >= 0, got {self.overlays}")
        return problems


@dataclass
class TrainConfig:
    """A complete training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    batch_size: int = 8  # per process (per GPU under torchrun)
    grad_accum: int = 1  # optimiser step every N batches: effective batch = batch_size * grad_accum * world size
    #: Per-class loss weights in the node's class order (background, drivable, positive, negative obstacle);
    #: empty = unweighted. Rare classes (negative obstacles are ~0.2 % of DRNO pixels) need weights > 1.
    class_weights: list[float] = field(default_factory=list)
    #: Focal term (1 - p_allowed) ** gamma on each pixel's loss (0 = plain cross-entropy): easy road pixels
    #: stop drowning the few hard ones (pothole rims, distant cones).
    focal_gamma: float = 0.0
    #: Hard-pixel mining: average the loss over only this share of each batch's labelled pixels, the ones with
    #: the largest weighted loss (1 = all pixels).
    hard_pixel_fraction: float = 1.0
    #: Warm start: a road_seg checkpoint whose weights initialise every tensor of the same name and shape
    #: (a new modality, a new input size or new fusion gates start fresh, or see init_streams). "" = none.
    init_from: str = ""
    #: Warm start of a new modality's stream from another modality's stream of `init_from`, e.g. {height: depth}.
    init_streams: dict[str, str] = field(default_factory=dict)
    amp: bool = True  # mixed precision; CUDA only (ignored on CPU)
    #: BatchNorm running-statistics momentum while training (null keeps the backbone's). torchvision's MobileNetV3
    #: uses 0.01, whose running statistics need thousands of steps to settle: a short run would validate (and
    #: ship) a model whose eval-mode normalisation is still near its initial values.
    bn_momentum: float | None = 0.1
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    #: CPU intra-op threads for this run (0 = torch's default). On a small shared CPU 1 thread can be several
    #: times faster than oversubscribed cores.
    num_threads: int = 0
    out: str = "runs/train"

    def validate(self) -> "TrainConfig":
        """Raise one ValueError listing every problem."""
        problems: list[str] = []
        try:
            self.model.validate()
        except ValueError as exc:
            problems.append(str(exc))
        problems += self.data.validate() + self.optim.validate() + self.schedule.validate() + self.log.validate()
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.grad_accum < 1:
            problems.append(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.class_weights and (len(self.class_weights) != self.model.num_classes
                                   or any(not w > 0 for w in self.class_weights)):
            problems.append(f"class_weights needs {self.model.num_classes} positive values "
                            f"({', '.join(self.model.class_names)}), got {self.class_weights}")
        if not self.focal_gamma >= 0:
            problems.append(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        if not 0 < self.hard_pixel_fraction <= 1:
            problems.append(f"hard_pixel_fraction must be in (0, 1], got {self.hard_pixel_fraction}")
        stray = sorted(set(self.init_streams) - set(self.model.modalities))
        if stray:
            problems.append(f"init_streams names {stray}, which are not model modalities {list(self.model.modalities)}")
        if self.init_streams and not self.init_from:
            problems.append("init_streams needs init_from (the checkpoint whose streams it copies)")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            problems.append(f"bn_momentum must be in (0, 1] or null, got {self.bn_momentum}")
        if self.num_threads < 0:
            problems.append(f"num_threads must be >= 0, got {self.num_threads}")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES}, got {self.device!r}")
        unknown = sorted(set(self.data.dropout_modalities) - set(self.model.modalities))
        if unknown:
            problems.append(f"data.dropout_modalities {unknown} are not model modalities {list(self.model.modalities)}")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        return self

    # -- (de)serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able dict that `from_dict` turns back into an equal config."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, ModelConfig) else _plain(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        return _build(cls, data, "").validate()

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> "TrainConfig":
        """Load a YAML file and apply ``key.path=value`` overrides before validating."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"training config {path} not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"training config {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"training config {path} must be a mapping at the top level")
        return cls.from_dict(apply_overrides(data, overrides))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted paths in a nested dict (``optim.lr=0.01``, ``data.datasets.0.root=/x``); values are YAML."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value")
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, parts[: i + 1], create=True)
        last = parts[-1]
        value = yaml.safe_load(raw) if raw.strip() else None
        if isinstance(node, list):
            node[_index(node, last, parts)] = value
        else:
            node[last] = value
    return data


def _child(node: Any, part: str, path: list[str], create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"override path {'.'.join(path)}: {'.'.join(path[:-1])} is not a mapping")
    if node.get(part) is None and create:
        node[part] = [{}] if part == "datasets" else {}
    return node[part]


def _index(node: list, part: str, path: Sequence[str]) -> int:
    try:
        index = int(part)
        node[index]
    except (ValueError, IndexError):
        raise ConfigError(f"override path {'.'.join(path)}: {part!r} is not an index of a {len(node)}-item list") \
            from None
    return index


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Dataclass from a nested mapping with typo-proof keys and light type coercion (YAML ints for floats)."""
    if cls is ModelConfig:
        try:
            return ModelConfig.from_dict(data or {})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where or 'model'}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys {[f'{where}.{k}'.lstrip('.') for k in unknown]}; "
                         f"known at {where or 'top level'}: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}".lstrip("."))
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}.{i}") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept any text float() understands.
        try:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    return value
