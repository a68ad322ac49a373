"""End to end: every text task trains and evaluates FROM ITS run.sh (paddle.distributed.launch -> finetune/run.py) on
small data made by the project's converters (``python -m preprocess.datasets``), with the tiny model from scratch.

Data. A 2-layer model trained from scratch for a few dozen steps learns nothing from 32 real SST-2 sentences, so
each task trains on a small *learnable* variant of its data, written in the task's public raw format and converted by
the project's converter:
* SST-2 / CoLA: the SST-2 dev sample, sentences cut to 10 words, with a label keyword inserted three times;
* MNLI: the premise carries the SST-2 keyword, the hypothesis states the premise's sentiment (entailment), the
  opposite (contradiction) or something unrelated (neutral); the unlabelled test_mismatched / AX diagnostic files
  the conf names are there too;
* STS-B: pairs of SST-2 sentences scored 5 x word-set Jaccard; the second sentence is the first, half of it + half of
  another, or another, with that kind's word ("identical", "partly", "unrelated") inserted three times;
* CNN/DM, Gigaword (XSum-format jsonl): 3-sentence filler documents, every sentence containing one of 4 topic words,
  the summary a fixed headline per topic;
* SQuAD-QG (SQuAD json): a context = the answer's sentence (colour, city or person) + filler, the question that
  kind's template;
* CoQA (CoQA json): the topic documents as stories; turn 1 asks what happened (the topic's headline), turn 2 where.
(How the converters read the real shared samples - SST-2, XSum, SQuAD v2, CoQA - is tested in
test_dataset_converters.py.)

Checks per run: results.json with the task's key metric; the dev key metric beats that task's trivial baseline by a
stated margin (majority class; the train-mean predictor's MSE for STS-B, whose Pearson of a constant is undefined;
the best of copying the source's lead and the best constant training target for generation); every reported
metric recomputed from the predictions file with an independent scorer (accuracy, Matthews correlation, Pearson /
Spearman with numpy/SciPy, ROUGE with ``rouge_score``, BLEU / ROUGE-L / METEOR with pycocoevalcap, which
``unimo.eval.coco.qg_scores`` says it matches, CoQA F1 / EM with a hand-written copy of the official
``evaluate-v1.0.py`` normalisation); the best-checkpoint metric recorded during training equals the one recomputed
after reloading ``best/``; train_log.jsonl losses are finite and go down. Each run is a few dozen optimisation steps
of the 2-layer model (~15 s on an idle core, mostly python + paddle start-up); the runs go two at a time.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import string
import subprocess
import sys
from collections import Counter
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
          "seed=1", "learning_rate=2e-3",
          # the official global batch (SST-2: 128) would accumulate 16 of these tiny batches per step: tests set
          # their own batch and the plain linear schedule
          "global_batch_size=null", "lr_schedule=linear"]
CLS_STEPS = {"SST-2": 40, "CoLA": 40, "MNLI": 60, "STS-B": 60}
SEQ2SEQ_STEPS = 70  # summarisation, question generation
COQA_STEPS = 100
SEQ2SEQ_SMALL = ["max_src_len=64", "max_tgt_len=16", "max_out_len=10", "min_out_len=2", "batch_size=4",
                 "eval_batch_size=3", "max_eval_examples=6", "learning_rate=1e-2"]
# stated margins over the trivial baselines (see each test)
CLS_MARGIN = 0.3        # accuracy over the majority class (SST-2)
MCC_MIN = 0.6           # CoLA: the majority class has MCC 0 by definition
MNLI_MARGIN = 0.15      # accuracy over the majority class (1/3); recognising "neutral" alone gives +1/3
STSB_MSE_RATIO = 0.5    # model MSE <= 0.5 x MSE of predicting the training mean
STSB_MIN_PEARSON = 0.7
GEN_MARGIN = 0.3        # ROUGE-L / BLEU-4 over max(lead-N copy, best constant training target)
COQA_MARGIN = 30.0      # F1 points over the best constant training answer


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


def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), path
    return text.split("\n")[:-1]


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
    # one evaluation, at the last step: the best checkpoint; reloading it reproduces the metric exactly
    assert [h["step"] for h in res["eval_history"]] == [max_steps]
    assert res["eval_history"][0][key] == pytest.approx(value, abs=1e-9)
    assert res["best"]["step"] == max_steps
    assert res["best"][key] == pytest.approx(value, abs=1e-9)
    assert Path(res["checkpoint"]).name == "best" and Path(res["checkpoint"]).is_dir()
    return value


def sst2_rows(shared_data: Path, words: int = 10) -> list[tuple[str, str]]:
    """(sentence, label) of the SST-2 dev sample, each sentence cut to its first ``words`` words (the shorter the
    sentences, the less a from-scratch model memorises instead of learning the inserted keywords)."""
    with open(shared_data / "text_samples" / "sst2_glue_dev.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["sentence", "label"]
    return [(" ".join(s.split()[:words]), y) for s, y in rows[1:]]


def write_tsv(path: Path, header: list[str] | None, rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def majority_rate(labels: list) -> float:
    return max(Counter(labels).values()) / len(labels)


# ------------------------------------------------------------------------------------------------ data
# label keywords: a from-scratch model learns them in a few dozen steps (the real sentences stay around them)
SST2_KEYWORDS = {"1": ["superb", "delightful"], "0": ["dreadful", "tedious"]}
COLA_KEYWORDS = {"1": ["certainly", "indeed"], "0": ["hardly", "barely"]}


def with_keyword(sentence: str, words: list[str], rng: random.Random, times: int = 3) -> str:
    """``sentence`` with ``times`` draws from ``words`` inserted after one of its first 6 words (never first: BPE
    codes a word differently at the start of the text)."""
    toks = sentence.split()
    for _ in range(times):
        toks.insert(rng.randint(1, min(6, len(toks))), rng.choice(words))
    return " ".join(toks)


def make_sst2(shared: Path, raw: Path) -> None:
    rng = random.Random(2)
    rows = [[with_keyword(s, SST2_KEYWORDS[y], rng), y] for s, y in sst2_rows(shared)[:64]]
    write_tsv(raw / "train.tsv", ["sentence", "label"], rows[:32])
    write_tsv(raw / "dev.tsv", ["sentence", "label"], rows[32:])


def make_cola(shared: Path, raw: Path) -> None:
    """CoLA's headerless 4-column layout (source, label, original judgement, sentence); label from SST-2."""
    rng = random.Random(3)
    rows = [(with_keyword(s, COLA_KEYWORDS[y], rng), y) for s, y in sst2_rows(shared)[100:164]]
    fmt = lambda rs: [["sst2", y, "" if y == "1" else "*", s] for s, y in rs]  # noqa: E731
    write_tsv(raw / "train.tsv", None, fmt(rows[:32]))
    write_tsv(raw / "dev.tsv", None, fmt(rows[32:64]))


