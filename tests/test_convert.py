"""Weight conversion: the legacy LoDTensor format, legacy -> ours -> legacy, name/shape sets, bad inputs.

The legacy directories here are written in the exact binary layout with official names; the expected names,
shapes and our state-dict keys are written out by hand below (independently of ``modeling.OFFICIAL_NAMES``),
so a wrong entry in the model's table fails these tests.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from unimo.model.modeling import read_weights

from unimo.convert import ConversionError, LegacyFormatError, convert_legacy, export_legacy
from unimo.convert import legacy_format as lf
from unimo.convert.names import detect_task

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "model_files" / "config" / "unimo_tiny_en.json")
PY = sys.executable


# ------------------------------------------------------------------------------------------------ hand tables
def backbone_table(H: int, L: int, V: int = 50265, P: int = 514, I: int = 2048) -> dict[str, tuple[str, tuple]]:
    """Official name -> (our key in UnimoModel, shape), from the official static graph (spec section 2)."""
    t = {
        "word_embedding": ("word_embedding.weight", (V, H)),
        "pos_embedding": ("pos_embedding.weight", (P, H)),
        "pre_encoder_layer_norm_scale": ("pre_encoder_layer_norm.weight", (H,)),
        "pre_encoder_layer_norm_bias": ("pre_encoder_layer_norm.bias", (H,)),
        "image_emb.w_0": ("image_emb.weight", (I, H)),
        "image_emb.b_0": ("image_emb.bias", (H,)),
        "image_loc.w_0": ("image_loc.weight", (5, H)),
        "image_loc.b_0": ("image_loc.bias", (H,)),
        "v_pre_encoder_layer_norm_scale": ("v_pre_encoder_layer_norm.weight", (H,)),
        "v_pre_encoder_layer_norm_bias": ("v_pre_encoder_layer_norm.bias", (H,)),
        "pooled_fc_text.w_0": ("pooled_fc_text.weight", (H, H)),
        "pooled_fc_text.b_0": ("pooled_fc_text.bias", (H,)),
        "pooled_fc_image.w_0": ("pooled_fc_image.weight", (H, H)),
        "pooled_fc_image.b_0": ("pooled_fc_image.bias", (H,)),
    }
    for i in range(L):
        p = f"encoder_layer_{i}_"
        for off, ours in (("query", "query_fc"), ("key", "key_fc"), ("value", "value_fc"), ("output", "output_fc")):
            t[f"{p}multi_head_att_{off}_fc.w_0"] = (f"layers.{i}.{ours}.weight", (H, H))
            t[f"{p}multi_head_att_{off}_fc.b_0"] = (f"layers.{i}.{ours}.bias", (H,))
        for off in ("post_att", "post_ffn"):
            t[f"{p}{off}_layer_norm_scale"] = (f"layers.{i}.{off}_layer_norm.weight", (H,))
            t[f"{p}{off}_layer_norm_bias"] = (f"layers.{i}.{off}_layer_norm.bias", (H,))
        t[f"{p}ffn_fc_0.w_0"] = (f"layers.{i}.ffn_fc_0.weight", (H, 4 * H))
        t[f"{p}ffn_fc_0.b_0"] = (f"layers.{i}.ffn_fc_0.bias", (4 * H,))
        t[f"{p}ffn_fc_1.w_0"] = (f"layers.{i}.ffn_fc_1.weight", (4 * H, H))
        t[f"{p}ffn_fc_1.b_0"] = (f"layers.{i}.ffn_fc_1.bias", (H,))
    return t


def head_tables(H: int, V: int = 50265) -> dict[str, dict[str, tuple[str, tuple]]]:
    return {
        "generation": {"mask_lm_trans_fc.w_0": ("lm_head.mask_lm_trans_fc.weight", (H, H)),
                       "mask_lm_trans_fc.b_0": ("lm_head.mask_lm_trans_fc.bias", (H,)),
                       "mask_lm_trans_layer_norm_scale": ("lm_head.mask_lm_trans_layer_norm.weight", (H,)),
                       "mask_lm_trans_layer_norm_bias": ("lm_head.mask_lm_trans_layer_norm.bias", (H,)),
                       "mask_lm_out_fc.b_0": ("lm_head.mask_lm_out_fc_bias", (V,))},
        "classification": {"cls_out_3_w": ("cls_out.weight", (H, 3)), "cls_out_3_b": ("cls_out.bias", (3,))},
        "regression": {"cls_out_1_w": ("cls_out.weight", (H, 1)), "cls_out_1_b": ("cls_out.bias", (1,))},
        "retrieval": {"match_fc.w_0": ("match_fc.weight", (H, 1)), "match_fc.b_0": ("match_fc.bias", (1,))},
        "ve": {"cls_out_w_0": ("cls_out_0.weight", (H, 2048)), "cls_out_b_0": ("cls_out_0.bias", (2048,)),
               "cls_out_w_1": ("cls_out_1.weight", (2048, 3)), "cls_out_b_1": ("cls_out_1.bias", (3,))},
        "vqa": {"vqa_fc_0.w_0": ("vqa_fc_0.weight", (H, 2 * H)), "vqa_fc_0.b_0": ("vqa_fc_0.bias", (2 * H,)),
                "vqa_layer_norm_scale": ("vqa_layer_norm.weight", (2 * H,)),
                "vqa_layer_norm_bias": ("vqa_layer_norm.bias", (2 * H,)),
                "vqa_fc_1.w_0": ("vqa_fc_1.weight", (2 * H, 5)), "vqa_fc_1.b_0": ("vqa_fc_1.bias", (5,))},
        "backbone": {},
    }


OPTIMIZER_FILES = {  # name -> the ignore pattern the report must quote
    "word_embedding_moment1_0": "*_moment1_0",
    "encoder_layer_0_ffn_fc_0.w_0_moment2_0": "*_moment2_0",
    "word_embedding_beta1_pow_acc_0": "*_beta1_pow_acc_0",
    "word_embedding_beta2_pow_acc_0": "*_beta2_pow_acc_0",
    "@LR_DECAY_COUNTER@": "@LR_DECAY_COUNTER@",
    "learning_rate_0": "learning_rate_*",
    "scheduled_learning_rate": "scheduled_learning_rate*",
    "duplicated_trigram_blocking_delta_score_out": "duplicated_trigram_blocking_*",
}
TASK_MODEL = {"backbone": ("UnimoModel", {}), "generation": ("UnimoForGeneration", {"label_smoothing": 0.0}),
              "classification": ("UnimoForSequenceClassification", {"num_labels": 3}),
              "regression": ("UnimoForSequenceClassification", {"num_labels": 1}),
              "ve": ("UnimoForVisualEntailment", {"num_labels": 3, "hidden": 2048}),
              "retrieval": ("UnimoForRetrieval", {"margin": 0.2, "scale": 1.0, "negative_images": 10,
                                                   "negative_captions": 10}),
              "vqa": ("UnimoForVQA", {"num_answers": 5})}


def _value(rng: np.random.Generator, name: str, shape: tuple) -> np.ndarray:
    if name.endswith("_scale"):  # layer-norm gains near 1 (a zero or random-sign gain would hide mistakes less well)
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    return (0.05 * rng.standard_normal(shape)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_legacy(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Every backbone, image, pooler, LM-head and task-head variable of the tiny config + optimizer state."""
    d = tmp_path_factory.mktemp("legacy") / "unimo_tiny"
    d.mkdir()
    rng = np.random.default_rng(1234)
    arrays = {}
    tables = {**backbone_table(64, 2)}
    for head in head_tables(64).values():
        tables.update(head)
    for name, (_, shape) in tables.items():
        arrays[name] = _value(rng, name, shape)
        lf.write_tensor(str(d / name), arrays[name])
    for name in OPTIMIZER_FILES:
        value = np.array([7], np.int64) if name == "@LR_DECAY_COUNTER@" else np.ones((2, 3), np.float32)
        lf.write_tensor(str(d / name), value)
    return d, arrays


