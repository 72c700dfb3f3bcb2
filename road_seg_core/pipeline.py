"""The one segmentation pipeline: preprocess -> engine -> postprocess, with per-stage timing.

The ROS node, the rosbag evaluator, the demo and training's evaluation all run
frames through `SegmentationPipeline.run`, so what is measured offline is what
runs on the car.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from road_seg_core.engines.base import InferenceEngine
from road_seg_core.frames import SensorFrame
from road_seg_core.models.config import DEPTH_LIKE
from road_seg_core.pothole_filter import PotholeFilter, PotholeFilterConfig
from road_seg_core.postprocess import Masks, make_masks
from road_seg_core.preprocess import PreprocessConfig, Preprocessor


@dataclass
class PipelineResult:
    """Masks for one frame plus the milliseconds each stage took."""

    masks: Masks
    timings_ms: dict[str, float] = field(default_factory=dict)


#: Where preprocessing runs: "auto" = on the engine's device where it has one (a GPU), else on the host;
#: "host" = OpenCV on the CPU (`Preprocessor`); "engine" = torch ops on the engine's device (the CPU if none).
PREPROCESS_ON = ("auto", "host", "engine")


class SegmentationPipeline:
    """Runs one SensorFrame through the model described by `engine.meta`.

    With a GPU engine, preprocessing runs on the GPU (`SensorPreprocessor`) as part of the engine call
    (`InferenceEngine.infer_frame_labels`): the host hands over what the sensors sent, so the "preprocess"
    stage is empty and "model" covers upload, preprocessing and the network. On a CPU the OpenCV path is the
    faster one (measured: README), so "auto" keeps it there.
    """

    def __init__(self, engine: InferenceEngine, preprocess: PreprocessConfig | None = None,
                 preprocess_on: str = "auto", obstacles: PotholeFilterConfig | None = None) -> None:
        if preprocess_on not in PREPROCESS_ON:
            raise ValueError(f"preprocess_on must be one of {', '.join(PREPROCESS_ON)}, got {preprocess_on!r}")
        self.engine = engine
        #: Depth verification, thermal corroboration and temporal confirmation of pothole blobs (`obstacles.*`):
        #: state across frames.
        self.potholes = PotholeFilter(obstacles)
        meta = engine.meta
        # Verification reads what the model was fed: a depth-like input ("height" is derived from depth), and only
        # a measured one (the node subscribes to nothing else; "stereo" depth is computed, not measured).
        source = (preprocess or PreprocessConfig()).depth_source
        fed_depth = any(m in DEPTH_LIKE or m == "height" for m in meta.modalities)
        self._verify_with = source if fed_depth and source in DEPTH_LIKE else None
        # Thermal corroboration reads the network's confidence and its thermal input: the logits come back too.
        self._corroborate = (self._verify_with is not None and "thermal" in meta.modalities
                             and self.potholes.config.corroborates)
        device = {"auto": engine.sensor_device, "host": None,
                  "engine": engine.sensor_device or "cpu"}[preprocess_on]
        self.on_device = device is not None
        if self.on_device:
            from road_seg_core.engines.sensor_preprocess import SensorPreprocessor

            self.preprocessor = SensorPreprocessor(tuple(meta.modalities), tuple(meta.input_size), preprocess,
                                                   device)
        else:
            self.preprocessor = Preprocessor(tuple(meta.modalities), tuple(meta.input_size), preprocess)

    def reset(self) -> None:
        """A new sequence (another drive, a bag played again): forget the tracked plane and pothole history."""
        self.potholes.reset()
        self.preprocessor.reset()

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.engine.meta.modalities)

    def run(self, frame: SensorFrame, with_overlay: bool = False, out: Masks | None = None) -> PipelineResult:
        """Masks for one frame; with `out` (arrays at the frame's size) they are written into its arrays.

        Frames are taken as one sequence (the road plane and the pothole confirmation carry over); `reset`
        starts a new one."""
        t0 = time.perf_counter()
        logits = inputs = None
        if self.on_device:
            t1 = t0
            if self._corroborate:
                labels, logits, inputs = self.engine.infer_frame_labels_and_logits(frame, self.preprocessor)
            else:
                labels = self.engine.infer_frame_labels(frame, self.preprocessor)
        else:
            inputs = self.preprocessor(frame)
            t1 = time.perf_counter()
            if self._corroborate:
                labels, logits = self.engine.infer_labels_and_logits(inputs)
            else:
                labels = self.engine.infer_labels(inputs)
        labels_small = labels[0]
        thermal = None
        if logits is not None:  # thermal corroboration: the logits and the thermal plane the network saw
            logits, thermal = logits[0], _host_plane(inputs.get("thermal"))
        t2 = time.perf_counter()
        if self.potholes.config.enabled:
            if not labels_small.flags.writeable:
                labels_small = labels_small.copy()
            # None (nothing to verify against): a model without depth input, stereo depth, the sensor down.
            depth = getattr(frame, self._verify_with) if self._verify_with else None
            self.potholes(labels_small, depth, thermal, logits)
        # The full-size RGB image is made only for the overlay (a frame from the node holds the camera's pixels).
        masks = make_masks(labels_small, frame.rgb if with_overlay else None, frame.size, with_overlay, out)
        t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return PipelineResult(masks=masks, timings_ms=timings)


def _host_plane(batch) -> np.ndarray | None:
    """The first sample's first channel of a (B, C, H, W) numpy array or torch tensor, as a host array."""
    if batch is None:
        return None
    plane = batch[0, 0]
    return plane if isinstance(plane, np.ndarray) else plane.float().cpu().numpy()
