"""Property-based tests (hypothesis) of every feature-format reader and every dataset converter (issue 14).

Valid files are written with the project's own writers (or in the public layouts), then corrupted arbitrarily:
truncation at any byte, a flipped or inserted byte (non-UTF-8 included), a deleted or duplicated field or line, a
field replaced by bad base64, NaN/inf, a huge or negative count, a wrong type. For every corruption the tool either
succeeds with exactly the valid records or fails with an error naming the file; never an unhandled exception, never
a partial output, never a record whose values differ from the input's:

* every record read has the values of the line (or npz file) it names in ``record.location``, byte for byte;
* every line the corruption did not touch is read (with ``--skip-bad``; without it the read fails or reads it),
  unless another line now carries its image id or fixed another feature dimension first;
* the store / converter output exists only on success, equals what was read, and no temporary file is left.

The budget is small and fixed (``derandomize=True``): a few seconds per property.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preprocess.features import convert as convert_features
from unimo.reader.feature_formats import BOX_TOLERANCE, FORMATS, UNIMO_IMG2TXT_ID_PREFIX_LEN
from unimo.reader.features import WRITERS, FeatureFormatError, FeatureStore, RegionFeatures, read_features
from unimo.utils.errors import UserError

PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------------------------- the formats
# field layout per text format: separator, id field, (w, h, n) fields, base64 fields -> (record attribute, dtype)
LAYOUT = {
    "butd": ("\t", 0, (1, 2, 3), {4: ("boxes", "<f4"), 5: ("features", "<f4")}, {}),
    "lxmert": ("\t", 0, (2, 1, 7), {3: ("obj_id", "<i8"), 4: ("obj_conf", "<f4"), 5: ("attr_id", "<i8"),
                                    6: ("attr_conf", "<f4"), 8: ("boxes", "<f4"), 9: ("features", "<f4")}, {}),
    "unimo-img2txt": (";", 0, (9, 8, 10), {11: ("boxes", "<f4"), 14: ("features", "<f4")},
                      {12: "cls_prob", 13: "attr_prob"}),
    "unimo-ve": (";", 0, (7, 8, 9), {10: ("boxes", "<f4"), 11: ("features", "<f4")}, {}),
    "unimo-retrieval": ("\t", 0, (1, 2, 3), {4: ("boxes", "<f4"), 5: ("features", "<f4")}, {6: "cls_prob"}),
}
TEXT_FORMATS = tuple(LAYOUT)
assert set(TEXT_FORMATS) | {"uniter-npz"} == set(FORMATS)

TOKENS = [b"", b" ", b"-1", b"0", b"-0", b"2.5", b"1e400", b"nan", b"inf", b"-inf", b"99999999999999999999999",
          b"3" * 5000, b"x", b"\xff\xfe", b"\x00", b"!!!!", b"AAAA", b"AAA", b"b'AAAAAAAA'", b"=", b"\xe2\x82\xac",
          b"\xef\xbb\xbf1", b"\xd9\xa3", b"\xc2\xb2", b"1_0", b"+2", b" 2 ", b"0x10"]
SPECIAL = [np.nan, np.inf, -np.inf, 3.4e38, -1.0, 1e30, 0.0, 250.0, -0.5]  # (boxes: also outside the image)


def records(seed: int, n_images: int, dim: int = 3) -> list[RegionFeatures]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_images):
        n = int(rng.integers(0, 4))
        w, h = int(rng.integers(8, 200)), int(rng.integers(8, 200))
        xy = rng.uniform(0, 0.6, (n, 2)) * [w, h]
        boxes = np.concatenate([xy, xy + rng.uniform(0.01, 0.4, (n, 2)) * [w, h]], 1)
        out.append(RegionFeatures(str(100 + i), w, h, boxes, rng.standard_normal((n, dim)),
                                  cls_prob=rng.dirichlet(np.ones(5), n), attr_prob=rng.dirichlet(np.ones(4), n)))
    return out


def write_valid(fmt: str, path: Path, recs: list[RegionFeatures]) -> None:
    if fmt == "unimo-img2txt":  # image fields repeat on every caption line of an image
        WRITERS[fmt](path, recs, captions={recs[0].image_id: [[0, 5, 2], [0, 6, 7, 2]]})
    elif fmt == "unimo-ve":
        WRITERS[fmt](path, recs, hypotheses={recs[0].image_id: [([0, 5, 2], 1), ([0, 9, 2], 2)]})
    else:
        WRITERS[fmt](path, recs)


def corrupt_text(data: bytes, sep: bytes, draw, float_fields: tuple[int, ...] = ()) -> bytes:
    """One arbitrary corruption of a line-oriented file (``float_fields``: base64 float32 fields, which get NaN /
    inf / huge / negative values more often)."""
    lines = data.split(b"\n")
    op = draw(st.sampled_from(["truncate", "flip", "insert", "field", "field", "field", "line", "nan", "nan"]))
    if op == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    if op == "flip" and data:
        p = draw(st.integers(0, len(data) - 1))
        return data[:p] + bytes([data[p] ^ draw(st.integers(1, 255))]) + data[p + 1:]
    if op == "insert":
        p = draw(st.integers(0, len(data)))
        return data[:p] + draw(st.sampled_from([b"\xff", b"\x00", b"\t", b";", b"\n", b"\r", b" ", b"=", b"A"])) + \
            data[p:]
    k = draw(st.integers(0, max(len(lines) - 2, 0)))
    if op == "line":
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "blank"]))
        j = draw(st.integers(0, max(len(lines) - 2, 0)))
        if action == "delete":
            del lines[k]
        elif action == "duplicate":
            lines.insert(j, lines[k])
        elif action == "swap":
            lines[k], lines[j] = lines[j], lines[k]
        else:
            lines[k] = b""
        return b"\n".join(lines)
    fields = lines[k].split(sep)
    i = draw(st.integers(0, max(len(fields) - 1, 0)))
    if op == "nan" and float_fields and len(fields) > max(float_fields):
        i = draw(st.sampled_from(float_fields))
    if op == "nan":  # a finite-looking base64 field of the same size holding NaN/inf/huge values
        try:
            raw = base64.b64decode(fields[i], validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        arr = np.frombuffer(raw[: len(raw) // 4 * 4], "<f4").copy()
        if arr.size:
            arr[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from(SPECIAL))
            fields[i] = base64.b64encode(arr.tobytes())
    else:
        action = draw(st.sampled_from(["delete", "duplicate", "replace", "replace"]))
        if action == "delete":
            del fields[i]
        elif action == "duplicate":
            fields.insert(i, fields[i])
        else:
            fields[i] = draw(st.sampled_from(TOKENS))
    lines[k] = sep.join(fields)
    return b"\n".join(lines)


# --------------------------------------------------------------------------------------------- the oracle
def _b64(field: bytes) -> bytes:
    s = field.strip()
    if len(s) >= 3 and s[:1] == b"b" and s[1:2] in (b"'", b'"') and s[-1:] == s[1:2]:
        s = s[2:-1]
    return base64.b64decode(s, validate=True)


def _int(field: bytes) -> int:
    s = field.decode("utf-8").strip()
    try:
        return int(s)
    except ValueError:
        return int(float(s))


def _image_id(fmt: str, field: bytes) -> str:
    raw = field.decode("utf-8").strip()
    return (raw[UNIMO_IMG2TXT_ID_PREFIX_LEN:].lstrip("0") or "0") if fmt == "unimo-img2txt" else raw  # int(id[9:])


def _fits(boxes: np.ndarray, w: float, h: float) -> np.ndarray:
    b = boxes.astype(np.float64)
    tw, th = BOX_TOLERANCE * w, BOX_TOLERANCE * h
    return ((b[:, [0, 2]] >= -tw).all(1) & (b[:, [0, 2]] <= w + tw).all(1) & (b[:, [1, 3]] >= -th).all(1)
            & (b[:, [1, 3]] <= h + th).all(1) & (b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1]))


def assert_record_is_its_line(fmt: str, rec: RegionFeatures, line: bytes, clip: bool) -> None:
    """The record's values are exactly the values written on its line."""
    sep, id_i, (wi, hi, ni), b64_fields, prob_fields = LAYOUT[fmt]
    fields = line.rstrip(b"\r\n").split(sep.encode())
    assert rec.image_id == _image_id(fmt, fields[id_i])
    assert (rec.image_w, rec.image_h, rec.num_boxes) == (_int(fields[wi]), _int(fields[hi]), _int(fields[ni]))
    for i, (attr, dtype) in b64_fields.items():
        value = getattr(rec, attr)
        written = _b64(fields[i])
        if attr == "boxes":
            orig = np.frombuffer(written, dtype).reshape(-1, 4)
            fits = _fits(orig, rec.image_w, rec.image_h)
            np.testing.assert_array_equal(value[fits], orig[fits])
            assert clip or fits.all()
            assert _fits(value, rec.image_w, rec.image_h).all()
        else:
            assert np.ascontiguousarray(value, dtype).tobytes() == written, attr
    for i, attr in prob_fields.items():
        value = getattr(rec, attr)
        if fields[i].strip() and rec.num_boxes:
            assert np.ascontiguousarray(value, "<f4").tobytes() == _b64(fields[i]), attr
        else:
            assert value is None
    assert np.isfinite(rec.features).all() and np.isfinite(rec.boxes).all()


