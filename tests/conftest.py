"""Shared test fixtures: paths to the reference material, the tokenizer, the tiny config and the oracle venv."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNIMO_SHARED", REPO.parent / "shared"))
ORACLE_PYTHON = Path(os.environ.get("UNIMO_ORACLE_PYTHON", REPO / ".venv-oracle" / "bin" / "python"))

sys.path.insert(0, str(REPO))  # `preprocess` is a top-level folder of the repository, not an installed package
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


def build_demo_data(out: Path, scenes: int, seed: int = 0) -> Path:
    """``script/prepare_demo_data.sh OUT SCENES SEED``: a demo world converted with the real converters (one
    thread: tests may run side by side). A failure shows the script's own output."""
    env = dict(os.environ, PY=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(REPO / "script" / "prepare_demo_data.sh"), str(out), str(scenes), str(seed)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return out


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"reference data not found at {path} (set UNIMO_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def dict_dir(shared_data: Path) -> Path:
    return shared_data / "unimo_dict"


@pytest.fixture(scope="session")
def tokenizer(dict_dir: Path):
    from unimo import UnimoTokenizer

    return UnimoTokenizer.from_pretrained(str(dict_dir))


@pytest.fixture(scope="session")
def tiny_config():
    from unimo import UnimoConfig

    return UnimoConfig.from_json_file(str(REPO / "model_files" / "config" / "unimo_tiny_en.json"))


@pytest.fixture(scope="session")
def oracle_python() -> Path:
    """Python of the test-only venv with torch + transformers (built by script/test.sh)."""
    if not ORACLE_PYTHON.exists():
        pytest.fail(f"oracle venv missing: {ORACLE_PYTHON}; run `bash script/test.sh` (it builds .venv-oracle)")
    return ORACLE_PYTHON


def run_oracle(oracle_python: Path, script: str, *args: str, timeout: int = 600) -> str:
    """Run ``tests/oracle/<script>`` in the oracle venv; return its stdout (raises with stderr on failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([str(oracle_python), str(REPO / "tests" / "oracle" / script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"oracle {script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout
