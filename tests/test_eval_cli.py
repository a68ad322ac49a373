"""``python -m unimo.eval`` on tiny files: a few true subprocess runs, the variants and error paths through the
same ``main(argv)`` in-process (each interpreter start costs seconds on the shared CPUs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unimo.eval import java_status
from unimo.eval.__main__ import main

HAS_JAVA = java_status()[0]


def run_cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "unimo.eval", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


class Cli:
    """In-process ``main(argv)``: returns the parsed JSON, or (status, stderr) when ``ok=False``."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args, ok: bool = True):
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        if ok:
            assert code == 0, err
            return json.loads(out)
        assert out == ""  # nothing on stdout when failing
        return code, err


@pytest.fixture
def cli(capsys) -> Cli:
    return Cli(capsys)


def result(*args: str) -> dict:
    return json.loads(run_cli(*args).stdout)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_does_not_import_paddle(tmp_path):
    p = write(tmp_path / "p.txt", "1\n0\n")
    code = ("import runpy, sys\n"
            f"sys.argv = ['unimo.eval', 'glue', '--metric', 'acc', '--pred', {str(p)!r}, '--ref', {str(p)!r}]\n"
            "try:\n    runpy.run_module('unimo.eval', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'paddle' not in sys.modules, 'paddle was imported'\n"
            "assert not any(m.startswith('unimo.model.modeling') for m in sys.modules), 'model was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["acc"] == 1.0


def test_glue_acc_mcc_pearson(tmp_path, cli):
    pred = write(tmp_path / "pred.txt", "1\n0\n1\n1\n0\n")
    ref = write(tmp_path / "ref.txt", "1\n1\n1\n0\n0\n")
    assert result("glue", "--metric", "acc", "--pred", pred, "--ref", ref)["acc"] == pytest.approx(0.6)
    # TP=2 FN=1 FP=1 TN=1 -> (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert cli("glue", "--metric", "mcc", "--pred", pred, "--ref", ref)["mcc"] == pytest.approx(1 / 6)
    # STS-B style TSV with a header, score in the last column; r = 4/5 (see test_eval)
    tsv = write(tmp_path / "dev.tsv", "index\ts1\ts2\tscore\n0\ta\tb\t1\n1\tc\td\t3\n2\te\tf\t2\n3\tg\th\t4\n")
    preds = write(tmp_path / "sts.txt", "1.0\n2.0\n3.0\n4.0\n")
    out = cli("glue", "--metric", "pearson_spearman", "--pred", preds, "--ref", tsv, "--ref-column", "-1",
              "--ref-skip-header")
    assert out["pearson"] == pytest.approx(0.8) and out["spearman"] == pytest.approx(0.8)
    # MNLI labels as strings
    p2 = write(tmp_path / "mnli_pred.txt", "entailment\nneutral\ncontradiction\n")
    r2 = write(tmp_path / "mnli_ref.txt", "entailment\ncontradiction\ncontradiction\n")
    assert cli("glue", "--metric", "acc", "--pred", p2, "--ref", r2)["acc"] == pytest.approx(2 / 3)


def test_glue_errors_name_file_and_line(tmp_path, cli):
    pred = write(tmp_path / "pred.txt", "1\n0\n1\n")
    ref = write(tmp_path / "ref.txt", "1\n1\n")
    proc = run_cli("glue", "--metric", "acc", "--pred", pred, "--ref", ref, ok=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "pred.txt" in proc.stderr and "ref.txt" in proc.stderr and "line: 3" in proc.stderr
    bad = write(tmp_path / "bad.txt", "0.5\nabc\n0.7\n")
    code, err = cli("glue", "--metric", "pearson_spearman", "--pred", bad, "--ref", pred, ok=False)
    assert code == 2 and "bad.txt: line 2" in err
    code, err = cli("glue", "--metric", "acc", "--pred", tmp_path / "nope.txt", "--ref", ref, ok=False)
    assert code == 2 and "nope.txt: file not found" in err
    code, err = cli("glue", "--metric", "acc", "--pred", tsv_missing_col(tmp_path), "--ref", ref,
                    "--pred-column", "2", ok=False)
    assert code == 2 and "cols.tsv: line 2: no column 2" in err


def tsv_missing_col(tmp_path: Path) -> Path:
    return write(tmp_path / "cols.tsv", "a\tb\t1\nc\td\n")


def test_rouge_cli(tmp_path, cli):
    pred = write(tmp_path / "pred.txt", "the cat sat on the mat\nAlpha bravo echo. Charlie delta foxtrot.\n")
    ref = write(tmp_path / "ref.txt", "the cat lay on the mat\nalpha bravo charlie delta <S_SEP> echo foxtrot\n")
    out_file = tmp_path / "res" / "rouge.json"
    giga = result("rouge", "--pred", pred, "--ref", ref, "--output", out_file)
    cnn = cli("rouge", "--pred", pred, "--ref", ref, "--cnndm")
    # doc 1: R-L 5/6 either way; doc 2: 5/6 sentence level, 1.0 summary level (hand counts in test_eval)
    assert giga["rouge-l"] == pytest.approx((5 / 6 + 5 / 6) / 2)
    assert cnn["rouge-l"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert "rougeLsum" in cnn["rouge_settings"]["rouge_l"]
    assert json.loads(out_file.read_text()) == giga
    assert [p.name for p in out_file.parent.iterdir()] == ["rouge.json"]  # no temp file left behind


def _caption_files(tmp_path: Path, preds: list[dict]) -> tuple[Path, Path]:
    refs = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
            "annotations": [
                {"image_id": 1, "id": 10, "caption": "A man riding a wave on top of a surfboard."},
                {"image_id": 1, "id": 11, "caption": "A surfer rides a large wave in the ocean."},
                {"image_id": 2, "id": 20, "caption": "Two giraffes standing next to each other in a field."},
                {"image_id": 2, "id": 21, "caption": "A pair of giraffes in a grassy field."},
                {"image_id": 3, "id": 30, "caption": "A plate with eggs, toast and bacon."},
                {"image_id": 3, "id": 31, "caption": "Breakfast food on a white plate."}]}
    ref = write(tmp_path / "captions.json", json.dumps(refs))
    pred = write(tmp_path / "results.json", json.dumps(preds))
    return pred, ref


GOOD_PREDS = [{"image_id": 1, "caption": "a man riding a wave on a surfboard"},
              {"image_id": 2, "caption": "two giraffes in a field"},
              {"image_id": 3, "caption": "a plate of food"}]


@pytest.mark.skipif(not HAS_JAVA, reason="java not installed")
def test_caption_cli_with_java(tmp_path):
    # METEOR itself is checked in test_eval (its JVM needs ~10 s to start); here the Java PTB tokenizer path
    pred, ref = _caption_files(tmp_path, GOOD_PREDS)
    out = result("caption", "--pred", pred, "--ref", ref, "--no-meteor")
    assert out["tokenizer"].startswith("ptb-java")
    for k in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr-D"):
        assert out[k] > 0
    assert out["METEOR"] is None and "skipped" in out["METEOR_unavailable"]
    assert out["SPICE"] is None and out["SPICE_unavailable"]


def test_caption_cli_fallback_and_errors(tmp_path, cli):
    pred, ref = _caption_files(tmp_path, GOOD_PREDS)
    out = cli("caption", "--pred", pred, "--ref", ref, "--no-java")
    assert out["tokenizer"] == "python-treebank-fallback" and out["METEOR"] is None
    assert "Java" in out["METEOR_unavailable"] and out["CIDEr-D"] > 0
    pred, ref = _caption_files(tmp_path, GOOD_PREDS + [{"image_id": 2, "caption": "again"}])
    code, err = cli("caption", "--pred", pred, "--ref", ref, "--no-java", ok=False)
    assert code == 2 and "results.json: entry 3: duplicate prediction for image_id 2" in err
    pred, ref = _caption_files(tmp_path, GOOD_PREDS[:2])
    code, err = cli("caption", "--pred", pred, "--ref", ref, "--no-java", ok=False)
    assert code == 2 and "no prediction for image_id 3" in err and "results.json" in err
    out = cli("caption", "--pred", pred, "--ref", ref, "--no-java", "--allow-missing")
    assert out["num_images"] == 2 and out["num_missing_predictions"] == 1


def test_qg_cli(tmp_path, cli):
    pred = write(tmp_path / "pred.txt", "who is y ?\nWhat is X?\nwhen was z founded ?\n")
    ref = write(tmp_path / "ref.txt", "what is x ?\nwho is y ?\nwhen was z founded ?\n")
    src = write(tmp_path / "src.txt", "Sentence one.\nsentence one.\nSentence two.\n")
    out = cli("qg", "--pred", pred, "--ref", ref, "--src", src, "--no-meteor")
    assert out["Bleu_4"] == pytest.approx(1.0, abs=1e-6) and out["num_groups"] == 2
    assert out["METEOR"] is None
    short = write(tmp_path / "short.txt", "what is x ?\n")
    code, err = cli("qg", "--pred", pred, "--ref", short, ok=False)
    assert code == 2 and "short.txt" in err


def test_coqa_cli_text_and_official_json(tmp_path, cli):
    pred = write(tmp_path / "pred.txt", "red dog\nyes\n")
    ref = write(tmp_path / "ref.txt", "red dog\tdog\tblue cat\nYes.\n")
    # (8/9 + 1) / 2 in percent (leave-one-out by hand in test_eval)
    assert cli("coqa", "--pred", pred, "--ref", ref)["f1"] == pytest.approx(100 * (8 / 9 + 1) / 2)
    gold = {"version": "1.0", "data": [
        {"id": "s1", "source": "cnn", "questions": [{"turn_id": 1, "input_text": "what?"},
                                                   {"turn_id": 2, "input_text": "is it?"}],
         "answers": [{"turn_id": 1, "input_text": "red dog"}, {"turn_id": 2, "input_text": "yes"}],
         "additional_answers": {"0": [{"turn_id": 1, "input_text": "dog"}, {"turn_id": 2, "input_text": "yes"}],
                                "1": [{"turn_id": 1, "input_text": "blue cat"}, {"turn_id": 2, "input_text": "Yes"}]}},
        {"id": "s2", "source": "reddit", "questions": [{"turn_id": 1, "input_text": "who?"}],
         "answers": [{"turn_id": 1, "input_text": "no"}], "additional_answers": {}}]}
    gold_path = write(tmp_path / "coqa-dev.json", json.dumps(gold))
    preds = [{"id": "s1", "turn_id": 1, "answer": "red dog"}, {"id": "s1", "turn_id": 2, "answer": "yes"},
             {"id": "s2", "turn_id": 1, "answer": "yes"}]
    pred_json = write(tmp_path / "pred.json", json.dumps(preds))
    out = cli("coqa", "--pred", pred_json, "--ref", gold_path)
    assert out["f1"] == pytest.approx(100 * (8 / 9 + 1 + 0) / 3)
    assert out["by_domain"]["in_domain"]["turns"] == 2 and out["by_domain"]["out_domain"]["f1"] == 0.0
    # the same predictions as lines in gold order
    lines = write(tmp_path / "pred_lines.txt", "red dog\nyes\nyes\n")
    assert cli("coqa", "--pred", lines, "--ref", gold_path)["f1"] == pytest.approx(out["f1"])
    pred_json = write(tmp_path / "pred2.json", json.dumps(preds[:2]))
    code, err = cli("coqa", "--pred", pred_json, "--ref", gold_path, ok=False)
    assert code == 2 and "missing prediction for story 's2' turn 1" in err


def test_vqa_cli(tmp_path, cli):
    questions = {"questions": [{"question_id": 1, "image_id": 7, "question": "Is it?"},
                               {"question_id": 2, "image_id": 7, "question": "How many?"}]}
    anns = {"annotations": [
        {"question_id": 1, "image_id": 7, "answer_type": "yes/no", "question_type": "is it",
         "multiple_choice_answer": "no",
         "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": i + 1} for i in range(2)]
         + [{"answer": "no", "answer_confidence": "yes", "answer_id": i + 3} for i in range(8)]},
        {"question_id": 2, "image_id": 7, "answer_type": "number", "question_type": "how many",
         "multiple_choice_answer": "2",
         "answers": [{"answer": "2", "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]}]}
    q = write(tmp_path / "q.json", json.dumps(questions))
    a = write(tmp_path / "a.json", json.dumps(anns))
    res = write(tmp_path / "res.json", json.dumps([{"question_id": 1, "answer": "Yes."},
                                                   {"question_id": 2, "answer": "two"}]))
    out = cli("vqa", "--pred", res, "--questions", q, "--annotations", a)
    # question 1: 2 of 10 humans said "yes" -> 0.6; question 2: "two" -> "2" matches all -> 1.0
    assert out["overall"] == pytest.approx(80.0)
    assert out["perAnswerType"] == {"number": pytest.approx(100.0), "yes/no": pytest.approx(60.0)}
    bad = write(tmp_path / "bad.json", json.dumps([{"question_id": 1, "answer": "yes"},
                                                   {"question_id": 99, "answer": "2"}]))
    code, err = cli("vqa", "--pred", bad, "--questions", q, "--annotations", a, ok=False)
    assert code == 2 and "question_id 99" in err and "bad.json" in err
    broken = write(tmp_path / "broken.json", '[{"question_id": 1, "answer": "yes"},\n  oops]')
    code, err = cli("vqa", "--pred", broken, "--questions", q, "--annotations", a, ok=False)
    assert code == 2 and "broken.json: invalid JSON at line 2" in err


def test_retrieval_cli(tmp_path, cli):
    s = np.array([[0.9, 0.1, 0.5], [0.8, 0.3, 0.2], [0.7, 0.6, 0.4]], dtype=np.float32)
    np.save(tmp_path / "scores.npy", s)
    gt = write(tmp_path / "gt.json", json.dumps([0, 1, 2]))
    out = result("retrieval", "--scores", tmp_path / "scores.npy", "--gt", gt)
    assert out["avg_recall@1"] == pytest.approx(1 / 3) and out["mean_recall"] == pytest.approx(7 / 9)
    named = write(tmp_path / "gt_named.json", json.dumps({"images": ["a.jpg", "b.jpg", "c.jpg"],
                                                          "caption_images": ["a.jpg", "b.jpg", "c.jpg"]}))
    assert cli("retrieval", "--scores", tmp_path / "scores.npy", "--gt", named) == out
    wrong = write(tmp_path / "gt_wrong.json", json.dumps({"images": ["a.jpg", "b.jpg", "c.jpg"],
                                                          "caption_images": ["a.jpg", "x.jpg", "c.jpg"]}))
    code, err = cli("retrieval", "--scores", tmp_path / "scores.npy", "--gt", wrong, ok=False)
    assert code == 2 and "caption_images[1]: image 'x.jpg'" in err
    np.save(tmp_path / "flat.npy", np.zeros(3))
    code, err = cli("retrieval", "--scores", tmp_path / "flat.npy", "--gt", gt, ok=False)
    assert code == 2 and "2-D" in err
