"""Prints requirements.txt for one target: its pins replaced by the target's constraints file.

pip cannot override a requirement pin with a constraint (`numpy==2.4.6` and `-c numpy==1.26.4` is a conflict), so
the requirements for a target are written out here: every package the constraints file pins takes that pin, and
`--without-system` leaves out what the target's system Python provides (the constraints file's `#system:` lines,
shell-style patterns such as `ros-jazzy-*`). Standard library only: it runs before anything is installed.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(name: str) -> str:
    """PEP 503 form, so `PyYAML`, `pyyaml` and `py_yaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The project name of a requirements line, or None for blank lines, comments and options."""
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    match = _NAME.match(text)
    return normalise(match.group(1)) if match else None


def read_constraints(path: Path) -> tuple[dict[str, str], list[str]]:
    """(pins by normalised name, patterns of packages the system provides)."""
    pins: dict[str, str] = {}
    system: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#system:"):
            system += [normalise(p) for p in line[len("#system:"):].split()]
        elif (name := requirement_name(line)) is not None:
            pins[name] = line.split("#", 1)[0].strip()
    return pins, system


def target_requirements(requirements: Path, constraints: Path | None, without_system: bool) -> list[str]:
    """The lines to install: requirements.txt with the target's pins in place of its own."""
    pins, system = read_constraints(constraints) if constraints else ({}, [])
    out = []
    for line in requirements.read_text().splitlines():
        name = requirement_name(line)
        if name is None:
            continue
        if without_system and any(fnmatch.fnmatchcase(name, pattern) for pattern in system):
            continue
        out.append(pins.get(name, line.split("#", 1)[0].strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", type=Path)
    parser.add_argument("--constraints", type=Path, help="the target's constraints file (none: requirements as is)")
    parser.add_argument("--without-system", action="store_true",
                        help="leave out the packages the target's system Python provides (#system: lines)")
    args = parser.parse_args(argv)
    for path in (args.requirements, args.constraints):
        if path is not None and not path.is_file():
            print(f"requirements_for: no such file: {path}", file=sys.stderr)
            return 2
    print("\n".join(target_requirements(args.requirements, args.constraints, args.without_system)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
