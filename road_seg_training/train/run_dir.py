"""The output folder of a run: never silently replaced, never left empty by a failed start.

A folder "holds a run" when it has any of `RUN_FILES`. Training into it is
refused unless the command resumes that very run (``--resume`` pointing into
it) or says ``--overwrite``, which removes the old run's files (and only
those) first. A folder this start created is removed again when training
fails before its first checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType

from road_seg_core.errors import UserError, check_output_dir

STATE_SUFFIX = ".state.pt"
#: What a run writes into its folder.
RUN_FILES = ("last.pt", "best.pt", f"last{STATE_SUFFIX}", "config.yaml", "log.jsonl", "tb")


class ResumeError(UserError):
    """A run cannot be resumed from the given path (no such run, no training state beside it, another model)."""


def holds_run(folder: Path) -> list[str]:
    """The run files present in `folder` (empty when it holds no run)."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def locate_resume(path: Path) -> tuple[Path, Path]:
    """(checkpoint, training state) of a run given as its folder or its last.pt; ResumeError when absent."""
    path = Path(path)
    if not path.exists():
        raise ResumeError(f"--resume {path}: no such run (no folder or checkpoint at that path)")
    ckpt = path / "last.pt" if path.is_dir() else path
    if path.is_dir() and not ckpt.is_file():
        raise ResumeError(f"--resume {path}: no such run (the folder has no last.pt)")
    state = ckpt.with_name(ckpt.name.removesuffix(".pt") + STATE_SUFFIX)
    if not state.is_file():
        raise ResumeError(f"cannot resume from {ckpt}: training state {state} is missing "
                          "(best.pt and exported checkpoints carry weights only)")
    return ckpt, state


class RunFolder:
    """Context manager around one training start in `out` (see module docstring); `is_main` alone writes."""

    def __init__(self, out: Path, overwrite: bool = False, resume: Path | None = None, is_main: bool = True) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.resume = resume
        self.is_main = is_main
        self._created: Path | None = None

    def __enter__(self) -> "RunFolder":
        if not self.is_main:  # rank 0 alone decides (others may look after it wrote); torchrun ends them if it fails
            return self
        check_output_dir(self.out, "--out")
        present = holds_run(self.out)
        resuming_here = self.resume is not None and _same_run(self.resume, self.out)
        if present and not resuming_here and not self.overwrite:
            raise UserError(f"--out {self.out} already holds a run ({', '.join(present)}); continue it with "
                            f"--resume {self.out}, train into a new --out, or pass --overwrite to replace it")
        if present and self.overwrite and not resuming_here:
            for name in present:
                target = self.out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        missing = self.out.absolute()
        while not missing.parent.exists():
            missing = missing.parent
        self._created = None if self.out.exists() else missing
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None or self._created is None or (self.out / "last.pt").exists():
            return
        shutil.rmtree(self._created, ignore_errors=True)  # a failed start leaves nothing behind


def _same_run(resume: Path, out: Path) -> bool:
    folder = Path(resume) if Path(resume).is_dir() else Path(resume).parent
    return folder.resolve() == Path(out).resolve()
