"""Issue 14's conventions on the sharding CLIs of issue 13 (preprocess.features, preprocess.extract_features,
preprocess.rewrite and their sub-commands): --help without Paddle output, every option's default shown, the old
spellings still accepted, exit status 2 with one error line for bad input."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from preprocess import extract_features
from preprocess import features as features_cli
from preprocess.rewrite import __main__ as rewrite_cli

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["preprocess.features", s] for s in ("convert", "merge", "manifest", "inspect")] + [
    ["preprocess.extract_features"], ["preprocess.rewrite"], ["preprocess.rewrite", "merge"],
    ["preprocess.rewrite", "index"]]


def _parsers() -> list[argparse.ArgumentParser]:
    main = features_cli.build_parser()
    subs = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction))
    return [*subs.choices.values(), extract_features.build_parser(), rewrite_cli.build_parser(),
            rewrite_cli.build_merge_parser(), rewrite_cli.build_index_parser()]


def test_help_prints_nothing_on_stderr_and_imports_no_paddle(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-X", "importtime", "-m", *c, "--help"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in COMMANDS]
    for c, p in zip(COMMANDS, procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "usage:" in out, c
        imported = [line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")]
        assert "paddle" not in imported and "ray" not in imported, c
        assert not [line for line in err.splitlines() if not line.startswith("import time:")], (c, err[-500:])


def test_every_option_has_help_showing_its_default():
    for parser in _parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (parser.prog, action.option_strings)
            if not action.required:
                assert "default" in formatter._get_help_string(action), (parser.prog, action.option_strings)


def test_old_spellings_are_aliases():
    def dest(parser: argparse.ArgumentParser, option: str) -> str:
        return next(a.dest for a in parser._actions if option in a.option_strings)

    ef = extract_features.build_parser()
    assert dest(ef, "--images") == dest(ef, "--input") == "images"
    assert dest(ef, "--summary") == dest(ef, "--json") == "summary"
    rw = rewrite_cli.build_parser()
    assert dest(rw, "--pairs") == dest(rw, "--input") == "pairs"
    a = rw.parse_args(["--pairs", "p.jsonl", "--output", "o"])
    b = rw.parse_args(["--input", "p.jsonl", "--output", "o"])
    assert vars(a) == vars(b)


def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    calls = [
        lambda: features_cli.main(["merge", "--input", missing, "--output", str(tmp_path / "m")]),
        lambda: features_cli.main(["inspect", "--features", missing]),
        lambda: rewrite_cli.main(["merge", "--input", str(tmp_path), "--output", str(tmp_path / "m.jsonl")]),
        lambda: rewrite_cli.main(["--output", str(tmp_path / "o.jsonl")]),  # neither --input nor --index
        lambda: rewrite_cli.main(["--index", missing, "--output", str(tmp_path / "o"), "--num-shards", "2",
                                  "--shard", "0", "--positives", "0", "--negatives", "0"]),
    ]
    for call in calls:
        capsys.readouterr()
        assert call() == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    try:
        extract_features.main(["--input", missing, "--output", str(tmp_path / "s"), "--num-shards", "2"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--num-shards and --shard go together" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == []  # no output, no temporary file left behind
