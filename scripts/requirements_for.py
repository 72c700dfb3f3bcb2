"""Prints requirements.txt for one target: its pins replaced by the target's constraints file.

pip cannot override a requirement pin with a constraint (`numpy==2.4.6` and `-c numpy==1.26.4` is a conflict), so
the requirements for a target are written out here: every package the constraints file pins takes that pin.
The constraints file's `#system:` lines name what the target's system Python provides (apt/rosdep on the car):
names, `name==version` (the version the system ships) or shell-style patterns such as `ros-jazzy-*`.
`--without-system` leaves those out (what `make car-venv` pip-installs); `--system-only` prints just those, pinned
(what a stand-in for the car's system Python installs). Standard library only: it runs before anything is installed.
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


def read_constraints(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(pins by normalised name, the system's packages: pattern -> its pin or "")."""
    pins: dict[str, str] = {}
    system: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#system:"):
            for item in line[len("#system:"):].split():
                system[normalise(item.split("==", 1)[0])] = item if "==" in item else ""
        elif (name := requirement_name(line)) is not None:
            pins[name] = line.split("#", 1)[0].strip()
    return pins, system


def target_requirements(requirements: Path, constraints: Path | None, system_part: str = "all") -> list[str]:
    """The lines to install: requirements.txt with the target's pins in place of its own.

    system_part: "all", "without" (leave out what the system provides) or "only" (just that, at the system's pins).
    """
    pins, system = read_constraints(constraints) if constraints else ({}, {})
    out = []
    for line in requirements.read_text().splitlines():
        name = requirement_name(line)
        if name is None:
            continue
        pattern = next((p for p in system if fnmatch.fnmatchcase(name, p)), None)
        if (system_part == "without" and pattern) or (system_part == "only" and not pattern):
            continue
        out.append((system[pattern] if pattern and system_part == "only" else "")
                   or pins.get(name, line.split("#", 1)[0].strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", type=Path)
    parser.add_argument("--constraints", type=Path, help="the target's constraints file (none: requirements as is)")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--without-system", action="store_true",
                      help="leave out the packages the target's system Python provides (#system: lines)")
    part.add_argument("--system-only", action="store_true",
                      help="only the packages the target's system Python provides, at the system's versions")
    args = parser.parse_args(argv)
    for path in (args.requirements, args.constraints):
        if path is not None and not path.is_file():
            print(f"requirements_for: no such file: {path}", file=sys.stderr)
            return 2
    system_part = "without" if args.without_system else "only" if args.system_only else "all"
    print("\n".join(target_requirements(args.requirements, args.constraints, system_part)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
