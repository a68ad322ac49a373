"""Beam-search decoding speed of the base model (random weights): KV cache vs recompute-every-step, and against
Hugging Face ``generate`` (num_beams) on a same-size RoBERTa-style causal decoder in torch (run in the oracle venv).

Every run generates exactly ``--out-len`` tokens (min_out_len = max_out_len, so EOS never ends it early). Per-step
times come from the step callback; step 1 includes encoding the source. The cached search and HF ``generate`` run
``--repeats`` times and report the fastest run (other processes on a shared machine only ever add time); the
recompute baseline runs once. The load average is recorded. Prints JSON (bench/results/generation.json).

    .venv/bin/python bench/bench_generation.py [--batch 1 --beam 5 --src-len 128 --out-len 50]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np
from common import REPO, emit, peak_rss_mb

import paddle  # noqa: E402  (after common, which sets up the CPU environment)

from unimo import UnimoConfig, masks  # noqa: E402
from unimo.generation import beam_search  # noqa: E402
from unimo.model.modeling import UnimoForGeneration  # noqa: E402

ORACLE_PYTHON = REPO / ".venv-oracle" / "bin" / "python"
REPORT_STEPS = (10, 30, 50)


def per_step_summary(step_ends: list[float], start: float) -> dict:
    times = np.diff([start] + step_ends) * 1000.0
    out = {"per_step_ms": [round(float(t), 2) for t in times]}
    for n in REPORT_STEPS:
        if n <= len(times):
            window = times[max(1, n - 3):n + 2]  # a few steps around n (step 1 holds the source encoding)
            out[f"step_{n}_ms"] = round(float(np.median(window)), 2)
    return out


def run_unimo(model, source, valid, args, use_cache: bool, repeats: int) -> dict:
    best = None
    totals = []
    for _ in range(repeats):
        ends: list[float] = []
        start = time.perf_counter()
        hyps = beam_search(model, source, valid, beam_size=args.beam, max_out_len=args.out_len,
                           min_out_len=args.out_len, length_penalty=0.6, use_cache=use_cache,
                           callback=lambda step: ends.append(time.perf_counter()))
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
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "model_files/config/unimo_base_en.json"))
    parser.add_argument("--batch", type=int, default=1, help="number of sources")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--src-len", type=int, default=128)
    parser.add_argument("--out-len", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2, help="runs of the cached search and of HF (fastest kept)")
    parser.add_argument("--skip-recompute", action="store_true")
    parser.add_argument("--skip-hf", action="store_true")
    args = parser.parse_args()

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
              "load_avg_start": round(os.getloadavg()[0], 2)}
    result["cached"] = run_unimo(model, source, valid, args, use_cache=True, repeats=args.repeats)
    if not args.skip_recompute:
        result["recompute"] = run_unimo(model, source, valid, args, use_cache=False, repeats=1)
        result["cache_speedup"] = round(result["recompute"]["total_s"] / result["cached"]["total_s"], 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if not args.skip_hf:
        del model
        hf = run_hf(args)
        result["hf_generate"] = hf
        if "total_s" in hf:
            # > 1: our cached beam search is faster than HF generate on the same-size torch model
            result["hf_time_over_ours"] = round(hf["total_s"] / result["cached"]["total_s"], 2)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    emit("generation", result)


if __name__ == "__main__":
    main()
