"""Latest-wins hand-off between the synchroniser and the one inference worker.

A slow model must never back up the subscriptions: the synchroniser puts each
set here and returns at once; a set not yet taken when a newer one arrives is
dropped and counted, so the worker always runs on the freshest data.
"""
from __future__ import annotations

import threading
from typing import Any


class LatestSlot:
    """A one-item mailbox: `put` replaces, `take` blocks until something (or `close`) arrives."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False
        self.superseded = 0  # items replaced before the worker took them

    def put(self, item: Any) -> bool:
        """Store `item`; returns True if it superseded one that was never taken."""
        with self._cond:
            dropped = self._full
            if dropped:
                self.superseded += 1
            self._item, self._full = item, True
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Any | None:
        """The newest item, or None on timeout or after `close`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake the worker so it can exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
