"""Results report: every fine-tuning run's ``results.json`` side by side with the published UNIMO numbers.

    python -m unimo.report [--results DIR_OR_FILE ...] [--output report.md] [--json report.json] [--skip-bad]

``--results`` (default ``output/``) is searched recursively for ``results.json`` (written by
``unimo/finetune/run.py`` into each ``output_dir``). Runs are matched to a benchmark by their ``dataset`` and sized
base / large from ``config.model_config`` (the JSON's hidden size and depth; the file name when it cannot be read);
other sizes (the tiny test model) are listed but never compared. When several runs exist for one benchmark and size
(the official grids), the best by the benchmark's first metric is shown, as the official scripts report the best of
their grid. An evaluation-only run (``do_train: false``) whose ``init_checkpoint`` is another run's checkpoint adds
its splits to that run; an MNLI one whose ``dev_file`` names "mismatched" supplies MNLI-mm.

Our metrics are stored as the evaluators return them (fractions for accuracy / ROUGE / BLEU / CIDEr-D / recall,
percent for CoQA F1 and VQA); the report converts every number to the published units (percent, CIDEr x 100).
Sweeps (``python -m unimo.sweep``: a ``sweep_results.json`` under the searched folders) get their own section: the
official statistic (the best single run of the grid) next to the spread over the seeds of the best setting.
The markdown goes to ``--output`` (stdout without it); ``--json`` writes the same content for scripts.
A ``results.json`` that is not a fine-tuning run (no ``task`` and no ``metrics``: the demo's own summary, a
pre-training run's results) is skipped and counted in the report, never an error. Bad fine-tuning
``results.json`` files are errors naming the file and field (``error: <file>: <field>: <what>``, exit 2), or, with
``--skip-bad``, skipped and counted.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .utils.errors import UserError, run_cli
from .utils.io import atomic_write

REPO = Path(__file__).resolve().parents[2]
SIZES = ("base", "large")
SERVER_SCORES = "evalai_scores.json"  # next to a results.json: {split: {metric: value}} from an evaluation server

PAPER_SOURCE = ("UNIMO paper, arXiv 2012.15409 v1 (docs/unimo_paper.md): Table 3 (multi-modal) and Table 4 "
                "(single-modal); base model only")
README_SOURCE = ("official README (PaddlePaddle/Research NLP/UNIMO, the ACL 2021 results): per-task tables; "
                 "VQA from its results image images/multiple.png")


@dataclass(frozen=True)
class Column:
    """One published number: its label, the split it is on, where ours is read, and the published values."""

    label: str
    metric: str                   # key in results.json metrics[split]
    split: str                    # split of the published number
    our_splits: tuple[str, ...]   # our splits to read, in order of preference ("dev" of VQA = val, see notes)
    scale: float                  # ours x scale = published units
    paper: Optional[str]          # paper, base model; numbers as printed in the source (trailing zeros kept)
    readme_base: Optional[str]
    readme_large: Optional[str]


@dataclass(frozen=True)
class Benchmark:
    name: str
    table: str                    # "single" (paper Table 4) or "multi" (paper Table 3)
    aliases: tuple[str, ...]      # normalised dataset names (lowercase, alphanumerics only)
    columns: tuple[Column, ...]


def _c(label: str, metric: str, split: str, scale: float, paper: Optional[str], base: Optional[str],
       large: Optional[str], our_splits: Optional[tuple[str, ...]] = None) -> Column:
    return Column(label, metric, split, our_splits if our_splits is not None else (split,), scale, paper, base, large)


TEST_OR_DEV = ("test", "dev")  # published on test; a run without do_test still shows its dev number, marked [dev]

# Published numbers. `paper` = the base-model rows "UNIMO-base" of the paper's Table 4 (SST-2 Acc, MNLI Acc-m/mm,
# CNNDM R-1/R-2/R-L, SQuAD) and Table 3 (VQA test-dev/std, COCO BLEU4/CIDEr, SNLI-VE Val/Test) in
# docs/unimo_paper.md (arXiv v1: no large model, no CoLA/STS-B/Gigaword/CoQA/Flickr30k). Its SQuAD header reads
# R-1/R-2/R-L, but the values (and the UniLM-large row 22.12/25.06/51.07 = UniLM's BLEU-4/METEOR/ROUGE-L) are
# BLEU-4/METEOR/ROUGE-L, the metrics the README reports for SQuAD-QG. `readme_*` = the official README tables
# (docs/official_unimo_spec.md section 7; VQA from section 6, the README's results image).
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("SST-2", "single", ("sst2",), (
        _c("Acc", "acc", "dev", 100, "95.4", "95.1", "96.8"),)),
    Benchmark("MNLI", "single", ("mnli", "mnliax", "mnlim"), (
        _c("Acc-m", "acc", "dev", 100, "86.8", "86.8", "89.8"),
        _c("Acc-mm", "acc", "dev_mismatched", 100, "86.1", "86.7", "89.5", our_splits=("dev_mismatched",)))),
    Benchmark("CoLA", "single", ("cola",), (
        _c("MCC", "mcc", "dev", 100, None, "65.4", "68.5"),)),
    Benchmark("STS-B", "single", ("stsb",), (
        _c("Pearson", "pearson", "dev", 100, None, "91.0", "92.6"),)),
    Benchmark("CNN/DM", "single", ("cnndm", "cnndailymail"), (
        _c("R-1", "rouge-1", "test", 100, "42.42", "42.42", "43.51", our_splits=TEST_OR_DEV),
        _c("R-2", "rouge-2", "test", 100, "20.12", "20.12", "20.65", our_splits=TEST_OR_DEV),
        _c("R-L", "rouge-l", "test", 100, "39.61", "39.61", "40.63", our_splits=TEST_OR_DEV))),
    Benchmark("Gigaword", "single", ("gigaword",), (
        _c("R-1", "rouge-1", "test", 100, None, "38.80", "39.71", our_splits=TEST_OR_DEV),
        _c("R-2", "rouge-2", "test", 100, None, "19.99", "20.37", our_splits=TEST_OR_DEV),
        _c("R-L", "rouge-l", "test", 100, None, "36.27", "36.88", our_splits=TEST_OR_DEV))),
    Benchmark("SQuAD-QG", "single", ("squadqg", "squad"), (
        _c("BLEU-4", "Bleu_4", "test", 100, "22.26", "22.78", "24.59", our_splits=TEST_OR_DEV),
        _c("METEOR", "METEOR", "test", 100, "24.77", "25.24", "26.39", our_splits=TEST_OR_DEV),
        _c("ROUGE-L", "ROUGE_L", "test", 100, "51.17", "51.34", "52.47", our_splits=TEST_OR_DEV))),
    Benchmark("CoQA", "single", ("coqa",), (
        _c("F1", "f1", "dev", 1, None, "80.2", "84.9"),)),
    Benchmark("Flickr30k", "multi", ("flickr30k", "flickr"), (
        _c("IR R@1", "img_recall@1", "test", 100, None, "74.66", "78.04", our_splits=TEST_OR_DEV),
        _c("IR R@5", "img_recall@5", "test", 100, None, "93.40", "94.24", our_splits=TEST_OR_DEV),
        _c("IR R@10", "img_recall@10", "test", 100, None, "96.08", "97.12", our_splits=TEST_OR_DEV),
        _c("TR R@1", "cap_recall@1", "test", 100, None, "89.70", "89.40", our_splits=TEST_OR_DEV),
        _c("TR R@5", "cap_recall@5", "test", 100, None, "98.40", "98.90", our_splits=TEST_OR_DEV),
        _c("TR R@10", "cap_recall@10", "test", 100, None, "99.10", "99.80", our_splits=TEST_OR_DEV))),
    Benchmark("SNLI-VE", "multi", ("snlive", "snli_ve"), (
        _c("Val", "acc", "dev", 100, "80.00", "80.00", "81.11"),
        _c("Test", "acc", "test", 100, "79.10", "79.10", "80.63"))),
    # test-dev / test-std are scored by the EvalAI server only (a run's evalai_scores.json, see load_run); the
    # local number is val accuracy, in its own column (script/vqa/VQAv2_val: train on train, evaluate val)
    Benchmark("VQA v2", "multi", ("vqav2", "vqa", "vqav2val"), (
        _c("test-dev", "vqa_acc", "test-dev", 1, "73.79", "73.79", "75.06"),
        _c("test-std", "vqa_acc", "test-std", 1, "74.02", "74.02", "75.27"),
        _c("val (local)", "vqa_acc", "dev", 1, None, None, None))),
    # pycocoevalcap's Cider is CIDEr-D; the coco-caption numbers papers print as "CIDEr" are that metric x 100
    Benchmark("COCO Caption", "multi", ("coco", "cococaption", "cocokarpathy"), (
        _c("BLEU-4", "Bleu_4", "test", 100, "38.6", "38.8", "39.6", our_splits=TEST_OR_DEV),
        _c("CIDEr-D", "CIDEr-D", "test", 100, "124.1", "124.4", "127.7", our_splits=TEST_OR_DEV))),
)
TABLE_TITLES = {"single": "Single-modal tasks (paper Table 4; CoLA, STS-B, Gigaword, CoQA from the README)",
                "multi": "Multi-modal tasks (paper Table 3; Flickr30k from the README)"}
NOTES = (
    "Ours: best run of that size by the benchmark's first metric (the official scripts report the best point of "
    "their hyper-parameter grid); `[split]` = read from that split because the published one is not available; "
    "`(random init)` = the run did not start from a pre-trained checkpoint.",
    "COCO: CIDEr-D as computed by pycocoevalcap (what coco-caption calls CIDEr), x 100; no CIDEr optimisation.",
    "VQA v2: test-dev / test-std come from the EvalAI server: script/vqa/VQAv2 trains on train + val (as the "
    "paper) and writes vqa_results_test.json (every test2015 question) to submit; put the server's numbers in "
    "evalai_scores.json next to its results.json ({\"test-dev\": {\"vqa_acc\": 73.8}, ...}) and they appear here. "
    "`val (local)` is script/vqa/VQAv2_val (trained on train only); the paper reports no val number.",
    "MNLI-mm: dev_mismatched, from `extra_eval_splits` or from an evaluation-only run with "
    "dev_file=dev_mismatched.jsonl on the trained checkpoint (see script/classification/MNLI-AX/conf.yaml).",
    "Classification / regression numbers are on dev, as the paper and README report them (GLUE test is hidden).",
)


class ReportError(UserError, ValueError):
    """A bad results file: ``path: field: message``."""

    def __init__(self, path: str, fld: Optional[str], message: str):
        self.path = path
        super().__init__(message, file=path, field=fld)


class NotARunError(Exception):
    """A ``results.json`` that is not a fine-tuning run (``kind`` says what it is); skipped, not an error."""

    def __init__(self, path: str, kind: str):
        self.path, self.kind = path, kind
        super().__init__(f"{path}: {kind}")


DEMO_SUMMARY_KIND = "unimo-demo-summary"  # the "kind" of unimo.utils.demo_summary's results.json


def not_a_run(data: Any) -> Optional[str]:
    """What a results.json is when it is not a fine-tuning run (None when it is one, valid or not): a JSON object
    without ``task`` and ``metrics`` -- the demo's summary table, a pre-training run, anything else."""
    if not isinstance(data, dict) or "task" in data or "metrics" in data:
        return None
    if data.get("kind") == DEMO_SUMMARY_KIND or (data and set(data) <= {"pretrain", "img2txt", "vqa", "ve",
                                                                         "retrieval", "kind"}):
        return "the demo's summary table (unimo.utils.demo_summary), not a fine-tuning run"
    if "final_checkpoint" in data or "streams" in data:
        return "a pre-training run (python -m unimo.pretrain), not a fine-tuning run"
    return "not a fine-tuning run (no 'task' and no 'metrics')"


