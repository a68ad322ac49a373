"""Opening a checkpoint runs no code (issue 14): ``save_pretrained`` writes ``model.safetensors``, ``from_pretrained``
prefers it, reads an earlier release's ``model_state.pdparams`` through the restricted unpickler and refuses a
crafted pickle (``{"w": obj}`` whose ``__reduce__`` is ``os.system``) naming the file and the global, without ever
running the command; ``trust_pickle=True`` is the way out."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from unimo.utils.safe_load import UnsafePickleError


class Exploit:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_exploit(path, marker) -> None:
    with open(path, "wb") as f:
        pickle.dump({"w": Exploit(str(marker))}, f)


@pytest.fixture
def backbone(tiny_config):
    import paddle

    from unimo import UnimoModel

    paddle.seed(3)
    return UnimoModel(tiny_config)


def assert_same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and np.array_equal(sa[k].numpy(), sb[k].numpy()), k


def test_save_pretrained_writes_safetensors_with_state_dict_names(tmp_path, backbone):
    from safetensors.numpy import load_file

    from unimo import UnimoModel

    backbone.save_pretrained(str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path / "m")) == ["model.safetensors", "model_config.json"]
    raw = load_file(str(tmp_path / "m" / "model.safetensors"))  # the third-party reader, names as state_dict()
    own = backbone.state_dict()
    assert sorted(raw) == sorted(own)
    assert all(np.array_equal(raw[k], own[k].numpy()) for k in own)
    assert_same_weights(backbone, UnimoModel.from_pretrained(str(tmp_path / "m")))


def test_previous_release_pdparams_still_loads(tmp_path, backbone):
    """What the previous version wrote (``paddle.save(state_dict)`` as ``model_state.pdparams``) and the
    ``weights_format="pdparams"`` option both load without trust_pickle."""
    import paddle

    from unimo import UnimoModel

    backbone.save_pretrained(str(tmp_path / "new"), weights_format="pdparams")
    assert sorted(os.listdir(tmp_path / "new")) == ["model_config.json", "model_state.pdparams"]
    assert_same_weights(backbone, UnimoModel.from_pretrained(str(tmp_path / "new")))
    old = tmp_path / "old"
    old.mkdir()
    backbone.config.save_pretrained(str(old))
    paddle.save(backbone.state_dict(), str(old / "model_state.pdparams"))
    assert_same_weights(backbone, UnimoModel.from_pretrained(str(old)))


def test_safetensors_is_preferred_over_pdparams(tmp_path, backbone, tiny_config):
    from unimo import UnimoModel

    backbone.save_pretrained(str(tmp_path / "m"))
    marker = tmp_path / "pwned"
    write_exploit(tmp_path / "m" / "model_state.pdparams", marker)  # ignored: the safetensors file wins
    assert_same_weights(backbone, UnimoModel.from_pretrained(str(tmp_path / "m")))
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model_state.pdparams"):
        UnimoModel.from_pretrained(str(tmp_path / "nothing"), config=tiny_config)


def test_crafted_checkpoint_is_refused_and_never_runs(tmp_path, backbone):
    from unimo import UnimoModel

    d = tmp_path / "shared_ckpt"
    d.mkdir()
    backbone.config.save_pretrained(str(d))
    marker = tmp_path / "pwned"
    write_exploit(d / "model_state.pdparams", marker)
    with pytest.raises(UnsafePickleError) as caught:
        UnimoModel.from_pretrained(str(d))
    assert not marker.exists()
    assert str(caught.value).startswith(f"{d / 'model_state.pdparams'}: refused to load: the pickle needs the "
                                        "global posix.system")
    assert "--trust-pickle" in str(caught.value)
    # the explicit way out really is Paddle's unrestricted loader (so the command runs, then the dict is refused)
    with pytest.raises(Exception):
        UnimoModel.from_pretrained(str(d), trust_pickle=True)
    assert marker.exists()



TRAIN = '''
import sys, numpy as np
import unimo, paddle
from unimo.training.config import TrainingConfig
from unimo.training.trainer import UnimoTrainer, make_training_args
from unimo.utils.safe_load import UnsafePickleError

class Data(paddle.io.Dataset):
    def __len__(self): return 16
    def __getitem__(self, i): return i

def collate(items):
    return {"x": np.asarray(items, np.float32)[:, None] * np.ones((1, 4), np.float32) / 16}

class Model(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.w = paddle.nn.Linear(4, 1)
    def forward(self, x):
        return (self.w(x) ** 2).mean()

# argv: OUT [RESUME...]: one run per RESUME folder (or one from scratch), each printing its weights or the refusal
for k, resume in enumerate(sys.argv[2:] or [None]):
    paddle.seed(0)
    cfg = TrainingConfig.from_values(batch_size=4, max_steps=4, logging_steps=100, save_steps=2, disable_tqdm=True,
                                     visualdl=False, seed=0)
    trainer = UnimoTrainer(model=Model(), args=make_training_args(cfg, f"{sys.argv[1]}{k}"), train_dataset=Data(),
                           data_collator=collate)
    try:
        trainer.train(resume_from_checkpoint=resume)
        print("W", " ".join(repr(float(v)) for v in trainer.model.w.weight.numpy().ravel()), flush=True)
    except UnsafePickleError as e:
        print("REFUSED", e, flush=True)
'''


def _train(tmp_path, out, *resume) -> list[str]:
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    proc = subprocess.run([sys.executable, str(script), str(out), *map(str, resume)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [ln for ln in proc.stdout.splitlines() if ln.startswith(("W ", "REFUSED "))]


VICTIMS = ["rng_state.pth", "optimizer.pdopt", "scheduler.pdparams", "model_state.pdparams"]


def test_resume_refuses_a_crafted_training_checkpoint(tmp_path):
    """A Trainer checkpoint whose RNG / optimizer / scheduler / weights file is the crafted pickle: resuming is
    refused naming the file and the global, and the command never runs. The genuine checkpoint (the first run in
    the fresh process) resumes to the uninterrupted run's weights: the check passes everything PaddleNLP writes."""
    import shutil

    [full] = _train(tmp_path, tmp_path / "full")
    assert full.startswith("W ")
    ckpt = tmp_path / "full0" / "checkpoint-2"
    others = ["trainer_state.json", "training_args.bin", "unimo_eval_state.json"]  # JSON, and one resume never reads
    assert sorted(os.listdir(ckpt)) == sorted(VICTIMS + others)
    marker = tmp_path / "pwned"
    bad = []
    for victim in VICTIMS:
        bad.append(tmp_path / f"bad-{victim}")
        shutil.copytree(ckpt, bad[-1])
        write_exploit(bad[-1] / victim, marker)
    lines = _train(tmp_path, tmp_path / "resumed", ckpt, *bad)
    assert lines[0] == full
    for folder, victim, line in zip(bad, VICTIMS, lines[1:], strict=True):
        assert line.startswith(f"REFUSED {folder / victim}: refused to load: the pickle needs the global "
                               "posix.system"), line
    assert not marker.exists()


