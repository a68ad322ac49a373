"""Fine-tuning entry point, shared by every task. Launched by ``script/<task>/<dataset>/run.sh`` as
``python -m paddle.distributed.launch .../unimo/finetune/run.py --config conf.yaml [KEY=value ...]``.

Writes into ``output_dir``: checkpoints (PaddleNLP layout, resumable), ``best/`` (best dev checkpoint),
``train_log.jsonl`` (losses, learning rate, eval metrics), predictions, and ``results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import unimo  # noqa: F401  (CPU environment before paddle)
from unimo.utils.errors import ConfigError, run_cli

DEFAULTS: dict[str, Any] = {
    "task": None, "dataset": None, "data_dir": None, "train_file": None, "dev_file": None, "test_file": None,
    "model_config": "model_files/config/unimo_base_en.json", "init_checkpoint": None, "vocab_dir": "model_files/dict",
    "do_lower_case": False, "output_dir": None, "do_train": True, "do_eval": True, "do_test": False,
    "resume_from_checkpoint": None, "hidden_dropout_prob": None, "attention_probs_dropout_prob": None,
    "epochs": 1, "max_steps": -1, "batch_size": 16, "eval_batch_size": None, "learning_rate": 5e-5,
    "warmup_ratio": 0.0, "warmup_steps": 0, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.98, "epsilon": 1e-6,
    "max_grad_norm": 1.0, "gradient_accumulation_steps": 1, "logging_steps": 10, "eval_steps": 0,
    "save_steps": 1000, "save_total_limit": 2, "seed": 1, "amp": "none", "amp_level": "O1", "recompute": False,
    "num_workers": 0, "disable_tqdm": False, "visualdl": True, "eval_each_epoch": False, "lr_decay_epochs": None, "extra_eval_splits": None,
    # VILLA adversarial training (official recipe for COCO and SNLI-VE); 0 steps = off
    "adv_steps": 0, "adv_lr": 0.03, "adv_max_norm": 0.0, "adv_init_mag": 0.4, "adv_kl_weight": 1.0,
    "adv_with_pure_model": True, "adv_official_projection": False,
}


def check_config(cfg: dict[str, Any], path: str) -> None:
    """Range and cross-field checks, before any model is built or data is read."""
    def bad(key: str, what: str, hint: str | None = None) -> ConfigError:
        return ConfigError(what, file=path, field=key, hint=hint)

    for key in ("batch_size", "gradient_accumulation_steps"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise bad(key, f"must be an integer >= 1, got {cfg[key]!r}")
    if cfg.get("eval_batch_size") is not None and (not isinstance(cfg["eval_batch_size"], int)
                                                   or cfg["eval_batch_size"] < 1):
        raise bad("eval_batch_size", f"must be an integer >= 1, got {cfg['eval_batch_size']!r}")
    for key in ("learning_rate", "epochs"):
        if not cfg[key] > 0:
            raise bad(key, f"must be > 0, got {cfg[key]!r}")
    for key in ("warmup_ratio",):
        if not 0 <= cfg[key] <= 1:
            raise bad(key, f"must be in [0, 1], got {cfg[key]!r}")
    for key in ("weight_decay", "warmup_steps", "max_grad_norm"):
        if cfg[key] < 0:
            raise bad(key, f"must be >= 0, got {cfg[key]!r}")
    model_config = cfg.get("model_config")
    if not model_config or not os.path.isfile(model_config):
        raise bad("model_config", f"file not found: {model_config!r}")
    with open(model_config, encoding="utf-8") as f:
        positions = int(json.load(f).get("max_position_embeddings", 514))
    # positions start at 2 (RoBERTa layout), so a text of n tokens needs n + 2 rows of the position table
    for key in ("max_seq_len", "max_src_len", "max_tgt_len"):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or not 1 <= value <= positions - 2):
            raise bad(key, f"must be an integer in [1, {positions - 2}], got {value!r}",
                      f"{model_config} has {positions} position embeddings; positions start at 2")
    if cfg.get("max_img_len") is not None and (not isinstance(cfg["max_img_len"], int) or cfg["max_img_len"] < 1):
        raise bad("max_img_len", f"must be an integer >= 1, got {cfg['max_img_len']!r}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from unimo.utils.config import load_config, parse_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="task YAML (script/<task>/<dataset>/conf.yaml)")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    from unimo.finetune.tasks import get_task_class

    base = load_config(args.config)
    task_name = overrides.get("task", base.get("task")) or ""
    try:
        task_cls = get_task_class(task_name)
    except KeyError as e:
        raise ConfigError(str(e.args[0]), file=args.config, field="task") from None
    defaults = {**DEFAULTS, **getattr(task_cls, "defaults", {})}
    # extra evaluation splits read `<split>_file` keys (e.g. MNLI dev_mismatched_file)
    splits = overrides.get("extra_eval_splits", base.get("extra_eval_splits")) or []
    cfg = load_config(args.config, overrides, defaults=defaults,
                      extra_keys=[f"{s}_file" for s in splits if isinstance(s, str)])
    check_config(cfg, args.config)
    if cfg.get("eval_batch_size") is None:
        cfg["eval_batch_size"] = cfg["batch_size"]
    output_dir = cfg["output_dir"] or os.path.join("output", f"{cfg['task']}_{cfg.get('dataset') or 'run'}")
    cfg["output_dir"] = output_dir

    import paddle

    from unimo.model.configuration import UnimoConfig
    from unimo.tokenizer import UnimoTokenizer
    from unimo.finetune.tasks.base import ListDataset
    from unimo.finetune.trainer import UnimoTrainer, make_training_args

    tokenizer = UnimoTokenizer.from_pretrained(cfg["vocab_dir"], do_lower_case=bool(cfg["do_lower_case"]))
    model_config = UnimoConfig.from_json_file(cfg["model_config"])
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if cfg.get(key) is not None:
            setattr(model_config, key, float(cfg[key]))
    task = task_cls(cfg, tokenizer, output_dir)
    from unimo.finetune.checks import check_multimodal_data

    # every split the run reads, against the feature store and the model config, before the model is built
    data_checked = check_multimodal_data(task, cfg, model_config, args.config)
    training_args = make_training_args(cfg, output_dir)
    paddle.seed(int(cfg["seed"]))
    model = task.build_model(model_config)

    train_data = ListDataset(task.load("train")) if cfg["do_train"] else None
    from unimo.finetune.adversarial import wrap_villa

    # VILLA adversarial training (official for COCO and SNLI-VE) wraps the task model for training only;
    # checkpoints stay the plain model's (the wrapper delegates state_dict / save_pretrained)
    trained = wrap_villa(model, cfg) if cfg["do_train"] else model
    trainer = UnimoTrainer(
        model=trained, args=training_args, train_dataset=train_data, data_collator=task.collate,
        evaluate_fn=task.evaluate if (cfg["do_eval"] and task.has_split("dev")) else None,
        key_metric=task.key_metric, greater_is_better=task.greater_is_better,
        lr_decay_epochs=cfg.get("lr_decay_epochs"), save_fn=task.save_checkpoint, visualdl=bool(cfg["visualdl"]))
    world = training_args.world_size
    global_batch = int(cfg["batch_size"]) * int(cfg["gradient_accumulation_steps"]) * world
    started = time.time()
    if cfg["do_train"]:
        trainer.train(resume_from_checkpoint=cfg["resume_from_checkpoint"])
    results: dict[str, Any] = {}
    if training_args.process_index == 0:
        best_dir = os.path.join(output_dir, "best")
        final_model = model
        if cfg["do_train"] and os.path.isdir(best_dir):
            final_model = type(model).from_pretrained(best_dir)
        elif cfg["do_train"]:
            task.save_checkpoint(model, os.path.join(output_dir, "final"))
        final_model.eval()
        metrics: dict[str, Any] = {}
        with paddle.no_grad():
            # extra splits (e.g. MNLI dev_mismatched, test_mismatched, diagnostic) read `<split>_file`;
            # dev* ones follow do_eval, the others do_test
            extra = [(s, cfg["do_eval"] if s.startswith("dev") else cfg["do_test"])
                     for s in (cfg.get("extra_eval_splits") or []) if s not in ("dev", "test")]
            for split, wanted in [("dev", cfg["do_eval"]), ("test", cfg["do_test"])] + extra:
                if wanted and task.has_split(split):
                    metrics[split] = task.evaluate(final_model, split)
        results = {
            "task": cfg["task"], "dataset": cfg.get("dataset"), "key_metric": task.key_metric, "metrics": metrics,
            "best": {"step": trainer.best_step, task.key_metric: trainer.best_metric},
            "eval_history": trainer.eval_history,
            "checkpoint": best_dir if os.path.isdir(best_dir) else cfg.get("init_checkpoint"),
            "global_batch_size": global_batch, "world_size": world, "data_checked": data_checked,
            "train_seconds": round(time.time() - started, 1), "config": cfg,
        }
        task.write_json("results.json", results)
        print(json.dumps({"results": os.path.join(output_dir, "results.json"), "metrics": metrics}))
    return results


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: (main(argv), 0)[1], sys.argv[1:], prog="unimo.finetune"))
