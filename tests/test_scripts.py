"""Every task script: conf.yaml loads (with `base:` inheritance), names a registered task with a valid metric, points
at existing model configs, carries the official hyper-parameters (docs/official_unimo_spec.md section 5), and its
run.sh is executable, parses, and launches its own conf.yaml."""
from __future__ import annotations

import ast
import glob
import os
import re
import subprocess
from pathlib import Path

import pytest

from unimo.sweep import grid_points

from unimo.utils.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "script"
ALL_CONFS = sorted(Path(p).relative_to(REPO) for p in glob.glob(str(SCRIPT / "*" / "*" / "conf.yaml")))
RUN_SHS = sorted(Path(p).relative_to(REPO) for p in glob.glob(str(SCRIPT / "*" / "*" / "run.sh")))
# fine-tuning scripts launch finetune/run.py through common.sh's run_finetune (pre-training ones use `launch`)
CONFS = [c for c in ALL_CONFS if "\nrun_finetune " in (REPO / c.parent / "run.sh").read_text(encoding="utf-8")]
DEMO_CONFS = sorted(Path(p).relative_to(REPO) for p in glob.glob(str(SCRIPT / "demo" / "*.yaml")))
LAUNCH_RE = re.compile(r'^(?:run_finetune|launch "?\S+"?) "?(script/\S+?\.yaml)"? (\S+)', re.M)
# keys a YAML may carry that no finetune module reads yet; each needs a framework change (see the key's comment)
PENDING_KEYS: set[str] = set()

# ---------------------------------------------------------------------------------------------- official values
# docs/official_unimo_spec.md section 5 (and the README). Tuples = the allowed set (the official grid).
GRID = {"epochs": 10, "batch_size": (16, 32), "learning_rate": (1e-5, 2e-5, 3e-5), "warmup_ratio": 0.06,
        "weight_decay": 0.0, "beta2": 0.98, "max_seq_len": 512}
SEQ2SEQ = {"warmup_ratio": 0.06, "weight_decay": 0.01, "beta2": 0.98, "label_smoothing": 0.1}


def _s2s(src, tgt, out_max, out_min, beam, lp, trigram, epochs, bs, lr, metric, pred_bs, **kw):
    return {**SEQ2SEQ, "max_src_len": src, "max_tgt_len": tgt, "max_out_len": out_max, "min_out_len": out_min,
            "beam_size": beam, "length_penalty": lp, "trigram_blocking": trigram, "epochs": epochs,
            "batch_size": bs, "learning_rate": lr, "metric": metric, "eval_batch_size": pred_bs, **kw}


COCO = {"max_img_len": 101, "label_smoothing": 0.1, "learning_rate": 7e-6, "warmup_ratio": 0.06,
        "weight_decay": 0.01, "beta2": 0.98, "adv_steps": 4, "adv_init_mag": 0.4, "adv_kl_weight": 1.0,
        "beam_size": 5, "length_penalty": 0.6, "max_out_len": 50, "min_out_len": 5, "trigram_blocking": False}
VE = {"max_img_len": 101, "epochs": 10, "learning_rate": 1e-5, "warmup_ratio": 0.06, "weight_decay": 0.0,
      "beta2": 0.999, "adv_steps": 4, "adv_lr": 0.05, "adv_max_norm": 0.4, "adv_init_mag": 0.4}
RET = {"max_img_len": 101, "epochs": 40, "learning_rate": 5e-6, "lr_decay_epochs": [24, 32], "weight_decay": 0.1,
       "beta2": 0.98, "negative_images": 10, "negative_captions": 10, "margin": 0.2}

