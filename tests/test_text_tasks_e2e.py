"""End to end: every text task trains and evaluates FROM ITS run.sh (paddle.distributed.launch -> finetune/run.py) on
small real data made by the project's converters (``python -m preprocess.datasets``), with the tiny model.

Data: the SST-2 dev sample (split into train/dev; CoLA-, MNLI- and STS-B-style files derived from it), the XSum
sample (-> CNN/DM and Gigaword converters), the SQuAD v2 sample (-> squad-qg) and a hand-written CoQA json.
Checks per run: results.json with the task's key metric; the metric recomputed here from the predictions file
(accuracy, Matthews correlation, Pearson, ROUGE-1/2 with rouge_score directly); the best-checkpoint metric
recorded during training equals the one recomputed after reloading ``best/``; train_log.jsonl losses are finite
and go down. Each run is a few dozen optimisation steps of a 2-layer model (~15 s on an idle core, mostly
python + paddle start-up); the runs go two at a time.
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = "model_files/config/unimo_tiny_en.json"
# tiny model, no pre-trained weights, no dropout (so a few dozen steps visibly fit), one eval at the last step
COMMON = [f"model_config={TINY}", "init_checkpoint=null", "logging_steps=5", "save_steps=100000",
          "disable_tqdm=true", "warmup_ratio=0.1", "hidden_dropout_prob=0", "attention_probs_dropout_prob=0",
          "seed=1", "learning_rate=2e-3"]
SEQ2SEQ_SMALL = ["max_src_len=64", "max_tgt_len=16", "max_out_len=10", "min_out_len=2", "batch_size=4",
                 "eval_batch_size=2", "max_eval_examples=3"]


# ------------------------------------------------------------------------------------------------ helpers
def convert(name: str, inputs: list[Path], out: Path, *extra: str) -> dict:
    """Run a project converter (``python -m preprocess.datasets NAME``) and return its JSON summary."""
    proc = subprocess.run([PY, "-m", "preprocess.datasets", name, "--input", *map(str, inputs), "--output", str(out),
                           "--no-progress", *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"converter {name} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def run_script(script: str, out: Path, logs: Path, *overrides: str) -> dict:
    """bash script/<...>/run.sh with overrides; returns results.json (raises with the worker log on failure)."""
    env = {**os.environ, "LOG_DIR": str(logs), "OMP_NUM_THREADS": "1", "UNIMO_VISUALDL": "0"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(["bash", str(REPO / script), *COMMON, f"output_dir={out}", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        worker = logs / "workerlog.0"
        tail = worker.read_text(errors="replace")[-4000:] if worker.exists() else ""
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n"
                             f"--- workerlog.0\n{tail}")
    results = out / "results.json"
    assert results.is_file(), f"{script}: no results.json in {out}"
    return json.loads(results.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_losses(out: Path, max_steps: int, logging_steps: int = 5) -> list[float]:
    logs = read_jsonl(out / "train_log.jsonl")
    losses = [(r["step"], r["loss"]) for r in logs if "loss" in r]
    assert [s for s, _ in losses] == list(range(logging_steps, max_steps + 1, logging_steps))
    values = [v for _, v in losses]
    assert all(math.isfinite(v) for v in values), values
    assert np.mean(values[-2:]) < values[0], f"loss did not go down: {values}"
    return values


def check_common(res: dict, task: str, dataset: str, key: str, max_steps: int, batch: int) -> float:
    assert res["task"] == task and res["dataset"] == dataset and res["key_metric"] == key
    assert res["config"]["model_config"] == TINY and res["config"]["init_checkpoint"] is None
    assert res["global_batch_size"] == batch and res["world_size"] == 1
    value = res["metrics"]["dev"][key]
    assert isinstance(value, float) and math.isfinite(value)
    # the best checkpoint was chosen at the last step; reloading it reproduces the metric exactly
    assert res["best"]["step"] == max_steps
    assert res["best"][key] == pytest.approx(value, abs=1e-9)
    assert Path(res["checkpoint"]).name == "best" and Path(res["checkpoint"]).is_dir()
    return value


def sst2_rows(shared_data: Path) -> list[tuple[str, str]]:
    with open(shared_data / "text_samples" / "sst2_glue_dev.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["sentence", "label"]
    return [(s.strip(), y) for s, y in rows[1:]]


def write_tsv(path: Path, header: list[str] | None, rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------ data
def make_sst2(shared: Path, raw: Path) -> None:
    rows = sst2_rows(shared)
    write_tsv(raw / "train.tsv", ["sentence", "label"], [list(r) for r in rows[:32]])
    write_tsv(raw / "dev.tsv", ["sentence", "label"], [list(r) for r in rows[32:64]])


def make_cola(shared: Path, raw: Path) -> None:
    """CoLA's headerless 4-column layout (source, label, original judgement, sentence); label from SST-2."""
    rows = sst2_rows(shared)
    fmt = lambda rs: [["sst2", y, "" if y == "1" else "*", s] for s, y in rs]  # noqa: E731
    write_tsv(raw / "train.tsv", None, fmt(rows[100:132]))
    write_tsv(raw / "dev.tsv", None, fmt(rows[132:164]))


