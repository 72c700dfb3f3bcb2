"""Opening rosbag2 bags for reading and writing, with one-line errors an operator can act on.

Both storages ROS 2 Jazzy ships are supported: sqlite3 (`.db3`) and MCAP (the
default since Iron). A bag is a directory with `metadata.yaml`; a bare
`.db3`/`.mcap` file is read too.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from rosbags.interfaces import Connection
from rosbags.rosbag2 import (CompressionFormat, CompressionMode, Reader, ReaderError, StoragePlugin, Writer,
                             WriterError)

#: Storage name (as in `ros2 bag record -s`) -> rosbags plugin.
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


class BagError(RuntimeError):
    """A bag cannot be used as asked; the message is one line naming the bag and the problem."""


def storage_plugin(name: str) -> StoragePlugin:
    try:
        return STORAGES[name]
    except KeyError:
        raise BagError(f"unknown storage {name!r}; known: {', '.join(sorted(STORAGES))}") from None


def storage_of(path: str | Path) -> str:
    """The storage of an existing bag ('mcap' or 'sqlite3'); BagError if missing or of another storage."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    if path.is_file():
        if path.suffix in _SUFFIXES:
            return _SUFFIXES[path.suffix]
        raise BagError(f"unknown storage for {path}: expected a bag directory or a .mcap/.db3 file")
    meta = path / "metadata.yaml"
    if not meta.is_file():
        raise BagError(f"{path} is not a rosbag2 bag (no metadata.yaml)")
    try:
        info = (yaml.safe_load(meta.read_text()) or {})["rosbag2_bagfile_information"]
        storage = str(info["storage_identifier"])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{meta}: not rosbag2 metadata ({exc.__class__.__name__}: {exc})") from None
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r} in {path}; readable: {', '.join(sorted(STORAGES))}")
    return storage


def open_reader(path: str | Path) -> Reader:
    """An opened rosbags Reader; close it (e.g. `with contextlib.closing(open_reader(p)) as reader`)."""
    storage_of(path)
    reader = Reader(Path(path))
    try:
        reader.open()
    except (ReaderError, FileNotFoundError, OSError) as exc:
        raise BagError(f"cannot read bag {path}: {exc}") from None
    return reader


def open_writer(path: str | Path, storage: str, compress: bool = False) -> Writer:
    """An opened version-9 (Jazzy) Writer; BagError if `path` exists (bags are never overwritten).

    `compress`: zstd, the way `ros2 bag` reads it without extra options and a reader can still stream it:
    for MCAP, compressed chunks inside the file (what rosbag2's zstd storage presets write); for sqlite3,
    each message compressed (`--compression-mode message`; file mode would inflate the whole bag first).
    """
    plugin = storage_plugin(storage)
    path = Path(path)
    if path.exists():
        raise BagError(f"output bag {path} exists already; choose another path or remove it")
    writer = Writer(path, version=9, storage_plugin=plugin)
    if compress:
        mode = CompressionMode.STORAGE if plugin is StoragePlugin.MCAP else CompressionMode.MESSAGE
        writer.set_compression(mode, CompressionFormat.ZSTD)
    try:
        writer.open()
    except (WriterError, OSError) as exc:
        raise BagError(f"cannot create bag {path}: {exc}") from None
    return writer


def describe_topics(reader: Reader) -> str:
    """'/a (sensor_msgs/msg/Image, 10 msgs), ...' sorted by topic, for error messages."""
    return ", ".join(f"{name} ({info.msgtype}, {info.msgcount} msgs)" for name, info in sorted(reader.topics.items()))


def connections(reader: Reader, topic: str, role: str, msgtypes: tuple[str, ...]) -> list[Connection]:
    """The bag's connections on `topic`; BagError listing the bag's topics if absent, or if of another type."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        raise BagError(f"topic {topic} ({role}) is not in bag {reader.path}; the bag has: {describe_topics(reader)}")
    wrong = sorted({c.msgtype for c in conns} - set(msgtypes))
    if wrong:
        raise BagError(f"topic {topic} ({role}) in bag {reader.path} has type {', '.join(wrong)}; "
                       f"expected {' or '.join(msgtypes)}")
    return conns
