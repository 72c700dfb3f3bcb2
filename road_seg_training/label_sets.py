"""Partial labels: each pixel's target is the *set* of node classes it may belong to.

The public datasets annotate different things: NPO leaves the road inside
"background", DRNO leaves vehicles inside "unlabeled", MFNet has no road class.
Mapping such a pixel to a single node class would teach the network something
false (e.g. "the NPO road is not drivable"), so a target pixel is a uint8
bitmask: bit k set = node class k is allowed (`labels.CLASS_NAMES`), 0 = ignore.
`road_seg_training.losses.PartialLabelCrossEntropy` trains on these sets directly.

Mapping tables (dataset id -> allowed node classes; bg = background, dr =
drivable, pos = positive_obstacle, neg = negative_obstacle):

==========  ===========================  ==========================================
dataset     dataset class                allowed node classes
==========  ===========================  ==========================================
NPO         background                   {bg, dr}  (road is not annotated)
            negative_obstacle            {neg}
            positive_obstacle            {pos}
DRNO        0 unlabeled                  {bg, pos} (vehicles etc. are not annotated)
            1 drivable road              {dr}
            2 negative obstacle          {neg}
MFNet       0 unlabeled                  {bg, dr, neg} (no road class; its obstacle
                                         classes cover the road users)
            1 car .. 7 color_cone        {pos}  (car, person, bike, curve = kerb,
                                         car_stop, guardrail, color_cone)
            8 bump                       {dr, pos}  (a speed bump is driven over;
                                         either answer is accepted)
synthetic   node label k                 {k}
folder      node label k (or label_map)  {k}
==========  ===========================  ==========================================

NPO's class order is an option (its authors' scripts disagree); the default is
0 background, 1 negative obstacle, 2 positive obstacle. Label ids a table does
not list become 0 (ignored).

Evaluation happens in an `EvalSpace`: a partition of the node classes into the
classes a dataset can judge. For NPO the node's background and drivable merge
into NPO's "background", which reproduces the paper's three-class metrics from
a four-class network.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np

from road_seg_core import labels
from road_seg_core.labels import BACKGROUND, DRIVABLE, NEGATIVE_OBSTACLE, POSITIVE_OBSTACLE

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

IGNORE_BITS = 0


def bits(*classes: int) -> int:
    """Bitmask allowing exactly `classes` (node class ids 0..7)."""
    mask = 0
    for c in classes:
        if not 0 <= int(c) < 8:
            raise ValueError(f"class id {c} does not fit a uint8 bitmask (0..7)")
        mask |= 1 << int(c)
    return mask


#: Every node class allowed: the pixel carries no information (its loss is 0).
ALL = bits(*range(labels.NUM_CLASSES))


def lut(mapping: Mapping[int, Iterable[int]]) -> np.ndarray:
    """(256,) uint8 table: dataset label id -> allowed-class bitmask; unlisted ids -> 0 (ignore)."""
    table = np.zeros(256, dtype=np.uint8)
    for label_id, classes in mapping.items():
        if not 0 <= int(label_id) < 256:
            raise ValueError(f"label id {label_id} is not a uint8 value")
        table[int(label_id)] = bits(*classes)
    return table


#: Node label -> singleton bitmask (255 ignore and unknown ids -> 0).
SINGLE = lut({k: (k,) for k in range(labels.NUM_CLASSES)})


def apply_lut(table: np.ndarray, label_image: np.ndarray) -> np.ndarray:
    """Map a uint8 (or 16-bit) label image through a 256-entry table; ids above 255 become 0 (ignore)."""
    label_image = np.asarray(label_image)
    if label_image.dtype == np.uint8:
        return table[label_image]
    ids = label_image.astype(np.int64)
    return np.where((ids >= 0) & (ids < 256), table[np.clip(ids, 0, 255)], 0).astype(np.uint8)


def _singleton_lut() -> np.ndarray:
    table = np.full(256, labels.IGNORE, dtype=np.uint8)
    for k in range(labels.NUM_CLASSES):
        table[1 << k] = k
    return table


_EVAL = _singleton_lut()


def eval_labels(bitmask):
    """Node labels where the allowed set is a single node class, 255 (ignore) where it is ambiguous or empty.

    Works on numpy arrays and torch tensors (kept on their device).
    """
    if torch is not None and isinstance(bitmask, torch.Tensor):
        table = torch.as_tensor(_EVAL, device=bitmask.device)
        return table[bitmask.long()]
    return _EVAL[np.asarray(bitmask, dtype=np.uint8)]


def allowed_classes(bitmask: int, num_classes: int = labels.NUM_CLASSES) -> tuple[int, ...]:
    return tuple(k for k in range(num_classes) if bitmask >> k & 1)


def class_counts(bitmask, num_classes: int = labels.NUM_CLASSES) -> np.ndarray:
    """Pixels whose allowed set is exactly {k}, per node class k (input for class weights)."""
    single = np.asarray(eval_labels(bitmask).cpu() if torch is not None and isinstance(bitmask, torch.Tensor)
                        else eval_labels(bitmask)).reshape(-1)
    single = single[single < num_classes]
    return np.bincount(single, minlength=num_classes)[:num_classes].astype(np.int64)


# -- datasets ---------------------------------------------------------------------------------------------------

#: Allowed node classes per NPO class name; the class *order* (ids) is a dataset option.
NPO_SETS: dict[str, tuple[int, ...]] = {
    "background": (BACKGROUND, DRIVABLE),
    "negative_obstacle": (NEGATIVE_OBSTACLE,),
    "positive_obstacle": (POSITIVE_OBSTACLE,),
}
NPO_DEFAULT_ORDER: tuple[str, ...] = ("background", "negative_obstacle", "positive_obstacle")
_NPO_ALIASES = {"bg": "background", "negative": "negative_obstacle", "neg": "negative_obstacle",
                "positive": "positive_obstacle", "pos": "positive_obstacle"}


def npo_class_order(order: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validate an NPO class order (names by label id); accepts a list or "background,negative,positive"."""
    if order is None:
        return NPO_DEFAULT_ORDER
    if isinstance(order, str):
        order = [part for part in order.replace(" ", "").split(",") if part]
    names = tuple(_NPO_ALIASES.get(str(n).lower(), str(n).lower()) for n in order)
    if sorted(names) != sorted(NPO_SETS):
        raise ValueError(f"NPO class_order must name each of {', '.join(NPO_SETS)} once (by label id), "
                         f"got {list(order)}")
    return names


