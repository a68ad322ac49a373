"""Issue 14: converters and stores under bad input -- nothing lost, nothing silently wrong.

Each test is one fault found by running the CLIs with malformed input: ``--overwrite`` that deleted unrelated
files, outputs replaced without being asked, boxes outside the image stored silently, negative LXMERT ids, a legacy
checkpoint without its word embedding converted anyway, a ``--skip-bad`` conversion that kept nothing, raw
tracebacks for ``/dev/null`` or a directory, a changed feature dimension and a truncated ``.gz`` without a usable
location, and ``unimo.report`` stopping on the demo's own summary file. Every CLI error is one line
``error: <file>[:<line>]: ...`` with exit status 2.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from preprocess import extract_features
from preprocess import features as features_cli
from preprocess.datasets import __main__ as datasets_cli
from preprocess.datasets import convert_snli_ve
from preprocess.datasets.common import DataError
from unimo.reader.datasets import load_examples
from unimo.reader.features import (FeatureFormatError, FeatureStore, FeatureStoreWriter, RegionFeatures,
                                   read_features, write_butd_tsv)


def b64(values, dtype=np.float32) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


def butd_line(image_id: str, boxes, feats, w: int = 100, h: int = 50) -> str:
    boxes, feats = np.asarray(boxes, np.float32), np.asarray(feats, np.float32)
    return "\t".join([image_id, str(w), str(h), str(len(boxes)), b64(boxes), b64(feats)])


GOOD_BOXES = [[0, 0, 10, 20], [5, 5, 100, 50]]
FEATS = [[1, 2, 3], [4, 5, 6]]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    """The CLI's stderr: exactly one line, ``error: ...`` (no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def convert_cli(*args: str) -> int:
    return features_cli.main(["convert", *args, "--no-progress"])


