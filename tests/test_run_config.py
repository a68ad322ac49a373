"""The fine-tuning entry point refuses a misconfiguration before it builds a model or reads data (issue 12): unknown
keys in the YAML or on the command line, wrong types, out-of-range values each give one ``error:`` line naming the
file (and line) and the key, exit status 2, and no output directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unimo.utils.config import load_config
from unimo.utils.errors import ConfigError, DataError, IssueLog, UserError, run_cli

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO / "script" / "classification" / "SST-2" / "conf.yaml"


def _run(tmp_path: Path, conf: Path, *overrides: str) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("UNIMO_DEBUG", None)
    return subprocess.run([sys.executable, str(REPO / "src" / "unimo" / "finetune" / "run.py"), "--config", str(conf),
                           f"output_dir={out}", *overrides], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _child_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "conf.yaml"
    path.write_text(f"base: {SST2}\n{body}", encoding="utf-8")
    return path


def test_typo_in_yaml_names_file_line_and_suggestion(tmp_path):
    conf = _child_yaml(tmp_path, "epochs: 2\nlearning_rat: 1.0e-3\n")
    proc = _run(tmp_path, conf)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("unimo.finetune: error:")]
    assert lines == [f"unimo.finetune: error: {conf}:3: learning_rat: unknown config key "
                     "(did you mean 'learning_rate'?)"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, message", [
    ("batch_size=1.5", "batch_size: expected an integer, got 1.5"),
    ("learning_rate=abc", "learning_rate: expected a number, got 'abc'"),
    ("batch_size=-1", "command line: batch_size: must be >= 1, got -1"),
    ("max_seq_len=100000", "command line: max_seq_len: must be in [1, 512], got 100000"),
    ("learnin_rate=1e-3", "learnin_rate: unknown config key (did you mean 'learning_rate'?)"),
])
def test_bad_override_is_one_error_line(tmp_path, override, message):
    proc = _run(tmp_path, SST2, override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_debug_shows_traceback(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), UNIMO_DEBUG="1")
    proc = subprocess.run([sys.executable, str(REPO / "src" / "unimo" / "finetune" / "run.py"), "--config", str(SST2),
                           f"output_dir={out}", "batch_size=0"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "batch_size: must be >= 1, got 0" in proc.stderr


def test_load_config_types_and_chain(tmp_path):
    from dataclasses import dataclass

    from unimo.utils.config import ConfigBase

    @dataclass
    class Small(ConfigBase):
        batch_size: int = 1
        learning_rate: float = 5e-5
        amp: str = "none"
        do_train: bool = True

    base = tmp_path / "base.yaml"
    base.write_text("batch_size: 8\nlearning_rate: 1e-5\n", encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nbatch_size: 16\n", encoding="utf-8")
    cfg = Small.load(str(child), {"learning_rate": 3e-5})
    assert cfg.to_dict() == {"batch_size": 16, "learning_rate": 3e-5, "amp": "none", "do_train": True}
    assert load_config(str(child)) == {"batch_size": 16, "learning_rate": "1e-5"}  # the raw chain, untyped
    # YAML 1.1 reads 1e-5 (no dot) as a string: a float field converts it
    assert Small.load(str(base)).learning_rate == 1e-5
    (tmp_path / "typo.yaml").write_text("base: base.yaml\ndo_trian: false\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        Small.load(str(tmp_path / "typo.yaml"))
    assert str(e.value) == f"{tmp_path / 'typo.yaml'}:2: do_trian: unknown config key (did you mean 'do_train'?)"
    (tmp_path / "basetypo.yaml").write_text("batchsize: 3\n", encoding="utf-8")
    (tmp_path / "c2.yaml").write_text("base: basetypo.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"basetypo.yaml:1: batchsize: unknown config key"):
        Small.load(str(tmp_path / "c2.yaml"))
    with pytest.raises(ConfigError, match="do_train: expected true or false, got 'yes please'"):
        Small.load(str(base), {"do_train": "yes please"})
    with pytest.raises(ConfigError, match="batch_size: expected an integer, got True"):
        Small.load(str(base), {"batch_size": True})
    assert Small.load(str(base), {"batch_size": 4.0}).batch_size == 4


def test_every_shipped_config_loads_strictly():
    """Every task YAML of script/ passes the strict loader and the range checks (all keys declared)."""
    from unimo.finetune.run import load_run_config

    confs = sorted(p for p in (REPO / "script").rglob("*.yaml") if "pretrain" not in p.parts)
    assert len(confs) > 25
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for conf in confs:
            task_cls, cfg = load_run_config(str(conf), {})
            assert isinstance(cfg, task_cls.config_class)
    finally:
        os.chdir(cwd)


def test_error_format_and_exit_codes(capsys):
    err = UserError("does not exist", file="data/train.jsonl", line=7, field="image_id", hint="see --skip-bad")
    assert str(err) == "data/train.jsonl:7: image_id: does not exist (see --skip-bad)"
    assert str(DataError("a.tsv", 3, "label", "not a number")) == "a.tsv:3: field 'label': not a number"

    def bad(argv):
        raise err

    def boom(argv):
        raise RuntimeError("bug")

    assert run_cli(bad, [], prog="tool") == 2
    assert capsys.readouterr().err.strip() == f"tool: error: {err}"
    assert run_cli(lambda argv: None, []) == 0
    with pytest.raises(RuntimeError):  # an internal error is not disguised as a user error
        run_cli(boom, [])
    log = IssueLog(skip_bad=True)
    log.report(DataError("x", 1, None, "bad", "bad_json"))
    log.report(DataError("x", 2, None, "bad", "bad_json"))
    assert log.summary()["skipped"] == {"bad_json": 2}


# ------------------------------------------------------------------------------------------------ fail-fast data
def _caption_setup(tmp_path: Path, dim: int = 16, missing_on_line: int | None = None) -> tuple[Path, Path]:
    import json

    import numpy as np

    from unimo.reader.feature_formats import RegionFeatures
    from unimo.reader.feature_store import FeatureStoreWriter

    store = tmp_path / "store"
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(store, dim) as writer:
        for i in range(3):
            boxes = np.array([[0, 0, 5, 5], [2, 2, 9, 9]], np.float32)
            writer.add(RegionFeatures(str(i), 10, 10, boxes, rng.normal(size=(2, dim))))
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev"):
        lines = [json.dumps({"image_id": str(i % 3), "caption_id": str(i), "caption": f"a shape number {i}"}) for i in range(6)]
        if split == "train" and missing_on_line is not None:
            lines[missing_on_line - 1] = json.dumps({"image_id": "999", "caption_id": "9", "caption": "an image nobody extracted"})
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"task: img2txt\nmodel_config: {REPO / 'model_files/config/unimo_tiny_en.json'}\n"
                    f"vocab_dir: {REPO.parent / 'shared/data/unimo_dict'}\ndata_dir: {data}\n"
                    f"train_file: train.jsonl\ndev_file: dev.jsonl\nfeature_store: {store}\nbatch_size: 2\n"
                    "epochs: 1\nadv_steps: 0\nmax_out_len: 3\nmin_out_len: 1\nbeam_size: 1\ndisable_tqdm: true\n", encoding="utf-8")
    return conf, data


def test_unknown_training_image_fails_fast(tmp_path):
    """A training caption whose image is not in the store used to hang the run (KeyError in the DataLoader
    thread): now one line naming file, line and field, exit 2, within the start-up time."""
    import time

    conf, data = _caption_setup(tmp_path, dim=2048, missing_on_line=4)
    started = time.time()
    proc = _run(tmp_path, conf)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert errors == [f"unimo.finetune: error: {data / 'train.jsonl'}:4: field 'image_id': '999' is not in the "
                      f"feature store {tmp_path / 'store'} (convert its features into the store, remove the "
                      "record, or set skip_bad=true)"], proc.stderr[-3000:]
    assert time.time() - started < 90
    assert not (tmp_path / "out").exists()


def test_skip_bad_leaves_out_records_of_unknown_images_and_counts_them(tmp_path):
    import json

    conf, data = _caption_setup(tmp_path, dim=2048, missing_on_line=4)
    proc = _run(tmp_path, conf, "skip_bad=true", "max_steps=2", "do_eval=false", "save_steps=100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    checked = results["data_checked"]
    read_from = str(tmp_path / "out" / "checked_data" / "train.jsonl")
    assert checked["train"] == 5 and checked["skipped"] == {"train": {
        "unknown_image_records": 1, "unknown_images": 1, "file": str(data / "train.jsonl"), "read_from": read_from,
        "first_missing": ["999"]}}
    original = (data / "train.jsonl").read_text().splitlines()
    assert Path(read_from).read_text().splitlines() == original[:3] + original[4:]
    assert results["config"]["skip_bad"] is True


def test_store_dimension_mismatch_names_both_sizes(tmp_path):
    import json

    conf, _ = _caption_setup(tmp_path, dim=16)
    proc = _run(tmp_path, conf)
    assert proc.returncode == 2, proc.stderr[-3000:]
    tiny = json.loads((REPO / "model_files/config/unimo_tiny_en.json").read_text())["image_embedding_size"]
    assert tiny != 16
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and f"has 16-d region features but the model config" in errors[0] \
        and f"image_embedding_size {tiny}" in errors[0] and "feature_store" in errors[0], errors


# ------------------------------------------------------------------------------------------------ checkpoints, heads
def test_missing_init_checkpoint_names_the_download_and_convert_commands(tmp_path):
    proc = _run(tmp_path, SST2, "init_checkpoint=model_files/no_such_checkpoint")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert errors[0].startswith("unimo.finetune: error: command line: init_checkpoint: checkpoint directory not "
                                "found: model_files/no_such_checkpoint (get it with "
                                "`bash model_files/download_unimo_base_en.sh`")
    assert "script/convert/legacy.sh" in errors[0] and "init_checkpoint=null" in errors[0]
    # each command the hint names exists
    assert (REPO / "model_files/download_unimo_base_en.sh").is_file() and (REPO / "script/convert/legacy.sh").is_file()


def _classification_conf(tmp_path: Path, labels: str, train_labels: list[str]) -> Path:
    import json

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rows = [{"text_a": f"sentence number {i}", "label": lab} for i, lab in enumerate(train_labels)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    conf = tmp_path / "cls.yaml"
    conf.write_text(f"task: classification\nmodel_config: {REPO / 'model_files/config/unimo_tiny_en.json'}\n"
                    f"vocab_dir: {REPO.parent / 'shared/data/unimo_dict'}\ndata_dir: {data}\n"
                    f"train_file: train.jsonl\nlabels: {labels}\nbatch_size: 2\nmax_steps: 1\nmax_seq_len: 16\n"
                    "disable_tqdm: true\ndo_eval: false\n", encoding="utf-8")
    return conf


def test_task_checkpoint_with_another_head_size_is_refused(tmp_path):
    """A 3-label checkpoint (e.g. MNLI's) as init_checkpoint of a 2-label run: its head would be dropped and a
    fresh one trained without a word; refused before the model is built."""
    import paddle

    from unimo.finetune.run import main
    from unimo.model.configuration import UnimoConfig
    from unimo.model.modeling import UnimoForSequenceClassification

    ckpt = tmp_path / "mnli_like"
    paddle.seed(0)
    UnimoForSequenceClassification(UnimoConfig.from_json_file(str(REPO / "model_files/config/unimo_tiny_en.json")),
                                   num_labels=3).save_pretrained(str(ckpt))
    conf = _classification_conf(tmp_path, "[neg, pos]", ["neg", "pos", "pos"])
    with pytest.raises(ConfigError) as caught:
        main(["--config", str(conf), f"init_checkpoint={ckpt}", f"output_dir={tmp_path / 'out'}"])
    assert str(caught.value) == (
        f"{conf}: init_checkpoint: the checkpoint {ckpt} is a UnimoForSequenceClassification with 3 labels, this run "
        "has 2 (start from the pre-trained backbone, or use the label list / answer vocabulary the checkpoint was "
        "trained with)")
    assert not (tmp_path / "out").exists()


def test_label_outside_the_label_list_is_a_data_error(tmp_path):
    from unimo.finetune.run import main

    conf = _classification_conf(tmp_path, "[neg, pos]", ["neg", "pos", "neutral", "pos"])
    with pytest.raises(DataError) as caught:
        main(["--config", str(conf), f"output_dir={tmp_path / 'out'}"])
    assert str(caught.value) == (f"{tmp_path / 'data' / 'train.jsonl'}: field 'label': example 3: 'neutral' is not "
                                 "one of the run's labels ['neg', 'pos'] (set `labels` in the config or fix "
                                 "<train dir>/labels.json)")
    assert not (tmp_path / "out").exists()