HYPOTHESES = {"entailment": "the review is {}.", "contradiction": "the review is {}.",
              "neutral": "the review is about a film."}


def make_mnli(shared: Path, raw: Path) -> None:
    """Premise = an SST-2 sentence; the hypothesis states its sentiment (entailment), the opposite (contradiction)
    or something unrelated (neutral), cycling over the three labels."""
    rows = sst2_rows(shared)
    labels = ["entailment", "neutral", "contradiction"]
    header = ["index", "genre", "sentence1", "sentence2", "gold_label"]

    def fmt(rs, genre, offset):
        out = []
        for i, (s, y) in enumerate(rs):
            lab = labels[(i + offset) % 3]
            pos = y == "1"
            word = ("positive" if pos else "negative") if lab == "entailment" else ("negative" if pos else "positive")
            out.append([i, genre, s, HYPOTHESES[lab].format(word), lab])
        return out

    write_tsv(raw / "train.tsv", header, fmt(rows[200:248], "fiction", 0))
    write_tsv(raw / "dev_matched.tsv", header, fmt(rows[248:272], "fiction", 1))
    write_tsv(raw / "dev_mismatched.tsv", header, fmt(rows[272:296], "reviews", 2))


def make_stsb(shared: Path, raw: Path) -> None:
    """Pairs of SST-2 sentences scored 5 x word-set Jaccard (a sentence with itself scores 5)."""
    sents = [s for s, _ in sst2_rows(shared)[300:360]]

    def score(a: str, b: str) -> float:
        x, y = set(a.split()), set(b.split())
        return round(5.0 * len(x & y) / len(x | y), 3)

    def pairs(idx):
        out = []
        for k, i in enumerate(idx):
            j = i if k % 3 == 0 else (i + 1 + k) % len(sents)
            out.append([k, "captions", sents[i], sents[j], score(sents[i], sents[j])])
        return out

    header = ["index", "genre", "sentence1", "sentence2", "score"]
    write_tsv(raw / "train.tsv", header, pairs(range(0, 36)))
    write_tsv(raw / "dev.tsv", header, pairs(range(36, 60)))


def make_xsum(shared: Path, raw: Path, dev_name: str) -> None:
    lines = (shared / "text_samples" / "xsum_sample.jsonl").read_text(encoding="utf-8").splitlines()
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "train.jsonl").write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    (raw / f"{dev_name}.jsonl").write_text("\n".join(lines[7:10]) + "\n", encoding="utf-8")
    (raw / "test.jsonl").write_text("\n".join(lines[8:10]) + "\n", encoding="utf-8")


COQA = {"version": "1.0", "data": [
    {"source": "handwritten", "id": "s1", "filename": "s1.txt",
     "story": "The cat sat on the red mat in the kitchen. It was a sunny day and the cat was happy.",
     "questions": [{"input_text": "Where did the cat sit?", "turn_id": 1},
                   {"input_text": "What color was the mat?", "turn_id": 2},
                   {"input_text": "Was the cat happy?", "turn_id": 3}],
     "answers": [{"input_text": "on the red mat", "span_text": "on the red mat", "turn_id": 1},
                 {"input_text": "red", "span_text": "red", "turn_id": 2},
                 {"input_text": "yes", "span_text": "the cat was happy", "turn_id": 3}]},
    {"source": "handwritten", "id": "s2", "filename": "s2.txt",
     "story": "Tom went to the market to buy apples. He bought five green apples and one banana.",
     "questions": [{"input_text": "Where did Tom go?", "turn_id": 1},
                   {"input_text": "How many apples did he buy?", "turn_id": 2},
                   {"input_text": "What else did he buy?", "turn_id": 3}],
     "answers": [{"input_text": "to the market", "span_text": "to the market", "turn_id": 1},
                 {"input_text": "five", "span_text": "five green apples", "turn_id": 2},
                 {"input_text": "one banana", "span_text": "one banana", "turn_id": 3}]}]}


