"""NodeStats -> diagnostic_msgs/DiagnosticArray, published about once a second."""
from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from road_seg_core.telemetry import NodeStats


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, float):
        value = f"{value:.2f}"
    return KeyValue(key=key, value=str(value))


def build_diagnostics(stats: NodeStats, node: Any, stamp) -> DiagnosticArray:
    """One status named after the node (with its namespace: `car1/road_seg: perception`): rates, drops,
    rejections, inputs missing from sets, the share of left images that got a mask, latency, what runs, what the
    pothole checks did."""
    status = DiagnosticStatus()
    status.name = f"{node.get_fully_qualified_name().lstrip('/')}: perception"
    status.hardware_id = f"{node.engine.backend}/{node.engine.device}"
    values = []
    with stats.lock:
        for name, meter in sorted(stats.input_rates.items()):
            values.append(_kv(f"input_rate_hz.{name}", meter.rate()))
            values.append(_kv(f"received.{name}", meter.total))
        out_rate = stats.output_rate.rate()
        values += [
            _kv("output_rate_hz", out_rate),
            _kv("synchronised_sets", stats.synchronised),
            _kv("dropped_sets", stats.dropped_sets),
            _kv("failed_sets", stats.failed_sets),
            _kv("published", stats.published),
            _kv("latency_ms.p50", stats.latency_ms.percentile(50)),
            _kv("latency_ms.p99", stats.latency_ms.percentile(99)),
        ]
        for name, window in sorted(stats.stage_ms.items()):
            values.append(_kv(f"stage_ms.{name}.p50", window.percentile(50)))
        rejected_total = sum(stats.rejected.values())
        for (topic, reason), count in sorted(stats.rejected.items()):
            values.append(_kv(f"rejected.{reason}.{topic}", count))
        received_any = bool(stats.input_rates)
        left = stats.input_rates.get("left")
        left_total = left.total if left is not None else 0
        left_silent_s = time.monotonic() - left.last if left is not None and left.last is not None else None
        values += [_kv("left_images", left_total),
                   _kv("mask_share", stats.published / left_total if left_total else float("nan"))]
    values += [
        _kv("rejected_total", rejected_total),
        _kv("model", node.model_path),
        _kv("modalities", ",".join(node.engine.meta.modalities)),
        _kv("backend", node.engine.backend),
        _kv("device", node.engine.device),
        _kv("sync", node.sync_impl),
        _kv("sync_policy", node.cfg.sync.policy),
        _kv("sensors_down", ",".join(node.sensors_down)),
    ]
    values += [_kv(f"missing.{key}", n) for key, n in node.reception.missing.items()]
    # What the pothole checks did since start (blobs predicted, without depth, kept on thermal, unconfirmed,
    # published): a copy, the worker thread adds to them.
    values += [_kv(f"potholes.{key}", n) for key, n in dict(node.pipeline.potholes.counts).items()]
    silent_limit = max(node.cfg.sync.sensor_timeout, 2 * node.cfg.diagnostics_period)
    status.values = values
    if not received_any:
        status.level, status.message = DiagnosticStatus.WARN, "no input received yet"
    elif left_silent_s is None or left_silent_s > silent_limit:
        status.level = DiagnosticStatus.WARN
        status.message = "no left image received yet" if left_silent_s is None else \
            f"no left image for {left_silent_s:.1f} s: no masks"
    elif out_rate == 0.0:
        status.level, status.message = DiagnosticStatus.WARN, "inputs arrive but no output in the last seconds"
    elif node.sensors_down:
        status.level, status.message = (DiagnosticStatus.WARN, f"running without {', '.join(node.sensors_down)} "
                                        f"(silent > {node.cfg.sync.sensor_timeout:g} s)")
    elif rejected_total:
        status.level, status.message = DiagnosticStatus.OK, f"running; {rejected_total} input messages rejected"
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