def read_all(fmt: str, path: Path, **kwargs) -> tuple[list[RegionFeatures], FeatureFormatError | None, dict]:
    """Every record read, and the error that ended the read (a FeatureFormatError naming the file) or None."""
    got, summary = [], {}
    try:
        for rec in read_features(path, fmt, summary=summary, **kwargs):
            got.append(rec)
    except FeatureFormatError as err:
        assert str(err).startswith(str(path)), str(err)
        return got, err, summary
    return got, None, summary


def check_store(fmt: str, src: Path, out: Path, read: list[RegionFeatures], read_error, skip_bad: bool,
                clip: bool) -> None:
    """The converter's store: written only on success, equal to what was read, nothing left over."""
    try:
        convert_features(str(src), fmt, str(out), skip_bad=skip_bad, clip_boxes=clip, progress=False)
    except (FeatureFormatError, UserError) as err:
        assert str(src) in str(err), str(err)
        assert not out.exists()
    else:
        assert read_error is None
        store = FeatureStore.open(out)
        by_id = {r.image_id: r for r in read}
        assert set(store.image_ids()) <= set(by_id) and (skip_bad or len(store) == len(read))
        for image_id in store.image_ids():
            got, want = store[image_id], by_id[image_id]
            assert (got.image_w, got.image_h, got.num_boxes) == (want.image_w, want.image_h, want.num_boxes)
            if not want.num_boxes:
                continue  # no values (an empty [0, D] array either way)
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.features, want.features)
            if want.cls_prob is not None and "cls_prob" in store.fields:
                np.testing.assert_array_equal(got.cls_prob, want.cls_prob)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