HYPOTHESES = {"entailment": "the review is {}.", "contradiction": "the review is {}.",
              "neutral": "the review is about a film."}


def make_mnli(shared: Path, raw: Path) -> None:
    """Premise = an SST-2 sentence with its sentiment keyword; the hypothesis states its sentiment (entailment), the
    opposite (contradiction) or something unrelated (neutral), cycling over the three labels."""
    rng = random.Random(4)
    rows = [(with_keyword(s, SST2_KEYWORDS[y], rng), y) for s, y in sst2_rows(shared)[200:296]]
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

    write_tsv(raw / "train.tsv", header, fmt(rows[:48], "fiction", 0))
    write_tsv(raw / "dev_matched.tsv", header, fmt(rows[48:72], "fiction", 1))
    write_tsv(raw / "dev_mismatched.tsv", header, fmt(rows[72:96], "reviews", 2))
    # the unlabelled splits the conf names (test_mismatched, the AX diagnostic): never read unless do_test
    unlabelled = [r[:4] for r in fmt(rows[:4], "reviews", 0)]
    write_tsv(raw / "test_mismatched.tsv", header[:4], unlabelled)
    write_tsv(raw / "diagnostic.tsv", ["index", "sentence1", "sentence2"], [[i, a, b] for i, _, a, b in unlabelled])


def jaccard5(a: str, b: str) -> float:
    x, y = set(a.split()), set(b.split())
    return round(5.0 * len(x & y) / len(x | y), 3)


