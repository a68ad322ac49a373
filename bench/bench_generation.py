"""Beam-search decoding speed of the base model (random weights): KV cache vs recompute-every-step, and against
Hugging Face ``generate`` (num_beams) on a same-size RoBERTa-style causal decoder in torch (run in the oracle venv).

Every run generates exactly ``--out-len`` tokens (min_out_len = max_out_len, so EOS never ends it early). Per-step
times come from the step callback; step 1 includes encoding the source. The cached search and HF ``generate`` run
``--repeats`` times and report the fastest run (other processes on a shared machine only ever add time); the
recompute baseline runs once. The load average is recorded. Prints JSON (bench/results/generation[_TAG].json).

The same run measures the machine's memory bandwidth (a streaming numpy sum over a 1.5 GB float32 array, best of 3)
and reports every step time as a multiple of the per-step memory floor: the bytes a step must read at least once
(backbone encoder weights + the tied 50265 x 768 output embedding + LM-head transform, fp32, plus the KV cache at
that step) divided by that bandwidth. ``exported``: the same search over the model exported with
``python -m unimo.export`` and run by ``paddle.inference`` (ids and scores checked against the dygraph run).
``breakdown`` is one extra cached run with manual timers (exclusive time per region: on CPU every Paddle eager op
is synchronous, so wall-clock timers are exact) around attention, FFN, LM head, log-softmax/top-k, cache
write/reorder, host copies; the rest of the step is Python/bookkeeping overhead.

    .venv/bin/python bench/bench_generation.py [--batch 1 --beam 5 --src-len 128 --out-len 100 --tag before]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from typing import Optional

import numpy as np
from common import REPO, emit, peak_rss_mb

import paddle  # noqa: E402  (after common, which sets up the CPU environment)
import paddle.nn.functional as F_module  # noqa: E402

from unimo import UnimoConfig, masks  # noqa: E402
from unimo.generation import beam_search  # noqa: E402
from unimo.model.modeling import UnimoForGeneration  # noqa: E402
import unimo.generation.decoder as decoder_mod  # noqa: E402
import unimo.generation.search as search_mod  # noqa: E402
import unimo.model.modeling as modeling  # noqa: E402

ORACLE_PYTHON = REPO / ".venv-oracle" / "bin" / "python"
REPORT_STEPS = (10, 30, 50, 100)


class StepProfiler:
    """Exclusive wall time per named region, by wrapping the functions of one decoding run (restored on exit).

    Regions nest (a stack): a region's time excludes its timed children. Everything under the source encoding
    (the decoder's constructor) counts as ``source_encoding``; the rest of the run that no region covers is the
    beam-search Python (bookkeeping, numpy work, op dispatch between timed regions)."""

    def __init__(self, model) -> None:
        self.model = model
        self.excl: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list] = []  # [label, start, child time]
        self.patches: list[tuple] = []
        self.quiet = 0

    def _timed(self, label: str, fn, absorb: bool = False):
        prof = self

        def wrapper(*a, **kw):
            if prof.quiet and not absorb:
                return fn(*a, **kw)
            frame = [label, time.perf_counter(), 0.0]
            prof.stack.append(frame)
            if absorb:
                prof.quiet += 1
            try:
                return fn(*a, **kw)
            finally:
                if absorb:
                    prof.quiet -= 1
                prof.stack.pop()
                dt = time.perf_counter() - frame[1]
                prof.excl[label] = prof.excl.get(label, 0.0) + dt - frame[2]
                prof.calls[label] = prof.calls.get(label, 0) + 1
                if prof.stack:
                    prof.stack[-1][2] += dt
        return wrapper

    def _patch(self, obj, attr: str, label: str, absorb: bool = False) -> None:
        had = attr in vars(obj) if not isinstance(obj, type) else True
        orig = getattr(obj, attr)
        self.patches.append((obj, attr, vars(obj).get(attr) if isinstance(obj, type) else orig, had))
        setattr(obj, attr, self._timed(label, orig, absorb))

    def __enter__(self):
        m = self.model
        self._patch(decoder_mod.CachedDecoder, "__init__", "source_encoding", absorb=True)
        self._patch(decoder_mod.CachedDecoder, "step", "decode_step_inputs (ids, positions, mask row)")
        self._patch(decoder_mod.CachedDecoder, "select", "select (validity gather)")
        self._patch(modeling.KVCache, "reorder", "cache_reorder")
        if hasattr(modeling.KVCache, "append"):  # concatenating cache (before issue 16)
            self._patch(modeling.KVCache, "append", "cache_write")
        if hasattr(modeling.KVCache, "attention"):  # preallocated cache: in-place write + attention over it
            self._patch(modeling.KVCache, "attention", "attention_core (cached: in-place write + attention)")
        if hasattr(modeling.KVCache, "_padded_bias"):
            self._patch(modeling.KVCache, "_padded_bias", "backbone_other (mask bias, embeddings)")
        self._patch(modeling.UnimoModel, "forward", "backbone_other (mask bias, embeddings)")
        self._patch(modeling.UnimoEncoderLayer, "_qkv", "attention_qkv_proj")
        self._patch(F_module, "scaled_dot_product_attention", "attention_core (sdpa)")
        for layer in m.unimo.layers:
            for sub in ("output_fc", "post_att_layer_norm"):
                self._patch(getattr(layer, sub), "forward", "attention_out_proj_ln")
            for sub in ("ffn_fc_0", "ffn_fc_1", "post_ffn_layer_norm"):
                self._patch(getattr(layer, sub), "forward", "ffn")
            self._patch(layer, "act", "ffn")
        self._patch(modeling.UnimoEncoderLayer, "forward", "encoder_layer_other (residual adds, dispatch)")
        self._patch(m.lm_head, "forward", "lm_head")
        self._patch(search_mod, "log_softmax", "log_softmax")
        self._patch(search_mod, "_revised_logits", "logits_revision (min-length mask)")
        self._patch(paddle, "topk", "topk")
        self._patch(paddle.Tensor, "numpy", "host_copies (.numpy)")
        return self

    def __exit__(self, *exc) -> None:
        for obj, attr, orig, had in reversed(self.patches):
            if isinstance(obj, type):
                if orig is None:
                    delattr(obj, attr)
                else:
                    setattr(obj, attr, orig)
            elif had:
                setattr(obj, attr, orig)
            else:
                delattr(obj, attr)

    def report(self, total_s: float, steps: int) -> dict:
        enc = self.excl.get("source_encoding", 0.0)
        decode = total_s - enc
        covered = sum(v for k, v in self.excl.items() if k != "source_encoding")
        regions = {k: v for k, v in self.excl.items() if k != "source_encoding"}
        regions["beam_bookkeeping_and_python (uncovered)"] = decode - covered
        out = {"total_s": round(total_s, 3), "source_encoding_s": round(enc, 3), "decode_s": round(decode, 3),
               "note": "profiled run (timer overhead included); per-step ms = region time / steps",
               "per_step_ms": {k: round(v / steps * 1000.0, 2) for k, v in
                               sorted(regions.items(), key=lambda kv: -kv[1])},
               "share": {k: round(v / decode, 3) for k, v in sorted(regions.items(), key=lambda kv: -kv[1])},
               "calls": dict(self.calls)}
        return out


def per_step_summary(step_ends: list[float], start: float) -> dict:
    times = np.diff([start] + step_ends) * 1000.0
    out = {"per_step_ms": [round(float(t), 2) for t in times]}
    for n in REPORT_STEPS:
        if n <= len(times):
            window = times[max(1, n - 3):n + 2]  # a few steps around n (step 1 holds the source encoding)
            out[f"step_{n}_ms"] = round(float(np.median(window)), 2)
    return out


def run_unimo(model, source, valid, args, use_cache: bool, repeats: int, search=None, keep: Optional[dict] = None
              ) -> dict:
    """Fastest of ``repeats`` beam searches; ``search`` replaces :func:`beam_search` (the exported model's);
    ``keep`` receives the hypotheses under "hyps"."""
    best = None
    totals = []
    for _ in range(repeats):
        ends: list[float] = []
        start = time.perf_counter()
        hyps = (search or beam_search)(model, source, valid, beam_size=args.beam, max_out_len=args.out_len,
                                       min_out_len=args.out_len, length_penalty=0.6, use_cache=use_cache,
                                       callback=lambda step: ends.append(time.perf_counter()))
        if keep is not None:
            keep["hyps"] = hyps
        total = time.perf_counter() - start
        assert all(len(ids) == args.out_len for ids, _ in hyps), "EOS ended a hypothesis early"
        totals.append(round(total, 3))
        if best is None or total < best[0]:
            best = (total, ends, start)
    total, ends, start = best
    return {"total_s": round(total, 3), "all_totals_s": totals,
            "output_tokens_per_s": round(args.batch * args.out_len / total, 2),
            "beam_tokens_per_s": round(args.batch * args.beam * args.out_len / total, 2),
            **per_step_summary(ends, start)}


def memory_bandwidth_gbs(gb: float = 1.5, repeats: int = 3) -> dict:
    """Streaming-read bandwidth over a ``gb`` GB float32 array: best of ``repeats`` numpy sums (one thread) and of
    ``repeats`` paddle sums (all OMP threads); the larger is the machine's figure."""
    a = np.ones(int(gb * 1e9 / 4), dtype=np.float32)
    nbytes = a.nbytes
    best_np = best_pd = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best_np = min(best_np, time.perf_counter() - t0)
    t = paddle.to_tensor(a)
    del a
    for _ in range(repeats):
        t0 = time.perf_counter()
        float(t.sum())
        best_pd = min(best_pd, time.perf_counter() - t0)
    del t
    out = {"numpy_1thread_gbs": round(nbytes / best_np / 1e9, 2), "paddle_gbs": round(nbytes / best_pd / 1e9, 2)}
    out["gbs"] = max(out.values())
    return out


def floor_bytes(model, args) -> dict:
    """Bytes one decoding step reads at least once: weights used per step + the KV cache (function of the step)."""
    unimo = model.unimo
    weights = sum(int(p.size) for p in unimo.layers.parameters())
    weights += int(unimo.word_embedding.weight.size) + int(unimo.pos_embedding.weight.size) // 1000  # 1 row
    weights += sum(int(p.size) for p in model.lm_head.parameters())
    weights += 2 * int(unimo.pre_encoder_layer_norm.weight.size)
    cfg = unimo.config
    rows = args.batch * args.beam
    kv_per_pos = 2 * cfg.num_hidden_layers * rows * cfg.hidden_size * 4  # K and V, fp32
    return {"weights_bytes": weights * 4, "kv_bytes_per_position": kv_per_pos}


def add_floor(out: dict, fb: dict, bw_gbs: float, args) -> None:
    """step_N_floor_x: measured step time / (weights + KV cache at that step) / bandwidth."""
    for n in REPORT_STEPS:
        key = f"step_{n}_ms"
        if key in out:
            bytes_n = fb["weights_bytes"] + fb["kv_bytes_per_position"] * (args.src_len + n)
            floor_ms = bytes_n / (bw_gbs * 1e9) * 1000.0
            out[f"step_{n}_floor_ms"] = round(floor_ms, 2)
            out[f"step_{n}_floor_x"] = round(out[key] / floor_ms, 2)


def run_exported(model, source, valid, args, reference: list) -> dict:
    """The same search driven by the exported Paddle Inference programs (``python -m unimo.export``: encoder +
    cached step, run by ``paddle.inference``); also checks that it returns the dygraph search's ids and scores."""
    from unimo.export import InferenceRunner, export_model

    with tempfile.TemporaryDirectory(dir=str(REPO / "bench" / "results")) as tmp:
        t0 = time.perf_counter()
        export_model(model, "seq2seq", os.path.join(tmp, "model"))
        export_s = time.perf_counter() - t0
        runner = InferenceRunner(os.path.join(tmp, "model"))
        gen = runner.generation_model()
        beam_search(gen, source, valid, beam_size=args.beam, max_out_len=3, min_out_len=3)  # warm-up
        keep: dict = {}
        out = run_unimo(gen, source, valid, args, use_cache=True, repeats=args.repeats, keep=keep)
    hyps = keep["hyps"]
    out["export_s"] = round(export_s, 2)
    out["same_ids_as_dygraph"] = [h[0] for h in hyps] == [h[0] for h in reference]
    out["max_score_diff_vs_dygraph"] = float(max(abs(a[1] - b[1]) for a, b in zip(hyps, reference)))
    out["note"] = ("per step the host passes the whole cache (source K/V and the generated-token buffer) into the "
                   "step program and reads the updated buffer back")
    return out


def run_hf(args) -> dict:
    if not ORACLE_PYTHON.exists():
        return {"skipped": f"oracle venv missing ({ORACLE_PYTHON})"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    cmd = [str(ORACLE_PYTHON), str(REPO / "tests" / "oracle" / "hf_generate_bench.py"), "--batch", str(args.batch),
           "--beam", str(args.beam), "--src-len", str(args.src_len), "--out-len", str(args.out_len),
           "--threads", os.environ.get("OMP_NUM_THREADS", "1"), "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"failed": proc.stderr[-2000:]}
    out = json.loads(proc.stdout)
    times = out.get("per_step_ms", [])
    for n in REPORT_STEPS:  # the oracle script reports 10/30/50; the same window for the others
        if n <= len(times) and f"step_{n}_ms" not in out:
            out[f"step_{n}_ms"] = round(float(np.median(times[max(1, n - 3):n + 2])), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "model_files/config/unimo_base_en.json"))
    parser.add_argument("--batch", type=int, default=1, help="number of sources")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--src-len", type=int, default=128)
    parser.add_argument("--out-len", type=int, default=100)
    parser.add_argument("--tag", default="", help="result file bench/results/generation_<tag>_b<batch>.json")
    parser.add_argument("--skip-breakdown", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="runs of the cached search and of HF (fastest kept)")
    parser.add_argument("--skip-recompute", action="store_true")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--skip-exported", action="store_true",
                        help="skip the exported model (python -m unimo.export + paddle.inference) run")
    args = parser.parse_args()
    load_start = round(os.getloadavg()[0], 2)
    bw = memory_bandwidth_gbs()
    bandwidth = bw["gbs"]

    paddle.seed(0)
    config = UnimoConfig.from_json_file(args.config)
    model = UnimoForGeneration(config)
    model.eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 50000, (args.batch, args.src_len))
    ids[:, 0], ids[:, -1] = 0, 2
    valid = np.ones((args.batch, args.src_len), np.float32)
    source = {"input_ids": paddle.to_tensor(ids), "attention_mask": paddle.to_tensor(
        np.stack([masks.bidirectional(v) for v in valid]))}
    beam_search(model, source, valid, beam_size=args.beam, max_out_len=3, min_out_len=3)  # warm-up

    result = {"model": os.path.basename(args.config), "batch": args.batch, "beam": args.beam,
              "src_len": args.src_len, "out_len": args.out_len, "paddle": paddle.__version__,
              "load_avg_start": load_start, "memory_bandwidth": bw}
    fb = floor_bytes(model, args)
    result["floor"] = {**fb, "weights_floor_ms": round(fb["weights_bytes"] / (bandwidth * 1e9) * 1000.0, 2)}
    kept: dict = {}
    result["cached"] = run_unimo(model, source, valid, args, use_cache=True, repeats=args.repeats, keep=kept)
    add_floor(result["cached"], fb, bandwidth, args)
    if not args.skip_exported:
        result["exported"] = run_exported(model, source, valid, args, kept["hyps"])
        add_floor(result["exported"], fb, bandwidth, args)
        result["exported_time_over_dygraph"] = round(result["exported"]["total_s"] / result["cached"]["total_s"], 2)
    if not args.skip_breakdown:
        prof = StepProfiler(model)
        with prof:
            bd_start = time.perf_counter()
            beam_search(model, source, valid, beam_size=args.beam, max_out_len=args.out_len,
                        min_out_len=args.out_len, length_penalty=0.6, use_cache=True)
            bd_total = time.perf_counter() - bd_start
        result["breakdown"] = prof.report(bd_total, steps=args.out_len)
    if not args.skip_recompute:
        result["recompute"] = run_unimo(model, source, valid, args, use_cache=False, repeats=1)
        result["cache_speedup"] = round(result["recompute"]["total_s"] / result["cached"]["total_s"], 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if not args.skip_hf:
        del model
        hf = run_hf(args)
        result["hf_generate"] = hf
        add_floor(hf, fb, bandwidth, args)
        if "total_s" in hf:
            # > 1: our cached beam search is faster than HF generate on the same-size torch model
            result["hf_time_over_ours"] = round(hf["total_s"] / result["cached"]["total_s"], 2)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    name = "generation" + (f"_{args.tag}" if args.tag else "") + f"_b{args.batch}"
    emit(name, result)


if __name__ == "__main__":
    main()
