"""Training-step time of the UNIMO base model (forward + backward + AdamW, text length 128, batch 8) against HF
RoBERTa-base in torch on the same machine in the same run, and the fraction of the raw matmul peak reached.

usage: python bench/bench_model_step.py [--steps 3] [--batch 8] [--seq 128] [--no-torch]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

from common import REPO, emit

import numpy as np
import paddle

from unimo import UnimoConfig
from unimo.model.modeling import UnimoModel


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    a = paddle.randn([n, n])
    b = paddle.randn([n, n])
    paddle.matmul(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(reps):
        c = paddle.matmul(a, b)
    c.numpy()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def model_flops_per_step(cfg: UnimoConfig, batch: int, seq: int) -> float:
    """6 x (non-embedding parameters) x tokens + attention scores (forward 4*L*T^2*H, x3 with backward)."""
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    per_layer = 4 * h * h + 2 * h * 4 * h
    tokens = batch * seq
    return 6 * layers * per_layer * tokens + 3 * 4 * layers * batch * seq * seq * h


def paddle_step_time(batch: int, seq: int, steps: int) -> float:
    cfg = UnimoConfig.from_json_file(str(REPO / "model_files/config/unimo_base_en.json"))
    paddle.seed(0)
    model = UnimoModel(cfg)
    model.train()
    opt = paddle.optimizer.AdamW(learning_rate=1e-5, parameters=model.parameters(), weight_decay=0.01)
    ids = paddle.to_tensor(np.random.default_rng(0).integers(4, 50000, (batch, seq)), dtype="int64")
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        out = model(input_ids=ids)
        loss = (out * out).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"])
    peak = matmul_peak_gflops()
    step, cfg = paddle_step_time(args.batch, args.seq, args.steps)
    flops = model_flops_per_step(cfg, args.batch, args.seq)
    result = {"batch": args.batch, "seq": args.seq, "paddle_step_s": round(step, 3),
              "matmul_peak_gflops": round(peak, 1), "model_gflops_per_step": round(flops / 1e9, 1),
              "paddle_model_gflops_per_s": round(flops / step / 1e9, 1),
              "paddle_fraction_of_matmul_peak": round(flops / step / 1e9 / peak, 3)}
    oracle = REPO / ".venv-oracle" / "bin" / "python"
    if not args.no_torch and oracle.exists():
        out = subprocess.run([str(oracle), str(REPO / "bench" / "torch_roberta_step.py"), str(args.batch),
                              str(args.seq), str(args.steps), str(threads)], capture_output=True, text=True, check=True)
        torch_res = json.loads(out.stdout.strip().splitlines()[-1])
        result.update({"torch_step_s": round(torch_res["step_s"], 3),
                       "paddle_over_torch": round(step / torch_res["step_s"], 3),
                       "torch_fraction_of_matmul_peak": round(flops / torch_res["step_s"] / 1e9 / peak, 3)})
    emit("model_step", result)


if __name__ == "__main__":
    main()
