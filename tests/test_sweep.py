"""The official grid as one command (issue 15): ``python -m unimo.sweep`` runs every point of a config's ``sweep:``
section as its own run, resumes, emits one job per point for a scheduler, and reduces the grid as the official
``src/utils/stat_res.py`` does (checked against a re-implementation of that script on constructed official logs).
"""
from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from unimo import sweep

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "model_files" / "config" / "unimo_tiny_en.json"


# --------------------------------------------------------------------------------- stat_res.py, re-implemented
def stat_res_reference(log_dir: Path) -> dict:
    """The official ``src/utils/stat_res.py`` rule (spec section 5.1), written from its description: for every
    ``<seed>_<epoch>_<lr>_<bs>.lanch.log``, the score is the last token of its last "Best validation result" line;
    logs are grouped by the third '_' field (random_slot=2); the best of each group is kept; the group bests are
    sorted descending; max (and its file), min, median = element n // 2, average."""
    groups: dict[str, list[tuple[float, str]]] = {}
    for log in sorted(os.listdir(log_dir)):
        if not log.endswith(".lanch.log"):
            continue
        last = None
        for line in (log_dir / log).read_text().splitlines():
            if "Best validation result" in line:
                last = line
        if last is None:
            continue
        groups.setdefault(log.split("_")[2], []).append((float(last.split()[-1]), log))
    bests = sorted((max(runs) for runs in groups.values()), reverse=True)
    return {"tot_random_seed": len(bests), "max_score": bests[0][0], "max_file": bests[0][1],
            "min_score": bests[-1][0], "median_score": bests[len(bests) // 2][0],
            "avg_score": sum(s for s, _ in bests) / len(bests)}


@pytest.mark.parametrize("trial", range(5))
def test_official_statistic_equals_stat_res_on_constructed_logs(tmp_path, trial):
    rng = random.Random(trial)
    runs = []
    for seed in range(1, 6):
        for lr in ("1e-5", "2e-5", "3e-5"):
            for bs in (16, 32):
                name = f"{seed}_10_{lr}_{bs}.lanch.log"
                scores = [round(rng.uniform(0.85, 0.96), 4) for _ in range(rng.randint(1, 4))]
                best = float("-inf")
                lines = []
                for step, s in enumerate(scores, 1):  # the runner prints a line whenever validation improves
                    if s > best:
                        best = s
                        lines.append(f"[dev evaluation] step {step * 100} acc {s}")
                        lines.append(f"Best validation result: step {step * 100} acc {s}")
                (tmp_path / name).write_text("\n".join(lines) + "\n")
                runs.append((name, lr, best))
    ref = stat_res_reference(tmp_path)
    ours = sweep.official_statistic(runs)
    assert ours["groups"] == ref["tot_random_seed"] == 3
    assert ours["max_run"] == ref["max_file"]
    for key in ("max_score", "min_score", "median_score", "avg_score"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_grids_of_the_shipped_glue_configs():
    """Every GLUE config, base and large, carries the official grid (30 points); single-point tasks have none."""
    from unimo.finetune.run import load_run_config

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for conf in sorted(c for c in (REPO / "script").glob("*/*/conf.yaml") if c.parts[-3] != "pretrain"):
            _, cfg = load_run_config(str(conf), {})
            grid = cfg.sweep_grid()
            if conf.parts[-3] in ("classification", "regression"):
                devices = 4 if "CoLA" in conf.parts[-2] else 8  # the official GPUs: global batch = batch x GPUs
                assert grid == {"seed": [1, 2, 3, 4, 5], "epochs": [10.0], "learning_rate": [1e-5, 2e-5, 3e-5],
                                "batch_size,global_batch_size": [(16, 16 * devices), (32, 32 * devices)]}, conf
                assert len(sweep.grid_points(grid)) == 30
            else:
                assert grid == {}, conf
    finally:
        os.chdir(cwd)


def test_bad_grid_is_refused_before_anything_runs(tmp_path):
    from unimo.utils.errors import ConfigError

    conf = _conf(tmp_path)
    with pytest.raises(ConfigError, match=r"sweep\.learnin_rate: unknown config key in the sweep \(did you mean "):
        sweep.resolve_grid(str(conf), ["learnin_rate=1e-3"], {})
    with pytest.raises(ConfigError, match=r"sweep\.batch_size: expected an integer, got 1\.5"):
        sweep.resolve_grid(str(conf), ["batch_size=4,1.5"], {})
    with pytest.raises(ConfigError, match=r"command line: batch_size: must be >= 1, got 0"):
        sweep.resolve_grid(str(conf), ["batch_size=4,0"], {})  # every point checked as a run
    assert not (tmp_path / "out_sweep").exists()


# --------------------------------------------------------------------------------- end to end, tiny
def _conf(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", 16), ("dev", 8)):
        rows = []
        for i in range(n):
            label = rng.choice(["neg", "pos"])
            word = "good" if label == "pos" else "bad"
            rows.append(json.dumps({"text_a": f"this is {word} number {i}", "label": label}))
        (data / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"""task: classification
dataset: tiny
model_config: {TINY}
vocab_dir: {REPO.parent / 'shared' / 'data' / 'unimo_dict'}
data_dir: {data}
train_file: train.jsonl
dev_file: dev.jsonl
labels: [neg, pos]
max_seq_len: 16
batch_size: 4
max_steps: 4
eval_steps: 2
save_steps: 2
logging_steps: 2
disable_tqdm: true
visualdl: false
output_dir: {tmp_path / 'out'}
sweep:
  learning_rate: [1.0e-3, 3.0e-3]
  seed: [1, 2]
""")
    return conf


def _sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), UNIMO_VISUALDL="0")
    return subprocess.run([sys.executable, "-m", "unimo.sweep", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_tiny_grid_end_to_end_resume_emit_and_collect(tmp_path):
    conf = _conf(tmp_path)
    sweep_dir = tmp_path / "out_sweep"
    names = ["learning_rate-0.001_seed-1", "learning_rate-0.001_seed-2", "learning_rate-0.003_seed-1",
             "learning_rate-0.003_seed-2"]

    # --emit-jobs: one self-contained line per point, nothing run
    proc = _sweep("--config", str(conf), "--emit-jobs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = proc.stdout.strip().splitlines()
    assert [j.rsplit("--only ", 1)[1] for j in jobs] == names
    assert not sweep_dir.exists()

    # "interrupted after one point": the first job alone (what a scheduler runs), then the whole grid
    proc = subprocess.run(jobs[0], shell=True, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src"), UNIMO_VISUALDL="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = sweep_dir / names[0] / "results.json"
    stamp = first.stat().st_mtime_ns
    proc = _sweep("--config", str(conf))
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{"point"')]
    assert statuses == [{"point": names[0], "status": "skipped"}] + [{"point": n, "status": "ok"} for n in names[1:]]
    assert first.stat().st_mtime_ns == stamp  # not re-run

    # the collected statistics, recomputed from the individual results.json files
    summary = json.loads((sweep_dir / "sweep_results.json").read_text())
    runs = {}
    for name in names:
        results = json.loads((sweep_dir / name / "results.json").read_text())
        hist = [(e["acc"], e["step"]) for e in results["eval_history"]]
        best_acc = max(a for a, _ in hist)
        best_step = next(s for a, s in hist if a == best_acc)  # the first step reaching it (strict improvement)
        assert results["best"] == {"step": best_step, "acc": best_acc}
        assert results["config"]["learning_rate"] == float(name.split("_")[1].split("-")[1])
        runs[name] = best_acc
    assert {p["name"]: p["best"] for p in summary["points"]} == runs
    groups = {}
    for name, acc in runs.items():
        groups.setdefault(name.split("_seed")[0], []).append(acc)
    bests = sorted((max(v) for v in groups.values()), reverse=True)
    official = summary["official"]
    assert official["grouped_by"] == "learning_rate" and official["groups"] == 2
    assert official["max_score"] == max(runs.values()) and runs[official["max_run"]] == official["max_score"]
    assert official["min_score"] == bests[-1] and official["median_score"] == bests[1]
    assert official["avg_score"] == pytest.approx(sum(bests) / 2)
    lr = official["max_run"].split("_seed")[0]
    seeds = [acc for name, acc in runs.items() if name.startswith(lr + "_")]
    best = summary["best_setting"]
    assert best["runs"] == 2 and best["mean"] == pytest.approx(statistics.fmean(seeds))
    assert best["std"] == pytest.approx(statistics.stdev(seeds)) and best["min"] == min(seeds)
    assert "Official statistic (stat_res.py, grouped by learning_rate)" in (sweep_dir / "sweep_results.md").read_text()

    # a bad override is refused before any point runs
    proc = _sweep("--config", str(conf), "max_grad_norm=-1")
    assert proc.returncode == 2 and "max_grad_norm: must be >= 0, got -1" in proc.stderr

    # a failed point is reported (exit 1) and run again on the next call: point 2 lost its results and its last
    # checkpoint is corrupt, so resuming it fails; without the checkpoints it runs from the start
    point = sweep_dir / names[1]
    (point / "results.json").unlink()
    checkpoints = sorted(point.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    weights = next(checkpoints[-1].glob("*.pdparams"))
    weights.write_bytes(b"not a checkpoint")
    proc = _sweep("--config", str(conf))
    assert proc.returncode == 1, proc.stdout[-3000:]
    statuses = {json.loads(ln)["point"]: json.loads(ln)["status"] for ln in proc.stdout.splitlines()
                if ln.startswith('{"point"')}
    assert statuses[names[1]].startswith("failed (exit ") and all(statuses[n] == "skipped" for n in names if n != names[1])
    assert json.loads((sweep_dir / "sweep_results.json").read_text())["points_missing"] == [names[1]]
    for c in checkpoints:
        import shutil

        shutil.rmtree(c)
    proc = _sweep("--config", str(conf))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert json.loads((point / "results.json").read_text())["best"]["acc"] == runs[names[1]]  # same run again
    proc = _sweep("--collect", str(sweep_dir))
    assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1])["official"] == official

    # unimo.report shows the sweep: the official maximum next to the spread over seeds
    from unimo import report

    md = tmp_path / "report.md"
    js = tmp_path / "report.json"
    assert report.main(["--results", str(sweep_dir), "--output", str(md), "--json", str(js)]) == 0
    swept = json.loads(js.read_text())["sweeps"]
    assert len(swept) == 1 and swept[0]["official"] == official and swept[0]["best_setting"] == best
    row = next(ln for ln in md.read_text().splitlines() if ln.startswith(f"| {sweep_dir / 'sweep_results.json'} |"))
    assert f"{official['max_score']:.4g} ({official['max_run']})" in row
    assert f"{best['mean']:.4g} ± {best['std']:.2g} (2 runs)" in row
