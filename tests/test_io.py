"""The one line reader / JSON parser / atomic writers of unimo.utils.io under damaged input."""
from __future__ import annotations

import gzip
import json
import os
import stat

import pytest

from unimo.utils.errors import DataError
from unimo.utils.io import atomic_directory, atomic_write, iter_lines, parse_json_object


def test_truncated_gzip_names_the_line_reached(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for i in range(2000):
            f.write(json.dumps({"i": i, "pad": "x" * 50}) + "\n")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    read = []
    with pytest.raises(DataError) as caught:
        for n, text in iter_lines(str(path)):
            read.append(json.loads(text)["i"])
    assert read == list(range(len(read))) and len(read) > 100  # every complete line before the damage
    assert str(caught.value).startswith(f"{path}:{len(read) + 1}: compressed data is truncated or damaged after "
                                        f"line {len(read)} (EOFError")


def test_json_parser_errors_name_file_and_line():
    with pytest.raises(DataError, match=r"^f:3: invalid JSON \(ValueError: Exceeds the limit"):
        parse_json_object('{"a": ' + "1" * 5000 + "}", "f", 3)
    with pytest.raises(DataError, match=r"^f:4: invalid JSON \(RecursionError"):
        parse_json_object("[" * 100000 + "]" * 100000, "f", 4)


def test_atomic_outputs_get_the_usual_modes(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "b.txt") as f:
            f.write("x")
        with atomic_directory(tmp_path / "dd") as tmp:
            (tmp_path / "dd").exists() or open(os.path.join(tmp, "f"), "w").close()
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "dd").st_mode) == 0o755
