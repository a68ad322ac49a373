"""python -m unimo.report: the published numbers (checked against the paper and spec text), matching of runs to
benchmarks, base/large detection, best-of-grid selection, unit conversion, eval-only merging, and bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unimo import report as R

REPO = Path(__file__).resolve().parents[1]
BASE_CFG = "model_files/config/unimo_base_en.json"
LARGE_CFG = "model_files/config/unimo_large_en.json"
TINY_CFG = "model_files/config/unimo_tiny_en.json"


def write_run(root: Path, name: str, task: str, dataset: str, metrics: dict, model_config: str = BASE_CFG,
              init: str | None = "model_files/unimo_base_en_paddle", **config) -> Path:
    out = root / name
    out.mkdir(parents=True)
    data = {"task": task, "dataset": dataset, "key_metric": "x", "metrics": metrics,
            "best": {}, "checkpoint": str(out / "best"), "global_batch_size": 16, "world_size": 1,
            "train_seconds": 1.0,
            "config": {"task": task, "dataset": dataset, "model_config": model_config, "init_checkpoint": init,
                       "output_dir": str(out), **config}}
    (out / "results.json").write_text(json.dumps(data), encoding="utf-8")
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unimo.report", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def column(report: dict, bench: str, label: str) -> dict:
    b = next(b for b in report["benchmarks"] if b["name"] == bench)
    return next(c for c in b["columns"] if c["label"] == label)


# ------------------------------------------------------------------------------------------- published numbers
def test_benchmarks_cover_both_tables():
    names = [b.name for b in R.BENCHMARKS]
    assert names == ["SST-2", "MNLI", "CoLA", "STS-B", "CNN/DM", "Gigaword", "SQuAD-QG", "CoQA",
                     "Flickr30k", "SNLI-VE", "VQA v2", "COCO Caption"]
    assert {b.table for b in R.BENCHMARKS[:8]} == {"single"} and {b.table for b in R.BENCHMARKS[8:]} == {"multi"}
    coco = R.BENCHMARKS[-1]
    assert [c.label for c in coco.columns] == ["BLEU-4", "CIDEr-D"] and coco.columns[1].metric == "CIDEr-D"


def test_paper_numbers_match_the_paper_tables(shared_data):
    """The `UNIMO-base` rows of Table 3 and Table 4 in docs/unimo_paper.md, read from the document itself."""
    text = (shared_data.parent / "docs" / "unimo_paper.md").read_text(encoding="utf-8")
    t3 = text[text.index("Model\tVÇ"):text.index("Table 3:")]
    t4 = text[text.index("Table 3:"):text.index("Table 4:")]
    row3 = re.search(r"^UNIMO-base\t(.*)$", t3, re.M).group(1).split("\t")
    row4 = re.search(r"^UNIMO-base\t(.*)$", t4, re.M).group(1).split("\t")
    assert row3 == ["73.79", "74.02", "38.6", "124.1", "80.00", "79.10"]  # VQA dev/std, COCO B4/CIDEr, VE val/test
    paper = {(b.name, c.label): c.paper for b in R.BENCHMARKS for c in b.columns}
    assert [paper["VQA v2", "test-dev"], paper["VQA v2", "test-std"], paper["COCO Caption", "BLEU-4"],
            paper["COCO Caption", "CIDEr-D"], paper["SNLI-VE", "Val"], paper["SNLI-VE", "Test"]] == row3
    m, mm = row4[1].split("/")
    assert [row4[0], m, mm] + row4[2:] == [
        paper["SST-2", "Acc"], paper["MNLI", "Acc-m"], paper["MNLI", "Acc-mm"], paper["CNN/DM", "R-1"],
        paper["CNN/DM", "R-2"], paper["CNN/DM", "R-L"], paper["SQuAD-QG", "BLEU-4"], paper["SQuAD-QG", "METEOR"],
        paper["SQuAD-QG", "ROUGE-L"]]
    # tasks absent from this version of the paper carry no paper number
    for name in ("CoLA", "STS-B", "Gigaword", "CoQA", "Flickr30k"):
        assert all(v is None for (b, _), v in paper.items() if b == name)


def test_readme_numbers_match_the_spec(shared_data):
    """Base / large README values, as written in docs/official_unimo_spec.md sections 6-7."""
    spec = (shared_data.parent / "docs" / "official_unimo_spec.md").read_text(encoding="utf-8")
    sec7 = " ".join(spec[spec.index("## 7. README facts"):spec.index("## 8.")].split())  # unwrap lines
    groups = []
    for b in R.BENCHMARKS:
        if b.name == "VQA v2":
            continue
        cols = list(b.columns)
        groups += [cols[:3], cols[3:]] if b.name == "Flickr30k" else [cols]
    for cols in groups:
        base = "/".join(c.readme_base for c in cols)
        large = "/".join(c.readme_large for c in cols)
        assert f"{base}, {large}" in sec7 or f"{base}/{large}" in sec7, (base, large)
    vqa = next(b for b in R.BENCHMARKS if b.name == "VQA v2").columns
    assert (f"base {vqa[0].readme_base}/{vqa[1].readme_base}, large {vqa[0].readme_large}/{vqa[1].readme_large}"
            in " ".join(spec.split()))


# ------------------------------------------------------------------------------------------- runs -> report
@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "output"
    write_run(root, "sst2_a", "classification", "SST-2", {"dev": {"acc": 0.9312}})
    write_run(root, "sst2_b", "classification", "SST-2", {"dev": {"acc": 0.9507, "num_examples": 872}})
    write_run(root, "sst2_large", "classification", "SST-2", {"dev": {"acc": 0.968}}, model_config=LARGE_CFG)
    mnli = write_run(root, "mnli", "classification", "MNLI", {"dev": {"acc": 0.8675}, "test": {}})
    write_run(mnli, "mismatched", "classification", "MNLI", {"dev": {"acc": 0.8661}}, do_train=False,
              init=str(mnli / "best"), dev_file="dev_mismatched.jsonl")
    write_run(root, "cnndm_large", "seq2seq", "cnndm",
              {"dev": {"rouge-1": 0.44}, "test": {"rouge-1": 0.4351, "rouge-2": 0.2065, "rouge-l": 0.4063}},
              model_config=LARGE_CFG, init="model_files/unimo_large_en_paddle")
    write_run(root, "cnndm_dev_only", "seq2seq", "cnndm", {"dev": {"rouge-1": 0.41, "rouge-2": 0.19,
                                                                  "rouge-l": 0.38}})
    write_run(root, "coqa", "dialog", "coqa", {"dev": {"f1": 78.54, "em": 66.0, "turns": 7983}})
    write_run(root, "coco", "img2txt", "coco", {"test": {"Bleu_4": 0.3881, "CIDEr-D": 1.2443, "METEOR": None}})
    write_run(root, "vqa", "vqa", "VQAv2", {"dev": {"vqa_acc": 70.1}, "test": {}})
    write_run(root, "flickr", "retrieval", "Flickr30k", {"test": {"img_recall@1": 0.7466, "cap_recall@10": 0.991}},
              init=None)
    write_run(root, "tiny", "classification", "SST-2", {"dev": {"acc": 0.99}}, model_config=TINY_CFG, init=None)
    write_run(root, "moved", "visual_entailment", "SNLI-VE", {"dev": {"acc": 0.8111}, "test": {"acc": 0.8063}},
              model_config="/nowhere/unimo_large_en.json")
    write_run(root, "other", "classification", "my-data", {"dev": {"acc": 0.5}})
    return root


def test_report_json_and_markdown(runs_dir: Path, tmp_path: Path):
    md, js = tmp_path / "r" / "report.md", tmp_path / "r" / "report.json"
    proc = run_cli("--results", str(runs_dir), "--output", str(md), "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"runs": 13, "skipped": 0, "not_runs": 0, "output": str(md), "json": str(js)}
    rep = json.loads(js.read_text())
    text = md.read_text()

    sst2 = column(rep, "SST-2", "Acc")
    assert sst2["paper_base"] == 95.4 and sst2["readme_base"] == 95.1 and sst2["readme_large"] == 96.8
    assert sst2["ours"]["base"]["value"] == 95.07 and sst2["ours"]["base"]["runs"] == 2  # best of the grid
    assert sst2["ours"]["base"]["run"].endswith("sst2_b/results.json")
    assert "| SST-2 | Acc | dev | 95.4 | 95.1 | 95.07 (best of 2) | 96.8 | 96.80 |" in text

    # the evaluation-only mismatched run is folded into its training run
    assert column(rep, "MNLI", "Acc-m")["ours"]["base"]["value"] == 86.75
    assert column(rep, "MNLI", "Acc-mm")["ours"]["base"]["value"] == 86.61
    assert len([r for r in rep["runs"] if r["dataset"] == "MNLI"]) == 1

    # large CNN/DM has test numbers; the base run only dev -> shown, marked [dev]
    assert [column(rep, "CNN/DM", k)["ours"]["large"]["value"] for k in ("R-1", "R-2", "R-L")] == [
        43.51, 20.65, 40.63]
    assert column(rep, "CNN/DM", "R-1")["ours"]["base"] == {
        "value": 41.0, "split": "dev", "run": str(runs_dir / "cnndm_dev_only" / "results.json"),
        "pretrained": True, "runs": 1}
    assert "| CNN/DM | R-1 | test | 42.42 | 42.42 | 41.00 [dev] | 43.51 | 43.51 |" in text

    assert column(rep, "CoQA", "F1")["ours"]["base"]["value"] == 78.54                  # already percent
    assert column(rep, "COCO Caption", "CIDEr-D")["ours"]["base"]["value"] == 124.43     # CIDEr-D x 100
    assert column(rep, "COCO Caption", "BLEU-4")["ours"]["base"]["value"] == 38.81
    # VQA: each number under its real split - val accuracy is not a test-dev number
    assert "| VQA v2 | test-dev | test-dev | 73.79 | 73.79 | run, no value | 75.06 | not run |" in text
    assert "|  | test-std | test-std | 74.02 | 74.02 | run, no value | 75.27 | not run |" in text
    assert "|  | val (local) | dev | – | – | 70.10 | – | not run |" in text
    assert "| Flickr30k | IR R@1 | test | – | 74.66 | 74.66 (random init) | 78.04 | not run |" in text
    assert "|  | IR R@5 | test | – | 93.40 | run, no value | 94.24 | not run |" in text
    # size from the config's name when the file is gone
    assert column(rep, "SNLI-VE", "Test")["ours"]["large"]["value"] == 80.63
    assert column(rep, "SNLI-VE", "Val")["ours"]["base"] is None
    # a tiny run is listed but never compared; an unknown dataset is listed as unmatched
    runs = {Path(r["path"]).parent.name: r for r in rep["runs"]}
    assert runs["tiny"]["size"] == "other" and "hidden 64, 2 layers" in runs["tiny"]["size_detail"]
    assert runs["other"]["benchmark"] is None and "| my-data | unmatched |" in text
    assert runs["moved"]["size"] == "large" and "by name" in runs["moved"]["size_detail"]
    assert column(rep, "CoLA", "MCC")["ours"] == {"base": None, "large": None}
    assert "| CoLA | MCC | dev | – | 65.4 | not run | 68.5 | not run |" in text
    assert "CIDEr-D" in text and "EvalAI" in text


def test_published_split_beats_a_better_fallback(tmp_path: Path):
    root = tmp_path / "o"
    write_run(root, "a", "seq2seq", "gigaword", {"test": {"rouge-1": 0.30}})
    write_run(root, "b", "seq2seq", "gigaword", {"dev": {"rouge-1": 0.50}})
    runs, skipped = R.collect([str(root)])
    rep = R.build_report(runs)
    ours = column(rep, "Gigaword", "R-1")["ours"]["base"]
    assert (ours["value"], ours["split"], ours["runs"]) == (30.0, "test", 2) and skipped == []


def test_stdout_without_output(runs_dir: Path):
    proc = run_cli("--results", str(runs_dir / "coqa"), str(runs_dir / "coqa" / "results.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# UNIMO results report\n")
    assert "1 run(s) from:" in proc.stdout  # the same file given twice counts once
    assert "| CoQA | F1 | dev | – | 80.2 | 78.54 | 84.9 | not run |" in proc.stdout


# ------------------------------------------------------------------------------------------- bad input
def test_bad_results_are_errors_or_skipped(tmp_path: Path):
    root = tmp_path / "o"
    write_run(root, "good", "classification", "CoLA", {"dev": {"mcc": 0.6}})
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text('{"task": "classification",\n "metrics": {', encoding="utf-8")
    nan = write_run(root, "nan", "classification", "SST-2", {"dev": {"acc": 0.5}})
    (nan / "results.json").write_text((nan / "results.json").read_text().replace("0.5", "NaN"))
    md = tmp_path / "report.md"

    proc = run_cli("--results", str(root), "--output", str(md))
    assert proc.returncode == 2 and not md.exists()
    assert f"{root / 'broken' / 'results.json'}: not valid JSON (line 2" in proc.stderr

    (root / "broken" / "results.json").unlink()
    proc = run_cli("--results", str(root), "--output", str(md))
    assert proc.returncode == 2 and not md.exists()
    assert f"{nan / 'results.json'}: metrics.dev.acc: not a finite number (nan)" in proc.stderr

    (root / "broken" / "results.json").write_text("[1, 2]", encoding="utf-8")
    proc = run_cli("--results", str(root), "--output", str(md), "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["skipped"] == 2 and json.loads(proc.stdout)["runs"] == 1
    text = md.read_text()
    assert "2 bad results file(s) skipped" in text and "| CoLA | MCC | dev | – | 65.4 | 60.00 | 68.5 |" in text
    assert [p.name for p in md.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("content,message", [
    ({"metrics": {}, "config": {}}, "task: missing or not a string"),
    ({"task": "seq2seq", "metrics": {}}, "config: missing or not an object"),
    ({"task": "seq2seq", "metrics": {"dev": 3}, "config": {}}, "metrics.dev: expected an object of metrics"),
    ({"task": "seq2seq", "metrics": [], "config": {}}, "metrics: expected an object of splits"),
])
def test_invalid_fields(tmp_path: Path, content, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    with pytest.raises(R.ReportError, match=re.escape(f"{path}: {message}")):
        R.load_run(str(path))


def test_missing_results_folder(tmp_path: Path):
    proc = run_cli("--results", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


def test_evaluation_server_scores_fill_the_hidden_splits(tmp_path: Path):
    """VQA v2 trained on train + val: the run has no local metric; the EvalAI numbers put next to its results.json
    appear under test-dev / test-std, and a broken scores file is an error naming it."""
    root = tmp_path / "runs"
    run = write_run(root, "vqa_trainval", "vqa", "VQAv2", {"test": {}})
    (run / "evalai_scores.json").write_text(json.dumps({"test-dev": {"vqa_acc": 73.61}, "test-std": {"vqa_acc": 73.9}}))
    md, js = tmp_path / "report.md", tmp_path / "report.json"
    proc = run_cli("--results", str(root), "--output", str(md), "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(js.read_text())
    assert column(rep, "VQA v2", "test-dev")["ours"]["base"]["value"] == 73.61
    assert column(rep, "VQA v2", "test-std")["ours"]["base"]["value"] == 73.9
    assert column(rep, "VQA v2", "val (local)")["ours"]["base"]["value"] is None
    assert "| VQA v2 | test-dev | test-dev | 73.79 | 73.79 | 73.61 | 75.06 | not run |" in md.read_text()
    (run / "evalai_scores.json").write_text('{"test-dev": [1]}')
    proc = run_cli("--results", str(root))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {run / 'evalai_scores.json'}: metrics.test-dev")
