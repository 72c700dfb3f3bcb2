"""One picture for every visual output: camera image | prediction overlay | ground truth, titled, with a legend.

The demo's overlays, the bag report's montage and TensorBoard's validation
images all come from `compose`, so they read the same way: the same panel
order, the same titles, the class colours of road_seg_core.labels named in a
legend, and the ground truth drawn over the camera image like the prediction.
OpenCV only (no matplotlib), so the node-side tools can use it.
"""
from __future__ import annotations

import cv2
import numpy as np

from road_seg_core import labels as L
from road_seg_core import nearest
from road_seg_core.postprocess import overlay

#: Panel titles, left to right.
PANEL_TITLES: tuple[str, str, str] = ("camera", "prediction", "ground truth")
#: What unpainted pixels mean, said once in the legend.
UNPAINTED_NOTE = "unpainted: background / ignored"

GAP = 4  # pixels between panels
BAR_COLOR = (32, 32, 32)  # title bars, legend strip and gaps (RGB)
CAPTION_COLOR = (40, 48, 96)  # caption lines (which frame, its score) stand apart from panel titles
TEXT_COLOR = (240, 240, 240)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def bar_height(width: int) -> int:
    """Height of a title bar (and of one legend line) for a panel `width` pixels wide."""
    return int(np.clip(round(width / 16), 14, 28))


def _font_scale(height: int) -> float:
    return max(0.3, (height - 6) / 30.0)


def _put_text(img: np.ndarray, text: str, x: int, height: int, top: int, max_width: int) -> int:
    """Draw `text` left-aligned in a bar (shrunk to fit `max_width`); returns the width drawn."""
    scale = _font_scale(height)
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if tw > max_width > 0:
        scale *= max_width / tw
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    y = top + (height + th) // 2
    cv2.putText(img, text, (x, y), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)
    return tw


def title_bar(width: int, text: str, height: int | None = None,
              color: tuple[int, int, int] = BAR_COLOR) -> np.ndarray:
    """A dark bar `width` wide with `text` on it (RGB)."""
    height = height or bar_height(width)
    bar = np.empty((height, width, 3), np.uint8)
    bar[:] = color
    _put_text(bar, text, 4, height, 0, width - 8)
    return bar


def legend_strip(width: int, line_height: int | None = None) -> np.ndarray:
    """The class colours of road_seg_core.labels, named, wrapped over as many lines as `width` needs (RGB)."""
    line_height = line_height or bar_height(width // 3)
    scale = _font_scale(line_height)
    swatch = line_height - 6
    items = [(tuple(int(c) for c in L.CLASS_COLORS[i]), name.replace("_", " "))
             for i, name in enumerate(L.CLASS_NAMES) if i != L.BACKGROUND]
    items.append((None, UNPAINTED_NOTE))
    # Lay out first (x, line) per item, then draw on a strip of the height that needs.
    placed, x, line = [], 4, 0
    for colour, text in items:
        tw = cv2.getTextSize(text, _FONT, scale, 1)[0][0]
        need = (swatch + 4 if colour else 0) + tw + 12
        if x > 4 and x + need > width:
            x, line = 4, line + 1
        placed.append((x, line, colour, text))
        x += need
    strip = np.empty(((line + 1) * line_height, width, 3), np.uint8)
    strip[:] = BAR_COLOR
    for x, line, colour, text in placed:
        top = line * line_height
        if colour is not None:
            cv2.rectangle(strip, (x, top + 3), (x + swatch, top + 3 + swatch), colour, thickness=-1)
            cv2.rectangle(strip, (x, top + 3), (x + swatch, top + 3 + swatch), TEXT_COLOR, thickness=1)
            x += swatch + 4
        _put_text(strip, text, x, line_height, top, width - x - 2)
    return strip


def shown_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as painted: ignored pixels (255) left unpainted like background."""
    labels = np.asarray(labels)
    return np.where(labels == L.IGNORE, L.BACKGROUND, labels).astype(np.uint8)


def _no_truth_panel(rgb: np.ndarray) -> np.ndarray:
    dim = (rgb.astype(np.uint16) // 3).astype(np.uint8)
    h, w = dim.shape[:2]
    _put_text(dim, "no ground truth", 4, bar_height(w), (h - bar_height(w)) // 2, w - 8)
    return dim


def compose(rgb: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, *, caption: str | None = None,
            image_title: str = PANEL_TITLES[0], legend: bool = True) -> np.ndarray:
    """camera | prediction overlay | ground-truth overlay, each under its title; legend below (RGB uint8).

    `rgb` is HxWx3 uint8 (RGB), `pred` and `gt` HxW class ids (`gt` None: the third panel says so).
    `caption` adds a line above the panels (e.g. which frame and its score); `image_title` names the
    first panel when the image is not the colour camera (e.g. thermal shown in grey).
    """
    rgb = np.ascontiguousarray(rgb, np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"compose needs an HxWx3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    for name, lab in (("prediction", pred), ("ground truth", gt)):
        if lab is not None and np.asarray(lab).shape[:2] != (h, w):
            raise ValueError(f"{name} labels are {np.asarray(lab).shape[:2]}, the image is {(h, w)}")
    panels = [rgb, overlay(rgb, shown_labels(pred)),
              overlay(rgb, shown_labels(gt)) if gt is not None else _no_truth_panel(rgb)]
    titles = (image_title, *PANEL_TITLES[1:])
    bh = bar_height(w)
    columns = [np.vstack([title_bar(w, t, bh), p]) for t, p in zip(titles, panels)]
    gap = np.empty((columns[0].shape[0], GAP, 3), np.uint8)
    gap[:] = BAR_COLOR
    row = np.hstack([columns[0], gap, columns[1], gap, columns[2]])
    parts = [row]
    if caption:
        parts.insert(0, title_bar(row.shape[1], caption, bh, CAPTION_COLOR))
    if legend:
        parts.append(legend_strip(row.shape[1], bh))
    return np.ascontiguousarray(np.vstack(parts))


def stack_rows(rows: list[np.ndarray], legend: bool = True) -> np.ndarray:
    """Composed rows (legend=False) one under another, with one legend at the bottom (RGB)."""
    width = max(r.shape[1] for r in rows)
    padded = []
    for r in rows:
        if r.shape[1] < width:
            pad = np.empty((r.shape[0], width - r.shape[1], 3), np.uint8)
            pad[:] = BAR_COLOR
            r = np.hstack([r, pad])
        padded.append(r)
    if legend:
        padded.append(legend_strip(width, bar_height(width // 3)))
    return np.vstack(padded)


def panel_size(image_shape: tuple[int, ...], max_width: int) -> tuple[int, int]:
    """(width, height) of a panel scaled down to at most `max_width` wide (never up)."""
    h, w = image_shape[:2]
    scale = min(1.0, max_width / w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def compose_small(rgb: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, max_width: int,
                  **kwargs) -> np.ndarray:
    """`compose` on a copy scaled to panels at most `max_width` wide (area for the image, nearest for labels)."""
    size = panel_size(rgb.shape, max_width)
    if size != (rgb.shape[1], rgb.shape[0]):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        pred = nearest.resize(np.asarray(pred, np.uint8), size[::-1])
        gt = None if gt is None else nearest.resize(np.asarray(gt, np.uint8), size[::-1])
    return compose(rgb, pred, gt, **kwargs)
