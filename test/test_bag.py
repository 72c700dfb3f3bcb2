"""`road-seg sim` and `road-seg eval-bag`: bags in both storages, metrics equal to road_seg_core's, output bags."""
from __future__ import annotations

import dataclasses
import json
import sys
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from road_seg_core.engines import create_engine
from road_seg_core.metrics import ConfusionMatrix, to_json
from road_seg_core.obstacle_metrics import ObstacleCounter
from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.bag import msgs
from road_seg_core.bag.bagio import open_reader, open_writer
from road_seg_core.bag.groundtruth import GroundTruthError, check_labels
from road_seg_core.bag.record import CONDITION_TOPIC, GT_TOPIC, POTHOLE_IDS_TOPIC, SimRecording
from road_seg_core.bag.replay import BagReplay
from road_seg_core.node_config import PerceptionConfig, Topics
from road_seg_core.input_plan import plan_inputs
from road_seg_core.launch_plan import config_dir
from road_seg_core.reception import image_array
from road_seg_core.sensor_spec import intrinsics_from_camera_info, stamp_ns
from road_seg_cli.main import main

FRAMES, WIDTH, HEIGHT, SEED = 6, 160, 96, 5
STORAGES = ("mcap", "sqlite3")
T = Topics()
OUTPUT_TOPICS = ("/road_seg/drivable_mask", "/road_seg/obstacle_mask", "/road_seg/labels", "/road_seg/overlay")


def _sim(out: Path, storage: str, *extra: str) -> int:
    return main(["sim", "--record", str(out), "--frames", str(FRAMES), "--width", str(WIDTH), "--height",
                 str(HEIGHT), "--seed", str(SEED), "--storage", storage, "--no-progress", *extra])


def _eval(bag: Path, checkpoint: Path, *extra: str) -> int:
    return main(["eval-bag", str(bag), "--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress", *extra])


