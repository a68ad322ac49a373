"""Issue 13: sharded extraction, conversion and rewriting; sharded feature stores; merges equal the unsharded run.

Every equivalence test compares against the output of the *unsharded* command (the independent reference: it
never partitions anything), byte for byte on every file."""
from __future__ import annotations

import binascii
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocess import extract_features
from preprocess import features as features_cli
from preprocess.rewrite.__main__ import main as rewrite_main
from test_extract_features import synthetic_image
from test_feature_store import make_records
from unimo.reader.feature_store import ShardedFeatureStore, StoreFormatError, write_manifest
from unimo.reader.features import FeatureStore, FeatureStoreWriter, write_butd_tsv, write_lxmert_tsv
from unimo.utils.errors import UserError
from unimo.utils.shards import check_shard_arguments, find_shards, shard_name, shard_of

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = REPO / "tests" / "data" / "rewrite_captions.jsonl"


def same_files(a: Path, b: Path) -> None:
    """Directories (or files) ``a`` and ``b`` hold the same names with identical bytes."""
    if a.is_file():
        assert a.read_bytes() == b.read_bytes(), f"{a} != {b}"
        return
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def records_in_image(n: int, seed: int = 0, dim: int = 12, with_classes: bool = True):
    """make_records' images with every box inside its image (the converters refuse others)."""
    recs = make_records(n, dim=dim, seed=seed, with_classes=with_classes)
    for r in recs:
        r.boxes = np.clip(r.boxes, 0, [r.image_w - 1, r.image_h - 1] * 2).astype(np.float32)
        r.boxes[:, 2:] = np.maximum(r.boxes[:, 2:], r.boxes[:, :2])
    return recs


# ------------------------------------------------------------------------------------------------ partition

def test_partition_rule_is_crc32_mod_n_and_a_partition():
    ids = [str(i) for i in range(2000)] + ["COCO_val2014_000000391895", "vg/2345", "héllo"]
    for n in (1, 2, 3, 7):
        got = [shard_of(i, n) for i in ids]
        # oracle: binascii's CRC-32 (the same polynomial, another implementation than zlib's entry point)
        assert got == [binascii.crc32(i.encode("utf-8")) % n for i in ids]
        counts = np.bincount(got, minlength=n)
        assert counts.sum() == len(ids) and counts.min() > len(ids) / n * 0.85  # every id once, balanced
    assert shard_of(391895, 4) == shard_of("391895", 4)  # int ids are their decimal strings
    # Not Python's salted hash(): the same shards in processes with different PYTHONHASHSEED
    code = "from unimo.utils.shards import shard_of; print([shard_of(str(i), 5) for i in range(50)])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {str([shard_of(str(i), 5) for i in range(50)]) + "\n"}


def test_shard_arguments_and_names(tmp_path):
    assert check_shard_arguments(None, None) is None
    assert check_shard_arguments(3, 2) == (2, 3)
    for n, i in ((3, 3), (3, -1), (0, 0), (None, 1), (2, None)):
        with pytest.raises(UserError):
            check_shard_arguments(n, i)
    assert shard_name(3, 10, ".jsonl") == "shard-00003-of-00010.jsonl"
    for i in (0, 2):
        (tmp_path / shard_name(i, 3)).mkdir()
    (tmp_path / ".shard-00001-of-00003.tmp-x").mkdir()  # a shard still being written does not count
    with pytest.raises(UserError, match=r"1 of 3 shards missing or unfinished \(shard 1\)"):
        find_shards(tmp_path)
    (tmp_path / shard_name(1, 3)).mkdir()
    assert [p.name for p in find_shards(tmp_path)] == [shard_name(i, 3) for i in range(3)]
    (tmp_path / shard_name(0, 2)).mkdir()
    with pytest.raises(UserError, match="different runs"):
        find_shards(tmp_path)


def test_cli_bad_shard_arguments_exit_2(tmp_path, capsys):
    dump = tmp_path / "d.tsv"
    write_butd_tsv(dump, records_in_image(3))
    assert features_cli.main(["convert", "--input", str(dump), "--input-format", "butd", "--output",
                              str(tmp_path / "o"), "--num-shards", "2", "--shard", "2", "--no-progress"]) == 2
    assert "error: --shard: must be in 0..1" in capsys.readouterr().err
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "r"), "--shard", "0"]) == 2
    assert "--num-shards and --shard go together" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------ convert

def convert(dump: Path, fmt: str, out: Path, *extra: str) -> int:
    return features_cli.main(["convert", "--input", str(dump), "--input-format", fmt, "--output", str(out),
                              "--no-progress", *extra])


