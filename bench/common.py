"""Helpers shared by the benchmarks: environment setup before paddle, JSON output."""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNIMO_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

import unimo  # noqa: E402,F401  (sets MKL_DEBUG_CPU_TYPE / OMP_NUM_THREADS before paddle)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(name: str, result: dict) -> None:
    """Print the result as JSON and keep a copy in bench/results/<name>.json (ignored by git)."""
    result = {"benchmark": name, "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
              "omp_threads": os.environ.get("OMP_NUM_THREADS")}, **result}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
