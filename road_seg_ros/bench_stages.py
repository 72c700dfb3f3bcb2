"""The node's per-frame stages timed in one process, and rclpy's deserialisation of the same messages.

Part 2 of `road-seg bench` (road_seg_ros.bench), also used by `make gpu-check`:
sim_sensors' messages for consecutive frames go through the node's own
reception, pipeline and publishers (`StageBench`), and rclpy deserialising each
frame's input messages is timed just before it, the reference the node's
overhead is read against.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from road_seg_ros.bench_live import summarise

STAGES = ("decode", "convert", "preprocess", "model", "postprocess", "publish")


def received_messages(sensor_size: tuple[int, int], frames: int = 6, seed: int = 0) -> list[Any]:
    """sim_sensors' messages for consecutive frames of its drive (day, night, fog), round-tripped through rclpy
    serialisation so every field has the type a subscription callback sees (e.g. `data` as array.array).

    Consecutive, because per-frame state (the road-plane tracking behind the "height" input) costs what it
    costs on a car only when frames follow each other as they do on a car.
    """
    from rclpy.serialization import deserialize_message, serialize_message

    from road_seg_core.synthetic import SceneStream
    from road_seg_ros.sim_sensors import encode_scene

    h, w = sensor_size
    drive = SceneStream(seed, width=w, height=h, conditions=("day", "night", "fog"),
                        frames_per_condition=max(1, frames // 3), showcase=True)
    out = []
    for _, scene in zip(range(frames), drive):
        msgs = encode_scene(scene, True)
        for field in ("left", "right", "depth", "disparity", "thermal", "left_info", "right_info"):
            msg = getattr(msgs, field)
            setattr(msgs, field, deserialize_message(serialize_message(msg), type(msg)))
        out.append(msgs)
    return out


class StageBench:
    """Runs the node's per-frame code on prepared messages and times each stage."""

    def __init__(self, engine, cfg, messages: list[Any], ros_node, preprocess_on: str = "auto") -> None:
        import functools

        from road_seg_core.input_plan import plan_inputs
        from road_seg_core.pipeline import SegmentationPipeline
        from road_seg_core.reception import Reception
        from road_seg_ros.conversions import image_to_array
        from road_seg_ros.mask_publisher import MaskPublishers

        self.engine, self.cfg, self.messages = engine, cfg, messages
        self.plan = plan_inputs(tuple(engine.meta.modalities), cfg)
        self.pipeline = SegmentationPipeline(engine, cfg.preprocess_config(), preprocess_on, cfg.obstacles)
        # The node's reception path, built the way the node builds it (same synchroniser for the same config).
        self.reception = Reception(self.plan, cfg, functools.partial(image_to_array, use_cv_bridge=cfg.use_cv_bridge))
        first = messages[0]
        self.reception.receive_camera_info("left_info", first.left_info)
        self.reception.receive_camera_info("right_info", first.right_info)
        self.outputs = MaskPublishers(ros_node, 5)
        self._timed = _CpuTimedEngine(engine)
        self.pipeline.engine = self._timed  # same pipeline code; the wrapper only times the model call

    def frame_once(self, index: int, with_overlay: bool = False) -> tuple[dict[str, float], dict[str, float]]:
        """One frame through every stage: (wall ms per stage, process CPU ms per stage).

        CPU time counts every thread of this process (OpenCV's and the runtime's workers included) and,
        unlike wall time, not the time spent waiting for a core on a busy machine.
        """
        msgs = self.messages[index % len(self.messages)]
        stamp = 1_000_000_000 + index * 33_000_000
        c0, t0 = time.process_time(), time.perf_counter()
        matched: list = []
        for key in self.plan.keys:
            matched += self.reception.receive(key, getattr(msgs, key), stamp)
        c1, t1 = time.process_time(), time.perf_counter()
        if len(matched) != 1 or matched[0].missing:
            raise RuntimeError(f"synchroniser produced {len(matched)} sets for one frame "
                               f"(rejected: {dict(self.reception.stats.rejected)})")
        frame = self.reception.assemble(matched[0])
        c2, t2 = time.process_time(), time.perf_counter()
        result = self.pipeline.run(frame, with_overlay, out=self.outputs.buffers(frame.size, with_overlay))
        c3, t3 = time.process_time(), time.perf_counter()
        self.outputs.publish(msgs.left.header, result.masks)
        c4, t4 = time.process_time(), time.perf_counter()
        wall = {"decode": (t1 - t0) * 1e3, "convert": (t2 - t1) * 1e3, **result.timings_ms,
                "publish": (t4 - t3) * 1e3}
        cpu = {"decode": (c1 - c0) * 1e3, "convert": (c2 - c1) * 1e3, "pipeline": (c3 - c2) * 1e3,
               "publish": (c4 - c3) * 1e3}
        return wall, cpu

    def run(self, frames: int, with_overlay: bool = False, warmup: int = 3) -> dict[str, dict[str, float]]:
        """Per-stage wall-time statistics, plus "overhead" (all stages but the model) in wall and CPU time,
        and "deserialise": rclpy deserialising the same frame's input messages, timed just before it.

        Interleaved, so the reference and the stages see the same machine: on a shared machine memory
        bandwidth (what deserialising 9 MB a set mostly costs) varies by half between runs a minute apart.
        """
        blobs = serialised_sets(self.messages, self.plan.keys)
        for i in range(warmup):
            self.frame_once(i, with_overlay)
        samples: dict[str, list[float]] = {s: [] for s in STAGES}
        overhead_wall, overhead_cpu, model_cpu, deserialise = [], [], [], []
        for i in range(frames):
            deserialise.append(deserialise_ms(blobs[(warmup + i) % len(blobs)]))
            wall, cpu = self.frame_once(warmup + i, with_overlay)
            for name, ms in wall.items():
                samples[name].append(ms)
            overhead_wall.append(sum(ms for name, ms in wall.items() if name != "model"))
            model_cpu.append(self._timed.cpu_ms)
            overhead_cpu.append(sum(cpu.values()) - self._timed.cpu_ms)
        out = {name: summarise(values) for name, values in samples.items()}
        out["overhead"] = summarise(overhead_wall)  # everything the node does per frame except the model
        out["overhead_cpu"] = summarise(overhead_cpu)
        out["model_cpu"] = summarise(model_cpu)
        out["deserialise"] = summarise(deserialise)
        # Frame by frame, so a drift of the machine's speed during the run cancels out.
        out["overhead_cpu_per_deserialise"] = summarise([a / b for a, b in zip(overhead_cpu, deserialise)])
        return out


class _CpuTimedEngine:
    """Delegates to an engine and records the process CPU time of its last inference call (whichever of the calls
    the pipeline makes), so the pipeline's CPU time can be split into model and everything else without changing
    the pipeline."""

    #: The engine calls `SegmentationPipeline.run` makes, one per frame.
    TIMED = ("infer_labels", "infer_frame_labels", "infer_labels_and_logits", "infer_frame_labels_and_logits")

    def __init__(self, engine) -> None:
        self._engine = engine
        self.cpu_ms = 0.0

    def __getattr__(self, name: str):
        attribute = getattr(self._engine, name)
        if name not in self.TIMED:
            return attribute

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.cpu_ms = (time.process_time() - start) * 1e3

        return timed


def serialised_sets(messages: list[Any], keys: Sequence[str]) -> list[list[tuple[bytes, type]]]:
    """Each frame's input messages as rclpy serialises them (what a subscription receives), with their types."""
    from rclpy.serialization import serialize_message

    return [[(serialize_message(getattr(m, k)), type(getattr(m, k))) for k in keys] for m in messages]


def deserialise_ms(blob_set: list[tuple[bytes, type]]) -> float:
    """Wall milliseconds rclpy takes to deserialise one input set (one thread's work: on an idle machine its
    CPU time, which is what the stages are compared in)."""
    from rclpy.serialization import deserialize_message

    start = time.perf_counter()
    for blob, kind in blob_set:
        deserialize_message(blob, kind)
    return (time.perf_counter() - start) * 1e3


def transport_in_process(messages: list[Any], keys: Sequence[str]) -> dict[str, float]:
    """rclpy deserialisation of one input set after another (nothing in between): the Python-side floor of
    any subscriber, with the machine's caches and allocator warm for exactly that work."""
    blobs = serialised_sets(messages, keys)
    return summarise([deserialise_ms(blobs[i % len(blobs)]) for i in range(30)])
