"""Road-plane fit and residual height on synthetic geometry with known planes, dips, holes and outliers."""
import numpy as np
import pytest

from road_seg_core.depth import sanitize
from road_seg_core.frames import SensorFrame, StereoIntrinsics
from road_seg_core.preprocess import Preprocessor
from road_seg_core.road_plane import (HEIGHT_DATUM_M, RoadPlane, RoadPlaneConfig, RoadPlaneTracker, encode_height,
                                      fit_road_plane, height_code, pixel_rays, residual_height)

H, W = 96, 160
FX = FY = 120.0
CX, CY = (W - 1) / 2.0, (H - 1) / 2.0


def plane_depth(plane: RoadPlane, shape=(H, W), fx=FX, fy=FY, cx=CX, cy=CY, max_depth=60.0) -> np.ndarray:
    """Depth (Z) where each pixel's ray meets `plane`; 0 above the horizon or beyond max_depth."""
    xr, yr = pixel_rays(shape, fx, fy, cx, cy)
    nx, ny, nz = plane.normal
    denominator = nx * xr + ny * yr + nz  # n . ray(Z=1); the ray meets the road where n . X = -h
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(denominator < 0, -plane.height / denominator, 0.0)
    return np.where((z > 0) & (z < max_depth), z, 0.0).astype(np.float32)


@pytest.mark.parametrize("height,pitch,roll", [(1.2, 4.0, 0.0), (0.8, 9.0, 2.0), (1.6, 1.0, -3.0), (2.5, 15.0, 0.0)])
def test_known_planes_are_recovered(height, pitch, roll):
    truth = RoadPlane.from_pose(height, pitch, roll)
    assert truth.pitch_deg == pytest.approx(pitch, abs=1e-6) and truth.roll_deg == pytest.approx(roll, abs=1e-6)
    rng = np.random.default_rng(3)
    depth = plane_depth(truth)
    depth *= (1 + rng.normal(0, 0.005, depth.shape)).astype(np.float32)  # 0.5 % depth noise
    plane = fit_road_plane(depth, FX, FY, CX, CY)
    assert plane is not None
    assert plane.height == pytest.approx(height, abs=0.03)
    assert plane.pitch_deg == pytest.approx(pitch, abs=0.4)
    assert plane.roll_deg == pytest.approx(roll, abs=0.4)


def test_a_dip_reads_as_negative_height_and_a_box_as_positive():
    truth = RoadPlane.from_pose(1.2, 5.0)
    depth = plane_depth(truth)
    dip = plane_depth(RoadPlane.from_pose(1.2 + 0.15, 5.0))  # the road surface 15 cm lower
    rows, cols = slice(70, 80), slice(60, 90)
    depth[rows, cols] = dip[rows, cols]
    plane = fit_road_plane(depth, FX, FY, CX, CY)
    height, valid = residual_height(depth, plane, FX, FY, CX, CY)
    assert valid.all() == bool((depth > 0).all())
    np.testing.assert_allclose(height[rows, cols], -0.15, atol=0.01)
    outside = valid.copy()
    outside[rows, cols] = False
    assert np.abs(height[outside]).max() < 0.01
    code = encode_height(height, valid)
    np.testing.assert_allclose(code[rows, cols], HEIGHT_DATUM_M - 0.15, atol=0.01)


def test_missing_depth_has_validity_zero():
    depth = plane_depth(RoadPlane.from_pose(1.2, 5.0))
    depth[80:, :40] = 0.0
    depth[60:70, 100:] = np.nan
    plane = fit_road_plane(depth, FX, FY, CX, CY)
    height, valid = residual_height(depth, plane, FX, FY, CX, CY)
    holes = ~(np.isfinite(depth) & (depth > 0))
    assert not valid[holes].any() and valid[~holes].all()
    assert (height[holes] == 0).all()
    code = encode_height(height, valid)
    assert (code[holes] == 0).all() and (code[~holes] > 0).all()  # "0 = no data" holds for the signed residual


