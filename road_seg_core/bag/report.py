"""report.md and its figures for a bag evaluation (matplotlib, Agg: no display needed).

Figures: per-class IoU with each class's support (overall and per condition),
the row-normalised confusion matrix (rows: ground truth, so the diagonal is
recall), per-stage latency boxes on a log scale, and a montage of the worst and
best frames (camera | prediction | ground truth, road_seg_core.visualize).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from road_seg_core.bag.scoring import LATENCY_STAGES, Scoreboard, Tile  # noqa: E402
from road_seg_core.obstacle_metrics import NEAR_M  # noqa: E402
from road_seg_core.visualize import CAPTION_COLOR, bar_height, stack_rows, title_bar  # noqa: E402

FIGURES = {"iou": "per_class_iou.png", "confusion": "confusion_matrix.png", "latency": "latency.png",
           "montage": "montage.png"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def iou_figure(board: Scoreboard) -> plt.Figure:
    """Horizontal IoU bars per class and group (all frames, then each condition), each bar labelled with its
    IoU and the class's support (ground-truth pixels): an IoU of 0.00 on 856 pixels reads differently from
    0.00 on a million."""
    names = list(board.class_names)
    groups = [("all", board.overall, len(board.frame_scores))] + \
        [(c, cm, board.frames_by_condition[c]) for c, cm in sorted(board.by_condition.items())]
    n = len(groups)
    step = n + 0.8
    fig, ax = plt.subplots(figsize=(7.5, 1.3 + 0.26 * n * len(names) + 0.2 * len(names)), dpi=110)
    colours = plt.get_cmap("tab10")
    for g, (label, cm, frames) in enumerate(groups):
        per = cm.compute()["per_class"]
        iou = [per[c]["iou"] for c in names]
        support = [int(per[c]["support"]) for c in names]
        y = np.arange(len(names)) * step + g
        ax.barh(y, np.nan_to_num(iou), 0.85, color=colours(g % 10), label=f"{label} ({frames} frames)")
        for yi, v, sup in zip(y, iou, support):
            ax.text(np.nan_to_num(v) + 0.01, yi, f"{_fmt(v, 2)}  ({sup:,} px)", va="center", fontsize=7)
    ax.set_yticks(np.arange(len(names)) * step + (n - 1) / 2, [c.replace("_", " ") for c in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.4)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("IoU   (in brackets: ground-truth pixels of the class, the support)")
    ax.set_title("Per-class IoU")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(n, 4), frameon=False)
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> None:
    fig.savefig(path)
    plt.close(fig)


def plot_iou(board: Scoreboard, path: Path) -> None:
    _save(iou_figure(board), path)


def plot_confusion(board: Scoreboard, path: Path) -> None:
    m = board.overall.matrix.astype(np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.full_like(m, np.nan), where=rows > 0)
    names = [n.replace("_", "\n") for n in board.class_names]
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=110)
    im = ax.imshow(np.nan_to_num(norm), cmap="Blues", vmin=0, vmax=1)
    for i in range(norm.shape[0]):
        for j in range(norm.shape[1]):
            v = norm[i, j]
            ax.text(j, i, _fmt(v, 2), ha="center", va="center", fontsize=8,
                    color="white" if not math.isnan(v) and v > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("Confusion matrix (rows normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency_figure(board: Scoreboard) -> plt.Figure:
    """One box per stage on a log-scale time axis, so a 2 ms stage and a 180 ms total are both readable;
    p50 and p99 written beside each box."""
    stages = [s for s in LATENCY_STAGES if board.latency.get(s)]
    data = [np.maximum(np.asarray(board.latency[s], np.float64), 1e-3) for s in stages]
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.42 * len(stages)), dpi=110)
    ax.boxplot(data, orientation="horizontal", widths=0.6, whis=(1, 99), showfliers=True,
               flierprops={"markersize": 3, "markerfacecolor": "0.4", "markeredgecolor": "none"},
               medianprops={"color": "C3"})
    ax.set_xscale("log")
    ax.set_yticks(range(1, len(stages) + 1), stages)
    ax.invert_yaxis()
    hi = max(float(d.max()) for d in data)
    lo = min(float(d.min()) for d in data)
    ax.set_xlim(lo / 1.5, hi * 1.5)
    for i, d in enumerate(data, start=1):  # a column right of the axes: never over a box, never clipped
        p50, p99 = np.percentile(d, [50, 99])
        ax.text(1.02, i, f"p50 {p50:.2f}  p99 {p99:.2f} ms", va="center", fontsize=7,
                transform=ax.get_yaxis_transform())
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.set_xlabel("milliseconds per frame (log scale; box: quartiles, whiskers: 1st-99th percentile)")
    ax.set_title(f"Latency per stage ({len(data[0])} frames)")
    fig.tight_layout()
    return fig


def plot_latency(board: Scoreboard, path: Path) -> None:
    _save(latency_figure(board), path)


def plot_montage(worst: list[Tile], best: list[Tile], path: Path) -> None:
    """The worst and best frames, one captioned row each, as road_seg_core.visualize composes every picture."""
    rows = []
    for kind, tile in [("worst", t) for t in worst] + [("best", t) for t in best]:
        cond = f", {tile.condition}" if tile.condition else ""
        caption = f"{kind}: stamp {tile.stamp_ns}{cond}, frame mIoU {tile.score:.3f}"
        width = tile.image.shape[1]
        rows.append(np.vstack([title_bar(width, caption, bar_height(width // 3), CAPTION_COLOR), tile.image]))
    cv2.imwrite(str(path), cv2.cvtColor(stack_rows(rows), cv2.COLOR_RGB2BGR))


def write_report(out_dir: Path, metrics: dict[str, Any], board: Scoreboard) -> list[Path]:
    """Figures and report.md into `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: dict[str, str] = {}
    if board.evaluated:
        plot_iou(board, out_dir / FIGURES["iou"])
        plot_confusion(board, out_dir / FIGURES["confusion"])
        figures.update(iou=FIGURES["iou"], confusion=FIGURES["confusion"])
    if board.latency.get("total"):
        plot_latency(board, out_dir / FIGURES["latency"])
        figures["latency"] = FIGURES["latency"]
    worst, best = board.worst(), board.best()
    if worst:
        plot_montage(worst, best, out_dir / FIGURES["montage"])
        figures["montage"] = FIGURES["montage"]
    written += [out_dir / f for f in figures.values()]
    (out_dir / "report.md").write_text(render_markdown(metrics, figures))
    written.append(out_dir / "report.md")
    return written


NEAR = f"{NEAR_M:g}"


def _share(counts: dict[str, Any], numerator: str, denominator: str) -> str:
    """"0.125 (1/8)" from two counts; "n/a" when the denominator is 0 or missing."""
    total = counts.get(denominator) or 0
    return f"{counts[numerator] / total:.3f} ({counts[numerator]}/{total})" if total else "n/a"


def _obstacle_lines(obstacles: dict[str, Any] | None) -> list[str]:
    """The false-alarm / miss paragraph under the accuracy table."""
    if not obstacles:
        return []
    return [f"Negative obstacles by object: phantom frames {_share(obstacles, 'phantom_frames', 'clear_frames')} "
            "(frames whose ground truth has no pothole but the prediction shows a pothole blob larger than "
            f"{obstacles['min_blob_fraction']:g} of the image); false pothole blobs "
            f"{_share(obstacles, 'false_pothole_blobs', 'pothole_blobs')} (predicted blobs of that size touching no "
            "ground-truth pothole, in any frame); pothole recall "
            f"{_share(obstacles, 'potholes_found', 'potholes')} (ground-truth potholes any predicted pothole pixel "
            f"overlaps), nearer than {NEAR} m {_share(obstacles, 'near_potholes_found', 'near_potholes')} "
            f"(distance from the bag's depth; {obstacles['potholes_without_depth']} potholes without depth"
            + (f"; near ones with depth on at least half their pixels "
               f"{_share(obstacles, 'near_potholes_with_sensor_depth_found', 'near_potholes_with_sensor_depth')}"
               if "near_potholes_with_sensor_depth" in obstacles else "") + "). "
            + (f"Potholes are the bag's pothole ids (`/sim/pothole_ids`) in the "
               f"{obstacles['frames_with_pothole_instances']} frames with potholes that have them, elsewhere "
               "connected components of pothole pixels." if obstacles.get("frames_with_pothole_instances")
               else "A pothole is one connected component of pothole pixels."), ""]


def render_markdown(metrics: dict[str, Any], figures: dict[str, str]) -> str:
    bag, model, counts = metrics["bag"], metrics["model"], metrics["counts"]
    thr = metrics["throughput"]
    lines = [f"# Bag evaluation: `{bag['path']}`", "",
             f"- bag: {bag['storage']}, {bag['duration_s']:.1f} s, {bag['message_count']} messages",
             f"- model: `{model['checkpoint']}` ({', '.join(model['modalities'])}; input "
             f"{model['input_size'][1]}x{model['input_size'][0]}) on {model['backend']}/{model['device']}",
             f"- parameters: `{metrics['params']}`; sync queue_size {metrics['sync']['queue_size']}, "
             f"slop {metrics['sync']['slop_s']} s over {', '.join(metrics['sync']['topics'])}",
             f"- ground truth: {metrics['ground_truth'] or 'none (latency and counts only)'}",
             f"- synchronised sets {counts['synchronised_sets']}, evaluated frames {counts['evaluated_frames']}, "
             f"without ground truth {counts['frames_without_gt']}, failed sets "
             f"{sum(counts['failed_sets'].values())}",
             f"- throughput: {thr['frames_per_s']:.2f} frames/s ({thr['frames']} frames in {thr['wall_s']:.1f} s, "
             "reading and decoding included)", ""]
    acc = metrics.get("metrics")
    if acc:
        lines += ["## Accuracy", "",
                  f"mIoU **{_fmt(acc['miou'])}** (without background {_fmt(acc['miou_without_background'])}), "
                  f"drivable IoU **{_fmt(acc['drivable_iou'])}**, obstacle IoU **{_fmt(acc['obstacle_iou'])}** "
                  f"(positive + negative obstacles as the obstacle mask), pixel accuracy "
                  f"{_fmt(acc['pixel_accuracy'])}.", "",
                  "| class | IoU | precision | recall | F1 | support (px) |", "|---|---|---|---|---|---|"]
        for name, row in acc["per_class"].items():
            lines.append(f"| {name} | {_fmt(row['iou'])} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | "
                         f"{_fmt(row['f1'])} | {row['support']} |")
        lines.append("")
        lines += _obstacle_lines(acc.get("obstacles"))
        if "iou" in figures:
            lines += [f"![per-class IoU]({figures['iou']})", "", f"![confusion matrix]({figures['confusion']})", ""]
    conds = metrics.get("per_condition") or {}
    if conds:
        names = list(next(iter(conds.values()))["per_class"])
        lines += ["## Per condition", "", "| condition | frames | mIoU | obstacle IoU | "
                  + " | ".join(f"{n} IoU" for n in names) + " | phantom frames | false pothole blobs | "
                  f"pothole recall | recall < {NEAR}m |", "|---" * (8 + len(names)) + "|"]
        for cond, m in conds.items():
            ob = m.get("obstacles") or {}
            lines.append(f"| {cond} | {m['frames']} | {_fmt(m['miou'])} | {_fmt(m['obstacle_iou'])} | "
                         + " | ".join(_fmt(m["per_class"][n]["iou"]) for n in names)
                         + f" | {_share(ob, 'phantom_frames', 'clear_frames')} | "
                           f"{_share(ob, 'false_pothole_blobs', 'pothole_blobs')} | "
                           f"{_share(ob, 'potholes_found', 'potholes')} | "
                           f"{_share(ob, 'near_potholes_found', 'near_potholes')} |")
        lines.append("")
    lat = metrics.get("latency_ms") or {}
    if lat:
        lines += ["## Latency (ms per frame)", "", "| stage | mean | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
        for stage, s in lat.items():
            lines.append(f"| {stage} | {_fmt(s['mean'], 2)} | {_fmt(s['p50'], 2)} | {_fmt(s['p90'], 2)} | "
                         f"{_fmt(s['p99'], 2)} | {_fmt(s['max'], 2)} |")
        lines += ["", "decode: deserialising and decoding the set's messages; convert: frame assembly (colour and "
                  "depth units); total: decode + convert + preprocess + model + postprocess.", ""]
        if "latency" in figures:
            lines += [f"![latency]({figures['latency']})", ""]
    if "montage" in figures:
        lines += ["## Worst and best frames", "", "Each row: camera (left image) | prediction | ground truth, "
                  "ranked by the frame's mIoU; class colours as in the node's overlay.", "",
                  f"![worst and best frames]({figures['montage']})", ""]
    lines += ["## Messages", "", "| topic | messages read | rejected |", "|---|---|---|"]
    for topic, n in counts["messages"].items():
        rej = counts["rejected"].get(topic, {})
        lines.append(f"| `{topic}` | {n} | {', '.join(f'{r}: {c}' for r, c in rej.items()) or 0} |")
    lines.append("")
    return "\n".join(lines)