@pytest.mark.parametrize("fmt,fp16", [("butd", False), ("lxmert", True)])
def test_convert_shards_merge_to_the_unsharded_store(tmp_path, fmt, fp16):
    recs = records_in_image(40, seed=3)
    r = recs[5]  # an image without boxes
    recs[5] = dataclasses.replace(r, boxes=r.boxes[:0], features=r.features[:0], cls_prob=r.cls_prob[:0],
                                  attr_prob=r.attr_prob[:0])
    dump = tmp_path / "dump.tsv"
    (write_butd_tsv if fmt == "butd" else lambda p, r: write_lxmert_tsv(p, r, fill_missing=True))(dump, recs)
    extra = ["--fp16"] if fp16 else []
    assert convert(dump, fmt, tmp_path / "one", *extra) == 0
    one = FeatureStore.open(tmp_path / "one")
    for n in (1, 2, 3, 18):  # 18 shards of 40 images: 3 are empty (their dimension from the dump's first image)
        for i in reversed(range(n)):  # any order of completion
            assert convert(dump, fmt, tmp_path / f"s{n}", "--num-shards", str(n), "--shard", str(i), *extra) == 0
        sharded = FeatureStore.open(tmp_path / f"s{n}")
        assert isinstance(sharded, ShardedFeatureStore) and len(sharded.shards) == n
        assert sharded.image_ids() == one.image_ids()  # the unsharded order
        assert sharded.meta["num_boxes"] == one.meta["num_boxes"] and sharded.fields == one.fields
        for k, shard in enumerate(sharded.shards):  # each shard holds exactly its images
            assert {shard_of(i, n) for i in shard.image_ids()} <= {k}
        assert n < 18 or sum(len(s) == 0 for s in sharded.shards) == 3
        assert features_cli.main(["merge", "--input", str(tmp_path / f"s{n}"), "--output", str(tmp_path / f"m{n}"),
                                  "--no-progress"]) == 0
        same_files(tmp_path / f"m{n}", tmp_path / "one")


def test_convert_shard_summary_and_refusals(tmp_path, capsys):
    recs = records_in_image(12)
    dump = tmp_path / "d.tsv"
    write_butd_tsv(dump, recs)
    capsys.readouterr()
    assert convert(dump, "butd", tmp_path / "s", "--num-shards", "3", "--shard", "1") == 0
    summary = json.loads(capsys.readouterr().out)
    mine = [r.image_id for r in recs if shard_of(r.image_id, 3) == 1]
    assert summary["images"] == len(mine) and summary["other_shard_lines"] == 12 - len(mine)
    assert (summary["shard"], summary["num_shards"]) == (1, 3)
    assert convert(dump, "butd", tmp_path / "s", "--num-shards", "3", "--shard", "1") == 2  # exists
    assert "pass --overwrite" in capsys.readouterr().err
    with pytest.raises(StoreFormatError, match=r"2 of 3 shards missing or unfinished \(shard 0, 2\)"):
        FeatureStore.open(tmp_path / "s")
    assert convert(dump, "butd", tmp_path / "plain") == 0
    assert convert(dump, "butd", tmp_path / "plain", "--num-shards", "2", "--shard", "0") == 2  # into a store
    assert "is a feature store" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ sharded store

def write_store(path: Path, recs, **kwargs) -> FeatureStore:
    with FeatureStoreWriter(path, recs[0].feature_dim, **kwargs) as w:
        for r in recs:
            w.add(r)
    return FeatureStore.open(path)


