"""NPO (negative/positive obstacles) and DRNO (drivable road + negative obstacles): ZED stereo datasets.

Both public releases share one on-disk layout (only the validation split file differs)::

    <root>/
      train.txt  validation.txt (NPO) | val.txt (DRNO)  test.txt  [abnormal_test.txt normal_test.txt
                                                                   urban_test.txt rural_test.txt]
      left/left<id>.png            RGB, 8-bit, 3 channels
      depth/depth<id>.png          1 channel, 8- or 16-bit, relative depth, 0 = no depth
      disparity/disparity<id>.png  1 channel, 8- or 16-bit, relative disparity, 0 = none
      labels/label<id>.png         1 channel class ids

Units: depth and disparity are the releases' per-image normalised *relative*
values, not metres or pixels. They are delivered on a 0..255 scale whatever the
PNG bit depth (16-bit values / 257) as `RELATIVE_0_255`; resizing and zooming
do not rescale them (they are not pixel distances). A model trained on them
needs normalisation scale 255 and relative inputs at run time.

Classes: NPO 0 background, 1 negative obstacle, 2 positive obstacle by default
(`class_order` option, since the authors' scripts disagree); DRNO 0 unlabeled,
1 drivable road, 2 negative obstacle. See `road_seg_training.label_sets` for how they map
to the node's classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from road_seg_training import label_sets
from road_seg_training.datasets.base import (RELATIVE_0_255, RGB_0_255, DatasetError, RawSample, SegmentationDataset,
                                    bgr_to_rgb, imread, read_relative_png, read_single_channel, read_split,
                                    require_files, require_folders, require_root)

#: modality -> (folder, file name pattern)
_FILES = {"rgb": ("left", "left{id}.png"), "depth": ("depth", "depth{id}.png"),
          "disparity": ("disparity", "disparity{id}.png")}
_LABELS = ("labels", "label{id}.png")
_LAYOUT = "left/, depth/, disparity/, labels/ and <split>.txt files"
#: Test subsets of NPO whose name says the scene type; it becomes the sample's condition.
_CONDITION_SPLITS = ("abnormal_test", "normal_test", "urban_test", "rural_test")


class _StereoObstacleDataset(SegmentationDataset):
    provides = ("rgb", "depth", "disparity")
    units = {"rgb": RGB_0_255, "depth": RELATIVE_0_255, "disparity": RELATIVE_0_255}
    disparity_in_pixels = False
    split_aliases: dict[str, str] = {}
    OPTIONS = ("augment_config", "modality_dropout", "dropout_modalities", "ignore_modalities")

    def __init__(self, root: str | Path | None, split: str, modalities: Sequence[str], input_size: Sequence[int],
                 augment: bool = False, *, label_lut: np.ndarray, **options: Any) -> None:
        super().__init__(modalities, input_size, augment, **options)
        self.root = require_root(root, self.name)
        self.split = split
        self.label_lut = label_lut
        require_folders(self.root, [_LABELS[0]] + [_FILES[m][0] for m in self.active], self.name, _LAYOUT)
        self.ids = read_split(self.root, split, self.name, self.split_aliases)
        require_files(self.root, [self._relpath(kind, i) for i in self.ids
                                  for kind in ("labels", *self.active)], self.name)
        self.condition = split.replace("_test", "") if split in _CONDITION_SPLITS else ""

    @staticmethod
    def _relpath(kind: str, frame_id: str) -> str:
        folder, pattern = _LABELS if kind == "labels" else _FILES[kind]
        return f"{folder}/{pattern.format(id=frame_id)}"

    def read(self, index: int) -> RawSample:
        frame_id = self.ids[index]
        path = lambda kind: self.root / self._relpath(kind, frame_id)  # noqa: E731
        maps: dict[str, np.ndarray] = {}
        for modality in self.active:
            if modality == "rgb":
                maps["rgb"] = bgr_to_rgb(imread(path("rgb")), path("rgb"))
            else:
                maps[modality] = read_relative_png(path(modality), modality)
        raw_labels = read_single_channel(path("labels"), "label")
        maps["target"] = label_sets.apply_lut(self.label_lut, raw_labels)
        return RawSample(maps=maps, id=frame_id, condition=self.condition)


class NpoDataset(_StereoObstacleDataset):
    """NPO release; option `class_order`: NPO class names by label id (default background, negative, positive)."""

    name = "npo"
    split_aliases = {"val": "validation"}
    OPTIONS = _StereoObstacleDataset.OPTIONS + ("class_order",)

    def __init__(self, root, split, modalities, input_size, augment=False, *,
                 class_order: Sequence[str] | str | None = None, **options: Any) -> None:
        try:
            order = label_sets.npo_class_order(class_order)
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        self.class_order = order
        self.eval_space = label_sets.npo_space(order)
        super().__init__(root, split, modalities, input_size, augment, label_lut=label_sets.npo_lut(order), **options)


class DrnoDataset(_StereoObstacleDataset):
    """DRNO release: NPO's layout with ``val.txt``; classes 0 unlabeled, 1 drivable road, 2 negative obstacle."""

    name = "drno"
    split_aliases = {"validation": "val"}
    eval_space = label_sets.DRNO_SPACE

    def __init__(self, root, split, modalities, input_size, augment=False, **options: Any) -> None:
        super().__init__(root, split, modalities, input_size, augment, label_lut=label_sets.DRNO_LUT, **options)