def _read(bag: Path) -> list[tuple[str, str, int, object]]:
    """(topic, msgtype, log time, message) in recording order."""
    with closing(open_reader(bag)) as reader:
        return [(c.topic, c.msgtype, t, msgs.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bags")
    out = {}
    for storage in STORAGES:
        assert _sim(root / storage, storage) == 0
        out[storage] = root / storage
    return out


@pytest.fixture(scope="module")
def recording() -> SimRecording:
    return SimRecording(frames=FRAMES, width=WIDTH, height=HEIGHT, seed=SEED)


@pytest.fixture(scope="module")
def scenes(recording):
    stream = recording.scene_stream()
    return [next(stream) for _ in range(FRAMES)]


@pytest.fixture(scope="module")
def node_cfg() -> PerceptionConfig:
    return PerceptionConfig.from_yaml(config_dir() / "perception.yaml")


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint, node_cfg) -> SegmentationPipeline:
    return SegmentationPipeline(create_engine(tiny_checkpoint, device="cpu"), node_cfg.preprocess_config())


@pytest.fixture(scope="module")
def direct(pipeline, scenes, recording):
    """Labels per left stamp computed straight through road_seg_core from the rendered scenes (no bag)."""
    return {recording.stamp_ns(i): pipeline.run(s.frame).masks.labels for i, s in enumerate(scenes)}


@pytest.fixture(scope="module")
def evaluated(bags, tiny_checkpoint, tmp_path_factory) -> dict[str, tuple[dict, Path, Path]]:
    root = tmp_path_factory.mktemp("eval")
    out = {}
    for storage, bag in bags.items():
        report, written = root / f"report_{storage}", root / f"masks_{storage}"
        assert _eval(bag, tiny_checkpoint, "--report", str(report), "--write-bag", str(written)) == 0
        out[storage] = (json.loads((report / "metrics.json").read_text()), report, written)
    return out


def _expected(stamps, direct, scenes, recording, gt_of=None) -> dict:
    """Metrics computed directly: road_seg_core's ConfusionMatrix, obstacle IoU from the binary masks."""
    cm = ConfusionMatrix()
    inter = union = 0
    for i, scene in enumerate(scenes):
        stamp = recording.stamp_ns(i)
        if stamp not in stamps:
            continue
        pred, gt = direct[stamp], scene.labels if gt_of is None else gt_of(stamp)
        cm.update(pred, gt)
        valid = gt != 255
        p_obs, g_obs = np.isin(pred, (2, 3)) & valid, np.isin(gt, (2, 3)) & valid
        inter += int(np.count_nonzero(p_obs & g_obs))
        union += int(np.count_nonzero(p_obs | g_obs))
    expected = cm.compute()
    expected["drivable_iou"] = expected["per_class"]["drivable"]["iou"]
    expected["obstacle_iou"] = inter / union
    return to_json(expected)


# -- sim ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_sim_bag_has_sim_sensors_topics_types_encodings_and_stamps(bags, storage, scenes, recording):
    with closing(open_reader(bags[storage])) as reader:
        topics = {t: (i.msgtype, i.msgcount) for t, i in reader.topics.items()}
        assert reader.storage.metadata.custom["road_seg.sim"]
    image = "sensor_msgs/msg/Image"
    assert topics == {T.left: (image, FRAMES), T.right: (image, FRAMES), T.depth: (image, FRAMES),
                      T.thermal: (image, FRAMES), GT_TOPIC: (image, FRAMES), POTHOLE_IDS_TOPIC: (image, FRAMES),
                      T.left_info: ("sensor_msgs/msg/CameraInfo", FRAMES),
                      T.right_info: ("sensor_msgs/msg/CameraInfo", FRAMES),
                      CONDITION_TOPIC: ("std_msgs/msg/String", FRAMES)}
    by_topic: dict[str, list] = {}
    log_times = []
    for topic, _, log_ns, msg in _read(bags[storage]):
        by_topic.setdefault(topic, []).append((log_ns, msg))
        log_times.append(log_ns)
    assert log_times == sorted(log_times) and len(set(log_times)) == len(log_times)  # one unambiguous order
    expect = {T.left: ("bgra8", "zed_left_camera_optical_frame"), T.right: ("bgra8", "zed_right_camera_optical_frame"),
              T.depth: ("32FC1", "zed_left_camera_optical_frame"), T.thermal: ("mono16", "boson_optical_frame"),
              GT_TOPIC: ("mono8", "zed_left_camera_optical_frame"),
              POTHOLE_IDS_TOPIC: ("mono16", "zed_left_camera_optical_frame")}
    for i, scene in enumerate(scenes):
        stamp = recording.stamp_ns(i)
        cond_log, cond = by_topic[CONDITION_TOPIC][i]
        assert (cond_log, cond.data) == (stamp, scene.condition)
        for topic, (encoding, frame_id) in expect.items():
            _, m = by_topic[topic][i]
            assert (m.encoding, m.header.frame_id, m.width, m.height) == (encoding, frame_id, WIDTH, HEIGHT)
            jitter = abs(stamp_ns(m.header) - stamp)
            assert jitter <= (20_000_000 if topic == T.thermal else 0), (topic, jitter)  # thermal: 3 ms jitter
        left = image_array(by_topic[T.left][i][1])
        np.testing.assert_array_equal(cv2.cvtColor(left, cv2.COLOR_BGRA2RGB), scene.frame.rgb)
        np.testing.assert_array_equal(image_array(by_topic[T.depth][i][1]), scene.frame.depth)
        np.testing.assert_array_equal(image_array(by_topic[T.thermal][i][1]), scene.frame.thermal)
        np.testing.assert_array_equal(image_array(by_topic[GT_TOPIC][i][1]), scene.labels)
        np.testing.assert_array_equal(image_array(by_topic[POTHOLE_IDS_TOPIC][i][1]),
                                      scene.frame.extras["pothole_ids"])
        for topic in (T.left_info, T.right_info):
            assert stamp_ns(by_topic[topic][i][1].header) == stamp
        intr = intrinsics_from_camera_info(by_topic[T.left_info][i][1], by_topic[T.right_info][i][1])
        want = scene.frame.intrinsics
        assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == \
            (want.fx, want.fy, want.cx, want.cy, want.width, want.height)
        assert intr.baseline_m == pytest.approx(want.baseline_m, rel=1e-12)  # Tx = -fx*B, divided back
    conditions = [c.data for _, c in by_topic[CONDITION_TOPIC]]
    assert set(conditions) == {"day", "night", "fog"}  # the drive is split between the conditions


def test_sim_messages_equal_sim_sensors_encode_scene(scenes, recording):
    """Field for field what the live sim_sensors node publishes for the same scene (needs rclpy)."""
    pytest.importorskip("rclpy")
    from road_seg_core.bag.record import frame_messages
    from road_seg_ros.sim_sensors import encode_scene

    scene = scenes[0]
    live = encode_scene(scene, with_disparity=True)
    rec = SimRecording(frames=1, width=WIDTH, height=HEIGHT, publish_disparity=True, jitter_ms={})
    ours = {key: m for key, _, m in frame_messages(scene, 0, rec, np.random.default_rng(0)).messages}
    assert set(ours) == {"left_info", "right_info", "left", "right", "depth", "disparity", "thermal", "labels",
                         "pothole_ids"}
    for key in ("left", "right", "depth", "thermal", "labels", "pothole_ids"):
        a, b = getattr(live, key), ours[key]
        assert (a.encoding, a.height, a.width, a.step, a.header.frame_id) == \
            (b.encoding, b.height, b.width, b.step, b.header.frame_id), key
        assert bytes(a.data) == b.data.tobytes(), key
    for key in ("left_info", "right_info"):
        a, b = getattr(live, key), ours[key]
        assert (a.header.frame_id, a.width, a.height, a.distortion_model) == \
            (b.header.frame_id, b.width, b.height, b.distortion_model)
        for field in ("d", "k", "r", "p"):
            np.testing.assert_array_equal(np.asarray(getattr(a, field)), getattr(b, field))
    a, b = live.disparity, ours["disparity"]
    assert (a.f, a.t, a.max_disparity, a.delta_d) == pytest.approx((b.f, b.t, b.max_disparity, b.delta_d))
    assert bytes(a.image.data) == b.image.data.tobytes() and a.image.header.frame_id == b.header.frame_id


# -- eval-bag -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_eval_bag_metrics_equal_road_seg_core(evaluated, storage, direct, scenes, recording):
    metrics, report, _ = evaluated[storage]
    stamps = {recording.stamp_ns(i) for i in range(FRAMES)}
    expected = _expected(stamps, direct, scenes, recording)
    got = metrics["metrics"]
    for key in ("miou", "miou_without_background", "pixel_accuracy", "per_class", "drivable_iou"):
        assert got[key] == expected[key], key
    assert got["obstacle_iou"] == pytest.approx(expected["obstacle_iou"], rel=1e-12)

    conditions = sorted({s.condition for s in scenes})
    assert sorted(metrics["per_condition"]) == conditions
    for cond in conditions:
        in_cond = {recording.stamp_ns(i) for i, s in enumerate(scenes) if s.condition == cond}
        exp = _expected(in_cond, direct, scenes, recording)
        assert metrics["per_condition"][cond]["frames"] == len(in_cond)
        assert metrics["per_condition"][cond]["per_class"] == exp["per_class"]
        assert metrics["per_condition"][cond]["miou"] == exp["miou"]

    counts = metrics["counts"]
    assert counts["messages"] == {T.left: FRAMES, T.depth: FRAMES, T.thermal: FRAMES}  # the model's inputs only
    assert (counts["synchronised_sets"], counts["evaluated_frames"], counts["frames_without_gt"]) == (FRAMES, FRAMES, 0)
    assert metrics["bag"]["storage"] == storage and metrics["bag"]["topics"][GT_TOPIC]["messages"] == FRAMES
    # Potholes are counted by the recorded pothole ids, as `road-seg evaluate` counts them on the same scenes.
    obstacles = ObstacleCounter()
    for i, scene in enumerate(scenes):
        obstacles.update(direct[recording.stamp_ns(i)], scene.labels, instances=scene.frame.extras["pothole_ids"])
    got_obstacles, want_obstacles = metrics["metrics"]["obstacles"], to_json(obstacles.compute())
    assert got_obstacles["frames_with_pothole_instances"] == want_obstacles["frames_with_pothole_instances"] > 0
    for key in ("potholes", "potholes_found", "phantom_frames", "false_pothole_blobs"):
        assert got_obstacles[key] == want_obstacles[key], key
    assert metrics["sync"]["topics"] == [T.left, T.depth, T.thermal]
    assert sorted(f["stamp_ns"] for f in metrics["frames"]) == sorted(stamps)
    for stage in ("decode", "convert", "preprocess", "model", "postprocess", "total"):
        assert metrics["latency_ms"][stage]["count"] == FRAMES and metrics["latency_ms"][stage]["mean"] > 0
    assert metrics["throughput"]["frames"] == FRAMES and metrics["throughput"]["frames_per_s"] > 0

    text = (report / "report.md").read_text()
    for png in ("per_class_iou.png", "confusion_matrix.png", "latency.png", "montage.png"):
        data = (report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"]({png})" in text
    assert "| night |" in text and f"{metrics['metrics']['miou']:.3f}" in text


@pytest.mark.parametrize("storage", STORAGES)
def test_written_bag_reads_back_with_node_topics_types_and_stamps(evaluated, storage, direct):
    _, _, written = evaluated[storage]
    with closing(open_reader(written)) as reader:
        assert {t: i.msgtype for t, i in reader.topics.items()} == \
            {t: "sensor_msgs/msg/Image" for t in (T.left, *OUTPUT_TOPICS)}
        assert all(i.msgcount == FRAMES for i in reader.topics.values())
    per_stamp: dict[int, dict[str, object]] = {}
    for topic, _, _, msg in _read(written):
        per_stamp.setdefault(stamp_ns(msg.header), {})[topic] = msg
    assert set(per_stamp) == set(direct)
    for stamp, group in per_stamp.items():
        assert {m.header.frame_id for m in group.values()} == {"zed_left_camera_optical_frame"}
        assert {(m.width, m.height) for m in group.values()} == {(WIDTH, HEIGHT)}
        assert [group[t].encoding for t in OUTPUT_TOPICS] == ["mono8", "mono8", "mono8", "rgb8"]
        labels = image_array(group["/road_seg/labels"])
        np.testing.assert_array_equal(labels, direct[stamp])
        np.testing.assert_array_equal(image_array(group["/road_seg/drivable_mask"]),
                                      np.where(labels == 1, 255, 0))
        np.testing.assert_array_equal(image_array(group["/road_seg/obstacle_mask"]),
                                      np.where(np.isin(labels, (2, 3)), 255, 0))
        assert group[T.left].encoding == "bgra8"


def test_gt_dir_scores_only_annotated_frames(bags, tiny_checkpoint, tmp_path, direct, scenes, recording):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    annotated = {recording.stamp_ns(i): s.labels.copy() for i, s in enumerate(scenes) if i % 3 == 0}
    for stamp, labels in annotated.items():
        labels[:4] = 255  # an ignored band
        cv2.imwrite(str(gt_dir / f"{stamp}.png"), labels)
    (gt_dir / "notes.png").write_bytes(b"")  # not a stamp: ignored
    assert _eval(bags["mcap"], tiny_checkpoint, "--gt-dir", str(gt_dir), "--report", str(tmp_path / "r")) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["counts"]["evaluated_frames"] == len(annotated)
    assert metrics["counts"]["frames_without_gt"] == FRAMES - len(annotated)
    assert metrics["ground_truth"] == f"directory {gt_dir}"
    expected = _expected(set(annotated), direct, scenes, recording, gt_of=annotated.get)
    assert metrics["metrics"]["per_class"] == expected["per_class"]
    assert metrics["metrics"]["miou"] == expected["miou"]


def _policy(cfg: PerceptionConfig, policy: str, **sync) -> PerceptionConfig:
    return dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, policy=policy, **sync))


