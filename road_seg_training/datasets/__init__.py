"""Training datasets: public releases (NPO, DRNO, MFNet), synthetic scenes and your own folders.

`build_dataset` returns a torch Dataset whose samples all look alike::

    {"inputs": {modality: float32 (C, H, W)},   # every requested modality; zeros where the dataset lacks it
     "target": uint8 (H, W),                    # allowed-class bitmask (road_seg_training.label_sets), 0 = ignore
     "labels": uint8 (H, W),                    # node labels where the set is one class, 255 elsewhere
     "meta":   {"dataset": str, "id": str, "condition": str}}

so datasets mix with `build_mixed`. Each dataset delivers a modality in its
own units (`dataset.units`; e.g. NPO depth is relative 0..255, synthetic depth
is metres) and `dataset.suggested_norm_scales()` gives the matching
`ModalityNorm.scale`; `build_mixed` refuses to mix units of one modality.
`dataset.eval_space` is the class space the dataset can be judged in
(`road_seg_training.label_sets.EvalSpace`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import ConcatDataset

from road_seg_training.datasets.base import SUGGESTED_SCALES, DatasetError, SegmentationDataset
from road_seg_training.datasets.collate import make_collate
from road_seg_training.datasets.folder import FolderDataset
from road_seg_training.datasets.mfnet import MfnetDataset
from road_seg_training.datasets.npo import DrnoDataset, NpoDataset
from road_seg_training.datasets.synthetic import SyntheticDataset

__all__ = ["DATASETS", "DATASET_NAMES", "DatasetError", "MixedDataset", "SUGGESTED_SCALES", "SegmentationDataset", "build_dataset",
           "build_mixed", "dataset_options", "declared_units", "detect_layout", "make_collate"]

DATASETS: dict[str, type[SegmentationDataset]] = {
    "npo": NpoDataset,
    "drno": DrnoDataset,
    "mfnet": MfnetDataset,
    "synthetic": SyntheticDataset,
    "folder": FolderDataset,
}
#: The one list of dataset names (config validation, CLI choices, help texts).
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def detect_layout(root: str | Path) -> str:
    """Name of the dataset layout found at `root` ("npo", "drno", "mfnet" or "folder")."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"root folder {path} does not exist")
    has = lambda name: (path / name).exists()  # noqa: E731
    if has("left") and has("labels"):
        if has("validation.txt"):
            return "npo"
        if has("val.txt"):
            return "drno"
        raise DatasetError(f"{path} has NPO/DRNO folders but neither validation.txt (NPO) nor val.txt (DRNO)")
    if has("images") and has("labels"):
        return "mfnet"
    if has("rgb") and has("labels"):
        return "folder"
    entries = sorted(p.name for p in path.iterdir())[:12]
    raise DatasetError(f"unknown dataset layout in {path}: expected left/+labels/ (NPO, DRNO), images/+labels/ "
                       f"(MFNet) or rgb/+labels/ (folder); found {entries}")


def build_dataset(name: str, root: str | None, split: str, modalities: Sequence[str], input_size: Sequence[int],
                  augment: bool = False, **options: Any) -> SegmentationDataset:
    """Build a dataset by name (one of `DATASET_NAMES`, or "auto" to detect it from `root`).

    `options` are the dataset's own (`DATASETS[name].OPTIONS`; e.g. NPO
    ``class_order``, synthetic ``frames``/``seed``/``conditions``) plus the
    common ``augment_config``, ``modality_dropout`` (probability of zeroing each
    non-rgb modality of a sample), ``dropout_modalities`` and
    ``ignore_modalities`` (feed as zeros although present). Raises DatasetError
    for unknown names/options and layout problems.
    """
    name, cls = resolve_dataset(name, root)
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        raise DatasetError(f"unknown option(s) {unknown} for dataset {name!r}; accepted: {', '.join(cls.OPTIONS)}")
    return cls(root, split, modalities, input_size, augment, **options)


class MixedDataset(ConcatDataset):
    """Several datasets as one; all share the requested modalities and input size, with consistent units."""

    def __init__(self, datasets: Sequence[SegmentationDataset], allow_mixed_units: bool = False) -> None:
        datasets = list(datasets)
        if not datasets:
            raise DatasetError("build_mixed needs at least one dataset")
        first = datasets[0]
        for ds in datasets[1:]:
            if ds.modalities != first.modalities or ds.input_size != first.input_size:
                raise DatasetError(f"cannot mix {first.name} (modalities {first.modalities}, size {first.input_size}) "
                                   f"with {ds.name} (modalities {ds.modalities}, size {ds.input_size})")
        units: dict[str, tuple[str, str]] = {}
        for ds in datasets:
            for modality, unit in ds.units.items():
                seen = units.setdefault(modality, (unit, ds.name))
                if seen[0] != unit and not allow_mixed_units:
                    raise DatasetError(
                        f"cannot mix {modality!r} in {seen[0]} ({seen[1]}) with {unit} ({ds.name}): the model "
                        f"would see one sensor in two scales. Pass ignore_modalities=[{modality!r}] to one of them")
        super().__init__(datasets)
        self.modalities = first.modalities
        self.input_size = first.input_size
        #: modality -> unit over all member datasets (the first one's where mixing was allowed).
        self.units = {modality: unit for modality, (unit, _) in units.items()}

    def suggested_norm_scales(self) -> dict[str, float]:
        return {m: SUGGESTED_SCALES[u] for m, u in self.units.items()}

    def sample_weights(self, shares: Sequence[float | None] | None = None) -> list[float]:
        """Per-sample weights for `WeightedRandomSampler` giving dataset i the fraction `shares[i]` of draws.

        A share of None (or no `shares`) means "proportional to its size"; the
        shares are normalised to sum to 1.
        """
        sizes = [len(ds) for ds in self.datasets]
        total = sum(sizes)
        shares = list(shares) if shares is not None else [None] * len(sizes)
        if len(shares) != len(sizes):
            raise DatasetError(f"{len(shares)} shares for {len(sizes)} datasets")
        effective = [size / total if share is None else float(share) for share, size in zip(shares, sizes)]
        if any(s <= 0 for s in effective):
            raise DatasetError(f"dataset shares must be > 0, got {shares}")
        norm = sum(effective)
        weights: list[float] = []
        for share, size in zip(effective, sizes):
            weights.extend([share / norm / size] * size)
        return weights


def build_mixed(datasets: Sequence[SegmentationDataset], allow_mixed_units: bool = False) -> MixedDataset:
    """Concatenate datasets for mixed training (samples share keys; missing modalities are zeros)."""
    return MixedDataset(datasets, allow_mixed_units=allow_mixed_units)


def dataset_options(name: str) -> tuple[str, ...]:
    """Options `build_dataset(name, ...)` accepts (for CLI help and config validation)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name].OPTIONS


def resolve_dataset(name: str, root: str | None) -> tuple[str, type]:
    """The dataset's name and loader class ("auto": the layout detected under `root`)."""
    if name == "auto":
        if root is None:
            raise DatasetError("dataset 'auto' needs a root folder to detect the layout from")
        name = detect_layout(root)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or 'auto')")
    return name, DATASETS[name]


def declared_units(name: str, root: str | None) -> dict[str, str]:
    """modality -> unit of everything dataset `name` (at `root`) can deliver, before reading a frame."""
    return resolve_dataset(name, root)[1].declared_units(root)