def test_a_car_in_the_lower_image_does_not_tilt_the_plane():
    truth = RoadPlane.from_pose(1.3, 4.0)
    depth = plane_depth(truth)
    car = np.zeros_like(depth, bool)
    car[48:, 30:130] = True
    car &= (depth == 0) | (depth > 4.5)  # the back of a vehicle 4.5 m ahead hides the road behind it
    depth[car] = 4.5
    lower = np.zeros_like(car)
    lower[H // 2:] = True
    assert (car & lower).sum() > 0.3 * (lower & (depth > 0)).sum()  # a third of the searched points
    plane = fit_road_plane(depth, FX, FY, CX, CY)
    assert plane.height == pytest.approx(1.3, abs=0.02) and plane.pitch_deg == pytest.approx(4.0, abs=0.3)
    height, valid = residual_height(depth, plane, FX, FY, CX, CY)
    assert np.abs(height[valid & ~car]).max() < 0.02
    assert (height[car] > -0.01).all() and np.median(height[car]) > 0.4  # the vehicle stands on the road


def test_implausible_or_missing_geometry_gives_no_plane_and_the_tracker_falls_back():
    wall = np.full((H, W), 5.0, np.float32)  # a fronto-parallel wall: pitch 90 degrees, not a road
    assert fit_road_plane(wall, FX, FY, CX, CY) is None
    assert fit_road_plane(np.zeros((H, W), np.float32), FX, FY, CX, CY) is None
    road = plane_depth(RoadPlane.from_pose(1.2, 5.0))
    tracker = RoadPlaneTracker(max_fallback_frames=2)
    assert tracker.update(wall, FX, FY, CX, CY) is None and tracker.last_status == "none"
    good = tracker.update(road, FX, FY, CX, CY)
    assert tracker.last_status == "fit"
    assert tracker.update(wall, FX, FY, CX, CY) == good and tracker.last_status == "fallback"
    assert tracker.update(wall, FX, FY, CX, CY) == good
    assert tracker.update(wall, FX, FY, CX, CY) is None  # the last good plane is too old now
    assert tracker.height_input(wall, FX, FY, CX, CY) is None


def test_bounds_reject_a_camera_too_high():
    road = plane_depth(RoadPlane.from_pose(3.0, 8.0))
    assert fit_road_plane(road, FX, FY, CX, CY, RoadPlaneConfig(max_height_m=2.0)) is None
    assert fit_road_plane(road, FX, FY, CX, CY).height == pytest.approx(3.0, abs=0.03)


def test_preprocessor_derives_height_from_depth_at_the_input_size():
    intr = StereoIntrinsics(fx=2 * FX, fy=2 * FY, cx=(2 * W - 1) / 2, cy=(2 * H - 1) / 2, baseline_m=0.12,
                            width=2 * W, height=2 * H)
    depth = plane_depth(RoadPlane.from_pose(1.2, 5.0), (2 * H, 2 * W), intr.fx, intr.fy, intr.cx, intr.cy)
    rgb = np.zeros((2 * H, 2 * W, 3), np.uint8)
    pre = Preprocessor(("rgb", "depth", "height"), (H, W))
    out = pre(SensorFrame(rgb=rgb, depth=depth, intrinsics=intr))
    code = out["height"][0, 0]
    assert out["height"].shape == (1, 1, H, W) and out["height"].dtype == np.float32
    valid = out["depth"][0, 0] > 0
    assert ((code > 0) == valid).all()
    np.testing.assert_allclose(code[valid], HEIGHT_DATUM_M, atol=0.02)  # flat road: height 0 everywhere
    assert pre.road_plane.last_status == "fit"
    # Without intrinsics there is no plane to fit: the input is "no data", not an error.
    missing = pre(SensorFrame(rgb=rgb, depth=depth))
    assert not missing["height"].any() and pre.last_valid_fraction["height"] == 0.0


def test_the_fused_height_code_equals_encoding_the_residual():
    rng = np.random.default_rng(5)
    plane = RoadPlane.from_pose(1.3, 6.0, 1.0)
    depth = plane_depth(plane) * (1 + rng.normal(0, 0.05, (H, W))).astype(np.float32)
    depth[::7, ::5] = np.nan
    depth[3::11, ::3] = np.inf
    depth[5::13] = 0.0
    depth[50:60, 40:60] = 0.02  # far below the clip: a deep hole reads as the datum's floor
    depth[20, :5] = (-1.0, -np.inf, np.finfo(np.float32).tiny, -0.0, 1e-3)
    expected = encode_height(*residual_height(depth, plane, FX, FY, CX, CY))
    untouched = depth.copy()
    np.testing.assert_allclose(height_code(depth, plane, FX, FY, CX, CY), expected, atol=1e-5)
    np.testing.assert_array_equal(depth, untouched)  # the caller's depth is read, never written
    # Depth already sanitised (0 = none, as the Preprocessor's) skips the copy and gives the same code.
    np.testing.assert_array_equal(height_code(sanitize(depth)[0], plane, FX, FY, CX, CY, sanitized=True),
                                  height_code(depth, plane, FX, FY, CX, CY))


def test_tracking_from_the_last_plane_gives_the_plane_a_fresh_fit_gives(monkeypatch):
    import road_seg_core.road_plane as road_plane

    searches = []
    search = road_plane._planes_through
    monkeypatch.setattr(road_plane, "_planes_through", lambda triples: searches.append(1) or search(triples))
    rng = np.random.default_rng(7)
    tracker = RoadPlaneTracker()
    for pitch in (5.0, 5.2, 5.5, 5.3, 5.1):  # suspension pitch between frames
        truth = RoadPlane.from_pose(1.4, pitch)
        depth = plane_depth(truth) * (1 + rng.normal(0, 0.01, (H, W))).astype(np.float32)
        before = len(searches)
        tracked = tracker.update(depth, FX, FY, CX, CY)
        assert len(searches) - before == (1 if pitch == 5.0 else 0)  # RANSAC on the first frame only
        fresh = fit_road_plane(depth, FX, FY, CX, CY)
        assert tracker.last_status == "fit"
        assert tracked.height == pytest.approx(fresh.height, abs=0.005)
        assert tracked.pitch_deg == pytest.approx(fresh.pitch_deg, abs=0.1)
        assert tracked.pitch_deg == pytest.approx(pitch, abs=0.4)


def test_a_prior_that_no_longer_fits_falls_back_to_the_search():
    new = RoadPlane.from_pose(1.0, 12.0, 4.0)  # a different camera: the old plane explains nothing
    depth = plane_depth(new)
    plane = fit_road_plane(depth, FX, FY, CX, CY, prior=RoadPlane.from_pose(1.6, 2.0))
    assert plane.height == pytest.approx(1.0, abs=0.03) and plane.pitch_deg == pytest.approx(12.0, abs=0.4)
    assert fit_road_plane(depth, FX, FY, CX, CY, prior=new).height == pytest.approx(1.0, abs=0.03)
