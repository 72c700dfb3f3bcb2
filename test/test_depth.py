"""Depth/disparity sanitising and conversion, and SGBM on synthetic stereo pairs with known disparity."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from road_seg_core.depth import (
    SgbmConfig,
    depth_to_disparity,
    disparity_to_depth,
    rescale_disparity,
    sanitize,
    stereo_disparity,
    zero_invalid,
)
from road_seg_core.frames import StereoIntrinsics

FX, BASELINE = 700.0, 0.12


def test_sanitize_invalid_values_become_zero():
    values = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.4, 0.5, 3.0, 40.0, 40.5], np.float64)
    out, valid = sanitize(values, 0.5, 40.0)
    assert out.dtype == np.float32 and valid.dtype == bool
    np.testing.assert_array_equal(valid, [False] * 6 + [True, True, True, False])
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, 0.5, 3.0, 40.0, 0])
    assert np.isnan(values[0])  # input untouched


def test_sanitize_default_bounds_reject_only_non_positive_and_non_finite():
    out, valid = sanitize(np.array([np.nan, np.inf, 0.0, -2.0, 1e-3, 1e6], np.float32))
    np.testing.assert_array_equal(valid, [False, False, False, False, True, True])
    np.testing.assert_array_equal(out[4:], np.float32([1e-3, 1e6]))
    assert not np.any(out[:4])


def test_sanitize_negative_min_still_rejects_non_positive():
    _, valid = sanitize(np.array([-1.0, 0.0, 1.0]), -5.0, 10.0)
    np.testing.assert_array_equal(valid, [False, False, True])


def test_sanitize_keeps_batch_shape_and_accepts_integers():
    batch = np.arange(-3, 37, dtype=np.int32).reshape(2, 1, 4, 5)
    out, valid = sanitize(batch, 1.0, 30.0)
    assert out.shape == valid.shape == batch.shape and out.dtype == np.float32
    np.testing.assert_array_equal(valid, (batch >= 1) & (batch <= 30))
    np.testing.assert_array_equal(out, np.where(valid, batch, 0))


def test_sanitize_rejects_inverted_bounds():
    with pytest.raises(ValueError):
        sanitize(np.ones(3), 10.0, 1.0)


@pytest.mark.parametrize("bounds", [(0.3, 40.0), (1e-3, np.inf), (0.0, np.inf), (-5.0, 10.0), (0.5, 0.5)])
def test_zero_invalid_in_place_equals_sanitize_at_every_edge(bounds):
    f32 = np.float32
    lo, hi = (f32(max(b, np.finfo(f32).tiny)) if i == 0 else f32(min(b, np.finfo(f32).max))
              for i, b in enumerate(bounds))
    with np.errstate(over="ignore"):  # the float32 above the largest one is inf: one more edge, on purpose
        edges = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, np.finfo(f32).tiny, np.finfo(f32).tiny / 2, 1e-30, 5.0,
                 lo, np.nextafter(lo, f32(-1)), np.nextafter(lo, f32(2)), hi, np.nextafter(hi, f32(0)),
                 np.nextafter(hi, f32(np.inf)), np.finfo(f32).max]
    rng = np.random.default_rng(1)
    random = rng.uniform(-2.0, 60.0, 400).astype(f32)
    random[rng.random(400) < 0.2] = np.nan
    for values in (np.array(edges, f32), random.reshape(20, 20), random.reshape(2, 10, 20)):
        expected, _ = sanitize(values, *bounds)
        work = values.copy()
        assert zero_invalid(work, *bounds) is work  # written in place
        np.testing.assert_array_equal(work, expected)


def test_zero_invalid_refuses_what_it_cannot_write_in_place():
    with pytest.raises(ValueError, match="float32"):
        zero_invalid(np.ones(3, np.float64))
    frozen = np.ones(3, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        zero_invalid(frozen)
    with pytest.raises(ValueError, match="min_value"):
        zero_invalid(np.ones(3, np.float32), 10.0, 1.0)


def test_depth_disparity_known_values():
    depth = np.array([[8.4, 84.0], [np.nan, 0.0]], np.float32)
    disparity = depth_to_disparity(depth, FX, BASELINE)
    np.testing.assert_allclose(disparity, [[10.0, 1.0], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(disparity_to_depth(disparity, FX, BASELINE), [[8.4, 84.0], [0.0, 0.0]], rtol=1e-6)


def test_depth_disparity_round_trip_and_invalid():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 60.0, (24, 32)).astype(np.float32)
    holes = rng.random(depth.shape) < 0.2
    depth[holes] = rng.choice(np.float32([np.nan, np.inf, -np.inf, 0.0, -3.0]), holes.sum())
    disparity = depth_to_disparity(depth, FX, BASELINE)
    assert disparity.dtype == np.float32 and np.all(np.isfinite(disparity))
    np.testing.assert_array_equal(disparity > 0, ~holes)
    back = disparity_to_depth(disparity, FX, BASELINE)
    np.testing.assert_allclose(back[~holes], depth[~holes], rtol=1e-5)
    assert not np.any(back[holes])


@pytest.mark.parametrize("fx,baseline", [(0.0, 0.12), (700.0, 0.0), (-1.0, 0.12), (math.nan, 0.12)])
def test_conversion_rejects_bad_calibration(fx, baseline):
    with pytest.raises(ValueError):
        depth_to_disparity(np.ones((2, 2)), fx, baseline)
    with pytest.raises(ValueError):
        disparity_to_depth(np.ones((2, 2)), fx, baseline)


def test_rescale_disparity_matches_disparity_of_scaled_intrinsics():
    """Resizing a disparity map (nearest) and rescaling equals computing it with the resized camera."""
    intr = StereoIntrinsics(fx=FX, fy=FX, cx=320, cy=180, baseline_m=BASELINE, width=640, height=360)
    rng = np.random.default_rng(1)
    depth = np.repeat(np.repeat(rng.uniform(1.0, 50.0, (90, 160)).astype(np.float32), 4, 0), 4, 1)
    depth[:10] = np.nan
    full = depth_to_disparity(depth, intr.fx, intr.baseline_m)
    small = intr.scaled(320, 180)
    resized = cv2.resize(full, (320, 180), interpolation=cv2.INTER_NEAREST_EXACT)
    expected = depth_to_disparity(cv2.resize(depth, (320, 180), interpolation=cv2.INTER_NEAREST_EXACT),
                                  small.fx, small.baseline_m)
    np.testing.assert_allclose(rescale_disparity(resized, 320 / 640), expected, rtol=1e-6)
    assert not np.any(rescale_disparity(resized, 0.5)[:2])  # no-measurement stays 0


@pytest.mark.parametrize("scale", [0.0, -0.5, math.inf])
def test_rescale_disparity_rejects_bad_scale(scale):
    with pytest.raises(ValueError):
        rescale_disparity(np.ones((2, 2), np.float32), scale)


@pytest.mark.parametrize(
    "kwargs", [{"num_disparities": 100}, {"num_disparities": 0}, {"block_size": 4}, {"mode": "fast"},
               {"downscale": 0}, {"p1": 100, "p2": 50}]
)
def test_sgbm_config_validation(kwargs):
    with pytest.raises(ValueError):
        SgbmConfig(**kwargs)


def test_sgbm_default_penalties_follow_opencv_recommendation():
    config = SgbmConfig()
    assert config.penalties == (8 * 25, 32 * 25)
    assert config.num_disparities % 16 == 0


def test_sgbm_config_for_width_keeps_the_near_depth_limit():
    config = SgbmConfig(block_size=7)
    assert config.for_width(1280).num_disparities == 128
    assert config.for_width(320).num_disparities == 32
    assert config.for_width(400).num_disparities == 48  # 40 rounded up to a multiple of 16
    assert config.for_width(64).num_disparities == 16
    assert config.for_width(2560).num_disparities == 256
    assert config.for_width(320).block_size == 7
    with pytest.raises(ValueError):
        config.for_width(0)


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """Band-limited random texture: matchable, and sub-pixel shifts of it are well defined."""
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.0)
    smooth -= smooth.min()
    return (smooth * (255.0 / smooth.max())).astype(np.uint8)


def _stereo_pair(disparity_of_row: np.ndarray, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Left/right RGB pair where left pixel (x, y) appears at right pixel (x - d(y), y)."""
    margin = int(np.ceil(disparity_of_row.max())) + 2
    texture = _texture(height, width + margin, seed)
    left = texture[:, :width]
    xs = np.arange(width, dtype=np.float32)[None, :] + disparity_of_row.astype(np.float32)[:, None]
    ys = np.repeat(np.arange(height, dtype=np.float32)[:, None], width, axis=1)
    right = cv2.remap(texture, xs, ys, interpolation=cv2.INTER_CUBIC)  # right(x) = left(x + d)
    rgb = lambda grey: np.repeat(grey[:, :, None], 3, axis=2)  # noqa: E731
    return rgb(left), rgb(right)


