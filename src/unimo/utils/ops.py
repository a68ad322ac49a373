"""Small numerical ops that work around slow Paddle CPU kernels."""
from __future__ import annotations

import paddle


def log_softmax(logits: paddle.Tensor, axis: int = -1) -> paddle.Tensor:
    """Numerically stable log-softmax. Paddle 3.3's CPU ``F.log_softmax`` kernel is pathologically slow on
    vocabulary-sized rows (31 s for [107, 50265] here, vs 0.09 s for this max-shifted form, forward and backward
    alike), which made every LM loss and every decoding step crawl."""
    shifted = logits - logits.max(axis=axis, keepdim=True).detach()
    return shifted - paddle.log(paddle.exp(shifted).sum(axis=axis, keepdim=True))


class _SmoothedCrossEntropy(paddle.autograd.PyLayer):
    """Per-row label-smoothed cross-entropy against (1 - eps) * onehot(y) + eps / V, fused by hand.

    loss_i = lse(x_i) - (1 - eps) * x_iy - eps * mean_j(x_ij);  d loss_i / d x_ij = softmax_ij - (1 - eps) [j = y] - eps / V.
    Composing it from Paddle ops took ~10 passes over the [N, V] logits on CPU (each vocabulary-sized); this takes
    three forward (max, exp-sum, mean) and two backward (exp, scale), which is most of a captioning step's time.
    """

    @staticmethod
    def forward(ctx, logits: paddle.Tensor, labels: paddle.Tensor, epsilon: float) -> paddle.Tensor:
        x = logits.astype("float32")
        with paddle.no_grad():
            m = x.max(axis=-1, keepdim=True)
            lse = m + paddle.log(paddle.exp(x - m).sum(axis=-1, keepdim=True))
            picked = paddle.take_along_axis(x, labels.unsqueeze(-1), axis=-1)
            loss = lse - (1.0 - epsilon) * picked
            if epsilon:
                loss = loss - epsilon * x.mean(axis=-1, keepdim=True)
        ctx.save_for_backward(x, labels, lse)
        ctx.epsilon = epsilon
        ctx.dtype = logits.dtype
        return loss.squeeze(-1)

    @staticmethod
    def backward(ctx, grad: paddle.Tensor):
        x, labels, lse = ctx.saved_tensor()
        eps = ctx.epsilon
        g = grad.unsqueeze(-1)
        dx = paddle.exp(x - lse)
        if eps:
            dx = dx - eps / x.shape[-1]
        dx = paddle.put_along_axis(dx, labels.unsqueeze(-1), -(1.0 - eps), axis=-1, reduce="add")
        return (dx * g).astype(ctx.dtype), None


def smoothed_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor, epsilon: float = 0.0) -> paddle.Tensor:
    """Per-row CE of ``logits`` [N, V] against int labels [N] with label smoothing ``epsilon`` (uniform over V)."""
    return _SmoothedCrossEntropy.apply(logits, labels.astype("int64"), float(epsilon))
