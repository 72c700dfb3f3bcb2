"""The ablation benchmark's arithmetic: which figures it reads from which model, and how it prints them."""
from __future__ import annotations

from road_seg_training.ablation import VARIANTS, format_summary, summarize

CLASSES = ("background", "drivable", "positive_obstacle", "negative_obstacle")


def _report(miou: float, positive: float, negative: float, night_positive: float) -> dict:
    ious = dict(zip(CLASSES, (0.9, 0.8, positive, negative)))
    return {"miou": miou, "per_class": {c: {"iou": v} for c, v in ious.items()},
            "by_condition": {"night": {"iou": {**ious, "positive_obstacle": night_positive}}}}


def test_summary_compares_the_right_models():
    results = {
        "rgb": {"full": _report(0.50, 0.30, 0.00, 0.20)},
        "rgb+depth": {"full": _report(0.55, 0.40, 0.10, 0.25)},
        "rgb+depth+thermal": {"full": _report(0.60, 0.50, 0.20, 0.45),
                              "removed": {"rgb": _report(0.58, 0.4, 0.2, 0.4), "depth": _report(0.50, 0.4, 0.05, 0.4),
                                          "thermal": _report(0.40, 0.3, 0.15, 0.2)}},
    }
    summary = summarize(results)
    assert summary["miou"] == {"rgb": 0.50, "rgb+depth": 0.55, "rgb+depth+thermal": 0.60,
                               "rgb+depth+thermal+dropout": None, "rgb+depth+thermal+height": None}
    neg = summary["negative_obstacle_iou"]
    assert (neg["without_depth"], neg["with_depth"], neg["tri_modal"]) == (0.0, 0.1, 0.2)
    assert (neg["tri_modal_depth_removed"], neg["tri_modal_thermal_removed"]) == (0.05, 0.15)
    assert summary["positive_obstacle_iou_night"] == {"without_thermal": 0.25, "with_thermal": 0.45}
    lost = summary["miou_lost_when_removed"]["no_dropout"]
    assert lost == {"rgb": 0.6 - 0.58, "depth": 0.6 - 0.5, "thermal": 0.6 - 0.4}
    assert summary["miou_lost_when_removed"]["with_dropout"] is None

    text = format_summary(summary, results, "budget line")
    assert text.startswith("budget line")
    assert "without thermal 0.250 -> with thermal 0.450" in text and "n/a" in text  # the dropout model is missing
    assert [v.key for v in VARIANTS] == ["rgb", "rgb+depth", "rgb+depth+thermal", "rgb+depth+thermal+dropout",
                                         "rgb+depth+thermal+height"]
    assert summary["road_plane_residual"]["with"] is None


def test_summary_reports_what_the_road_plane_residual_buys_per_condition():
    def with_obstacles(report: dict, recall: float, near: float, phantom: float) -> dict:
        report["by_condition"]["night"]["obstacles"] = {"pothole_recall": recall, "pothole_recall_near_20m": near,
                                                        "phantom_frame_rate": phantom}
        return report

    results = {"rgb+depth+thermal": {"full": with_obstacles(_report(0.6, 0.5, 0.2, 0.45), 0.5, 0.6, 0.3)},
               "rgb+depth+thermal+height": {"full": with_obstacles(_report(0.7, 0.6, 0.5, 0.55), 0.8, 0.95, 0.05)}}
    summary = summarize(results)
    plane = summary["road_plane_residual"]
    assert plane["without"]["night"] == {"negative_obstacle_iou": 0.2, "positive_obstacle_iou": 0.45,
                                         "pothole_recall": 0.5, "pothole_recall_near_20m": 0.6,
                                         "phantom_frame_rate": 0.3}
    assert plane["with"]["night"]["pothole_recall_near_20m"] == 0.95
    text = format_summary(summary, results, "budget")
    assert "road-plane residual" in text and "0.200 -> 0.500" in text and "0.300 -> 0.050" in text