@pytest.mark.parametrize("policy", ["approximate", "message_filters"])
def test_sync_drops_sets_whose_thermal_was_dropped(tmp_path, node_cfg, pipeline, policy, monkeypatch):
    """The approximate policy and the real message_filters (rosbags messages through it): a left image whose
    thermal was lost gets no set."""
    if policy == "message_filters":
        overlay = Path(__file__).resolve().parent.parent.parent / "shared" / "ros2_overlay"
        if overlay.is_dir():  # after a ROS install's own packages
            monkeypatch.setattr(sys, "path", [*sys.path, str(overlay)])
        pytest.importorskip("message_filters")
    node_cfg = _policy(node_cfg, policy, sensor_timeout=0.0)
    bag = tmp_path / "dropping"
    assert _sim(bag, "mcap", "--drop-rate", "thermal=0.4", "--jitter-ms", "thermal=5,depth=2") == 0
    msgs_by_topic: dict[str, list[int]] = {}
    for topic, _, _, msg in _read(bag):
        if hasattr(msg, "header"):
            msgs_by_topic.setdefault(topic, []).append(stamp_ns(msg.header))
    thermal = np.array(msgs_by_topic[T.thermal])
    assert 0 < len(thermal) < FRAMES
    expected = [s for s in msgs_by_topic[T.left] if np.min(np.abs(thermal - s)) < 50_000_000]

    with closing(open_reader(bag)) as reader:
        replay = BagReplay(reader, node_cfg, plan_inputs(pipeline.modalities, node_cfg), pipeline)
        stamps = [r.frame.stamp_ns for r in replay.frames()]
    assert stamps == expected
    assert replay.sync.stats.matched == len(expected)


