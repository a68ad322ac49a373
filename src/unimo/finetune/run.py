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


def load_run_config(path: str, overrides: dict[str, Any]):
    """The task's typed configuration (``<Task>.config_class``) from the YAML chain + overrides: unknown keys, wrong
    types, out-of-range values and cross-field faults are ``ConfigError`` naming file, line and key."""
    from unimo.finetune.config import FinetuneConfig
    from unimo.finetune.tasks import get_task_class
    from unimo.utils.config import _read_yaml_chain, _key_line

    task_name, where, line = overrides.get("task"), "command line", None
    splits = overrides.get("extra_eval_splits")
    for file, data in _read_yaml_chain(path):
        if "task" in data and "task" not in overrides:
            task_name, where, line = data["task"], file, _key_line(file, "task")
        if "extra_eval_splits" in data and "extra_eval_splits" not in overrides:
            splits = data["extra_eval_splits"]
    try:
        task_cls = get_task_class(str(task_name or ""))
    except KeyError as e:
        raise ConfigError(str(e.args[0]), file=where if task_name else path, line=line, field="task") from None
    cfg = task_cls.config_class.load(path, overrides, extra_keys=FinetuneConfig.extra_split_keys(splits))
    return task_cls, cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from unimo.utils.config import parse_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="task YAML (script/<task>/<dataset>/conf.yaml)")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    task_cls, cfg = load_run_config(args.config, overrides)
    cfg.check_init_checkpoint()
    if cfg.eval_batch_size is None:
        cfg.eval_batch_size = cfg.batch_size
    output_dir = cfg.output_dir or os.path.join("output", f"{cfg.task}_{cfg.dataset or 'run'}")
    cfg.output_dir = output_dir

    import paddle

    from unimo.model.configuration import UnimoConfig
    from unimo.tokenizer import UnimoTokenizer
    from unimo.finetune.tasks.base import ListDataset
    from unimo.training.trainer import UnimoTrainer, make_training_args

    tokenizer = UnimoTokenizer.from_pretrained(cfg.vocab_dir, do_lower_case=cfg.do_lower_case)
    model_config = UnimoConfig.from_json_file(cfg.model_config)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if getattr(cfg, key) is not None:
            setattr(model_config, key, getattr(cfg, key))
    task = task_cls(cfg, tokenizer, output_dir)
    from unimo.finetune.checks import check_heads, check_multimodal_data

    # every split the run reads, against the feature store and the model config, before the model is built
    data_checked = check_multimodal_data(task, cfg, model_config, args.config)
    data_checked.update(check_heads(task, cfg, args.config))
    training_args = make_training_args(cfg, output_dir)
    paddle.seed(cfg.seed)
    model = task.build_model(model_config)

    train_data = ListDataset(task.load("train")) if cfg.do_train else None
    from unimo.training.adversarial import wrap_villa

    # VILLA adversarial training (official for COCO and SNLI-VE) wraps the task model for training only;
    # checkpoints stay the plain model's (the wrapper delegates state_dict / save_pretrained)
    trained = wrap_villa(model, cfg) if cfg.do_train else model
    trainer = UnimoTrainer(
        model=trained, args=training_args, train_dataset=train_data, data_collator=task.collate,
        evaluate_fn=task.evaluate if (cfg.do_eval and task.has_split("dev")) else None,
        key_metric=task.key_metric, greater_is_better=task.greater_is_better,
        lr_decay_epochs=cfg.lr_decay_epochs, save_fn=task.save_checkpoint, visualdl=cfg.visualdl,
        lr_schedule_scale=cfg.lr_schedule_scale(), trust_pickle=cfg.trust_pickle)
    world = training_args.world_size
    global_batch = cfg.batch_size * cfg.gradient_accumulation_steps * world
    started = time.time()
    if cfg.do_train:
        trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    results: dict[str, Any] = {}
    if training_args.process_index == 0:
        best_dir = os.path.join(output_dir, "best")
        final_model = model
        if cfg.do_train and os.path.isdir(best_dir):
            final_model = type(model).from_pretrained(best_dir)
        elif cfg.do_train:
            task.save_checkpoint(model, os.path.join(output_dir, "final"))
        final_model.eval()
        metrics: dict[str, Any] = {}
        with paddle.no_grad():
            # extra splits (e.g. MNLI dev_mismatched, test_mismatched, diagnostic) read `<split>_file`;
            # dev* ones follow do_eval, the others do_test
            extra = [(s, cfg.do_eval if s.startswith("dev") else cfg.do_test)
                     for s in (cfg.extra_eval_splits or []) if s not in ("dev", "test")]
            for split, wanted in [("dev", cfg.do_eval), ("test", cfg.do_test)] + extra:
                if wanted and task.has_split(split):
                    metrics[split] = task.evaluate(final_model, split)
        results = {
            "task": cfg.task, "dataset": cfg.dataset, "key_metric": task.key_metric, "metrics": metrics,
            "best": {"step": trainer.best_step, task.key_metric: trainer.best_metric},
            "eval_history": trainer.eval_history,
            "checkpoint": best_dir if os.path.isdir(best_dir) else cfg.init_checkpoint,
            "global_batch_size": global_batch, "official_global_batch_size": cfg.global_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "lr_schedule": cfg.lr_schedule,
            "world_size": world, "data_checked": data_checked,
            "train_seconds": round(time.time() - started, 1), "config": cfg.to_dict(),
        }
        task.write_json("results.json", results)
        print(json.dumps({"results": os.path.join(output_dir, "results.json"), "metrics": metrics}))
    return results


if __name__ == "__main__":
    from unimo.utils.env import exit_process

    exit_process(run_cli(lambda argv: (main(argv), 0)[1], sys.argv[1:], prog="unimo.finetune"))
