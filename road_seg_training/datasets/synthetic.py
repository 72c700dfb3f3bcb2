"""Synthetic driving scenes (`road_seg_core.synthetic`) as a training dataset.

Each sample is rendered from its seed and fed through the node's own
`Preprocessor`, so training sees exactly the tensors the car feeds the model
(same resizing, depth sanitising, thermal normalisation and, with
``depth_source="stereo"``, the same SGBM disparity). Labels are exact, one node
class per pixel.

Options:
  frames      number of scenes in the split (default 200)
  seed        base seed; split "train" uses seeds seed + i, "val"/"validation" seed + 1_000_000 + i,
              "test" seed + 2_000_000 + i, so splits never share a scene
  conditions  None (default: drawn per seed, 60 % day / 20 % night / 20 % fog) or a list cycled over the frames
  render_size (h, w) the scene is rendered at before preprocessing; default the ZED's 16:9 at twice the
              input width (360x640 for a 192x320 input), so a frame is stretched to the input exactly as the
              node stretches the car's 1280x720 images
  drive_share share of the frames taken from continuous drives (`SceneStream`, what sim_sensors and
              `road-seg sim` publish) instead of independent scenes (default 0): drives keep the ego lane clear
              and meet obstacles at every distance as the car approaches them
  drive_frames frames sampled per drive (default 24); drive d of a split uses stream seed
              split seed + 500_000 + d, so no training drive is the seed-0 drive that sim_sensors, the demo and
              `road-seg sim` play by default
  drive_stride stream frames (at 15 fps) between two samples of a drive (default 6, about 5 m at 12 m/s)
  depth_source "depth" (default), "disparity" (disparity computed from the rendered depth, as a ZED
              disparity topic) or "stereo" (SGBM on the rendered pair; slower, most realistic)
  preprocess  a PreprocessConfig or its dict (overrides depth_source when it sets one; `road_plane` takes the
              RoadPlaneConfig fields of the "height" input's plane fit)
  cache       keep preprocessed samples in memory (about 15 bytes per input pixel per frame)
  pothole_cover  0 (default) or the share of an input pixel that rendered pothole pixels must cover for the target
              to say pothole there (at most the labels' other classes yield, never ignore). Nearest resampling
              alone keeps one label per block of render pixels: a crack one or two render rows tall vanishes from
              the targets in some frames (19 of 90 thin potholes on six training drives at 576x1024 -> 320x512)
              and is dashed in the rest, while the colour input (area-resized) still shows it

Units: rgb 0..255, depth metres, disparity pixels at the input width, thermal (0, 1], height metres above a
datum 1 m below the road plane fitted to the depth (`road_seg_core.road_plane`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from road_seg_core import depth as depth_ops
from road_seg_core import labels as L
from road_seg_core import nearest
from road_seg_core import synthetic
from road_seg_core.preprocess import PreprocessConfig, Preprocessor
from road_seg_core.thermal import ThermalConfig
from road_seg_core.road_plane import RoadPlaneConfig
from road_seg_training import label_sets
from road_seg_training.datasets.base import (HEIGHT_ABOVE_DATUM, METRES, PIXELS, RGB_0_255, UNIT_INTERVAL,
                                             DatasetError, RawSample, SegmentationDataset)

SPLIT_SEED_OFFSETS = {"train": 0, "val": 1_000_000, "validation": 1_000_000, "test": 2_000_000}
#: Drive seeds sit this far above the split's scene seeds (see the `drive_frames` option).
DRIVE_SEED_OFFSET = 500_000
#: Aspect ratio of the ZED's HD720/HD1080 modes, which the default render size follows.
ZED_ASPECT = 16 / 9


def _preprocess_config(preprocess: PreprocessConfig | Mapping[str, Any] | None, depth_source: str) -> PreprocessConfig:
    if isinstance(preprocess, PreprocessConfig):
        return preprocess
    values = dict(preprocess or {})
    values.setdefault("depth_source", depth_source)
    if isinstance(values.get("thermal"), Mapping):
        values["thermal"] = ThermalConfig(**values["thermal"])
    if isinstance(values.get("sgbm"), Mapping):
        values["sgbm"] = depth_ops.SgbmConfig(**values["sgbm"])
    if isinstance(values.get("road_plane"), Mapping):
        values["road_plane"] = RoadPlaneConfig(**values["road_plane"])
    return PreprocessConfig(**values)


class SyntheticDataset(SegmentationDataset):
    """Rendered scenes (see module docstring); `root` is unused and may be None."""

    name = "synthetic"
    provides = ("rgb", "depth", "disparity", "thermal", "height")
    needs_root = False
    units = {"rgb": RGB_0_255, "depth": METRES, "disparity": PIXELS, "thermal": UNIT_INTERVAL,
             "height": HEIGHT_ABOVE_DATUM}
    eval_space = label_sets.NODE_SPACE
    OPTIONS = ("augment_config", "modality_dropout", "dropout_modalities", "ignore_modalities", "frames", "seed",
               "conditions", "render_size", "depth_source", "preprocess", "cache", "drive_share", "drive_frames",
               "drive_stride", "pothole_cover")

    def __init__(self, root: str | None, split: str, modalities: Sequence[str], input_size: Sequence[int],
                 augment: bool = False, *, frames: int = 200, seed: int = 0,
                 conditions: Sequence[str] | str | None = None, render_size: Sequence[int] | None = None,
                 depth_source: str = "depth", preprocess: PreprocessConfig | Mapping[str, Any] | None = None,
                 cache: bool = False, drive_share: float = 0.0, drive_frames: int = 24, drive_stride: int = 6,
                 pothole_cover: float = 0.0, **options: Any) -> None:
        super().__init__(modalities, input_size, augment, **options)
        if split not in SPLIT_SEED_OFFSETS:
            raise DatasetError(f"synthetic: unknown split {split!r}; known: {', '.join(SPLIT_SEED_OFFSETS)}")
        if int(frames) < 1:
            raise DatasetError(f"synthetic: frames must be >= 1, got {frames}")
        if isinstance(conditions, str):
            conditions = [c for c in conditions.replace(" ", "").split(",") if c]
        self.conditions = None if conditions is None else tuple(conditions)
        unknown = [c for c in self.conditions or () if c not in synthetic.CONDITIONS]
        if unknown or self.conditions == ():
            raise DatasetError(f"synthetic: conditions must be a non-empty list of {synthetic.CONDITIONS}, "
                               f"got {conditions}")
        if not 0.0 <= float(drive_share) <= 1.0 or int(drive_frames) < 1 or int(drive_stride) < 1:
            raise DatasetError(f"synthetic: need 0 <= drive_share <= 1, drive_frames >= 1, drive_stride >= 1; got "
                               f"{drive_share}, {drive_frames}, {drive_stride}")
        if not 0.0 <= float(pothole_cover) < 1.0:
            raise DatasetError(f"synthetic: pothole_cover must be 0 (off) to below 1, got {pothole_cover}")
        self.pothole_cover = float(pothole_cover)
        h, w = self.input_size
        if render_size is None:
            render_size = (2 * round(w * ZED_ASPECT ** -1), 2 * w)
        self.render_size = (int(render_size[0]), int(render_size[1]))
        try:
            config = _preprocess_config(preprocess, depth_source)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"synthetic: preprocess option: {exc}") from None
        self.preprocessor = Preprocessor(self.active, self.input_size, config)
        self.split = split
        self.base_seed = int(seed) + SPLIT_SEED_OFFSETS[split]
        self.drive_frames, self.drive_stride = int(drive_frames), int(drive_stride)
        self.num_scenes = int(frames) - int(round(int(frames) * float(drive_share)))
        self.ids = [str(self.base_seed + i) if i < self.num_scenes else "drive{}-{}".format(*self._drive_of(i))
                    for i in range(int(frames))]
        self._cache: dict[int, RawSample] | None = {} if cache else None

    def _drive_of(self, index: int) -> tuple[int, int]:
        """(stream seed, frame index in the drive) of drive sample `index`."""
        d, k = divmod(index - self.num_scenes, self.drive_frames)
        return self.base_seed + DRIVE_SEED_OFFSET + d, k * self.drive_stride

    def scene(self, index: int) -> synthetic.SyntheticScene:
        """The rendered scene behind sample `index` (also handy for visual checks)."""
        h, w = self.render_size
        if index < self.num_scenes:
            condition = None if self.conditions is None else self.conditions[index % len(self.conditions)]
            return synthetic.render_scene(self.base_seed + index, width=w, height=h, condition=condition)
        seed, frame_index = self._drive_of(index)
        drive = (index - self.num_scenes) // self.drive_frames
        conditions = synthetic.CONDITIONS if self.conditions is None else (
            self.conditions[drive % len(self.conditions)],)
        stream = synthetic.SceneStream(seed, width=w, height=h, conditions=conditions)
        stream.skip(frame_index)
        return next(stream)

    def read(self, index: int) -> RawSample:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        scene = self.scene(index)
        frame = scene.frame
        if self.preprocessor.config.depth_source == "disparity" and frame.disparity is None:
            # What a ZED disparity topic carries: fx * B / Z at the camera's resolution.
            disparity = depth_ops.depth_to_disparity(frame.depth, frame.intrinsics.fx, frame.intrinsics.baseline_m)
            frame = dataclasses.replace(frame, disparity=disparity)
        self.preprocessor.reset()  # independent samples: no road plane carried over from another frame
        inputs = self.preprocessor(frame)
        maps: dict[str, np.ndarray] = {}
        for modality, tensor in inputs.items():
            maps[modality] = np.ascontiguousarray(tensor[0].transpose(1, 2, 0) if modality == "rgb" else tensor[0, 0])
        h, w = self.input_size
        node_labels = nearest.resize(scene.labels, (h, w))
        if self.pothole_cover:
            node_labels = _with_covered_potholes(node_labels, scene.labels, self.pothole_cover)
        maps["target"] = label_sets.SINGLE[node_labels]
        sample = RawSample(maps=maps, id=self.ids[index], condition=scene.condition)
        if self._cache is not None:
            self._cache[index] = sample
        return sample


def _with_covered_potholes(small: np.ndarray, full: np.ndarray, cover: float) -> np.ndarray:
    """`small` (nearest-resized labels) with pothole wherever rendered pothole pixels cover >= `cover` of the pixel."""
    h, w = small.shape
    share = cv2.resize((full == L.NEGATIVE_OBSTACLE).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    out = small.copy()
    out[(share >= cover) & (small != L.IGNORE)] = L.NEGATIVE_OBSTACLE
    return out