def _copy_without(src: Path, dst: Path, topic: str, after_ns: int) -> None:
    """Copy a bag, leaving out `topic`'s messages logged after `after_ns` (a sensor that died)."""
    with closing(open_reader(src)) as reader:
        writer = open_writer(dst, "mcap")
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=msgs.TYPESTORE) for c in reader.connections}
        for conn, log_ns, raw in reader.messages():
            if not (conn.topic == topic and log_ns > after_ns):
                writer.write(conns[conn.id], log_ns, raw)
        writer.close()


def test_replay_goes_on_without_a_thermal_camera_that_went_silent(tmp_path, node_cfg, pipeline):
    """As the node does (sync.sensor_timeout): once thermal is silent that long, sets go on without it."""
    full, bag = tmp_path / "full", tmp_path / "thermal_dies"
    assert main(["sim", "--record", str(full), "--frames", "16", "--width", str(WIDTH), "--height", str(HEIGHT),
                 "--seed", str(SEED), "--storage", "mcap", "--no-progress"]) == 0
    left = [stamp_ns(m.header) for topic, _, _, m in _read(full) if topic == T.left]
    _copy_without(full, bag, T.thermal, after_ns=left[4] - 1)  # thermal's last message: frame 3's
    cfg = _policy(node_cfg, "approximate", sensor_timeout=0.25)
    plan = plan_inputs(pipeline.modalities, cfg)
    with closing(open_reader(bag)) as reader:
        replay = BagReplay(reader, cfg, plan, pipeline)
        frames = list(replay.frames())
    # approximate policy: frames 0..3 with thermal; 4, 5 wait for it (within 0.25 s of frame 3) and are lost; 6..15 go on without it
    assert [f.frame.stamp_ns for f in frames] == left[:4] + left[6:]
    assert all(f.frame.thermal is not None for f in frames[:4])
    assert all(f.frame.thermal is None and f.frame.depth is not None for f in frames[4:])
    assert replay.sync.down_names == ("thermal",)
    assert replay.sync.substituted[plan.keys.index("thermal")] == 10

    with closing(open_reader(bag)) as reader:  # the default, left-driven policy loses no left image
        replay = BagReplay(reader, _policy(node_cfg, "left", sensor_timeout=0.25), plan, pipeline)
        frames = list(replay.frames())
    assert [f.frame.stamp_ns for f in frames] == left
    assert all(f.frame.thermal is not None for f in frames[:4])
    assert all(f.frame.thermal is None and f.frame.depth is not None for f in frames[4:])
    assert replay.sync.down_names == ("thermal",)
    assert replay.sync.substituted[plan.keys.index("thermal")] == 12