def test_a_run_refuses_a_crafted_init_checkpoint_and_trust_pickle_is_a_config_key(tmp_path, backbone):
    """Through the fine-tuning entry point: a crafted init_checkpoint is one error line naming the file (exit 2),
    its command never runs; `trust_pickle` is a declared key of every run (resume and init)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    d = tmp_path / "shared"
    backbone.save_pretrained(str(d), weights_format="pdparams")
    marker = tmp_path / "pwned"
    write_exploit(d / "model_state.pdparams", marker)
    (tmp_path / "train.jsonl").write_text('{"text_a": "good", "label": "1"}\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    env.pop("UNIMO_DEBUG", None)
    proc = subprocess.run([sys.executable, str(repo / "src/unimo/finetune/run.py"), "--config",
                           str(repo / "script/classification/SST-2/conf.yaml"), f"init_checkpoint={d}",
                           f"model_config={repo / 'model_files/config/unimo_tiny_en.json'}", f"data_dir={tmp_path}",
                           "train_file=train.jsonl", "dev_file=null", "do_eval=false", "global_batch_size=null",
                           "lr_schedule=linear", f"output_dir={tmp_path / 'out'}"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and str(d / "model_state.pdparams") in errors[0] and "posix.system" in errors[0], errors
    assert not marker.exists()
    from unimo.training.config import TrainingConfig

    assert TrainingConfig.field_types()["trust_pickle"] is bool and TrainingConfig().trust_pickle is False
