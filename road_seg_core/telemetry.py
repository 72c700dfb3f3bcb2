"""Rates and latency percentiles over a sliding window, for diagnostics and benchmarks."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds (bounded memory)."""

    def __init__(self, window_s: float = 5.0, maxlen: int = 4096) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=maxlen)
        self.total = 0
        self._start: float | None = None
        self.last: float | None = None  # time of the latest event

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._start is None:
            self._start = now
        self._times.append(now)
        self.total += 1
        self.last = now

    def rate(self, now: float | None = None) -> float:
        """Events in the window divided by the window (or by the time since the first event, if shorter)."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if self._start is None or not self._times:
            return 0.0
        span = min(self.window_s, now - self._start)
        return len(self._times) / span if span > 0 else 0.0


class LatencyWindow:
    """Keeps the last `maxlen` samples (ms) and reports percentiles."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._samples: deque[float] = deque(maxlen=maxlen)

    def add(self, value_ms: float) -> None:
        self._samples.append(float(value_ms))

    def percentile(self, q: float) -> float:
        if not self._samples:
            return float("nan")
        return float(np.percentile(np.fromiter(self._samples, float), q))

    def __len__(self) -> int:
        return len(self._samples)


class NodeStats:
    """Counters the node reports on /diagnostics; thread-safe for the receive and worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.input_rates: dict[str, RateMeter] = {}
        self.output_rate = RateMeter()
        self.rejected: Counter[tuple[str, str]] = Counter()  # (topic, reason) -> count
        self.synchronised = 0
        self.dropped_sets = 0
        self.failed_sets = 0
        self.published = 0
        self.latency_ms = LatencyWindow()
        self.stage_ms: dict[str, LatencyWindow] = {}

    def received(self, name: str) -> None:
        with self.lock:
            self.input_rates.setdefault(name, RateMeter()).tick()

    def reject(self, topic: str, reason: str) -> int:
        with self.lock:
            self.rejected[(topic, reason)] += 1
            return self.rejected[(topic, reason)]

    def stage(self, name: str, ms: float) -> None:
        with self.lock:
            self.stage_ms.setdefault(name, LatencyWindow(200)).add(ms)