def _subset(src: Path, dst: Path, names) -> Path:
    dst.mkdir()
    for name in names:
        os.symlink(src / name, dst / name)
    return dst


def _inputs(task: str):
    import paddle

    rng = np.random.default_rng(7)
    ids = paddle.to_tensor(np.array([[0, 100, 2003, 31414, 2], [0, 4, 5, 2, 1]], np.int64))
    text_mask = paddle.to_tensor(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], np.float32))
    if task in ("ve", "retrieval", "vqa"):
        feats = paddle.to_tensor(rng.standard_normal((2, 3, 2048)).astype(np.float32))
        locs = paddle.to_tensor(rng.uniform(0, 1, (2, 3, 5)).astype(np.float32))
        mask = paddle.concat([paddle.ones([2, 3]), text_mask], axis=1)
        return {"input_ids": ids, "image_features": feats, "image_locations": locs,
                "attention_mask": mask}
    return {"input_ids": ids, "attention_mask": text_mask}


def _outputs(model, task: str) -> list[np.ndarray]:
    import paddle

    model.eval()
    with paddle.no_grad():
        out = model(**_inputs(task))
    if task == "backbone":
        return [out.numpy()]
    if task == "generation":
        return [out.sequence_output.numpy(), out.logits.numpy()]
    return [(out.scores if task == "retrieval" else out.logits).numpy()]