OFFICIAL = {  # conf dir -> (task, key metric, model size, checkpoint name, expected values)
    "classification/SST-2": ("classification", "acc", "base", "unimo_base_en", {**GRID, "metric": "acc"}),
    "classification/SST-2_large": ("classification", "acc", "large", "unimo_large_en", {**GRID, "metric": "acc"}),
    "classification/CoLA": ("classification", "mcc", "base", "unimo_base_en", {**GRID, "metric": "mcc"}),
    "classification/CoLA_large": ("classification", "mcc", "large", "unimo_large_en", {**GRID, "metric": "mcc"}),
    "classification/MNLI-AX": ("classification", "acc", "base", "unimo_base_en",
                               {**GRID, "metric": "acc", "dev_file": "dev_matched.jsonl"}),
    "classification/MNLI-AX_large": ("classification", "acc", "large", "unimo_large_en",
                                     {**GRID, "metric": "acc", "dev_file": "dev_matched.jsonl"}),
    "regression/STS-B": ("regression", "pearson", "base", "unimo_mnli_base_en",
                         {**GRID, "metric": "pearson_spearman"}),
    "regression/STS-B_large": ("regression", "pearson", "large", "unimo_mnli_large_en",
                               {**GRID, "metric": "pearson_spearman"}),
    "seq2seq/cnndm": ("seq2seq", "rouge-l", "base", "unimo_base_en",
                      _s2s(512, 128, 128, 20, 5, 0.6, True, 20, 8, 4e-5, "rouge_cnndm", 10)),
    "seq2seq/cnndm_large": ("seq2seq", "rouge-l", "large", "unimo_large_en",
                            _s2s(512, 128, 128, 20, 6, 1.2, True, 20, 8, 2e-5, "rouge_cnndm", 8)),
    "seq2seq/gigaword": ("seq2seq", "rouge-l", "base", "unimo_base_en",
                         _s2s(128, 32, 32, 5, 5, 0.6, False, 10, 32, 3e-5, "rouge", 32)),
    "seq2seq/gigaword_large": ("seq2seq", "rouge-l", "large", "unimo_large_en",
                               _s2s(128, 32, 32, 5, 6, 1.2, False, 10, 32, 3e-5, "rouge", 32)),
    "seq2seq/squad_qg": ("seq2seq", "Bleu_4", "base", "unimo_base_en",
                         _s2s(416, 96, 48, 5, 5, 1.0, False, 20, 8, 1.25e-5, "qg", 8)),
    "seq2seq/squad_qg_large": ("seq2seq", "Bleu_4", "large", "unimo_large_en",
                               _s2s(416, 96, 48, 5, 6, 1.2, False, 20, 8, 5e-6, "qg", 8)),
    "seq2seq/coqa": ("dialog", "f1", "base", "unimo_base_en",
                     _s2s(480, 32, 30, 0, 3, 0.0, False, 20, 8, 1e-5, "coqa", 4, role_type_size=3,
                          turn_type_size=16)),
    "seq2seq/coqa_large": ("dialog", "f1", "large", "unimo_large_en",
                           _s2s(480, 32, 30, 0, 3, 0.0, False, 20, 8, 8e-6, "coqa", 8, role_type_size=3,
                                turn_type_size=16)),
    "img2txt/coco": ("img2txt", "CIDEr-D", "base", "unimo_base_en",
                     {**COCO, "epochs": 20, "batch_size": 4, "adv_lr": 0.03, "adv_max_norm": 0.0,
                      "eval_batch_size": 8}),
    "img2txt/coco_large": ("img2txt", "CIDEr-D", "large", "unimo_large_en",
                           {**COCO, "epochs": 10, "batch_size": 2, "adv_lr": 0.05, "adv_max_norm": 0.4,
                            "eval_batch_size": 1}),
    # ours (no official SCST): second captioning stage from the cross-entropy stage's best checkpoint
    "img2txt/coco_scst": ("img2txt_scst", "CIDEr-D", "base", "output/img2txt/coco/best",
                          {"adv_steps": 0, "learning_rate": 1e-6, "scst_samples": 5, "max_out_len": 50,
                           "min_out_len": 5, "beam_size": 5, "length_penalty": 0.6}),
    "visual_entailment/SNLI-VE": ("visual_entailment", "acc", "base", "unimo_base_en", {**VE, "batch_size": 12}),
    "visual_entailment/SNLI-VE_large": ("visual_entailment", "acc", "large", "unimo_large_en",
                                        {**VE, "batch_size": 4}),
    "retrieval/Flickr30k": ("retrieval", "avg_recall@1", "base", "unimo_base_en",
                            {**RET, "batch_size": 4, "score_batch_size": 128}),
    "retrieval/Flickr30k_large": ("retrieval", "avg_recall@1", "large", "unimo_large_en",
                                  {**RET, "batch_size": 2, "score_batch_size": 96}),
    "vqa/VQAv2": ("vqa", "vqa_acc", "base", "unimo_base_en", {}),     # no official recipe
    "vqa/VQAv2_large": ("vqa", "vqa_acc", "large", "unimo_large_en", {}),
    "vqa/VQAv2_val": ("vqa", "vqa_acc", "base", "unimo_base_en", {}),
}
# official devices per run (spec section 4 "Distributed launch" and 5.1-5.6): global batch = batch_size x devices
DEVICES = {"classification/SST-2": 8, "classification/MNLI-AX": 8, "regression/STS-B": 8, "classification/CoLA": 4,
           "seq2seq/cnndm": 4, "seq2seq/gigaword": 4, "seq2seq/squad_qg": 4, "seq2seq/coqa": 4,
           "img2txt/coco": 16, "img2txt/coco_scst": 16, "visual_entailment/SNLI-VE": 16, "retrieval/Flickr30k": 8}