def test_left_policy_gives_every_left_image_a_frame_and_absent_thermal_where_it_was_lost(tmp_path, node_cfg,
                                                                                          pipeline):
    bag = tmp_path / "dropping"
    assert _sim(bag, "mcap", "--drop-rate", "thermal=0.4", "--jitter-ms", "thermal=5,depth=2") == 0
    by_topic: dict[str, list[int]] = {}
    for topic, _, _, msg in _read(bag):
        if hasattr(msg, "header"):
            by_topic.setdefault(topic, []).append(stamp_ns(msg.header))
    thermal = np.array(by_topic[T.thermal])
    with closing(open_reader(bag)) as reader:
        replay = BagReplay(reader, node_cfg, plan_inputs(pipeline.modalities, node_cfg), pipeline)
        frames = list(replay.frames())
    assert node_cfg.sync.policy == "left"
    assert [f.frame.stamp_ns for f in frames] == by_topic[T.left]
    for f in frames:
        assert (f.frame.thermal is not None) == bool(np.min(np.abs(thermal - f.frame.stamp_ns)) < 50_000_000)
    assert replay.sync.stats.missing[2] == FRAMES - len(thermal)


# -- errors -------------------------------------------------------------------------------------------------------
def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_bag(tmp_path, tiny_checkpoint, capsys):
    assert _eval(tmp_path / "nope", tiny_checkpoint) == 2
    _one_line_error(capsys, "bag not found", "nope")


