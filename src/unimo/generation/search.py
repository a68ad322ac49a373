"""Beam search (official ``fast_decode`` semantics), greedy search and sampling over a UNIMO generation model.

All three take the model (anything with ``.unimo`` and ``.lm_head``, i.e. :class:`UnimoForGeneration`), the source as
``UnimoModel`` keyword tensors (``attention_mask`` [B, Ls, Ls] included) and ``source_valid`` [B, Ls] (0/1), and
return one ``(token ids, score)`` per source. Ids exclude the BOS and everything from the first EOS on.

Beam-search bookkeeping follows the official static graph (``src/finetune/seq2seq.py:185-362`` and Paddle's
``beam_search`` / ``beam_search_decode`` ops):

* step 0 starts from one hypothesis (the BOS) per source; later steps from ``beam_size``;
* next-token log-probs come from a softmax over the logits, with -1e18 added to the EOS logit while
  ``step < min_out_len``; each live hypothesis proposes its ``beam_size`` most likely tokens;
* stored scores are length-penalised; a candidate's score is
  ``(log p + (prev_score * lp(step) + trigram delta)) / lp(step + 1)``, lp(n) = ((5 + n) / 6) ** alpha;
* a finished hypothesis (last token EOS) proposes only itself, score unchanged;
* the best ``beam_size`` candidates per source survive; a source stops when all its hypotheses are finished, the
  search when every source stopped or ``max_out_len`` tokens were generated;
* the output is the surviving hypothesis with the highest score.

Scores use float32 like the official graph. One deliberate difference: log-probs come from ``log_softmax``, so a
token of probability 0 scores about -1e18 instead of -inf (only matters when fewer than ``beam_size`` tokens are
possible).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np
import paddle
import paddle.nn.functional as F

from ..utils.ops import log_softmax  # Paddle's CPU F.log_softmax is ~400x slower on vocab rows
from .config import BeamSearchConfig, DecodeConfig, SamplingConfig
from .decoder import ArrayLike, make_decoder
from .trigram import block_deltas

_NUCLEUS_HEAD = 256
EOS_BLOCK = -1e18  # official: added to the EOS logit while step < min_out_len
# (step, logits [N, V], source index of each row [N]) -> logits; rows follow the live hypotheses
LogitsProcessor = Callable[[int, paddle.Tensor, np.ndarray], paddle.Tensor]
StepCallback = Callable[[int], None]
Hypothesis = tuple[list[int], float]


def length_penalty(n: int, alpha: float) -> np.float32:
    """GNMT length penalty ((5 + n) / 6) ** alpha in float32 (official ``layers.pow`` on float32)."""
    return np.float32(np.power(np.float32((5.0 + n) / 6.0), np.float32(alpha)))


@contextlib.contextmanager
def _inference(model: Any) -> Iterator[None]:
    """Eval mode (no dropout), no autograd and no stride kernels for the duration; all restored afterwards.

    Stride kernels: with Paddle 3.3's default ``FLAGS_use_stride_kernel=True`` a transpose is a strided view and
    the copy that ``scaled_dot_product_attention`` then makes on CPU runs ~10x slower than a plain transpose
    kernel: at decoding shapes (one query row, ~150 cached keys) attention took 17 ms per layer instead of 2 ms,
    half of every decoding step (bench/bench_generation.py). Results are identical either way (tests pass in both).
    """
    was_training = model.training
    stride_flag = "FLAGS_use_stride_kernel"
    stride = paddle.get_flags([stride_flag])[stride_flag]
    model.eval()
    paddle.set_flags({stride_flag: False})
    backbone = getattr(model, "unimo", model)
    try:
        with paddle.no_grad():
            if hasattr(backbone, "freeze_fused_qkv"):
                backbone.freeze_fused_qkv(True)
            yield
    finally:
        if hasattr(backbone, "freeze_fused_qkv"):
            backbone.freeze_fused_qkv(False)
        paddle.set_flags({stride_flag: stride})
        if was_training:
            model.train()


def _resolve(config: Optional[DecodeConfig], default: type, overrides: dict[str, Any], model: Any) -> Any:
    cfg = config if config is not None else default()
    if not isinstance(cfg, default):
        raise TypeError(f"config must be a {default.__name__}, got {type(cfg).__name__}")
    if overrides:
        cfg = cfg.updated(**overrides)
    if cfg.eos_id == cfg.bos_id:
        raise ValueError(f"eos_id and bos_id must differ (both {cfg.eos_id}): the BOS would end every hypothesis")
    mc = model.unimo.config
    cfg.check_model(mc.vocab_size, mc.max_position_embeddings)
    return cfg


def _revised_logits(logits: paddle.Tensor, step: int, cfg: DecodeConfig, processor: Optional[LogitsProcessor],
                    row_sources: np.ndarray) -> paddle.Tensor:
    if processor is not None:
        logits = processor(step, logits, row_sources)
    if step < cfg.min_out_len:
        bias = paddle.zeros([logits.shape[-1]], dtype=logits.dtype)
        bias[cfg.eos_id] = EOS_BLOCK
        logits = logits + bias
    return logits


def _top_log_probs(logits: paddle.Tensor, k: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """``topk(log_softmax(logits), k)`` without the full [N, V] log-softmax: top-k over the logits, then the same
    arithmetic as :func:`log_softmax` on the k values only ((x - max) - log(sum(exp(x - max)))), so the values are
    bitwise those of the full form (log-softmax is monotonic per row: same order)."""
    m = logits.max(axis=-1, keepdim=True)
    shifted = logits - m
    lse = paddle.log(paddle.exp(shifted).sum(axis=-1, keepdim=True))
    top_s, top_i = paddle.topk(shifted, k, axis=-1)
    return top_s - lse, top_i


def _check_finite(values: np.ndarray, step: int) -> None:
    if np.isnan(values).any():
        raise FloatingPointError(f"NaN in the next-token log-probabilities at decoding step {step} "
                                 "(NaN model weights or inputs, or a logits processor that masked every token)")


def strip_hypothesis(tokens: np.ndarray | list[int], eos_id: int) -> list[int]:
    """Generated tokens (BOS excluded) cut at the first EOS (official ``post_process_seq``)."""
    out = []
    for t in tokens:
        t = int(t)
        if t == eos_id:
            break
        out.append(t)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Beam search
# ----------------------------------------------------------------------------------------------------------------
def beam_search(model: Any, source: Mapping[str, Any], source_valid: ArrayLike,
                config: Optional[BeamSearchConfig] = None, *, logits_processor: Optional[LogitsProcessor] = None,
                use_cache: bool = True, return_all: bool = False, callback: Optional[StepCallback] = None,
                **overrides: Any) -> list[Any]:
    """Beam search with the official semantics (see the module docstring).

    ``overrides`` replace fields of ``config`` (e.g. ``beam_size=5, length_penalty=0.6``). ``logits_processor``
    maps ``(step, logits [N, V], source index of each row [N])`` to new logits before the min-length mask
    (constraints, vocabulary restriction). ``use_cache=False`` recomputes the whole sequence every step
    (reference/benchmark). ``callback(step)`` runs after every step (progress, timing). Returns per source the best
    ``(ids, score)``, or with ``return_all`` every surviving hypothesis sorted by score (best first).
    """
    cfg: BeamSearchConfig = _resolve(config, BeamSearchConfig, overrides, model)
    k = cfg.beam_size
    word_start = np.asarray(cfg.word_start, dtype=bool) if cfg.trigram_blocking else None
    neg_inf = np.float32(-np.inf)
    with _inference(model):
        dec = make_decoder(model, source, source_valid, cfg.bos_position, use_cache)
        num_sources = dec.num_rows
        results: list[Any] = [None] * num_sources
        active = np.arange(num_sources)  # source index of every live source, in decoder row order
        k_prev = 1  # hypotheses per source in the decoder rows (1 at step 0: the BOS only)
        seqs = np.full((num_sources, 1, 1), cfg.bos_id, dtype=np.int64)  # [S, k_prev, t + 1], BOS included
        scores = np.zeros((num_sources, 1), dtype=np.float32)  # length-penalised, as the official graph stores
        feed = np.full(num_sources, cfg.bos_id, dtype=np.int64)
        for step in range(cfg.max_out_len):
            logits = _revised_logits(dec.step(feed), step, cfg, logits_processor, np.repeat(active, k_prev))
            top_v, top_i = _top_log_probs(logits, k)
            ns = len(active)
            top_v = top_v.numpy().reshape(ns, k_prev, k)
            top_i = top_i.numpy().astype(np.int64).reshape(ns, k_prev, k)
            _check_finite(top_v, step)

            pre = scores * length_penalty(step, cfg.length_penalty)  # un-penalise the stored scores
            if word_start is not None:
                delta = np.zeros((ns, k_prev, k), dtype=np.float32)
                for s in range(ns):
                    for j in range(k_prev):
                        if seqs[s, j, -1] != cfg.eos_id:
                            delta[s, j] = block_deltas(seqs[s, j], top_i[s, j], word_start)
                pre = delta + pre[:, :, None]
            else:
                pre = pre[:, :, None]
            cand = (top_v + pre) / length_penalty(step + 1, cfg.length_penalty)

            finished = seqs[:, :, -1] == cfg.eos_id  # [S, k_prev]; they propose only themselves, unchanged
            if finished.any():
                cand[finished] = neg_inf
                cand[finished, 0] = scores[finished]
                top_i[finished, 0] = cfg.eos_id
            flat = cand.reshape(ns, k_prev * k)
            order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(flat, order, axis=1)
            parent = order // k
            new_ids = np.take_along_axis(top_i.reshape(ns, k_prev * k), order, axis=1)
            seqs = np.concatenate([np.take_along_axis(seqs, parent[:, :, None], axis=1), new_ids[:, :, None]], axis=2)
            rows = (np.arange(ns)[:, None] * k_prev + parent).reshape(-1)  # decoder rows of the parents

            done = (new_ids == cfg.eos_id).all(axis=1)
            if step == cfg.max_out_len - 1:
                done[:] = True
            for s in np.nonzero(done)[0]:
                results[active[s]] = _finalise(seqs[s], scores[s], cfg.eos_id, return_all)
            if callback is not None:
                callback(step)
            if done.all():
                break
            if done.any():  # drop finished sources from the batch (their hypotheses can no longer change)
                keep = ~done
                active, seqs, scores, new_ids = active[keep], seqs[keep], scores[keep], new_ids[keep]
                rows = rows.reshape(ns, k)[keep].reshape(-1)
            dec.select(rows)
            feed = new_ids.reshape(-1)
            k_prev = k
    return results


def _finalise(seqs: np.ndarray, scores: np.ndarray, eos_id: int, return_all: bool) -> Any:
    hyps = [(strip_hypothesis(seqs[j, 1:], eos_id), float(scores[j])) for j in range(len(scores))]
    order = np.argsort(-scores, kind="stable")
    if return_all:
        return [hyps[j] for j in order]
    return hyps[int(order[0])]


# ----------------------------------------------------------------------------------------------------------------
# Greedy search and sampling: one hypothesis per source
# ----------------------------------------------------------------------------------------------------------------
def _single_path(model: Any, source: Mapping[str, Any], source_valid: ArrayLike, cfg: DecodeConfig,
                 choose: Callable[[int, paddle.Tensor, paddle.Tensor], np.ndarray],
                 logits_processor: Optional[LogitsProcessor], use_cache: bool,
                 callback: Optional[StepCallback]) -> list[Hypothesis]:
    """Shared loop: ``choose(step, logits, log_probs) -> ids [N]``; score = sum(log p) / lp(n), log p from the
    revised logits (processor and min-length mask applied, no temperature or filtering)."""
    with _inference(model):
        dec = make_decoder(model, source, source_valid, cfg.bos_position, use_cache)
        num_sources = dec.num_rows
        active = np.arange(num_sources)
        tokens: list[list[int]] = [[] for _ in range(num_sources)]
        total = np.zeros(num_sources, dtype=np.float32)
        feed = np.full(num_sources, cfg.bos_id, dtype=np.int64)
        for step in range(cfg.max_out_len):
            logits = _revised_logits(dec.step(feed), step, cfg, logits_processor, active)
            log_probs = log_softmax(logits)
            ids = choose(step, logits, log_probs)
            picked = paddle.take_along_axis(log_probs, paddle.to_tensor(ids[:, None]), axis=1).numpy()[:, 0]
            _check_finite(picked, step)
            for row, s in enumerate(active):
                tokens[s].append(int(ids[row]))
            total[active] += picked
            if callback is not None:
                callback(step)
            alive = ids != cfg.eos_id
            if not alive.any():
                break
            if not alive.all():
                dec.select(np.nonzero(alive)[0])
                active, ids = active[alive], ids[alive]
            feed = ids
    return [(strip_hypothesis(t, cfg.eos_id), float(total[s] / length_penalty(len(t), cfg.length_penalty)))
            for s, t in enumerate(tokens)]


def greedy_search(model: Any, source: Mapping[str, Any], source_valid: ArrayLike,
                  config: Optional[DecodeConfig] = None, *, logits_processor: Optional[LogitsProcessor] = None,
                  use_cache: bool = True, callback: Optional[StepCallback] = None,
                  **overrides: Any) -> list[Hypothesis]:
    """Arg-max decoding; the score is sum(log p) / lp(n) with the config's length penalty (as beam search with
    ``beam_size=1``, which gives the same ids)."""
    cfg = _resolve(config, DecodeConfig, overrides, model)

    def choose(step: int, logits: paddle.Tensor, log_probs: paddle.Tensor) -> np.ndarray:
        return log_probs.argmax(axis=-1).numpy().astype(np.int64).reshape(-1)

    return _single_path(model, source, source_valid, cfg, choose, logits_processor, use_cache, callback)


def sample(model: Any, source: Mapping[str, Any], source_valid: ArrayLike, config: Optional[SamplingConfig] = None,
           *, logits_processor: Optional[LogitsProcessor] = None, use_cache: bool = True,
           callback: Optional[StepCallback] = None, **overrides: Any) -> list[Hypothesis]:
    """Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

    Per step: logits / temperature; keep the ``top_k`` best (if > 0); keep the smallest best-first prefix whose
    probability reaches ``top_p`` (the best token always stays); renormalise and draw with
    ``numpy.random.default_rng(seed)``. The score is the model's log-likelihood (before temperature/filters)
    divided by lp(n).
    """
    cfg: SamplingConfig = _resolve(config, SamplingConfig, overrides, model)
    rng = np.random.default_rng(cfg.seed)

    def choose(step: int, logits: paddle.Tensor, log_probs: paddle.Tensor) -> np.ndarray:
        scaled = logits / cfg.temperature
        vocab = scaled.shape[-1]
        if cfg.top_k > 0:
            vals, idx = paddle.topk(scaled, min(cfg.top_k, vocab), axis=-1)
            probs_t = F.softmax(vals, axis=-1)  # renormalised over the k best
        elif cfg.top_p < 1.0:
            # The nucleus only needs the best tokens in order: sort a short head, and the whole vocabulary only when
            # that head holds less than top_p of the mass (a full sort costs ~4 ms per row on CPU).
            full = F.softmax(scaled, axis=-1)
            probs_t, idx = paddle.topk(full, min(_NUCLEUS_HEAD, vocab), axis=-1)
            if float(probs_t.sum(axis=-1).min()) < cfg.top_p:
                probs_t, idx = paddle.topk(full, vocab, axis=-1)
        else:
            probs_t, idx = F.softmax(scaled, axis=-1), None
        probs = probs_t.numpy().astype(np.float64)
        if cfg.top_p < 1.0:  # probs are sorted best first here
            before = np.cumsum(probs, axis=1) - probs  # mass of the better tokens
            probs = np.where(before < cfg.top_p, probs, 0.0)
        if np.isnan(probs).any():
            raise FloatingPointError(f"NaN in the sampling distribution at decoding step {step}")
        cum = np.cumsum(probs, axis=1)
        u = rng.random(len(probs)) * cum[:, -1]
        choice = np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)
        if idx is None:
            return choice.astype(np.int64)
        return np.take_along_axis(idx.numpy().astype(np.int64), choice[:, None], axis=1)[:, 0]

    return _single_path(model, source, source_valid, cfg, choose, logits_processor, use_cache, callback)
