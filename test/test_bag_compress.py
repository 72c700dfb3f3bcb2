"""`road-seg sim --compress` and `eval-bag --write-bag ... --compress`: zstd bags that read back message for message."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
import yaml

from road_seg_core.bag.bagio import open_reader
from road_seg_cli.main import main

ARGS = ["--frames", "3", "--width", "160", "--height", "96", "--seed", "2", "--no-progress"]


def _messages(bag: Path) -> list[tuple[str, int, bytes]]:
    with closing(open_reader(bag)) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def _size(bag: Path) -> int:
    return sum(p.stat().st_size for p in bag.iterdir() if p.name != "metadata.yaml")


@pytest.mark.parametrize("storage", ("mcap", "sqlite3"))
def test_compressed_sim_bag_is_smaller_and_reads_back_the_same_messages(tmp_path, storage, tiny_checkpoint):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    assert main(["sim", "--record", str(plain), "--storage", storage, *ARGS]) == 0
    assert main(["sim", "--record", str(packed), "--storage", storage, "--compress", *ARGS]) == 0
    assert _messages(packed) == _messages(plain)
    assert _size(packed) < 0.8 * _size(plain)
    info = yaml.safe_load((packed / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    if storage == "sqlite3":  # per-message zstd, as `ros2 bag record --compression-mode message` writes
        assert (info["compression_mode"], info["compression_format"]) == ("message", "zstd")
    else:  # zstd chunks inside the MCAP file: the bag-level fields stay empty, as rosbag2's presets write them
        assert info["compression_mode"] == ""
        assert b"zstd" in next(packed.glob("*.mcap")).read_bytes()[:1 << 20]

    out = tmp_path / "masks"
    assert main(["eval-bag", str(packed), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--no-progress",
                 "--report", str(tmp_path / "r"), "--write-bag", str(out), "--compress"]) == 0
    written = _messages(out)
    assert len({t for t, _, _ in written}) == 5 and len(written) == 5 * 3


def test_compress_without_write_bag_is_refused_in_one_line(tmp_path, tiny_checkpoint, capsys):
    bag = tmp_path / "b"
    assert main(["sim", "--record", str(bag), *ARGS]) == 0
    capsys.readouterr()
    assert main(["eval-bag", str(bag), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--no-progress",
                 "--compress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compress" in err[0] and "--write-bag" in err[0]
