"""Tokenizer throughput (MB/s of UTF-8 text) on real text: cold (empty word cache) and warm."""
from __future__ import annotations

import json
import time

from common import SHARED, emit

from unimo import UnimoTokenizer


def corpus() -> str:
    lines = [json.loads(line)["document"] for line in open(SHARED / "data/text_samples/xsum_sample.jsonl")]
    lines += [r.split("\t")[0] for r in open(SHARED / "data/text_samples/sst2_glue_dev.tsv").read().split("\n")[1:]]
    return "\n".join(lines)


def main() -> None:
    text = corpus()
    docs = text.split("\n")
    mb = len(text.encode("utf-8")) / 1e6
    tok = UnimoTokenizer.from_pretrained(str(SHARED / "data/unimo_dict"))
    t0 = time.perf_counter()
    n = sum(len(tok.encode(d)) for d in docs)
    cold = time.perf_counter() - t0
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        for d in docs:
            tok.encode(d)
    warm = (time.perf_counter() - t0) / reps
    emit("tokenizer", {"text_mb": round(mb, 3), "tokens": n, "cold_mb_per_s": round(mb / cold, 2),
                       "warm_mb_per_s": round(mb / warm, 2), "warm_tokens_per_s": round(n / warm)})


if __name__ == "__main__":
    main()
