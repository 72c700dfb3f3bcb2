"""Surface kinds (parts), their node labels, and the per-frame material table rendering gathers from.

A pixel carries a material id; colour, temperature, texture strength and label are looked up from it, so the
ray caster never needs to know what a surface means.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..labels import BACKGROUND, DRIVABLE, NEGATIVE_OBSTACLE, POSITIVE_OBSTACLE

_f32 = np.float32


#: Surface kinds reported per pixel in `frame.extras["parts"]` (uint8 index into this tuple), finer than the
#: label space so evaluations can ask e.g. "how many night pedestrians were found".
PART_NAMES = ("sky", "road", "lane_marking", "shoulder", "offroad", "kerb", "sidewalk", "vehicle", "pedestrian",
              "cone", "pothole", "building", "vegetation", "terrain")
#: Node label of each part.
PART_LABELS = {"sky": BACKGROUND, "road": DRIVABLE, "lane_marking": DRIVABLE, "shoulder": BACKGROUND,
               "offroad": BACKGROUND, "kerb": POSITIVE_OBSTACLE, "sidewalk": BACKGROUND,
               "vehicle": POSITIVE_OBSTACLE, "pedestrian": POSITIVE_OBSTACLE, "cone": POSITIVE_OBSTACLE,
               "pothole": NEGATIVE_OBSTACLE, "building": BACKGROUND, "vegetation": BACKGROUND,
               "terrain": BACKGROUND}


class Materials:
    """Growing table; rendering gathers from it with the per-pixel material id."""

    SKY, ROAD, MARK_WHITE, MARK_YELLOW, SHOULDER, OFFROAD, KERB, SIDEWALK = range(8)

    def __init__(self) -> None:
        self.rgb: list[tuple[float, float, float]] = []
        self.temp: list[float] = []
        self.part: list[int] = []
        self.tex_coarse: list[float] = []
        self.tex_fine: list[float] = []
        self.emissive: list[tuple[float, float, float]] = []
        self.instance: list[int] = []

    def add(self, rgb: Sequence[float], temp_c: float, part: str, coarse: float = 0.03, fine: float = 0.03,
            emissive: Sequence[float] = (0.0, 0.0, 0.0), instance: int = 0) -> int:
        """Append a material; returns its id (the value pixels showing it carry). `instance` (> 0) names the one
        object it belongs to (a pothole's floor and wall), for object-level ground truth."""
        self.rgb.append(tuple(float(c) for c in rgb))
        self.temp.append(float(temp_c))
        self.part.append(PART_NAMES.index(part))
        self.tex_coarse.append(float(coarse))
        self.tex_fine.append(float(fine))
        self.emissive.append(tuple(float(c) for c in emissive))
        self.instance.append(int(instance))
        return len(self.rgb) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "rgb": np.asarray(self.rgb, dtype=_f32), "temp": np.asarray(self.temp, dtype=_f32),
            "part": np.asarray(self.part, dtype=np.uint8),
            "label": np.asarray([PART_LABELS[PART_NAMES[i]] for i in self.part], dtype=np.uint8),
            "coarse": np.asarray(self.tex_coarse, dtype=_f32), "fine": np.asarray(self.tex_fine, dtype=_f32),
            "emissive": np.asarray(self.emissive, dtype=_f32),
            "glows": np.asarray(self.emissive, dtype=_f32).any(axis=1),
            "instance": np.asarray(self.instance, dtype=np.uint16),
        }