def test_sharded_store_random_access_pickle_and_consumers(tmp_path):
    from unimo.pretrain.data import load_image_ids
    from unimo.predict.api import open_features
    from unimo.reader.image_batch import ImageBatcher

    recs = records_in_image(9, seed=1, dim=16)  # with class and attribute distributions
    one = write_store(tmp_path / "one", recs)
    for k in range(3):  # shard writers as extract_features/convert use them
        with FeatureStoreWriter(tmp_path / "s" / shard_name(k, 3), 16, shard=(k, 3)) as w:
            for pos, r in enumerate(recs):
                if shard_of(r.image_id, 3) == k:
                    w.add(r, pos)
    store = FeatureStore.open(tmp_path / "s")
    assert len(store) == 9 and store.image_ids() == one.image_ids() and "img4" in store and "nope" not in store
    assert store.meta["shard_order"] == "unsharded run" and store.num_classes == 7
    for image_id in ["img7", "img0", "img3", "img7"]:
        a, b = store[image_id], one[image_id]
        assert (a.image_w, a.image_h, store.num_boxes(image_id)) == (b.image_w, b.image_h, one.num_boxes(image_id))
        for name in ("features", "boxes", "cls_prob", "attr_prob", "obj_id", "attr_conf"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    with pytest.raises(KeyError, match="nope"):
        store["nope"]
    again = pickle.loads(pickle.dumps(store))  # DataLoader workers reopen by path
    np.testing.assert_array_equal(again["img2"].features, one["img2"].features)
    # the readers of pre-training, fine-tuning (ImageBatcher) and predict take the sharded path as a store
    ids = ["img0", "img2", "img3", "img8"]
    got = ImageBatcher(str(tmp_path / "s"), max_img_len=6).batch(ids, with_cls_prob=True)
    ref = ImageBatcher(str(tmp_path / "one"), max_img_len=6).batch(ids, with_cls_prob=True)
    for x, y in zip(got, ref):
        np.testing.assert_array_equal(x, y)
    assert load_image_ids(store) == one.image_ids()
    opened, owned = open_features(str(tmp_path / "s"), None, 16)
    assert isinstance(opened, ShardedFeatureStore) and not owned and len(opened) == 9
    # a merge of the shard writers' stores is the plain store, byte for byte
    assert features_cli.main(["merge", "--input", str(tmp_path / "s"), "--output", str(tmp_path / "m"),
                              "--no-progress"]) == 0
    same_files(tmp_path / "m", tmp_path / "one")


def test_manifest_lists_stores_in_order_and_refuses_conflicts(tmp_path, capsys):
    recs = records_in_image(6, seed=2, dim=16)
    a = write_store(tmp_path / "a", recs[:4])
    b = write_store(tmp_path / "b", recs[4:])
    assert features_cli.main(["manifest", "--input", str(tmp_path / "b"), str(tmp_path / "a"), "--output",
                              str(tmp_path / "all.json")]) == 0
    assert json.loads((tmp_path / "all.json").read_text())["shards"] == ["b", "a"]  # relative to the manifest
    store = FeatureStore.open(tmp_path / "all.json")
    assert store.image_ids() == b.image_ids() + a.image_ids() and store.meta["shard_order"] == "listed"
    np.testing.assert_array_equal(store["img1"].cls_prob, a["img1"].cls_prob)
    # duplicate id across stores: both named
    write_store(tmp_path / "dup", [recs[0], recs[5]])
    write_manifest(tmp_path / "dup.json", [tmp_path / "a", tmp_path / "dup"])
    with pytest.raises(StoreFormatError, match=r"image id 'img0' is in two shards: .*/a and .*/dup"):
        FeatureStore.open(tmp_path / "dup.json")
    # fields, dimension and dtype must agree
    write_store(tmp_path / "nocls", records_in_image(3, seed=4, dim=16, with_classes=False)[2:])
    write_manifest(tmp_path / "f.json", [tmp_path / "a", tmp_path / "nocls"])
    with pytest.raises(StoreFormatError, match=r"shards disagree on fields: .*/a, .*/nocls"):
        FeatureStore.open(tmp_path / "f.json")
    other_dim = records_in_image(3, dim=8, seed=5)
    for r in other_dim:
        r.image_id = "x" + r.image_id
    write_store(tmp_path / "d8", other_dim)
    write_manifest(tmp_path / "d.json", [tmp_path / "a", tmp_path / "d8"])
    with pytest.raises(StoreFormatError, match=r"feature_dim: 16 in .*/a, 8 in .*/d8"):
        FeatureStore.open(tmp_path / "d.json")
    # the CLI: one error line, exit 2, no manifest written
    capsys.readouterr()
    assert features_cli.main(["manifest", "--input", str(tmp_path / "a"), str(tmp_path / "dup"), "--output",
                              str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "in two shards" in err[0]
    assert not (tmp_path / "bad.json").exists()


# ------------------------------------------------------------------------------------------------ extraction

def test_extraction_shards_merge_to_the_unsharded_store(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(7):
        img, _ = synthetic_image(30 + i, size=(96, 112))
        cv2.imwrite(str(images / f"COCO_val2014_{i + 11:012d}.png"), img)
    common = ["--input", str(images), "--feature-dim", "24", "--image-id-regex", r"(\d+)$", "--no-progress"]
    one = extract_features.main([*common, "--output", str(tmp_path / "one")])
    assert one["images_written"] == 7
    for n in (1, 2, 3):
        written = 0
        for i in range(n):
            summary = extract_features.main([*common, "--output", str(tmp_path / f"s{n}"), "--num-shards", str(n),
                                             "--shard", str(i)])
            written += summary["images_written"]
            assert summary["images_written"] + summary["images_other_shards"] == 7
        assert written == 7
        assert FeatureStore.open(tmp_path / f"s{n}").image_ids() == FeatureStore.open(tmp_path / "one").image_ids()
        assert features_cli.main(["merge", "--input", str(tmp_path / f"s{n}"), "--output", str(tmp_path / f"m{n}"),
                                  "--no-progress"]) == 0
        same_files(tmp_path / f"m{n}", tmp_path / "one")


# ------------------------------------------------------------------------------------------------ rewriting

@pytest.fixture(scope="module")
def rewrite_args(shared_data: Path) -> list[str]:
    return ["--vocab-dir", str(shared_data / "vg_1600_400_20"), "--negatives", "4", "--retrieval-negatives", "3",
            "--positives", "0", "--no-progress"]


def test_rewrite_shards_merge_to_the_unsharded_output(tmp_path, rewrite_args):
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "one.jsonl"), *rewrite_args]) == 0
    assert rewrite_main(["index", "--input", str(CAPTIONS), "--output", str(tmp_path / "idx")]) == 0
    reference = (tmp_path / "one.jsonl").read_bytes()
    assert reference.count(b"\n") == 60
    for n in (1, 2, 3):
        for i in range(n):
            # odd shards load the saved index, even ones rebuild it: both answer against all 60 captions
            source = ["--index", str(tmp_path / "idx")] if i % 2 else ["--input", str(CAPTIONS)]
            assert rewrite_main([*source, "--output", str(tmp_path / f"d{n}"), "--num-shards", str(n), "--shard",
                                 str(i), *rewrite_args]) == 0
            lines = (tmp_path / f"d{n}" / shard_name(i, n, ".jsonl")).read_text().splitlines()
            assert {shard_of(json.loads(x)["image_id"], n) for x in lines} <= {i}
        assert rewrite_main(["merge", "--input", str(tmp_path / f"d{n}"), "--output", str(tmp_path / f"m{n}.jsonl"),
                             "--no-progress"]) == 0
        assert (tmp_path / f"m{n}.jsonl").read_bytes() == reference
        same_files(tmp_path / f"m{n}.jsonl.options.json", tmp_path / "one.jsonl.options.json")
        merged = json.loads((tmp_path / f"m{n}.jsonl.summary.json").read_text())
        one = json.loads((tmp_path / "one.jsonl.summary.json").read_text())
        assert merged["pairs_written"] == 60 and merged["negatives"] == one["negatives"]


def test_rewrite_merge_refuses_incomplete_or_mixed_shards(tmp_path, rewrite_args, capsys):
    for i in range(2):
        assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "d"), "--num-shards", "2",
                             "--shard", str(i), *rewrite_args]) == 0
    shutil.copytree(tmp_path / "d", tmp_path / "e")
    capsys.readouterr()
    # missing shard
    (tmp_path / "d" / shard_name(1, 2, ".jsonl")).unlink()
    assert rewrite_main(["merge", "--input", str(tmp_path / "d"), "--output", str(tmp_path / "m.jsonl")]) == 2
    assert "1 of 2 shards missing or unfinished (shard 1)" in capsys.readouterr().err
    assert not (tmp_path / "m.jsonl").exists()
    # a shard made with other options
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "e"), "--num-shards", "2", "--shard",
                         "1", "--overwrite", *rewrite_args, "--seed", "5"]) == 0
    capsys.readouterr()
    assert rewrite_main(["merge", "--input", str(tmp_path / "e"), "--output", str(tmp_path / "m.jsonl")]) == 2
    assert "made with other options than shard-00000-of-00002.jsonl: seed" in capsys.readouterr().err
    # a saved index made with other options than the run
    assert rewrite_main(["index", "--input", str(CAPTIONS), "--output", str(tmp_path / "idx"), "--tfidf-max-df",
                         "0.5"]) == 0
    capsys.readouterr()
    assert rewrite_main(["--index", str(tmp_path / "idx"), "--output", str(tmp_path / "f"), "--num-shards", "2",
                         "--shard", "0", *rewrite_args]) == 2
    assert "tfidf_max_df 0.5 (this run 1.0)" in capsys.readouterr().err


def test_rewrite_shard_resumed_after_interruption_merges_the_same(tmp_path, rewrite_args):
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "one.jsonl"), *rewrite_args]) == 0
    for i in range(2):
        assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "d"), "--num-shards", "2",
                             "--shard", str(i), *rewrite_args]) == 0
    # shard 1 "stopped" after 7 lines and half of the 8th: only its .partial is left
    out = tmp_path / "d" / shard_name(1, 2, ".jsonl")
    lines = out.read_bytes().splitlines(keepends=True)
    out.with_name(out.name + ".partial").write_bytes(b"".join(lines[:7]) + lines[7][:20])
    out.unlink()
    out.with_name(out.name + ".positions.npy").unlink()
    assert rewrite_main(["merge", "--input", str(tmp_path / "d"), "--output", str(tmp_path / "m.jsonl")]) == 2
    assert rewrite_main(["--input", str(CAPTIONS), "--output", str(tmp_path / "d"), "--num-shards", "2",
                         "--shard", "1", "--resume", *rewrite_args]) == 0
    assert out.read_bytes() == b"".join(lines)
    assert rewrite_main(["merge", "--input", str(tmp_path / "d"), "--output", str(tmp_path / "m.jsonl")]) == 0
    assert (tmp_path / "m.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
