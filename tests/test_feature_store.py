"""The canonical feature store (round trips, random access, atomic writes, errors) and the preprocess CLI."""
from __future__ import annotations

import base64
import gc
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from preprocess import features as cli
from unimo.reader.features import (FeatureStore, FeatureStoreWriter, RegionFeatures, write_butd_tsv,
                                   write_unimo_img2txt, write_uniter_npz_dir)


def make_records(n_images=6, dim=16, classes=7, attrs=5, seed=0, with_classes=True) -> list[RegionFeatures]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_images):
        n = [4, 0, 10, 1, 7, 3][i % 6]
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 200, (n, 2))], 1)
        feats = rng.gamma(1.0, 2.0, (n, dim)) * rng.choice([1, -1], (n, dim))
        kwargs = {}
        if with_classes:
            kwargs = dict(cls_prob=rng.dirichlet(np.ones(classes), n), attr_prob=rng.dirichlet(np.ones(attrs), n))
        out.append(RegionFeatures(f"img{i}", 640 + i, 480 - i, boxes, feats, **kwargs))
    return out


def build(path, records, **kwargs) -> FeatureStore:
    with FeatureStoreWriter(path, records[0].feature_dim, **kwargs) as writer:
        for rec in records:
            writer.add(rec)
    return FeatureStore.open(path)


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_round_trip_fp32_exact_random_access(tmp_path):
    recs = make_records()
    store = build(tmp_path / "s", recs)
    assert len(store) == 6 and store.image_ids() == [r.image_id for r in recs]
    assert store.feature_dim == 16 and store.num_classes == 7 and store.dtype == "float32"
    assert set(store.fields) == {"features", "boxes", "cls_prob", "obj_conf", "obj_id", "attr_prob", "attr_id",
                                 "attr_conf"}
    assert store.meta["num_boxes"] == sum(r.num_boxes for r in recs)
    for i in [4, 0, 5, 2, 1, 3, 2]:  # random order, repeated
        rec, got = recs[i], store[recs[i].image_id]
        assert (got.image_id, got.image_w, got.image_h) == (rec.image_id, rec.image_w, rec.image_h)
        np.testing.assert_array_equal(got.features, rec.features)
        np.testing.assert_array_equal(got.boxes, rec.boxes)
        np.testing.assert_array_equal(got.cls_prob, rec.cls_prob)
        np.testing.assert_array_equal(got.attr_prob, rec.attr_prob)
        ids, conf = rec.object_predictions()
        np.testing.assert_array_equal(got.obj_id, ids)
        np.testing.assert_array_equal(got.obj_conf, conf)
        assert got.features.dtype == np.float32 and got.obj_id.dtype == np.int64
        assert store.num_boxes(rec.image_id) == rec.num_boxes
    got = store["img2"]
    got.features += 1  # a writable copy: the store is unchanged
    np.testing.assert_array_equal(store["img2"].features, recs[2].features)
    assert "img3" in store and "img9" not in store and store.get("img9") is None
    assert isinstance(store._arrays["features"], np.memmap)  # mapped, not loaded
    assert leftovers(tmp_path) == []


