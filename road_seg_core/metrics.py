"""Segmentation metrics from a confusion matrix, shared by training, the bag evaluator and the demo.

One accumulator (`ConfusionMatrix`) gathers counts over any number of frames;
every metric is derived from those counts at the end, so results do not depend
on batch size or on how the frames were split between workers (`merge`).

Conventions (those of the MFNet/RTFNet and InconSeg/NPO papers):

* rows are ground truth, columns are predictions; pixels whose ground truth is
  `ignore_index` are skipped entirely (their prediction is not counted either);
* per class: ``iou = tp / (tp + fp + fn)``, ``precision = tp / (tp + fp)``,
  ``recall = tp / (tp + fn)`` (what the RTFNet tables call per-class "Acc"),
  ``f1 = 2 tp / (2 tp + fp + fn)``, ``support`` = ground-truth pixels;
* a ratio whose denominator is 0 is NaN, never 0: a class that appears neither
  in the ground truth nor in the predictions has NaN for every metric and is
  left out of the means (``np.nanmean``); a class predicted but absent from the
  ground truth has IoU 0 (its false positives are real errors) and recall NaN;
* ``miou`` averages over all classes when ``include_background`` is true (the
  MFNet/RTFNet convention, which counts "unlabeled") and over the non-background
  classes otherwise; ``miou_without_background`` is always reported too, so both
  conventions are available from one call;
* ``pixel_accuracy`` = trace / total over the non-ignored pixels.

`to_json` turns the result into strict JSON (NaN -> null).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from road_seg_core import labels

try:  # torch is optional here: the bag evaluator may run with onnxruntime only.
    import torch
except ImportError:  # pragma: no cover - torch is installed wherever training runs
    torch = None

PER_CLASS_METRICS = ("iou", "precision", "recall", "f1", "support")


def _is_tensor(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio with NaN (not 0, not a warning) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix (rows = ground truth, cols = prediction) over many frames.

    `update` accepts numpy arrays or torch tensors of any (equal) shape; tensors
    are counted on their own device with ``torch.bincount``, so evaluating on a
    GPU never copies whole label maps to the host.
    """

    def __init__(self, num_classes: int = labels.NUM_CLASSES, class_names: Sequence[str] = labels.CLASS_NAMES,
                 ignore_index: int = labels.IGNORE, background_index: int | None = 0) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        class_names = tuple(class_names)
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes: {class_names}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class id (0..{num_classes - 1})")
        if background_index is not None and not 0 <= background_index < num_classes:
            raise ValueError(f"background_index {background_index} is not a class id (0..{num_classes - 1})")
        self.num_classes = int(num_classes)
        self.class_names = class_names
        self.ignore_index = int(ignore_index)
        #: Class left out of `miou_without_background` (None: no such class, both means are equal).
        self.background_index = background_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred, target) -> None:
        """Count one batch of integer label maps; pixels with ``target == ignore_index`` are skipped.

        Raises ValueError for mismatched shapes or for ids outside 0..K-1 (other
        than the ignore index in the target): a silently miscounted class is
        worse than a crash in an evaluation.
        """
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        k = self.num_classes
        if _is_tensor(pred) or _is_tensor(target):
            counts = self._counts_torch(pred, target)
        else:
            pred = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
            target = np.asarray(target).reshape(-1).astype(np.int64, copy=False)
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
            self._check_range(pred, target)
            counts = np.bincount(target * k + pred, minlength=k * k)
        self.matrix += counts.reshape(k, k)

    def _counts_torch(self, pred, target) -> np.ndarray:
        k = self.num_classes
        device = pred.device if _is_tensor(pred) else target.device
        pred = torch.as_tensor(pred, device=device).reshape(-1).long()
        target = torch.as_tensor(target, device=device).reshape(-1).long()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if pred.numel():
            self._check_range(np.array([int(pred.min()), int(pred.max())]),
                              np.array([int(target.min()), int(target.max())]))
        return torch.bincount(target * k + pred, minlength=k * k).cpu().numpy()

    def _check_range(self, pred: np.ndarray, target: np.ndarray) -> None:
        k = self.num_classes
        for name, values in (("prediction", pred), ("target", target)):
            if values.size and (values.min() < 0 or values.max() >= k):
                raise ValueError(f"{name} contains class ids outside 0..{k - 1} "
                                 f"(min {values.min()}, max {values.max()}); target ignore id is {self.ignore_index}")

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another accumulator's counts (e.g. from a DataLoader worker or another bag)."""
        if other.num_classes != self.num_classes or other.class_names != self.class_names:
            raise ValueError(f"cannot merge confusion matrices over different classes: "
                             f"{self.class_names} vs {other.class_names}")
        self.matrix += other.matrix

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def compute(self, include_background: bool = True) -> dict[str, Any]:
        """Metrics of everything counted so far (see the module docstring for the conventions)."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        fp = m.sum(axis=0) - tp
        fn = m.sum(axis=1) - tp
        iou = _ratio(tp, tp + fp + fn)
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        support = m.sum(axis=1).astype(np.int64)

        foreground = np.ones(self.num_classes, dtype=bool)
        if self.background_index is not None:
            foreground[self.background_index] = False
        counted = np.ones(self.num_classes, dtype=bool) if include_background else foreground
        total = m.sum()
        return {
            "miou": _nanmean(iou[counted]),
            "miou_without_background": _nanmean(iou[foreground]),
            "mean_f1": _nanmean(f1[counted]),
            "mean_recall": _nanmean(recall[counted]),
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "include_background": bool(include_background),
            "num_pixels": int(total),
            "per_class": {
                name: {"iou": float(iou[i]), "precision": float(precision[i]), "recall": float(recall[i]),
                       "f1": float(f1[i]), "support": int(support[i])}
                for i, name in enumerate(self.class_names)
            },
        }


def to_json(metrics: Any) -> Any:
    """A copy of `metrics` that `json.dumps(..., allow_nan=False)` accepts: NaN/inf -> None, numpy -> Python."""
    if isinstance(metrics, dict):
        return {str(key): to_json(value) for key, value in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [to_json(value) for value in metrics]
    if isinstance(metrics, np.ndarray):
        return to_json(metrics.tolist())
    if isinstance(metrics, np.generic):
        metrics = metrics.item()
    if isinstance(metrics, float) and not math.isfinite(metrics):
        return None
    return metrics


def format_table(metrics: dict[str, Any]) -> str:
    """Human-readable per-class table plus the summary means (for logs and CLI output)."""
    def cell(value: Any) -> str:
        return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.3f}"

    lines = [f"{'class':<20} {'IoU':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'support':>10}"]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<20} {cell(row['iou'])} {cell(row['precision'])} {cell(row['recall'])} "
                     f"{cell(row['f1'])} {row['support']:>10}")
    scope = "incl." if metrics.get("include_background", True) else "excl."
    lines.append(f"mIoU ({scope} background) {cell(metrics['miou'])}   mIoU w/o background "
                 f"{cell(metrics['miou_without_background'])}   pixel acc {cell(metrics['pixel_accuracy'])}")
    return "\n".join(lines)
