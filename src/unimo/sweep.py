"""Hyper-parameter sweeps as the official repository ran them: every point of a task's grid is its own run, and
the grid is reduced as the official ``src/utils/stat_res.py`` does.

    python -m unimo.sweep --config script/classification/SST-2/conf.yaml [--grid learning_rate=1e-5,2e-5 ...]
        [--output DIR] [--nproc N] [KEY=value ...]                  # run every point (resumable)
    python -m unimo.sweep --config CONF --emit-jobs [...]            # one self-contained command line per point
    python -m unimo.sweep --config CONF --only NAME [...]            # run one point (what an emitted job does)
    python -m unimo.sweep --collect DIR                              # reduce the finished points
    bash script/classification/SST-2/run.sh --sweep [...]            # the same from a task's run.sh

The grid is the YAML's ``sweep:`` section (key -> list of values; keys that vary together as one entry
``"a,b": [[a1, b1], ...]``; every official GLUE config carries the official batch {16, 32} (with its global batch
x 8 devices, CoLA x 4) x learning rate {1e-5, 2e-5, 3e-5} x seeds 1-5 x epochs {10}), each entry replaceable with
``--grid KEY=v1,v2`` (tied: ``--grid a,b=a1:b1,a2:b2``).
Points run in a fixed order and are named by their values (``batch_size-16_learning_rate-2e-05_seed-1``); each
writes its run directory ``<output>/<name>/`` (``output`` defaults to the YAML's ``output_dir`` + ``_sweep``). A
point whose ``results.json`` exists is finished and skipped; an interrupted one resumes from its last checkpoint;
a failed one is reported and run again on the next call. ``KEY=value`` arguments apply to every point.

The reduction (``sweep_results.json`` and ``sweep_results.md`` in the sweep directory): per point its best dev
value and step (the best validation of the run, as the official runner's "Best validation result" line); the
official statistic - runs grouped by learning rate (``stat_res.py``'s ``random_slot=2``: the third field of the
official log name ``<seed>_<epoch>_<lr>_<bs>``), the best run of each group kept, the group bests sorted in
descending order; ``max_score`` (the published number: the best single run of the grid) with its run,
``min_score``, ``median_score`` (element n // 2 of the descending list) and ``avg_score`` over the group bests
(spec section 5.1) - and, for the setting of the best run (its values of every key but the seed), the mean, median,
minimum and standard deviation over its seeds: the official number is a maximum over 30 runs, and the spread next to
it says how much of it is the seed.
"""
from __future__ import annotations

import argparse
import glob
import itertools
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "src" / "unimo" / "finetune" / "run.py"
SEED_KEY = "seed"
GROUP_KEY = "learning_rate"  # stat_res.py random_slot=2 of <seed>_<epoch>_<lr>_<bs>


# ------------------------------------------------------------------------------------------------------ the grid
def format_value(value: Any) -> str:
    """A value as an override and in a point name (floats by repr, 2e-05, integral ones as integers, 10; booleans
    as YAML spells them)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e6 else repr(value)
    return str(value)


def point_name(values: dict[str, Any]) -> str:
    return "_".join(f"{k}-{format_value(v)}" for k, v in values.items())


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the first entry varying slowest (YAML order); a tied entry "a,b" sets a and b together."""
    entries = list(grid)
    points = []
    for combo in itertools.product(*(grid[e] for e in entries)):
        point: dict[str, Any] = {}
        for entry, value in zip(entries, combo):
            keys = entry.split(",")
            point.update(zip(keys, value) if len(keys) > 1 else [(entry, value)])
        points.append(point)
    return points


def grid_arg(entry: str, values: list[Any]) -> str:
    """``--grid`` spelling of one grid entry (tied values joined with ':')."""
    if "," in entry:
        return f"{entry}=" + ",".join(":".join(format_value(x) for x in v) for v in values)
    return f"{entry}=" + ",".join(format_value(v) for v in values)


