"""MFNet-style RGB-thermal dataset (MFNet release, as used by RTFNet and its successors).

Layout::

    <root>/
      train.txt  val.txt  test.txt  [test_day.txt  test_night.txt]   one <name> per line (e.g. 00001D)
      images/<name>.png   4 channels: R, G, B, thermal (8-bit each, thermal registered to the colour image)
      labels/<name>.png   1 channel: 0 unlabeled, 1 car, 2 person, 3 bike, 4 curve, 5 car_stop,
                          6 guardrail, 7 color_cone, 8 bump

Units: rgb 0..255; thermal 8-bit v -> max(v, 1) / 255 in (0, 1] (0 is reserved
for "no data" in the node's convention). No depth-like modality: requested
depth/disparity inputs are zeros. The condition is "day"/"night" from the
name's MFNet suffix (D/N).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from road_seg_training import label_sets
from road_seg_training.datasets.base import (RGB_0_255, UNIT_INTERVAL, DatasetError, RawSample, SegmentationDataset, imread,
                                    read_single_channel, read_split, require_files, require_folders, require_root,
                                    thermal_from_uint8)

_LAYOUT = "images/ (4-channel RGB+thermal PNGs), labels/ and <split>.txt files"
_CONDITIONS = {"D": "day", "N": "night"}


class MfnetDataset(SegmentationDataset):
    """MFNet release (see module docstring)."""

    name = "mfnet"
    provides = ("rgb", "thermal")
    units = {"rgb": RGB_0_255, "thermal": UNIT_INTERVAL}
    eval_space = label_sets.MFNET_SPACE
    OPTIONS = ("augment_config", "modality_dropout", "dropout_modalities", "ignore_modalities")

    def __init__(self, root: str | Path | None, split: str, modalities: Sequence[str], input_size: Sequence[int],
                 augment: bool = False, **options: Any) -> None:
        super().__init__(modalities, input_size, augment, **options)
        self.root = require_root(root, self.name)
        self.split = split
        require_folders(self.root, ("images", "labels"), self.name, _LAYOUT)
        self.ids = read_split(self.root, split, self.name, {"validation": "val"})
        require_files(self.root, [f"{folder}/{i}.png" for i in self.ids for folder in ("images", "labels")],
                      self.name)

    def read(self, index: int) -> RawSample:
        name = self.ids[index]
        path = self.root / "images" / f"{name}.png"
        image = imread(path)
        if image.ndim != 3 or image.shape[2] != 4 or image.dtype != np.uint8:
            raise DatasetError(f"{path}: expected an 8-bit 4-channel (RGB + thermal) image, "
                               f"got shape {image.shape} {image.dtype}")
        maps: dict[str, np.ndarray] = {}
        if "rgb" in self.active:
            maps["rgb"] = np.ascontiguousarray(image[..., 2::-1])  # OpenCV reads B, G, R, T
        if "thermal" in self.active:
            maps["thermal"] = thermal_from_uint8(image[..., 3])
        raw_labels = read_single_channel(self.root / "labels" / f"{name}.png", "label")
        maps["target"] = label_sets.apply_lut(label_sets.MFNET_LUT, raw_labels)
        return RawSample(maps=maps, id=name, condition=_CONDITIONS.get(name[-1:].upper(), ""))