def npo_lut(order: Sequence[str] | str | None = None) -> np.ndarray:
    return lut({i: NPO_SETS[name] for i, name in enumerate(npo_class_order(order))})


DRNO_CLASSES: tuple[str, ...] = ("unlabeled", "drivable_road", "negative_obstacle")
DRNO_LUT = lut({0: (BACKGROUND, POSITIVE_OBSTACLE), 1: (DRIVABLE,), 2: (NEGATIVE_OBSTACLE,)})

MFNET_CLASSES: tuple[str, ...] = ("unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail",
                                  "color_cone", "bump")
MFNET_LUT = lut({0: (BACKGROUND, DRIVABLE, NEGATIVE_OBSTACLE),
                 **{i: (POSITIVE_OBSTACLE,) for i in range(1, 8)},
                 8: (DRIVABLE, POSITIVE_OBSTACLE)})


def label_map_lut(label_map: Mapping[int | str, Iterable[int | str] | int | str]) -> np.ndarray:
    """Table from a user mapping {dataset id: node class name(s) or id(s)}, e.g. {0: [background, drivable]}."""
    def class_ids(value) -> tuple[int, ...]:
        items = [value] if isinstance(value, (int, str)) else list(value)
        return tuple(int(v) if isinstance(v, int) or str(v).isdigit() else labels.class_id(str(v)) for v in items)

    return lut({int(key): class_ids(value) for key, value in label_map.items()})


# -- evaluation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSpace:
    """Classes a dataset can be judged in: a partition of the node classes.

    `groups[i]` are the node classes that eval class i stands for. A target pixel
    counts as eval class i when its allowed set lies inside group i (the truth is
    then known at that granularity) and is ignored otherwise; a predicted node
    label counts as the group containing it.
    """

    class_names: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    background_index: int | None = 0

    def __post_init__(self) -> None:
        flat = sorted(c for group in self.groups for c in group)
        if flat != list(range(labels.NUM_CLASSES)) or len(self.class_names) != len(self.groups):
            raise ValueError(f"eval groups must partition the node classes 0..{labels.NUM_CLASSES - 1} "
                             f"with one name each, got {self.groups} / {self.class_names}")

    @property
    def num_classes(self) -> int:
        return len(self.groups)

    @cached_property
    def _target_table(self) -> np.ndarray:
        table = np.full(256, labels.IGNORE, dtype=np.uint8)
        values = np.arange(256)
        for i, group in enumerate(self.groups):
            inside = (values != 0) & ((values & ~bits(*group)) == 0)
            table[inside] = i
        return table

    @cached_property
    def _pred_table(self) -> np.ndarray:
        table = np.full(256, labels.IGNORE, dtype=np.uint8)
        for i, group in enumerate(self.groups):
            table[list(group)] = i
        return table

    def target(self, bitmask):
        """Eval class ids of allowed-class bitmasks (255 where the set spans groups or is empty)."""
        return _lookup(self._target_table, bitmask)

    def pred(self, node_labels):
        """Eval class ids of predicted node labels."""
        return _lookup(self._pred_table, node_labels)


def _lookup(table: np.ndarray, values):
    if torch is not None and isinstance(values, torch.Tensor):
        return torch.as_tensor(table, device=values.device)[values.long()]
    return table[np.asarray(values).astype(np.intp)]


#: The node's own four classes (synthetic and folder data).
NODE_SPACE = EvalSpace(labels.CLASS_NAMES, tuple((k,) for k in range(labels.NUM_CLASSES)))
DRNO_SPACE = EvalSpace(DRNO_CLASSES, ((BACKGROUND, POSITIVE_OBSTACLE), (DRIVABLE,), (NEGATIVE_OBSTACLE,)))
#: MFNet's nine classes cannot be recovered from the node's four; judge "road-user obstacle vs the rest".
MFNET_SPACE = EvalSpace(("other", "positive_obstacle"), ((BACKGROUND, DRIVABLE, NEGATIVE_OBSTACLE),
                                                          (POSITIVE_OBSTACLE,)))


def npo_space(order: Sequence[str] | str | None = None) -> EvalSpace:
    """NPO's three classes in the configured id order (so eval ids equal the dataset's label ids)."""
    names = npo_class_order(order)
    return EvalSpace(names, tuple(NPO_SETS[n] for n in names), background_index=names.index("background"))