def parse_grid_args(items: Sequence[str]) -> dict[str, list[Any]]:
    from .utils.config import _parse_value
    from .utils.errors import ConfigError

    out: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected KEY=v1,v2,..., got {item!r}", file="command line", field="--grid")
        key, values = item.split("=", 1)
        key = key.replace("-", "_")
        if "," in key:  # tied keys: --grid batch_size,global_batch_size=16:128,32:256
            out[key] = [[_parse_value(x) for x in v.split(":")] for v in values.split(",") if v != ""]
        else:
            out[key] = [_parse_value(v) for v in values.split(",") if v != ""]
    return out


def resolve_grid(config: str, grid_args: Sequence[str], overrides: dict[str, Any]):
    """(task class, base config, grid, points): the YAML's sweep section with ``--grid`` replacing keys; every point
    parsed and checked like a run before anything runs."""
    from .finetune.run import load_run_config
    from .utils.config import check_sweep
    from .utils.errors import ConfigError

    task_cls, cfg = load_run_config(config, overrides)
    grid = cfg.sweep_grid()
    if grid_args:
        grid.update(check_sweep(parse_grid_args(grid_args), task_cls.config_class.field_types(), "command line",
                                None))
    if not grid:
        raise ConfigError("no sweep: section in the config and no --grid", file=config, field="sweep",
                          hint="add e.g. `sweep: {learning_rate: [1.0e-5, 2.0e-5]}` or pass --grid KEY=v1,v2")
    overlap = sorted({k for entry in grid for k in entry.split(",")} & set(overrides))
    if overlap:
        raise ConfigError("both swept and overridden", file="command line", field=overlap[0],
                          hint="drop it from the overrides or from the grid")
    points = grid_points(grid)
    for point in points:  # each point is a valid run configuration (ranges, cross-field rules)
        load_run_config(config, {**overrides, **point})
    return task_cls, cfg, grid, points


# ------------------------------------------------------------------------------------------------------ running
def point_command(config: str, point: dict[str, Any], overrides: dict[str, Any], out_dir: str, nproc: int,
                  resume: Optional[str] = None) -> list[str]:
    args = ["--config", config, *(f"{k}={format_value(v)}" for k, v in {**overrides, **point}.items()),
            f"output_dir={out_dir}"]
    if resume:
        args.append(f"resume_from_checkpoint={resume}")
    if nproc > 1:
        return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
                os.path.join(out_dir, "log"), str(RUN_PY), *args]
    return [sys.executable, str(RUN_PY), *args]


def latest_checkpoint(out_dir: str) -> Optional[str]:
    found = [(int(p.rsplit("-", 1)[1]), p) for p in glob.glob(os.path.join(out_dir, "checkpoint-*"))
             if p.rsplit("-", 1)[1].isdigit()]
    return max(found)[1] if found else None


def is_finished(out_dir: str) -> bool:
    path = os.path.join(out_dir, "results.json")
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return "metrics" in json.load(f)
    except (OSError, json.JSONDecodeError):
        return False


