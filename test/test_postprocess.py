import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_core.postprocess import colorize, make_masks, overlay, upsample_labels


def _labels() -> np.ndarray:
    lab = np.zeros((4, 6), np.uint8)
    lab[2:, :] = L.DRIVABLE
    lab[3, 0] = L.POSITIVE_OBSTACLE
    lab[3, 5] = L.NEGATIVE_OBSTACLE
    return lab


def test_masks_at_left_resolution():
    rgb = np.full((8, 12, 3), 100, np.uint8)
    m = make_masks(_labels(), rgb, (8, 12), with_overlay=True)
    assert m.labels.shape == m.drivable.shape == m.obstacle.shape == (8, 12)
    assert m.overlay.shape == (8, 12, 3) and m.overlay.dtype == np.uint8
    np.testing.assert_array_equal(m.drivable, np.where(m.labels == L.DRIVABLE, 255, 0))
    np.testing.assert_array_equal(m.obstacle, np.where(np.isin(m.labels, L.OBSTACLE_CLASSES), 255, 0))
    # nearest upsampling keeps ids: each source pixel becomes a 2x2 block
    np.testing.assert_array_equal(m.labels, np.kron(_labels(), np.ones((2, 2), np.uint8)))


def test_no_overlay_unless_asked():
    m = make_masks(_labels(), np.zeros((4, 6, 3), np.uint8), (4, 6))
    assert m.overlay is None


def test_overlay_keeps_background_and_tints_classes():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    lab = _labels()
    ov = overlay(rgb, lab, alpha=0.5)
    np.testing.assert_array_equal(ov[lab == L.BACKGROUND], rgb[lab == L.BACKGROUND])
    expected = ((100 + L.CLASS_COLORS[L.DRIVABLE].astype(int)) / 2).round()
    assert np.abs(ov[2, 2].astype(int) - expected).max() <= 1


def test_colorize_and_upsample():
    lab = _labels()
    np.testing.assert_array_equal(colorize(lab)[3, 0], L.CLASS_COLORS[L.POSITIVE_OBSTACLE])
    assert upsample_labels(lab, (4, 6)) is not None and upsample_labels(lab, (4, 6)).shape == (4, 6)


def test_the_overlay_of_a_frame_kept_in_the_cameras_order_shows_its_colours(tiny_checkpoint):
    """The node keeps a ZED's BGRA as it came; the overlay (RViz) must still show RGB, and without an overlay
    no full-size RGB image is made at all."""
    import cv2

    from road_seg_core.engines import create_engine
    from road_seg_core.frames import SensorFrame
    from road_seg_core.pipeline import SegmentationPipeline

    rng = np.random.default_rng(5)
    bgra = rng.integers(0, 256, (180, 320, 4), dtype=np.uint8)
    rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)
    pipeline = SegmentationPipeline(create_engine(tiny_checkpoint, device="cpu"))
    plain = SensorFrame.from_colour(bgra, "bgra8")
    assert pipeline.run(plain).masks.overlay is None and plain.__dict__.get("_rgb") is None
    frame = SensorFrame.from_colour(bgra, "bgra8")
    masks = pipeline.run(frame, with_overlay=True).masks
    reference = pipeline.run(SensorFrame(rgb=rgb), with_overlay=True).masks
    np.testing.assert_array_equal(masks.labels, reference.labels)
    np.testing.assert_array_equal(masks.overlay, reference.overlay)
    background = masks.labels == L.BACKGROUND
    np.testing.assert_array_equal(masks.overlay[background], rgb[background])


@pytest.mark.parametrize("src, dst", [((320, 512), (720, 1280)), ((256, 448), (720, 1280)), ((7, 5), (23, 3)),
                                      ((9, 16), (9, 40)), ((360, 640), (1080, 1920)), ((10, 10), (4, 30))])
def test_upsampled_labels_are_exactly_cv2s_nearest_resize(src, dst):
    """Rows copied by index after a column-only resize must pick the very pixels cv2.INTER_NEAREST_EXACT picks,
    for labels and for the 3-channel colour image the overlay upsamples."""
    import cv2

    rng = np.random.default_rng(sum(src) + sum(dst))
    for shape in (src, src + (3,)):
        small = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = cv2.resize(small, (dst[1], dst[0]), interpolation=cv2.INTER_NEAREST_EXACT)
        np.testing.assert_array_equal(upsample_labels(small, dst), expected)


@pytest.mark.parametrize("src, dst", [((4, 4), (9, 9)), ((320, 512), (720, 1280)), ((320, 512), (360, 640)),
                                      ((7, 5), (23, 13))])
def test_upsampled_labels_are_not_shifted(src, dst):
    """An object keeps its centre when its labels are upsampled (centre-aligned nearest): cv2's plain
    INTER_NEAREST samples each output pixel's top-left corner and moved every label about half an output pixel
    up and left (at 1.25x: 0.4 px), which cost drive 7003 0.018 positive-obstacle IoU at 640x360."""
    block = np.zeros(src, np.uint8)
    block[src[0] // 3: src[0] // 3 + max(1, src[0] // 6), src[1] // 5: src[1] // 5 + max(1, src[1] // 7)] = 1
    rows, cols = np.nonzero(upsample_labels(block, dst))
    src_rows, src_cols = np.nonzero(block)
    for got, want, scale in ((rows, src_rows, src[0] / dst[0]), (cols, src_cols, src[1] / dst[1])):
        # Both centres in source-pixel units (pixel i spans [i, i + 1)); nearest may move an edge by half an
        # output pixel at most, so the centre by no more than that.
        assert abs((got.mean() + 0.5) * scale - (want.mean() + 0.5)) <= 0.5 * scale + 1e-9


def test_mirror_symmetric_labels_stay_symmetric():
    """4 -> 9 px has no half-way ties: a centre-aligned resize commutes with flipping the image."""
    small = np.array([[0, 1, 1, 0], [2, 3, 3, 2], [2, 3, 3, 2], [0, 1, 1, 0]], np.uint8)
    up = upsample_labels(small, (9, 9))
    np.testing.assert_array_equal(up, up[::-1, ::-1])