# ------------------------------------------------------------------------------------------------ file format
def test_writer_bytes_by_hand(tmp_path):
    path = str(tmp_path / "t")
    a = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, 1e-3]], np.float32)
    lf.write_tensor(path, a)
    raw = open(path, "rb").read()
    # version 0, lod_level 0, tensor version 0, desc length 6, desc = 08 05 (FP32) 10 02 10 03 (dims 2, 3)
    assert raw[:26] == bytes(4) + bytes(8) + bytes(4) + struct.pack("<i", 6) + bytes([8, 5, 0x10, 2, 0x10, 3])
    assert raw[26:] == a.tobytes() and len(raw) == 26 + 24
    # a dim >= 128 needs a two-byte varint: 300 = 0xAC 0x02
    assert lf.encode_tensor_desc(3, [300, 1]) == bytes([8, 3, 0x10, 0xAC, 0x02, 0x10, 1])
    assert lf.decode_tensor_desc(bytes([8, 3, 0x10, 0xAC, 0x02, 0x10, 1])) == (3, (300, 1))
    # packed dims (wire type 2) decode to the same
    assert lf.decode_tensor_desc(bytes([8, 5, 0x12, 3, 0xAC, 0x02, 7])) == (5, (300, 7))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8",
                                   "bool"])
def test_reader_writer_roundtrip_and_paddle_reads_our_files(tmp_path, dtype):
    import paddle

    rng = np.random.default_rng(0)
    a = (rng.standard_normal((4, 130)) * 50).astype(dtype)
    path = str(tmp_path / "v")
    lf.write_tensor(path, a)
    header = lf.read_header(path)
    assert header.shape == (4, 130) and header.dtype == np.dtype(dtype) and header.lod == []
    np.testing.assert_array_equal(lf.read_tensor(path), a)
    loaded = paddle.load(path, return_numpy=True)  # Paddle's own reader of the legacy layout
    assert loaded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded, a)


def test_lod_and_big_endian_input(tmp_path):
    path = str(tmp_path / "seq")
    a = np.arange(10, dtype=">i8").reshape(5, 2)  # big-endian input is written little-endian
    lf.write_tensor(path, a, lod=[[0, 2, 5]])
    arr, lod = lf.read_lod_tensor(path)
    assert lod == [[0, 2, 5]] and arr.dtype == np.dtype("int64")
    np.testing.assert_array_equal(arr, np.arange(10).reshape(5, 2))
    raw = open(path, "rb").read()
    assert raw[4:12] == struct.pack("<Q", 1) and raw[12:20] == struct.pack("<Q", 24)


def test_paddle_written_files_match_our_writer_byte_for_byte(tmp_path):
    """Paddle's static ``save_vars`` writes the legacy layout: our reader reads it, our writer reproduces it."""
    script = r"""
import sys, numpy as np, paddle
paddle.enable_static()
main, startup = paddle.static.Program(), paddle.static.Program()
a = (np.arange(600, dtype=np.float32).reshape(300, 2) / 7).astype(np.float32)
with paddle.static.program_guard(main, startup):
    w = paddle.static.create_parameter(shape=[300, 2], dtype="float32", name="foo_fc.w_0",
                                       default_initializer=paddle.nn.initializer.Assign(a))
    c = paddle.static.create_global_var(shape=[1], value=5, dtype="int64", persistable=True, name="@LR_DECAY_COUNTER@")
exe = paddle.static.Executor(paddle.CPUPlace())
exe.run(startup)
paddle.static.save_vars(exe, dirname=sys.argv[1], main_program=main, vars=[w, c], filename=None)
"""
    out = tmp_path / "paddle_written"
    env = dict(os.environ, FLAGS_enable_pir_api="0", OMP_NUM_THREADS="1", GLOG_minloglevel="2")
    subprocess.run([PY, "-c", script, str(out)], check=True, env=env, capture_output=True, timeout=120)
    a = (np.arange(600, dtype=np.float32).reshape(300, 2) / 7).astype(np.float32)
    theirs = out / "foo_fc.w_0"
    np.testing.assert_array_equal(lf.read_tensor(str(theirs)), a)
    np.testing.assert_array_equal(lf.read_tensor(str(out / "@LR_DECAY_COUNTER@")), np.array([5], np.int64))
    lf.write_tensor(str(tmp_path / "ours"), a)
    lf.write_tensor(str(tmp_path / "ours_counter"), np.array([5], np.int64))
    assert (tmp_path / "ours").read_bytes() == theirs.read_bytes()
    assert (tmp_path / "ours_counter").read_bytes() == (out / "@LR_DECAY_COUNTER@").read_bytes()


