"""Feature dump formats (hand-built lines in the real layouts) and UNIMO's region post-processing."""
from __future__ import annotations

import base64
import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from unimo.reader.features import (FeatureFormatError, RegionFeatures, WRITERS, read_features, region_inputs,
                                   select_regions, write_butd_tsv, write_lxmert_tsv, write_unimo_img2txt,
                                   write_unimo_retrieval_tsv, write_unimo_ve, write_uniter_npz_dir)


def b64(values, dtype=np.float32) -> str:
    """Encode exactly as the dump scripts do: base64 of the raw little-endian array bytes."""
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


BOXES = [[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 15.0, 25.0]]
FEATS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def butd_line(image_id="391895", w="640", h="480", n="2", boxes=None, feats=None) -> str:
    return "\t".join([image_id, w, h, n, boxes if boxes is not None else b64(BOXES),
                      feats if feats is not None else b64(FEATS)])


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ------------------------------------------------------------------------------------------------ formats --

def test_base64_literal_is_little_endian_float32(tmp_path):
    # 1.0f = 00 00 80 3f, 2.0f = 00 00 00 40 -> "AACAPwAAAEA="; box 0,0,1,1 one region.
    line = "\t".join(["7", "2", "2", "1", b64([0, 0, 1, 1]), "AACAPwAAAEA="])
    (rec,) = read_features(write(tmp_path / "a.tsv", [line]), "butd")
    assert rec.features.tolist() == [[1.0, 2.0]]


def test_butd_hand_built(tmp_path):
    path = write(tmp_path / "butd.tsv", [butd_line(), butd_line("42", "100", "50", "1", b64([[1, 2, 3, 4]]),
                                                              b64([[7, 8, 9]])), ""])
    summary: dict = {}
    recs = list(read_features(path, "butd", summary=summary))
    assert [r.image_id for r in recs] == ["391895", "42"]
    r = recs[0]
    assert (r.image_w, r.image_h, r.num_boxes, r.feature_dim) == (640, 480, 2, 3)
    assert r.boxes.dtype == np.float32 and r.boxes.tolist() == BOXES
    assert r.features.tolist() == FEATS
    assert r.cls_prob is None and r.obj_conf is None and r.object_predictions() is None
    assert recs[1].boxes.tolist() == [[1, 2, 3, 4]] and recs[1].features.tolist() == [[7, 8, 9]]
    assert summary["images"] == 2 and summary["boxes"] == 3 and summary["lines"] == 2 and summary["skipped"] == {}
    r.features[0, 0] = 9.0  # returned arrays are writable


def test_butd_python3_bytes_repr_and_gzip_and_directory(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    # Python-3 ports of generate_tsv.py wrote str(bytes) -> "b'...'"
    write(d / "part0.tsv", [butd_line("1", boxes="b'" + b64(BOXES) + "'")])
    with gzip.open(d / "part1.tsv.gz", "wt") as fh:
        fh.write(butd_line("2") + "\n")
    (d / ".hidden").write_text("garbage")
    recs = list(read_features(d, "butd"))
    assert [r.image_id for r in recs] == ["1", "2"]
    assert recs[0].boxes.tolist() == BOXES and recs[1].features.tolist() == FEATS


def test_lxmert_hand_built(tmp_path):
    line = "\t".join(["COCO_val2014_000000391895", "480", "640", b64([3, 7], np.int64), b64([0.9, 0.4]),
                      b64([1, 2], np.int64), b64([0.5, 0.6]), "2", b64(BOXES), b64(FEATS)])
    path = write(tmp_path / "lx.tsv", [line])
    (r,) = read_features(path, "lxmert")
    assert r.image_id == "COCO_val2014_000000391895"
    assert (r.image_w, r.image_h) == (640, 480)  # LXMERT writes h before w
    assert r.obj_id.tolist() == [3, 7] and r.obj_conf.tolist() == pytest.approx([0.9, 0.4])
    assert r.attr_id.tolist() == [1, 2] and r.attr_conf.tolist() == pytest.approx([0.5, 0.6])
    assert r.boxes.tolist() == BOXES and r.features.tolist() == FEATS
    (r2,) = read_features(path, "lxmert", image_id_regex=r"(\d+)$")
    assert r2.image_id == "391895"


PROBS = [[0.1, 0.2, 0.6, 0.1], [0.5, 0.3, 0.1, 0.1]]  # col 0 = background
ATTR = [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]]


