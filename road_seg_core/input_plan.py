"""Which topics the node subscribes to, derived from the loaded model and the configuration.

The node subscribes only to what the model's modalities need; a model the
configured topics cannot serve is refused at start-up with one clear error.
"""
from __future__ import annotations

from dataclasses import dataclass

from road_seg_core.node_config import PerceptionConfig


class StartupError(RuntimeError):
    """The node cannot start with this model and configuration; the message says why."""


class InputRejected(ValueError):
    """A message (or synchronised set) the node cannot use; counted under (topic, reason) in diagnostics."""

    def __init__(self, topic: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.topic = topic
        self.reason = reason


@dataclass(frozen=True)
class SyncInput:
    """One synchronised input: a config key ('left', 'right', 'depth', 'disparity', 'thermal') and its topic."""

    key: str
    topic: str


@dataclass(frozen=True)
class InputPlan:
    """What to subscribe to for a model. `needs_camera_info`: subscribe to the camera_info topics;
    `requires_camera_info`: a set cannot be used without them (depth <-> disparity conversion). The road-plane
    fit of the "height" input only uses them: until they arrive, height is fed as "no data" and the frame still
    gets its masks."""

    sync_inputs: tuple[SyncInput, ...]
    needs_camera_info: bool
    requires_camera_info: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(i.key for i in self.sync_inputs)


def plan_inputs(modalities: tuple[str, ...], cfg: PerceptionConfig) -> InputPlan:
    """Map the model's modalities onto topics, honouring `depth_source`."""
    unknown = set(modalities) - {"rgb", "depth", "disparity", "thermal", "height"}
    if unknown:
        raise StartupError(f"model uses modalities {sorted(unknown)} that this node cannot provide")
    keys = ["left"]
    needs_info = converts = False
    depth_like = [m for m in modalities if m in ("depth", "disparity")]
    # "height" (above the fitted road plane) is derived from depth and needs the intrinsics to back-project it.
    if depth_like or "height" in modalities:
        wanted = depth_like[0] if depth_like else "depth"
        source = cfg.depth_source
        if source == "depth":
            keys.append("depth")
            needs_info = wanted == "disparity"
        elif source == "disparity":
            keys.append("disparity")  # DisparityImage carries f and T itself
        elif source == "stereo":
            keys.append("right")
            needs_info = wanted == "depth"
        converts = needs_info
        needs_info = needs_info or "height" in modalities
    if "thermal" in modalities:
        keys.append("thermal")
    inputs = []
    for key in keys:
        topic = getattr(cfg.topics, key)
        if not topic:
            raise StartupError(f"the model needs the '{key}' input (modalities {list(modalities)}, depth_source "
                               f"'{cfg.depth_source}') but parameter topics.{key} is empty")
        inputs.append(SyncInput(key, topic))
    if needs_info and not (cfg.topics.left_info and cfg.topics.right_info):
        raise StartupError("converting between depth and disparity, or fitting the road plane for the 'height' "
                           "input, needs topics.left_info and topics.right_info")
    return InputPlan(tuple(inputs), needs_info, converts)