def _file_with(tmp_path, name: str, data: bytes) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_reader_errors_name_file_field_and_sizes(tmp_path):
    good = str(tmp_path / "good")
    lf.write_tensor(good, np.ones((4, 8), np.float32))
    raw = open(good, "rb").read()  # 26-byte header + 128 data bytes
    cases = {
        "truncated_data": (raw[:-10], ["truncated", "needs 128 data bytes", "file has 118", "[4, 8] FP32"]),
        "truncated_header": (raw[:14], ["truncated in the tensor version", "expected 4 bytes, found 2"]),
        "trailing": (raw + b"xx", ["2 unexpected trailing bytes"]),
        "bad_version": (struct.pack("<I", 7) + raw[4:], ["LoDTensor version field is 7, expected 0"]),
        "bad_field": (raw[:16] + struct.pack("<i", 8) + bytes([8, 5, 0x18, 1, 0x10, 4, 0x10, 8]) + raw[26:],
                      ["unexpected field 3"]),
        "no_dtype": (raw[:16] + struct.pack("<i", 4) + bytes([0x10, 4, 0x10, 8]) + raw[26:],
                     ["lacks field 1 (data_type)"]),
        "bf16": (raw[:20] + bytes([8, 22]) + raw[22:26] + raw[26:90], ["BF16 (22) has no numpy equivalent"]),
        "json": (b'{"not": "a tensor"}', ["LoDTensor version field is"]),
    }
    for name, (data, expected) in cases.items():
        path = _file_with(tmp_path, name, data)
        with pytest.raises(LegacyFormatError) as err:
            lf.read_tensor(path)
        msg = str(err.value)
        assert path in msg, (name, msg)
        for part in expected:
            assert part in msg, (name, msg)


# ------------------------------------------------------------------------------------------------ task detection
def test_detect_task_from_names():
    back = list(backbone_table(64, 2))
    lm = ["mask_lm_trans_fc.w_0", "mask_lm_out_fc.b_0"]
    assert detect_task(back).task == "backbone"
    assert detect_task(back + lm).task == "generation"
    mnli = detect_task(back + lm + ["cls_out_3_w", "cls_out_3_b"])  # unimo_mnli_*: LM head + MNLI classifier
    assert (mnli.task, mnli.num_labels) == ("classification", 3)
    assert (detect_task(back + ["cls_out_1_w", "cls_out_1_b"]).task, 1) == ("regression", 1)
    ve = detect_task(back + ["cls_out_w_0", "cls_out_w_1"], {"cls_out_w_1": (2048, 3)})
    assert (ve.task, ve.num_labels) == ("ve", 3)
    assert detect_task(back + ["match_fc.w_0"]).task == "retrieval"
    vqa = detect_task(back + lm + ["vqa_fc_0.w_0", "vqa_fc_1.w_0"], {"vqa_fc_1.w_0": (128, 3129)})
    assert (vqa.task, vqa.num_labels) == ("vqa", 3129)
    with pytest.raises(ValueError, match="several task heads.*--task"):
        detect_task(back + ["cls_out_3_w", "match_fc.w_0"])


# ------------------------------------------------------------------------------------------------ conversion
@pytest.mark.parametrize("task", ["backbone", "generation", "classification", "regression", "ve", "retrieval",
                                  "vqa"])