def img2txt_line(image_field="COCO_val_391895", caption="0 100 200 2", feats=None, probs=None) -> str:
    n = len(caption.split())
    return ";".join([image_field, "391895_0", caption, " ".join(["0"] * n), " ".join(map(str, range(n))),
                     " ".join(["0"] * n), "0", "0", "480", "640", "2", b64(BOXES),
                     probs if probs is not None else b64(PROBS), b64(ATTR),
                     feats if feats is not None else b64(FEATS), "0"])


def test_unimo_img2txt_hand_built_and_dedup(tmp_path):
    path = write(tmp_path / "cap.txt", [img2txt_line(), img2txt_line(caption="0 5 6 7 2"),
                                        img2txt_line("COCO_val_000000000042")])
    summary: dict = {}
    recs = list(read_features(path, "unimo-img2txt", summary=summary))
    assert [r.image_id for r in recs] == ["391895", "42"]  # official int(image_id[9:])
    r = recs[0]
    assert (r.image_w, r.image_h) == (640, 480)  # image_h comes first in this layout
    assert r.cls_prob.shape == (2, 4) and r.attr_prob.shape == (2, 3)
    # derived without the background column: row0 fg [0.2,0.6,0.1] -> id 1; row1 fg [0.3,0.1,0.1] -> id 0
    assert r.obj_id.tolist() == [1, 0] and r.obj_conf.tolist() == pytest.approx([0.6, 0.3])
    assert r.attr_id.tolist() == [0, 1] and r.attr_conf.tolist() == pytest.approx([0.2, 0.5])
    assert r.features.tolist() == FEATS
    assert summary["repeated_lines"] == 1 and summary["images"] == 2 and summary["lines"] == 3


def test_unimo_img2txt_repeat_mismatch_and_bad_id(tmp_path):
    path = write(tmp_path / "cap.txt", [img2txt_line(), img2txt_line(feats=b64([[1, 2, 3], [4, 5, 7]]))])
    with pytest.raises(FeatureFormatError, match=r"cap\.txt:2: image '391895' repeats with different"):
        list(read_features(path, "unimo-img2txt"))
    path = write(tmp_path / "bad.txt", [img2txt_line("COCO_val2014_000000391895")])
    with pytest.raises(FeatureFormatError, match=r"bad\.txt:1: field 'image_id': .*int\(image_id\[9:\]\)"):
        list(read_features(path, "unimo-img2txt"))
    (r,) = read_features(path, "unimo-img2txt", image_id_regex=r"_0*(\d+)$")
    assert r.image_id == "391895"


def test_unimo_img2txt_empty_probs_is_none(tmp_path):
    path = write(tmp_path / "cap.txt", [img2txt_line(probs="")])
    (r,) = read_features(path, "unimo-img2txt")
    assert r.cls_prob is None and r.obj_id is None and r.attr_prob is not None


def test_unimo_ve_hand_built(tmp_path):
    fields = ["2248487950", "2248487950#0r1e", "1", "0 10 11 2", "0 0 0 0", "0 1 2 3", "", "640", "480", "2",
              b64(BOXES), b64(FEATS), "", ""]
    line = ";".join(fields)
    path = write(tmp_path / "ve.txt", [line, line.replace("#0r1e", "#0r1n")])
    summary: dict = {}
    (r,) = read_features(path, "unimo-ve", summary=summary)
    assert r.image_id == "2248487950"
    assert (r.image_w, r.image_h) == (640, 480)  # image_w before image_h in the VE layout
    assert r.boxes.tolist() == BOXES and r.features.tolist() == FEATS and r.cls_prob is None
    assert summary["repeated_lines"] == 1


def test_unimo_retrieval_hand_built(tmp_path):
    lines = ["\t".join(["1000092795.jpg", "500", "375", "2", b64(BOXES), b64(FEATS), b64(PROBS)]),
             "\t".join(["10002456.jpg", "500", "333", "2", b64(BOXES), b64(FEATS), ""])]
    recs = list(read_features(write(tmp_path / "img.tsv", lines), "unimo-retrieval"))
    assert [r.image_id for r in recs] == ["1000092795.jpg", "10002456.jpg"]
    assert (recs[0].image_w, recs[0].image_h) == (500, 375)
    np.testing.assert_allclose(recs[0].cls_prob, PROBS)
    assert recs[0].obj_id.tolist() == [1, 0]
    assert recs[1].cls_prob is None and recs[1].features.tolist() == FEATS


