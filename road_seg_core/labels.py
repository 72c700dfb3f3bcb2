"""The node's label space: one place for class ids, names and display colours.

Every dataset, loss, metric, mask and overlay in the project refers to these
constants, so a class never changes meaning between training and the car.
"""
from __future__ import annotations

import numpy as np

BACKGROUND = 0
DRIVABLE = 1
POSITIVE_OBSTACLE = 2
NEGATIVE_OBSTACLE = 3
IGNORE = 255

#: Class names as they appear in JSON metrics and checkpoint metadata, indexed by id.
CLASS_NAMES: tuple[str, ...] = ("background", "drivable", "positive_obstacle", "negative_obstacle")
NUM_CLASSES = len(CLASS_NAMES)

#: Display colours (RGB) for overlays and reports, indexed by class id.
CLASS_COLORS = np.array(
    [
        [0, 0, 0],  # background: left unpainted in overlays
        [40, 200, 80],  # drivable: green
        [230, 40, 40],  # positive obstacle: red
        [255, 190, 0],  # negative obstacle: amber
    ],
    dtype=np.uint8,
)

#: Classes that make up the obstacle mask.
OBSTACLE_CLASSES = (POSITIVE_OBSTACLE, NEGATIVE_OBSTACLE)


def class_id(name: str) -> int:
    """Return the id of a class name, raising a clear error for unknown names."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; known classes: {', '.join(CLASS_NAMES)}") from None
