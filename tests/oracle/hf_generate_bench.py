"""HF ``generate`` beam-search timing on a RoBERTa-base-size causal decoder (random init), for
bench/bench_generation.py. Runs in the oracle venv (torch + transformers); prints JSON."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import transformers
from transformers import LogitsProcessor, LogitsProcessorList, RobertaConfig, RobertaForCausalLM


class StepTimer(LogitsProcessor):
    """Called once per generated token: records the time (the step's forward pass has just finished)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def __call__(self, input_ids, scores):
        self.ends.append(time.perf_counter())
        return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--src-len", type=int, default=128)
    parser.add_argument("--out-len", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs; the fastest is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, max_position_embeddings=514, is_decoder=True)
    model = RobertaForCausalLM(config).eval()
    rng = np.random.default_rng(0)
    ids = torch.tensor(rng.integers(4, 50000, (args.batch, args.src_len)))
    attn = torch.ones_like(ids)
    common = dict(attention_mask=attn, num_beams=args.beam, do_sample=False, length_penalty=0.6,
                  early_stopping=False, pad_token_id=1, eos_token_id=2)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=3, min_new_tokens=3, **common)  # warm-up
        best, totals = None, []
        for _ in range(args.repeats):
            timer = StepTimer()
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=args.out_len, min_new_tokens=args.out_len,
                                 logits_processor=LogitsProcessorList([timer]), **common)
            total = time.perf_counter() - start
            assert out.shape[1] == args.src_len + args.out_len, out.shape
            totals.append(round(total, 3))
            if best is None or total < best[0]:
                best = (total, timer.ends, start)
    total, ends, start = best
    times = np.diff([start] + ends) * 1000.0
    result = {"transformers": transformers.__version__, "torch": torch.__version__, "threads": args.threads,
              "total_s": round(total, 3), "all_totals_s": totals,
              "output_tokens_per_s": round(args.batch * args.out_len / total, 2),
              "per_step_ms": [round(float(t), 2) for t in times]}
    for n in (10, 30, 50):
        if n <= len(times):
            result[f"step_{n}_ms"] = round(float(np.median(times[max(1, n - 3):n + 2])), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
