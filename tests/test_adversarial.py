"""VILLA adversarial training (src/unimo/training/adversarial.py): the official recipe's arithmetic on hand-checkable
cases, an independent step-by-step re-computation through the plain model's own forward, the pieces (init, ascent,
projection, symmetric KL), delegation (state dict, checkpoints, decoding, eval), and a few Trainer steps on the
demo SNLI-VE task whose checkpoint loads into the plain model class."""
from __future__ import annotations

import json
import math

import numpy as np
import paddle
import pytest

from conftest import build_demo_data

from unimo import masks
from unimo.training.adversarial import (ModelWrapper, VillaWrapper, ascend, init_delta, load_saved_model,
                                        symmetric_bernoulli_kl, symmetric_kl, unwrap_model, wrap_villa)
from unimo.model.modeling import (UnimoForGeneration, UnimoForRetrieval, UnimoForSequenceClassification,
                                  UnimoForVisualEntailment, UnimoForVQA)

B, R, T = 2, 5, 6


@pytest.fixture(scope="module")
def config(tiny_config):
    # no dropout: pure / text / image passes are then the same function when the deltas are zero
    return tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _inputs(config, cross_modal: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Two examples with padded image rows and padded text positions (example 1 shorter)."""
    rng = np.random.default_rng(seed)
    img_valid = np.ones((B, R), np.float32)
    img_valid[1, 3:] = 0
    txt_valid = np.ones((B, T), np.float32)
    txt_valid[1, 4:] = 0
    ids = rng.integers(4, 1000, size=(B, T))
    ids[txt_valid == 0] = 1
    if cross_modal:
        mask = np.stack([masks.cross_modal(img_valid[i], txt_valid[i]) for i in range(B)])
    else:
        mask = np.stack([masks.image_to_text(img_valid[i], [], txt_valid[i]) for i in range(B)])
    feats = rng.normal(size=(B, R, config.image_embedding_size)).astype(np.float32) * img_valid[:, :, None]
    locs = rng.random((B, R, 5)).astype(np.float32) * img_valid[:, :, None]
    return {"input_ids": ids, "position_ids": np.tile(np.arange(2, 2 + T), (B, 1)), "image_features": feats,
            "image_locations": locs, "attention_mask": mask}, txt_valid


def _batch(kind: str, config, seed: int = 0) -> dict[str, paddle.Tensor]:
    batch, txt_valid = _inputs(config, cross_modal=kind != "generation", seed=seed)
    rng = np.random.default_rng(seed + 1)
    if kind == "generation":
        labels, positions = [], []
        for b in range(B):
            n = int(txt_valid[b].sum())
            for j in range(n - 1):  # the token at caption position j predicts j + 1
                positions.append(b * (R + T) + R + j)
                labels.append(batch["input_ids"][b, j + 1])
        batch.update(labels=np.array(labels), label_positions=np.array(positions))
    elif kind == "ve":
        batch["labels"] = np.array([0, 2])
    else:  # vqa soft scores
        batch["labels"] = (rng.random((B, 7)) * (rng.random((B, 7)) < 0.3)).astype(np.float32)
    return {k: paddle.to_tensor(v) for k, v in batch.items()}


def _model(kind: str, config):
    paddle.seed(7)
    if kind == "generation":
        return UnimoForGeneration(config, label_smoothing=0.1)
    if kind == "ve":
        return UnimoForVisualEntailment(config, hidden=32)
    return UnimoForVQA(config, num_answers=7)


def _plain_loss(model, batch) -> float:
    return float(model(**batch).loss)


# ------------------------------------------------------------------------------------------- hand-checkable values
@pytest.mark.parametrize("kind", ["generation", "ve", "vqa"])
def test_zero_perturbation_total_is_three_plain_losses(kind, config):
    """adv_lr = 0 and init_mag = 0: every delta stays 0, so each of the K steps adds L/K three times and KL = 0:
    total = 3 L; without the pure model 2 L."""
    model = _model(kind, config)
    batch = _batch(kind, config)
    plain = _plain_loss(model, batch)
    wrapper = VillaWrapper(model, adv_steps=4, adv_lr=0.0, adv_init_mag=0.0)
    wrapper.train()
    total, parts = wrapper(**batch)
    assert float(total) == pytest.approx(3 * plain, rel=1e-5)
    for name in ("pure", "adv_text", "adv_image"):
        assert float(parts[name]) == pytest.approx(plain, rel=1e-5)
    assert abs(float(parts["kl"])) < 1e-6
    assert len(wrapper.last_steps) == 4
    for step in wrapper.last_steps:
        assert float(step["pure"]) == pytest.approx(plain / 4, rel=1e-5)
        assert float(step["text_delta_norm"]) == 0.0 and float(step["image_delta_norm"]) == 0.0

    no_pure = VillaWrapper(model, adv_steps=2, adv_lr=0.0, adv_init_mag=0.0, with_pure_model=False)
    no_pure.train()
    total, parts = no_pure(**batch)
    assert float(total) == pytest.approx(2 * plain, rel=1e-5)
    assert set(parts) == {"adv_text", "adv_image"}


def test_matches_independent_step_by_step_computation(config):
    """K = 2 with a random init, ascent and projection, recomputed here through UnimoForGeneration's *own* forward
    (which takes the deltas as keyword inputs) and numpy: the total loss and a parameter gradient agree."""
    kind = "generation"
    batch = _batch(kind, config, seed=3)
    k, lr, mag, max_norm, klw = 2, 0.5, 0.4, 0.3, 0.7

    model = _model(kind, config)
    wrapper = VillaWrapper(model, adv_steps=k, adv_lr=lr, adv_init_mag=mag, adv_max_norm=max_norm, kl_weight=klw)
    wrapper.train()
    paddle.seed(123)
    total, _ = wrapper(**batch)
    total.backward()
    got_grad = model.unimo.pre_encoder_layer_norm.weight.grad.numpy().copy()
    got_total = float(total)

    ref = _model(kind, config)  # same seed -> same weights
    paddle.seed(123)  # the wrapper draws the text delta first, then the image delta
    t_valid = np.ones((B, T), np.float32)
    t_valid[1, 4:] = 0
    i_valid = np.ones((B, R), np.float32)
    i_valid[1, 3:] = 0
    t_delta = paddle.uniform([B, T, config.hidden_size], min=-1.0, max=1.0).numpy() * t_valid[:, :, None]
    v_delta = paddle.uniform([B, R, config.image_embedding_size], min=-1.0, max=1.0).numpy() * i_valid[:, :, None]
    t_delta *= (mag / np.sqrt(t_valid.sum(1) * config.hidden_size))[:, None, None]
    v_delta *= (mag / np.sqrt(i_valid.sum(1) * config.image_embedding_size))[:, None, None]

    def logits(**delta):
        seq = ref.unimo(**{k2: v for k2, v in batch.items() if k2 not in ("labels", "label_positions")}, **delta)
        hidden = paddle.gather(seq.reshape([-1, seq.shape[-1]]), batch["label_positions"], axis=0)
        return ref.lm_head(hidden)

    def skl(a, b):
        pa, pb = paddle.nn.functional.softmax(a, -1), paddle.nn.functional.softmax(b, -1)
        return (pa * (paddle.log(pa) - paddle.log(pb)) + pb * (paddle.log(pb) - paddle.log(pa))).sum(-1).mean()

    def step_to(delta, grad, valid):
        g = grad * valid[:, :, None]
        gn = np.maximum(np.sqrt((g.reshape(B, -1) ** 2).sum(1)), 1e-8)[:, None, None]
        new = delta + lr * g / gn
        n = np.sqrt((new.reshape(B, -1) ** 2).sum(1))[:, None, None]
        return np.where(n > max_norm, new * max_norm / n, new)

    expected = 0.0
    for _ in range(k):
        td = paddle.to_tensor(t_delta.astype(np.float32), stop_gradient=False)
        vd = paddle.to_tensor(v_delta.astype(np.float32), stop_gradient=False)
        lt = ref(**batch, text_embedding_delta=td).loss / k  # the model's own label-smoothed loss
        li = ref(**batch, image_feature_delta=vd).loss / k
        lp = ref(**batch).loss / k
        gt = paddle.grad(lt, td, retain_graph=True)[0].numpy()
        gi = paddle.grad(li, vd, retain_graph=True)[0].numpy()
        pure_logits = logits()
        cur = lp + lt + li + klw * (skl(pure_logits, logits(text_embedding_delta=td))
                                    + skl(pure_logits, logits(image_feature_delta=vd)))
        expected = cur if isinstance(expected, float) else expected + cur
        t_delta, v_delta = step_to(t_delta, gt, t_valid), step_to(v_delta, gi, i_valid)
    expected.backward()
    assert got_total == pytest.approx(float(expected), rel=1e-5)
    want_grad = ref.unimo.pre_encoder_layer_norm.weight.grad.numpy()
    assert np.abs(got_grad - want_grad).max() <= 1e-4 * max(1.0, np.abs(want_grad).max())


def _villa_loss_and_grads(kind, config, fast: bool, monkeypatch, seed: int = 11):
    monkeypatch.setattr("unimo.model.modeling.TRAINING_FAST_PATH", fast)
    model = _model(kind, config)  # same seed -> same weights for both paths
    wrapper = VillaWrapper(model, adv_steps=2, adv_lr=0.5, adv_init_mag=0.4, adv_max_norm=0.3, kl_weight=0.7)
    wrapper.train()
    paddle.seed(seed)  # same deltas and dropout masks for both paths
    total, parts = wrapper(**_batch(kind, config, seed=4))
    total.backward()
    values = [float(total)] + [float(parts[k]) for k in sorted(parts)]
    values += [float(v) for step in wrapper.last_steps for _, v in sorted(step.items())]  # incl. the delta norms
    return values, {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["generation", "ve", "vqa"])
def test_fast_training_path_gives_the_plain_paths_villa_step(kind, tiny_config, monkeypatch):
    """The encoder's training fast path (modeling.TRAINING_FAST_PATH) under VILLA's paddle.grad w.r.t. the
    perturbations, with dropout active: total, parts, per-step values (so the ascent gradients, through the second
    step's deltas) and every parameter gradient are bit-identical to the plain path's -- the kernels compute the
    same floating-point operations in the same order (tests/test_training_step.py)."""
    values_plain, grads_plain = _villa_loss_and_grads(kind, tiny_config, False, monkeypatch)
    values_fast, grads_fast = _villa_loss_and_grads(kind, tiny_config, True, monkeypatch)
    assert values_fast == values_plain
    assert sorted(grads_fast) == sorted(grads_plain) and len(grads_plain) > 20
    for name in grads_plain:
        np.testing.assert_array_equal(grads_fast[name], grads_plain[name], err_msg=name)
    # dropout is active: the comparison covers the random masks (another seed, other deltas and masks)
    assert tiny_config.hidden_dropout_prob > 0
    assert _villa_loss_and_grads(kind, tiny_config, True, monkeypatch, seed=12)[0][0] != values_fast[0]


@pytest.mark.parametrize("kind", ["generation", "ve", "vqa"])
def test_every_pass_is_the_task_models_own_forward(kind, config, monkeypatch):
    """No second copy of the heads: each of the 3 passes per step calls the task model's forward, with the text
    delta, the image delta, or neither, and the total is built from the outputs it returned."""
    model = _model(kind, config)
    batch = _batch(kind, config)
    calls, losses = [], []
    forward = model.forward

    def spy(**kwargs):
        calls.append(tuple(k for k in ("text_embedding_delta", "image_feature_delta") if kwargs.get(k) is not None))
        out = forward(**kwargs)
        losses.append(float(out.loss))
        return out

    monkeypatch.setattr(model, "forward", spy)
    wrapper = VillaWrapper(model, adv_steps=2, adv_lr=0.1, adv_init_mag=0.4)
    wrapper.train()
    total, parts = wrapper(**batch)
    assert calls == [("text_embedding_delta",), ("image_feature_delta",), ()] * 2
    assert float(parts["adv_text"]) == pytest.approx((losses[0] + losses[3]) / 2, rel=1e-6)
    assert float(parts["adv_image"]) == pytest.approx((losses[1] + losses[4]) / 2, rel=1e-6)
    assert float(parts["pure"]) == pytest.approx((losses[2] + losses[5]) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="VILLA makes the perturbations itself"):
        wrapper(**batch, text_embedding_delta=paddle.zeros([B, T, config.hidden_size]))


def test_gradient_ascent_raises_the_perturbed_losses(config):
    model = _model("generation", config)
    batch = _batch("generation", config, seed=5)
    wrapper = VillaWrapper(model, adv_steps=4, adv_lr=1.0, adv_init_mag=0.0)
    wrapper.train()
    wrapper(**batch)
    text = [float(s["adv_text"]) for s in wrapper.last_steps]
    image = [float(s["adv_image"]) for s in wrapper.last_steps]
    pure = [float(s["pure"]) for s in wrapper.last_steps]
    assert all(b > a for a, b in zip(text, text[1:])), text
    assert all(b > a for a, b in zip(image, image[1:])), image
    assert pure == pytest.approx([pure[0]] * 4, rel=1e-6)  # the clean pass never moves
    # the delta norm grows by adv_lr per step while no projection applies (ascent directions roughly agree)
    norms = [float(s["text_delta_norm"]) for s in wrapper.last_steps]
    assert norms[0] == 0.0 and norms[1] == pytest.approx(1.0, rel=1e-5)
    assert all(b > a for a, b in zip(norms, norms[1:]))


# ------------------------------------------------------------------------------------------------------ the pieces
def test_ascend_is_normalised_per_example():
    delta = paddle.zeros([2, 3, 4])
    grad = paddle.to_tensor(np.stack([np.full((3, 4), 2.0), np.full((3, 4), -0.001)]).astype(np.float32))
    valid = paddle.to_tensor(np.array([[1, 1, 1], [1, 1, 0]], np.float32))
    new = ascend(delta, grad, valid, adv_lr=0.3).numpy()
    # example 0: g / ||g|| = 1 / sqrt(12) everywhere; example 1: only 8 valid entries, -1 / sqrt(8)
    np.testing.assert_allclose(new[0], np.full((3, 4), 0.3 / math.sqrt(12)), rtol=1e-6)
    np.testing.assert_allclose(new[1, :2], np.full((2, 4), -0.3 / math.sqrt(8)), rtol=1e-6)
    assert np.all(new[1, 2] == 0)
    assert np.linalg.norm(new[0]) == pytest.approx(0.3, rel=1e-6)
    # a zero gradient leaves the delta where it was (norm clamped at 1e-8, no NaN)
    same = ascend(paddle.ones([1, 2, 2]), paddle.zeros([1, 2, 2]), paddle.ones([1, 2]), adv_lr=0.5).numpy()
    np.testing.assert_array_equal(same, np.ones((1, 2, 2), np.float32))


def test_projection_bounds_the_norm():
    rng = np.random.default_rng(0)
    delta = paddle.to_tensor(np.stack([rng.normal(size=(3, 4)) * 0.01, rng.normal(size=(3, 4)) * 5]).astype("float32"))
    grad = paddle.to_tensor(rng.normal(size=(2, 3, 4)).astype("float32"))
    valid = paddle.ones([2, 3])
    new = ascend(delta, grad, valid, adv_lr=0.05, max_norm=0.4).numpy()
    norms = np.linalg.norm(new.reshape(2, -1), axis=1)
    unprojected = delta.numpy() + 0.05 * grad.numpy() / np.linalg.norm(grad.numpy().reshape(2, -1), axis=1)[:, None,
                                                                                                          None]
    # example 0 stays inside the ball: untouched; example 1 is pulled back onto the sphere, same direction
    np.testing.assert_allclose(new[0], unprojected[0], rtol=1e-6, atol=1e-7)
    assert norms[1] == pytest.approx(0.4, rel=1e-5)
    cos = (new[1] * unprojected[1]).sum() / (norms[1] * np.linalg.norm(unprojected[1]))
    assert cos == pytest.approx(1.0, abs=1e-6)
    # the official rule rescales by max_norm / ||g|| when ||g|| > max_norm (its norm check uses the gradient)
    official = ascend(delta, grad * 10, valid, adv_lr=0.05, max_norm=0.4, official_projection=True).numpy()
    g = (grad * 10).numpy()
    gn = np.linalg.norm(g.reshape(2, -1), axis=1)[:, None, None]
    want = (delta.numpy() + 0.05 * g / gn) * np.where(gn > 0.4, 0.4 / gn, 1.0)
    np.testing.assert_allclose(official, want, rtol=1e-5, atol=1e-8)


def test_init_delta_scale_and_mask():
    paddle.seed(0)
    valid = paddle.to_tensor(np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    d = init_delta(valid, 512, 0.4).numpy()
    assert d.shape == (3, 4, 512)
    assert np.all(d[1, 1:] == 0) and np.all(d[2] == 0)  # padding and an image without boxes stay clean
    # uniform(-1, 1) * 0.4 / sqrt(n * dim): bound, and the norm ~ 0.4 / sqrt(3) (variance of U(-1, 1) is 1/3)
    assert np.abs(d[0]).max() <= 0.4 / math.sqrt(4 * 512) + 1e-7
    assert np.abs(d[1, 0]).max() <= 0.4 / math.sqrt(512) + 1e-7
    for row in (0, 1):
        assert np.linalg.norm(d[row]) == pytest.approx(0.4 / math.sqrt(3), rel=0.05)
    assert np.all(init_delta(valid, 8, 0.0).numpy() == 0)


def test_symmetric_kl_hand_values():
    a = paddle.to_tensor([[0.0, 0.0], [1.0, 2.0]])
    b = paddle.to_tensor([[math.log(3.0), 0.0], [1.0, 2.0]])
    # row 0: q = (1/2, 1/2), p = (3/4, 1/4): sum (q - p)(log q - log p) = -1/4 log(2/3) + 1/4 log 2 = 1/4 log 3
    assert float(symmetric_kl(a, b)) == pytest.approx(0.25 * math.log(3.0) / 2, rel=1e-6)  # row 1 is 0
    assert float(symmetric_kl(b, a)) == pytest.approx(float(symmetric_kl(a, b)), rel=1e-7)
    assert float(symmetric_kl(a, a)) == 0.0
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 9)), rng.normal(size=(4, 9))
    q = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    p = np.exp(y) / np.exp(y).sum(-1, keepdims=True)
    official = (q * (np.log(q) - np.log(p)) + p * (np.log(p) - np.log(q))).sum(-1).mean()
    assert float(symmetric_kl(paddle.to_tensor(x, "float32"), paddle.to_tensor(y, "float32"))) == pytest.approx(
        official, rel=1e-5)
    # Bernoulli version: per answer KL(q||p) + KL(p||q), summed over answers
    sq, sp = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(-y))
    kl = lambda u, v: u * np.log(u / v) + (1 - u) * np.log((1 - u) / (1 - v))  # noqa: E731
    want = (kl(sq, sp) + kl(sp, sq)).sum(-1).mean()
    got = float(symmetric_bernoulli_kl(paddle.to_tensor(x, "float32"), paddle.to_tensor(y, "float32")))
    assert got == pytest.approx(want, rel=1e-5)
    assert float(symmetric_bernoulli_kl(paddle.to_tensor(x, "float32"), paddle.to_tensor(x, "float32"))) == 0.0


# ------------------------------------------------------------------------------------------------------ delegation
@pytest.mark.parametrize("kind", ["generation", "ve", "vqa"])
def test_wrapper_is_the_inner_model_outside_training(kind, config, tmp_path):
    model = _model(kind, config)
    batch = _batch(kind, config)
    wrapper = VillaWrapper(model, adv_steps=2, adv_lr=0.1, adv_init_mag=0.4)
    assert list(wrapper.state_dict()) == list(model.state_dict())
    assert [id(p) for p in wrapper.parameters()] == [id(p) for p in model.parameters()]
    assert wrapper.config is model.config and wrapper.unimo is model.unimo
    assert unwrap_model(wrapper) is model
    wrapper.eval()
    out_w, out_m = wrapper(**batch), model(**batch)
    assert type(out_w) is type(out_m)
    assert float(out_w.loss) == float(out_m.loss)
    np.testing.assert_array_equal(out_w.logits.numpy(), out_m.logits.numpy())
    # checkpoints are the plain model's: they load strictly into the plain class
    wrapper.save_pretrained(str(tmp_path / "ckpt"))
    loaded = type(model).from_pretrained(str(tmp_path / "ckpt"), strict=True)
    again = VillaWrapper.from_pretrained(str(tmp_path / "ckpt"))
    assert type(again) is type(model)
    loaded.eval()
    assert float(loaded(**batch).loss) == pytest.approx(float(out_m.loss), rel=1e-6)
    # set_state_dict goes to the inner model
    zeros = {k: paddle.zeros_like(v) for k, v in model.state_dict().items()}
    wrapper.set_state_dict(zeros)
    assert float(np.abs(model.unimo.pooled_fc_text.weight.numpy()).max()) == 0.0


def test_decoding_through_the_wrapper(config):
    from unimo.generation import DecodeConfig, greedy_search
    model = _model("generation", config)
    wrapper = VillaWrapper(model, adv_steps=1, adv_lr=0.1, adv_init_mag=0.4)
    inputs, _ = _inputs(config, cross_modal=False)
    valid = np.ones((B, R), np.float32)
    valid[1, 3:] = 0
    src = {"image_features": inputs["image_features"], "image_locations": inputs["image_locations"],
           "attention_mask": valid[:, :, None] * valid[:, None, :]}
    dcfg = DecodeConfig(max_out_len=4, eos_id=2)
    assert greedy_search(wrapper, src, valid, dcfg) == greedy_search(model, src, valid, dcfg)


def test_wrap_villa_config_and_errors(config):
    model = _model("ve", config)
    assert wrap_villa(model, {"adv_steps": 0}) is model
    assert wrap_villa(model, {}) is model
    w = wrap_villa(model, {"adv_steps": 4, "adv_lr": 0.05, "adv_init_mag": 0.4, "adv_max_norm": 0.4,
                           "adv_kl_weight": 1.0})
    assert isinstance(w, VillaWrapper) and isinstance(w, ModelWrapper)
    assert (w.adv_steps, w.adv_lr, w.adv_max_norm, w.with_pure_model) == (4, 0.05, 0.4, True)
    with pytest.raises(ValueError, match="adv_lr"):
        wrap_villa(model, {"adv_steps": 2, "adv_lr": -1.0})
    with pytest.raises(ValueError, match="adv_init_mag"):
        wrap_villa(model, {"adv_steps": 2, "adv_init_mag": float("nan")})
    with pytest.raises(ValueError, match="adv_steps"):
        wrap_villa(model, {"adv_steps": 1.5})
    for other in (UnimoForSequenceClassification(config), UnimoForRetrieval(config)):
        with pytest.raises(TypeError, match="supports UnimoForGeneration"):
            wrap_villa(other, {"adv_steps": 2})
    gen = _model("generation", config)
    assert isinstance(wrap_villa(gen, {"adv_steps": 1, "task": "img2txt"}), VillaWrapper)
    with pytest.raises(ValueError, match="task 'seq2seq' has none"):
        wrap_villa(gen, {"adv_steps": 1, "task": "seq2seq"})
    with pytest.raises(TypeError, match="already a training wrapper"):
        wrap_villa(w, {"adv_steps": 2})
    with pytest.raises(ValueError, match="input_ids and image_features"):
        w.train()
        w(input_ids=paddle.to_tensor([[0, 5, 2]]), labels=paddle.to_tensor([1]))


# ------------------------------------------------------------------------------------- Trainer on the demo SNLI-VE
@pytest.fixture(scope="module")
def demo_data(tmp_path_factory, repo_root):
    return build_demo_data(tmp_path_factory.mktemp("villa_demo"), 60)


def test_villa_trainer_steps_on_demo_ve(demo_data, dict_dir, repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMO_VISUALDL", "0")
    from unimo.finetune.tasks.base import ListDataset
    from unimo.finetune.tasks.multimodal import VisualEntailmentTask
    from unimo.training.trainer import UnimoTrainer, make_training_args
    from unimo.model.configuration import UnimoConfig
    from unimo.tokenizer import UnimoTokenizer

    out = tmp_path / "out"
    cfg = VisualEntailmentTask.config_class.from_values({"task": "visual_entailment",
           "data_dir": str(demo_data / "snli_ve"), "train_file": "ve_train.jsonl", "dev_file": "ve_dev.jsonl",
           "feature_store": str(demo_data / "world" / "features" / "store"), "max_img_len": 37,
           "batch_size": 8, "eval_batch_size": 8, "max_steps": 3, "save_steps": 3, "logging_steps": 1,
           "learning_rate": 1e-3,
           "disable_tqdm": True, "output_dir": str(out), "beta2": 0.999,
           "adv_steps": 2, "adv_lr": 0.05, "adv_max_norm": 0.4, "adv_init_mag": 0.4, "adv_kl_weight": 1.0})
    tokenizer = UnimoTokenizer.from_pretrained(str(dict_dir))
    task = VisualEntailmentTask(cfg, tokenizer, str(out))
    paddle.seed(1)
    model = task.build_model(UnimoConfig.from_json_file(str(repo_root / "model_files/config/unimo_tiny_en.json")))
    trained = wrap_villa(model, cfg)
    trainer = UnimoTrainer(model=trained, args=make_training_args(cfg, str(out)),
                           train_dataset=ListDataset(task.load("train")[:48]), data_collator=task.collate,
                           evaluate_fn=task.evaluate, key_metric=task.key_metric)
    trainer.train()
    logs = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 3
    for r in steps:
        parts = [r["loss_pure"], r["loss_adv_text"], r["loss_adv_image"], r["loss_kl"]]
        assert all(np.isfinite(parts)) and np.isfinite(r["loss"])
        # the logged total is pure + adv_text + adv_image + 1.0 * kl, and the KL of dropout-noisy passes is > 0
        assert r["loss"] == pytest.approx(sum(parts), rel=1e-3)
        assert r["loss_kl"] > 0
    # the Trainer's checkpoint is the plain model's state dict
    ckpt = out / "checkpoint-3" / "model_state.pdparams"
    state = paddle.load(str(ckpt))
    assert sorted(state) == sorted(model.state_dict())
    plain = UnimoForVisualEntailment(model.config)
    report = plain.load_weights(state, strict=True)
    assert not report.missing and not report.unexpected
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(plain.state_dict()[k].numpy(), v.numpy())
    # evaluation through the wrapper is the inner model's
    trained.eval()
    with paddle.no_grad():
        acc_wrapped = task.evaluate(trained, "dev")
        acc_plain = task.evaluate(unwrap_model(trained), "dev")
    assert acc_wrapped == acc_plain and 0.0 <= acc_plain["acc"] <= 1.0
    # and a save_pretrained checkpoint reloads as the plain class
    trained.save_pretrained(str(tmp_path / "best"))
    assert type(load_saved_model(str(tmp_path / "best"))) is UnimoForVisualEntailment
