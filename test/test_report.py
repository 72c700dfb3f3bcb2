"""The bag report's figures: IoU bars carry each class's support, latency per stage on a log scale, the montage
is road_seg_core.visualize's picture."""
from __future__ import annotations

import cv2
import numpy as np

from road_seg_core import labels as L
from road_seg_core.bag.report import iou_figure, latency_figure, plot_iou, plot_latency, plot_montage
from road_seg_core.bag.scoring import LATENCY_STAGES, Scoreboard, make_tile
from road_seg_core.visualize import legend_strip, bar_height

H, W = 48, 64


def _board() -> Scoreboard:
    rng = np.random.default_rng(0)
    board = Scoreboard(keep=2)
    for i in range(6):
        gt = np.full((H, W), L.DRIVABLE, np.uint8)
        gt[:8] = L.BACKGROUND
        gt[20:24, 30:34] = L.NEGATIVE_OBSTACLE  # 16 px a frame: a rare class
        gt[30:40, 5:15] = L.POSITIVE_OBSTACLE
        pred = gt.copy()
        pred[20:24, 30:34] = L.DRIVABLE  # the rare class missed: IoU 0
        pred[rng.integers(0, H, 50), rng.integers(0, W, 50)] = L.BACKGROUND
        rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        board.add_frame(1000 + i, rgb, pred, gt, "day" if i % 2 else "night")
        board.add_timings({"decode": 0.3, "convert": 0.1, "preprocess": 2.0 + i * 0.1, "model": 150.0 + i,
                           "postprocess": 0.5, "total": 153.0 + i})
    return board


def test_iou_bars_show_each_class_support_beside_the_score(tmp_path):
    board = _board()
    fig = iou_figure(board)
    texts = [t.get_text() for t in fig.axes[0].texts]
    per = board.overall.compute()["per_class"]
    assert per["negative_obstacle"]["support"] == 6 * 16
    assert "0.00  (96 px)" in texts  # the missed rare class says how few pixels it had
    for name in L.CLASS_NAMES:
        assert any(t.endswith(f"({int(per[name]['support']):,} px)") for t in texts), name
    # one label per bar: all frames plus each condition
    assert len(texts) == len(L.CLASS_NAMES) * (1 + len(board.by_condition))
    plot_iou(board, tmp_path / "iou.png")
    assert (tmp_path / "iou.png").read_bytes()[:4] == b"\x89PNG"


def test_latency_is_one_box_per_stage_on_a_log_axis(tmp_path):
    board = _board()
    fig = latency_figure(board)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(LATENCY_STAGES)
    assert any(t.get_text().startswith("p50 0.30") for t in ax.texts)  # the 0.3 ms stage is legible on its own
    assert not any(p.get_alpha() not in (None, 1) for p in ax.patches)  # nothing translucent blended
    plot_latency(board, tmp_path / "lat.png")
    assert (tmp_path / "lat.png").read_bytes()[:4] == b"\x89PNG"


def test_montage_rows_are_the_composed_picture_with_one_legend(tmp_path):
    board = _board()
    worst, best = board.worst(), board.best()
    path = tmp_path / "montage.png"
    plot_montage(worst, best, path)
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    tile = worst[0].image
    assert img.shape[1] == tile.shape[1]
    caption = bar_height(tile.shape[1] // 3)
    assert np.array_equal(img[caption:caption + tile.shape[0]], tile)  # first row: caption, then the tile
    legend = legend_strip(tile.shape[1], bar_height(tile.shape[1] // 3))
    assert np.array_equal(img[-legend.shape[0]:], legend)
    rgb = np.zeros((H, W, 3), np.uint8)
    lab = np.ones((H, W), np.uint8)
    assert make_tile(rgb, lab, lab).shape[1] == 3 * W + 2 * 4


def test_a_bag_depth_at_another_resolution_gives_the_potholes_their_distance():
    """The bag's depth is resized to the ground truth's size (it used to name an unimported cv2 there)."""
    board = Scoreboard(keep=0)  # `eval-bag --montage 0`: no tiles kept
    gt = np.full((H, W), L.DRIVABLE, np.uint8)
    gt[20:24, 30:34] = L.NEGATIVE_OBSTACLE  # one pothole, found
    gt[40:44, 4:8] = L.NEGATIVE_OBSTACLE  # one missed
    pred = gt.copy()
    pred[40:44, 4:8] = L.DRIVABLE
    depth = np.full((H * 2, W * 2), 12.0, np.float32)  # measured everywhere, 12 m: both potholes are near
    depth[80:86, 8:16] = np.nan  # the missed one lies mostly in a stereo hole: 3 of its 4 rows unmeasured
    board.add_frame(1, np.zeros((H, W, 3), np.uint8), pred, gt, "night", depth=depth)
    obstacles = board.obstacles.compute()
    assert (obstacles["near_potholes"], obstacles["near_potholes_found"]) == (2, 1)  # both 12 m away
    assert obstacles["potholes_without_depth"] == 0
    assert (obstacles["near_potholes_with_sensor_depth"], obstacles["near_potholes_with_sensor_depth_found"]) == (1, 1)
    assert board.worst() == board.best() == [] and board.evaluated == 1


def test_pothole_ids_make_one_pothole_of_a_crack_broken_into_dashes():
    """Three dashes of one crack (id 7) and a pothole (id 2), the crack found on one dash: by the ids two potholes,
    both found; without them four components, two found."""
    gt = np.full((H, W), L.DRIVABLE, np.uint8)
    ids = np.zeros((H, W), np.uint16)
    for x0 in (10, 20, 30):
        gt[30, x0:x0 + 5] = L.NEGATIVE_OBSTACLE
        ids[30, x0:x0 + 5] = 7
    gt[40:44, 50:54] = L.NEGATIVE_OBSTACLE
    ids[40:44, 50:54] = 2
    pred = gt.copy()
    pred[30, 20:35] = L.DRIVABLE  # two of the crack's three dashes missed
    counts = {}
    for name, instances in (("ids", ids), ("components", None)):
        board = Scoreboard(keep=0)
        board.add_frame(1, np.zeros((H, W, 3), np.uint8), pred, gt, "day", pothole_ids=instances)
        counts[name] = board.obstacles.compute()
    assert (counts["ids"]["potholes"], counts["ids"]["potholes_found"]) == (2, 2)
    assert (counts["components"]["potholes"], counts["components"]["potholes_found"]) == (4, 2)
    assert counts["ids"]["frames_with_pothole_instances"] == 1 and counts["components"]["frames_with_pothole_instances"] == 0
