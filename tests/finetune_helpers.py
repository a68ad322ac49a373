"""Helpers of the fine-tuning training tests (tests/test_finetune_training.py): run a task's run.sh with overrides
(one process or ``NPROC`` ranks), read the weights a run saved, write small learnable data sets."""
from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY = "model_files/config/unimo_tiny_en.json"
# the tiny model from scratch; no VisualDL, no tqdm, the step count set by each test
BASE = [f"model_config={TINY}", "init_checkpoint=null", "disable_tqdm=true", "seed=1", "test_file=null",
        # the tests choose their own batch / accumulation instead of the official global batch; plain linear schedule
        "global_batch_size=null", "lr_schedule=linear"]


class RunFailed(AssertionError):
    pass


def run_script(script: str, out: Path, *overrides: str, nproc: int = 1, timeout: int = 600) -> dict[str, Any]:
    """``[NPROC=n] bash script/<task>/<dataset>/run.sh BASE... output_dir=OUT overrides...``; returns results.json.
    Worker logs go to ``OUT.log/``; a failure raises with the tail of every worker log."""
    logs = Path(f"{out}.log")
    # PYTHONFAULTHANDLER: a worker killed by a signal leaves its Python stack in its workerlog
    env = {**os.environ, "LOG_DIR": str(logs), "UNIMO_VISUALDL": "0", "NPROC": str(nproc), "PYTHONFAULTHANDLER": "1"}
    env["OMP_NUM_THREADS"] = "1"
    for key in ("CUDA_VISIBLE_DEVICES", "PADDLE_TRAINERS_NUM", "PADDLE_TRAINER_ID", "PADDLE_TRAINER_ENDPOINTS"):
        env.pop(key, None)
    proc = subprocess.run(["bash", str(REPO / script), *BASE, f"output_dir={out}", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tails = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                        for p in sorted(logs.glob("workerlog.*")))
        raise RunFailed(f"{script} {' '.join(overrides)} failed ({proc.returncode}):\n{proc.stdout[-1500:]}\n"
                        f"{proc.stderr[-1500:]}{tails}")
    return json.loads((out / "results.json").read_text())


def weights(directory: Path) -> dict[str, np.ndarray]:
    """The parameters a run saved in ``directory`` (a Trainer checkpoint or a ``save_pretrained`` dir)."""
    from unimo.model.modeling import find_weights, read_weights

    return read_weights(find_weights(str(directory)) or str(directory / "model.safetensors"))


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, str]:
    """(max |a - b| over every parameter, the parameter where it is reached); the key sets must be equal."""
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    diffs = {k: float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) for k in a}
    key = max(diffs, key=diffs.get)
    return diffs[key], key


def train_log(out: Path) -> list[dict[str, Any]]:
    """The per-interval training records of ``train_log.jsonl`` (those with a loss), in order."""
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r]


# -------------------------------------------------------------------------------------------------------- data
POSITIVE, NEGATIVE = ["superb", "delightful"], ["dreadful", "tedious"]
FILLER = "the a film movie story plot actor scene music was is and of very quite rather long short old new".split()


def keyword_sentences(n: int, seed: int, times: int = 3) -> list[dict[str, str]]:
    """``n`` normalised classification records ``{"text_a", "label"}``, labels alternating "1"/"0": filler words
    with ``times`` sentiment keywords of the label inserted (never first), learnable from scratch in a few dozen
    steps."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "1" if i % 2 == 0 else "0"
        words = [rng.choice(FILLER) for _ in range(rng.randint(5, 9))]
        for _ in range(times):
            words.insert(rng.randint(1, len(words)), rng.choice(POSITIVE if label == "1" else NEGATIVE))
        out.append({"text_a": " ".join(words), "label": label})
    return out


def write_classification(data: Path, n_train: int, n_dev: int, seed: int = 0) -> Path:
    """train.jsonl / dev.jsonl / labels.json in the layout ``python -m preprocess.datasets glue`` writes."""
    data.mkdir(parents=True, exist_ok=True)
    rows = keyword_sentences(n_train + n_dev, seed)
    for name, part in (("train", rows[:n_train]), ("dev", rows[n_train:])):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    (data / "labels.json").write_text(json.dumps(["0", "1"]), encoding="utf-8")
    return data


def subset(src_dir: Path, dst_dir: Path, files: dict[str, int], copy: tuple[str, ...] = ()) -> Path:
    """``dst_dir`` with the first ``files[name]`` lines of each ``src_dir/name`` (all lines if 0) and the files
    in ``copy`` unchanged (e.g. the VQA answer vocabulary)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name, n in files.items():
        lines = (src_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (dst_dir / name).write_text("".join(lines[:n] if n else lines), encoding="utf-8")
    for name in copy:
        (dst_dir / name).write_bytes((src_dir / name).read_bytes())
    return dst_dir