@PROPERTY
@given(seed=st.integers(0, 2 ** 16), n_images=st.integers(1, 4), skip_bad=st.booleans(), clip=st.booleans(),
       gz=st.booleans(), data=st.data())
def test_text_reader_under_corruption(fmt, seed, n_images, skip_bad, clip, gz, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        valid = tmp / "valid.txt"
        write_valid(fmt, valid, records(seed, n_images))
        original = valid.read_bytes()
        sep = LAYOUT[fmt][0].encode()
        floats = tuple(i for i, (_, dtype) in LAYOUT[fmt][3].items() if dtype == "<f4") + tuple(LAYOUT[fmt][4])
        corrupted = corrupt_text(original, sep, data.draw, floats)
        path = tmp / ("dump.txt.gz" if gz else "dump.txt")
        path.write_bytes(gzip.compress(corrupted) if gz else corrupted)
        got, error, summary = read_all(fmt, path, skip_bad=skip_bad, clip_boxes=clip)
        lines = corrupted.split(b"\n")
        for rec in got:
            assert rec.location[0] == str(path)
            assert_record_is_its_line(fmt, rec, lines[rec.location[1] - 1], clip)
        if error is None or skip_bad:
            # every untouched line is read, unless another line took its id or fixed another dimension first
            read_ids = {r.image_id for r in got}
            dims = [r.feature_dim for r in got if r.num_boxes]
            id_i = LAYOUT[fmt][1]
            for line in set(original.split(b"\n")) - {b""}:
                if line not in lines or error is not None and lines.index(line) + 1 >= error.line:
                    continue  # touched, or after the line the read stopped at (a truncated .gz)
                rec_id = _image_id(fmt, line.split(sep)[id_i])
                n = _int(line.split(sep)[LAYOUT[fmt][2][2]])
                assert rec_id in read_ids or (n and dims and dims[0] != 3), (rec_id, summary)
        check_store(fmt, path, tmp / "store", got, error, skip_bad, clip)


@PROPERTY
@given(seed=st.integers(0, 2 ** 16), skip_bad=st.booleans(), data=st.data())
def test_gzip_corruption_never_reaches_the_store(seed, skip_bad, data):
    """A truncated or damaged .gz: the store holds exactly the original records, or the conversion fails naming
    the file (the line reached); zlib's CRC-32 / size check catches damage within a gzip member."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "dump.tsv.gz"
        recs = records(seed, 4)
        WRITERS["butd"](path, recs)
        raw = path.read_bytes()
        if data.draw(st.booleans()):
            raw = raw[:data.draw(st.integers(0, len(raw)))]
        else:
            p = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:p] + bytes([raw[p] ^ data.draw(st.integers(1, 255))]) + raw[p + 1:]
        path.write_bytes(raw)
        out = tmp / "store"
        try:
            convert_features(str(path), "butd", str(out), skip_bad=skip_bad, progress=False)
        except (FeatureFormatError, UserError) as err:
            assert str(path) in str(err)
            assert not out.exists()
        else:
            store = FeatureStore.open(out)
            assert store.image_ids() == [r.image_id for r in recs]  # all of them, never a prefix
            for rec in recs:
                np.testing.assert_array_equal(store[rec.image_id].features, rec.features)
                np.testing.assert_array_equal(store[rec.image_id].boxes, rec.boxes)
        assert not [p for p in tmp.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------- UNITER npz
NPZ_MUTATIONS = ["truncate", "flip", "drop_key", "nan", "shape", "dtype", "size", "norm_bb", "conf", "npy"]


def mutate_npz(path: Path, draw) -> None:
    op = draw(st.sampled_from(NPZ_MUTATIONS))
    raw = path.read_bytes()
    if op == "truncate":
        path.write_bytes(raw[:draw(st.integers(0, len(raw)))])
        return
    if op == "flip":
        p = draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:p] + bytes([raw[p] ^ draw(st.integers(1, 255))]) + raw[p + 1:])
        return
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = draw(st.sampled_from(sorted(arrays)))
    if op == "drop_key":
        del arrays[key]
    elif op == "nan" and arrays[key].size:
        a = arrays[key].astype(np.float32)
        a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(SPECIAL))
        arrays[key] = a
    elif op == "shape":
        arrays[key] = arrays[key].reshape(-1) if draw(st.booleans()) else arrays[key][..., :1]
    elif op == "dtype":
        arrays[key] = draw(st.sampled_from([arrays[key].astype("U8"), arrays[key].astype(np.float16),
                                            arrays[key].astype(np.int64), arrays[key].astype(bool)]))
    elif op == "size":
        value = draw(st.sampled_from([0, -5, 2 ** 40, 1.5, np.nan, [3, 4], 640]))
        arrays["image_w"], arrays["image_h"] = np.array(value), np.array(draw(st.sampled_from([480, 0, -1])))
    elif op == "norm_bb" and "norm_bb" in arrays and arrays["norm_bb"].size:
        a = arrays["norm_bb"].copy()
        a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([1.5, -0.2, 0.0, 1.0, 1e9]))
        arrays["norm_bb"] = a
    elif op == "conf":
        arrays["conf"] = np.zeros(draw(st.integers(0, 5)), np.float32)
    elif op == "npy":
        with open(path, "wb") as fh:
            np.save(fh, arrays.get("features", np.zeros(1)))
        return
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


@PROPERTY
@given(seed=st.integers(0, 2 ** 16), n_images=st.integers(1, 3), skip_bad=st.booleans(), clip=st.booleans(),
       data=st.data())
def test_uniter_npz_reader_under_corruption(seed, n_images, skip_bad, clip, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        d = tmp / "npz"
        recs = records(seed, n_images)
        WRITERS["uniter-npz"](d, recs)
        victim = d / f"{recs[data.draw(st.integers(0, n_images - 1))].image_id}.npz"
        mutate_npz(victim, data.draw)
        got, error, _ = read_all("uniter-npz", d, skip_bad=skip_bad, clip_boxes=clip)
        for rec in got:
            assert rec.location == (str(d / f"{rec.image_id}.npz"), None)
            with np.load(rec.location[0]) as npz:  # the oracle: the arrays of the file the record names
                np.testing.assert_array_equal(rec.features, npz["features"].astype(np.float32))
                scale = np.array([rec.image_w, rec.image_h] * 2, np.float32)
                orig = npz["norm_bb"][:, :4].astype(np.float32) * scale
                fits = _fits(orig, rec.image_w, rec.image_h)
                np.testing.assert_array_equal(rec.boxes[fits], orig[fits])
                assert clip or fits.all()
                if "conf" in npz.files:
                    np.testing.assert_array_equal(rec.obj_conf, npz["conf"].astype(np.float32))
        if error is None or skip_bad:
            untouched = {r.image_id for r in recs if d / f"{r.image_id}.npz" != victim}
            assert untouched <= {r.image_id for r in got} or any(r.feature_dim != 3 for r in got if r.num_boxes)
        check_store("uniter-npz", d, tmp / "store", got, error, skip_bad, clip)


# ============================================================================================ dataset converters
from preprocess.datasets import (convert_coco_karpathy, convert_coqa, convert_flickr30k, convert_glue,  # noqa: E402
                                 convert_seq2seq, convert_snli_ve, convert_vqa_v2, normalize_answer)
from preprocess.datasets.common import DataError, clean_text  # noqa: E402

JSON_SPECIALS = [None, "", " \n ", float("nan"), float("inf"), -1, 0, 10 ** 30, 2.5, [], {}, True, "\ud800", "x",
                 "entailment", "train", 1]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def mutate_json(obj, draw):
    """One structural corruption: a key deleted, a list item duplicated or deleted, a value replaced."""
    paths = [p for p in _paths(obj) if p]
    path = draw(st.sampled_from(paths))
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = draw(st.sampled_from(["delete", "duplicate", "replace", "replace"]))
    if action == "delete":
        del parent[last]
    elif action == "duplicate" and isinstance(parent, list):
        parent.insert(last, json.loads(json.dumps(parent[last])))
    else:
        parent[last] = draw(st.sampled_from(JSON_SPECIALS))
    return path


def corrupt_bytes(data: bytes, draw) -> bytes:
    op = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if op == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    p = draw(st.integers(0, max(len(data) - 1, 0)))
    if op == "flip" and data:
        return data[:p] + bytes([data[p] ^ draw(st.integers(1, 255))]) + data[p + 1:]
    return data[:p] + draw(st.sampled_from([b"\xff", b"\x00", b"\n", b'"', b"\t", b"{"])) + data[p:]


def run_converter(fn, inputs: list[Path], out: Path, **kwargs):
    """(summary, None) on success; (None, error) on an error that names an input file; nothing written then."""
    try:
        return fn(out=out, **kwargs), None
    except (DataError, UserError, FileNotFoundError) as err:
        assert any(str(p) in str(err) for p in inputs), str(err)
        assert not out.exists()
        return None, err
    finally:
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def _str_id(v) -> str | None:
    return str(v).strip() if isinstance(v, (int, str)) and not isinstance(v, bool) else None


DATASET = settings(PROPERTY, max_examples=120)

SNLI_LINES = [{"gold_label": label, "pairID": f"p{i}", "sentence1": f"A person number {i}.",
               "sentence2": f"Hypothesis {i}.", "Flickr30K_ID": str(1000 + i % 2)}
              for i, label in enumerate(["entailment", "neutral", "contradiction", "entailment"])]


@DATASET
@given(skip_bad=st.booleans(), structural=st.booleans(), data=st.data())
def test_snli_ve_converter_under_corruption(skip_bad, structural, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "snli_ve_train.jsonl"
        objs = json.loads(json.dumps(SNLI_LINES))
        touched = set()
        if structural:
            touched.add(mutate_json(objs, data.draw)[0])
            raw = "".join(json.dumps(o) + "\n" for o in objs).encode()
        else:
            raw = corrupt_bytes("".join(json.dumps(o) + "\n" for o in objs).encode(), data.draw)
        src.write_bytes(raw)
        summary, err = run_converter(lambda out, **kw: convert_snli_ve([str(src)], str(out), progress=False, **kw),
                                     [src], tmp / "out", skip_bad=skip_bad)
        if summary is None:
            return
        lines = raw.decode("utf-8", "replace").split("\n")  # the converters split on "\n" only
        by_pair: dict[str, dict] = {}
        for line in lines:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict):
                by_pair.setdefault(_str_id(o.get("pairID")), o)
        for ex in jsonl(tmp / "out" / "ve_train.jsonl"):  # every value is the input's
            o = by_pair[ex["pair_id"]]
            assert ex["image_id"] == _str_id(o["Flickr30K_ID"])
            assert (ex["premise"], ex["hypothesis"], ex["label_name"]) == \
                (o["sentence1"].strip(), o["sentence2"].strip(), o["gold_label"].strip())
            assert ex["label"] == ["entailment", "neutral", "contradiction"].index(ex["label_name"])
        written = {ex["pair_id"] for ex in jsonl(tmp / "out" / "ve_train.jsonl")}
        for i, o in enumerate(SNLI_LINES):  # every untouched line is converted
            if (json.dumps(o) in lines) and i not in touched:
                assert o["pairID"] in written


GLUE_ROWS = [("a fine film .", "1"), ("dull .", "0"), ("very good .", "1"), ("bad acting .", "0")]


@DATASET
@given(skip_bad=st.booleans(), data=st.data())
def test_glue_converter_under_corruption(skip_bad, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "dev.tsv"
        original = ("sentence\tlabel\n" + "".join(f"{a}\t{b}\n" for a, b in GLUE_ROWS)).encode()
        raw = corrupt_text(original, b"\t", data.draw) if data.draw(st.booleans()) else \
            corrupt_bytes(original, data.draw)
        src.write_bytes(raw)
        summary, err = run_converter(lambda out, **kw: convert_glue("sst-2", [str(src)], str(out), progress=False,
                                                                    **kw), [src], tmp / "out", skip_bad=skip_bad)
        if summary is None:
            return
        header, *body = raw.decode("utf-8").split("\n")
        header = header.split("\t")
        rows = [dict(zip(header, line.split("\t"))) for line in body if len(line.split("\t")) == len(header)]
        # a header without the label column is an unlabelled (test-like) file: label null, as documented
        valid = [(r["sentence"].strip(), r["label"].strip() if "label" in r else None) for r in rows]
        got = [(ex["text_a"], ex["label"]) for ex in jsonl(tmp / "out" / "dev.jsonl")]
        assert all(g in valid for g in got)
        lines = raw.decode("utf-8").split("\n")
        if lines and lines[0] == "sentence\tlabel":
            for a, b in GLUE_ROWS:  # untouched rows are converted
                if f"{a}\t{b}" in lines:
                    assert (a, b) in got


def karpathy_doc():
    return {"dataset": "coco", "images": [
        {"filename": f"COCO_val2014_{c:012d}.jpg", "imgid": i, "split": split, "cocoid": c,
         "sentences": [{"raw": f"Caption {c} {j}. ", "tokens": ["caption", str(c), str(j)], "sentid": c * 10 + j,
                        "imgid": i} for j in range(2)]}
        for i, (c, split) in enumerate([(11, "train"), (12, "val"), (13, "test"), (14, "restval")])]}


@DATASET
@given(skip_bad=st.booleans(), structural=st.booleans(), data=st.data())
def test_karpathy_converters_under_corruption(skip_bad, structural, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "dataset_coco.json"
        doc = karpathy_doc()
        touched = None
        if structural:
            path = mutate_json(doc, data.draw)
            touched = path[1] if len(path) > 1 and path[0] == "images" else "all"
            raw = json.dumps(doc).encode()
        else:
            raw = corrupt_bytes(json.dumps(doc).encode(), data.draw)
            touched = "all"
        src.write_bytes(raw)
        summary, err = run_converter(lambda out, **kw: convert_coco_karpathy(str(src), str(out), progress=False, **kw),
                                     [src], tmp / "coco", skip_bad=skip_bad)
        flickr, err2 = run_converter(lambda out, **kw: convert_flickr30k(str(src), str(out), progress=False, **kw),
                                     [src], tmp / "flickr", skip_bad=skip_bad)
        if summary is None or flickr is None:  # (they may differ: flickr takes the ids from the file names)
            return
        images = json.loads(raw)["images"]
        sents = {}
        for img in images:
            if isinstance(img, dict) and isinstance(img.get("sentences"), list):
                for s in img["sentences"]:
                    if isinstance(s, dict) and isinstance(s.get("sentid"), int):
                        sents.setdefault(s["sentid"], (img, s))
        written = set()
        for name in os.listdir(tmp / "coco"):
            if name.endswith(".jsonl"):
                for ex in jsonl(tmp / "coco" / name):
                    img, s = sents[ex["caption_id"]]
                    assert ex["caption"] == clean_text(s["raw"]) and ex["image_id"] == str(img["cocoid"]).strip() \
                        or ex["image_id"] == str(img["cocoid"])
                    assert ex["split"] == ("train" if img["split"] == "restval" else img["split"])
                    written.add(ex["caption_id"])
        for name in os.listdir(tmp / "flickr"):
            if name.endswith(".jsonl"):
                for ex in jsonl(tmp / "flickr" / name):
                    img = next(i for i in images if isinstance(i, dict) and isinstance(i.get("filename"), str)
                               and os.path.splitext(i["filename"])[0] == ex["image_id"])
                    assert all(c in [clean_text(s["raw"]) for s in img["sentences"] if isinstance(s, dict)
                                     and isinstance(s.get("raw"), str)] for c in ex["captions"])
        if touched != "all":
            for i, img in enumerate(karpathy_doc()["images"]):
                if i != touched and img in images and [i2 for i2 in images if i2 == img] == [img]:
                    ids = [x.get("cocoid") for x in images if isinstance(x, dict)]
                    if ids.count(img["cocoid"]) == 1:
                        assert {s["sentid"] for s in img["sentences"]} <= written


def vqa_files():
    qs = {"questions": [{"question_id": q, "image_id": 7 + q % 2, "question": f"What is {q}?"} for q in range(1, 5)]}
    anns = {"annotations": [{"question_id": q, "image_id": 7 + q % 2, "multiple_choice_answer": ["yes", "two", "red",
                                                                                                 "2"][q - 1],
                             "answer_type": "other", "question_type": "what",
                             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                         for k, a in enumerate(["yes", "2", "two", "red"] * 2 + ["no", "No"])]}
                            for q in range(1, 5)]}
    return qs, anns


@DATASET
@given(skip_bad=st.booleans(), which=st.sampled_from(["questions", "annotations"]), structural=st.booleans(),
       data=st.data())
def test_vqa_converter_under_corruption(skip_bad, which, structural, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        qs, anns = vqa_files()
        target = qs if which == "questions" else anns
        if structural:
            mutate_json(target, data.draw)
        qpath, apath = tmp / "q.json", tmp / "a.json"
        qpath.write_text(json.dumps(qs))
        apath.write_text(json.dumps(anns))
        if not structural:
            p = qpath if which == "questions" else apath
            p.write_bytes(corrupt_bytes(p.read_bytes(), data.draw))
        summary, err = run_converter(lambda out, **kw: convert_vqa_v2(str(out), questions={"train": str(qpath)},
                                                                      annotations={"train": str(apath)},
                                                                      progress=False, min_count=1, **kw),
                                     [qpath, apath], tmp / "out", skip_bad=skip_bad)
        if summary is None:
            return
        questions = {_str_id(q.get("question_id")): q for q in json.loads(qpath.read_text())["questions"][::-1]
                     if isinstance(q, dict)}
        annotations = {_str_id(a.get("question_id")): a for a in json.loads(apath.read_text())["annotations"][::-1]
                       if isinstance(a, dict)}
        for ex in jsonl(tmp / "out" / "vqa_train.jsonl"):
            q, a = questions[ex["question_id"]], annotations[ex["question_id"]]
            assert ex["image_id"] == _str_id(q["image_id"]) == _str_id(a["image_id"])
            assert ex["question"] == q["question"].strip()
            assert ex["multiple_choice_answer"] == normalize_answer(a["multiple_choice_answer"])
            given_answers = {normalize_answer(x["answer"]) for x in a["answers"]}
            assert {x["answer"] for x in ex["answers"]} <= given_answers
            assert all(0 < x["score"] <= 1 for x in ex["answers"])
        vocab = json.loads((tmp / "out" / "answer_vocab.json").read_text())
        assert set(vocab) <= {ex["multiple_choice_answer"] for ex in jsonl(tmp / "out" / "vqa_train.jsonl")}


@DATASET
@given(skip_bad=st.booleans(), data=st.data())
def test_seq2seq_parallel_files_under_corruption(skip_bad, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src_lines = [f"source text {i} ." for i in range(5)]
        tgt_lines = [f"target {i}" for i in range(5)]
        src, tgt = tmp / "train.src", tmp / "train.tgt"
        src.write_text("".join(x + "\n" for x in src_lines))
        tgt.write_text("".join(x + "\n" for x in tgt_lines))
        victim = src if data.draw(st.booleans()) else tgt
        victim.write_bytes(corrupt_text(victim.read_bytes(), b" ", data.draw))
        summary, err = run_converter(lambda out, **kw: convert_seq2seq("cnndm", [str(src), str(tgt)], str(out),
                                                                       progress=False, **kw),
                                     [src, tgt], tmp / "out", skip_bad=skip_bad)
        if summary is None:
            return
        s_lines = src.read_bytes().decode("utf-8").split("\n")
        t_lines = tgt.read_bytes().decode("utf-8").split("\n")
        for ex in jsonl(tmp / "out" / "train.jsonl"):
            i = int(ex["id"])
            assert ex["src"] == [s_lines[i].strip()] and ex["tgt"] == t_lines[i].strip()


def squad_doc():
    return {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "Paris is the capital of France.", "qas": [
            {"id": "q1", "question": "What is the capital?", "answers": [{"text": "Paris", "answer_start": 0}],
             "is_impossible": False},
            {"id": "q2", "question": "Which country?", "answers": [{"text": "France", "answer_start": 24}]},
            {"id": "q3", "question": "Unanswerable?", "answers": [], "is_impossible": True}]}]}]}


def coqa_doc():
    return {"version": "1.0", "data": [{"id": f"s{k}", "story": f"Story number {k}.", "questions": [
        {"input_text": f"Q{t} of {k}?", "turn_id": t} for t in (1, 2)], "answers": [
        {"input_text": f"A{t} of {k}", "turn_id": t, "span_text": "x"} for t in (1, 2)]} for k in range(3)]}


@DATASET
@given(skip_bad=st.booleans(), kind=st.sampled_from(["squad-qg", "coqa"]), structural=st.booleans(), data=st.data())
def test_json_document_converters_under_corruption(skip_bad, kind, structural, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        doc = squad_doc() if kind == "squad-qg" else coqa_doc()
        src = tmp / ("train-v2.0.json" if kind == "squad-qg" else "coqa-train-v1.0.json")
        if structural:
            mutate_json(doc, data.draw)
            raw = json.dumps(doc).encode()
        else:
            raw = corrupt_bytes(json.dumps(doc).encode(), data.draw)
        src.write_bytes(raw)
        if kind == "squad-qg":
            fn = lambda out, **kw: convert_seq2seq("squad-qg", [str(src)], str(out), progress=False, **kw)  # noqa
        else:
            fn = lambda out, **kw: convert_coqa([str(src)], str(out), progress=False, **kw)  # noqa
        summary, err = run_converter(fn, [src], tmp / "out", skip_bad=skip_bad)
        if summary is None:
            return
        doc = json.loads(raw)
        rows = jsonl(tmp / "out" / "train.jsonl")
        if kind == "squad-qg":
            qas = {str(qa.get("id")): (para, qa) for art in doc["data"] for para in art["paragraphs"]
                   for qa in para["qas"] if isinstance(qa, dict)}
            for ex in rows:
                para, qa = qas[ex["id"]]
                assert ex["src"] == [para["context"].strip(), qa["answers"][0]["text"].strip()]
                assert ex["tgt"] == qa["question"].strip()
        else:
            stories = {}
            for st_ in doc["data"]:
                if isinstance(st_, dict) and isinstance(st_.get("id"), str):
                    stories.setdefault(st_["id"], st_)
            for ex in rows:
                sid, turn = ex["id"].rsplit("_", 1)
                story = stories[sid]
                t = int(turn)
                assert ex["knowledge"] == story["story"].strip()
                assert ex["tgt"] == story["answers"][t - 1]["input_text"].strip()
                history = [x for k in range(t - 1) for x in (story["questions"][k]["input_text"].strip(),
                                                             story["answers"][k]["input_text"].strip())]
                assert ex["src"] == history + [story["questions"][t - 1]["input_text"].strip()]