# ------------------------------------------------------------------------------------------------ jobs
# Each job converts its data and runs its run.sh. Python + paddle start-up dominates a run, so the jobs the
# selected tests need all start at once, two at a time (the runs are single-threaded), and each test waits for its own.
CLASSIFICATION = {"SST-2": ("sst-2", make_sst2, "script/classification/SST-2/run.sh"),
                  "CoLA": ("cola", make_cola, "script/classification/CoLA/run.sh"),
                  "MNLI": ("mnli", make_mnli, "script/classification/MNLI-AX/run.sh"),
                  "STS-B": ("sts-b", make_stsb, "script/regression/STS-B/run.sh")}


def classification_job(name: str, work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / name, work / "data" / name, work / "out" / name
    glue_task, make, script = CLASSIFICATION[name]
    make(shared, raw)
    convert("glue", [raw], data, "--task", glue_task)
    res = run_script(script, out, work / "log" / name, f"data_dir={data}", "max_seq_len=48", "batch_size=8",
                     "max_steps=40", "eval_steps=40")
    if name == "MNLI":  # MNLI-mm as the conf documents: an evaluation-only run of the trained checkpoint
        run_script(script, out / "mismatched", work / "log" / "MNLI-mm", f"data_dir={data}", "max_seq_len=48",
                   "do_train=false", f"init_checkpoint={res['checkpoint']}", "dev_file=dev_mismatched.jsonl")
    return res, out, data


def summarisation_job(name: str, work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / name, work / "data" / name, work / "out" / name
    # the official dev files are dev.2k.tsv (CNN/DM) and dev.20k.tsv (Gigaword)
    dev_name = {"cnndm": "dev.2k", "gigaword": "dev.20k"}.get(name, "dev")
    make_xsum(shared, raw, dev_name)
    summary = convert(name, [raw], data, "--src-field", "document", "--tgt-field", "summary")
    assert summary["outputs"] == {f"{dev_name}.jsonl": 3, "test.jsonl": 2, "train.jsonl": 8}
    res = run_script(f"script/seq2seq/{name}/run.sh", out, work / "log" / name, f"data_dir={data}", *SEQ2SEQ_SMALL,
                     "max_steps=30", "eval_steps=30")
    return res, out, data


def squad_qg_job(work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / "squad_qg", work / "data" / "squad_qg", work / "out" / "squad_qg"
    raw.mkdir(parents=True)
    sample = (shared / "text_samples" / "squad_v2_sample.json").read_text(encoding="utf-8")
    for split in ("train", "dev", "test"):
        (raw / f"{split}.json").write_text(sample, encoding="utf-8")
    summary = convert("squad-qg", [raw], data)
    # 8 of the sample's 14 questions have answers (counted by hand; SOURCES.md says 9), unanswerable ones are skipped
    assert summary["outputs"] == {"dev.jsonl": 8, "test.jsonl": 8, "train.jsonl": 8}
    res = run_script("script/seq2seq/squad_qg/run.sh", out, work / "log" / "squad_qg", f"data_dir={data}",
                     *SEQ2SEQ_SMALL, "max_steps=30", "eval_steps=30")
    return res, out, data


def coqa_job(work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / "coqa", work / "data" / "coqa", work / "out" / "coqa"
    raw.mkdir(parents=True)
    (raw / "coqa-train-v1.0.json").write_text(json.dumps(COQA), encoding="utf-8")
    (raw / "coqa-dev-v1.0.json").write_text(json.dumps({**COQA, "data": COQA["data"][1:]}), encoding="utf-8")
    summary = convert("coqa", [raw], data)
    assert summary["outputs"] == {"dev.jsonl": 3, "train.jsonl": 6}
    res = run_script("script/seq2seq/coqa/run.sh", out, work / "log" / "coqa", f"data_dir={data}", "max_src_len=64",
                     "max_tgt_len=12", "max_out_len=6", "min_out_len=1", "batch_size=3", "eval_batch_size=3",
                     "max_steps=30", "eval_steps=30")
    return res, out, data


JOBS = {**{n: (lambda w, s, n=n: classification_job(n, w, s)) for n in CLASSIFICATION},
        "cnndm": lambda w, s: summarisation_job("cnndm", w, s),
        "gigaword": lambda w, s: summarisation_job("gigaword", w, s),
        "squad_qg": squad_qg_job, "coqa": coqa_job}
# test (pytest item name) -> the jobs it reads; the slow generation jobs first
TEST_JOBS = {"test_summarisation[cnndm]": ["cnndm"], "test_summarisation[gigaword]": ["gigaword"],
             "test_squad_qg": ["squad_qg"], "test_coqa_dialog": ["coqa"], "test_mnli_matched_and_mismatched": ["MNLI"],
             "test_sst2": ["SST-2"], "test_cola": ["CoLA"], "test_stsb_regression": ["STS-B"],
             "test_report_over_the_runs": ["SST-2", "MNLI"]}


@pytest.fixture(scope="module")
def jobs(request, tmp_path_factory, shared_data):
    work = tmp_path_factory.mktemp("text_e2e")
    wanted: list[str] = []
    selected = {item.name for item in request.session.items if item.module is request.module}
    for test, names in TEST_JOBS.items():
        if test in selected:
            wanted += [n for n in names if n not in wanted]
    pool = ThreadPoolExecutor(max_workers=2)
    futures: dict[str, Future] = {n: pool.submit(JOBS[n], work, shared_data) for n in wanted}

    def get(name: str) -> tuple[dict, Path, Path]:
        if name not in futures:  # a test not in TEST_JOBS: run its job now
            futures[name] = pool.submit(JOBS[name], work, shared_data)
        return futures[name].result(timeout=1200)

    get.work = work  # type: ignore[attr-defined]
    yield get
    pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------ tests
def test_sst2(jobs):
    res, out, data = jobs("SST-2")
    acc = check_common(res, "classification", "SST-2", "acc", 40, 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev.jsonl")
    assert len(preds) == len(refs) == 32 == res["metrics"]["dev"]["num_examples"]
    assert {p["prediction"] for p in preds} <= {"0", "1"}
    assert acc == pytest.approx(np.mean([p["prediction"] == r["label"] for p, r in zip(preds, refs)]))
    check_losses(out, 40)


def test_cola(jobs):
    res, out, data = jobs("CoLA")
    mcc = check_common(res, "classification", "CoLA", "mcc", 40, 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev.jsonl")
    assert len(preds) == len(refs) == 32
    p = np.array([x["prediction"] == "1" for x in preds])
    y = np.array([r["label"] == "1" for r in refs])
    tp, tn, fp, fn = (p & y).sum(), (~p & ~y).sum(), (p & ~y).sum(), (~p & y).sum()
    denom = math.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    assert mcc == pytest.approx(0.0 if denom == 0 else (tp * tn - fp * fn) / denom, abs=1e-9)
    assert -1.0 <= mcc <= 1.0
    check_losses(out, 40)


def test_mnli_matched_and_mismatched(jobs):
    res, out, data = jobs("MNLI")
    acc = check_common(res, "classification", "MNLI", "acc", 40, 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev_matched.jsonl")
    assert len(preds) == len(refs) == 24
    assert {p["prediction"] for p in preds} <= {"entailment", "neutral", "contradiction"}
    assert acc == pytest.approx(np.mean([p["prediction"] == r["label"] for p, r in zip(preds, refs)]))
    check_losses(out, 40)
    mm_out = out / "mismatched"
    mm = json.loads((mm_out / "results.json").read_text())
    assert mm["config"]["do_train"] is False and mm["checkpoint"] == res["checkpoint"]
    mm_preds = json.loads((mm_out / "predictions_dev.json").read_text())
    mm_refs = read_jsonl(data / "dev_mismatched.jsonl")
    assert len(mm_preds) == len(mm_refs) == 24
    assert mm["metrics"]["dev"]["acc"] == pytest.approx(
        np.mean([p["prediction"] == r["label"] for p, r in zip(mm_preds, mm_refs)]))
    assert not (mm_out / "train_log.jsonl").exists()


def test_stsb_regression(jobs):
    res, out, data = jobs("STS-B")
    r = check_common(res, "regression", "STS-B", "pearson", 40, 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev.jsonl")
    assert len(preds) == len(refs) == 24
    p = np.array([x["prediction"] for x in preds], dtype=np.float64)
    y = np.array([float(x["label"]) for x in refs])
    assert r == pytest.approx(float(np.corrcoef(p, y)[0, 1]), abs=1e-6)
    check_losses(out, 40)


def _rouge_12(preds: list[str], refs: list[str]) -> tuple[float, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2"], use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(preds, refs)]
    return (float(np.mean([s["rouge1"].fmeasure for s in scores])),
            float(np.mean([s["rouge2"].fmeasure for s in scores])))


@pytest.mark.parametrize("name", ["cnndm", "gigaword"], ids=["cnndm", "gigaword"])
def test_summarisation(jobs, name):
    res, out, data = jobs(name)
    check_common(res, "seq2seq", name, "rouge-l", 30, 4)
    assert res["config"]["trigram_blocking"] is (name == "cnndm")
    splits = ["dev", "test"]  # both confs evaluate test too (do_test): the published numbers are on test
    assert sorted(res["metrics"]) == splits
    for split in splits:
        refs = [e["tgt"] for e in read_jsonl(data / res["config"][f"{split}_file"])][:3]
        preds = (out / f"predictions_{split}.txt").read_text(encoding="utf-8").split("\n")[:-1]
        assert len(preds) == len(refs) == res["metrics"][split]["num_examples"]
        assert all(p.strip() for p in preds), preds
        r1, r2 = _rouge_12(preds, refs)
        assert res["metrics"][split]["rouge-1"] == pytest.approx(r1, abs=1e-9)
        assert res["metrics"][split]["rouge-2"] == pytest.approx(r2, abs=1e-9)
        assert 0.0 <= res["metrics"][split]["rouge-l"] <= 1.0
    check_losses(out, 30)


def test_squad_qg(jobs):
    res, out, data = jobs("squad_qg")
    check_common(res, "seq2seq", "squad_qg", "Bleu_4", 30, 4)
    for split in ("dev", "test"):
        m = res["metrics"][split]
        assert m["num_examples"] == 3 and 0.0 <= m["Bleu_4"] <= m["Bleu_1"] <= 1.0 and 0.0 <= m["ROUGE_L"] <= 1.0
        lines = (out / f"predictions_{split}.txt").read_text(encoding="utf-8").split("\n")[:-1]
        assert len(lines) == 3 and all(x.strip() for x in lines)
    check_losses(out, 30)


def test_coqa_dialog(jobs):
    res, out, data = jobs("coqa")
    dev = read_jsonl(data / "dev.jsonl")
    assert dev[2]["src"] == ["Where did Tom go?", "to the market", "How many apples did he buy?", "five",
                             "What else did he buy?"] and dev[2]["tgt"] == "one banana"
    f1 = check_common(res, "dialog", "coqa", "f1", 30, 3)
    assert res["config"]["role_type_size"] == 3 and res["config"]["turn_type_size"] == 16
    m = res["metrics"]["dev"]
    assert m["turns"] == 3 and 0.0 <= m["em"] <= f1 <= 100.0
    assert list(res["metrics"]) == ["dev"]  # CoQA is evaluated on dev only, as officially
    lines = (out / "predictions_dev.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 3 and all(x.strip() for x in lines), lines  # min_out_len=1: no empty answers
    check_losses(out, 30)


def test_report_over_the_runs(jobs):
    """python -m unimo.report over real run outputs: tiny runs are listed, never compared; MNLI-mm is merged."""
    jobs("SST-2")
    _, mnli_out, _ = jobs("MNLI")
    work = jobs.work
    md, js = work / "report.md", work / "report.json"
    proc = subprocess.run([PY, "-m", "unimo.report", "--results", str(work / "out"), "--output", str(md),
                           "--json", str(js)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(js.read_text())
    runs = {Path(r["path"]).parent.name: r for r in report["runs"]}
    assert "mismatched" not in runs  # folded into the MNLI training run
    assert runs["MNLI"]["metrics"]["dev_mismatched"]["acc"] == pytest.approx(
        json.loads((mnli_out / "mismatched" / "results.json").read_text())["metrics"]["dev"]["acc"])
    assert runs["MNLI"]["benchmark"] == "MNLI" and runs["SST-2"]["benchmark"] == "SST-2"
    assert all(r["size"] == "other" and not r["pretrained"] for r in report["runs"])
    for bench in report["benchmarks"]:  # nothing base/large was run
        assert bench["run"] == {"base": False, "large": False}
    assert "| SST-2 | Acc | dev | 95.4 | 95.1 | not run | 96.8 | not run |" in md.read_text()
