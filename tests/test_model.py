"""UnimoModel: masking semantics, image/text layout, incremental cache, official-name map, save/load."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from unimo import masks
from unimo.model.modeling import (UnimoForGeneration, UnimoForRetrieval, UnimoForSequenceClassification,
                                  UnimoForVisualEntailment, UnimoForVQA, UnimoModel,
                                  circle_loss, label_smoothed_cross_entropy)


@pytest.fixture()
def model(tiny_config):
    paddle.seed(0)
    m = UnimoModel(tiny_config)
    m.eval()
    return m


def _t(x, dtype="int64"):
    return paddle.to_tensor(np.asarray(x), dtype=dtype)


def test_padding_does_not_change_valid_rows(model):
    ids = [[0, 100, 200, 300, 2]]
    short = model(input_ids=_t(ids), attention_mask=_t(masks.bidirectional([1] * 5)[None], "float32"))
    padded_ids = [[0, 100, 200, 300, 2, 1, 1]]
    pos = [[2, 3, 4, 5, 6, 1, 1]]
    mask = masks.bidirectional([1] * 5 + [0, 0])[None]
    long = model(input_ids=_t(padded_ids), position_ids=_t(pos), attention_mask=_t(mask, "float32"))
    assert np.abs(short.numpy() - long.numpy()[:, :5]).max() < 1e-5


def test_caption_mask_isolates_image_rows(model, tiny_config):
    rng = np.random.default_rng(0)
    feats = _t(rng.normal(size=(1, 3, tiny_config.image_embedding_size)), "float32")
    locs = _t(rng.uniform(size=(1, 3, 5)), "float32")
    mask = _t(masks.image_to_text([1, 1, 1], [], [1, 1, 1, 1])[None], "float32")
    a = model(input_ids=_t([[0, 10, 11, 12]]), image_features=feats, image_locations=locs, attention_mask=mask)
    b = model(input_ids=_t([[0, 10, 99, 98]]), image_features=feats, image_locations=locs, attention_mask=mask)
    assert a.shape == [1, 7, tiny_config.hidden_size]
    # image rows and the caption prefix that did not change are identical; later caption rows differ
    assert np.abs(a.numpy()[:, :5] - b.numpy()[:, :5]).max() < 1e-6
    assert np.abs(a.numpy()[:, 6] - b.numpy()[:, 6]).max() > 1e-3


def test_incremental_cache_equals_recompute(model):
    src = [0, 31, 32, 33, 2]
    tgt = [0, 40, 41, 42, 43]
    L = len(src) + len(tgt)
    full_ids = _t([src + tgt])
    full_pos = _t([[2, 3, 4, 5, 6] + [2, 3, 4, 5, 6]])
    full = model(input_ids=full_ids, position_ids=full_pos,
                 attention_mask=_t(masks.seq2seq(len(src), len(tgt))[None], "float32")).numpy()
    cache = model.init_cache()
    enc = model(input_ids=_t([src]), position_ids=full_pos[:, :5],
                attention_mask=_t(masks.bidirectional([1] * 5)[None], "float32"), cache=cache)
    assert np.abs(enc.numpy() - full[:, :5]).max() < 1e-5
    for step, tok in enumerate(tgt):
        row = masks.decode_step_row([1] * len(src), step + 1)[None]
        out = model(input_ids=_t([[tok]]), position_ids=_t([[2 + step]]), attention_mask=_t(row, "float32"),
                    cache=cache)
        assert np.abs(out.numpy()[:, 0] - full[:, len(src) + step]).max() <= 1e-5
    assert cache.length == L


@pytest.mark.parametrize("cls,kwargs", [(UnimoModel, {}), (UnimoForGeneration, {}),
                                        (UnimoForSequenceClassification, {"num_labels": 3}),
                                        (UnimoForVisualEntailment, {}), (UnimoForRetrieval, {}),
                                        (UnimoForVQA, {"num_answers": 7})])
def test_official_name_map_is_a_bijection(tiny_config, cls, kwargs):
    m = cls(tiny_config, **kwargs)
    mapping = m.official_name_map()
    own = m.state_dict()
    assert sorted(mapping.values()) == sorted(own.keys())
    assert len(set(mapping.values())) == len(mapping)


def test_official_names_for_base_layout():
    from unimo import UnimoConfig
    from unimo.model.modeling import backbone_name_map

    cfg = UnimoConfig.from_json_file("model_files/config/unimo_base_en.json")
    names = backbone_name_map(cfg)
    assert "encoder_layer_11_post_ffn_layer_norm_bias" in names and "encoder_layer_12_ffn_fc_0.w_0" not in names
    assert names["encoder_layer_3_multi_head_att_query_fc.w_0"] == "layers.3.query_fc.weight"


def test_save_load_roundtrip_and_backbone_into_task(tmp_path, tiny_config, model):
    model.save_pretrained(str(tmp_path / "bb"))
    again = UnimoModel.from_pretrained(str(tmp_path / "bb"))
    for k, v in model.state_dict().items():
        assert np.array_equal(v.numpy(), again.state_dict()[k].numpy())
    task = UnimoForSequenceClassification.from_pretrained(str(tmp_path / "bb"), num_labels=2)
    assert task.load_report.missing == ["cls_out.bias", "cls_out.weight"]
    assert np.array_equal(task.unimo.word_embedding.weight.numpy(), model.word_embedding.weight.numpy())
    task.save_pretrained(str(tmp_path / "task"))
    rebuilt = UnimoForSequenceClassification.from_pretrained(str(tmp_path / "task"))
    assert rebuilt.num_labels == 2 and rebuilt.load_report.missing == []
    back = UnimoModel.from_pretrained(str(tmp_path / "task"))
    assert back.load_report.unexpected == ["cls_out.bias", "cls_out.weight"]


def test_shape_mismatch_is_an_error(tmp_path, tiny_config, model):
    model.save_pretrained(str(tmp_path / "bb"))
    bigger = tiny_config.copy(hidden_size=128)
    with pytest.raises(ValueError, match="word_embedding.weight: checkpoint"):
        UnimoModel.from_pretrained(str(tmp_path / "bb"), config=bigger)


def test_bad_config_values(tmp_path):
    from unimo import UnimoConfig

    with pytest.raises(ValueError, match="divisible"):
        UnimoConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_dropout_prob"):
        UnimoConfig(hidden_dropout_prob=1.5)
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="c.json"):
        UnimoConfig.from_json_file(str(p))


def test_official_config_roundtrip(tmp_path):
    from unimo import UnimoConfig

    cfg = UnimoConfig.from_json_file("model_files/config/unimo_base_en.json")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.extra["fusion_method"]) == (768, 12, "mul")
    cfg.save_pretrained(str(tmp_path))
    assert UnimoConfig.from_pretrained(str(tmp_path)) == cfg


def test_label_smoothed_cross_entropy_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 6)).astype("float32")
    labels = np.array([0, 5, 2, 2])
    eps = 0.1
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = np.full((4, 6), eps / 6) + (1 - eps) * np.eye(6)[labels]
    expected = -(target * logp).sum(-1).mean()
    got = float(label_smoothed_cross_entropy(_t(logits, "float32"), _t(labels), eps))
    assert abs(got - expected) < 1e-6


def test_circle_loss_matches_hand_computation():
    sp = np.array([[0.7]])
    sn = np.array([[0.1, 0.5]])
    m = 0.2
    ap = max(0.0, 1 + m - 0.7)
    terms = [np.exp(max(0.0, s + m) * (s - m)) for s in (0.1, 0.5)]
    expected = np.log(1 + sum(terms) * np.exp(-ap * (0.7 - (1 - m))))
    got = float(circle_loss(_t(sp, "float64"), _t(sn, "float64"), m))
    assert abs(got - expected) < 1e-12


def test_recompute_gives_the_same_loss_and_gradients(tiny_config):
    """``recompute: true`` (PaddleNLP's Trainer sets ``enable_recompute`` on the backbone) only trades memory for
    compute: a task model's loss and every gradient are unchanged."""
    from unimo.model.modeling import UnimoForVQA

    cfg = tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    paddle.seed(3)
    model = UnimoForVQA(cfg, num_answers=7)
    model.train()
    rng = np.random.default_rng(0)
    inputs = {"input_ids": _t(rng.integers(5, 100, (2, 6)), "int64"),
              "image_features": _t(rng.normal(size=(2, 4, cfg.image_embedding_size)), "float32"),
              "image_locations": _t(rng.random((2, 4, 5)), "float32"),
              "labels": _t(rng.random((2, 7)), "float32")}
    calls = []
    model.unimo.layers[0].register_forward_post_hook(lambda layer, inp, out: calls.append(1))
    results = []
    for on in (False, True):
        model.unimo.enable_recompute = on
        model.clear_gradients()
        calls.clear()
        loss, _ = model(**inputs)
        loss.backward()
        results.append((float(loss), {n: p.grad.numpy().copy() for n, p in model.named_parameters()
                                      if p.grad is not None}, len(calls)))
    (loss_a, grads_a, calls_a), (loss_b, grads_b, calls_b) = results
    assert (calls_a, calls_b) == (1, 2)  # with recompute the layer runs again in the backward pass
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    for name in grads_a:
        np.testing.assert_allclose(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, err_msg=name)
