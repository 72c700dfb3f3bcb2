"""Augmentation keeps every modality and the labels aligned, changes colour only on rgb, and rescales disparity."""
from __future__ import annotations

import numpy as np
import pytest

from road_seg_training.augment import AugmentConfig, Augmenter, Geometry, apply_geometry, resize_maps, sample_geometry

H, W = 64, 96


def _block_sample() -> dict[str, np.ndarray]:
    """8x8-pixel blocks with a block id shared by every map, so any misalignment shows up as a mismatch."""
    yy, xx = np.mgrid[0:H, 0:W]
    block = (yy // 8) * (W // 8) + (xx // 8)  # 0..95, unique per block
    cls = block % 4
    rgb = np.stack([block * 2, cls * 60, 255 - block * 2], axis=-1).astype(np.uint8)
    return {
        "rgb": rgb,
        "depth": (block + 1).astype(np.float32),
        "disparity": np.full((H, W), 10.0, np.float32),
        "thermal": ((block + 1) / 100.0).astype(np.float32),
        "target": (1 << cls).astype(np.uint8),
    }


def _interior(block: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood lies in one block (away from block edges and padding)."""
    padded = np.pad(block, 1, constant_values=-1)
    same = np.ones_like(block, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same &= padded[dy:dy + H, dx:dx + W] == block
    return same


@pytest.mark.parametrize("seed", range(6))
def test_geometry_is_identical_for_every_modality_and_the_labels(seed):
    sample = _block_sample()
    out = Augmenter((H, W), AugmentConfig(photometric=False))(sample, np.random.default_rng(seed))
    block_from_depth = out["depth"] - 1
    valid = out["depth"] > 0
    assert valid.mean() > 0.4
    # Nearest-warped maps agree exactly: the target's class is the depth's block class.
    np.testing.assert_array_equal(out["target"][valid], (1 << (block_from_depth[valid].astype(int) % 4)))
    assert np.all(out["target"][~valid] == 0)  # padding is ignore, never a class
    # Linearly warped maps agree inside blocks.
    inner = _interior(out["depth"]) & valid
    np.testing.assert_allclose(out["thermal"][inner], (block_from_depth[inner] + 1) / 100.0, atol=1e-5)
    np.testing.assert_allclose(out["rgb"][..., 0][inner], block_from_depth[inner] * 2, atol=1)


def test_augmentation_is_applied_flips_and_scales_vary():
    sample = _block_sample()
    augmenter = Augmenter((H, W), AugmentConfig(photometric=False))
    flips, scales, changed = set(), [], 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        geometry = sample_geometry(np.random.default_rng(seed), (H, W), augmenter.config)
        flips.add(geometry.flip)
        scales.append(geometry.scale)
        changed += not np.array_equal(augmenter(sample, rng)["depth"], sample["depth"])
    assert flips == {True, False}
    assert min(scales) < 0.9 and max(scales) > 1.2
    assert min(scales) >= 0.75 and max(scales) <= 1.5
    assert changed >= 22  # a draw close to identity may leave a nearest-warped map unchanged


def test_photometric_changes_touch_rgb_only():
    sample = _block_sample()
    plain = Augmenter((H, W), AugmentConfig(photometric=False))
    coloured = Augmenter((H, W), AugmentConfig(photometric=True))
    rgb_changed = 0
    for seed in range(8):
        a = plain(sample, np.random.default_rng(seed))
        b = coloured(sample, np.random.default_rng(seed))
        for name in ("depth", "disparity", "thermal", "target"):
            np.testing.assert_array_equal(a[name], b[name])
        assert b["rgb"].dtype == np.uint8 and b["rgb"].shape == (H, W, 3)
        rgb_changed += not np.array_equal(a["rgb"], b["rgb"])
    assert rgb_changed >= 4


def test_flip_mirrors_columns_exactly():
    sample = _block_sample()
    out = apply_geometry(sample, Geometry(scale=1.0, flip=True, offset=(0.0, 0.0), size=(H, W)))
    for name in ("depth", "target", "thermal"):
        np.testing.assert_array_equal(out[name], sample[name][:, ::-1])
    np.testing.assert_array_equal(out["rgb"], sample["rgb"][:, ::-1])
    same = apply_geometry(sample, Geometry(scale=1.0, flip=False, offset=(0.0, 0.0), size=(H, W)))
    for name in sample:
        np.testing.assert_array_equal(same[name], sample[name])


def test_disparity_in_pixels_scales_with_zoom_relative_does_not():
    sample = _block_sample()
    for scale in (0.8, 1.25, 1.5):
        geometry = Geometry(scale=scale, flip=False, offset=(0.0, 0.0), size=(H, W))
        out = apply_geometry(sample, geometry, disparity_in_pixels=True)
        valid = out["disparity"] > 0
        np.testing.assert_allclose(out["disparity"][valid], 10.0 * scale, rtol=1e-6)
        np.testing.assert_array_equal(valid, out["depth"] > 0)
        relative = apply_geometry(sample, geometry, disparity_in_pixels=False)
        np.testing.assert_array_equal(np.unique(relative["disparity"][valid]), [10.0])


def test_zoom_out_pads_with_no_data_and_ignore():
    sample = _block_sample()
    out = apply_geometry(sample, Geometry(scale=0.5, flip=False, offset=(-16.0, -24.0), size=(H, W)))
    for name in ("depth", "disparity", "thermal", "target"):
        assert np.all(out[name][:16] == 0) and np.all(out[name][:, :24] == 0)
        assert np.all(out[name][16:48, 24:72] > 0)
    assert np.all(out["rgb"][:16] == 0)


def test_resize_maps_interpolation_and_disparity_width_scaling():
    sample = _block_sample()
    sample["thermal"][:, :W // 2] = 0.0  # left half outside the thermal view
    small = resize_maps(sample, (H // 2, W // 2))
    assert small["rgb"].shape == (H // 2, W // 2, 3)
    valid = small["disparity"] > 0
    np.testing.assert_allclose(small["disparity"][valid], 5.0)  # half the width: half the pixel disparity
    assert set(np.unique(small["depth"])) <= set(np.unique(sample["depth"]))  # nearest: no blended depth
    assert set(np.unique(small["target"])) <= {1, 2, 4, 8}
    assert np.all(small["thermal"][:, :W // 4] == 0) and np.all(small["thermal"][:, W // 4:] > 0)
    relative = resize_maps(sample, (H // 2, W // 2), disparity_in_pixels=False)
    np.testing.assert_array_equal(np.unique(relative["disparity"]), [10.0])
    assert resize_maps(sample, (H, W))["depth"] is sample["depth"]


def test_augment_config_validation():
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.5, 0.5))
    with pytest.raises(ValueError, match="hflip"):
        AugmentConfig(hflip=2.0)
    with pytest.raises(ValueError, match="depth_holes"):
        AugmentConfig(depth_holes=-0.1)
    with pytest.raises(ValueError, match="unknown augmentation options"):
        AugmentConfig.from_value({"rotate": 10})
    assert AugmentConfig.from_value({"scale_range": [1, 1]}).scale_range == (1.0, 1.0)


def test_depth_holes_blank_every_depth_like_map_alike_and_keep_the_labels():
    sample = {**_block_sample(), "height": np.full((H, W), 1.0, np.float32)}
    plain = Augmenter((H, W), AugmentConfig(photometric=False))
    holed = Augmenter((H, W), AugmentConfig(photometric=False, depth_holes=1.0))
    punched = 0
    for seed in range(6):
        a, b = plain(sample, np.random.default_rng(seed)), holed(sample, np.random.default_rng(seed))
        for name in ("rgb", "thermal", "target"):  # the same geometry draw; only the stereo maps lose pixels
            np.testing.assert_array_equal(a[name], b[name])
        lost = (a["depth"] > 0) & (b["depth"] == 0)
        assert not lost[: int(0.45 * H) - W // 10].any()  # in the lower image, where the road is
        for name in ("disparity", "height"):
            np.testing.assert_array_equal(b[name] == 0, (a[name] == 0) | lost)
        assert np.array_equal(b["depth"][~lost], a["depth"][~lost])
        punched += lost.sum()
    assert punched > 0
    # Off (the default) it draws nothing from the generator: earlier configs augment exactly as before.
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    Augmenter((H, W), AugmentConfig(photometric=False, depth_holes=0.0))(sample, rng_a)
    plain(sample, rng_b)
    assert rng_a.random() == rng_b.random()
