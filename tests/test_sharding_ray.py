"""Issue 13: ``--distributor ray`` submits the shards as Ray tasks (a local two-CPU Ray here).

Ray is optional at runtime (``pip install ray``: 79 MB wheel, pip check clean with the project's pins) and a test
requirement (requirements-test.txt), so this runs in CI; the plain-shard tests in test_sharding.py cover the same
outputs without it."""
from __future__ import annotations

import json
from pathlib import Path

import ray  # noqa: F401  (a test requirement: the distributor under test)

from preprocess import features as features_cli
from preprocess.rewrite.__main__ import main as rewrite_main
from test_sharding import CAPTIONS, records_in_image, same_files
from unimo.reader.features import FeatureStore, write_butd_tsv


def test_ray_runs_every_shard_and_the_merges_equal_the_unsharded_outputs(tmp_path, shared_data: Path, capsys):
    dump = tmp_path / "d.tsv"
    write_butd_tsv(dump, records_in_image(20, seed=7))
    assert features_cli.main(["convert", "--input", str(dump), "--input-format", "butd", "--output",
                              str(tmp_path / "one"), "--no-progress"]) == 0
    capsys.readouterr()
    assert features_cli.main(["convert", "--input", str(dump), "--input-format", "butd", "--output",
                              str(tmp_path / "s"), "--num-shards", "3", "--distributor", "ray"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["distributor"] == "ray" and [r["shard"] for r in summary["shards"]] == [0, 1, 2]
    assert summary["images"] == 20
    assert FeatureStore.open(tmp_path / "s").image_ids() == FeatureStore.open(tmp_path / "one").image_ids()
    assert features_cli.main(["merge", "--input", str(tmp_path / "s"), "--output", str(tmp_path / "m"),
                              "--no-progress"]) == 0
    same_files(tmp_path / "m", tmp_path / "one")

    args = ["--vocab-dir", str(shared_data / "vg_1600_400_20"), "--negatives", "3", "--retrieval-negatives", "2",
            "--positives", "0", "--no-progress"]
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "one.jsonl"), *args]) == 0
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "r"), "--num-shards", "2",
                         "--distributor", "ray", *args]) == 0
    assert rewrite_main(["merge", "--input", str(tmp_path / "r"), "--output", str(tmp_path / "m.jsonl")]) == 0
    assert (tmp_path / "m.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    # a bad shard comes back as the CLI's one error line and exit status 2
    capsys.readouterr()
    assert features_cli.main(["convert", "--input", str(dump), "--input-format", "butd", "--output",
                              str(tmp_path / "s"), "--num-shards", "3", "--distributor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --distributor ray: shard 0: ") and "already exists" in err[-1]
    assert features_cli.main(["convert", "--input", str(dump), "--input-format", "butd", "--output",
                              str(tmp_path / "t"), "--num-shards", "3", "--shard", "1", "--distributor", "ray"]) == 2