def test_uniter_npz_hand_built(tmp_path):
    d = tmp_path / "npz"
    d.mkdir()
    norm_bb = np.array([[0.0, 0.0, 0.5, 0.25, 0.5, 0.25], [0.1, 0.2, 0.3, 0.6, 0.2, 0.4]], np.float32)
    np.savez(d / "coco_val2014_000000391895.npz", features=np.array(FEATS, np.float16), norm_bb=norm_bb,
             conf=np.array([0.9, 0.3], np.float32), soft_labels=np.array(PROBS, np.float32))
    np.savez_compressed(d / "nlvr2_dev-1-0-img0.npz", features=np.array(FEATS, np.float32), norm_bb=norm_bb,
                        img_w=np.array(200), img_h=np.array(100))
    (d / "notes.txt").write_text("not an npz")
    recs = list(read_features(d, "uniter-npz"))
    assert [r.image_id for r in recs] == ["coco_val2014_000000391895", "nlvr2_dev-1-0-img0"]
    a, b = recs
    # no size in UNITER npz: normalised boxes with a 1x1 image
    assert (a.image_w, a.image_h) == (1, 1)
    np.testing.assert_array_equal(a.boxes, norm_bb[:, :4])
    assert a.features.dtype == np.float32 and a.features.tolist() == FEATS
    assert a.obj_conf.tolist() == pytest.approx([0.9, 0.3])  # stored conf wins over the derived one
    assert a.obj_id.tolist() == [1, 0] and a.cls_prob.shape == (2, 4)
    assert (b.image_w, b.image_h) == (200, 100)
    assert b.boxes[1].tolist() == pytest.approx([20.0, 20.0, 60.0, 60.0])
    assert b.obj_conf is None and b.cls_prob is None
    (c, e) = read_features(d, "uniter-npz", image_id_regex=r"^(?:.*_0*(\d+)|(.+))$")
    assert (c.image_id, e.image_id) == ("391895", "nlvr2_dev-1-0-img0")


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_writers_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(0)
    recs = []
    for i, n in enumerate([3, 0, 5]):
        xy = rng.uniform(0, 200, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(1, 50, (n, 2))], 1)
        recs.append(RegionFeatures(str(100 + i), 320, 240, boxes, rng.standard_normal((n, 6)),
                                   cls_prob=rng.dirichlet(np.ones(5), n), attr_prob=rng.dirichlet(np.ones(4), n)))
    out = tmp_path / ("out" if fmt == "uniter-npz" else "out.tsv.gz")
    WRITERS[fmt](out, recs)
    back = list(read_features(out, fmt, feature_dim=6))
    by_id = {r.image_id: r for r in back}
    assert sorted(by_id) == ["100", "101", "102"]
    for rec in recs:
        got = by_id[rec.image_id]
        assert got.num_boxes == rec.num_boxes
        np.testing.assert_array_equal(got.features, rec.features)
        if fmt == "uniter-npz":  # normalised boxes, 1x1 image
            np.testing.assert_allclose(got.boxes * [320, 240, 320, 240], rec.boxes, rtol=1e-6, atol=1e-4)
        else:
            np.testing.assert_array_equal(got.boxes, rec.boxes)
            assert (got.image_w, got.image_h) == (320, 240)
        if fmt in ("lxmert", "unimo-img2txt", "unimo-retrieval", "uniter-npz") and rec.num_boxes:
            ids, conf = rec.object_predictions()
            np.testing.assert_array_equal(got.obj_id, ids)
            np.testing.assert_allclose(got.obj_conf, conf, rtol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_writer_failure_leaves_nothing(tmp_path):
    def records():
        yield RegionFeatures("1", 10, 10, np.zeros((1, 4)), np.ones((1, 2)))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_butd_tsv(tmp_path / "x.tsv", records())
    with pytest.raises(RuntimeError):
        write_uniter_npz_dir(tmp_path / "npz", records())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no object ids"):
        write_lxmert_tsv(tmp_path / "lx.tsv", [RegionFeatures("1", 10, 10, np.zeros((1, 4)), np.ones((1, 2)))])
    assert write_lxmert_tsv(tmp_path / "lx.tsv", [RegionFeatures("1", 10, 10, np.zeros((1, 4)), np.ones((1, 2)))],
                            fill_missing=True) == 1
    with pytest.raises(ValueError, match="not an integer"):
        write_unimo_img2txt(tmp_path / "c.txt", [RegionFeatures("a1", 10, 10, np.zeros((1, 4)), np.ones((1, 2)))])
    assert write_unimo_img2txt(tmp_path / "c.txt", [RegionFeatures("5", 10, 10, np.zeros((1, 4)), np.ones((1, 2)))],
                               captions={"5": [[0, 9, 2], [0, 8, 7, 2]]}) == 2
    assert write_unimo_ve(tmp_path / "v.txt", [RegionFeatures("5", 10, 10, np.zeros((1, 4)), np.ones((1, 2)))]) == 1
    assert write_unimo_retrieval_tsv(tmp_path / "r.tsv", []) == 0


# ------------------------------------------------------------------------------------------- bad input --

BAD_CASES = [
    # (line, reason, message pattern)
    ("hello world", "field_count", r":2: 1 fields, expected 6"),
    (butd_line()[: -3], "bad_base64", r":2: field 'features': bad base64"),
    (butd_line(boxes="!!!!" + b64(BOXES)), "bad_base64", r":2: field 'boxes': bad base64"),
    ("\t".join(butd_line().split("\t")[:5]), "field_count", r":2: 5 fields, expected 6"),
    (butd_line() + "\textra", "field_count", r":2: 7 fields, expected 6"),
    (butd_line(feats=b64([1, 2, 3, 4, 5])), "dimension", r":2: field 'features': 5 values are not divisible by "
                                                         r"num_boxes=2"),
    (butd_line(feats=base64.b64encode(b"abcdef").decode()), "dimension", r"field 'features': 6 bytes"),
    (butd_line(feats=b64([[1, 2, np.nan], [4, 5, 6]])), "non_finite", r":2: field 'features': 1 NaN/inf"),
    (butd_line(boxes=b64([[0, 0, np.inf, 1], [0, 0, 1, 1]])), "non_finite", r"field 'boxes': 1 NaN/inf"),
    (butd_line(n="3"), "num_boxes_mismatch", r":2: field 'boxes': 8 values for num_boxes=3 \(expected 12\)"),
    (butd_line(n="two"), "bad_value", r":2: field 'num_boxes': 'two' is not an integer"),
    (butd_line(w="0"), "bad_value", r":2: field 'image_w': 0 is below the minimum 1"),
    (butd_line(image_id="9"), "duplicate_id",
     r":2: field 'image_id': duplicate image id '9' \(first at .*:1\)"),
]


@pytest.mark.parametrize("line,reason,pattern", BAD_CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_CASES)])
def test_bad_input_names_file_line_field(tmp_path, line, reason, pattern):
    path = write(tmp_path / "x.tsv", [butd_line("9"), line, butd_line("10")])
    with pytest.raises(FeatureFormatError) as info:
        list(read_features(path, "butd"))
    assert str(info.value).startswith(str(path))
    assert re.search(pattern, str(info.value)), str(info.value)
    assert info.value.reason == reason and info.value.line == 2
    summary: dict = {}
    recs = list(read_features(path, "butd", skip_bad=True, summary=summary))
    assert [r.image_id for r in recs] == ["9", "10"]
    assert summary["skipped"] == {reason: 1} and summary["images"] == 2
    assert re.search(pattern, summary["skipped_examples"][0])


