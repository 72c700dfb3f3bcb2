"""Dataset loaders: real NPO frames, generated DRNO / MFNet / folder fixtures, synthetic scenes, layout errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from road_seg_core import labels as L
from road_seg_core.preprocess import Preprocessor
from road_seg_core.synthetic import SceneStream, render_scene
from road_seg_training import label_sets
from road_seg_training.datasets import DatasetError, build_dataset, build_mixed, detect_layout

NPO_MINI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "npo_mini"
needs_npo_mini = pytest.mark.skipif(not NPO_MINI.is_dir(), reason=f"NPO sample frames not found at {NPO_MINI}")

BG, DR, POS, NEG = (label_sets.bits(k) for k in range(4))


# -- fixtures ---------------------------------------------------------------------------------------------------
def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path


def make_stereo_layout(root: Path, ids=("0001", "0002", "0003"), val_name="val", bits16=False, seed=0) -> dict:
    """NPO/DRNO layout with random images; returns the arrays written, by id."""
    rng = np.random.default_rng(seed)
    written = {}
    for frame_id in ids:
        rgb = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
        depth8 = rng.integers(0, 255, (36, 64), dtype=np.uint8)
        label = rng.integers(0, 3, (36, 64), dtype=np.uint8)
        _write(root / "left" / f"left{frame_id}.png", rgb[..., ::-1])
        depth_file = depth8.astype(np.uint16) * 257 if bits16 else depth8
        _write(root / "depth" / f"depth{frame_id}.png", depth_file)
        _write(root / "disparity" / f"disparity{frame_id}.png", depth_file)
        _write(root / "labels" / f"label{frame_id}.png", label)
        written[frame_id] = {"rgb": rgb, "depth": depth8, "label": label}
    for split in ("train", val_name, "test"):
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return written


def make_mfnet_layout(root: Path, names=("00001D", "00002N")) -> dict:
    rng = np.random.default_rng(1)
    written = {}
    for name in names:
        rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        thermal = rng.integers(0, 256, (32, 48), dtype=np.uint8)
        thermal[0, :5] = 0
        label = rng.integers(0, 9, (32, 48), dtype=np.uint8)
        _write(root / "images" / f"{name}.png", np.dstack([rgb[..., ::-1], thermal]))  # cv2 writes B, G, R, A
        _write(root / "labels" / f"{name}.png", label)
        written[name] = {"rgb": rgb, "thermal": thermal, "label": label}
    for split in ("train", "val", "test", "test_day"):
        (root / f"{split}.txt").write_text("\n".join(names))
    return written


def make_folder_layout(root: Path, names=("a", "b")) -> dict:
    rng = np.random.default_rng(2)
    written = {}
    for name in names:
        rgb = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
        depth_mm = rng.integers(0, 20000, (32, 64), dtype=np.uint16)
        disparity = np.full((32, 64), 12.0, np.float32)
        disparity[:4] = np.nan
        thermal = rng.integers(0, 256, (16, 32), dtype=np.uint8)  # lower resolution, same field of view
        label = rng.integers(0, 4, (32, 64), dtype=np.uint8)
        label[:2] = 255
        _write(root / "rgb" / f"{name}.jpg", rgb[..., ::-1])
        _write(root / "depth" / f"{name}.png", depth_mm)
        (root / "disparity").mkdir(exist_ok=True)
        np.save(root / "disparity" / f"{name}.npy", disparity)
        _write(root / "thermal" / f"{name}.png", thermal)
        _write(root / "labels" / f"{name}.png", label)
        written[name] = {"depth_mm": depth_mm, "label": label}
    (root / "train.txt").write_text("a\nb\n")
    (root / "conditions.txt").write_text("a night\nb day\n")
    return written


def _check_sample(sample: dict, modalities, size) -> None:
    h, w = size
    assert set(sample) == {"inputs", "target", "labels", "meta"}
    assert tuple(sample["inputs"]) == tuple(modalities)
    for name, tensor in sample["inputs"].items():
        assert tensor.dtype == torch.float32 and tensor.shape == ((3 if name == "rgb" else 1), h, w)
    assert sample["target"].dtype == torch.uint8 and sample["target"].shape == (h, w)
    assert sample["labels"].dtype == torch.uint8 and sample["labels"].shape == (h, w)
    np.testing.assert_array_equal(sample["labels"].numpy(), label_sets.eval_labels(sample["target"].numpy()))
    assert set(sample["meta"]) == {"dataset", "id", "condition"}


# -- NPO (real frames) ------------------------------------------------------------------------------------------
@needs_npo_mini
def test_npo_mini_real_frames():
    ds = build_dataset("npo", str(NPO_MINI), "train", ("rgb", "depth", "disparity", "thermal"), (288, 512))
    ids = (NPO_MINI / "train.txt").read_text().split()
    assert ds.ids == ids and len(ds) == len(ids)
    assert ds.units == {"rgb": "rgb_0_255", "depth": "relative_0_255", "disparity": "relative_0_255"}
    assert ds.suggested_norm_scales()["depth"] == 255.0
    sample = ds[0]
    _check_sample(sample, ("rgb", "depth", "disparity", "thermal"), (288, 512))
    raw_rgb = cv2.imread(str(NPO_MINI / "left" / f"left{ids[0]}.png"))[..., ::-1]
    np.testing.assert_array_equal(sample["inputs"]["rgb"].permute(1, 2, 0).numpy(), raw_rgb)
    raw_depth = cv2.imread(str(NPO_MINI / "depth" / f"depth{ids[0]}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(sample["inputs"]["depth"][0].numpy(), raw_depth)
    assert not sample["inputs"]["thermal"].any()  # NPO has no thermal camera
    raw_label = cv2.imread(str(NPO_MINI / "labels" / f"label{ids[0]}.png"), cv2.IMREAD_UNCHANGED)
    target = sample["target"].numpy()
    np.testing.assert_array_equal(target[raw_label == 0], BG | DR)  # road is inside NPO's background
    np.testing.assert_array_equal(target[raw_label == 1], NEG)
    # NPO's own three-class evaluation ids are its label ids.
    np.testing.assert_array_equal(ds.eval_space.target(target), raw_label)
    assert sample["meta"] == {"dataset": "npo", "id": ids[0], "condition": ""}


@needs_npo_mini
def test_npo_mini_resized_augmented_and_batched():
    ds = build_dataset("npo", str(NPO_MINI), "validation", ("rgb", "disparity"), (96, 160), augment=True)
    torch.manual_seed(0)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["inputs"]["rgb"].shape == (2, 3, 96, 160) and batch["target"].shape == (2, 96, 160)
    assert set(np.unique(batch["target"].numpy())) <= {0, BG | DR, NEG, POS}
    assert float(batch["inputs"]["disparity"].max()) <= 255.0  # relative values are never rescaled
    assert len(build_dataset("npo", str(NPO_MINI), "val", ("rgb",), (96, 160))) == len(ds)  # alias


@needs_npo_mini
def test_npo_class_order_option():
    default = build_dataset("npo", str(NPO_MINI), "train", ("rgb",), (288, 512))
    swapped = build_dataset("npo", str(NPO_MINI), "train", ("rgb",), (288, 512),
                            class_order="background,positive,negative")
    raw_label = cv2.imread(str(NPO_MINI / "labels" / f"label{default.ids[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert (raw_label == 1).any()
    np.testing.assert_array_equal(default[0]["target"].numpy()[raw_label == 1], NEG)
    np.testing.assert_array_equal(swapped[0]["target"].numpy()[raw_label == 1], POS)
    assert swapped.eval_space.class_names == ("background", "positive_obstacle", "negative_obstacle")
    with pytest.raises(DatasetError, match="class_order"):
        build_dataset("npo", str(NPO_MINI), "train", ("rgb",), (96, 160), class_order=["background", "positive"])


# -- NPO / DRNO layout (generated) ------------------------------------------------------------------------------
def test_npo_16bit_depth_matches_8bit(tmp_path):
    written = make_stereo_layout(tmp_path / "a", val_name="validation")
    make_stereo_layout(tmp_path / "b", val_name="validation", bits16=True)
    a = build_dataset("npo", str(tmp_path / "a"), "train", ("rgb", "depth"), (32, 64))[1]
    b = build_dataset("npo", str(tmp_path / "b"), "train", ("rgb", "depth"), (32, 64))[1]
    assert cv2.imread(str(tmp_path / "b/depth/depth0002.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    torch.testing.assert_close(a["inputs"]["depth"], b["inputs"]["depth"], atol=1e-3, rtol=0)
    expected = cv2.resize(written["0002"]["depth"], (64, 32), interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(a["inputs"]["depth"][0].numpy(), expected)


def test_drno_mapping_and_val_split(tmp_path):
    written = make_stereo_layout(tmp_path, val_name="val")
    ds = build_dataset("drno", str(tmp_path), "val", ("rgb", "depth", "thermal"), (36, 64))
    assert len(build_dataset("drno", str(tmp_path), "validation", ("rgb",), (36, 64))) == 3
    sample = ds[2]
    _check_sample(sample, ("rgb", "depth", "thermal"), (36, 64))
    label = written["0003"]["label"]
    target = sample["target"].numpy()
    np.testing.assert_array_equal(target[label == 0], BG | POS)   # vehicles hide in "unlabeled"
    np.testing.assert_array_equal(target[label == 1], DR)
    np.testing.assert_array_equal(target[label == 2], NEG)
    np.testing.assert_array_equal(sample["labels"].numpy()[label == 0], 255)
    np.testing.assert_array_equal(ds.eval_space.target(target), label)
    np.testing.assert_array_equal(sample["inputs"]["rgb"].permute(1, 2, 0).numpy(), written["0003"]["rgb"])
    assert detect_layout(tmp_path) == "drno"


def test_stereo_layout_errors_name_the_missing_piece(tmp_path):
    make_stereo_layout(tmp_path, val_name="validation")
    (tmp_path / "disparity" / "disparity0002.png").unlink()
    with pytest.raises(DatasetError, match=r"missing file 'disparity/disparity0002.png'"):
        build_dataset("npo", str(tmp_path), "train", ("rgb", "disparity"), (32, 64))
    build_dataset("npo", str(tmp_path), "train", ("rgb", "depth"), (32, 64))  # disparity not needed
    for path in (tmp_path / "depth").iterdir():
        path.unlink()
    (tmp_path / "depth").rmdir()
    with pytest.raises(DatasetError, match=r"missing folder 'depth/'"):
        build_dataset("npo", str(tmp_path), "train", ("rgb", "depth"), (32, 64))
    with pytest.raises(DatasetError, match=r"missing split file 'urban_test.txt'.*available splits: test, train"):
        build_dataset("npo", str(tmp_path), "urban_test", ("rgb",), (32, 64))
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("npo", str(tmp_path / "nope"), "train", ("rgb",), (32, 64))
    # DRNO expects val.txt, NPO validation.txt
    with pytest.raises(DatasetError, match=r"missing split file 'val.txt'"):
        build_dataset("drno", str(tmp_path), "val", ("rgb",), (32, 64))


# -- MFNet ------------------------------------------------------------------------------------------------------
def test_mfnet_rgb_thermal_and_labels(tmp_path):
    written = make_mfnet_layout(tmp_path)
    ds = build_dataset("mfnet", str(tmp_path), "train", ("rgb", "thermal", "depth"), (32, 48))
    assert ds.units == {"rgb": "rgb_0_255", "thermal": "unit_interval"}
    sample = ds[0]
    _check_sample(sample, ("rgb", "thermal", "depth"), (32, 48))
    w = written["00001D"]
    np.testing.assert_array_equal(sample["inputs"]["rgb"].permute(1, 2, 0).numpy(), w["rgb"])
    thermal = sample["inputs"]["thermal"][0].numpy()
    np.testing.assert_allclose(thermal, np.maximum(w["thermal"], 1) / 255.0, rtol=1e-6)
    assert thermal.min() > 0  # 0 stays reserved for "no data"
    assert not sample["inputs"]["depth"].any()
    target = sample["target"].numpy()
    np.testing.assert_array_equal(target[w["label"] == 0], BG | DR | NEG)
    np.testing.assert_array_equal(target[(w["label"] >= 1) & (w["label"] <= 7)], POS)
    np.testing.assert_array_equal(target[w["label"] == 8], DR | POS)
    assert sample["meta"]["condition"] == "day" and ds[1]["meta"]["condition"] == "night"
    assert detect_layout(tmp_path) == "mfnet"
    assert len(build_dataset("mfnet", str(tmp_path), "validation", ("rgb",), (32, 48))) == 2


def test_mfnet_three_channel_image_is_refused(tmp_path):
    make_mfnet_layout(tmp_path)
    _write(tmp_path / "images" / "00001D.png", np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(DatasetError, match="4-channel"):
        build_dataset("mfnet", str(tmp_path), "train", ("rgb", "thermal"), (32, 48))[0]
    (tmp_path / "labels" / "00002N.png").unlink()
    with pytest.raises(DatasetError, match=r"missing file 'labels/00002N.png'"):
        build_dataset("mfnet", str(tmp_path), "train", ("rgb",), (32, 48))


# -- folder -----------------------------------------------------------------------------------------------------
def test_folder_units_and_resizing(tmp_path):
    written = make_folder_layout(tmp_path)
    ds = build_dataset("folder", str(tmp_path), "train", ("rgb", "depth", "disparity", "thermal"), (32, 32))
    assert ds.units == {"rgb": "rgb_0_255", "depth": "metres", "disparity": "pixels_at_input_width",
                        "thermal": "unit_interval"}
    sample = ds[0]
    _check_sample(sample, ("rgb", "depth", "disparity", "thermal"), (32, 32))
    depth = sample["inputs"]["depth"][0].numpy()
    expected_m = cv2.resize(written["a"]["depth_mm"], (32, 32), interpolation=cv2.INTER_NEAREST_EXACT) / 1000.0
    in_range = (expected_m >= 0.3) & (expected_m <= 40.0)
    np.testing.assert_allclose(depth[in_range], expected_m[in_range], rtol=1e-6)
    assert np.all(depth[~in_range] == 0)
    disparity = sample["inputs"]["disparity"][0].numpy()
    np.testing.assert_allclose(disparity[4:], 6.0)  # 12 px at width 64 -> 6 px at width 32
    assert np.all(disparity[:4] == 0)                # NaN -> no measurement
    assert sample["inputs"]["thermal"].min() > 0     # lower-resolution thermal covers the view
    assert sample["meta"] == {"dataset": "folder", "id": "a", "condition": "night"}
    assert np.all(sample["target"].numpy()[:2] == 0)  # 255 in the label file = ignore
    assert detect_layout(tmp_path) == "folder"
    assert len(build_dataset("folder", str(tmp_path), "all", ("rgb",), (32, 32))) == 2


def test_folder_label_map_missing_modality_and_ignore(tmp_path):
    written = make_folder_layout(tmp_path)
    (tmp_path / "thermal" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"missing file 'thermal/a"):
        build_dataset("folder", str(tmp_path), "train", ("rgb", "thermal"), (32, 32))
    ds = build_dataset("folder", str(tmp_path), "train", ("rgb", "thermal"), (32, 32), ignore_modalities=["thermal"])
    assert not ds[0]["inputs"]["thermal"].any() and ds.active == ("rgb",)
    for path in (tmp_path / "thermal").iterdir():
        path.unlink()
    (tmp_path / "thermal").rmdir()
    with pytest.raises(DatasetError, match=r"missing folder 'thermal/'.*ignore_modalities"):
        build_dataset("folder", str(tmp_path), "train", ("rgb", "thermal"), (32, 64))
    mapped = build_dataset("folder", str(tmp_path), "train", ("rgb",), (32, 64),
                           label_map={0: ["background", "drivable"], 1: "negative_obstacle", 2: []})
    target, label = mapped[1]["target"].numpy(), written["b"]["label"]
    np.testing.assert_array_equal(target[label == 0], BG | DR)
    np.testing.assert_array_equal(target[label == 1], NEG)
    np.testing.assert_array_equal(target[label == 2], 0)
    np.testing.assert_array_equal(target[label == 3], 0)  # unmapped ids are ignored
    with pytest.raises(DatasetError, match="unknown class"):
        build_dataset("folder", str(tmp_path), "train", ("rgb",), (32, 64), label_map={0: "road"})


def test_folder_refuses_8bit_depth(tmp_path):
    make_folder_layout(tmp_path)
    _write(tmp_path / "depth" / "a.png", np.full((32, 64), 9, np.uint8))
    with pytest.raises(DatasetError, match="16-bit millimetres or float metres"):
        build_dataset("folder", str(tmp_path), "train", ("rgb", "depth"), (32, 64))[0]


# -- synthetic --------------------------------------------------------------------------------------------------
def test_synthetic_matches_the_node_preprocessing():
    modalities = ("rgb", "depth", "thermal")
    ds = build_dataset("synthetic", None, "train", modalities, (64, 96), frames=2, seed=5, conditions=["night"])
    sample = ds[1]
    _check_sample(sample, modalities, (64, 96))
    scene = render_scene(6, width=192, height=108, condition="night")  # the ZED's 16:9 at twice the input width
    expected = Preprocessor(modalities, (64, 96))(scene.frame)
    for name in modalities:
        np.testing.assert_array_equal(sample["inputs"][name].numpy(), expected[name][0].astype(np.float32))
    labels = cv2.resize(scene.labels, (96, 64), interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(sample["labels"].numpy(), labels)
    assert sample["meta"] == {"dataset": "synthetic", "id": "6", "condition": "night"}
    assert ds.units["depth"] == "metres"


def test_synthetic_drive_frames_are_sim_sensors_drives_outside_its_default_seed():
    modalities = ("rgb", "depth", "thermal")
    ds = build_dataset("synthetic", None, "train", modalities, (64, 96), frames=5, seed=5, conditions=["fog"],
                       drive_share=0.6, drive_frames=2, drive_stride=4)
    assert ds.ids == ["5", "6", "drive500005-0", "drive500005-4", "drive500006-0"]
    stream = SceneStream(500_005, width=192, height=108, conditions=("fog",))
    first = next(stream)
    stream.skip(3)
    fifth = next(stream)
    for index, scene in ((2, first), (3, fifth)):
        sample = ds[index]
        expected = Preprocessor(modalities, (64, 96))(scene.frame)
        for name in modalities:
            np.testing.assert_array_equal(sample["inputs"][name].numpy(), expected[name][0].astype(np.float32))
        assert sample["meta"]["condition"] == "fog"
    with pytest.raises(DatasetError, match="drive_share"):
        build_dataset("synthetic", None, "train", modalities, (64, 96), drive_share=1.5)


def test_synthetic_splits_disparity_and_options():
    train = build_dataset("synthetic", None, "train", ("rgb", "disparity"), (64, 96), frames=2,
                          depth_source="disparity")
    val = build_dataset("synthetic", None, "val", ("rgb", "disparity"), (64, 96), frames=2)
    assert not set(train.ids) & set(val.ids)
    disparity = train[0]["inputs"]["disparity"]
    assert disparity.max() > 0 and train.units["disparity"] == "pixels_at_input_width"
    with pytest.raises(DatasetError, match="conditions"):
        build_dataset("synthetic", None, "train", ("rgb",), (64, 96), conditions=["rain"])
    with pytest.raises(DatasetError, match="unknown split"):
        build_dataset("synthetic", None, "holdout", ("rgb",), (64, 96))


def test_synthetic_pothole_cover_keeps_thin_potholes_nearest_resampling_drops():
    """A crack a render row or two tall vanishes from nearest-resized targets in some frames; pothole_cover keeps
    every pothole that covers enough of an input pixel, and only adds pothole where one was rendered."""
    modalities = ("rgb",)
    options = dict(frames=6, seed=5, conditions=["day"], drive_share=1.0, drive_frames=6, drive_stride=6)
    plain = build_dataset("synthetic", None, "train", modalities, (64, 96), **options)
    covered = build_dataset("synthetic", None, "train", modalities, (64, 96), pothole_cover=0.33, **options)
    kept = {"plain": 0, "covered": 0}
    for index in range(6):
        scene = plain.scene(index)
        ids = scene.frame.extras["pothole_ids"]
        a, b = plain[index]["labels"].numpy(), covered[index]["labels"].numpy()
        assert np.all(b[a == L.NEGATIVE_OBSTACLE] == L.NEGATIVE_OBSTACLE)  # only ever adds pothole
        changed = (a != b)
        share = cv2.resize((scene.labels == L.NEGATIVE_OBSTACLE).astype(np.float32), (96, 64),
                           interpolation=cv2.INTER_AREA)
        assert np.all(share[changed] >= 0.33)  # ...where a rendered pothole covers a third of the pixel
        for pid in np.unique(ids[ids > 0]):  # a pothole is in the targets if they say pothole on its footprint
            footprint = cv2.resize((ids == pid).astype(np.float32), (96, 64), interpolation=cv2.INTER_AREA) > 0
            kept["plain"] += bool(np.any(footprint & (a == L.NEGATIVE_OBSTACLE)))
            kept["covered"] += bool(np.any(footprint & (b == L.NEGATIVE_OBSTACLE)))
    assert kept["covered"] > kept["plain"], kept
    with pytest.raises(DatasetError, match="pothole_cover must be 0"):
        build_dataset("synthetic", None, "train", modalities, (64, 96), pothole_cover=1.0)


# -- common -----------------------------------------------------------------------------------------------------
def test_unknown_layout_name_and_options(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        detect_layout(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        build_dataset("auto", str(tmp_path), "train", ("rgb",), (32, 32))
    with pytest.raises(DatasetError, match="unknown dataset 'kitti'"):
        build_dataset("kitti", str(tmp_path), "train", ("rgb",), (32, 32))
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['frames'\] for dataset 'npo'"):
        build_dataset("npo", str(tmp_path), "train", ("rgb",), (32, 32), frames=3)
    with pytest.raises(DatasetError, match="unknown modalities"):
        build_dataset("synthetic", None, "train", ("rgb", "lidar"), (32, 32))
    make_stereo_layout(tmp_path / "npo", val_name="validation")
    assert build_dataset("auto", str(tmp_path / "npo"), "train", ("rgb",), (32, 64)).name == "npo"


def test_modality_dropout_zeroes_whole_modalities_but_never_rgb(tmp_path):
    make_folder_layout(tmp_path)
    ds = build_dataset("folder", str(tmp_path), "train", ("rgb", "depth", "thermal"), (32, 64),
                       modality_dropout=0.5)
    torch.manual_seed(0)
    kept = {"depth": 0, "thermal": 0}
    for _ in range(20):
        sample = ds[0]
        assert sample["inputs"]["rgb"].any()
        for name in kept:
            valid = int(sample["inputs"][name].count_nonzero())
            assert valid == 0 or valid > 0.5 * 32 * 64  # all or (nearly) nothing: a whole sensor drops out
            kept[name] += valid > 0
    assert all(3 <= k <= 17 for k in kept.values()), kept
    with pytest.raises(DatasetError, match="modality_dropout"):
        build_dataset("folder", str(tmp_path), "train", ("rgb",), (32, 64), modality_dropout=1.0)


def test_mixed_training_collates_and_checks_units(tmp_path):
    make_folder_layout(tmp_path / "folder")
    make_stereo_layout(tmp_path / "npo", val_name="validation")
    modalities = ("rgb", "depth", "thermal")
    folder = build_dataset("folder", str(tmp_path / "folder"), "train", modalities, (32, 64), augment=True)
    synthetic = build_dataset("synthetic", None, "train", modalities, (32, 64), frames=2, render_size=(64, 128))
    npo = build_dataset("npo", str(tmp_path / "npo"), "train", modalities, (32, 64))
    with pytest.raises(DatasetError, match="cannot mix 'depth' in metres"):
        build_mixed([folder, npo])
    npo_rgb_only = build_dataset("npo", str(tmp_path / "npo"), "train", modalities, (32, 64),
                                 ignore_modalities=["depth"])
    mixed = build_mixed([folder, synthetic, npo_rgb_only])
    assert len(mixed) == 2 + 2 + 3
    assert mixed.units == {"rgb": "rgb_0_255", "depth": "metres", "thermal": "unit_interval"}
    batch = next(iter(DataLoader(mixed, batch_size=len(mixed))))
    assert batch["inputs"]["depth"].shape == (7, 1, 32, 64)
    assert batch["meta"]["dataset"] == ["folder"] * 2 + ["synthetic"] * 2 + ["npo"] * 3
    assert not batch["inputs"]["thermal"][4:].any() and not batch["inputs"]["depth"][4:].any()
    weights = mixed.sample_weights([1.0, 1.0, 2.0])
    assert sum(weights[4:]) == pytest.approx(0.5) and sum(weights[:2]) == pytest.approx(0.25)
    with pytest.raises(DatasetError, match="cannot mix"):
        build_mixed([folder, build_dataset("folder", str(tmp_path / "folder"), "train", ("rgb",), (32, 64))])
