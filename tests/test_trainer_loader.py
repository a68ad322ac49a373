"""A data-loading error ends a training run at once with that error (issue 12: an unknown image id raised in the
DataLoader thread used to hang the run forever). Paddle's DataLoader itself hangs when the collate function raises
in its prefetch thread (num_workers=0) - checked here first, so the test shows what the guard protects against -
and reports a worker's exception as "Blocking queue is killed" (num_workers>0)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import sys, numpy as np
    import unimo, paddle
    from unimo.training.trainer import UnimoTrainer
    from unimo.training.config import TrainingConfig
    from unimo.training.trainer import make_training_args
    from unimo.utils.errors import DataError, UserError

    class Data(paddle.io.Dataset):
        def __len__(self): return 64
        def __getitem__(self, i): return i

    def make_collate(kind):
        def collate(items):
            if 21 in items:  # one batch of the 8 (the sampler shuffles: any batch may hold it)
                if kind == "user":
                    raise DataError("data/train.jsonl", 22, "image_id", "'999' is not in the feature store")
                raise ZeroDivisionError("a bug in the reader")
            return {"x": np.ones((len(items), 4), np.float32)}
        return collate

    class Model(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.w = paddle.nn.Linear(4, 1)
        def forward(self, x):
            return self.w(x).mean()

    for workers in (0, 2):
        for kind in ("user", "bug"):
            cfg = TrainingConfig.from_values(batch_size=8, max_steps=8, logging_steps=100, save_steps=1000,
                                             num_workers=workers, disable_tqdm=True, visualdl=False)
            trainer = UnimoTrainer(model=Model(), args=make_training_args(cfg, sys.argv[1]), train_dataset=Data(),
                                   data_collator=make_collate(kind))
            try:
                trainer.train()
                print(workers, kind, "FINISHED", flush=True)
            except UserError as e:
                print(workers, kind, "USER", type(e).__name__, e, flush=True)
            except RuntimeError as e:
                print(workers, kind, "INTERNAL", str(e).splitlines()[0], "|", str(e).strip().splitlines()[-1],
                      flush=True)
''')


@pytest.mark.slow
def test_loader_error_ends_the_run(tmp_path):
    """num_workers 0 and 2; a bad record (UserError: the same one line reaches the main process) and a bug (its
    traceback does). Four runs in one process, all ended within a minute (a hang would hit the timeout)."""
    script = tmp_path / "loader_error.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln[:2] in ("0 ", "2 ")]
    user = "USER UserError data/train.jsonl:22: field 'image_id': '999' is not in the feature store"
    bug = "INTERNAL data loading failed: | ZeroDivisionError: a bug in the reader"
    assert lines == [f"0 user {user}", f"0 bug {bug}", f"2 user {user}", f"2 bug {bug}"], proc.stdout


@pytest.mark.slow
def test_paddle_loader_alone_hangs_on_a_collate_error(tmp_path):
    """The fault the guard exists for (Paddle 3.3): without it the loop waits forever after the thread died."""
    script = tmp_path / "bare_loader.py"
    script.write_text(textwrap.dedent('''
        import numpy as np, unimo, paddle
        class Data(paddle.io.Dataset):
            def __len__(self): return 20
            def __getitem__(self, i): return i
        def collate(items):
            if 5 in items:
                raise KeyError("bad image 5")
            return {"x": np.array(items)}
        print("LOOP", flush=True)
        for batch in paddle.io.DataLoader(Data(), batch_size=2, collate_fn=collate, num_workers=0):
            pass
        print("ENDED", flush=True)
    '''))
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=20)
    out = caught.value.stdout or b""
    out = out.decode() if isinstance(out, bytes) else out
    assert "LOOP" in out and "ENDED" not in out  # it reached the loop and never left it
