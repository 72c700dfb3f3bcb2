"""Your own recordings in a simple folder layout (`build_dataset("folder", root, ...)`).

Layout::

    <root>/
      rgb/<name>.png|.jpg|.jpeg            required  left colour image, 8-bit (grey is accepted)
      labels/<name>.png                    required  class ids, 8- or 16-bit, one channel. By default the node's
                                                     classes: 0 background, 1 drivable, 2 positive_obstacle,
                                                     3 negative_obstacle, 255 ignore (other ids are ignored too).
                                                     Option `label_map` maps your own ids to node classes, a set
                                                     where your labels cannot decide, e.g.
                                                     {0: [background, drivable], 1: negative_obstacle, 2: []}
                                                     ([] = ignore).
      depth/<name>.png|.tif|.tiff|.npy     optional  registered to rgb. 16-bit PNG/TIFF: millimetres (ZED/RealSense
                                                     convention; option depth_png_scale=0.001 m per count);
                                                     float32 TIFF/.npy: metres. 0, NaN, inf = no measurement.
                                                     8-bit depth is refused (it has no metric scale).
      disparity/<name>.png|.tif|.tiff|.npy optional  16-bit PNG/TIFF: pixels * 256 (KITTI convention; option
                                                     disparity_png_scale=1/256); float32: pixels. Pixels of the
                                                     disparity map's own width (rescaled to the model input
                                                     width on loading). 0 = none.
      thermal/<name>.png|.tif|.tiff|.npy   optional  registered to rgb (same field of view, any resolution).
                                                     8-bit: v -> max(v, 1) / 255. 16-bit: raw counts, normalised
                                                     per frame like the node (option `thermal`: a ThermalConfig
                                                     or its dict, default percentile 1..99). float: already in
                                                     [0, 1] (0 = no data).
      <split>.txt                          one <name> per line, without extension (train.txt, val.txt, ...).
                                           Split "all" without an all.txt means every image in rgb/.
      conditions.txt                       optional "<name> <condition>" lines (e.g. day / night / rain),
                                           reported in each sample's meta for per-condition metrics.

Units delivered to the model: rgb 0..255, depth metres (sanitised to
[min_depth_m, max_depth_m] like the node's preprocessing, default 0.3..40 m),
disparity pixels at the model input width, thermal (0, 1].

A modality you request that has no folder is an error naming the folder; pass
``ignore_modalities=[...]`` to train that modality as "missing" (zeros) instead.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from road_seg_core import depth as depth_ops
from road_seg_core.thermal import ThermalConfig, normalize_thermal
from road_seg_training import label_sets
from road_seg_training.datasets.base import (METRES, PIXELS, RGB_0_255, UNIT_INTERVAL, DatasetError, RawSample,
                                    SegmentationDataset, bgr_to_rgb, imread, read_single_channel, read_split,
                                    require_folders, require_root, thermal_from_uint8)

#: Accepted file extensions per folder, in order of preference.
EXTENSIONS = {"rgb": (".png", ".jpg", ".jpeg"), "labels": (".png",),
              "depth": (".png", ".tif", ".tiff", ".npy"), "disparity": (".png", ".tif", ".tiff", ".npy"),
              "thermal": (".png", ".tif", ".tiff", ".npy")}
_LAYOUT = "rgb/, labels/, optional depth/ disparity/ thermal/, and <split>.txt files"


def _index_folder(folder: Path, extensions: Sequence[str]) -> dict[str, str]:
    """name -> file name for the accepted extensions (the first in `extensions` wins)."""
    found: dict[str, str] = {}
    rank = {ext: i for i, ext in enumerate(extensions)}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            ext = ext.lower()
            if ext in rank and (stem not in found or rank[ext] < rank[os.path.splitext(found[stem])[1].lower()]):
                found[stem] = entry.name
    return found


def _read_array(path: Path, what: str) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {what} array {path}: {exc}") from None
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise DatasetError(f"{path}: expected a 2-D {what} array, got shape {array.shape}")
        return array
    return read_single_channel(path, what)


class FolderDataset(SegmentationDataset):
    """User data in the layout of the module docstring."""

    name = "folder"
    units = {"rgb": RGB_0_255, "depth": METRES, "disparity": PIXELS, "thermal": UNIT_INTERVAL}
    eval_space = label_sets.NODE_SPACE
    OPTIONS = ("augment_config", "modality_dropout", "dropout_modalities", "ignore_modalities", "label_map",
               "thermal", "depth_png_scale", "disparity_png_scale", "min_depth_m", "max_depth_m")

    @classmethod
    def declared_units(cls, root: str | Path | None) -> dict[str, str]:
        """The modalities whose sub-folders exist under `root`."""
        root_path = require_root(root, cls.name)
        return {m: cls.units[m] for m in ("rgb", "depth", "disparity", "thermal") if (root_path / m).is_dir()}

    def __init__(self, root: str | Path | None, split: str, modalities: Sequence[str], input_size: Sequence[int],
                 augment: bool = False, *, label_map: Mapping | None = None,
                 thermal: ThermalConfig | Mapping[str, Any] | None = None, depth_png_scale: float = 0.001,
                 disparity_png_scale: float = 1.0 / 256.0, min_depth_m: float = 0.3, max_depth_m: float = 40.0,
                 ignore_modalities: Sequence[str] = (), **options: Any) -> None:
        root_path = require_root(root, self.name)
        require_folders(root_path, ("rgb", "labels"), self.name, _LAYOUT)
        # Which modalities this folder provides is decided by its sub-folders.
        self.provides = tuple(m for m in ("rgb", "depth", "disparity", "thermal") if (root_path / m).is_dir())
        super().__init__(modalities, input_size, augment, ignore_modalities=ignore_modalities, **options)
        missing = [m for m in self.modalities if m not in self.provides and m not in ignore_modalities]
        if missing:
            raise DatasetError(f"folder layout: missing folder '{missing[0]}/' in {root_path} for requested modality "
                               f"{missing[0]!r} (pass ignore_modalities=[{missing[0]!r}] to feed it as zeros)")
        self.root = root_path
        self.split = split
        try:
            self.label_lut = label_sets.SINGLE if label_map is None else label_sets.label_map_lut(label_map)
            self.thermal_config = thermal if isinstance(thermal, ThermalConfig) else ThermalConfig(**(thermal or {}))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"folder dataset option: {exc}") from None
        if not (depth_png_scale > 0 and disparity_png_scale > 0 and 0 <= min_depth_m < max_depth_m):
            raise DatasetError("need depth_png_scale > 0, disparity_png_scale > 0 and 0 <= min_depth_m < max_depth_m")
        self.depth_png_scale = float(depth_png_scale)
        self.disparity_png_scale = float(disparity_png_scale)
        self.depth_range = (float(min_depth_m), float(max_depth_m))

        self.files = {kind: _index_folder(root_path / kind, EXTENSIONS[kind]) for kind in ("labels", *self.active)}
        if split == "all" and not (root_path / "all.txt").is_file():
            self.ids = sorted(self.files["rgb"] if "rgb" in self.files else _index_folder(root_path / "rgb",
                                                                                          EXTENSIONS["rgb"]))
        else:
            self.ids = read_split(root_path, split, self.name)
        for kind, index in self.files.items():
            absent = [i for i in self.ids if i not in index]
            if absent:
                more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
                raise DatasetError(f"folder layout: missing file '{kind}/{absent[0]}"
                                   f"{{{','.join(EXTENSIONS[kind])}}}'{more} in {root_path}")
        self.conditions = self._read_conditions(root_path / "conditions.txt")

    @staticmethod
    def _read_conditions(path: Path) -> dict[str, str]:
        if not path.is_file():
            return {}
        conditions = {}
        for line in path.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) == 2:
                conditions[parts[0]] = parts[1]
            elif parts:
                raise DatasetError(f"{path}: expected '<name> <condition>' lines, got {line!r}")
        return conditions

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / self.files[kind][name]

    def read(self, index: int) -> RawSample:
        name = self.ids[index]
        maps: dict[str, np.ndarray] = {}
        for modality in self.active:
            path = self._path(modality, name)
            if modality == "rgb":
                maps["rgb"] = bgr_to_rgb(imread(path), path)
            elif modality == "depth":
                maps["depth"] = self._depth(path)
            elif modality == "disparity":
                maps["disparity"] = self._disparity(path)
            else:
                maps["thermal"] = self._thermal(path)
        raw_labels = read_single_channel(self._path("labels", name), "label")
        maps["target"] = label_sets.apply_lut(self.label_lut, raw_labels)
        return RawSample(maps=maps, id=name, condition=self.conditions.get(name, ""))

    def _depth(self, path: Path) -> np.ndarray:
        values = _read_array(path, "depth")
        if values.dtype == np.uint16:
            values = values.astype(np.float32) * np.float32(self.depth_png_scale)
        elif values.dtype.kind != "f":
            raise DatasetError(f"{path}: depth must be 16-bit millimetres or float metres, got {values.dtype}")
        return depth_ops.sanitize(values, *self.depth_range)[0]

    def _disparity(self, path: Path) -> np.ndarray:
        values = _read_array(path, "disparity")
        if values.dtype == np.uint16:
            values = values.astype(np.float32) * np.float32(self.disparity_png_scale)
        elif values.dtype.kind != "f":
            raise DatasetError(f"{path}: disparity must be 16-bit (pixels * 256) or float pixels, got {values.dtype}")
        return depth_ops.sanitize(values, 1e-3, np.inf)[0]

    def _thermal(self, path: Path) -> np.ndarray:
        values = _read_array(path, "thermal")
        if values.dtype == np.uint8:
            return thermal_from_uint8(values)
        if values.dtype == np.uint16:
            return normalize_thermal(values, self.thermal_config)
        if values.dtype.kind == "f":
            return np.clip(np.nan_to_num(values.astype(np.float32), nan=0.0), 0.0, 1.0)
        raise DatasetError(f"{path}: thermal must be 8-bit, 16-bit raw counts or float in [0, 1], got {values.dtype}")