# --------------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    path: str
    task: str
    dataset: str
    key_metric: Optional[str]
    metrics: dict[str, dict[str, Any]]
    config: dict[str, Any]
    checkpoint: Optional[str]
    size: str
    size_detail: str
    pretrained: bool
    benchmark: Optional[str]
    global_batch_size: Optional[int] = None
    train_seconds: Optional[float] = None
    merged_from: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"path": self.path, "task": self.task, "dataset": self.dataset, "benchmark": self.benchmark,
                "size": self.size, "size_detail": self.size_detail, "pretrained": self.pretrained,
                "init_checkpoint": self.config.get("init_checkpoint"), "key_metric": self.key_metric,
                "metrics": self.metrics, "global_batch_size": self.global_batch_size,
                "train_seconds": self.train_seconds, "merged_from": self.merged_from}


def normalise_name(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def find_benchmark(dataset: str) -> Optional[Benchmark]:
    key = normalise_name(dataset)
    for bench in BENCHMARKS:
        if key in {normalise_name(a) for a in bench.aliases} or key == normalise_name(bench.name):
            return bench
    return None


def _resolve(path: str, results_path: str) -> Optional[Path]:
    """A path written in a run's config is relative to where run.sh ran (the repository root) or absolute."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO / p, Path(results_path).parent / p]
    for c in candidates:
        if c.is_file():
            return c
    return None


def model_size(model_config: Any, results_path: str) -> tuple[str, str]:
    """("base" | "large" | "other", detail) from the model config JSON (hidden size x layers), else its name."""
    if not isinstance(model_config, str) or not model_config:
        return "other", "no model_config in the run's config"
    found = _resolve(model_config, results_path)
    if found is not None:
        try:
            with open(found, encoding="utf-8") as f:
                cfg = json.load(f)
            hidden, layers = cfg.get("hidden_size"), cfg.get("num_hidden_layers")
            detail = f"{os.path.basename(model_config)}: hidden {hidden}, {layers} layers"
            if (hidden, layers) == (768, 12):
                return "base", detail
            if (hidden, layers) == (1024, 24):
                return "large", detail
            return "other", detail
        except (OSError, ValueError, AttributeError):
            pass  # unreadable: fall back to the name
    name = os.path.basename(model_config).lower()
    for size in SIZES:
        if size in name:
            return size, f"{os.path.basename(model_config)} (by name; file not found)"
    return "other", f"{os.path.basename(model_config)} (by name; file not found)"


def _check_metrics(path: str, metrics: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(metrics, dict):
        raise ReportError(path, "metrics", f"expected an object of splits, got {type(metrics).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for split, values in metrics.items():
        if not isinstance(values, dict):
            raise ReportError(path, f"metrics.{split}", f"expected an object of metrics, got {type(values).__name__}")
        for name, v in values.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ReportError(path, f"metrics.{split}.{name}", f"not a finite number ({v})")
        out[str(split)] = dict(values)
    return out


def load_run(path: str) -> Run:
    """Parse and validate one results.json."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ReportError(path, None, "file not found") from None
    except json.JSONDecodeError as e:
        raise ReportError(path, None, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise ReportError(path, None, f"not UTF-8 ({e.reason})") from None
    if not isinstance(data, dict):
        raise ReportError(path, None, "expected a JSON object")
    kind = not_a_run(data)
    if kind is not None:
        raise NotARunError(path, kind)
    task = data.get("task")
    if not isinstance(task, str) or not task:
        raise ReportError(path, "task", f"missing or not a string: {task!r:.60}")
    config = data.get("config")
    if not isinstance(config, dict):
        raise ReportError(path, "config", "missing or not an object")
    metrics = _check_metrics(path, data.get("metrics", {}))
    # scores of a hidden test split that an evaluation server returned (VQA v2 test-dev / test-std on EvalAI)
    server = os.path.join(os.path.dirname(path), SERVER_SCORES)
    if os.path.isfile(server):
        try:
            with open(server, encoding="utf-8") as f:
                scores = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReportError(server, None, f"not valid JSON ({e})") from None
        metrics = {**metrics, **_check_metrics(server, scores)}
    dataset = data.get("dataset") or config.get("dataset") or ""
    if not isinstance(dataset, str):
        raise ReportError(path, "dataset", f"not a string: {dataset!r:.60}")
    size, detail = model_size(config.get("model_config"), path)
    bench = find_benchmark(dataset) if dataset else None
    gb = data.get("global_batch_size")
    ts = data.get("train_seconds")
    return Run(path=path, task=task, dataset=dataset, key_metric=data.get("key_metric"), metrics=metrics,
               config=config, checkpoint=data.get("checkpoint"), size=size, size_detail=detail,
               pretrained=bool(config.get("init_checkpoint")), benchmark=bench.name if bench else None,
               global_batch_size=gb if isinstance(gb, int) else None,
               train_seconds=ts if isinstance(ts, (int, float)) else None)


def find_results(paths: Sequence[str]) -> list[str]:
    """Every results.json under the given folders (files are taken as they are), sorted, without duplicates."""
    found: list[str] = []
    for p in paths:
        if os.path.isfile(p):
            found.append(p)
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                if "results.json" in files:
                    found.append(os.path.join(root, "results.json"))
        else:
            raise FileNotFoundError(f"--results {p}: no such file or folder")
    seen, out = set(), []
    for f in found:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _same_path(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and bool(a) and os.path.normpath(a) == os.path.normpath(b)


def merge_eval_runs(runs: list[Run]) -> list[Run]:
    """Fold evaluation-only runs into the training run whose checkpoint they evaluated."""
    kept: list[Run] = []
    for run in runs:
        if run.config.get("do_train") is False:
            owner = next((r for r in runs if r is not run and r.config.get("do_train") is not False
                          and _same_path(r.checkpoint, run.config.get("init_checkpoint"))), None)
            splits = dict(run.metrics)
            if run.benchmark == "MNLI" and "mismatched" in str(run.config.get("dev_file", "")) and "dev" in splits:
                splits["dev_mismatched"] = splits.pop("dev")
            if owner is not None:
                for split, values in splits.items():
                    owner.metrics.setdefault(split, values)
                owner.merged_from.append(run.path)
                continue
            run.metrics = splits
        kept.append(run)
    return kept


# --------------------------------------------------------------------------------------------------- report
def _value(run: Run, col: Column) -> tuple[Optional[float], Optional[str]]:
    for split in col.our_splits:
        v = run.metrics.get(split, {}).get(col.metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v) * col.scale, split
    return None, None


def _best_run(runs: list[Run], bench: Benchmark) -> Optional[Run]:
    """Best by the first column; a value on the published split beats any fallback split; ties: the later run."""
    col = bench.columns[0]
    scored = []
    for i, run in enumerate(runs):
        value, split = _value(run, col)
        if value is not None:
            scored.append(((-col.our_splits.index(split), value, i), run))
    if scored:
        return max(scored, key=lambda t: t[0])[1]
    return runs[-1] if runs else None


def build_report(runs: list[Run]) -> dict[str, Any]:
    """The report as a JSON-able dict: per benchmark and column, the published numbers and ours per size."""
    benches = []
    for bench in BENCHMARKS:
        by_size = {size: [r for r in runs if r.benchmark == bench.name and r.size == size] for size in SIZES}
        best = {size: _best_run(by_size[size], bench) for size in SIZES}
        cols = []
        for col in bench.columns:
            ours: dict[str, Any] = {}
            for size in SIZES:
                run = best[size]
                if run is None:
                    ours[size] = None
                    continue
                value, split = _value(run, col)
                ours[size] = {"value": None if value is None else round(value, 2), "split": split,
                              "run": run.path, "pretrained": run.pretrained, "runs": len(by_size[size])}
            cols.append({"label": col.label, "metric": col.metric, "split": col.split,
                         "paper_base": _float(col.paper), "readme_base": _float(col.readme_base),
                         "readme_large": _float(col.readme_large), "printed": [col.paper, col.readme_base,
                                                                               col.readme_large], "ours": ours})
        benches.append({"name": bench.name, "table": bench.table, "columns": cols,
                        "run": {size: bool(by_size[size]) for size in SIZES}})
    return {
        "sources": {"paper": PAPER_SOURCE, "readme": README_SOURCE},
        "benchmarks": benches,
        "runs": [r.summary() for r in runs],
        "notes": list(NOTES),
    }


def _float(v: Optional[str]) -> Optional[float]:
    return None if v is None else float(v)


def _num(v: Optional[str]) -> str:
    return "–" if v is None else v


def _ours_cell(entry: Optional[dict[str, Any]], col_split: str) -> str:
    if entry is None:
        return "not run"
    if entry["value"] is None:
        return "run, no value"
    text = f"{entry['value']:.2f}"
    if entry["split"] != col_split:
        text += f" [{entry['split']}]"
    if not entry["pretrained"]:
        text += " (random init)"
    if entry["runs"] > 1:
        text += f" (best of {entry['runs']})"
    return text


def render_markdown(report: dict[str, Any], searched: Sequence[str], skipped: Sequence[str],
                    not_runs: Sequence[dict[str, str]] = ()) -> str:
    lines = ["# UNIMO results report", "",
             f"{len(report['runs'])} run(s) from: {', '.join(searched) or '-'}"
             + (f"; {len(skipped)} bad results file(s) skipped" if skipped else "")
             + (f"; {len(not_runs)} results.json that are not fine-tuning runs skipped" if not_runs else ""), "",
             f"- Paper: {report['sources']['paper']}", f"- README: {report['sources']['readme']}", ""]
    for table in ("single", "multi"):
        lines += [f"## {TABLE_TITLES[table]}", "",
                  "| Task | Metric | Split | Paper (base) | README base | Ours base | README large | Ours large |",
                  "|---|---|---|---|---|---|---|---|"]
        for bench in report["benchmarks"]:
            if bench["table"] != table:
                continue
            for i, col in enumerate(bench["columns"]):
                lines.append("| " + " | ".join([
                    bench["name"] if i == 0 else "", col["label"], col["split"], _num(col["printed"][0]),
                    _num(col["printed"][1]), _ours_cell(col["ours"]["base"], col["split"]),
                    _num(col["printed"][2]), _ours_cell(col["ours"]["large"], col["split"])]) + " |")
        lines.append("")
    lines += ["## Runs", "", "| results.json | task | dataset | benchmark | size | init | key metric | dev | test |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        key = r["key_metric"]

        def cell(split: str, r=r, key=key) -> str:
            v = r["metrics"].get(split, {}).get(key) if key else None
            return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"

        size = r["size"] if r["size"] in SIZES else f"{r['size']} ({r['size_detail']})"
        lines.append(f"| {r['path']} | {r['task']} | {r['dataset'] or '–'} | {r['benchmark'] or 'unmatched'} | "
                     f"{size} | {r['init_checkpoint'] or 'random'} | {key or '–'} | {cell('dev')} | {cell('test')} |")
    if report.get("sweeps"):
        lines += ["", "## Sweeps", "",
                  "The official number is the best single run of the grid (stat_res.py `max_score`); the spread is "
                  "over the seeds of that run's setting.", "",
                  "| sweep | key metric | points | official max (run) | group bests min / median / avg | "
                  "best setting | mean ± std over seeds | median | min |", "|---|---|---|---|---|---|---|---|---|"]
        for sw in report["sweeps"]:
            o, b = sw.get("official"), sw.get("best_setting")
            if not o or not b:
                lines.append(f"| {sw['path']} | {sw.get('key_metric') or '–'} | {sw['points_finished']}/"
                             f"{sw['points_total']} | – | – | – | – | – | – |")
                continue
            setting = ", ".join(f"{k}={v}" for k, v in b["values"].items())
            lines.append(f"| {sw['path']} | {sw['key_metric']} | {sw['points_finished']}/{sw['points_total']} | "
                         f"{o['max_score']:.4g} ({o['max_run']}) | {o['min_score']:.4g} / {o['median_score']:.4g} / "
                         f"{o['avg_score']:.4g} | {setting} | {b['mean']:.4g} ± {b['std']:.2g} ({b['runs']} runs) | "
                         f"{b['median']:.4g} | {b['min']:.4g} |")
    if skipped:
        lines += ["", "Skipped (bad results files):", ""] + [f"- {s}" for s in skipped]
    if not_runs:
        lines += ["", "Skipped (not fine-tuning runs):", ""] + [f"- {n['path']}: {n['kind']}" for n in not_runs]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _write_atomic(path: str, text: str) -> None:
    if os.path.isdir(path):
        raise UserError("is a directory", file=path, hint="--output / --json take a file name")
    with atomic_write(path) as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # atomic_write's temporary file is private (0600)


def find_sweeps(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Every ``sweep_results.json`` (``python -m unimo.sweep``) under the searched folders, with its path."""
    out = []
    for p in paths:
        if not os.path.isdir(p):
            continue
        for root, dirs, files in os.walk(p):
            dirs.sort()
            if "sweep_results.json" in files:
                path = os.path.join(root, "sweep_results.json")
                try:
                    with open(path, encoding="utf-8") as f:
                        data = json.load(f)
                except (OSError, json.JSONDecodeError) as e:
                    raise ReportError(path, None, f"unreadable sweep summary ({e})") from None
                out.append({"path": path, **{k: data.get(k) for k in (
                    "config", "key_metric", "points_total", "points_finished", "official", "best_setting")}})
    return out


def collect(paths: Sequence[str], skip_bad: bool = False,
            not_runs: Optional[list[dict[str, str]]] = None) -> tuple[list[Run], list[str]]:
    """Load every results.json under ``paths``; bad ones raise, or with ``skip_bad`` are returned as messages.
    Files that are not fine-tuning runs are always skipped; they are appended to ``not_runs`` (path, kind)."""
    runs, skipped = [], []
    for f in find_results(paths):
        try:
            runs.append(load_run(f))
        except NotARunError as e:
            if not_runs is not None:
                not_runs.append({"path": e.path, "kind": e.kind})
        except ReportError as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
    return merge_eval_runs(runs), skipped


def build_parser() -> argparse.ArgumentParser:
    from .utils.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m unimo.report", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--results", nargs="+", default=["output"],
                        help="folders searched recursively for results.json, or results files")
    parser.add_argument("--output", default=None, help="markdown report path (none: print it)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help="also write the report as JSON to PATH")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable / invalid results files, counted (otherwise the first is an error)")
    return parser


def _main(argv: Optional[Iterable[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    not_runs: list[dict[str, str]] = []
    runs, skipped = collect(args.results, args.skip_bad, not_runs)
    report = build_report(runs)
    report["sweeps"] = find_sweeps(args.results)
    report["searched"] = list(args.results)
    report["skipped"] = skipped
    report["not_runs"] = not_runs
    markdown = render_markdown(report, args.results, skipped, not_runs)
    if args.json_path:
        _write_atomic(args.json_path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    if args.output:
        _write_atomic(args.output, markdown)
        print(json.dumps({"runs": len(runs), "skipped": len(skipped), "not_runs": len(not_runs),
                          "output": args.output, "json": args.json_path}))
    else:
        sys.stdout.write(markdown)
    return 0


def main(argv: Optional[Iterable[str]] = None) -> int:
    """Exit status: 0 ok, 2 bad input (a bad results file, a missing folder; one ``error:`` line), 1 internal."""
    return run_cli(_main, list(argv) if argv is not None else None)


if __name__ == "__main__":
    sys.exit(main())
