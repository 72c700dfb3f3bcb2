"""One configuration path for a training run: file, flags and ``--set`` overrides composed in a fixed order.

The order (each step sees the result of the previous ones):

1. the YAML file given by ``--config``, or the defaults of `TrainConfig`;
2. the dedicated flags: ``--dataset``/``--root`` (``--dataset`` replaces
   ``data.datasets`` with that one dataset), ``--epochs``, ``--out``,
   ``--batch-size``, ``--device``;
3. every ``--set key.path=value``, in the order given. A ``--set`` of a value a
   flag of step 2 also sets is refused by name (two answers to one question),
   so is an unknown key; ``--set data.datasets.0.options.frames=48`` refines the
   dataset ``--dataset`` chose;
4. when ``--dataset`` chose the data, the model takes its inputs from what that
   dataset's loader declares: ``model.modalities`` become the default inputs the
   dataset has (NPO: rgb and depth, no thermal camera) and each input's
   ``model.norms.<m>.scale`` matches the dataset's units (NPO's relative
   0..255 depth: 255), unless the file or a ``--set`` gave them.

Nothing is dropped silently: what step 4 decides is printed on stderr.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from road_seg_core.models.config import DEFAULT_NORMS, ModelConfig
from road_seg_training.config import ConfigError, TrainConfig, apply_overrides
from road_seg_training.datasets import SUGGESTED_SCALES, declared_units

#: flag -> the config path it sets; a --set of that path or of a parent of it conflicts with the flag.
FLAG_PATHS: dict[str, tuple[str, ...]] = {
    "--dataset": ("data.datasets.0.name",),
    "--root": ("data.datasets.0.root",),
    "--epochs": ("schedule.epochs",),
    "--out": ("out",),
    "--batch-size": ("batch_size",),
    "--device": ("device",),
}


@dataclass
class TrainRequest:
    """What the user asked for on the command line (None: not given)."""

    config: Path | None = None
    overrides: list[str] = field(default_factory=list)
    dataset: str | None = None
    root: str | None = None
    epochs: int | None = None
    out: str | None = None
    batch_size: int | None = None
    device: str | None = None

    def flags(self) -> dict[str, Any]:
        given = {"--dataset": self.dataset, "--root": self.root, "--epochs": self.epochs, "--out": self.out,
                 "--batch-size": self.batch_size, "--device": self.device}
        return {flag: value for flag, value in given.items() if value is not None}


def resolve_config(request: TrainRequest, log: Callable[[str], None] | None = None) -> TrainConfig:
    """The run's validated `TrainConfig` (module docstring: the order); ConfigError names what is wrong."""
    log = log or (lambda line: print(f"road-seg train: {line}", file=sys.stderr))
    data = _load(request.config)
    flags = request.flags()
    _apply_flags(data, request)
    for item in request.overrides:
        key = item.partition("=")[0].strip()
        for flag, paths in FLAG_PATHS.items():
            if flag in flags and any(path == key or path.startswith(key + ".") for path in paths):
                raise ConfigError(f"--set {item} conflicts with {flag} {flags[flag]}: give one of them")
        apply_overrides(data, [item])
    if request.dataset is not None:
        _inputs_from_dataset(data, request.dataset, request.root, log)
    return TrainConfig.from_dict(data)


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path}: is a folder, not a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: must be a mapping at the top level")
    return data


def _apply_flags(data: dict[str, Any], request: TrainRequest) -> None:
    section = data.setdefault("data", {})
    if not isinstance(section, dict):
        raise ConfigError(f"data must be a mapping, got {section!r}")
    if request.dataset is not None:
        section["datasets"] = [{"name": request.dataset, "root": request.root}]
    elif request.root is not None:
        datasets = section.get("datasets")
        if datasets is None:
            section["datasets"] = datasets = [{}]
        if not isinstance(datasets, list) or len(datasets) != 1 or not isinstance(datasets[0], dict):
            raise ConfigError(f"--root {request.root} is ambiguous with {len(datasets)} datasets; use "
                              "--set data.datasets.N.root=DIR")
        datasets[0]["root"] = request.root
    if request.epochs is not None:
        data.setdefault("schedule", {})["epochs"] = request.epochs
    for key, value in (("out", request.out), ("batch_size", request.batch_size), ("device", request.device)):
        if value is not None:
            data[key] = value


def _inputs_from_dataset(data: dict[str, Any], name: str, root: str | None, log: Callable[[str], None]) -> None:
    """Step 4: model.modalities and norm scales from the dataset's declared units, where the user left them."""
    model = data.setdefault("model", {})
    if not isinstance(model, dict):
        raise ConfigError("model must be a mapping")
    units = declared_units(name, root)
    decided = []
    if "modalities" not in model:
        defaults = ModelConfig().modalities
        chosen = [m for m in defaults if m in units] or [m for m in units if m in DEFAULT_NORMS][:1]
        model["modalities"] = chosen
        if tuple(chosen) != tuple(defaults):
            decided.append(f"model.modalities [{', '.join(chosen)}] (the default inputs it has)")
    modalities = model["modalities"] if isinstance(model["modalities"], list) else [model["modalities"]]
    norms = model.setdefault("norms", {})
    if not isinstance(norms, dict):
        raise ConfigError("model.norms must be a mapping")
    for m in modalities:
        if m in norms or m not in units or m not in DEFAULT_NORMS:
            continue
        scale = SUGGESTED_SCALES[units[m]]
        if scale != DEFAULT_NORMS[m].scale:
            norms[m] = {**DEFAULT_NORMS[m].to_dict(), "scale": scale}
            decided.append(f"model.norms.{m}.scale {scale:g} ({units[m]})")
    if decided:
        log(f"--dataset {name} provides {', '.join(units)}: " + "; ".join(decided))
