"""The node's outputs: one publisher per mask, each with a message whose buffer the masks are written into.

rclpy's `Publisher.publish` converts a message to its C form (a copy) before it
returns, so a message's `data` is free again the moment publish returns. Each
output therefore keeps one Image message, and the pipeline writes the next
frame's mask straight into numpy views of that message's `array.array`
(`SegmentationPipeline.run(out=...)`) instead of making a new array and copying
it into a new message: one 1280x720 pass less per output and no allocation
(`road-seg bench`, publish stage).
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from road_seg_core.postprocess import Masks

#: Published name (relative to the node) -> (Masks field, encoding).
OUTPUTS = {"drivable_mask": ("drivable", "mono8"), "obstacle_mask": ("obstacle", "mono8"),
           "labels": ("labels", "mono8"), "overlay": ("overlay", "rgb8")}
_CHANNELS = {"mono8": 1, "rgb8": 3}


class _Output:
    """One output topic: its publisher and the one message its frames are written into."""

    def __init__(self, publisher: Any, encoding: str) -> None:
        self.publisher, self.encoding = publisher, encoding
        self.msg: Image | None = None
        self.view = np.empty((0, 0), np.uint8)

    def buffer(self, size: tuple[int, int]) -> np.ndarray:
        """A writeable view of the message's data at (h, w), made anew only when the image size changes."""
        h, w = size
        channels = _CHANNELS[self.encoding]
        shape = (h, w) if channels == 1 else (h, w, channels)
        if self.view.shape != shape:
            msg = Image()
            msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = h, w, self.encoding, 0, w * channels
            msg.data = array.array("B", bytes(h * w * channels))
            self.msg, self.view = msg, np.frombuffer(msg.data, np.uint8).reshape(shape)
        return self.view

    def publish(self, image: np.ndarray, header: Header) -> None:
        view = self.buffer(image.shape[:2])
        if image is not view:  # not written in place (e.g. the caller passed no buffers): copy it in
            np.copyto(view, image.reshape(view.shape), casting="no")
        self.msg.header = header
        self.publisher.publish(self.msg)


class MaskPublishers:
    """Publishers of drivable_mask, obstacle_mask, labels and overlay under `node`'s name (`~/...`)."""

    def __init__(self, node: Any, qos: Any) -> None:
        self._outputs = {name: _Output(node.create_publisher(Image, f"~/{name}", qos), encoding)
                         for name, (_, encoding) in OUTPUTS.items()}

    @property
    def overlay_wanted(self) -> bool:
        """Whether anyone subscribes to the overlay (it costs a blend at full resolution per frame)."""
        return self._outputs["overlay"].publisher.get_subscription_count() > 0

    def buffers(self, size: tuple[int, int], with_overlay: bool) -> Masks:
        """Arrays for the next frame's outputs at (h, w): the messages' own buffers, for `make_masks(out=...)`."""
        views = {OUTPUTS[name][0]: out.buffer(size) for name, out in self._outputs.items()
                 if with_overlay or name != "overlay"}
        return Masks(labels=views["labels"], drivable=views["drivable"], obstacle=views["obstacle"],
                     overlay=views.get("overlay"))

    def publish(self, header: Header, masks: Masks) -> None:
        """Publish every output of `masks` (overlay only if it has one) stamped with `header`."""
        for name, out in self._outputs.items():
            image = getattr(masks, OUTPUTS[name][0])
            if image is not None:
                out.publish(image, header)