DEVICES.update({f"{k}_large": v for k, v in DEVICES.items() if k != "img2txt/coco_scst"})
SIZE_CONFIG = {"base": "model_files/config/unimo_base_en.json", "large": "model_files/config/unimo_large_en.json"}


def _conf_dir(conf: Path) -> str:
    return str(conf.parent.relative_to("script"))


def _names_read_in_src() -> set[str]:
    """Every attribute read and string literal of the package (outside field declarations): a declared config
    field that is in neither is a key nothing reads."""
    out: set[str] = set()
    for f in glob.glob(str(REPO / "src" / "unimo" / "**" / "*.py"), recursive=True):
        for node in ast.walk(ast.parse(Path(f).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
            elif isinstance(node, ast.Attribute):
                out.add(node.attr)
    return out


def test_every_official_task_has_a_script():
    assert {_conf_dir(c) for c in CONFS} == set(OFFICIAL), "script/<task>/<dataset> dirs and the table differ"
    assert {str(p.parent) for p in RUN_SHS} == {str(c.parent) for c in ALL_CONFS}, "each conf.yaml needs a run.sh"


@pytest.mark.parametrize("conf", CONFS + DEMO_CONFS, ids=str)
def test_conf_loads_and_is_consistent(conf, tokenizer, tmp_path, monkeypatch):
    from unimo.finetune.run import load_run_config

    monkeypatch.chdir(REPO)  # paths in the YAML are relative to the repository root, where run.sh runs
    raw = load_config(str(conf))
    task_cls, cfg = load_run_config(str(conf), {})
    assert (REPO / cfg["model_config"]).is_file(), f"{conf}: model_config {cfg['model_config']} missing"
    assert Path(cfg["model_config"]).parent == Path("model_files/config")
    assert cfg.get("train_file"), f"{conf}: no train_file"
    # an evaluated split has its file (VQA v2 as the paper trains on val and evaluates on test only)
    assert cfg.get("dev_file") or not cfg.get("do_eval"), f"{conf}: do_eval without dev_file"
    assert cfg.get("test_file") or not cfg.get("do_test"), f"{conf}: do_test without test_file"
    assert cfg.get("output_dir") and cfg.get("data_dir") and cfg.get("dataset")
    read = _names_read_in_src() | PENDING_KEYS
    # split files are read as f"{split}_file"
    unread = sorted(k for k in task_cls.config_class.field_types() if k not in read and not k.endswith("_file"))
    assert not unread, f"{conf}: {task_cls.config_class.__name__} declares keys nothing reads: {unread}"
    for split in cfg.get("extra_eval_splits") or []:
        assert cfg.get(f"{split}_file"), f"{conf}: extra_eval_splits names {split} but has no {split}_file"
    # the task object accepts the config (metric names are checked there) and exposes the expected key metric
    task = task_cls(cfg, tokenizer, str(tmp_path))
    if conf in DEMO_CONFS:
        assert cfg["model_config"].endswith(("unimo_tiny_en.json", "unimo_demo_en.json"))
        assert cfg["init_checkpoint"] is None
        return
    name, key_metric, size, ckpt, expected = OFFICIAL[_conf_dir(conf)]
    assert raw["task"] == name
    assert task.key_metric == key_metric
    assert cfg["model_config"] == SIZE_CONFIG[size]
    assert cfg["init_checkpoint"] == (ckpt if ckpt.startswith("output/") else f"model_files/{ckpt}_paddle")
    for key, want in expected.items():
        got = cfg.get(key)
        if isinstance(want, tuple):
            assert got in want, f"{conf}: {key}={got!r}, official grid {want}"
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), f"{conf}: {key}={got!r}, official {want}"
        else:
            assert got == want, f"{conf}: {key}={got!r}, official {want!r}"
    devices = DEVICES.get(_conf_dir(conf))
    if devices is not None:  # the official global batch, and for GLUE the schedule the official runner computed
        assert cfg["global_batch_size"] == cfg["batch_size"] * devices, (conf, cfg["global_batch_size"])
        assert cfg["lr_schedule"] == ("official_glue" if name in ("classification", "regression") else "linear")
        for point in grid_points(cfg.sweep_grid()):
            assert point.get("global_batch_size", cfg["global_batch_size"]) == \
                point.get("batch_size", cfg["batch_size"]) * devices, (conf, point)


def test_large_confs_extend_their_base():
    for conf in CONFS:
        if not conf.parent.name.endswith("_large"):
            continue
        raw = (REPO / conf).read_text(encoding="utf-8")
        base_dir = conf.parent.name[: -len("_large")]
        assert re.search(rf"^base: \.\./{re.escape(base_dir)}/conf\.yaml$", raw, re.M), conf
        large, base = load_config(str(REPO / conf)), load_config(str(REPO / conf.parent.parent / base_dir /
                                                                       "conf.yaml"))
        assert large["task"] == base["task"] and large["dataset"] == base["dataset"]
        assert large["output_dir"] != base["output_dir"]


def test_output_dirs_and_log_names_are_unique():
    outs = [load_config(str(REPO / c)).get("output_dir") for c in ALL_CONFS]
    outs = [o for o in outs if o]
    assert len(set(outs)) == len(outs), sorted(o for o in outs if outs.count(o) > 1)
    names = [LAUNCH_RE.search((REPO / r).read_text()).group(2) for r in RUN_SHS]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("run_sh", RUN_SHS, ids=str)
def test_run_sh(run_sh):
    path = REPO / run_sh
    assert os.access(path, os.X_OK), f"{run_sh} is not executable"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    m = re.search(r'^source "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/([^"]+)"$', text, re.M)
    assert m, f"{run_sh}: does not source common.sh relative to itself"
    assert (path.parent / m.group(1)).resolve() == SCRIPT / "common.sh"
    calls = [m.group(1) for m in LAUNCH_RE.finditer(text)]
    assert calls == [str(run_sh.parent / "conf.yaml")], f"{run_sh}: must launch its own conf.yaml, got {calls}"
    assert text.rstrip().endswith('"$@"'), f"{run_sh}: command-line overrides must reach the entry point"
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
