"""Atomic file writes: readers (a node loading a model, a cache lookup) never see half a file.

One implementation for every writer of files another process may read while
they are written: checkpoints, training state, ONNX exports, TensorRT engines
and their sidecars. The data goes to a unique sibling temporary file, is
fsynced and renamed over the target; on any failure the temporary file is
removed and the old target (if any) is left untouched.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator


def _temporary_sibling(path: Path) -> Path:
    # A unique sibling name (not mkstemp, whose 0600 mode would survive the rename) keeps the umask's permissions,
    # and the same directory keeps the rename atomic (same file system).
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose contents replace `path` only when the block exits without an exception.

    For writers that stream (``torch.save(obj, handle)``); parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]