def test_unknown_storage(tmp_path, bags, tiny_checkpoint, capsys):
    assert _sim(tmp_path / "x", "rosbag1") == 2
    _one_line_error(capsys, "unknown storage 'rosbag1'", "mcap, sqlite3")
    odd = tmp_path / "odd"
    odd.mkdir()
    meta = yaml.safe_load((bags["sqlite3"] / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["storage_identifier"] = "hdf5"
    (odd / "metadata.yaml").write_text(yaml.safe_dump(meta))
    assert _eval(odd, tiny_checkpoint) == 2
    _one_line_error(capsys, "unknown storage 'hdf5'")


def test_topic_absent_lists_the_bags_topics(tmp_path, bags, tiny_checkpoint, capsys):
    params = yaml.safe_load((config_dir() / "perception.yaml").read_text())
    params["/**/road_seg"]["ros__parameters"]["topics"]["thermal"] = "/boson/thermal"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert _eval(bags["mcap"], tiny_checkpoint, "--params", str(path), "--report", str(tmp_path / "r")) == 2
    _one_line_error(capsys, "/boson/thermal", "topics.thermal", f"the bag has: {T.thermal} (sensor_msgs/msg/Image, "
                    f"{FRAMES} msgs)", GT_TOPIC)
    assert not (tmp_path / "r").exists()


def test_ground_truth_of_another_size(tmp_path, bags, tiny_checkpoint, recording, capsys):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    cv2.imwrite(str(gt_dir / f"{recording.stamp_ns(0)}.png"), np.zeros((HEIGHT // 2, WIDTH // 2), np.uint8))
    assert _eval(bags["mcap"], tiny_checkpoint, "--gt-dir", str(gt_dir), "--report", str(tmp_path / "r")) == 2
    _one_line_error(capsys, f"is {WIDTH // 2}x{HEIGHT // 2} but the left image is {WIDTH}x{HEIGHT}")


def test_pothole_ids_of_another_size_are_one_line(tmp_path, bags, tiny_checkpoint, capsys):
    """A bag whose /sim/pothole_ids are half the left image's size: one line naming the topic and both sizes."""
    bag = tmp_path / "small_ids"
    writer = open_writer(bag, "mcap")
    conns = {}
    for topic, msgtype, log_ns, msg in _read(bags["mcap"]):
        if topic == POTHOLE_IDS_TOPIC:
            msg = msgs.image(np.zeros((HEIGHT // 2, WIDTH // 2), np.uint16), "mono16", stamp_ns(msg.header),
                             msg.header.frame_id)
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=msgs.TYPESTORE)
        writer.write(conns[topic], log_ns, msgs.serialize(msg))
    writer.close()
    assert _eval(bag, tiny_checkpoint, "--report", str(tmp_path / "r")) == 2
    _one_line_error(capsys, f"topic {POTHOLE_IDS_TOPIC}", f"are {WIDTH // 2}x{HEIGHT // 2} but the left image is "
                    f"{WIDTH}x{HEIGHT}")


def test_ground_truth_checks():
    good = np.array([[0, 1, 2], [3, 255, 0]], np.uint8)
    assert check_labels(good, (2, 3), "x") is good
    with pytest.raises(GroundTruthError, match=r"label ids \[7, 9\]"):
        check_labels(np.array([[0, 7], [9, 1]], np.uint8), (2, 2), "x")
    with pytest.raises(GroundTruthError, match="single-channel 8-bit"):
        check_labels(np.zeros((2, 3, 3), np.uint8), (2, 3), "x")
    with pytest.raises(GroundTruthError, match="single-channel 8-bit"):
        check_labels(np.zeros((2, 3), np.uint16), (2, 3), "x")


def test_existing_output_bag_is_refused(bags, tiny_checkpoint, capsys):
    assert _eval(bags["mcap"], tiny_checkpoint, "--write-bag", str(bags["sqlite3"])) == 2
    _one_line_error(capsys, "exists already")


def test_bag_tools_do_not_import_ros():
    """sim and eval-bag run in a plain venv: nothing they import, directly or through project modules, is ROS."""
    import ast

    repo = Path(__file__).resolve().parent.parent
    ros = {"rclpy", "sensor_msgs", "std_msgs", "stereo_msgs", "diagnostic_msgs", "message_filters", "cv_bridge"}
    # sync.policy message_filters: its module imports the ROS package (and rclpy) only when that policy is built;
    # at module level it must import nothing of ROS.
    lazy_ros = {"road_seg_core.mf_sync"}
    todo = [f"road_seg_core.bag.{p.stem}" for p in (repo / "road_seg_core" / "bag").glob("*.py")]
    seen: set[str] = set()
    offenders = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = repo.joinpath(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text())
        for node in (tree.body if name in lazy_ros else ast.walk(tree)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for mod in names:
                if mod.split(".")[0] in ros:
                    offenders.append(f"{name} imports {mod}")
                elif mod.split(".")[0] in ("road_seg_core", "road_seg_ros", "road_seg_training"):
                    todo.append(mod)
                    todo += [f"{mod}.{a.name}" for a in getattr(node, "names", []) if isinstance(node, ast.ImportFrom)]
    assert "road_seg_core.frame_assembly" in seen and "road_seg_core.pipeline" in seen and lazy_ros <= seen
    assert not offenders, offenders


def test_frame_assembly_shared_with_the_node():
    from road_seg_core.frames import StereoIntrinsics
    from road_seg_core.frame_assembly import DecodedInput, assemble_frame, check_encoding
    from road_seg_core.sensor_spec import disparity_intrinsics
    from road_seg_core.input_plan import InputRejected

    bgra = np.zeros((4, 8, 4), np.uint8)
    bgra[..., 2] = 200  # red in BGRA
    left = DecodedInput(7, "cam", "bgra8", bgra)
    mm = np.full((2, 4), 1500, np.uint16)
    mm[0, 0] = 0
    topics = {"left": "/l", "depth": "/d", "right": "/r", "left_info": "/li"}
    frame = assemble_frame({"left": left, "depth": DecodedInput(8, "cam", "16UC1", mm)}, topics)
    assert (frame.stamp_ns, frame.frame_id, frame.rgb[0, 0].tolist()) == (7, "cam", [200, 0, 0])
    assert np.isnan(frame.depth[0, 0]) and frame.depth[1, 1] == pytest.approx(1.5)  # mm -> m, 0 = no measurement
    with pytest.raises(InputRejected) as exc:
        assemble_frame({"left": left, "depth": DecodedInput(8, "cam", "32FC1", np.zeros((4, 4), np.float32))}, topics)
    assert (exc.value.topic, exc.value.reason) == ("/d", "unregistrable_size")
    with pytest.raises(InputRejected) as exc:
        assemble_frame({"left": left}, topics, needs_camera_info=True)
    assert (exc.value.topic, exc.value.reason) == ("/li", "missing_camera_info")
    intr = StereoIntrinsics(80.0, 80.0, 40.0, 20.0, 0.12, 16, 8)
    assert assemble_frame({"left": left}, topics, intr, needs_camera_info=True).intrinsics.fx == 40.0  # scaled
    # Where the intrinsics only help (the road-plane fit of "height"), a set goes on without them, or takes them.
    assert assemble_frame({"left": left}, topics).intrinsics is None
    assert assemble_frame({"left": left}, topics, intr).intrinsics.fx == 40.0
    with pytest.raises(InputRejected, match="not usable as depth"):
        check_encoding("depth", "bgra8", "/d")
    assert disparity_intrinsics(0.0, 0.12, 8, 4) is None
    assert disparity_intrinsics(50.0, 0.12, 8, 4).baseline_m == 0.12


def test_eval_bag_confirms_potholes_over_frames_as_the_node_would(tmp_path, bags, scenes, recording, node_cfg):
    """`obstacles.confirm_frames` of the parameters file runs in the replay as in the node: the written labels
    are those of road_seg_core's pipeline with the same confirmation over the same frames in order."""
    from road_seg_core.pothole_filter import PotholeFilterConfig
    from tiny_models import save_calibrated

    checkpoint = save_calibrated(tmp_path / "seeded.pt", seed=1)  # untrained, seeded: it predicts some potholes
    params = yaml.safe_load((config_dir() / "perception.yaml").read_text())
    params["/**/road_seg"]["ros__parameters"]["obstacles"]["confirm_frames"] = 2
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    report, written = tmp_path / "r", tmp_path / "masks"
    assert _eval(bags["mcap"], checkpoint, "--params", str(path), "--report", str(report),
                 "--write-bag", str(written)) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["potholes_published"] == {"min_depth_share": 0.5, "confirm_frames": 2, "confirm_radius": 0.0125,
                                             "thermal_contrast": 0.003, "thermal_probability": 0.7}

    engine = create_engine(checkpoint, device="cpu")
    pipelines = {n: SegmentationPipeline(engine, node_cfg.preprocess_config(),
                                         obstacles=PotholeFilterConfig(confirm_frames=n)) for n in (1, 2)}
    plain, confirmed = ({recording.stamp_ns(i): pipelines[n].run(s.frame).masks.labels for i, s in enumerate(scenes)}
                        for n in (1, 2))
    first = recording.stamp_ns(0)
    assert (plain[first] == 3).any(), "the seeded model predicts potholes: the test can tell"
    assert not (confirmed[first] == 3).any(), "nothing is confirmed on the first frame"
    assert any((confirmed[s] == 3).any() for s in confirmed), "blobs seen twice are published"
    labels = {stamp_ns(msg.header): image_array(msg) for topic, _, _, msg in _read(written)
              if topic == "/road_seg/labels"}
    assert labels.keys() == confirmed.keys()
    for stamp, expected in confirmed.items():
        assert np.array_equal(labels[stamp], expected), stamp
