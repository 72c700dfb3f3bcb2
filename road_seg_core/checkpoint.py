"""Self-describing model checkpoints: weights plus everything needed to use them.

A checkpoint is a plain dict written with `torch.save` and read with
``torch.load(weights_only=True)`` (no pickled classes, so loading a file cannot
execute code and does not depend on this package's class layout)::

    format          "road_seg_checkpoint"
    format_version  1
    config          ModelConfig.to_dict(): architecture, modalities, norms, input size, classes
    class_names     copy of config class names   } duplicated at the top level so tools can
    modalities      copy of config modalities    } show what a file is without parsing the
    input_size      [H, W]                       } config
    norms           per-modality normalisation   }
    state_dict      parameters and buffers
    provenance      created_utc, versions, git, dataset, epochs, metrics, command, ...

Every failure to use a file is a `CheckpointError` whose message names the file
and what is wrong with it, because that message is often all an operator sees
in a node's log.
"""
from __future__ import annotations

import datetime as _dt
import os
import pickle
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from road_seg_core.atomic import atomic_open
from road_seg_core.errors import UserError
from road_seg_core.models import ModelConfig
from road_seg_core.models.fusion_segnet import FusionSegNet, build_model

FORMAT = "road_seg_checkpoint"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

_REQUIRED_KEYS = ("format", "format_version", "config", "state_dict")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable, not ours, from an unsupported version, or does not fit its model."""

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"checkpoint {self.path}: {problem}" if path is not None else f"checkpoint: {problem}")


@dataclass
class Checkpoint:
    """A loaded checkpoint; `config` is validated and `state_dict` holds CPU tensors."""

    config: ModelConfig
    state_dict: dict[str, Tensor]
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    path: str | None = None


def default_provenance() -> dict[str, Any]:
    """What is always known at save time; callers add git, dataset, epochs, metrics, command."""
    import torchvision

    return {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
    }


def save_checkpoint(path: str | os.PathLike, model_or_state_dict: nn.Module | Mapping[str, Tensor],
                    config: ModelConfig, provenance: Mapping[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (temporary file in the same directory, then rename).

    The state dict is checked against `config` before anything is written, so a
    mismatch fails during training rather than when the car loads the file.
    `provenance` must hold plain values (str, numbers, bools, None, lists,
    dicts); numpy scalars and tuples are converted, anything else is a
    TypeError, because ``weights_only`` loading would refuse it later.
    """
    path = Path(path)
    config.validate()
    state = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    state_dict = {str(k): v.detach().to("cpu") for k, v in state.items()}
    problem = state_dict_mismatch(config, state_dict)
    if problem:
        raise CheckpointError(path, f"refusing to save: state_dict does not match the config: {problem}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "class_names": list(config.class_names),
        "modalities": list(config.modalities),
        "input_size": [int(v) for v in config.input_size],
        "norms": {name: norm.to_dict() for name, norm in config.norms.items()},
        "state_dict": state_dict,
        "provenance": _plain({**default_provenance(), **dict(provenance or {})}, "provenance"),
    }
    with atomic_open(path) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint's format, version and config without building a model.

    Weight keys and shapes are checked against the architecture by `load_model`
    (which builds the network anyway) and by `state_dict_mismatch`.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "file not found")
    if not path.is_file():
        raise CheckpointError(path, "is not a regular file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (zip, pickle, EOF, OS, runtime) for bad files
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and refused:
            raise CheckpointError(path, f"not a road_seg checkpoint: it pickles a Python object ({refused.group(1)}) "
                                        "that weights-only loading refuses, e.g. torch.save(model) instead of "
                                        "save_checkpoint") from exc
        raise CheckpointError(path, "cannot be read as a torch file: corrupt, truncated or not a checkpoint "
                                    f"({_load_failure(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, f"not a road_seg checkpoint ({_describe_foreign(payload)}); "
                                    "write checkpoints with road_seg_core.checkpoint.save_checkpoint")
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(path, f"incomplete road_seg checkpoint: missing {missing}")
    version = payload["format_version"]
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(path, f"unsupported format_version {version!r}; this road_seg reads "
                                    f"{', '.join(map(str, SUPPORTED_VERSIONS))} (a newer file needs a newer road_seg)")
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(path, f"invalid model config: {exc}") from exc
    state_dict = payload["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointError(path, "state_dict is not a mapping of names to tensors")
    provenance = payload.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise CheckpointError(path, f"provenance is a {type(provenance).__name__}, expected a dict")
    return Checkpoint(config=config, state_dict=state_dict, provenance=dict(provenance),
                      format_version=int(version), path=str(path))


def load_model(path_or_checkpoint: str | os.PathLike | Checkpoint,
               device: str | torch.device = "cpu") -> tuple[FusionSegNet, Checkpoint]:
    """Build the checkpoint's network, load its weights and return it in eval mode on `device`."""
    checkpoint = (path_or_checkpoint if isinstance(path_or_checkpoint, Checkpoint)
                  else load_checkpoint(path_or_checkpoint))
    config = checkpoint.config
    model = build_model(config, load_encoder_weights=False)
    problem = state_dict_mismatch(config, checkpoint.state_dict, reference=model)
    if problem:
        raise CheckpointError(checkpoint.path, f"state_dict does not match its config "
                                               f"({config.encoder}, {'+'.join(config.modalities)}): {problem}")
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model.to(device).eval(), checkpoint


def state_dict_mismatch(config: ModelConfig, state_dict: Mapping[str, Tensor],
                        reference: nn.Module | None = None) -> str | None:
    """Describe how `state_dict` differs from what `config` builds (missing/unexpected keys, shapes), or None.

    Without a `reference` model one is built on the meta device (shapes only, no parameter memory).
    """
    if reference is None:
        with torch.device("meta"):
            reference = build_model(config, load_encoder_weights=False)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys {_preview(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys {_preview(unexpected)}")
    if wrong:
        parts.append("wrong shapes " + _preview(
            [f"{k} {tuple(state_dict[k].shape)} != {expected[k]}" for k in wrong]))
    return "; ".join(parts) or None


def _plain(value: Any, where: str) -> Any:
    """Convert provenance to the plain types weights-only loading accepts, or raise naming the bad entry."""
    # Exact builtin types only: subclasses (torch's TorchVersion str, numpy.float64, IntEnum) are pickled
    # as their class and weights-only loading would refuse them.
    if value is None:
        return None
    for kind in (bool, str, int, float):
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return _plain(value.item(), where)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where} holds a {type(value).__name__}; use str, numbers, bools, None, lists or dicts")


def _describe_foreign(payload: Any) -> str:
    if isinstance(payload, dict):
        if payload and all(isinstance(v, Tensor) for v in payload.values()):
            return "it looks like a bare state_dict without config"
        return f"format key is {payload.get('format')!r}" if "format" in payload else "no 'format' key"
    return f"it holds a {type(payload).__name__}"


def _preview(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def _load_failure(exc: BaseException) -> str:
    """What torch.load found wrong, in one short phrase.

    A weights-only refusal opens with a paragraph advising `weights_only=False` (arbitrary code execution,
    and no help for a damaged file); the cause is the "WeightsUnpickler error" after it. Other errors
    (zip, EOF) keep their first sentence.
    """
    text = " ".join(str(exc).split())
    cause = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if cause:
        return f"{type(exc).__name__}: {cause.group(1).strip()}"
    first = re.split(r"(?<=\.) ", text, maxsplit=1)[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__