def test_round_trip_fp16(tmp_path):
    recs = make_records(seed=1)
    store = build(tmp_path / "s16", recs, dtype="float16")
    assert store.dtype == "float16"
    assert os.path.getsize(tmp_path / "s16" / "features.bin") == store.meta["num_boxes"] * 16 * 2
    for rec in recs:
        got = store[rec.image_id]
        assert got.features.dtype == np.float32
        np.testing.assert_allclose(got.features, rec.features, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(got.cls_prob, rec.cls_prob, rtol=1e-3, atol=1e-6)
        np.testing.assert_array_equal(got.boxes, rec.boxes)  # boxes stay float32
    big = RegionFeatures("big", 10, 10, np.zeros((1, 4)), np.full((1, 16), 1e6))
    with pytest.raises(ValueError, match="'big' field 'features' exceeds the float16 range"):
        build(tmp_path / "s16b", [big], dtype="float16")
    assert not (tmp_path / "s16b").exists()


def test_unknown_id_and_int_ids(tmp_path):
    store = build(tmp_path / "s", [RegionFeatures(391895, 10, 10, np.zeros((1, 4)), np.ones((1, 3)))])
    assert store[391895].image_id == "391895" and 391895 in store
    with pytest.raises(KeyError, match=r"image id '12' is not in feature store .*/s"):
        store["12"]


def test_no_class_probs_keeps_predictions(tmp_path):
    recs = make_records()
    store = build(tmp_path / "s", recs, class_probs=False)
    assert "cls_prob" not in store.fields and store.num_classes is None and "obj_conf" in store.fields
    got = store["img0"]
    assert got.cls_prob is None
    np.testing.assert_array_equal(got.obj_id, recs[0].object_predictions()[0])
    assert os.path.getsize(tmp_path / "s" / "features.bin") == store.meta["num_boxes"] * 16 * 4


def test_writer_errors(tmp_path):
    recs = make_records()
    with FeatureStoreWriter(tmp_path / "s", 16) as writer:
        writer.add(recs[0])
        with pytest.raises(ValueError, match="image 'img0': duplicate image id"):
            writer.add(recs[0])
        with pytest.raises(ValueError, match="feature dimension 3, store expects 16"):
            writer.add(RegionFeatures("d", 5, 5, np.zeros((1, 4)), np.ones((1, 3))))
        nan = RegionFeatures("n", 5, 5, np.zeros((1, 4)), np.full((1, 16), np.nan))
        with pytest.raises(ValueError, match="image 'n': field 'features' has NaN/inf"):
            writer.add(nan)
        with pytest.raises(ValueError, match="image 'p': lacks 'cls_prob'"):
            writer.add(RegionFeatures("p", 5, 5, np.zeros((1, 4)), np.ones((1, 16))))
        bad_c = RegionFeatures("c", 5, 5, np.zeros((1, 4)), np.ones((1, 16)), cls_prob=np.full((1, 3), 1 / 3),
                               attr_prob=np.full((1, 5), 0.2))
        with pytest.raises(ValueError, match="'cls_prob' has 3 classes, store expects 7"):
            writer.add(bad_c)
        writer.add(RegionFeatures("empty", 5, 5, np.zeros((0, 4)), np.zeros((0, 0))))  # 0 boxes: exempt
    store = FeatureStore.open(tmp_path / "s")
    assert store.image_ids() == ["img0", "empty"] and store["empty"].num_boxes == 0
    with pytest.raises(FileExistsError, match="already exists"):
        FeatureStoreWriter(tmp_path / "s", 16)
    with pytest.raises(ValueError, match="has no 'cls_prob' but num_classes=1601 was requested"):
        with FeatureStoreWriter(tmp_path / "t", 16, num_classes=1601) as writer:
            writer.add(RegionFeatures("x", 5, 5, np.zeros((1, 4)), np.ones((1, 16))))
    with pytest.raises(ValueError, match="store dtype"):
        FeatureStoreWriter(tmp_path / "u", 16, dtype="int8")
    assert not (tmp_path / "t").exists() and leftovers(tmp_path) == []


def test_atomic_on_exception_drop_and_overwrite(tmp_path):
    recs = make_records()
    with pytest.raises(RuntimeError):
        with FeatureStoreWriter(tmp_path / "s", 16) as writer:
            writer.add(recs[0])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    writer = FeatureStoreWriter(tmp_path / "s", 16)
    writer.add(recs[0])
    assert len(leftovers(tmp_path)) == 1 and not (tmp_path / "s").exists()  # only the temporary directory
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []  # a dropped writer cleans up
    build(tmp_path / "s", recs[:2])
    with FeatureStoreWriter(tmp_path / "s", 16, overwrite=True) as writer:
        for rec in recs[2:]:
            writer.add(rec)
        assert FeatureStore.open(tmp_path / "s").image_ids() == ["img0", "img1"]  # old store intact until close
    assert FeatureStore.open(tmp_path / "s").image_ids() == ["img2", "img3", "img4", "img5"]
    with pytest.raises(RuntimeError):
        with FeatureStoreWriter(tmp_path / "s", 16, overwrite=True) as writer:
            writer.add(recs[0])
            raise RuntimeError("interrupted")
    assert len(FeatureStore.open(tmp_path / "s")) == 4 and leftovers(tmp_path) == []  # failed overwrite: old kept


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="feature store not found"):
        FeatureStore.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="plain: not a feature store"):
        FeatureStore.open(tmp_path / "plain")
    build(tmp_path / "s", make_records())
    with open(tmp_path / "s" / "features.bin", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(ValueError, match=r"features\.bin: 100 bytes, expected \d+ \(store incomplete or corrupt\)"):
        FeatureStore.open(tmp_path / "s")


def test_pickle_reopens(tmp_path):
    store = build(tmp_path / "s", make_records())
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone["img4"].features, store["img4"].features)
    assert len(pickle.dumps(store)) < 500  # only the path travels