def make_stsb(shared: Path, raw: Path) -> None:
    """Pairs of SST-2 sentences scored 5 x word-set Jaccard of the two sentences; the second sentence is the first
    ("identical"), its first half + another sentence's second half ("partly") or another sentence ("unrelated"),
    with that kind word inserted three times (not counted in the score)."""
    rng = random.Random(7)
    sents = [s for s, _ in sst2_rows(shared)[300:360]]

    def pairs(idx):
        out = []
        for k, i in enumerate(idx):
            a, other = sents[i], sents[(i + 7 + k) % len(sents)]
            kind = ("identical", "partly", "unrelated")[k % 3]
            if kind == "identical":
                b = a
            elif kind == "partly":
                wa, wo = a.split(), other.split()
                b = " ".join(wa[:len(wa) // 2] + wo[len(wo) // 2:])
            else:
                b = other
            out.append([k, "captions", a, with_keyword(b, [kind], rng), jaccard5(a, b)])
        return out

    header = ["index", "genre", "sentence1", "sentence2", "score"]
    write_tsv(raw / "train.tsv", header, pairs(range(0, 36)))
    write_tsv(raw / "dev.tsv", header, pairs(range(36, 60)))


HEADLINES = {"storm": "heavy rain flooded homes", "match": "the team won the cup",
             "court": "a judge jailed the mayor", "market": "shares fell on monday"}
FILLER = ("people said officials local report new week year told there were many after before during about some "
          "other more than around several city region group members later also").split()


def topic_document(rng: random.Random, topic: str) -> str:
    """Three filler sentences, each with ``topic`` somewhere after its first word."""
    sents = []
    for _ in range(3):
        words = [rng.choice(FILLER) for _ in range(rng.randint(5, 8))]
        words.insert(rng.randint(1, len(words)), topic)
        sents.append(" ".join(words).capitalize() + ".")
    return " ".join(sents)


def make_topic_summaries(raw: Path, dev_name: str, seed: int) -> None:
    """XSum-format jsonl (document / summary / id): 48 train, 6 dev, 2 test; topics cycle."""
    rng = random.Random(seed)
    topics = list(HEADLINES)
    for split, n in (("train", 48), (dev_name, 6), ("test", 2)):
        rows = [{"id": f"{split}-{i}", "document": topic_document(rng, topics[(i + seed) % len(topics)]),
                 "summary": HEADLINES[topics[(i + seed) % len(topics)]]} for i in range(n)]
        write_jsonl(raw / f"{split}.jsonl", rows)


QG_KINDS = {"color": ("the car was painted {} .", ["red", "blue"], "what color was the car?"),
            "city": ("they bought the car in {} .", ["paris", "london"], "where did they buy the car?"),
            "person": ("{} bought the car .", ["tom", "anna"], "who bought the car?")}


def make_squad_qg(raw: Path) -> None:
    """SQuAD v2 json (flat layout) per split: a context = the answer's sentence (its kind: colour, city or person)
    + a filler sentence; the question is the kind's template. Train 72 questions, dev and test 6."""
    rng = random.Random(5)
    raw.mkdir(parents=True, exist_ok=True)
    kinds = list(QG_KINDS)
    for split, n in (("train", 72), ("dev", 6), ("test", 6)):
        items = []
        for i in range(n):
            template, values, question = QG_KINDS[kinds[i % 3]]
            answer = rng.choice(values)
            filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(4, 7)))
            context = f"{template.format(answer)} {filler} ."
            items.append({"id": f"{split}-{i}", "title": "cars", "context": context, "question": question,
                          "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
        (raw / f"{split}.json").write_text(json.dumps({"version": "v2.0", "data": items}), encoding="utf-8")


COQA_PLACES = {"storm": "in the north", "match": "at the stadium", "court": "in the high court",
               "market": "in new york"}


def coqa_json(n: int, rng: random.Random, prefix: str) -> dict:
    """CoQA json: n stories, each a topic document (see :func:`topic_document`); turn 1 asks what happened (the
    topic's headline), turn 2 where (the topic's place)."""
    data = []
    topics = list(HEADLINES)
    for s in range(n):
        topic = topics[s % len(topics)]
        data.append({"source": "mctest", "id": f"{prefix}{s}", "filename": f"{prefix}{s}.txt",
                     "story": topic_document(rng, topic),
                     "questions": [{"input_text": "What happened?", "turn_id": 1},
                                   {"input_text": "Where did it happen?", "turn_id": 2}],
                     "answers": [{"input_text": HEADLINES[topic], "span_text": HEADLINES[topic], "turn_id": 1},
                                 {"input_text": COQA_PLACES[topic], "span_text": COQA_PLACES[topic], "turn_id": 2}]})
    return {"version": "1.0", "data": data}


# ------------------------------------------------------------------------------------------------ scorers (oracles)
def rouge_third_party(preds: list[str], refs: list[str], summary_level: bool) -> dict[str, float]:
    """Mean per-document ROUGE-1/2/L F1 with ``rouge_score`` (Porter stemming). ``summary_level``: rougeLsum over
    sentences split at [.!?] + whitespace (CNN/DM), else sentence-level rougeL."""
    from rouge_score import rouge_scorer

    l_type = "rougeLsum" if summary_level else "rougeL"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", l_type], use_stemmer=True)
    split = (lambda t: "\n".join(s for s in re.split(r"(?<=[.!?])\s+", t.strip()) if s)) if summary_level else str
    scores = [scorer.score(split(r), split(p)) for p, r in zip(preds, refs)]
    return {"rouge-1": float(np.mean([s["rouge1"].fmeasure for s in scores])),
            "rouge-2": float(np.mean([s["rouge2"].fmeasure for s in scores])),
            "rouge-l": float(np.mean([s[l_type].fmeasure for s in scores]))}


def generation_baseline(metric, sources: list[str], refs: list[str], train_targets: list[str]) -> dict[str, float]:
    """Trivial generation baselines scored by ``metric(preds, refs) -> float``: copying the first N words of the
    source (N = the reference's length in words) and the best single training target predicted for every example."""
    lead = metric([" ".join(s.split()[:len(r.split())]) for s, r in zip(sources, refs)], refs)
    constant = max(metric([t] * len(refs), refs) for t in sorted(set(train_targets)))
    return {"lead": lead, "constant": constant}


def qg_tokens(text: str) -> str:
    from nltk.tokenize import TreebankWordTokenizer

    return " ".join(TreebankWordTokenizer().tokenize(text.lower()))


def coco_qg_third_party(preds: list[str], refs: list[str], meteor=None) -> dict[str, float]:
    """pycocoevalcap BLEU-1..4 (corpus, closest reference length), ROUGE-L and, given a pycocoevalcap ``Meteor``
    scorer, METEOR over lowercased Treebank tokens, each line its own group (as ``qg_scores`` without sources)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [qg_tokens(r)] for i, r in enumerate(refs)}
    res = {i: [qg_tokens(p)] for i, p in enumerate(preds)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"Bleu_{i + 1}": float(b) for i, b in enumerate(bleu)}
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    if meteor is not None:
        out["METEOR"] = float(meteor.compute_score(gts, res)[0])
    return out


def coqa_oracle(preds: list[str], golds: list[str]) -> dict[str, float]:
    """Official CoQA evaluate-v1.0.py, single gold per turn, re-implemented: lowercase, drop punctuation, drop
    a/an/the, collapse whitespace; token F1 with multiset overlap; percent."""
    def norm(s: str) -> list[str]:
        s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", s).split()

    f1s, ems = [], []
    for p, g in zip(preds, golds):
        pt, gt = norm(p), norm(g)
        ems.append(float(pt == gt))
        if not pt or not gt:
            f1s.append(float(pt == gt))
            continue
        same = sum((Counter(pt) & Counter(gt)).values())
        f1s.append(0.0 if same == 0 else 2 * same / (len(pt) + len(gt)))
    return {"f1": 100.0 * float(np.mean(f1s)), "em": 100.0 * float(np.mean(ems))}


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
    # MNLI's entailment/contradiction (an interaction of premise and hypothesis) and STS-B's 0..5 label scale need a
    # larger step than the keyword tasks
    lr = ["learning_rate=3e-3"] if name in ("MNLI", "STS-B") else []
    res = run_script(script, out, work / "log" / name, f"data_dir={data}", "max_seq_len=48", "batch_size=8",
                     f"max_steps={CLS_STEPS[name]}", f"eval_steps={CLS_STEPS[name]}", *lr)
    if name == "MNLI":  # MNLI-mm as the conf documents: an evaluation-only run of the trained checkpoint
        run_script(script, out / "mismatched", work / "log" / "MNLI-mm", f"data_dir={data}", "max_seq_len=48",
                   "do_train=false", f"init_checkpoint={res['checkpoint']}", "dev_file=dev_mismatched.jsonl")
    return res, out, data


def mnli_without_unread_splits_job(work: Path, shared: Path) -> subprocess.CompletedProcess:
    """The MNLI conf with a data dir that has train/dev_matched/dev_mismatched only (no test_mismatched, no AX
    diagnostic file) and do_test=false: the run reads neither, so it must train. Returns the finished process."""
    raw, data, out = work / "raw" / "MNLI-3", work / "data" / "MNLI-3", work / "out-unread" / "MNLI-3"
    make_mnli(shared, raw)
    for name in ("test_mismatched.tsv", "diagnostic.tsv"):
        (raw / name).unlink()
    convert("glue", [raw], data, "--task", "mnli")
    env = {**os.environ, "LOG_DIR": str(work / "log" / "MNLI-3"), "OMP_NUM_THREADS": "1", "UNIMO_VISUALDL": "0"}
    return subprocess.run(["bash", str(REPO / "script/classification/MNLI-AX/run.sh"), *COMMON, f"output_dir={out}",
                           f"data_dir={data}", "max_seq_len=48", "batch_size=8", "max_steps=2", "do_eval=false"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def summarisation_job(name: str, work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / name, work / "data" / name, work / "out" / name
    # the official dev files are dev.2k.tsv (CNN/DM) and dev.20k.tsv (Gigaword)
    dev_name = {"cnndm": "dev.2k", "gigaword": "dev.20k"}.get(name, "dev")
    make_topic_summaries(raw, dev_name, seed={"cnndm": 0, "gigaword": 1}[name])
    summary = convert(name, [raw], data, "--src-field", "document", "--tgt-field", "summary")
    assert summary["outputs"] == {f"{dev_name}.jsonl": 6, "test.jsonl": 2, "train.jsonl": 48}
    res = run_script(f"script/seq2seq/{name}/run.sh", out, work / "log" / name, f"data_dir={data}", *SEQ2SEQ_SMALL,
                     f"max_steps={SEQ2SEQ_STEPS}", f"eval_steps={SEQ2SEQ_STEPS}")
    return res, out, data


def squad_qg_job(work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / "squad_qg", work / "data" / "squad_qg", work / "out" / "squad_qg"
    make_squad_qg(raw)
    summary = convert("squad-qg", [raw], data)
    assert summary["outputs"] == {"dev.jsonl": 6, "test.jsonl": 6, "train.jsonl": 72}
    res = run_script("script/seq2seq/squad_qg/run.sh", out, work / "log" / "squad_qg", f"data_dir={data}",
                     *SEQ2SEQ_SMALL, f"max_steps={SEQ2SEQ_STEPS}", f"eval_steps={SEQ2SEQ_STEPS}")
    # the scorers' own numbers for both splits (METEOR needs a JVM: one, started here beside the other runs)
    meteor = None
    if res["metrics"]["dev"].get("METEOR") is not None:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
    try:
        oracle = {split: coco_qg_third_party(read_lines(out / f"predictions_{split}.txt"),
                                             [e["tgt"] for e in read_jsonl(data / f"{split}.jsonl")], meteor)
                  for split in ("dev", "test")}
    finally:
        if meteor is not None:
            meteor.meteor_p.kill()
    return res, out, data, oracle


def coqa_job(work: Path, shared: Path) -> tuple[dict, Path, Path]:
    raw, data, out = work / "raw" / "coqa", work / "data" / "coqa", work / "out" / "coqa"
    rng = random.Random(6)
    raw.mkdir(parents=True)
    (raw / "coqa-train-v1.0.json").write_text(json.dumps(coqa_json(36, rng, "t")), encoding="utf-8")
    (raw / "coqa-dev-v1.0.json").write_text(json.dumps(coqa_json(3, rng, "d")), encoding="utf-8")
    summary = convert("coqa", [raw], data)
    assert summary["outputs"] == {"dev.jsonl": 6, "train.jsonl": 72}
    res = run_script("script/seq2seq/coqa/run.sh", out, work / "log" / "coqa", f"data_dir={data}", "max_src_len=64",
                     "max_tgt_len=10", "max_out_len=8", "min_out_len=1", "batch_size=4", "eval_batch_size=3",
                     "learning_rate=1e-2", f"max_steps={COQA_STEPS}", f"eval_steps={COQA_STEPS}")
    return res, out, data


JOBS = {**{n: (lambda w, s, n=n: classification_job(n, w, s)) for n in CLASSIFICATION},
        "cnndm": lambda w, s: summarisation_job("cnndm", w, s),
        "gigaword": lambda w, s: summarisation_job("gigaword", w, s),
        "squad_qg": squad_qg_job, "coqa": coqa_job, "MNLI-3": mnli_without_unread_splits_job}
# test (pytest item name) -> the jobs it reads; the slow generation jobs first
TEST_JOBS = {"test_coqa_dialog": ["coqa"], "test_squad_qg": ["squad_qg"], "test_summarisation[cnndm]": ["cnndm"],
             "test_summarisation[gigaword]": ["gigaword"], "test_mnli_matched_and_mismatched": ["MNLI"],
             "test_stsb_regression": ["STS-B"], "test_sst2": ["SST-2"], "test_cola": ["CoLA"],
             "test_report_over_the_runs": ["SST-2", "MNLI"], "test_mnli_without_unread_split_files": ["MNLI-3"]}


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

    def get(name: str) -> Any:
        if name not in futures:  # a test not in TEST_JOBS: run its job now
            futures[name] = pool.submit(JOBS[name], work, shared_data)
        return futures[name].result(timeout=1200)

    get.work = work  # type: ignore[attr-defined]
    yield get
    pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------ tests
def test_sst2(jobs):
    res, out, data = jobs("SST-2")
    acc = check_common(res, "classification", "SST-2", "acc", CLS_STEPS["SST-2"], 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev.jsonl")
    assert len(preds) == len(refs) == 32 == res["metrics"]["dev"]["num_examples"]
    assert {p["prediction"] for p in preds} <= {"0", "1"}
    labels = [r["label"] for r in refs]
    assert acc == pytest.approx(float(np.mean([p["prediction"] == y for p, y in zip(preds, labels)])), abs=1e-12)
    assert acc >= majority_rate(labels) + CLS_MARGIN, (acc, majority_rate(labels))
    check_losses(out, CLS_STEPS["SST-2"])


def test_cola(jobs):
    res, out, data = jobs("CoLA")
    mcc = check_common(res, "classification", "CoLA", "mcc", CLS_STEPS["CoLA"], 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev.jsonl")
    assert len(preds) == len(refs) == 32

    def matthews(p: np.ndarray, y: np.ndarray) -> float:
        tp, tn, fp, fn = (p & y).sum(), (~p & ~y).sum(), (p & ~y).sum(), (~p & y).sum()
        denom = math.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
        return 0.0 if denom == 0 else float((tp * tn - fp * fn) / denom)

    p = np.array([x["prediction"] == "1" for x in preds])
    y = np.array([r["label"] == "1" for r in refs])
    assert mcc == pytest.approx(matthews(p, y), abs=1e-9)
    majority = np.full_like(y, Counter(y.tolist()).most_common(1)[0][0])
    assert matthews(majority, y) == 0.0  # the trivial baseline
    assert mcc >= MCC_MIN, mcc
    check_losses(out, CLS_STEPS["CoLA"])


def test_mnli_matched_and_mismatched(jobs):
    res, out, data = jobs("MNLI")
    acc = check_common(res, "classification", "MNLI", "acc", CLS_STEPS["MNLI"], 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev_matched.jsonl")
    assert len(preds) == len(refs) == 24
    assert {p["prediction"] for p in preds} <= {"entailment", "neutral", "contradiction"}
    labels = [r["label"] for r in refs]
    assert acc == pytest.approx(float(np.mean([p["prediction"] == y for p, y in zip(preds, labels)])), abs=1e-12)
    assert acc >= majority_rate(labels) + MNLI_MARGIN, (acc, majority_rate(labels))
    check_losses(out, CLS_STEPS["MNLI"])
    mm_out = out / "mismatched"
    mm = json.loads((mm_out / "results.json").read_text())
    assert mm["config"]["do_train"] is False and mm["checkpoint"] == res["checkpoint"]
    mm_preds = json.loads((mm_out / "predictions_dev.json").read_text())
    mm_labels = [r["label"] for r in read_jsonl(data / "dev_mismatched.jsonl")]
    assert len(mm_preds) == len(mm_labels) == 24
    mm_acc = float(np.mean([p["prediction"] == y for p, y in zip(mm_preds, mm_labels)]))
    assert mm["metrics"]["dev"]["acc"] == pytest.approx(mm_acc, abs=1e-12)
    assert mm_acc >= majority_rate(mm_labels) + MNLI_MARGIN, (mm_acc, majority_rate(mm_labels))
    assert not (mm_out / "train_log.jsonl").exists()


def test_mnli_without_unread_split_files(jobs):
    """The official MNLI conf names test_mismatched and the AX diagnostic as extra splits; run.py evaluates them only
    with do_test. A user who has only the labelled files must be able to train and evaluate."""
    proc = jobs("MNLI-3")
    worker = jobs.work / "log" / "MNLI-3" / "workerlog.0"
    assert proc.returncode == 0, worker.read_text(errors="replace")[-1500:] if worker.exists() else proc.stderr
    res = json.loads((jobs.work / "out-unread" / "MNLI-3" / "results.json").read_text())
    assert res["config"]["do_test"] is False and res["metrics"] == {}


def test_stsb_regression(jobs):
    from scipy.stats import spearmanr

    res, out, data = jobs("STS-B")
    r = check_common(res, "regression", "STS-B", "pearson", CLS_STEPS["STS-B"], 8)
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = read_jsonl(data / "dev.jsonl")
    assert len(preds) == len(refs) == 24
    p = np.array([x["prediction"] for x in preds], dtype=np.float64)
    y = np.array([float(x["label"]) for x in refs])
    m = res["metrics"]["dev"]
    pearson, spearman = float(np.corrcoef(p, y)[0, 1]), float(spearmanr(p, y)[0])
    assert r == pytest.approx(pearson, abs=1e-6)
    assert m["spearman"] == pytest.approx(spearman, abs=1e-6)
    assert m["corr"] == pytest.approx((pearson + spearman) / 2, abs=1e-6)
    # the trivial baseline: predicting the training mean (its Pearson is undefined, so compare squared errors)
    train_mean = float(np.mean([float(x["label"]) for x in read_jsonl(data / "train.jsonl")]))
    mse, mse_mean = float(np.mean((p - y) ** 2)), float(np.mean((train_mean - y) ** 2))
    assert mse <= STSB_MSE_RATIO * mse_mean, (mse, mse_mean)
    assert pearson >= STSB_MIN_PEARSON, pearson
    check_losses(out, CLS_STEPS["STS-B"])


@pytest.mark.parametrize("name", ["cnndm", "gigaword"], ids=["cnndm", "gigaword"])
def test_summarisation(jobs, name):
    res, out, data = jobs(name)
    rouge_l = check_common(res, "seq2seq", name, "rouge-l", SEQ2SEQ_STEPS, 4)
    assert res["config"]["trigram_blocking"] is (name == "cnndm")
    splits = ["dev", "test"]  # both confs evaluate test too (do_test): the published numbers are on test
    assert sorted(res["metrics"]) == splits
    cnndm = name == "cnndm"  # CNN/DM reports the summary-level ROUGE-L (rougeLsum)
    for split in splits:
        examples = read_jsonl(data / res["config"][f"{split}_file"])[:6]
        refs = [e["tgt"] for e in examples]
        preds = read_lines(out / f"predictions_{split}.txt")
        assert len(preds) == len(refs) == res["metrics"][split]["num_examples"]
        assert all(p.strip() for p in preds), preds
        want = rouge_third_party(preds, refs, summary_level=cnndm)
        for key in ("rouge-1", "rouge-2", "rouge-l"):
            assert res["metrics"][split][key] == pytest.approx(want[key], abs=1e-9), (split, key)
    # trivial baselines on dev: the lead of the source, the best constant training summary
    dev = read_jsonl(data / res["config"]["dev_file"])[:6]
    train_targets = [e["tgt"] for e in read_jsonl(data / "train.jsonl")]
    base = generation_baseline(lambda p, r: rouge_third_party(p, r, cnndm)["rouge-l"],
                               [" ".join(e["src"]) for e in dev], [e["tgt"] for e in dev], train_targets)
    assert rouge_l >= max(base.values()) + GEN_MARGIN, (rouge_l, base)
    check_losses(out, SEQ2SEQ_STEPS)


def test_squad_qg(jobs):
    res, out, data, oracle = jobs("squad_qg")
    bleu4 = check_common(res, "seq2seq", "squad_qg", "Bleu_4", SEQ2SEQ_STEPS, 4)
    for split in ("dev", "test"):
        m = res["metrics"][split]
        examples = read_jsonl(data / f"{split}.jsonl")
        refs = [e["tgt"] for e in examples]
        preds = read_lines(out / f"predictions_{split}.txt")
        assert m["num_examples"] == len(preds) == len(refs) == 6 and all(x.strip() for x in preds)
        want = coco_qg_third_party(preds, refs)
        for key in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"):
            assert m[key] == pytest.approx(want[key], abs=1e-9), (split, key)
            assert oracle[split][key] == want[key]
        if m.get("METEOR") is None:
            assert m["METEOR_unavailable"]  # no Java: said so, never a number
        else:
            assert m["METEOR"] == pytest.approx(oracle[split]["METEOR"], abs=1e-6), split
    dev = read_jsonl(data / "dev.jsonl")
    train_targets = [e["tgt"] for e in read_jsonl(data / "train.jsonl")]
    base = generation_baseline(lambda p, r: coco_qg_third_party(p, r)["Bleu_4"], [e["src"][0] for e in dev],
                               [e["tgt"] for e in dev], train_targets)
    assert bleu4 >= max(base.values()) + GEN_MARGIN, (bleu4, base)
    check_losses(out, SEQ2SEQ_STEPS)


def test_coqa_dialog(jobs):
    res, out, data = jobs("coqa")
    dev = read_jsonl(data / "dev.jsonl")
    # turn 2 of a story: [q1, a1, q2] with the story as knowledge
    assert len(dev) == 6 and dev[1]["src"] == ["What happened?", dev[0]["tgt"], "Where did it happen?"]
    topic = next(t for t, h in HEADLINES.items() if h == dev[0]["tgt"])
    assert re.search(rf"\b{topic}\b", dev[1]["knowledge"]) and dev[1]["tgt"] == COQA_PLACES[topic]
    f1 = check_common(res, "dialog", "coqa", "f1", COQA_STEPS, 4)
    assert res["config"]["role_type_size"] == 3 and res["config"]["turn_type_size"] == 16
    m = res["metrics"]["dev"]
    assert list(res["metrics"]) == ["dev"]  # CoQA is evaluated on dev only, as officially
    preds = read_lines(out / "predictions_dev.txt")
    golds = [e["tgt"] for e in dev]
    assert m["turns"] == len(preds) == 6 and all(x.strip() for x in preds), preds  # min_out_len=1: no empty answers
    want = coqa_oracle(preds, golds)
    assert f1 == pytest.approx(want["f1"], abs=1e-9) and m["em"] == pytest.approx(want["em"], abs=1e-9)
    train_answers = [e["tgt"] for e in read_jsonl(data / "train.jsonl")]
    constant = max(coqa_oracle([a] * len(golds), golds)["f1"] for a in set(train_answers))
    assert f1 >= constant + COQA_MARGIN, (f1, constant, preds)
    check_losses(out, COQA_STEPS)


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
