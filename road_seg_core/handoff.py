"""Latest-wins hand-off between the synchroniser and the one inference worker.

A slow model must never back up the subscriptions: the synchroniser puts each
set here and returns at once; a set not yet taken when a newer one arrives
while the worker is busy is dropped and counted, so the worker always runs on
the freshest data. Only when the worker is idle -- waiting in `take`, woken but
not yet scheduled -- does a second set queue behind the first: two sets
released back to back (a set that waited for a lost input, then the next one)
both reach an idle worker instead of one superseding the other.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any


class LatestSlot:
    """A mailbox for one item (two while the worker is idle): `put` replaces, `take` blocks until one arrives."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self._closed = False
        self._waiting = 0  # workers blocked in take()
        self.superseded = 0  # items replaced before the worker took them

    def put(self, item: Any) -> bool:
        """Store `item`; returns True if it superseded one that was never taken."""
        with self._cond:
            dropped = bool(self._items) and not (self._waiting and len(self._items) < 2)
            if dropped:
                self.superseded += 1
                self._items[-1] = item
            else:
                self._items.append(item)
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Any | None:
        """The oldest waiting item (the newest unless two came while idle), or None on timeout or after `close`."""
        with self._cond:
            self._waiting += 1
            try:
                if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                    return None
                if not self._items:
                    return None
                return self._items.popleft()
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Wake the worker so it can exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