# -------------------------------------------------------------------------------------------------- CLI --

def b64(values) -> str:
    return base64.b64encode(np.asarray(values, dtype=np.float32).tobytes()).decode()


def test_cli_convert_skip_bad_and_inspect(tmp_path, capsys, shared_data):
    good = "\t".join(["391895", "640", "480", "2", b64([[0, 0, 10, 20], [5, 5, 15, 25]]), b64([[1, 2, 3], [5, 6, 7]])])
    lines = [good, good.replace("391895", "42", 1), "broken line", good.replace("391895", "7", 1)[:-4]]
    src = tmp_path / "in.tsv"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "store"
    assert cli.main(["convert", "--input", str(src), "--input-format", "butd", "--output", str(out),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: {src}:3: 1 fields, expected 6" in err
    assert not out.exists() and leftovers(tmp_path) == []
    assert cli.main(["convert", "--input", str(src), "--input-format", "butd", "--output", str(out), "--skip-bad",
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2 and summary["boxes"] == 4 and summary["feature_dim"] == 3
    assert summary["skipped"] == {"field_count": 1, "dimension": 1} and summary["skipped_total"] == 2
    assert cli.main(["inspect", str(out), "--image-id", "391895"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["image_w"], info["image_h"], info["num_boxes"]) == (640, 480, 2)
    assert info["boxes"] == [[0, 0, 10, 20], [5, 5, 15, 25]]
    assert info["features"]["mean"] == pytest.approx(4.0) and info["features"]["min"] == 1.0
    assert info["features"]["max"] == 7.0 and info["features"]["std"] == pytest.approx(np.std([1, 2, 3, 5, 6, 7]))
    assert info["has_class_probs"] is False and info["top_classes"] == []
    assert cli.main(["inspect", str(out), "--image-id", "999"]) == 2
    assert f"image id '999' is not in feature store {out}" in capsys.readouterr().err
    assert cli.main(["convert", "--input", str(src), "--input-format", "butd", "--output", str(out), "--skip-bad",
                     "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_convert_img2txt_fp16_top_classes(tmp_path, capsys, shared_data):
    recs = make_records(n_images=3, classes=1601, attrs=401, dim=8)
    src = tmp_path / "cap.txt.gz"
    recs = [RegionFeatures(str(1000 + i), r.image_w, r.image_h, r.boxes, r.features, cls_prob=r.cls_prob,
                           attr_prob=r.attr_prob) for i, r in enumerate(recs)]
    write_unimo_img2txt(src, recs, captions={"1000": [[0, 5, 2], [0, 6, 2]]})
    out = tmp_path / "store"
    result = cli.convert(str(src), "unimo-img2txt", str(out), fp16=True, progress=False)
    assert result["images"] == 3 and result["repeated_lines"] == 1 and result["num_classes"] == 1601
    assert result["dtype"] == "float16"
    vocab = shared_data / "vg_1600_400_20" / "objects_vocab.txt"
    assert cli.main(["inspect", str(out), "--image-id", "1000", "--top-k", "2", "--objects-vocab", str(vocab)]) == 0
    info = json.loads(capsys.readouterr().out)
    ids, conf = recs[0].object_predictions()
    best = np.argsort(-conf, kind="stable")[:2]
    names = [line.split(",")[0] for line in vocab.read_text().splitlines()]
    assert [t["box"] for t in info["top_classes"]] == best.tolist()
    assert [t["class_id"] for t in info["top_classes"]] == ids[best].tolist()
    assert [t["name"] for t in info["top_classes"]] == [names[i] for i in ids[best]]
    assert info["top_classes"][0]["conf"] == pytest.approx(float(conf[best[0]]), rel=1e-3)
    assert names[0] == "yolk"  # obj_id 0 <-> first line of the VG vocabulary (no background)


def test_cli_convert_uniter_and_no_boxes_first(tmp_path):
    recs = make_records(n_images=3, with_classes=False)
    recs = [recs[1]] + recs  # an image without boxes comes first
    recs[0] = RegionFeatures("first-empty", 10, 10, np.zeros((0, 4)), np.zeros((0, 16)))
    write_uniter_npz_dir(tmp_path / "npz", recs)
    result = cli.convert(str(tmp_path / "npz"), "uniter-npz", str(tmp_path / "s"), progress=False)
    assert result["images"] == 4 and result["feature_dim"] == 16
    store = FeatureStore.open(tmp_path / "s")
    assert store["first-empty"].num_boxes == 0 and store["img0"].image_w == 1
    np.testing.assert_allclose(store["img0"].boxes, recs[1].boxes / [640, 480, 640, 480], rtol=1e-6)


def test_cli_module_entry_point(tmp_path, repo_root):
    recs = make_records(n_images=2, with_classes=False)
    write_butd_tsv(tmp_path / "in.tsv", recs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "preprocess.features", "convert", "--input", str(tmp_path / "in.tsv"),
                           "--input-format", "butd", "--output", str(tmp_path / "s"), "--fp16"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["images"] == 2 and result["dtype"] == "float16"
    check = subprocess.run([sys.executable, "-c", "import sys, preprocess.features, unimo.reader.features; "
                            "print(sorted(m for m in ('paddle', 'unimo.model.modeling') if m in sys.modules))"],
                           cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "[]"  # the converter never loads paddle or the model


def test_cli_skip_bad_counts_store_rejections(tmp_path, capsys):
    boxes, feats = b64([[0, 0, 4, 4]]), b64([[1, 2]])
    lines = ["\t".join(["a.jpg", "8", "8", "1", boxes, feats, b64([[0.2, 0.8]])]),
             "\t".join(["b.jpg", "8", "8", "1", boxes, feats, ""]),  # no probs, unlike the first image
             "\t".join(["c.jpg", "8", "8", "1", boxes, feats, b64([[0.6, 0.4]])])]
    src = tmp_path / "img.tsv"
    src.write_text("\n".join(lines) + "\n")
    args = ["convert", "--input", str(src), "--input-format", "unimo-retrieval", "--output", str(tmp_path / "s"),
            "--no-progress"]
    assert cli.main(args) == 2
    assert "image 'b.jpg': lacks 'cls_prob'" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert cli.main(args + ["--skip-bad"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2 and summary["images_read"] == 3 and summary["skipped"] == {"store_rejected": 1}
    assert FeatureStore.open(tmp_path / "s").image_ids() == ["a.jpg", "c.jpg"]
    assert cli.main(args + ["--no-class-probs", "--overwrite"]) == 2  # b.jpg still lacks the confidences
    assert "lacks 'obj_conf'" in capsys.readouterr().err
