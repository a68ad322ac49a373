"""HF RoBERTa -> UNIMO: the converted text path reproduces HuggingFace's outputs (fp32, max |diff| <= 1e-5).

The oracle (tests/oracle/roberta_oracle.py, torch + transformers in .venv-oracle) builds random tiny
``RobertaModel`` / ``RobertaForMaskedLM`` checkpoints with a non-zero token-type row, saves them with
``save_pretrained`` (safetensors) and records their outputs on padded and unpadded inputs.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_oracle
from unimo.convert import ConversionError, convert_roberta

TOL = 1e-5


@pytest.fixture(scope="module")
def hf(tmp_path_factory, oracle_python) -> Path:
    out = tmp_path_factory.mktemp("roberta_oracle")
    summary = json.loads(run_oracle(oracle_python, "roberta_oracle.py", str(out)).strip().splitlines()[-1])
    assert summary["model"] == ["config.json", "model.safetensors"]
    return out


def _valid(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return a[mask.astype(bool)]


def _run(model, ids: np.ndarray, mask: np.ndarray | None):
    import paddle

    model.eval()
    with paddle.no_grad():
        return model(input_ids=paddle.to_tensor(ids),
                     attention_mask=None if mask is None else paddle.to_tensor(mask.astype(np.float32)))


def test_roberta_model_sequence_output_matches_hf(hf, tmp_path):
    from unimo.model import UnimoModel

    out = tmp_path / "unimo_from_roberta"
    report = convert_roberta(str(hf / "model"), str(out))
    assert report.model_class == "UnimoModel" and report.task == "backbone"
    loaded = {r["name"]: r for r in report.loaded}
    assert loaded["embeddings.position_embeddings.weight"]["transform"] == "+ token_type_embeddings[0]"
    assert loaded["encoder.layer.1.intermediate.dense.weight"]["key"] == "layers.1.ffn_fc_0.weight"
    assert loaded["encoder.layer.1.intermediate.dense.weight"]["transform"].startswith("transposed")
    assert len(loaded) == 4 + 16 * 2  # word, position, embedding LayerNorm x2, 16 per layer
    assert {i["name"] for i in report.ignored} == {"pooler.dense.weight", "pooler.dense.bias",
                                                     "embeddings.token_type_embeddings.weight"}
    assert {m["key"] for m in report.missing} == {
        "image_emb.weight", "image_emb.bias", "image_loc.weight", "image_loc.bias", "v_pre_encoder_layer_norm.weight",
        "v_pre_encoder_layer_norm.bias", "pooled_fc_text.weight", "pooled_fc_text.bias", "pooled_fc_image.weight",
        "pooled_fc_image.bias"}
    assert report.unknown == [] and report.unused == []
    cfg = json.loads((out / "model_config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["vocab_size"],
            cfg["max_position_embeddings"], cfg["layer_norm_eps"]) == (64, 2, 4, 50265, 514, 1e-5)

    model = UnimoModel.from_pretrained(str(out))
    ids, mask = np.load(hf / "input_ids.npy"), np.load(hf / "attention_mask.npy")
    want = np.load(hf / "model_sequence.npy")
    got = _run(model, ids, mask).numpy()
    diff = np.abs(_valid(got, mask) - _valid(want, mask)).max()
    assert diff <= TOL, diff
    long_ids = np.load(hf / "long_ids.npy")  # 512 tokens: every position row 2..513
    diff_long = np.abs(_run(model, long_ids, None).numpy() - np.load(hf / "model_long_sequence.npy")).max()
    assert diff_long <= TOL, diff_long

    # negative control: without the folded token-type row the outputs are far off
    pos = model.pos_embedding.weight
    from safetensors.numpy import load_file

    type_row = load_file(str(hf / "model" / "model.safetensors"))["embeddings.token_type_embeddings.weight"][0]
    pos.set_value(pos.numpy() - type_row)
    assert np.abs(_valid(_run(model, ids, mask).numpy(), mask) - _valid(want, mask)).max() > 1e-2


def test_roberta_mlm_logits_match_hf_through_cli(hf, tmp_path, capsys):
    from unimo.convert.__main__ import main
    from unimo.model import UnimoForGeneration

    out = tmp_path / "mlm"
    assert main(["roberta", "--src", str(hf / "mlm"), "--dst", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "generation" and report["model_class"] == "UnimoForGeneration"
    assert {r["key"] for r in report["loaded"]} >= {"lm_head.mask_lm_trans_fc.weight", "lm_head.mask_lm_out_fc_bias",
                                                    "lm_head.mask_lm_trans_layer_norm.weight"}
    assert json.loads((out / "conversion_report.json").read_text())["counts"] == report["counts"]
    model = UnimoForGeneration.from_pretrained(str(out))
    ids, mask = np.load(hf / "input_ids.npy"), np.load(hf / "attention_mask.npy")
    out = _run(model, ids, mask)  # the task model's output: sequence output + LM logits at every position
    seq, logits = out.sequence_output, out.logits.numpy()
    np.testing.assert_array_equal(logits, model.lm_head(seq).numpy())
    assert np.abs(_valid(seq.numpy(), mask) - _valid(np.load(hf / "mlm_sequence.npy"), mask)).max() <= TOL
    diff = np.abs(_valid(logits, mask) - _valid(np.load(hf / "mlm_logits.npy"), mask)).max()
    assert diff <= TOL, diff


def _hf_copy(hf: Path, tmp_path: Path, tag: str, **config_changes) -> Path:
    d = tmp_path / tag
    shutil.copytree(hf / "model", d)
    cfg = json.loads((d / "config.json").read_text())
    for k, v in config_changes.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_roberta_bad_inputs_write_nothing(hf, tmp_path, monkeypatch):
    cases = {
        "ffn": ({"intermediate_size": 100}, "intermediate_size 100 != 4 * hidden_size (256)"),
        "pad": ({"pad_token_id": 0}, "pad_token_id 0 != 1"),
        "missing": ({"num_hidden_layers": None}, "missing field num_hidden_layers"),
        "act": ({"hidden_act": "silu"}, "hidden_act 'silu' is not supported"),
        "layers": ({"num_hidden_layers": 3}, ""),  # the checkpoint has 2 layers: layer 2 is listed as missing
    }
    for tag, (change, expected) in cases.items():
        src = _hf_copy(hf, tmp_path, tag, **change)
        dst = tmp_path / f"out_{tag}"
        if tag == "layers":  # not an error by itself: the third layer is listed as missing (fresh)
            report = convert_roberta(str(src), str(dst), dry_run=True)
            assert {m["key"] for m in report.missing} >= {"layers.2.query_fc.weight", "layers.2.ffn_fc_1.bias"}
            assert not dst.exists()
            continue
        with pytest.raises(ConversionError) as err:
            convert_roberta(str(src), str(dst))
        assert expected in str(err.value) and str(src / "config.json") in str(err.value), str(err.value)
        assert not dst.exists()
    # a checkpoint in pytorch_model.bin only, without torch: a clear error
    src = tmp_path / "bin_only"
    src.mkdir()
    shutil.copy(hf / "model" / "config.json", src / "config.json")
    (src / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ConversionError, match="pytorch_model.bin, which needs torch"):
        convert_roberta(str(src), str(tmp_path / "out_bin"))
    assert not (tmp_path / "out_bin").exists()
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []
