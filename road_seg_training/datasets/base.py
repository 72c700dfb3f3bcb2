"""What every dataset shares: sample format, units, resizing, augmentation, modality dropout, file checks.

A concrete dataset only lists its frames and reads one of them (`read`) into
a `RawSample` at file resolution, in model-input units; this base turns it into
the training sample:

``{"inputs": {modality: float32 (C, H, W)}, "target": uint8 (H, W) allowed-class
bitmask, "labels": uint8 (H, W) node labels (255 = ambiguous/ignored),
"meta": {"dataset", "id", "condition"}}``

Every requested modality is present in every sample; one the dataset lacks
(or that modality dropout removed) is all zeros, which the network reads as
"sensor missing". Hence samples of different datasets collate together and
`torch.utils.data.ConcatDataset` mixes them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from road_seg_core.errors import UserError
from road_seg_core.models.config import MODALITY_CHANNELS
from road_seg_training import label_sets
from road_seg_training.augment import AugmentConfig, Augmenter, resize_maps


class DatasetError(UserError, ValueError):
    """A dataset's files do not match its layout (names the missing folder/file) or an option is invalid."""


# -- units ------------------------------------------------------------------------------------------------------
#: Units a dataset can deliver a modality in. Models must be trained and run on one unit per modality.
RGB_0_255 = "rgb_0_255"
METRES = "metres"
PIXELS = "pixels_at_input_width"
RELATIVE_0_255 = "relative_0_255"
UNIT_INTERVAL = "unit_interval"
#: road_seg_core.road_plane.encode_height: metres above a datum 1 m below the road plane, 0 = none.
HEIGHT_ABOVE_DATUM = "metres_above_road_datum"

#: `ModalityNorm.scale` that brings each unit to about 0..1 (metres: 40 m range; pixels: 64 px at input width).
SUGGESTED_SCALES: dict[str, float] = {RGB_0_255: 255.0, METRES: 40.0, PIXELS: 64.0, RELATIVE_0_255: 255.0,
                                      UNIT_INTERVAL: 1.0, HEIGHT_ABOVE_DATUM: 1.0}


@dataclass
class RawSample:
    """One frame as read from disk, every map at file resolution, in model-input units.

    `maps` holds the modalities the dataset provides (rgb HxWx3 uint8 RGB,
    depth/disparity HxW float32 with 0 = none, thermal HxW float32 in (0, 1]
    with 0 = none) and "target" (HxW uint8 allowed-class bitmask).
    """

    maps: dict[str, np.ndarray]
    id: str
    condition: str = ""


class SegmentationDataset(Dataset):
    """Base of all training datasets (see module docstring for the sample format).

    Subclasses set `name`, `provides` (modalities it can read), `units`
    (modality -> unit constant), `disparity_in_pixels`, `eval_space`, fill
    `self.ids` and implement `read(index)`.
    """

    name: ClassVar[str] = ""
    provides: tuple[str, ...] = ()
    units: dict[str, str] = {}
    #: Disparity values are pixels (rescaled with the image width) rather than per-image relative values.
    disparity_in_pixels: bool = True
    eval_space: label_sets.EvalSpace = label_sets.NODE_SPACE
    #: Whether frames come from a root folder (all but generated datasets).
    needs_root: ClassVar[bool] = True

    def __init__(self, modalities: Sequence[str], input_size: Sequence[int], augment: bool = False, *,
                 augment_config: AugmentConfig | Mapping[str, Any] | None = None, modality_dropout: float = 0.0,
                 dropout_modalities: Sequence[str] | None = None, ignore_modalities: Sequence[str] = ()) -> None:
        self.modalities = check_modalities(modalities)
        if len(input_size) != 2 or min(int(v) for v in input_size) < 1:
            raise DatasetError(f"input_size must be (height, width), got {tuple(input_size)}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        ignored = set(check_modalities(ignore_modalities, allow_empty=True))
        #: Requested modalities this dataset actually fills (the rest are zeros).
        self.active = tuple(m for m in self.modalities if m in self.provides and m not in ignored)
        self.units = {m: type(self).units[m] for m in self.active}
        if not 0.0 <= modality_dropout < 1.0:
            raise DatasetError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.modality_dropout = float(modality_dropout)
        self.dropout_modalities = (tuple(m for m in self.active if m != "rgb") if dropout_modalities is None
                                   else check_modalities(dropout_modalities, allow_empty=True))
        self.augment = bool(augment)
        try:
            config = AugmentConfig.from_value(augment_config)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"augment_config: {exc}") from None
        self.augmenter = Augmenter(self.input_size, config) if self.augment else None
        self.ids: list[str] = []

    @classmethod
    def declared_units(cls, root: str | Path | None) -> dict[str, str]:
        """modality -> unit of every modality this dataset can deliver, known before reading any frame.

        A model configured from flags alone takes its inputs and normalisation from here;
        a dataset read from disk checks its root folder first.
        """
        if cls.needs_root:
            require_root(root, cls.name)
        return {m: cls.units[m] for m in cls.provides}

    # -- subclass interface ---------------------------------------------------------------------------------------
    def read(self, index: int) -> RawSample:
        raise NotImplementedError

    # -- sample assembly ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def suggested_norm_scales(self) -> dict[str, float]:
        """`ModalityNorm.scale` per active modality for this dataset's units (store it in the checkpoint)."""
        return {m: SUGGESTED_SCALES[u] for m, u in self.units.items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        raw = self.read(index % len(self))
        maps = resize_maps(raw.maps, self.input_size, self.disparity_in_pixels)
        rng = self._rng() if self.augment or self.modality_dropout > 0 else None
        if self.augmenter is not None:
            maps = self.augmenter(maps, rng, self.disparity_in_pixels)
        dropped = self._dropped(rng) if self.modality_dropout > 0 else set()
        target = np.ascontiguousarray(maps["target"], dtype=np.uint8)
        return {
            "inputs": {m: self._tensor(m, None if m in dropped else maps.get(m)) for m in self.modalities},
            "target": torch.from_numpy(target),
            "labels": torch.from_numpy(label_sets.eval_labels(target)),
            "meta": {"dataset": self.name, "id": raw.id, "condition": raw.condition},
        }

    @staticmethod
    def _rng() -> np.random.Generator:
        # Drawn from torch's generator: DataLoader seeds it differently per worker and per epoch, and
        # torch.manual_seed makes a run reproducible (numpy's global state would repeat across workers).
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def _dropped(self, rng: np.random.Generator) -> set[str]:
        candidates = [m for m in self.dropout_modalities if m in self.active]
        drop = {m for m, r in zip(candidates, rng.random(len(candidates))) if r < self.modality_dropout}
        if drop and drop >= set(self.active):  # a sample always keeps at least one modality with data
            drop.discard(candidates[int(rng.integers(len(candidates)))])
        return drop

    def _tensor(self, modality: str, image: np.ndarray | None) -> torch.Tensor:
        h, w = self.input_size
        if image is None:
            return torch.zeros((MODALITY_CHANNELS[modality], h, w), dtype=torch.float32)
        array = np.asarray(image, dtype=np.float32)
        array = array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
        return torch.from_numpy(np.ascontiguousarray(array))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} frames, modalities={self.modalities}, active={self.active}, "
                f"input_size={self.input_size}, augment={self.augment})")