def _check_recovered(disparity: np.ndarray, truth: np.ndarray, first_column: int, min_valid: float) -> None:
    assert disparity.dtype == np.float32 and disparity.shape == truth.shape
    region, expected = disparity[:, first_column:], truth[:, first_column:]
    valid = region > 0
    assert valid.mean() > min_valid, f"valid fraction {valid.mean():.2f}"
    error = np.abs(region[valid] - expected[valid])
    assert np.median(error) < 1.0, f"median error {np.median(error):.2f} px"
    assert np.mean(error < 2.0) > 0.9
    assert not np.any(disparity < 0) and np.all(np.isfinite(disparity))


def test_sgbm_recovers_constant_disparity():
    height, width, d = 160, 320, 17.0
    left, right = _stereo_pair(np.full(height, d), height, width)
    config = SgbmConfig(num_disparities=48)
    disparity = stereo_disparity(left, right, config)
    _check_recovered(disparity, np.full((height, width), d, np.float32), config.num_disparities, min_valid=0.8)
    # OpenCV leaves the columns it cannot search without a match: they must read as "no measurement".
    assert not np.any(disparity[:, : config.num_disparities - 1])


def test_sgbm_recovers_ground_plane_with_default_config():
    """Disparity growing linearly towards the bottom rows, like a road seen by a forward camera."""
    height, width = 192, 480
    rows = 4.0 + 40.0 * np.arange(height) / (height - 1)
    left, right = _stereo_pair(rows, height, width, seed=1)
    disparity = stereo_disparity(left, right)
    truth = np.repeat(rows.astype(np.float32)[:, None], width, axis=1)
    _check_recovered(disparity, truth, SgbmConfig().num_disparities, min_valid=0.7)


def test_sgbm_downscale_returns_full_size_disparity_in_full_size_pixels():
    height, width = 160, 384
    rows = 10.0 + 20.0 * np.arange(height) / (height - 1)
    left, right = _stereo_pair(rows, height, width, seed=2)
    disparity = stereo_disparity(left, right, SgbmConfig(num_disparities=32, downscale=2))
    truth = np.repeat(rows.astype(np.float32)[:, None], width, axis=1)
    _check_recovered(disparity, truth, 2 * 32, min_valid=0.7)


def test_sgbm_accepts_grey_and_rejects_mismatched_pairs():
    left, right = _stereo_pair(np.full(64, 8.0), 64, 128)
    grey = stereo_disparity(left[:, :, 0], right[:, :, 0], SgbmConfig(num_disparities=16))
    np.testing.assert_array_equal(grey, stereo_disparity(left, right, SgbmConfig(num_disparities=16)))
    with pytest.raises(ValueError):
        stereo_disparity(left, right[:, :-1])
    with pytest.raises(ValueError):
        stereo_disparity(left.astype(np.float32), right.astype(np.float32))