def test_expected_dimension(tmp_path):
    path = write(tmp_path / "x.tsv", [butd_line()])
    with pytest.raises(FeatureFormatError, match=r"x\.tsv:1: field 'features': dimension 3 per box, expected "
                                                 r"2048"):
        list(read_features(path, "butd", feature_dim=2048))
    assert len(list(read_features(path, "butd", feature_dim=3))) == 1


def test_skip_bad_counts_by_reason(tmp_path):
    lines = [butd_line("1"), "junk", butd_line("2", feats="@@@"), butd_line("3", feats=b64([[np.nan] * 3] * 2)),
             butd_line("4"), butd_line("5", n="1"), "also\tjunk", butd_line("6")]
    summary: dict = {}
    recs = list(read_features(write(tmp_path / "x.tsv", lines), "butd", skip_bad=True, summary=summary))
    assert [r.image_id for r in recs] == ["1", "4", "6"]
    assert summary["skipped"] == {"field_count": 2, "bad_base64": 1, "non_finite": 1, "num_boxes_mismatch": 1}
    assert summary["lines"] == 8 and summary["images"] == 3 and summary["boxes"] == 6


def test_missing_inputs_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_features(tmp_path / "nope.tsv", "butd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no \*\.npz files"):
        read_features(tmp_path / "empty", "uniter-npz")
    with pytest.raises(ValueError, match="unknown feature format 'tsv'"):
        read_features(tmp_path, "tsv")


