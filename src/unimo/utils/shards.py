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
import os
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


# -- an existing engine instead of a home-made one: every shard as one Ray task ------------------------------------

DISTRIBUTOR_HELP = ("run the shards: 'none' = this process does --shard I (any scheduler runs the N commands: "
                    "Slurm array, xargs -P, Kubernetes job); 'ray' = submit all N shards as Ray tasks to "
                    "--ray-address (needs `pip install ray`; paths must be visible to every node) "
                    "(default: %(default)s)")


def add_distributor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--distributor", choices=["none", "ray"], default="none", help=DISTRIBUTOR_HELP)
    parser.add_argument("--ray-address", default=None,
                        help="ray.init(address=...): 'auto' or ray://host:10001 for a running cluster; default "
                             "%(default)s = start a local Ray on this machine's cores")


def _call_shard(module: str, function: str, kwargs: dict) -> tuple[str, object]:
    """Body of one Ray task: run ``module.function(**kwargs)``; a user error comes back as its one-line text."""
    import importlib

    from .errors import UserError as _UserError

    fn = getattr(importlib.import_module(module), function)
    try:
        return "ok", fn(**kwargs)
    except (_UserError, ValueError, FileNotFoundError) as exc:  # the CLIs' bad-input errors: exit 2 on the driver
        return "error", str(exc)


def run_shards_with_ray(module: str, function: str, shard_kwargs: list[dict], address: str | None,
                        cpus_per_task: float = 1.0) -> list[object]:
    """Run ``module.function(**kw)`` for every ``kw`` of ``shard_kwargs`` as Ray tasks; results in shard order.

    A shard's bad-input error is raised here as a :class:`UserError` naming the shard (the others still finish:
    each shard's output is complete or absent, so rerunning only the failed shards is enough)."""
    try:
        import ray
    except ImportError:
        raise UserError("needs the ray package (pip install ray; tested with ray 2.60.0, pip check clean with the "
                        "project's pins)", field="--distributor ray") from None
    repo_root = str(Path(__file__).resolve().parents[3])  # preprocess/ lives there (and unimo under src/)
    pythonpath = os.pathsep.join([repo_root, str(Path(repo_root) / "src"), os.environ.get("PYTHONPATH", "")])
    ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, include_dashboard=False,
             log_to_driver=False, ignore_reinit_error=True)
    try:
        task = ray.remote(num_cpus=cpus_per_task)(_call_shard)
        outcomes = ray.get([task.remote(module, function, kw) for kw in shard_kwargs])
    finally:
        ray.shutdown()
    failed = [(i, text) for i, (status, text) in enumerate(outcomes) if status == "error"]
    if failed:
        i, text = failed[0]
        more = f" ({len(failed)} shards failed: {[f[0] for f in failed]})" if len(failed) > 1 else ""
        raise UserError(f"shard {i}: {text}{more}", field="--distributor ray",
                        hint="the other shards are complete; rerun the failed ones")
    return [value for _, value in outcomes]


def ray_shards(distributor: str, num_shards: int | None, shard: int | None) -> list[tuple[int, int]] | None:
    """The shards ``--distributor ray`` submits (all of them: --num-shards N and no --shard), or None for 'none'."""
    if distributor == "none":
        return None
    if num_shards is None or shard is not None:
        raise UserError("runs all shards: give --num-shards N and no --shard", field="--distributor ray")
    check_shard_arguments(num_shards, 0)
    return [(i, num_shards) for i in range(num_shards)]
