"""UnimoModel: masking semantics, image/text layout, incremental cache, official-name map, save/load."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from unimo import masks
from unimo.model.modeling import (UnimoClassificationOutput, UnimoForGeneration, UnimoForRetrieval,
                                  UnimoForSequenceClassification, UnimoForVisualEntailment, UnimoForVQA,
                                  UnimoGenerationOutput, UnimoModel, UnimoOutput, UnimoRetrievalOutput,
                                  UnimoVQAOutput, circle_loss, label_smoothed_cross_entropy)


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
        loss = model(**inputs).loss
        loss.backward()
        results.append((float(loss), {n: p.grad.numpy().copy() for n, p in model.named_parameters()
                                      if p.grad is not None}, len(calls)))
    (loss_a, grads_a, calls_a), (loss_b, grads_b, calls_b) = results
    assert (calls_a, calls_b) == (1, 2)  # with recompute the layer runs again in the backward pass
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    for name in grads_a:
        np.testing.assert_allclose(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------------------------------- the output contract
def _pair_inputs(cfg, b: int = 2, regions: int = 3, length: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    valid = np.ones((b, regions + length), np.float32)
    valid[-1, -1] = 0  # one padded text position
    ids = rng.integers(5, 100, (b, length))
    ids[-1, -1] = 1
    return {"input_ids": _t(ids), "position_ids": _t(np.tile(np.arange(2, 2 + length), (b, 1))),
            "image_features": _t(rng.normal(size=(b, regions, cfg.image_embedding_size)), "float32"),
            "image_locations": _t(rng.random((b, regions, 5)), "float32"),
            "attention_mask": _t(masks.bidirectional_batch(valid), "float32")}


def test_every_task_model_returns_its_output_dataclass(tiny_config):
    """One output object per task model: ``loss`` None without labels, the loss with them, and the logits/scores
    either way; the set fields are also mapping items (paddle.DataParallel collects output tensors from dicts)."""
    cfg = tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    paddle.seed(0)
    pair = _pair_inputs(cfg)
    text = {k: pair[k] for k in ("input_ids", "position_ids")}
    cases = [
        (UnimoForSequenceClassification(cfg, num_labels=3), text, {"labels": _t([0, 2])},
         UnimoClassificationOutput, "logits", [2, 3]),
        (UnimoForSequenceClassification(cfg, num_labels=1), text, {"labels": _t([0.5, -1.0], "float32")},
         UnimoClassificationOutput, "logits", [2, 1]),
        (UnimoForVisualEntailment(cfg, hidden=16), pair, {"labels": _t([1, 0])}, UnimoClassificationOutput,
         "logits", [2, 3]),
        (UnimoForVQA(cfg, num_answers=7), pair, {"labels": _t(np.full((2, 7), 0.3), "float32")}, UnimoVQAOutput,
         "logits", [2, 7]),
        (UnimoForRetrieval(cfg, negative_images=1, negative_captions=0), pair, {"labels": _t([1, 0])},
         UnimoRetrievalOutput, "scores", [2]),
        (UnimoForGeneration(cfg, label_smoothing=0.1), pair,
         {"labels": _t([7, 8, 9]), "label_positions": _t([3, 4, 9])}, UnimoGenerationOutput, "logits",
         [3, cfg.vocab_size]),
    ]
    for model, inputs, labels, out_cls, field, shape in cases:
        model.eval()
        name = type(model).__name__
        plain = model(**inputs)
        assert type(plain) is out_cls and isinstance(plain, UnimoOutput), name
        assert plain.loss is None and "loss" not in plain, name
        out = model(**inputs, **labels)
        assert type(out) is out_cls and out.loss is not None and out.loss.shape == [], name
        assert getattr(out, field).shape == shape and sorted(out) == sorted(["loss", field] + (
            ["sequence_output"] if out_cls is UnimoGenerationOutput else [])), name
        assert out["loss"] is out.loss, name
        if out_cls is not UnimoGenerationOutput:  # the loss does not change what the head outputs
            np.testing.assert_array_equal(getattr(plain, field).numpy(), getattr(out, field).numpy())
    # generation without label positions: LM logits at every position, next to the sequence output
    gen = cases[-1][0]
    full = gen(**pair)
    assert full.logits.shape == [2, 8, cfg.vocab_size] and full.sequence_output.shape == [2, 8, cfg.hidden_size]
    at = gen(**pair, label_positions=_t([3, 4, 9]))
    flat = full.logits.numpy().reshape(-1, cfg.vocab_size)[[3, 4, 9]]
    np.testing.assert_allclose(at.logits.numpy(), flat, rtol=1e-5, atol=1e-5)
    assert at.loss is None
    with pytest.raises(ValueError, match="label_positions"):
        gen(**pair, labels=_t([7, 8, 9]))


def test_loss_constants_are_constructor_arguments_saved_with_the_checkpoint(tiny_config, tmp_path):
    """Label smoothing and the retrieval group / circle-loss margins are model arguments (no batch tensor), and
    from_pretrained of a saved task model restores them."""
    cfg = tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    pair = _pair_inputs(cfg, b=2)
    positions, labels = _t([3, 4, 5]), _t([7, 8, 9])
    paddle.seed(1)
    gen = UnimoForGeneration(cfg, label_smoothing=0.2)
    gen.eval()
    logits = gen(**pair, label_positions=positions).logits
    loss = float(gen(**pair, labels=labels, label_positions=positions).loss)
    assert loss == pytest.approx(float(label_smoothed_cross_entropy(logits, labels, 0.2)), rel=1e-6)
    assert abs(loss - float(label_smoothed_cross_entropy(logits, labels, 0.0))) > 1e-3
    with pytest.raises(TypeError, match="label_smoothing"):  # the old per-batch tensor is refused
        gen(**pair, labels=labels, label_positions=positions, label_smoothing=_t([0.1], "float32"))
    with pytest.raises(ValueError, match="label_smoothing"):
        UnimoForGeneration(cfg, label_smoothing=1.0)
    gen.save_pretrained(str(tmp_path / "gen"))
    again = UnimoForGeneration.from_pretrained(str(tmp_path / "gen"))
    again.eval()
    assert again.label_smoothing == 0.2
    assert float(again(**pair, labels=labels, label_positions=positions).loss) == pytest.approx(loss, rel=1e-6)

    ret = UnimoForRetrieval(cfg, margin=0.3, scale=2.0, negative_images=2, negative_captions=1)
    assert ret.group_size == 4
    ret.save_pretrained(str(tmp_path / "ret"))
    back = UnimoForRetrieval.from_pretrained(str(tmp_path / "ret"))
    assert (back.margin, back.scale, back.negative_images, back.negative_captions) == (0.3, 2.0, 2, 1)
    with pytest.raises(ValueError, match="negatives"):
        UnimoForRetrieval(cfg, negative_images=0, negative_captions=0)


def test_retrieval_loss_over_the_group_layout(tiny_config):
    """Rows [positive, negative images..., negative captions...] per group: the mean of the circle losses against
    each negative kind (official), or the one kind present; labels must be in that layout."""
    cfg = tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    paddle.seed(2)
    model = UnimoForRetrieval(cfg, margin=0.2, scale=1.0, negative_images=2, negative_captions=1)
    model.eval()
    inputs = _pair_inputs(cfg, b=8, seed=3)  # 2 groups of 4
    labels = _t([1, 0, 0, 0] * 2)
    out = model(**inputs, labels=labels)
    s = out.scores.numpy().astype(np.float64).reshape(2, 4)
    sp = _t(s[:, :1], "float64")
    want = (float(circle_loss(sp, _t(s[:, 1:3], "float64"))) + float(circle_loss(sp, _t(s[:, 3:], "float64")))) / 2
    assert float(out.loss) == pytest.approx(want, rel=1e-6)
    only_images = UnimoForRetrieval(cfg, negative_images=3, negative_captions=0)
    only_images.set_state_dict(model.state_dict())
    only_images.eval()
    got = float(only_images(**inputs, labels=labels).loss)
    assert got == pytest.approx(float(circle_loss(sp, _t(s[:, 1:], "float64"))), rel=1e-6)
    with pytest.raises(ValueError, match="groups of 4"):
        model(**_pair_inputs(cfg, b=6), labels=_t([1, 0, 0, 0, 1, 0]))
    with pytest.raises(ValueError, match="1 for the first row"):
        model(**inputs, labels=_t([0, 1, 0, 0] * 2))


def test_retrieval_head_uses_the_official_initialisers(tiny_config):
    """match_fc as the official retrieval.py:105-113: Xavier-uniform weight (bound sqrt(6 / (fan_in + fan_out))) and
    a bias from fluid's UniformInitializer defaults, U(-1, 1) - checked as distributions over fresh models."""
    from scipy import stats

    biases, weights = [], []
    for seed in range(80):
        paddle.seed(seed)
        m = UnimoForRetrieval(tiny_config, negative_images=1, negative_captions=1)
        biases.append(float(m.match_fc.bias.numpy()[0]))
        weights.append(m.match_fc.weight.numpy().ravel())
    assert stats.kstest(biases, stats.uniform(loc=-1.0, scale=2.0).cdf).pvalue > 1e-3
    bound = float(np.sqrt(6.0 / (tiny_config.hidden_size + 1)))
    w = np.concatenate(weights)
    assert stats.kstest(w, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3