def test_other_formats_field_errors(tmp_path):
    lx = "\t".join(["1", "480", "640", b64([3, 7, 9], np.int64), b64([0.9, 0.4]), b64([1, 2], np.int64),
                    b64([0.5, 0.6]), "2", b64(BOXES), b64(FEATS)])
    with pytest.raises(FeatureFormatError, match=r"lx\.tsv:1: field 'objects_id': 3 values for num_boxes=2"):
        list(read_features(write(tmp_path / "lx.tsv", [lx]), "lxmert"))
    with pytest.raises(FeatureFormatError, match=r"c\.txt:1: 15 fields, expected 16"):
        list(read_features(write(tmp_path / "c.txt", [img2txt_line().rsplit(";", 1)[0]]), "unimo-img2txt"))
    with pytest.raises(FeatureFormatError, match=r"c2\.txt:1: field 'probs': 3 values are not divisible"):
        list(read_features(write(tmp_path / "c2.txt", [img2txt_line(probs=b64([1, 2, 3]))]), "unimo-img2txt"))
    bad_ret = "\t".join(["a.jpg", "500", "375", "2", b64(BOXES), b64(FEATS), b64([[0.5, np.inf]] * 2)])
    with pytest.raises(FeatureFormatError, match=r"r\.tsv:1: field 'probs': 2 NaN/inf"):
        list(read_features(write(tmp_path / "r.tsv", [bad_ret]), "unimo-retrieval"))
    d = tmp_path / "npz"
    d.mkdir()
    np.savez(d / "a.npz", features=np.ones((2, 3), np.float32))
    with pytest.raises(FeatureFormatError, match=r"a\.npz: key 'norm_bb': missing"):
        list(read_features(d, "uniter-npz"))
    np.savez(d / "a.npz", features=np.ones((2, 3), np.float32), norm_bb=np.zeros((3, 6), np.float32))
    with pytest.raises(FeatureFormatError, match=r"a\.npz: key 'norm_bb': 3 boxes but 2 feature rows"):
        list(read_features(d, "uniter-npz"))
    (d / "b.npz").write_bytes(b"this is not a zip file")
    summary: dict = {}
    assert list(read_features(d, "uniter-npz", skip_bad=True, summary=summary)) == []
    assert summary["skipped"] == {"num_boxes_mismatch": 1, "bad_npz": 1}
    with pytest.raises(FeatureFormatError, match=r"b\.npz: not a readable \.npz"):
        list(read_features(d / "b.npz", "uniter-npz"))


def test_region_features_shape_checks():
    with pytest.raises(ValueError, match=r"image 'x': boxes must be \[N, 4\]"):
        RegionFeatures("x", 1, 1, np.zeros((2, 3)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"image 'x': features must be \[2, D\]"):
        RegionFeatures("x", 1, 1, np.zeros((2, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"image 'x': obj_conf must be \[2\]"):
        RegionFeatures("x", 1, 1, np.zeros((2, 4)), np.zeros((2, 5)), obj_conf=np.zeros(3))
    assert RegionFeatures(391895, 1, 1, np.zeros((0, 4)), np.zeros((0, 5))).image_id == "391895"


# ---------------------------------------------------------------------------------------- region_inputs --

def _regions(conf=None, cls_prob=None) -> RegionFeatures:
    return RegionFeatures("1", 100, 50, np.array([[10, 5, 60, 30], [0, 0, 100, 50], [20, 10, 30, 20]]),
                          np.array([[1, 2], [3, 4], [5, 9]]), obj_conf=conf, cls_prob=cls_prob)


def test_region_inputs_hand_computed():
    cls = np.array([[0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    out = region_inputs(_regions(cls_prob=cls))
    np.testing.assert_allclose(out.locations, [[0, 0, 1, 1, 1],
                                               [0.1, 0.1, 0.6, 0.6, 50 * 25 / 5000],
                                               [0, 0, 1, 1, 1],
                                               [0.2, 0.2, 0.3, 0.4, 10 * 10 / 5000]], rtol=1e-6)
    np.testing.assert_allclose(out.features, [[3, 5], [1, 2], [3, 4], [5, 9]])
    np.testing.assert_allclose(out.boxes[0], [0, 0, 100, 50])
    np.testing.assert_allclose(out.cls_prob, [[0, 0], [0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    assert out.features.dtype == out.locations.dtype == np.float32 and out.num_regions == 3


def test_region_inputs_threshold_min_max_fixed():
    r = _regions(conf=np.array([0.1, 0.9, 0.5]))
    assert select_regions(r, conf_threshold=0.4, min_boxes=1, max_boxes=10).tolist() == [1, 2]
    assert select_regions(r, conf_threshold=0.5, min_boxes=1, max_boxes=10).tolist() == [1, 2]  # >= like BUTD
    assert select_regions(r, conf_threshold=0.95, min_boxes=2, max_boxes=10).tolist() == [1, 2]  # min clamp
    assert select_regions(r, conf_threshold=0.0, min_boxes=1, max_boxes=1).tolist() == [1]  # max clamp
    assert select_regions(r, conf_threshold=0.0, min_boxes=10, max_boxes=100).tolist() == [1, 2, 0]  # all 3 (<10)
    assert select_regions(r, fixed_boxes=2).tolist() == [1, 2]
    assert select_regions(_regions(), fixed_boxes=2).tolist() == [0, 1]  # no confidence: stored order
    assert select_regions(r).tolist() == [0, 1, 2]  # official default: everything, stored order
    out = region_inputs(r, conf_threshold=0.4, min_boxes=1, max_boxes=10)
    np.testing.assert_allclose(out.features, [[4, 6.5], [3, 4], [5, 9]])  # mean of the kept boxes only
    np.testing.assert_allclose(out.locations[1], [0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="conf_threshold needs detector confidences"):
        region_inputs(_regions(), conf_threshold=0.2)
    with pytest.raises(ValueError, match="min_boxes <= max_boxes"):
        select_regions(r, conf_threshold=0.2, min_boxes=5, max_boxes=2)
    # confidences derived from cls_prob (column 0 = background): fg conf 0.9, 0.5, 0.8
    r2 = _regions(cls_prob=np.array([[0.1, 0.9], [0.5, 0.5], [0.2, 0.8]]))
    assert select_regions(r2, conf_threshold=0.6, min_boxes=0, max_boxes=5).tolist() == [0, 2]


def test_region_inputs_truncation_and_empty():
    out = region_inputs(_regions(), max_img_len=2)
    # the global mean is over all kept boxes, taken before the cut (official order)
    np.testing.assert_allclose(out.features, [[3, 5], [1, 2]])
    assert out.locations.shape == (2, 5) and out.boxes.shape == (2, 4) and out.cls_prob is None
    assert region_inputs(_regions(), max_img_len=1).features.shape == (1, 2)
    empty = region_inputs(RegionFeatures("e", 10, 10, np.zeros((0, 4)), np.zeros((0, 7))))
    assert empty.num_regions == 0 and empty.features.tolist() == [[0.0] * 7]
    assert empty.locations.tolist() == [[0, 0, 1, 1, 1]]
    with pytest.raises(ValueError, match="max_img_len"):
        region_inputs(_regions(), max_img_len=0)


def test_region_inputs_matches_float32_official_arithmetic():
    # Independent re-statement of the official numpy steps on realistic values.
    rng = np.random.default_rng(3)
    n, w, h = 37, 640, 427
    xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 300, (n, 2)).astype(np.float32)], 1)
    feats = rng.gamma(1.0, 1.0, (n, 2048)).astype(np.float32)
    out = region_inputs(RegionFeatures("1", w, h, boxes, feats))
    shape = np.repeat(np.array([[float(w), float(h), float(w), float(h)]]), n, axis=0)
    loc = boxes / shape
    area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]) / (float(w) * float(h))
    expected_loc = np.concatenate([[[0, 0, 1, 1, 1]], np.concatenate([loc, area[:, None]], 1)]).astype(np.float32)
    np.testing.assert_allclose(out.locations, expected_loc, rtol=2e-7, atol=1e-7)
    np.testing.assert_array_equal(out.features[0], np.mean(feats, axis=0))
    np.testing.assert_array_equal(out.features[1:], feats)


def test_standard_library_base64_fallback(tmp_path, monkeypatch):
    # pybase64 is an optional speed-up; the standard library must give the same values and errors.
    from unimo.reader import feature_formats

    monkeypatch.setattr(feature_formats, "_b64", base64)
    lines = [butd_line("1"), butd_line("2", feats="@@@"), butd_line("3", boxes="b'" + b64(BOXES) + "'")]
    summary: dict = {}
    recs = list(read_features(write(tmp_path / "x.tsv", lines), "butd", skip_bad=True, summary=summary))
    assert [r.image_id for r in recs] == ["1", "3"] and recs[1].boxes.tolist() == BOXES
    assert summary["skipped"] == {"bad_base64": 1}
    assert feature_formats.b64_array(np.array([1.0, 2.0])) == "AACAPwAAAEA="
