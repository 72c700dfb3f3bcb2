"""Expected failures caused by what the user asked for, and the output-path checks that raise them.

`road-seg` prints a `UserError` as one line (``road-seg <cmd>: error: <message>``)
and exits 2; any other exception is a bug and keeps its traceback. A message
names the problem and the value (``--out /sys/x.onnx: cannot write in /sys
(Permission denied)``), so it is useful without the code.

The checks write nothing: a folder that does not exist yet is judged by the
first ancestor that does (it must be a folder we can create files in), so a
refused command leaves no trace behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["UserError", "check_output_dir", "check_output_file"]


class UserError(Exception):
    """A command cannot do what was asked because of its input (a path, a value, a file's content)."""


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` is, or can be created as, a folder we may write in; raises UserError naming `flag` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder")
    _check_creatable(path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` can be written as a file (parent folders created as needed); raises UserError naming `flag`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder, give a file name")
    _check_creatable(path.parent, flag, target=path)
    return path


def _check_creatable(folder: Path, flag: str, target: Path | None = None) -> None:
    shown = target if target is not None else folder
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {shown}: {existing} is a file, not a folder")
    try:  # the one reliable test (root passes os.access everywhere, yet cannot write in /proc or /sys)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {shown}: cannot create files in {existing} ({exc.strerror or exc})") from None
