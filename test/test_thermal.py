"""Thermal normalisation (fixed / percentile) and homography warping onto the left image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from road_seg_core.thermal import (
    MIN_VALUE,
    ThermalConfig,
    normalize_thermal,
    resize_homography,
    warp_to_left,
)

FIXED = ThermalConfig(mode="fixed", fixed_range=(7000, 9000))


def _boson_like(seed: int = 0, shape=(64, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.normal(7800, 150, shape)
    raw[20:30, 30:50] = 8700  # warm vehicle
    return raw.astype(np.uint16)


def test_fixed_range_is_linear_and_clipped():
    raw = np.array([[6000, 7000, 8000], [9000, 12000, 7500]], np.uint16)
    out = normalize_thermal(raw, FIXED)
    assert out.dtype == np.float32
    span = 1.0 - 1.0 / 255.0
    expected = 1.0 / 255.0 + span * np.clip((raw.astype(np.float64) - 7000) / 2000, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out[0, 0] == MIN_VALUE and out[1, 1] == 1.0  # beyond the range: clipped exactly


def test_output_never_uses_the_no_data_value():
    for config in (FIXED, ThermalConfig()):
        out = normalize_thermal(_boson_like(1), config)
        assert out.min() >= MIN_VALUE and out.max() <= 1.0


def test_percentile_adapts_to_offset_and_gain_but_fixed_does_not():
    raw = _boson_like(2)
    shifted = (raw.astype(np.float64) * 1.5 - 3000).astype(np.uint16)  # sensor drift / other gain mode
    percentile = ThermalConfig(mode="percentile", percentiles=(1.0, 99.0))
    np.testing.assert_allclose(normalize_thermal(raw, percentile), normalize_thermal(shifted, percentile), atol=0.01)
    assert np.abs(normalize_thermal(raw, FIXED) - normalize_thermal(shifted, FIXED)).mean() > 0.1


def test_percentile_bounds_match_numpy():
    raw = _boson_like(3)
    out = normalize_thermal(raw, ThermalConfig(percentiles=(5.0, 95.0)))
    lo, hi = np.percentile(raw, [5.0, 95.0], method="inverted_cdf")
    np.testing.assert_allclose(out[raw <= lo], MIN_VALUE, atol=1e-6)
    np.testing.assert_allclose(out[raw >= hi], 1.0, atol=1e-6)
    inside = (raw > lo) & (raw < hi)
    one_count = (1.0 - MIN_VALUE) / (hi - lo)
    assert inside.mean() > 0.8
    assert np.all((out[inside] > MIN_VALUE + 0.5 * one_count) & (out[inside] < 1.0 - 0.5 * one_count))


def test_percentile_is_robust_to_hot_pixels():
    raw = _boson_like(4)
    spoiled = raw.copy()
    spoiled[0, :5] = 65535  # dead / saturated pixels must not squash the scene
    cfg = ThermalConfig()
    clean, dirty = normalize_thermal(raw, cfg), normalize_thermal(spoiled, cfg)
    np.testing.assert_allclose(dirty[1:], clean[1:], atol=1e-6)


def test_uint8_and_float_inputs():
    raw8 = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    out = normalize_thermal(raw8, ThermalConfig(percentiles=(0.0, 100.0)))
    np.testing.assert_allclose(out[0, [0, 255]], [MIN_VALUE, 1.0], atol=1e-6)
    np.testing.assert_allclose(out, normalize_thermal(raw8.astype(np.float32), ThermalConfig(percentiles=(0.0, 100.0))),
                               atol=1e-6)


def test_non_finite_float_pixels_are_no_data():
    raw = _boson_like(5).astype(np.float32)
    raw[3, 4], raw[5, 6] = np.nan, np.inf
    for config in (FIXED, ThermalConfig()):
        out = normalize_thermal(raw, config)
        assert out[3, 4] == 0.0 and out[5, 6] == 0.0
        assert np.count_nonzero(out == 0) == 2
    assert not np.any(normalize_thermal(np.full((4, 4), np.nan, np.float32)))


def test_uniform_image_is_centred_not_blown_up():
    out = normalize_thermal(np.full((8, 8), 8000, np.uint16), ThermalConfig())
    np.testing.assert_allclose(out, 0.5 + 0.5 / 255.0, atol=1e-6)
    # Noise of +-2 counts with min_span 100 stays near the middle instead of spanning 0..1.
    noisy = (8000 + np.random.default_rng(6).integers(-2, 3, (32, 32))).astype(np.uint16)
    out = normalize_thermal(noisy, ThermalConfig(min_span=100.0))
    assert 0.45 < out.min() and out.max() < 0.55


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "auto"}, {"percentiles": (99.0, 1.0)}, {"percentiles": (0.0, 101.0)}, {"fixed_range": (9000, 7000)},
     {"homography": [[1, 0], [0, 1]]}, {"homography": [[1, 0, 0], [0, 0, 0], [0, 0, 1]]}, {"min_span": -1.0}],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        ThermalConfig(**kwargs)


def test_config_from_yaml_style_lists_is_hashable():
    config = ThermalConfig(mode="fixed", fixed_range=[7000, 9000], percentiles=[2, 98],
                           homography=[[2, 0, 0], [0, 2, 0], [0, 0, 1]])
    assert config.fixed_range == (7000.0, 9000.0) and config.percentiles == (2.0, 98.0)
    np.testing.assert_array_equal(config.homography_matrix, np.diag([2.0, 2.0, 1.0]))
    hash(config)


def _thermal01(shape=(48, 64), seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 1.0, shape).astype(np.float32)


def test_identity_same_size_is_unchanged():
    t = _thermal01()
    np.testing.assert_array_equal(warp_to_left(t, np.eye(3), t.shape), t)
    np.testing.assert_array_equal(warp_to_left(t, ThermalConfig().homography, t.shape), t)


def test_identity_to_larger_left_image_covers_top_left_only():
    t = _thermal01((48, 64))
    out = warp_to_left(t, np.eye(3), (72, 128))
    assert out.shape == (72, 128) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:48, :64], t)
    assert not np.any(out[48:]) and not np.any(out[:, 64:])


def test_integer_translation_is_exact_and_zero_outside():
    t = _thermal01()
    tx, ty = 10, -5
    out = warp_to_left(t, [[1, 0, tx], [0, 1, ty], [0, 0, 1]], (48, 64))
    np.testing.assert_array_equal(out[0:43, 10:64], t[5:48, 0:54])
    assert not np.any(out[:, :10]) and not np.any(out[43:])


def test_scaling_homography_matches_resize_and_never_blends_with_outside():
    t = _thermal01((32, 40))
    h = resize_homography((32, 40), (64, 80))
    out = warp_to_left(t, h, (64, 80))
    reference = cv2.resize(t, (80, 64), interpolation=cv2.INTER_LINEAR)
    inside = out > 0
    assert inside.mean() > 0.9
    np.testing.assert_allclose(out[inside], reference[inside], atol=2e-3)
    # Edge pixels are dropped rather than darkened by blending with the 0 border: no fake cold readings.
    assert out[inside].min() >= t.min() - 1e-6


def test_perspective_homography_matches_opencv_warp():
    t = cv2.GaussianBlur(_thermal01((60, 80)), (0, 0), 2.0)
    h = np.array([[1.1, 0.05, 12.0], [-0.03, 1.05, 6.0], [2e-4, -1e-4, 1.0]])
    out = warp_to_left(t, h, (90, 120))
    reference = cv2.warpPerspective(t, h, (120, 90), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inside = out > 0
    assert 0.3 < inside.mean() < 0.9
    np.testing.assert_array_equal(out[inside], reference[inside])
    # Only the rim where OpenCV blends in its zero border (at most 2 px wide) is dropped.
    full = cv2.erode((reference > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.all(inside[full]) and not np.any(inside[reference == 0])
    # Same result when the homography is given up to scale (cached geometry is keyed on the normalised matrix).
    np.testing.assert_array_equal(warp_to_left(t, 2.0 * h, (90, 120)), out)


def test_no_data_pixels_do_not_bleed_into_neighbours():
    t = np.full((40, 40), 0.8, np.float32)
    t[20, 20] = 0.0  # a hole inside the thermal image
    h = [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]  # half-pixel shift: every output blends 4 inputs
    out = warp_to_left(t, h, (40, 40))
    values = np.unique(out)
    np.testing.assert_allclose(values, [0.0, 0.8], atol=1e-6)
    assert np.count_nonzero(out[18:23, 18:23] == 0) == 4  # the four outputs touching the hole


def test_warp_rejects_bad_arguments():
    with pytest.raises(ValueError):
        warp_to_left(np.ones((4, 4, 3), np.float32), np.eye(3), (4, 4))
    with pytest.raises(ValueError):
        warp_to_left(np.ones((4, 4), np.float32), np.eye(2), (4, 4))
    with pytest.raises(ValueError):
        warp_to_left(np.ones((4, 4), np.float32), np.eye(3), (0, 4))


def test_the_percentile_sample_grid_keeps_the_range_of_the_whole_image():
    from road_seg_core.thermal import percentile_stride, thermal_range

    assert percentile_stride((180, 320)) == 1 and percentile_stride((720, 1280)) == 4
    raw = _boson_like(4, shape=(720, 1280))
    from road_seg_core.thermal import _integer_percentiles

    lo, hi = thermal_range(raw, ThermalConfig())
    full_lo, full_hi = _integer_percentiles(raw, (1.0, 99.0))  # every pixel
    span = full_hi - full_lo
    assert abs(lo - full_lo) < 0.02 * span and abs(hi - full_hi) < 0.02 * span  # a few counts


def test_warping_counts_then_normalising_matches_normalising_then_warping():
    from road_seg_core.thermal import resize_homography, thermal_in_view

    rng = np.random.default_rng(8)
    raw = (7600 + 600 * np.sin(np.arange(640) / 25.0)[None, :] * np.cos(np.arange(512) / 30.0)[:, None]
           + rng.normal(0, 20, (512, 640))).astype(np.uint16)
    raw[100:140, 200:260] = 15000  # a hot engine block, saturated by the percentiles
    homography = resize_homography((512, 640), (256, 448)) @ np.array([[1.0, 0.02, 5.0], [0.0, 1.0, -8.0],
                                                                       [0.0, 0.0, 1.0]])
    fast = thermal_in_view(raw, ThermalConfig(), homography, (256, 448))
    reference = warp_to_left(normalize_thermal(raw, ThermalConfig()), homography, (256, 448))
    assert ((fast > 0) == (reference > 0)).all()  # the same view coverage
    diff = np.abs(fast - reference)
    # Beyond rounding they differ only where a bilinear footprint holds a clipped pixel (the saturated block's
    # rim, the few percent beyond the percentiles): clipping before or after blending.
    assert diff.mean() < 1e-3 and np.percentile(diff, 98) < 2e-3
    hot = cv2.warpPerspective((raw >= 15000).astype(np.float32), homography, (448, 256), flags=cv2.INTER_LINEAR)
    rim = (hot > 0) & (hot < 1)
    assert rim.any() and int(np.argmax(diff)) in set(np.flatnonzero(rim).tolist())
    floats = raw.astype(np.float32)
    floats[300, 300] = np.nan  # float images keep the old order, so a hole stays a hole
    out = thermal_in_view(floats, ThermalConfig(), homography, (256, 448))
    np.testing.assert_array_equal(out, warp_to_left(normalize_thermal(floats, ThermalConfig()), homography, (256, 448)))