def test_converted_model_equals_hand_loaded_model_and_round_trips(tiny_legacy, tmp_path, task, tiny_config):
    import paddle

    from unimo.model import modeling

    src, arrays = tiny_legacy
    out = tmp_path / "ours"
    report = convert_legacy(str(src), TINY, str(out), task=task)

    cls_name, kwargs = TASK_MODEL[task]
    prefix = "" if task == "backbone" else "unimo."
    table = {k: (prefix + key, shape) for k, (key, shape) in backbone_table(64, 2).items()}
    table.update(head_tables(64)[task])
    # report: exactly the hand table loaded, every optimizer file ignored with its pattern, other heads unused
    assert report.model_class == cls_name and report.init_kwargs == kwargs
    assert {r["name"]: r["key"] for r in report.loaded} == {k: v[0] for k, v in table.items()}
    assert {r["name"]: r["pattern"] for r in report.ignored} == OPTIMIZER_FILES
    other_heads = {n for t, h in head_tables(64).items() if t != task for n in h} - set(table)
    assert {r["name"] for r in report.unused} == other_heads
    assert report.unknown == [] and report.missing == []
    saved = json.loads((out / "conversion_report.json").read_text())
    assert saved["counts"]["loaded"] == len(table) and saved["counts"]["ignored"] == len(OPTIMIZER_FILES)

    # the same arrays given to a fresh model by hand
    cls = getattr(modeling, cls_name)
    paddle.seed(99)
    hand = cls(tiny_config, **kwargs)
    before = _outputs(hand, task)
    hand.set_state_dict({key: arrays[name] for name, (key, _) in table.items()})
    converted = cls.from_pretrained(str(out))
    assert converted.load_report.missing == [] and converted.load_report.unexpected == []
    for k, v in converted.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), hand.state_dict()[k].numpy(), err_msg=k)
    expected = _outputs(hand, task)
    for got, want, old in zip(_outputs(converted, task), expected, before):
        np.testing.assert_array_equal(got, want)
        assert np.abs(want - old).max() > 1e-3  # the loaded weights really change the outputs

    # round trip: ours -> legacy reproduces every loaded file byte for byte, and nothing else
    back = tmp_path / "legacy_again"
    exported = export_legacy(str(out), str(back))
    assert sorted(os.listdir(back)) == sorted(table) and len(exported.loaded) == len(table)
    for name in table:
        assert (back / name).read_bytes() == (src / name).read_bytes(), name


def test_base_and_large_name_and_shape_sets_without_allocating(tmp_path):
    """Sparse files with the right headers and sizes: a dry run checks every name and shape, reads no data."""
    for cfg_name, H, L in (("unimo_base_en", 768, 12), ("unimo_large_en", 1024, 24)):
        table = {**backbone_table(H, L), **head_tables(H)["generation"]}
        d = tmp_path / cfg_name
        d.mkdir()
        for name, (_, shape) in table.items():
            desc = lf.encode_tensor_desc(5, shape)
            header = struct.pack("<IQIi", 0, 0, 0, len(desc)) + desc
            with open(d / name, "wb") as f:
                f.write(header)
                f.truncate(len(header) + 4 * int(np.prod(shape)))  # sparse: no disk, no memory
        report = convert_legacy(str(d), str(REPO / "model_files" / "config" / f"{cfg_name}.json"),
                                str(tmp_path / "never"), dry_run=True)
        assert report.task == "generation" and report.missing == [] and report.unknown == []
        assert {r["name"]: tuple(r["shape"]) for r in report.loaded} == {k: v[1] for k, v in table.items()}
        per_layer = sum(int(np.prod(s)) for n, (_, s) in table.items() if n.startswith("encoder_layer_0_"))
        assert per_layer == {768: 7_087_872, 1024: 12_596_224}[H]  # 12*H^2 + 13*H
        assert not (tmp_path / "never").exists()


