"""The training-step kernels of issue 16 (``modeling.TRAINING_FAST_PATH``: matmul-based linear backward, fused
dropout + residual add) leave the model's loss and every gradient bit-identical to the plain path (F.linear,
x + F.dropout) -- with dropout active (same random masks for the same seed), under activation recomputation, with
frozen parameters, for text and image+text inputs, and under partial backward passes (``paddle.grad`` w.r.t. an input
only, as VILLA's ascent steps take it, or w.r.t. the parameters only) and a create_graph double backward of the
linear -- and are not used outside training."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

import unimo.model.modeling as modeling
from unimo.model.modeling import UnimoForGeneration, UnimoForVisualEntailment


@pytest.fixture(autouse=True)
def restore_flag():
    yield
    modeling.TRAINING_FAST_PATH = True


def _loss_and_grads(model, inputs, fast: bool, seed: int = 123):
    modeling.TRAINING_FAST_PATH = fast
    paddle.seed(seed)
    out = model(**inputs)
    out.loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    model.clear_gradients()
    return float(out.loss), grads


def _assert_identical(model, inputs):
    loss_plain, g_plain = _loss_and_grads(model, inputs, False)
    loss_fast, g_fast = _loss_and_grads(model, inputs, True)
    assert loss_fast == loss_plain
    assert sorted(g_fast) == sorted(g_plain) and len(g_plain) > 10
    for name in g_plain:
        np.testing.assert_array_equal(g_fast[name], g_plain[name], err_msg=name)
    other_seed, _ = _loss_and_grads(model, inputs, True, seed=7)
    assert other_seed != loss_fast  # dropout is active: the comparison covers the random masks


def _generation_inputs(rng):
    mask = np.ones((3, 11, 11), np.float32)
    mask[1, :, 8:] = 0
    return {"input_ids": paddle.to_tensor(rng.integers(4, 50000, (3, 11))), "attention_mask": paddle.to_tensor(mask),
            "label_positions": paddle.to_tensor(rng.integers(0, 33, (7,))),
            "labels": paddle.to_tensor(rng.integers(0, 50000, (7,)))}


@pytest.mark.parametrize("recompute", [False, True])
def test_text_model_loss_and_gradients_unchanged(tiny_config, recompute):
    paddle.seed(0)
    model = UnimoForGeneration(tiny_config, label_smoothing=0.1)
    model.train()
    model.unimo.enable_recompute = recompute
    _assert_identical(model, _generation_inputs(np.random.default_rng(0)))


def test_frozen_parameters_and_image_inputs(tiny_config):
    paddle.seed(1)
    model = UnimoForVisualEntailment(tiny_config, hidden=32)
    model.train()
    for layer in model.unimo.layers[:1]:  # a frozen first layer: no gradient asked for its weights
        for p in layer.parameters():
            p.stop_gradient = True
    rng = np.random.default_rng(2)
    inputs = {"input_ids": paddle.to_tensor(rng.integers(4, 50000, (2, 6))),
              "image_features": paddle.to_tensor(rng.normal(size=(2, 4, 2048)).astype(np.float32)),
              "image_locations": paddle.to_tensor(rng.uniform(size=(2, 4, 5)).astype(np.float32)),
              "labels": paddle.to_tensor(np.array([0, 2]))}
    _assert_identical(model, inputs)
    _, grads = _loss_and_grads(model, inputs, True)
    assert not any(n.startswith("unimo.layers.0.") for n in grads)


def test_fast_path_is_training_only(tiny_config, monkeypatch):
    calls = []
    original = modeling._linear_row_bias
    monkeypatch.setattr(modeling, "_linear_row_bias", lambda *a: calls.append(1) or original(*a))
    paddle.seed(0)
    model = UnimoForGeneration(tiny_config)
    inputs = _generation_inputs(np.random.default_rng(0))
    model.eval()
    model(**inputs)
    assert calls == []
    model.train()
    with paddle.no_grad():
        model(**inputs)
    assert calls == []
    model(**inputs)
    assert len(calls) == 4 * tiny_config.num_hidden_layers  # qkv, output, ffn_0, ffn_1 of every layer


def _linear_case(fast: bool, frozen_bias: bool = False):
    paddle.seed(3)
    x = paddle.randn([3, 5, 16])
    w, b = paddle.randn([16, 24]), paddle.randn([24])
    for t in (x, w):
        t.stop_gradient = False
    b.stop_gradient = frozen_bias
    y = modeling._linear_row_bias(x, w, b) if fast else paddle.nn.functional.linear(x, w, b)
    return x, w, b, paddle.tanh(y).sum()  # a non-linear loss: the double backward below is not trivially zero


@pytest.mark.parametrize("frozen_bias", [False, True])
def test_linear_under_partial_and_double_backward(frozen_bias):
    """paddle.grad w.r.t. the input only (the parameter edges are pruned: a PyLayer taking the weight used to fail
    there), then the full backward on the retained graph; paddle.grad w.r.t. the parameters only; and a
    create_graph double backward: every value equals F.linear's bit for bit."""
    got = {}
    for fast in (False, True):
        out = []
        x, w, b, loss = _linear_case(fast, frozen_bias)
        out.append(paddle.grad(loss, x, retain_graph=True)[0])
        loss.backward()
        out += [x.grad, w.grad] + ([] if frozen_bias else [b.grad])
        x, w, b, loss = _linear_case(fast, frozen_bias)
        out += paddle.grad(loss, [w] if frozen_bias else [w, b])
        x, w, b, loss = _linear_case(fast, frozen_bias)
        (gx,) = paddle.grad(loss, x, create_graph=True)
        (gx ** 2).sum().backward()
        out += [w.grad] + ([] if frozen_bias else [b.grad])
        got[fast] = [t.numpy() for t in out]
    assert len(got[True]) == len(got[False]) == (5 if frozen_bias else 8)
    for i, (fast, plain) in enumerate(zip(got[True], got[False])):
        assert np.abs(plain).max() > 0, i
        np.testing.assert_array_equal(fast, plain, err_msg=str(i))
