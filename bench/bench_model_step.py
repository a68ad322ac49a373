"""Training-step time of the UNIMO base model (forward + backward + AdamW, text length 128, batch 8) against HF
RoBERTa-base in torch on the same machine in the same run, and the fraction of the raw matmul peak reached.

Two Paddle variants share one model and optimizer: ``plain`` (``modeling.TRAINING_FAST_PATH = False``: F.linear,
x + F.dropout) and ``fast`` (the default since issue 16: matmul-based linear backward, fused dropout + add; same
loss and gradients bit for bit, tests/test_training_step.py). ``--repeats`` rounds each run both variants and then
the torch step in a fresh oracle process, so every round yields ratios measured under the same load; the JSON keeps
every round with its load average and the medians over rounds. On CPU every eager op is synchronous, so
forward / backward / optimizer times are wall-clock exact. ``breakdown``: one step per variant under
``paddle.profiler`` (exclusive time per operator, nested operators subtracted, grouped by kind).

usage: python bench/bench_model_step.py [--steps 3] [--repeats 3] [--batch 8] [--seq 128] [--no-torch] [--tag T]
       (JSON in bench/results/model_step[_T].json)
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import tempfile
import time
from typing import Optional

from common import REPO, emit

import numpy as np
import paddle

from unimo import UnimoConfig
import unimo.model.modeling as modeling
from unimo.model.modeling import UnimoModel

VARIANTS = {"plain": False, "fast": True}
# operator name fragment -> group of the breakdown (first match wins; names are Paddle's, lower-cased)
GROUPS = [("adamw", "optimizer (adamw)"), ("matmul", "matmul (linear + attention, fwd + bwd)"),
          ("dropout", "dropout (+ fused residual add)"), ("gelu", "gelu"), ("layer_norm", "layer_norm"),
          ("layernorm", "layer_norm"), ("softmax", "attention softmax"), ("embedding", "embedding"),
          ("add", "elementwise add (bias, residual) + its grad"), ("pylayer", "linear backward (python layer glue)"),
          ("transpose", "transpose/reshape/slice/concat"), ("reshape", "transpose/reshape/slice/concat"),
          ("slice", "transpose/reshape/slice/concat"), ("concat", "transpose/reshape/slice/concat"),
          ("accumulation", "gradient accumulation")]


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


def median(values: list[float]) -> float:
    return float(np.median(values))


class PaddleStep:
    def __init__(self, batch: int, seq: int):
        self.cfg = UnimoConfig.from_json_file(str(REPO / "model_files/config/unimo_base_en.json"))
        paddle.seed(0)
        self.model = UnimoModel(self.cfg)
        self.model.train()
        self.opt = paddle.optimizer.AdamW(learning_rate=1e-5, parameters=self.model.parameters(), weight_decay=0.01)
        self.ids = paddle.to_tensor(np.random.default_rng(0).integers(4, 50000, (batch, seq)), dtype="int64")

    def step(self) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        out = self.model(input_ids=self.ids)
        loss = (out * out).mean()
        float(loss)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        self.opt.clear_grad()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    def timed(self, fast: bool, steps: int) -> dict:
        modeling.TRAINING_FAST_PATH = fast
        self.step()  # warm-up of this variant (allocator, kernel selection)
        parts = [self.step() for _ in range(steps)]
        return {"step_s": round(median([sum(p) for p in parts]), 3),
                "forward_s": round(median([p[0] for p in parts]), 3),
                "backward_s": round(median([p[1] for p in parts]), 3),
                "optimizer_s": round(median([p[2] for p in parts]), 3),
                "all_steps_s": [round(sum(p), 3) for p in parts]}

    def profile(self, fast: bool) -> dict:
        """One step under paddle.profiler: exclusive ms per operator group and the 12 costliest operators."""
        import paddle.profiler as profiler

        modeling.TRAINING_FAST_PATH = fast
        with tempfile.TemporaryDirectory() as tmp:
            prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU],
                                     on_trace_ready=profiler.export_chrome_tracing(tmp))
            prof.start()
            t0 = time.perf_counter()
            fwd, bwd, opt = self.step()
            total = time.perf_counter() - t0
            prof.step()
            prof.stop()
            trace = json.load(open(sorted(glob.glob(os.path.join(tmp, "*.json")))[-1]))
        events = trace["traceEvents"] if isinstance(trace, dict) else trace
        exclusive = exclusive_operator_ms(events)
        groups: dict[str, float] = {}
        for name, ms in exclusive.items():
            low = name.lower()
            group = next((g for frag, g in GROUPS if frag in low), "other")
            groups[group] = groups.get(group, 0.0) + ms
        covered = sum(groups.values())
        groups["outside operators (python, autograd engine)"] = total * 1000.0 - covered
        top = sorted(exclusive.items(), key=lambda kv: -kv[1])[:12]
        return {"profiled_step_s": round(total, 3), "forward_s": round(fwd, 3), "backward_s": round(bwd, 3),
                "optimizer_s": round(opt, 3),
                "groups_ms": {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
                "groups_share": {k: round(v / (total * 1000.0), 3) for k, v in
                                 sorted(groups.items(), key=lambda kv: -kv[1])},
                "top_operators_ms": {k: round(v, 1) for k, v in top}}


def exclusive_operator_ms(events: list[dict]) -> dict[str, float]:
    """Exclusive time per operator name (``[...]`` duration suffix stripped) from a Paddle chrome trace: an
    operator's time minus the part of the operators nested in it (same thread) that lies inside it."""
    ops = sorted((e for e in events if e.get("cat") == "Operator" and e.get("ph") == "X"),
                 key=lambda e: (e["tid"], e["ts"], -e["dur"]))
    out: dict[str, float] = {}
    stack: list[list] = []  # [start, end, name, time of nested operators, tid]

    def close(frame: list) -> None:
        start, end, name, nested, _tid = frame
        out[name] = out.get(name, 0.0) + max(0.0, (end - start) - nested) / 1000.0
        if stack:
            stack[-1][3] += max(0.0, min(end, stack[-1][1]) - start)

    for e in ops:
        while stack and (stack[-1][4] != e["tid"] or stack[-1][1] <= e["ts"]):
            close(stack.pop())
        stack.append([e["ts"], e["ts"] + e["dur"], e["name"].split("[")[0].strip(), 0.0, e["tid"]])
    while stack:
        close(stack.pop())
    return out


