"""Pre-training losses against independent numpy (float64) computations and hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from unimo.pretrain.losses import (cmcl_loss, cmcl_masks, cosine_similarity_matrix, label_smoothed_cross_entropy,
                                   masked_lm_loss, region_classification_loss, region_feature_regression_loss)


def t(x, grad=False, dtype="float32"):
    out = paddle.to_tensor(np.asarray(x), dtype=dtype)
    out.stop_gradient = not grad
    return out


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------------------ token CE
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_label_smoothed_ce_vs_numpy(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (7, 11))
    labels = np.array([3, -100, 0, 10, 5, -100, 7])
    x = t(logits, grad=True)
    loss = label_smoothed_cross_entropy(x, t(labels, dtype="int64"), epsilon=eps)
    loss.backward()
    # numpy: explicit soft target (1 - eps) onehot + eps / V, cross-entropy, mean over labelled rows
    logp = np_log_softmax(logits)
    valid = labels != -100
    soft = np.full(logits.shape, eps / 11)
    soft[np.flatnonzero(valid), labels[valid]] += 1 - eps
    per_row = -(soft * logp).sum(-1)
    assert float(loss) == pytest.approx(per_row[valid].mean(), rel=1e-5)
    grad = (np.exp(logp) - soft) / valid.sum()  # d/dlogits of mean soft CE
    grad[~valid] = 0.0
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-4, atol=1e-6)
    s = label_smoothed_cross_entropy(t(logits), t(labels, dtype="int64"), epsilon=eps, reduction="sum")
    assert float(s) == pytest.approx(per_row[valid].sum(), rel=1e-5)
    none = label_smoothed_cross_entropy(t(logits), t(labels, dtype="int64"), epsilon=eps, reduction="none")
    np.testing.assert_allclose(none.numpy(), np.where(valid, per_row, 0.0), rtol=1e-5)


def test_masked_lm_loss_matches_paddle_cross_entropy_and_3d():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (2, 5, 13)).astype(np.float32)
    labels = rng.integers(0, 13, (2, 5))
    labels[0, 1] = labels[1, 4] = -100
    ours = masked_lm_loss(t(logits), t(labels, dtype="int64"))
    # Paddle 3.3's F.cross_entropy(reduction="mean") divides by *all* rows when ignore_index < 0, so compare with
    # its sum over the 8 labelled positions instead
    ref = F.cross_entropy(t(logits.reshape(-1, 13)), t(labels.reshape(-1), dtype="int64"), ignore_index=-100,
                          reduction="sum") / 8
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)


def test_token_loss_empty_and_errors():
    x = t(np.zeros((3, 4)), grad=True)
    loss = masked_lm_loss(x, t([-100, -100, -100], dtype="int64"))
    assert float(loss) == 0.0
    loss.backward()
    assert np.all(x.grad.numpy() == 0)
    with pytest.raises(ValueError, match=r"labels\[1\] = 4 is outside"):
        masked_lm_loss(t(np.zeros((3, 4))), t([0, 4, -100], dtype="int64"))
    with pytest.raises(ValueError, match="does not match"):
        masked_lm_loss(t(np.zeros((3, 4))), t([0, 1], dtype="int64"))
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothed_cross_entropy(t(np.zeros((3, 4))), t([0, 1, 2], dtype="int64"), epsilon=1.0)
    with pytest.raises(ValueError, match="reduction"):
        masked_lm_loss(t(np.zeros((3, 4))), t([0, 1, 2], dtype="int64"), reduction="avg")


# ------------------------------------------------------------------------------------------------ regions
def test_region_feature_regression_vs_numpy():
    rng = np.random.default_rng(2)
    pred, target = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    p, q = t(pred, grad=True), t(target, grad=True)
    loss = region_feature_regression_loss(p, q)
    loss.backward()
    assert float(loss) == pytest.approx(((pred - target) ** 2).sum(-1).mean(), rel=1e-5)
    np.testing.assert_allclose(p.grad.numpy(), 2 * (pred - target) / 4, rtol=1e-4, atol=1e-6)
    assert q.grad is None or np.all(q.grad.numpy() == 0)  # the target is a constant
    # hand: ||(1,2)-(0,0)||^2 = 5, ||(0,0)-(3,4)||^2 = 25 -> mean 15
    assert float(region_feature_regression_loss(t([[1, 2], [0, 0]]), t([[0, 0], [3, 4]]))) == pytest.approx(15.0)
    empty = region_feature_regression_loss(t(np.zeros((0, 6)), grad=True), t(np.zeros((0, 6))))
    assert float(empty) == 0.0
    with pytest.raises(ValueError, match=r"\[M, D\]"):
        region_feature_regression_loss(t(np.zeros((2, 3))), t(np.zeros((2, 4))))


def test_region_classification_hard_and_soft_vs_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (5, 7))
    prob = rng.dirichlet(np.ones(7), size=5)
    prob[1, [0, 2, 6]] = 0.0  # zeros in the target must not produce NaN
    prob[1] /= prob[1].sum()
    logp = np_log_softmax(logits)
    hard = region_classification_loss(t(logits), t(prob), soft=False)
    assert float(hard) == pytest.approx(-logp[np.arange(5), prob.argmax(-1)].mean(), rel=1e-5)
    x = t(logits, grad=True)
    soft = region_classification_loss(x, t(prob), soft=True)
    soft.backward()
    kl = np.array([sum(p * (math.log(p) - lq) for p, lq in zip(prob[i], logp[i]) if p > 0) for i in range(5)])
    assert float(soft) == pytest.approx(kl.mean(), rel=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), (np.exp(logp) - prob) / 5, rtol=1e-4, atol=1e-6)
    # a target without its background column is renormalised: same loss as the normalised distribution
    unnorm = prob * 0.7
    assert float(region_classification_loss(t(logits), t(unnorm), soft=True)) == pytest.approx(float(soft), rel=1e-5)
    # target equal to the prediction -> KL 0
    same = np.exp(logp)
    assert float(region_classification_loss(t(logits), t(same), soft=True)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="row 2 sums to 0"):
        bad = prob.copy()
        bad[2] = 0
        region_classification_loss(t(logits), t(bad), soft=True)
    with pytest.raises(ValueError, match="negative"):
        region_classification_loss(t(logits), t(prob - 0.5), soft=True)


# ------------------------------------------------------------------------------------------------ CMCL
def np_cmcl(img, txt, pos, cand, tau, symmetric=False):
    """Independent float64 implementation with explicit loops (multi-positive InfoNCE, mean over positives)."""
    img = np.asarray(img, np.float64)
    txt = np.asarray(txt, np.float64)
    sim = np.array([[a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in txt] for a in img]) / tau
    cand = np.asarray(cand, bool) | np.asarray(pos, bool)

    def direction(s, p, c):
        losses = []
        for i in range(s.shape[0]):
            positives = [k for k in range(s.shape[1]) if p[i, k]]
            if not positives:
                continue
            denom = sum(math.exp(s[i, k]) for k in range(s.shape[1]) if c[i, k])
            losses.append(np.mean([-math.log(math.exp(s[i, k]) / denom) for k in positives]))
        return float(np.mean(losses))

    forward = direction(sim, np.asarray(pos, bool), cand)
    if not symmetric:
        return forward
    return 0.5 * (forward + direction(sim.T, np.asarray(pos, bool).T, cand.T))


def test_cmcl_hand_values():
    img = t([[1.0, 0.0]])
    # cosines 1, 0, -1 with tau = 1: -log(e / (e + 1 + 1/e)) = log(1 + e^-1 + e^-2) = 0.40760596
    txt = t([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert float(cmcl_loss(img, txt, np.array([[1, 0, 0]]), None, 1.0)) == pytest.approx(0.40760596, abs=1e-6)
    assert math.log(1 + math.exp(-1) + math.exp(-2)) == pytest.approx(0.40760596, abs=1e-8)
    # two identical positives: one term per positive, averaged -> log(2 + e^-1) = 0.86199480 (summing the
    # positives inside the log would give log(1 + 1/(2e)) = 0.16885 instead)
    txt2 = t([[1.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    assert float(cmcl_loss(img, txt2, np.array([[1, 1, 0]]), None, 1.0)) == pytest.approx(0.86199480, abs=1e-6)
    # a candidate mask that drops the negative: only the two positives remain -> log 2 each
    assert float(cmcl_loss(img, txt2, np.array([[1, 1, 0]]), np.array([[0, 0, 0]]), 1.0)) == pytest.approx(
        math.log(2), abs=1e-6)


def test_cmcl_vs_numpy_with_masks_and_gradients():
    rng = np.random.default_rng(4)
    b, k, e = 3, 9, 6
    img, txt = rng.normal(size=(b, e)), rng.normal(size=(k, e))
    # image 0: 2 positives (caption + back-translation) and 2 own hard negatives; image 1: 1 positive, 1 hard
    # negative; image 2: 2 positives, 1 hard negative
    owner = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    is_pos = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0], bool)
    pos, cand = cmcl_masks(owner, is_pos, b, share_hard_negatives=False)
    assert pos.astype(int).tolist() == [[1, 1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0],
                                        [0, 0, 0, 0, 0, 0, 1, 1, 0]]
    assert cand.astype(int).tolist() == [[1, 1, 1, 1, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1, 1, 1, 0],
                                         [1, 1, 0, 0, 1, 0, 1, 1, 1]]
    _, cand_all = cmcl_masks(owner, is_pos, b)
    assert cand_all.all()
    for tau in (0.07, 0.5):
        for cmask in (cand, None):
            for sym in (False, True):
                x, y = t(img, grad=True), t(txt, grad=True)
                loss = cmcl_loss(x, y, pos, cmask, tau, symmetric=sym)
                ref = np_cmcl(img, txt, pos, np.ones((b, k), bool) if cmask is None else cmask, tau, sym)
                assert float(loss) == pytest.approx(ref, rel=2e-5), (tau, cmask is None, sym)
                loss.backward()
                assert np.isfinite(x.grad.numpy()).all() and np.isfinite(y.grad.numpy()).all()
    # gradient w.r.t. the image embeddings against central differences of the numpy loss
    x, y = t(img, grad=True), t(txt, grad=True)
    cmcl_loss(x, y, pos, cand, 0.5).backward()
    num = np.zeros_like(img)
    h = 1e-5
    for i in range(b):
        for j in range(e):
            d = np.zeros_like(img)
            d[i, j] = h
            num[i, j] = (np_cmcl(img + d, txt, pos, cand, 0.5) - np_cmcl(img - d, txt, pos, cand, 0.5)) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=2e-3, atol=2e-5)


def test_cmcl_skips_images_without_positive_and_learnable_temperature():
    rng = np.random.default_rng(5)
    img, txt = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    pos = np.zeros((3, 5), bool)
    pos[0, 0] = pos[2, 3] = True  # image 1 has no positive: left out of the mean
    ref = np_cmcl(img, txt, pos, np.ones((3, 5), bool), 0.1)
    assert float(cmcl_loss(t(img), t(txt), pos, None, 0.1)) == pytest.approx(ref, rel=2e-5)
    none = cmcl_loss(t(img), t(txt), pos, None, 0.1, reduction="none")
    assert none.shape == [3] and float(none[1]) == 0.0
    tau = paddle.create_parameter([1], "float32", default_initializer=paddle.nn.initializer.Constant(0.1))
    loss = cmcl_loss(t(img), t(txt), paddle.to_tensor(pos), None, tau)
    assert float(loss) == pytest.approx(ref, rel=2e-5)
    loss.backward()
    assert tau.grad is not None and np.isfinite(tau.grad.numpy()).all() and float(tau.grad.numpy().reshape(-1)[0]) != 0.0
    with pytest.raises(ValueError, match="no image has a positive"):
        cmcl_loss(t(img), t(txt), np.zeros((3, 5), bool), None, 0.1)
    with pytest.raises(ValueError, match=r"positive_mask must have shape \[3, 5\]"):
        cmcl_loss(t(img), t(txt), np.zeros((3, 4), bool), None, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        cmcl_loss(t(img), t(txt), pos, None, 0.0)
    with pytest.raises(ValueError, match="owner"):
        cmcl_masks(np.array([0, 3]), np.array([True, True]), 3)


def test_cosine_similarity_matrix():
    a = t([[3.0, 4.0], [0.0, 0.0]])
    b = t([[4.0, 3.0], [-3.0, -4.0]])
    sim = cosine_similarity_matrix(a, b).numpy()
    np.testing.assert_allclose(sim, [[24 / 25, -1.0], [0.0, 0.0]], atol=1e-6)  # zero vector -> 0, not NaN