def check_modalities(modalities: Iterable[str] | str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = [m for m in modalities.replace(" ", "").split(",") if m]
    modalities = tuple(str(m) for m in modalities)
    unknown = [m for m in modalities if m not in MODALITY_CHANNELS]
    if unknown:
        raise DatasetError(f"unknown modalities {unknown}; known: {', '.join(MODALITY_CHANNELS)}")
    if not modalities and not allow_empty:
        raise DatasetError("no modalities requested")
    return modalities


# -- files ------------------------------------------------------------------------------------------------------


def require_root(root: str | os.PathLike | None, dataset: str) -> Path:
    if root is None or str(root) == "":
        raise DatasetError(f"{dataset}: a root folder is required")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{dataset}: root folder {path} does not exist")
    return path


def require_folders(root: Path, folders: Iterable[str], dataset: str, layout: str) -> None:
    for folder in folders:
        if not (root / folder).is_dir():
            raise DatasetError(f"{dataset} layout: missing folder '{folder}/' in {root} (expected {layout})")


def read_split(root: Path, split: str, dataset: str, aliases: Mapping[str, str] | None = None) -> list[str]:
    """Frame ids listed in ``<root>/<split>.txt`` (one per line; blank lines, comments and extensions dropped)."""
    candidates = [split] + ([aliases[split]] if aliases and split in aliases else [])
    for name in candidates:
        path = root / f"{name}.txt"
        if path.is_file():
            ids = []
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    ids.append(os.path.splitext(os.path.basename(line))[0] if line.endswith((".png", ".jpg")) else line)
            if not ids:
                raise DatasetError(f"{dataset}: split file {path} lists no frames")
            return ids
    available = sorted(p.stem for p in root.glob("*.txt"))
    raise DatasetError(f"{dataset} layout: missing split file '{split}.txt' in {root} "
                       f"(available splits: {', '.join(available) or 'none'})")


def require_files(root: Path, paths: Iterable[str], dataset: str) -> None:
    missing = [p for p in paths if not (root / p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{dataset} layout: missing file '{missing[0]}'{more} in {root}")


def imread(path: Path) -> np.ndarray:
    """The file's pixels unchanged (bit depth and channel count kept; colour in OpenCV's BGR order)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"cannot read image {path} (missing, unreadable or not an image)")
    return image


def read_single_channel(path: Path, what: str) -> np.ndarray:
    image = imread(path)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel {what} image, got shape {image.shape}")
    return image


def read_relative_png(path: Path, what: str) -> np.ndarray:
    """8- or 16-bit relative map as float32 on a 0..255 scale (16-bit / 257), so both bit depths match."""
    image = read_single_channel(path, what)
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * np.float32(255.0 / 65535.0)
    raise DatasetError(f"{path}: expected an 8- or 16-bit {what} image, got {image.dtype}")


def bgr_to_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit colour image, got {image.dtype}")
    return np.ascontiguousarray(image[..., 2::-1])


def thermal_from_uint8(values: np.ndarray) -> np.ndarray:
    """8-bit thermal -> (0, 1]: v -> max(v, 1) / 255, so 0 stays reserved for "no data"."""
    return np.maximum(values, 1).astype(np.float32) * np.float32(1.0 / 255.0)
