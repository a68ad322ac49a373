"""Legacy checkpoint conversion at base size: wall time and peak RSS of ``python -m unimo.convert legacy``.

Synthesises a base-sized official checkpoint (backbone + image layers + poolers + LM head, ~507 MB fp32, random
values, official names, exact legacy binary layout) in a temporary directory, converts it in a child process
(peak RSS from ``wait4``, so the synthesis does not count), exports it back and checks the round trip is
bit-exact. Everything is deleted afterwards. Targets: < 30 s and peak RSS < 2x the checkpoint size.

    python bench/bench_convert.py [--config model_files/config/unimo_base_en.json] [--workdir /tmp]
                                  [--compare-naive]   # also time build-model + set_state_dict + save_pretrained
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import REPO, emit

import numpy as np

from unimo.convert import legacy_format as lf

NAIVE = r"""
import sys, os, unimo, paddle
from unimo.convert import legacy_format as lf
from unimo.model import UnimoConfig, UnimoForGeneration
src, cfg, dst = sys.argv[1:4]
model = UnimoForGeneration(UnimoConfig.from_json_file(cfg))
to_local = model.official_name_map()
model.set_state_dict({to_local[n]: lf.read_tensor(os.path.join(src, n)) for n in os.listdir(src) if n in to_local})
model.save_pretrained(dst)
"""


# The child reports its own high-water mark (VmHWM, reset by exec) instead of ru_maxrss, which Linux carries over
# from the forking parent and would count the synthesis.
WRAP = r"""
import os, runpy, sys
code = 0
try:
    if os.environ.get("BENCH_CODE"):
        sys.argv = ["-c", *sys.argv[1:]]
        exec(compile(os.environ["BENCH_CODE"], "<bench>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = sys.argv[1:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code or 0
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
sys.stderr.write("\nBENCH_VMHWM_KB %d\n" % int(hwm.split()[1]))
sys.exit(code)
"""


def run_child(args: list[str], code: str = "") -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of ``python -m MODULE ARGS`` (``args[0]`` = module) or, with ``code``,
    of ``python -c CODE ARGS``."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), BENCH_CODE=code)
    cmd = [sys.executable, "-c", WRAP, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    hwm = [line for line in proc.stderr.splitlines() if line.startswith("BENCH_VMHWM_KB")]
    return wall, int(hwm[-1].split()[1]) * 1024


def synthesize(src: str, config_path: str) -> int:
    import paddle

    from unimo.model import UnimoConfig, UnimoForGeneration

    with paddle.LazyGuard():  # names and shapes only
        model = UnimoForGeneration(UnimoConfig.from_json_file(config_path))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    total = 0
    for name, key in model.official_name_map().items():
        total += lf.write_tensor(os.path.join(src, name), 0.02 * rng.standard_normal(shapes[key], dtype=np.float32))
    for name in ("word_embedding_moment1_0", "@LR_DECAY_COUNTER@"):  # optimizer state the converter must skip
        total += lf.write_tensor(os.path.join(src, name), np.zeros(4, np.float32))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "model_files" / "config" / "unimo_base_en.json"))
    parser.add_argument("--workdir", default=None, help="where the temporary checkpoint goes (default: $TMPDIR)")
    parser.add_argument("--compare-naive", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_convert_", dir=args.workdir)
    try:
        src, dst, back = (os.path.join(work, x) for x in ("legacy", "ours", "legacy_again"))
        os.makedirs(src)
        t0 = time.perf_counter()
        ckpt_bytes = synthesize(src, args.config)
        synth_s = time.perf_counter() - t0
        base_wall, base_rss = run_child([], code="import unimo, paddle, unimo.convert")
        wall, rss = run_child(["unimo.convert", "legacy", "--src", src, "--config", args.config, "--dst", dst])
        out_bytes = os.path.getsize(os.path.join(dst, "model.safetensors"))
        exp_wall, exp_rss = run_child(["unimo.convert", "export-legacy", "--src", dst, "--dst", back])
        mismatched = [n for n in os.listdir(back)
                      if open(os.path.join(src, n), "rb").read() != open(os.path.join(back, n), "rb").read()]
        result = {
            "config": os.path.relpath(args.config, REPO),
            "checkpoint_mb": round(ckpt_bytes / 2**20, 1),
            "files": len(os.listdir(src)),
            "synthesis_s": round(synth_s, 1),
            "import_only": {"wall_s": round(base_wall, 2), "peak_rss_mb": round(base_rss / 2**20, 1)},
            "legacy_to_ours": {"wall_s": round(wall, 2), "peak_rss_mb": round(rss / 2**20, 1),
                               "peak_rss_over_checkpoint": round(rss / ckpt_bytes, 3),
                               "rss_above_import_mb": round((rss - base_rss) / 2**20, 1),
                               "safetensors_mb": round(out_bytes / 2**20, 1)},
            "ours_to_legacy": {"wall_s": round(exp_wall, 2), "peak_rss_mb": round(exp_rss / 2**20, 1),
                               "files": len(os.listdir(back)), "bit_exact": not mismatched},
            "targets": {"wall_s": 30, "peak_rss_over_checkpoint": 2.0},
            "meets_targets": wall < 30 and rss < 2 * ckpt_bytes and not mismatched,
        }
        if args.compare_naive:
            naive_dst = os.path.join(work, "naive")
            n_wall, n_rss = run_child([src, args.config, naive_dst], code=NAIVE)
            result["naive_build_set_save_pretrained"] = {"wall_s": round(n_wall, 2),
                                                         "peak_rss_mb": round(n_rss / 2**20, 1),
                                                         "peak_rss_over_checkpoint": round(n_rss / ckpt_bytes, 3)}
        emit("convert", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
