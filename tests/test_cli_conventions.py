"""One convention for every command line (issue 14): option names (feature store --features, model folder --model,
tool input --input, output --output, --json [PATH]) with the old spellings kept as aliases; every option's help
shows its default; --help prints no Paddle warning; exit 0 ok, 2 bad input/usage (one ``error:`` line), 1 internal
error."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "model_files" / "config" / "unimo_tiny_en.json")

# module -> (sub-commands whose --help is checked too)
CLIS = {
    "unimo.predict": ["caption", "vqa", "ve", "retrieve"],
    "unimo.convert": ["legacy", "export-legacy", "roberta"],
    "unimo.eval": ["glue", "rouge", "caption", "qg", "coqa", "vqa", "retrieval"],
    "unimo.pretrain.eval_retrieval": [],
    "unimo.sweep": [],
    "preprocess.datasets": ["coco-karpathy", "vqa-v2", "snli-ve", "glue", "coqa"],
    "preprocess.demo_world": [],
    "preprocess.extract_features": [],
    "preprocess.features": ["convert", "merge", "manifest", "inspect"],
    "preprocess.rewrite": ["index", "merge"],
    "unimo.report": [],
    "unimo.export": [],
}
PARSERS = {"unimo.predict": "unimo.predict.cli", "unimo.convert": "unimo.convert.__main__",
           "unimo.eval": "unimo.eval.__main__", "unimo.pretrain.eval_retrieval": "unimo.pretrain.eval_retrieval",
           "preprocess.datasets": "preprocess.datasets.__main__", "preprocess.demo_world": "preprocess.demo_world",
           "preprocess.extract_features": "preprocess.extract_features", "preprocess.features": "preprocess.features",
           "preprocess.rewrite": "preprocess.rewrite.__main__", "unimo.report": "unimo.report",
           "unimo.export": "unimo.export"}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run_all(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run the commands side by side (each a fresh interpreter)."""
    procs = [subprocess.Popen([sys.executable, "-m", *c], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    out = []
    for c, p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(c, p.returncode, stdout, stderr))
    return out


def test_help_prints_no_paddle_warning(tmp_path):
    commands = [[m, "--help"] for m in CLIS] + [[m, s, "--help"] for m, subs in CLIS.items() for s in subs]
    for proc in _run_all(commands, tmp_path):
        assert proc.returncode == 0, (proc.args, proc.stderr[-1500:])
        noisy = [ln for ln in proc.stderr.splitlines() if "paddle" in ln.lower() or "warning" in ln.lower()]
        assert noisy == [] and proc.stderr.strip() == "", (proc.args, proc.stderr[-1500:])
        assert "usage: python -m" in proc.stdout, proc.args


def _parsers(module: str) -> list[argparse.ArgumentParser]:
    if module == "unimo.sweep":  # builds its parser inside main(): catch it on the way out
        import unimo.sweep as sweep

        seen: list[argparse.ArgumentParser] = []
        original = argparse.ArgumentParser.parse_known_args

        def grab(self, *a, **k):
            seen.append(self)
            raise SystemExit(0)

        argparse.ArgumentParser.parse_known_args = grab
        try:
            with pytest.raises(SystemExit):
                sweep.main([])
        finally:
            argparse.ArgumentParser.parse_known_args = original
        return seen
    root = importlib.import_module(PARSERS[module]).build_parser()
    out = [root]
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            out += list(dict.fromkeys(action.choices.values()))
    return out


@pytest.mark.parametrize("module", list(CLIS))
def test_every_option_has_help_showing_its_default(module):
    for parser in _parsers(module):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (module, parser.prog, action.option_strings)
            if not action.required:
                assert "default" in formatter._get_help_string(action), (module, parser.prog, action.option_strings)


def test_old_spellings_are_aliases_of_the_new_names():
    from preprocess.demo_world import build_parser as demo_parser
    from unimo.convert.__main__ import build_parser as convert_parser
    from unimo.eval.__main__ import build_parser as eval_parser
    from unimo.pretrain.eval_retrieval import build_parser as retrieval_parser

    old = retrieval_parser().parse_args(["--checkpoint", "M", "--feature-store", "S", "--pairs", "P"])
    new = retrieval_parser().parse_args(["--model", "M", "--features", "S", "--pairs", "P"])
    assert vars(old) == vars(new) and (new.model, new.features) == ("M", "S")
    for sub in ("legacy", "roberta"):
        extra = ["--config", "C"] if sub == "legacy" else []
        old = convert_parser().parse_args([sub, "--src", "I", "--dst", "O", *extra, "--json"])
        new = convert_parser().parse_args([sub, "--input", "I", "--output", "O", *extra, "--json"])
        assert vars(old) == vars(new) and (new.input, new.output, new.json) == ("I", "O", "-")
    assert convert_parser().parse_args(["export-legacy", "--input", "I", "--output", "O", "--json", "r.json"]).json \
        == "r.json"
    assert eval_parser().parse_args(["rouge", "--pred", "p", "--ref", "r", "--out", "f"]).output == "f"
    assert demo_parser().parse_args(["--out", "w"]).output == "w"


def test_an_old_spelling_still_works_end_to_end(tmp_path):
    """``unimo.eval ... --out FILE`` (the old spelling) writes the same JSON as ``--output FILE``."""
    (tmp_path / "p.txt").write_text("1\n0\n1\n1\n")
    (tmp_path / "r.txt").write_text("1\n0\n0\n1\n")
    base = ["unimo.eval", "glue", "--metric", "acc", "--pred", "p.txt", "--ref", "r.txt"]
    old, new = _run_all([base + ["--out", "old.json"], base + ["--output", "new.json"]], tmp_path)
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    result = json.loads((tmp_path / "old.json").read_text())
    assert result == json.loads((tmp_path / "new.json").read_text()) == json.loads(new.stdout)
    assert result["acc"] == pytest.approx(3 / 4)


def test_convert_json_path_and_flag(tmp_path):
    """``--json PATH`` writes the report to PATH (the summary still printed); ``--json`` alone prints the report
    instead of the summary. A dry-run RoBERTa conversion of a tiny HF folder written here."""
    import numpy as np
    from safetensors.numpy import save_file

    hf = tmp_path / "hf"
    hf.mkdir()
    h, layers, vocab, inter = 8, 1, 20, 32
    (hf / "config.json").write_text(json.dumps({
        "model_type": "roberta", "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": 2,
        "intermediate_size": inter, "vocab_size": vocab, "max_position_embeddings": 40, "type_vocab_size": 1,
        "hidden_act": "gelu", "layer_norm_eps": 1e-5, "pad_token_id": 1}))
    rng = np.random.default_rng(0)
    t = {"roberta.embeddings.word_embeddings.weight": (vocab, h),
         "roberta.embeddings.position_embeddings.weight": (40, h),
         "roberta.embeddings.token_type_embeddings.weight": (1, h),
         "roberta.embeddings.LayerNorm.weight": (h,), "roberta.embeddings.LayerNorm.bias": (h,)}
    for i in range(layers):
        p = f"roberta.encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            t[p + n + ".weight"], t[p + n + ".bias"] = (h, h), (h,)
        t[p + "attention.output.LayerNorm.weight"] = t[p + "attention.output.LayerNorm.bias"] = (h,)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = (inter, h), (inter,)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = (h, inter), (h,)
        t[p + "output.LayerNorm.weight"] = t[p + "output.LayerNorm.bias"] = (h,)
    save_file({k: rng.normal(size=s).astype(np.float32) for k, s in t.items()}, str(hf / "model.safetensors"))
    base = ["unimo.convert", "roberta", "--input", "hf", "--config", TINY, "--dry-run"]
    to_file, flag = _run_all([base + ["--output", "o1", "--json", "r.json"], base + ["--output", "o2", "--json"]],
                             tmp_path)
    assert to_file.returncode == 0 and flag.returncode == 0, to_file.stderr[-2000:] + flag.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kind"] == "roberta" and report["dry_run"] is True
    assert json.loads(flag.stdout) == {**report, "dst": "o2"}
    assert to_file.stdout.strip() and not to_file.stdout.lstrip().startswith("{")  # the readable summary


def test_exit_codes_for_a_missing_file_and_bad_input(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{bad\n")
    (tmp_path / "bad.yaml").write_text("task: [\n")
    (tmp_path / "p.txt").write_text("a\nb\n")
    (tmp_path / "r.txt").write_text("a\n")
    (tmp_path / "empty").mkdir()
    missing = str(tmp_path / "nope")
    cases = {
        "predict missing model": ["unimo.predict", "caption", "--model", missing, "--features", missing, "--all",
                                  "--output", "o.jsonl"],
        "predict bad model folder": ["unimo.predict", "caption", "--model", "empty", "--features", "empty", "--all",
                                     "--output", "o.jsonl"],
        "convert missing input": ["unimo.convert", "legacy", "--input", missing, "--config", TINY, "--output", "c"],
        "convert bad config": ["unimo.convert", "legacy", "--input", "empty", "--config", "bad.yaml", "--output",
                               "c"],
        "eval missing file": ["unimo.eval", "glue", "--metric", "acc", "--pred", missing, "--ref", "r.txt"],
        "eval bad input": ["unimo.eval", "glue", "--metric", "acc", "--pred", "p.txt", "--ref", "r.txt"],
        "retrieval missing model": ["unimo.pretrain.eval_retrieval", "--model", missing, "--features", "empty",
                                    "--pairs", "bad.jsonl"],
        "retrieval missing pairs": ["unimo.pretrain.eval_retrieval", "--model", "empty", "--features", "empty",
                                    "--pairs", missing, "--vocab-dir", "empty"],
        "sweep missing config": ["unimo.sweep", "--config", missing],
        "sweep bad config": ["unimo.sweep", "--config", "bad.yaml"],
        "datasets missing input": ["preprocess.datasets", "snli-ve", "--input", missing, "--output", "s"],
        "datasets bad input": ["preprocess.datasets", "snli-ve", "--input", "bad.jsonl", "--output", "s",
                               "--no-progress"],
        "demo_world bad value": ["preprocess.demo_world", "--output", "w", "--num-scenes", "0"],
        "usage error": ["unimo.convert", "legacy", "--input", "empty"],
    }
    for (name, argv), proc in zip(cases.items(), _run_all(list(cases.values()), tmp_path)):
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr, (name, proc.stderr[-1500:])
        errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
        assert len(errors) == 1, (name, proc.stderr[-1500:])
    assert not any((tmp_path / n).exists() for n in ("o.jsonl", "c", "s", "w"))
