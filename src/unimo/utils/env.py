"""Process environment for fast CPU execution.

Paddle's bundled MKL takes a slow code path on AMD CPUs unless ``MKL_DEBUG_CPU_TYPE=5`` is set, and Paddle
forces ``OMP_NUM_THREADS=1`` when the variable is unset. Both must be in the environment *before* paddle is
imported, so every entry point (the package itself, CLIs, scripts, tests, benchmarks) calls
:func:`setup_cpu_env` first. Values the user already set are never overridden.
"""
from __future__ import annotations

import os


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _local_process_count() -> int:
    """Number of processes sharing this machine under ``paddle.distributed.launch`` (1 otherwise)."""
    for key in ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM"):
        value = os.environ.get(key)
        if value and value.isdigit() and int(value) > 0:
            return int(value)
    endpoints = os.environ.get("PADDLE_TRAINER_ENDPOINTS")
    if endpoints:
        return max(1, len([e for e in endpoints.split(",") if e]))
    return 1


def setup_cpu_env() -> dict[str, str]:
    """Set ``MKL_DEBUG_CPU_TYPE`` and ``OMP_NUM_THREADS`` unless already set; return the values in effect."""
    os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    if "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, _available_cores() // _local_process_count())
        os.environ["OMP_NUM_THREADS"] = str(threads)
    # Paddle 3.3's stride kernels make the copy inside scaled_dot_product_attention ~10x slower than a plain
    # transpose on CPU (half of every decoding step, bench/bench_generation.py); results are identical without them.
    os.environ.setdefault("FLAGS_use_stride_kernel", "0")
    # Paddle prints a noisy warning for every process on CPU-only machines otherwise.
    os.environ.setdefault("GLOG_minloglevel", "2")
    return {k: os.environ[k] for k in ("MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS")}


def exit_process(code: int) -> None:
    """End a training process with ``code``. A rank of a multi-process run that finished (code 0) leaves with
    ``os._exit`` after flushing its streams: the gloo/NCCL teardown at interpreter exit sometimes aborts a rank
    whose work is complete (SIGABRT after results.json was written: 2 of 45 two-rank VQA runs here), which made the
    launcher report a failed run. Single-process runs and failures exit normally (tracebacks, atexit handlers)."""
    import sys

    if code == 0 and int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1) > 1:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(0)
    sys.exit(code)
