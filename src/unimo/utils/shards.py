"""Deterministic sharding of preprocessing work by image id (issue 13): any scheduler runs the shards.

The shard of an image is ``zlib.crc32(<image id as UTF-8>) % num_shards``: a fixed checksum, so the partition is
the same on every run, machine and Python version (Python's ``hash()`` of a str is salted per process). Every
tool that shards (``preprocess.extract_features``, ``preprocess.features convert``, ``preprocess.rewrite``) uses
this one rule, so with the same N the same image lands in the same shard index everywhere.

Shard ``I`` of ``N`` writes ``<output>/shard-IIIII-of-NNNNN[<suffix>]``: the same ``--output`` on every command
line (a Slurm array or ``xargs -P`` only varies ``--shard``), and a directory the readers and the merge commands
recognise (a missing shard is an error there, not a silently smaller data set).
"""
from __future__ import annotations

import argparse
import re
import zlib
from pathlib import Path

from .errors import UserError

PARTITION_RULE = "crc32(utf-8 image id) % num_shards"
SHARD_HELP = ("split the work into N deterministic shards by image id (shard = zlib.crc32 of the UTF-8 image id "
              "mod N: stable across runs, machines and Python versions); this run does shard --shard I and writes "
              "OUTPUT/shard-IIIII-of-NNNNN (default: %(default)s = no sharding)")
_NAME_RE = re.compile(r"^shard-(\d{5,})-of-(\d{5,})")


def shard_of(image_id: str | int, num_shards: int) -> int:
    """The shard (0..num_shards-1) an image id belongs to."""
    return zlib.crc32(str(image_id).encode("utf-8")) % num_shards


def shard_name(shard: int, num_shards: int, suffix: str = "") -> str:
    """``shard-00003-of-00010`` (+ ``suffix``): sorts in shard order for up to 99999 shards."""
    return f"shard-{shard:05d}-of-{num_shards:05d}{suffix}"


def parse_shard_name(name: str) -> tuple[int, int] | None:
    """``(shard, num_shards)`` of a name made by :func:`shard_name`, else None."""
    m = _NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--num-shards N --shard I`` with the help text every sharding tool shares."""
    parser.add_argument("--num-shards", type=int, default=None, metavar="N", help=SHARD_HELP)
    parser.add_argument("--shard", type=int, default=None, metavar="I",
                        help="which shard this run does, 0..N-1 (with --num-shards; e.g. $SLURM_ARRAY_TASK_ID; "
                             "default: %(default)s)")


def check_shard_arguments(num_shards: int | None, shard: int | None) -> tuple[int, int] | None:
    """``(shard, num_shards)``, or None when not sharding; a bad combination is a :class:`UserError`."""
    if num_shards is None and shard is None:
        return None
    if num_shards is None or shard is None:
        raise UserError("--num-shards and --shard go together", field="--shard" if shard is None else "--num-shards",
                        hint="e.g. --num-shards 8 --shard 3")
    if not 1 <= num_shards <= 99999:
        raise UserError(f"must be in 1..99999, got {num_shards}", field="--num-shards")
    if not 0 <= shard < num_shards:
        raise UserError(f"must be in 0..{num_shards - 1} for --num-shards {num_shards}, got {shard}", field="--shard")
    return shard, num_shards


def shard_output(output: str | Path, shard: tuple[int, int] | None, suffix: str = "") -> Path:
    """Where a run writes: ``output`` itself, or ``output/shard-IIIII-of-NNNNN<suffix>`` when sharding."""
    return Path(output) if shard is None else Path(output) / shard_name(shard[0], shard[1], suffix)


def find_shards(directory: str | Path, suffix: str = "") -> list[Path]:
    """The complete, consistent set of ``shard-*-of-N<suffix>`` entries of ``directory``, in shard order.

    Hidden entries (temporary names of shards still being written) are ignored. Mixed shard counts or a missing
    shard are :class:`UserError`\\ s naming what is wrong."""
    directory = Path(directory)
    found: dict[int, Path] = {}
    counts: set[int] = set()
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        parsed = parse_shard_name(entry.name)
        if parsed is None or entry.name != shard_name(*parsed, suffix):
            continue
        found[parsed[0]] = entry
        counts.add(parsed[1])
    if not found:
        raise UserError(f"no shard-IIIII-of-NNNNN{suffix} entries", file=str(directory))
    if len(counts) > 1:
        raise UserError(f"shards of different runs (num_shards {sorted(counts)})", file=str(directory),
                        hint="keep the shards of one run per directory")
    n = counts.pop()
    missing = [i for i in range(n) if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise UserError(f"{len(missing)} of {n} shards missing or unfinished (shard {shown})", file=str(directory),
                        hint="run the missing shards (--num-shards N --shard I) before reading or merging")
    return [found[i] for i in range(n)]