def run_point(config: str, point: dict[str, Any], overrides: dict[str, Any], sweep_dir: str, nproc: int) -> str:
    """Run one point unless finished: 'skipped', 'ok' or 'failed (exit N, see LOG)'."""
    out_dir = os.path.join(sweep_dir, point_name(point))
    if is_finished(out_dir):
        return "skipped"
    os.makedirs(out_dir, exist_ok=True)
    cmd = point_command(config, point, overrides, out_dir, nproc, latest_checkpoint(out_dir))
    log = os.path.join(out_dir, "sweep_point.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    return "ok" if code == 0 and is_finished(out_dir) else f"failed (exit {code}, see {log})"


# ------------------------------------------------------------------------------------------------------ reduction
def official_statistic(runs: Sequence[tuple[str, Any, float]]) -> dict[str, Any]:
    """``stat_res.py``'s reduction of (run name, group value, best dev score) triples: the best run of each group,
    the group bests sorted descending; max (with its run), min, median = element n // 2, mean over group bests."""
    best: dict[Any, tuple[float, str]] = {}
    for name, group, score in runs:
        if group not in best or score > best[group][0]:
            best[group] = (score, name)
    ranked = sorted(best.values(), key=lambda t: t[0], reverse=True)
    scores = [s for s, _ in ranked]
    return {"groups": len(ranked), "max_score": scores[0], "max_run": ranked[0][1], "min_score": scores[-1],
            "median_score": scores[len(scores) // 2], "avg_score": sum(scores) / len(scores)}


def _best_of(results: dict[str, Any]) -> tuple[Optional[float], Optional[int]]:
    key = results.get("key_metric")
    best = results.get("best") or {}
    if key and best.get(key) is not None:
        return float(best[key]), best.get("step")
    dev = (results.get("metrics") or {}).get("dev") or {}
    return (float(dev[key]), None) if key in dev else (None, None)


def collect(sweep_dir: str) -> dict[str, Any]:
    """Reduce the finished points of ``sweep_dir`` (each ``<point>/results.json``); writes ``sweep_results.json``
    and ``sweep_results.md`` there and returns the summary."""
    from .utils.errors import UserError
    from .utils.io import atomic_write, write_json_atomic

    manifest_path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.isfile(manifest_path):
        raise UserError("not a sweep directory (no sweep.json)", file=sweep_dir)
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    points, missing = [], []
    key_metric = None
    for point in manifest["points"]:
        name = point_name(point)
        path = os.path.join(sweep_dir, name, "results.json")
        if not is_finished(os.path.join(sweep_dir, name)):
            missing.append(name)
            continue
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
        score, step = _best_of(results)
        if score is None or (isinstance(score, float) and math.isnan(score)):
            raise UserError("no dev value of the key metric", file=path, field="best")
        key_metric = results.get("key_metric")
        points.append({"name": name, "values": point, "best": score, "best_step": step, "results": path})
    summary: dict[str, Any] = {"sweep_dir": sweep_dir, "config": manifest["config"], "grid": manifest["grid"],
                               "overrides": manifest["overrides"], "key_metric": key_metric,
                               "points_total": len(manifest["points"]), "points_finished": len(points),
                               "points_missing": missing, "points": points}
    if points:
        swept = {k for entry in manifest["grid"] for k in entry.split(",")}
        group_key = GROUP_KEY if GROUP_KEY in swept else None
        official = official_statistic([(p["name"], p["values"].get(group_key) if group_key else None, p["best"])
                                       for p in points])
        official["grouped_by"] = group_key
        official["max_results"] = next(p["results"] for p in points if p["name"] == official["max_run"])
        summary["official"] = official
        top = next(p for p in points if p["name"] == official["max_run"])
        setting = {k: v for k, v in top["values"].items() if k != SEED_KEY}
        seeds = [p["best"] for p in points if {k: v for k, v in p["values"].items() if k != SEED_KEY} == setting]
        summary["best_setting"] = {
            "values": setting, "runs": len(seeds), "mean": statistics.fmean(seeds), "median": statistics.median(seeds),
            "min": min(seeds), "max": max(seeds), "std": statistics.stdev(seeds) if len(seeds) > 1 else 0.0}
    write_json_atomic(os.path.join(sweep_dir, "sweep_results.json"), summary)
    with atomic_write(os.path.join(sweep_dir, "sweep_results.md")) as f:
        f.write(markdown(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    key = summary.get("key_metric") or "metric"
    keys = [k for entry in summary["grid"] for k in entry.split(",")]
    lines = [f"# Sweep of {summary['config']}", "",
             f"{summary['points_finished']} of {summary['points_total']} points finished; best dev {key} per point.",
             "", "| " + " | ".join(keys) + f" | best {key} | step |", "|" + "---|" * (len(keys) + 2)]
    for p in summary["points"]:
        lines.append("| " + " | ".join(format_value(p["values"][k]) for k in keys) +
                     f" | {p['best']:.6g} | {p['best_step'] if p['best_step'] is not None else '-'} |")
    if "official" in summary:
        o, b = summary["official"], summary["best_setting"]
        lines += ["", f"Official statistic (stat_res.py, grouped by {o['grouped_by'] or 'nothing'}): "
                      f"max {o['max_score']:.6g} ({o['max_run']}), min {o['min_score']:.6g}, "
                      f"median {o['median_score']:.6g}, avg {o['avg_score']:.6g} over {o['groups']} group bests.",
                  f"Best setting {json.dumps(b['values'])} over {b['runs']} seed(s): mean {b['mean']:.6g}, "
                  f"median {b['median']:.6g}, min {b['min']:.6g}, std {b['std']:.6g}."]
    if summary["points_missing"]:
        lines += ["", "Not finished: " + ", ".join(summary["points_missing"])]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ CLI
def main(argv: Optional[list[str]] = None) -> int:
    from .utils.cli import HelpFormatter
    from .utils.config import parse_overrides
    from .utils.errors import UserError
    from .utils.io import write_json_atomic

    parser = argparse.ArgumentParser(prog="python -m unimo.sweep", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", help="task YAML with a sweep: section (script/<task>/<dataset>/conf.yaml; "
                                         "required unless --collect)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="replace one key of the grid (repeatable; default: the YAML's sweep: section)")
    parser.add_argument("--output", help="sweep directory (default: the YAML's output_dir + '_sweep')")
    parser.add_argument("--nproc", type=int, default=int(os.environ.get("NPROC", "1")),
                        help="processes per point (paddle.distributed.launch; default $NPROC or 1)")
    parser.add_argument("--emit-jobs", action="store_true",
                        help="print one self-contained command line per point instead of running them")
    parser.add_argument("--only", metavar="NAME", help="run only the point of this name (what an emitted job runs; "
                                                       "default: every point)")
    parser.add_argument("--collect", metavar="DIR", help="only reduce the finished points of a sweep directory "
                                                         "(default: run the sweep)")
    args, rest = parser.parse_known_args(argv)
    if args.collect:
        summary = collect(args.collect)
        print(json.dumps({"sweep_results": os.path.join(args.collect, "sweep_results.json"),
                          "official": summary.get("official"), "best_setting": summary.get("best_setting")}))
        return 0
    if not args.config:
        parser.error("--config is required (or --collect DIR)")
    overrides = parse_overrides(rest)
    if "output_dir" in overrides:
        raise UserError("the sweep sets output_dir per point", file="command line", field="output_dir",
                        hint="use --output for the sweep directory")
    _, cfg, grid, points = resolve_grid(args.config, args.grid, overrides)
    sweep_dir = args.output or f"{cfg.output_dir or os.path.join('output', str(cfg.task))}_sweep"
    names = [point_name(p) for p in points]
    if args.emit_jobs:
        base = [sys.executable, "-m", "unimo.sweep", "--config", os.path.abspath(args.config), "--output",
                os.path.abspath(sweep_dir), "--nproc", str(args.nproc),
                *(f"--grid={grid_arg(k, vs)}" for k, vs in grid.items())]
        for name in names:
            print(f"cd {shlex.quote(str(REPO))} && " + shlex.join(base + ["--only", name] +
                                                                  [f"{k}={format_value(v)}" for k, v in
                                                                   overrides.items()]))
        return 0
    if args.only and args.only not in names:
        raise UserError(f"no point named {args.only!r} in this grid", file="command line", field="--only",
                        hint=f"{len(names)} points, e.g. {names[0]}")
    os.makedirs(sweep_dir, exist_ok=True)
    write_json_atomic(os.path.join(sweep_dir, "sweep.json"), {
        "config": os.path.abspath(args.config), "grid": grid, "overrides": overrides, "points": points})
    from tqdm import tqdm

    todo = [p for p in points if not args.only or point_name(p) == args.only]
    status: dict[str, str] = {}
    for point in tqdm(todo, desc="sweep", unit="point"):
        status[point_name(point)] = run_point(os.path.abspath(args.config), point, overrides, sweep_dir, args.nproc)
        print(json.dumps({"point": point_name(point), "status": status[point_name(point)]}), flush=True)
    summary = collect(sweep_dir)
    failed = {n: s for n, s in status.items() if s.startswith("failed")}
    print(json.dumps({"sweep_results": os.path.join(sweep_dir, "sweep_results.json"),
                      "ran": sum(s == "ok" for s in status.values()),
                      "skipped": sum(s == "skipped" for s in status.values()), "failed": failed,
                      "official": summary.get("official")}))
    return 1 if failed else 0


if __name__ == "__main__":
    from .utils.errors import run_cli

    sys.exit(run_cli(main, sys.argv[1:], prog="unimo.sweep"))
