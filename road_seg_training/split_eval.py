"""Scoring a model on a dataset split: the one implementation behind training validation and `road-seg evaluate`.

A split is scored twice from the same predictions: in the node's label space
(pixels whose partial label allows several node classes are ignored there) and,
when the dataset has classes of its own (`eval_space`, e.g. NPO's three), in
those classes with the dataset's own background left out of
``miou_without_background``. The dataset-space mIoU is the one a run selects
its best epoch on: in node space, NPO's ambiguous pixels would simply be
missing.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from road_seg_core.metrics import ConfusionMatrix, to_json
from road_seg_training.label_sets import EvalSpace

#: A count matrix as the caller wants it summed (e.g. over DDP ranks); identity in one process.
Reduce = Callable[[np.ndarray], np.ndarray]


def report(confusion: ConfusionMatrix, include_background: bool = True) -> dict[str, Any]:
    """JSON-ready metrics of one confusion matrix (NaN -> null), per-class support included."""
    return to_json(confusion.compute(include_background=include_background))


def own_space(dataset: Any, class_names: Sequence[str]) -> EvalSpace | None:
    """The dataset's own classes, or None when it is judged in the node's classes only (synthetic, folder)."""
    space = getattr(dataset, "eval_space", None)
    if space is None or tuple(space.class_names) == tuple(class_names):
        return None
    return space


class SplitScore:
    """Confusion matrices of one split: node classes, and the dataset's own classes where it has them."""

    def __init__(self, class_names: Sequence[str], space: EvalSpace | None) -> None:
        self.class_names = tuple(class_names)
        self.space = space
        self.node = ConfusionMatrix(len(self.class_names), self.class_names)
        self.native = (ConfusionMatrix(space.num_classes, space.class_names, background_index=space.background_index)
                       if space is not None else None)

    def update(self, pred: Any, labels: Any, target: Any) -> None:
        """Count one batch: `pred` node labels, `labels` node ground truth, `target` allowed-class bitmasks."""
        self.node.update(pred, labels)
        if self.native is not None:
            self.native.update(self.space.pred(pred), self.space.target(target))

    def report(self, reduce: Reduce | None = None) -> dict[str, Any]:
        """Metrics in node space, plus ``dataset_space`` (its classes and metrics) where the dataset has one."""
        out = report(_reduced(self.node, reduce))
        if self.native is not None:
            out["dataset_space"] = {"classes": list(self.space.class_names), **report(_reduced(self.native, reduce))}
        return out


def selection_score(split_report: dict[str, Any]) -> float | None:
    """The mIoU a run is judged by on this split: the dataset's own classes where it has them."""
    return split_report.get("dataset_space", split_report)["miou"]


def score_batches(batches: Iterable[dict[str, Any]], predict: Callable[[dict[str, Any]], Any],
                  class_names: Sequence[str], space: EvalSpace | None,
                  on_batch: Callable[[dict[str, Any], Any], None] | None = None) -> SplitScore:
    """Run `predict(batch) -> node labels` over collated batches and count them (`on_batch` sees each result)."""
    score = SplitScore(class_names, space)
    for batch in batches:
        pred = predict(batch)
        labels, target = batch["labels"], batch["target"]
        if hasattr(pred, "device"):  # torch predictions are counted on their own device
            labels, target = labels.to(pred.device), target.to(pred.device)
        else:
            labels, target = np.asarray(labels), np.asarray(target)
        score.update(pred, labels, target)
        if on_batch is not None:
            on_batch(batch, pred)
    return score


def _reduced(confusion: ConfusionMatrix, reduce: Reduce | None) -> ConfusionMatrix:
    if reduce is None:
        return confusion
    out = ConfusionMatrix(confusion.num_classes, confusion.class_names, confusion.ignore_index,
                          confusion.background_index)
    out.matrix[:] = np.asarray(reduce(confusion.matrix), dtype=np.int64)
    return out