# ------------------------------------------------------------------------------------------ --overwrite
def test_features_convert_overwrite_keeps_unrelated_files(tmp_path, capsys):
    src = write_lines(tmp_path / "in.tsv", [butd_line("1", GOOD_BOXES, FEATS)])
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "sub" / "keep.bin").write_bytes(b"x")
    assert convert_cli("--input", str(src), "--input-format", "butd", "--output", str(out), "--overwrite") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(out) in line and "notes.txt" in line and "sub/" in line and "refusing to overwrite" in line
    assert sorted(os.listdir(out)) == ["notes.txt", "sub"] and (out / "sub" / "keep.bin").read_bytes() == b"x"

    # an existing store (only its own files) is replaced, and a field file the new store lacks goes with it
    store = tmp_path / "store"
    with FeatureStoreWriter(store, 3) as w:
        w.add(RegionFeatures("old", 100, 50, GOOD_BOXES, FEATS, obj_conf=[0.5, 0.5]))
    assert (store / "obj_conf.bin").exists()
    assert convert_cli("--input", str(src), "--input-format", "butd", "--output", str(store)) == 2
    assert "already exists" in one_error_line(capsys.readouterr().err)
    assert convert_cli("--input", str(src), "--input-format", "butd", "--output", str(store), "--overwrite") == 0
    assert FeatureStore.open(store).image_ids() == ["1"] and not (store / "obj_conf.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_extract_features_overwrite_keeps_unrelated_files(tmp_path, capsys):
    import cv2

    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((32, 32, 3), 200, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pdparams").write_bytes(b"precious")
    with pytest.raises(SystemExit) as exc:
        extract_features.main(["--images", str(images), "--output", str(out), "--feature-dim", "8", "--overwrite",
                               "--no-progress"])
    assert exc.value.code == 2
    assert "model.pdparams" in one_error_line(capsys.readouterr().err)
    assert os.listdir(out) == ["model.pdparams"] and (out / "model.pdparams").read_bytes() == b"precious"
    (out / "model.pdparams").unlink()  # an empty folder (or an old store) may be overwritten
    extract_features.main(["--images", str(images), "--output", str(out), "--feature-dim", "8", "--overwrite",
                           "--no-progress"])
    assert FeatureStore.open(out).image_ids() == ["a"]


def snli(pair: str, label: str = "entailment", hyp: str = "A person walks.", image: str = "1") -> str:
    return json.dumps({"gold_label": label, "pairID": pair, "sentence1": "Someone is outside.", "sentence2": hyp,
                       "Flickr30K_ID": image})


def test_datasets_refuse_existing_outputs_without_overwrite(tmp_path, capsys):
    train = write_lines(tmp_path / "snli_ve_train.jsonl", [snli("a"), snli("b")])
    out = tmp_path / "ve"
    args = ["snli-ve", "--input", str(train), "--output", str(out), "--no-progress"]
    assert datasets_cli.main(args) == 0
    capsys.readouterr()
    (out / "notes.txt").write_text("mine")
    before = (out / "ve_train.jsonl").read_bytes()
    write_lines(train, [snli("c")])
    assert datasets_cli.main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "snli-ve_summary.json: exists" in line and "--overwrite" in line
    assert (out / "ve_train.jsonl").read_bytes() == before
    # the library refuses as well (an output file, before anything is written)
    with pytest.raises(FileExistsError, match=r"ve_train\.jsonl: exists"):
        convert_snli_ve([str(train)], str(out), progress=False)
    assert (out / "ve_train.jsonl").read_bytes() == before
    assert datasets_cli.main(args + ["--overwrite"]) == 0
    assert [json.loads(x)["pair_id"] for x in (out / "ve_train.jsonl").read_text().splitlines()] == ["c"]
    assert (out / "notes.txt").read_text() == "mine"  # never touched
    assert sorted(os.listdir(out)) == ["notes.txt", "snli-ve_summary.json", "ve_train.jsonl"]


# ------------------------------------------------------------------------------------------ boxes and ids
@pytest.mark.parametrize("box, what", [([0, 0, 120, 20], "lies outside the 100x50 image"),
                                       ([-5, 0, 10, 20], "lies outside the 100x50 image"),
                                       ([0, 0, 10, 60], "lies outside the 100x50 image"),
                                       ([30, 0, 10, 20], "is inverted (x2 < x1)"),
                                       ([0, 30, 10, 20], "is inverted (y2 < y1)")])
def test_boxes_outside_the_image_are_errors_or_clipped(tmp_path, capsys, box, what):
    src = write_lines(tmp_path / "in.tsv", [butd_line("1", GOOD_BOXES, FEATS),
                                            butd_line("2", [GOOD_BOXES[0], box], FEATS)])
    with pytest.raises(FeatureFormatError) as info:
        list(read_features(src, "butd"))
    assert info.value.reason == "bad_box" and info.value.line == 2 and info.value.field == "boxes"
    assert str(info.value).startswith(f"{src}:2: field 'boxes': box 1 ") and what in str(info.value)
    assert "--clip-boxes" in str(info.value)

    out = tmp_path / "store"
    assert convert_cli("--input", str(src), "--input-format", "butd", "--output", str(out)) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {src}:2: field 'boxes': box 1")
    assert not out.exists()
    assert convert_cli("--input", str(src), "--input-format", "butd", "--output", str(out), "--clip-boxes") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clipped_boxes"] == 1 and summary["clipped_images"] == 1 and summary["images"] == 2
    got = FeatureStore.open(out)["2"].boxes
    np.testing.assert_array_equal(got[0], GOOD_BOXES[0])  # the good box is untouched
    x1, y1, x2, y2 = got[1]
    assert 0 <= x1 <= x2 <= 100 and 0 <= y1 <= y2 <= 50
    np.testing.assert_array_equal(FeatureStore.open(out)["1"].boxes, GOOD_BOXES)


def test_store_writer_and_official_loader_reject_boxes_outside(tmp_path):
    with pytest.raises(ValueError, match=r"image 'x': field 'boxes': box 0 \[0, 0, 11, 5\] lies outside the 10x10"):
        with FeatureStoreWriter(tmp_path / "s", 1) as w:
            w.add(RegionFeatures("x", 10, 10, [[0, 0, 11, 5]], [[1.0]]))
    assert not (tmp_path / "s").exists()
    # the official SNLI-VE ';' lines read by the fine-tuning loader
    line = ";".join(["7", "7#0", "0", "0 5 2", "0 0 0", "0 1 2", "", "100", "50", "1", b64([[0, 0, 10, 80]]),
                     b64([[1, 2]]), "", ""])
    path = write_lines(tmp_path / "ve.txt", [line])
    with pytest.raises(DataError, match=r"ve\.txt:1: field 'boxes': box 0 \[0, 0, 10, 80\] lies outside"):
        load_examples(str(path), "ve", check_features=True, fmt="official_ve")


def test_uniter_norm_bb_outside_the_unit_square(tmp_path):
    d = tmp_path / "npz"
    d.mkdir()
    np.savez(d / "a.npz", features=np.ones((1, 3), np.float32), norm_bb=np.array([[0.1, 0.2, 1.4, 0.5, 1.3, 0.3]]))
    with pytest.raises(FeatureFormatError, match=r"a\.npz: key 'norm_bb': box 0 .* lies outside the 1x1 image"):
        list(read_features(d, "uniter-npz"))
    summary: dict = {}
    (rec,) = read_features(d, "uniter-npz", clip_boxes=True, summary=summary)
    np.testing.assert_allclose(rec.boxes, [[0.1, 0.2, 1.0, 0.5]], rtol=1e-6)
    assert summary["clipped_boxes"] == 1


def test_negative_lxmert_object_ids_are_errors(tmp_path):
    def lx(obj_ids, attr_ids=(1, 2)):
        return "\t".join(["9", "50", "100", b64(obj_ids, np.int64), b64([0.9, 0.4]), b64(attr_ids, np.int64),
                          b64([0.5, 0.6]), "2", b64(GOOD_BOXES), b64(FEATS)])

    path = write_lines(tmp_path / "lx.tsv", [lx([3, -1])])
    with pytest.raises(FeatureFormatError, match=r"lx\.tsv:1: field 'objects_id': negative class id -1"):
        list(read_features(path, "lxmert"))
    path = write_lines(tmp_path / "lx2.tsv", [lx([3, 4], [-7, 2])])
    with pytest.raises(FeatureFormatError, match=r"lx2\.tsv:1: field 'attrs_id': negative class id -7"):
        list(read_features(path, "lxmert"))
    path = write_lines(tmp_path / "lx3.tsv", [lx([3, 2 ** 40])])  # would wrap in the store's int32 field
    with pytest.raises(FeatureFormatError, match=r"field 'objects_id': class id 1099511627776"):
        list(read_features(path, "lxmert"))
    (rec,) = read_features(write_lines(tmp_path / "ok.tsv", [lx([0, 1599])]), "lxmert")
    assert rec.obj_id.tolist() == [0, 1599]


# ------------------------------------------------------------------------------------------ legacy checkpoints
from test_convert import TINY, _subset, backbone_table, head_tables, tiny_legacy  # noqa: E402,F401


def test_legacy_checkpoint_without_a_backbone_tensor_is_refused(tiny_legacy, tmp_path, capsys):  # noqa: F811
    from unimo.convert import ConversionError, convert_legacy
    from unimo.convert.__main__ import main as convert_main

    src, _ = tiny_legacy
    names = [n for n in list(backbone_table(64, 2)) + list(head_tables(64)["generation"]) if n != "word_embedding"]
    d = _subset(src, tmp_path / "no_word_emb", names)
    with pytest.raises(ConversionError) as info:
        convert_legacy(str(d), TINY, str(tmp_path / "out"), task="generation")
    assert "lacks backbone tensor word_embedding (text encoder" in str(info.value)
    assert "--allow-missing" in str(info.value) and not (tmp_path / "out").exists()
    assert convert_main(["legacy", "--input", str(d), "--config", TINY, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot convert") and "word_embedding" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    # --allow-missing opts out: initialised, listed, and named in a note
    assert convert_main(["legacy", "--input", str(d), "--config", TINY, "--output", str(tmp_path / "out"),
                         "--allow-missing", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "unimo.word_embedding.weight" in {m["key"] for m in report["missing"]}
    assert any("--allow-missing" in n and "word_embedding" in n for n in report["notes"])

    # heads may be fresh (listed) without any flag: a backbone-only checkpoint as a VE model
    only_backbone = _subset(src, tmp_path / "backbone", list(backbone_table(64, 2)))
    ve = convert_legacy(str(only_backbone), TINY, str(tmp_path / "ve"), task="ve", dry_run=True)
    assert ve.missing and all(not m["key"].startswith("unimo.") for m in ve.missing)  # only the VE head
    # image input layers: a text-only checkpoint is fine for text tasks, refused for an image task
    text_only = _subset(src, tmp_path / "text_only",
                        [n for n in backbone_table(64, 2) if not n.startswith(("image_", "v_pre"))])
    convert_legacy(str(text_only), TINY, str(tmp_path / "t"), task="classification", num_labels=3, dry_run=True)
    with pytest.raises(ConversionError, match=r"lacks backbone tensor image_emb\.w_0 \(image input layer; --task ve "
                                              r"reads images"):
        convert_legacy(str(text_only), TINY, str(tmp_path / "t2"), task="ve", dry_run=True)
    partial = _subset(src, tmp_path / "partial", [n for n in backbone_table(64, 2) if n != "image_loc.b_0"])
    with pytest.raises(ConversionError, match=r"lacks backbone tensor image_loc\.b_0 \(image input layer; the "
                                              r"other image input layers are there"):
        convert_legacy(str(partial), TINY, str(tmp_path / "t3"), task="generation", dry_run=True)


# ------------------------------------------------------------------------------------------ --skip-bad limits
def test_skip_bad_that_keeps_nothing_fails(tmp_path, capsys):
    bad = write_lines(tmp_path / "snli_ve_train.jsonl", [snli("a", label="-"), "{broken", snli("c", hyp="")])
    out = tmp_path / "ve"
    assert datasets_cli.main(["snli-ve", "--input", str(bad), "--output", str(out), "--skip-bad",
                              "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {bad}: no example of split 'train' is left: every record was skipped (3:")
    assert not out.exists()
    with pytest.raises(DataError, match="no example of split 'dev' is left: the input holds no record"):
        convert_snli_ve([str(write_lines(tmp_path / "snli_ve_dev.jsonl", []))], str(out), progress=False)


def test_skip_bad_warns_above_the_stated_fraction(tmp_path, capsys):
    from preprocess.datasets.common import MAX_SKIP_FRACTION

    assert MAX_SKIP_FRACTION == 0.10
    assert "10%" in datasets_cli.build_parser()._subparsers._group_actions[0].choices["snli-ve"].format_help()
    many = [snli(str(i)) for i in range(9)] + [snli("bad", label="-")]  # 1 of 10 skipped: at the limit
    s = convert_snli_ve([str(write_lines(tmp_path / "snli_ve_train.jsonl", many))], str(tmp_path / "a"),
                        progress=False, skip_bad=True)
    assert "warning" not in capsys.readouterr().err and "warnings" not in s
    more = many + [snli("bad2", label="-")]  # 2 of 11 skipped
    s = convert_snli_ve([str(write_lines(tmp_path / "snli_ve_dev.jsonl", more))], str(tmp_path / "b"),
                        progress=False, skip_bad=True)
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "snli_ve_dev.jsonl: 2 of 11 records of split 'dev' skipped (18.2%, " \
                                            "more than 10%): bad_label: 2" in err
    assert s["warnings"] and s["outputs"] == {"ve_dev.jsonl": 9}


# ------------------------------------------------------------------------------------------ one clear line
def test_dev_null_and_directories_are_one_line_errors(tmp_path, capsys):
    for fmt in ("uniter-npz", "butd"):
        assert convert_cli("--input", "/dev/null", "--input-format", fmt, "--output", str(tmp_path / "s")) == 2
        assert one_error_line(capsys.readouterr().err) == ("error: /dev/null: not a regular file or a directory "
                                                           "(give a feature dump file, a .gz file or a directory of "
                                                           "them)")
    with pytest.raises(SystemExit) as exc:
        extract_features.main(["--images", "/dev/null", "--output", str(tmp_path / "s"), "--no-progress"])
    assert exc.value.code == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: /dev/null: not a directory (--images")
    out = str(tmp_path / "o")
    assert datasets_cli.main(["vqa-v2", "--input", "/dev/null", "--output", out, "--no-progress"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: /dev/null: not a directory (--input of vqa-v2")
    assert datasets_cli.main(["snli-ve", "--input", "/dev/null", "--output", out, "--no-progress"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: /dev/null: not a regular file or a directory")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert datasets_cli.main(["coco-karpathy", "--input", str(folder), "--output", out, "--no-progress"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {folder}: is a directory, expected a file")
    assert not os.path.exists(out)


def test_feature_dimension_change_names_file_and_line(tmp_path, capsys):
    src = write_lines(tmp_path / "in.tsv", [butd_line("1", GOOD_BOXES, FEATS),
                                            butd_line("2", GOOD_BOXES[:1], [[1, 2, 3]]),
                                            butd_line("3", GOOD_BOXES, [[1, 2], [3, 4]])])
    assert convert_cli("--input", str(src), "--input-format", "butd", "--output", str(tmp_path / "s")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {src}:3: field 'features': 2 values per box, but the first image with boxes "
                           f"({src}:1) has 3")
    summary: dict = {}
    assert [r.image_id for r in read_features(src, "butd", skip_bad=True, summary=summary)] == ["1", "2"]
    assert summary["skipped"] == {"dimension": 1}
    # a store rejection (optional fields unlike the first image's) names the file and line too
    lines = ["\t".join([f"{i}.jpg", "8", "8", "1", b64([[0, 0, 4, 4]]), b64([[1, 2]]), probs])
             for i, probs in enumerate([b64([[0.2, 0.8]]), ""])]
    src2 = write_lines(tmp_path / "img.tsv", lines)
    assert convert_cli("--input", str(src2), "--input-format", "unimo-retrieval", "--output",
                       str(tmp_path / "s2")) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {src2}:2: image '1.jpg': lacks 'cls_prob'")


def test_truncated_gzip_names_the_line_reached(tmp_path, capsys):
    recs = [RegionFeatures(str(i), 100, 50, GOOD_BOXES, np.full((2, 700), i, np.float32)) for i in range(6)]
    full = tmp_path / "full.tsv.gz"
    write_butd_tsv(full, recs)
    data = full.read_bytes()
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with gzip.open(full, "rb") as f:
        total = f.read()
    with pytest.raises(FeatureFormatError) as info:
        got = []
        for rec in read_features(cut, "butd"):
            got.append(rec.image_id)
    reached = info.value.line
    assert 1 < reached <= 6 and got == [str(i) for i in range(reached - 1)]  # every complete line came through
    assert str(info.value).startswith(f"{cut}:{reached}: truncated gzip data: the compressed stream ends")
    assert "after line 0" not in str(info.value) and total.count(b"\n") == 6
    assert convert_cli("--input", str(cut), "--input-format", "butd", "--output", str(tmp_path / "s")) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {cut}:{reached}: truncated gzip data")
    assert not (tmp_path / "s").exists()
    # corrupt (not truncated) data and a .gz name on a plain file
    bad = tmp_path / "bad.tsv.gz"
    bad.write_bytes(data[:40] + bytes(b ^ 0x55 for b in data[40:80]) + data[80:])
    with pytest.raises(FeatureFormatError, match=r"bad\.tsv\.gz:\d+: corrupt gzip data"):
        list(read_features(bad, "butd"))
    plain = write_lines(tmp_path / "plain.tsv.gz", [butd_line("1", GOOD_BOXES, FEATS)])
    with pytest.raises(FeatureFormatError, match=r"plain\.tsv\.gz:1: not gzip data"):
        list(read_features(plain, "butd"))
    # multi-member gzip files (cat a.gz b.gz) are read whole
    multi = tmp_path / "multi.tsv.gz"
    multi.write_bytes(data + gzip.compress((butd_line("99", GOOD_BOXES, np.ones((2, 700))) + "\n").encode()))
    assert [r.image_id for r in read_features(multi, "butd")] == [str(i) for i in range(6)] + ["99"]


# ------------------------------------------------------------------------------------------ the report
def test_report_skips_the_demo_summary_and_pretraining_results(tmp_path, capsys):
    from unimo import report as R
    from unimo.utils import demo_summary

    demo = tmp_path / "demo_output"
    (demo / "ve").mkdir(parents=True)
    (demo / "ve" / "results.json").write_text(json.dumps({
        "task": "visual_entailment", "dataset": "snli-ve", "key_metric": "acc", "metrics": {"test": {"acc": 0.8}},
        "config": {"model_config": "model_files/config/unimo_tiny_en.json"}}))
    (demo / "pretrain").mkdir()
    (demo / "pretrain" / "results.json").write_text(json.dumps({"final_checkpoint": "x", "streams": ["text"],
                                                                "config": {}, "losses": {}}))
    demo_summary.main(["--output", str(demo), "--world", str(tmp_path / "no_world")])
    capsys.readouterr()
    assert json.loads((demo / "results.json").read_text())["kind"] == R.DEMO_SUMMARY_KIND
    md = tmp_path / "report.md"
    assert R.main(["--results", str(demo), "--output", str(md)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["runs"] == 1 and printed["not_runs"] == 2 and printed["skipped"] == 0
    text = md.read_text()
    assert "2 results.json that are not fine-tuning runs skipped" in text
    assert f"{demo / 'results.json'}: the demo's summary table" in text and "a pre-training run" in text
    # an older demo summary without the marker is recognised by its keys; a broken task run is still an error
    (demo / "results.json").write_text(json.dumps({"ve": {"split": "test", "acc": 0.8}}))
    assert R.main(["--results", str(demo), "--output", str(md)]) == 0
    assert json.loads(capsys.readouterr().out)["not_runs"] == 2
    (demo / "results.json").write_text(json.dumps({"metrics": {}, "config": {}}))
    assert R.main(["--results", str(demo), "--output", str(md)]) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: {demo / 'results.json'}: task: missing or not a " \
                                                      f"string: None"


def test_demo_world_overwrite_replaces_only_a_demo_world(tmp_path):
    from preprocess.demo_world import build_demo_world

    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="is not a demo world"):
        build_demo_world(other, num_scenes=10, image_size=64, feature_dim=8, overwrite=True, progress=False)
    assert os.listdir(other) == ["thesis.tex"]
    world = tmp_path / "world"
    build_demo_world(world, num_scenes=10, image_size=64, feature_dim=8, progress=False)
    (world / "images" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files a demo world does not have \(images/notes\.txt\)"):
        build_demo_world(world, num_scenes=10, image_size=64, feature_dim=8, overwrite=True, progress=False)
    assert (world / "images" / "notes.txt").read_text() == "mine" and (world / "manifest.json").exists()
    (world / "images" / "notes.txt").unlink()
    build_demo_world(world, num_scenes=10, image_size=64, feature_dim=8, seed=1, overwrite=True, progress=False)
    assert json.loads((world / "manifest.json").read_text())["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