def test_auto_detect_cli_mnli_like_dir(tiny_legacy, tmp_path, capsys):
    """The CLI on a pre-trained + MNLI-head dir: classification with 3 labels, the LM head listed as unused."""
    src, arrays = tiny_legacy
    names = list(backbone_table(64, 2)) + list(head_tables(64)["generation"]) + ["cls_out_3_w", "cls_out_3_b",
                                                                               "word_embedding_moment1_0"]
    d = _subset(src, tmp_path / "mnli", names)
    out = tmp_path / "out"
    proc = subprocess.run([PY, "-m", "unimo.convert", "legacy", "--input", str(d), "--config", TINY, "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert "task: classification" in proc.stdout and "num_labels=3" in proc.stdout
    assert "ignored by pattern *_moment1_0" in proc.stdout and "word_embedding_moment1_0" in proc.stdout
    assert "WARNING unused: mask_lm_out_fc.b_0" in proc.stdout
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["task"] == "classification" and report["init_kwargs"] == {"num_labels": 3}
    assert {u["name"] for u in report["unused"]} == set(head_tables(64)["generation"])
    # a directory that holds two kinds of task head is refused (exit 2, nothing written)
    from unimo.convert.__main__ import main

    out2 = tmp_path / "out2"
    assert main(["legacy", "--input", str(src), "--config", TINY, "--output", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "several task heads" in err and "--task" in err
    assert not out2.exists()


def test_missing_variables_are_listed_and_seeded(tiny_legacy, tmp_path):
    import paddle

    src, arrays = tiny_legacy
    names = [n for n in backbone_table(64, 2) if not n.startswith(("image_", "v_pre", "pooled_fc_image"))]
    d = _subset(src, tmp_path / "text_only", names)
    r1 = convert_legacy(str(d), TINY, str(tmp_path / "a"), task="generation", seed=3)
    r2 = convert_legacy(str(d), TINY, str(tmp_path / "b"), task="generation", seed=3)
    r3 = convert_legacy(str(d), TINY, str(tmp_path / "c"), task="generation", seed=4)
    missing = {m["key"] for m in r1.missing}
    assert missing == {"unimo.image_emb.weight", "unimo.image_emb.bias", "unimo.image_loc.weight",
                       "unimo.image_loc.bias", "unimo.v_pre_encoder_layer_norm.weight",
                       "unimo.v_pre_encoder_layer_norm.bias", "unimo.pooled_fc_image.weight",
                       "unimo.pooled_fc_image.bias", *(f"lm_head.{k}" for k in (
                           "mask_lm_trans_fc.weight", "mask_lm_trans_fc.bias", "mask_lm_trans_layer_norm.weight",
                           "mask_lm_trans_layer_norm.bias", "mask_lm_out_fc_bias"))}
    a, b, c = (read_weights(str(tmp_path / x / "model.safetensors")) for x in "abc")
    w = a["unimo.image_emb.weight"]
    np.testing.assert_array_equal(w, b["unimo.image_emb.weight"])  # same seed, same fresh weights
    assert not np.array_equal(w, c["unimo.image_emb.weight"])
    # the model's own init (truncated normal, std 0.02; 0.0176 when cut at 2 std): not zeros, not a copy
    assert 0.017 < w.std() < 0.021 and abs(w.mean()) < 1e-3
    np.testing.assert_array_equal(a["unimo.v_pre_encoder_layer_norm.weight"], np.ones(64, np.float32))
    np.testing.assert_array_equal(a["lm_head.mask_lm_out_fc_bias"], np.zeros(50265, np.float32))
    np.testing.assert_array_equal(a["unimo.word_embedding.weight"], arrays["word_embedding"])


def test_role_and_turn_embeddings_size_the_config(tiny_legacy, tmp_path):
    src, arrays = tiny_legacy
    d = _subset(src, tmp_path / "coqa", list(backbone_table(64, 2)) + list(head_tables(64)["generation"]))
    role = np.arange(3 * 64, dtype=np.float32).reshape(3, 64) / 1000
    lf.write_tensor(str(d / "role_embedding"), role)
    lf.write_tensor(str(d / "turn_embedding"), np.ones((16, 64), np.float32))
    report = convert_legacy(str(d), TINY, str(tmp_path / "out"))
    cfg = json.loads((tmp_path / "out" / "model_config.json").read_text())
    assert (cfg["role_type_size"], cfg["turn_type_size"]) == (3, 16)
    assert {"role_embedding", "turn_embedding"} <= {r["name"] for r in report.loaded}


# ------------------------------------------------------------------------------------------------ bad inputs
def _leftovers(parent: Path) -> list[str]:
    return [n for n in os.listdir(parent) if ".tmp-" in n]


def test_bad_inputs_raise_and_write_nothing(tiny_legacy, tmp_path):
    src, arrays = tiny_legacy
    names = list(backbone_table(64, 2)) + list(head_tables(64)["generation"])

    def variant(tag: str, replace: dict[str, bytes | np.ndarray]) -> Path:
        d = _subset(src, tmp_path / tag, [n for n in names if n not in replace])
        for name, value in replace.items():
            if isinstance(value, bytes):
                (d / name).write_bytes(value)
            else:
                lf.write_tensor(str(d / name), value)
        return d

    pos = (src / "pos_embedding").read_bytes()
    cases = {
        "truncated": (variant("truncated", {"pos_embedding": pos[:-100]}), TINY,
                      ["pos_embedding", "truncated", f"needs {514 * 64 * 4} data bytes", f"has {514 * 64 * 4 - 100}"]),
        "dtype": (variant("dtype", {"pos_embedding": arrays["pos_embedding"].astype(np.float64)}), TINY,
                  ["variable pos_embedding has dtype FP64, expected FP32"]),
        "shape": (variant("shape", {"encoder_layer_1_ffn_fc_0.w_0": np.zeros((64, 200), np.float32)}), TINY,
                  ["encoder_layer_1_ffn_fc_0.w_0 has shape [64, 200]", "[64, 256]",
                   "unimo.layers.1.ffn_fc_0.weight"]),
        "nan": (variant("nan", {"image_loc.b_0": np.full(64, np.nan, np.float32)}), TINY,
                ["unimo.image_loc.bias: 64 non-finite values"]),
    }
    for field, value, expected in (("hidden_act", "swish", "hidden_act must be one of"),
                                   ("num_attention_heads", 5, "must be divisible"),
                                   ("vocab_size", "50265", "vocab_size must be a positive integer")):
        cfg = json.loads(Path(TINY).read_text())
        cfg[field] = value
        path = tmp_path / f"bad_{field}.json"
        path.write_text(json.dumps(cfg))
        cases[f"config_{field}"] = (src, str(path), [str(path), expected])
    cases["config_missing"] = (src, str(tmp_path / "nope.json"), ["config file not found", "nope.json"])
    cases["src_missing"] = (tmp_path / "no_such_dir", TINY, ["is not a directory"])
    for tag, (d, cfg, expected) in cases.items():
        dst = tmp_path / f"out_{tag}"
        with pytest.raises(ConversionError) as err:
            convert_legacy(str(d), cfg, str(dst), task="generation")
        for part in expected:
            assert part in str(err.value), (tag, str(err.value))
        assert not dst.exists(), tag
    assert _leftovers(tmp_path) == []
    # an existing non-empty destination is not overwritten unless asked
    dst = tmp_path / "occupied"
    dst.mkdir()
    (dst / "keep.txt").write_text("x")
    with pytest.raises(ConversionError, match="--overwrite"):
        convert_legacy(str(src), TINY, str(dst), task="generation")
    convert_legacy(str(src), TINY, str(dst), task="generation", overwrite=True)
    assert sorted(os.listdir(dst)) == ["conversion_report.json", "keep.txt", "model.safetensors",
                                       "model_config.json"]


def test_unknown_files_are_listed_not_fatal(tiny_legacy, tmp_path):
    src, _ = tiny_legacy
    d = _subset(src, tmp_path / "extra", list(backbone_table(64, 2)))
    lf.write_tensor(str(d / "some_other_fc.w_0"), np.ones((2, 2), np.float32))
    (d / "README").write_text("not a tensor")
    report = convert_legacy(str(d), TINY, str(tmp_path / "out"))
    assert report.unknown == ["README", "some_other_fc.w_0"]
    assert any("README" in n and "LoDTensor version" in n for n in report.notes)


def test_export_refuses_foreign_keys(tiny_legacy, tmp_path):
    import paddle

    src, _ = tiny_legacy
    out = tmp_path / "ours"
    convert_legacy(str(src), TINY, str(out), task="backbone", weights_format="pdparams")
    state = paddle.load(str(out / "model_state.pdparams"))
    state["extra.weight"] = paddle.zeros([2])
    paddle.save(state, str(out / "model_state.pdparams"))
    with pytest.raises(ConversionError, match="extra.weight has no official name"):
        export_legacy(str(out), str(tmp_path / "back"))
    assert not (tmp_path / "back").exists()


# ------------------------------------------------------------------------------------------------ scripts
def test_download_script_fails_cleanly_without_network(tmp_path):
    """An unreachable mirror (TEST-NET address: never routed, so no real download even on a networked machine):
    clear message naming the URL, non-zero exit, nothing left behind."""
    env = dict(os.environ, UNIMO_MODEL_DIR=str(tmp_path / "models"), UNIMO_DOWNLOAD_TIMEOUT="2",
               UNIMO_DOWNLOAD_BASE_URL="http://192.0.2.1/model")
    proc = subprocess.run(["bash", str(REPO / "model_files" / "download_unimo_base_en.sh")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert "could not download http://192.0.2.1/model/unimo_base_en.tar.gz" in proc.stderr
    assert os.listdir(tmp_path) == []  # no partial archive, no directory
    # the default source is the official one, and each script fetches its own checkpoint
    assert "https://unimo.bj.bcebos.com/model" in (REPO / "script/convert/download_legacy.sh").read_text()
    for name in ("unimo_base_en", "unimo_large_en", "unimo_mnli_base_en", "unimo_mnli_large_en"):
        script = (REPO / "model_files" / f"download_{name}.sh").read_text()
        assert script.rstrip().endswith(f'download_legacy.sh" {name}')


def test_download_script_success_path_with_local_archive(tmp_path):
    """Same script against a file:// mirror: extracts, prints the sha256 and the convert command."""
    import hashlib

    mirror = tmp_path / "mirror"
    (mirror / "unimo_mnli_large_en").mkdir(parents=True)
    lf.write_tensor(str(mirror / "unimo_mnli_large_en" / "cls_out_3_b"), np.zeros(3, np.float32))
    archive = mirror / "unimo_mnli_large_en.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(mirror / "unimo_mnli_large_en", arcname="unimo_mnli_large_en")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    models = tmp_path / "models"
    env = dict(os.environ, UNIMO_MODEL_DIR=str(models), UNIMO_DOWNLOAD_BASE_URL=f"file://{mirror}")
    proc = subprocess.run(["bash", str(REPO / "model_files" / "download_unimo_mnli_large_en.sh")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (models / "unimo_mnli_large_en" / "cls_out_3_b").is_file()
    assert sorted(os.listdir(models)) == ["unimo_mnli_large_en"]
    assert digest in proc.stdout and "no official checksum" in proc.stdout
    assert "python -m unimo.convert legacy --input" in proc.stdout and "unimo_large_en.json" in proc.stdout
    # a wrong expected checksum fails and leaves nothing new
    shutil.rmtree(models)
    env["UNIMO_EXPECTED_SHA256"] = "0" * 64
    proc = subprocess.run(["bash", str(REPO / "model_files" / "download_unimo_mnli_large_en.sh")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0 and "sha256 mismatch" in proc.stderr
    assert not models.exists() or os.listdir(models) == []


def test_wrapper_scripts(tiny_legacy, tmp_path):
    """script/convert/*.sh pass their arguments to the CLI (dry run, export)."""
    src, _ = tiny_legacy
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=PY)
    run = lambda *a: subprocess.run(["bash", *map(str, a)], capture_output=True, text=True, timeout=300, env=env)
    proc = run(REPO / "script/convert/legacy.sh", "--input", src, "--config", TINY, "--output", tmp_path / "x",
               "--task", "ve", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing written" in proc.stdout and "UnimoForVisualEntailment(num_labels=3, hidden=2048)" \
        in proc.stdout and not (tmp_path / "x").exists()
    convert_legacy(str(src), TINY, str(tmp_path / "ours"), task="retrieval")
    proc = run(REPO / "script/convert/export_legacy.sh", "--input", tmp_path / "ours", "--output", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back" / "match_fc.w_0").read_bytes() == (src / "match_fc.w_0").read_bytes()
    assert 'unimo.convert roberta "$@"' in (REPO / "script/convert/roberta.sh").read_text()


def test_streamed_safetensors_equals_the_pickle_and_loads_with_the_safetensors_library(tiny_legacy, tmp_path):
    """The default output is model.safetensors, written tensor by tensor: the safetensors library (an independent
    reader) loads exactly the arrays the pdparams output holds, and its header is 8-byte aligned."""
    import paddle
    from safetensors.numpy import load_file

    src, _ = tiny_legacy
    convert_legacy(str(src), TINY, str(tmp_path / "st"), task="generation", seed=3)
    convert_legacy(str(src), TINY, str(tmp_path / "pd"), task="generation", seed=3, weights_format="pdparams")
    st = load_file(str(tmp_path / "st" / "model.safetensors"))
    pd = paddle.load(str(tmp_path / "pd" / "model_state.pdparams"), return_numpy=True)
    pd.pop("StructuredToParameterName@@", None)
    assert sorted(st) == sorted(pd)
    for k in st:
        assert st[k].dtype == np.float32 and np.array_equal(st[k], pd[k]), k
    raw = (tmp_path / "st" / "model.safetensors").read_bytes()
    assert int.from_bytes(raw[:8], "little") % 8 == 0
    assert not (tmp_path / "st" / "model_state.pdparams").exists()