def torch_step(args, threads: int) -> dict:
    oracle = REPO / ".venv-oracle" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([str(oracle), str(REPO / "bench" / "torch_roberta_step.py"), str(args.batch), str(args.seq),
                          str(args.steps), str(threads)], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant and round (median kept)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (each: plain, fast, torch)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--tag", default="", help="result file bench/results/model_step_<tag>.json")
    args = ap.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"])
    use_torch = not args.no_torch and (REPO / ".venv-oracle" / "bin" / "python").exists()
    load_start = round(os.getloadavg()[0], 2)
    peak = matmul_peak_gflops()
    bench = PaddleStep(args.batch, args.seq)
    flops = model_flops_per_step(bench.cfg, args.batch, args.seq)
    rounds = []
    for r in range(args.repeats):
        row: dict = {"load_avg": round(os.getloadavg()[0], 2)}
        order = list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]  # alternate who runs first
        for name in order:
            row[name] = bench.timed(VARIANTS[name], args.steps)
        if use_torch:
            row["torch"] = torch_step(args, threads)
            for name in VARIANTS:
                row[f"{name}_over_torch"] = round(row[name]["step_s"] / row["torch"]["step_s"], 3)
        row["fast_over_plain"] = round(row["fast"]["step_s"] / row["plain"]["step_s"], 3)
        rounds.append(row)
        print(json.dumps(row), flush=True)
    peak_end = matmul_peak_gflops()
    result = {"batch": args.batch, "seq": args.seq, "threads": threads, "paddle": paddle.__version__,
              "load_avg_start": load_start, "load_avg_end": round(os.getloadavg()[0], 2),
              "matmul_peak_gflops_start_end": [round(peak, 1), round(peak_end, 1)],
              "model_gflops_per_step": round(flops / 1e9, 1), "rounds": rounds,
              "note": "ratios are per round (same load); medians over rounds below. Absolute seconds and the fractions "
                      "of the matmul peak depend on the machine's load at the time (see load_avg per round): "
                      "compare them only between idle runs."}
    peak_best = max(peak, peak_end)
    # a matmul peak measured while other processes hold the cores is not the machine's: fractions only when idle
    idle = load_start < 1.0 and result["load_avg_end"] < 1.5

    def fraction(step_s: float) -> Optional[float]:
        return round(flops / step_s / 1e9 / peak_best, 3) if idle else None

    for name in VARIANTS:
        step = median([row[name]["step_s"] for row in rounds])
        result[f"{name}_step_s_median"] = round(step, 3)
        result[f"{name}_fraction_of_matmul_peak"] = fraction(step)
        if use_torch:
            result[f"{name}_over_torch_median"] = round(median([row[f"{name}_over_torch"] for row in rounds]), 3)
    result["fast_over_plain_median"] = round(median([row["fast_over_plain"] for row in rounds]), 3)
    if use_torch:
        tstep = median([row["torch"]["step_s"] for row in rounds])
        result["torch_step_s_median"] = round(tstep, 3)
        result["torch_fraction_of_matmul_peak"] = fraction(tstep)
    if not args.no_profile:
        result["breakdown"] = {name: bench.profile(fast) for name, fast in VARIANTS.items()}
    modeling.TRAINING_FAST_PATH = True
    emit("model_step" + (f"_{args.tag}" if args.tag else ""), result)


if __name__ == "__main__":
    main()
