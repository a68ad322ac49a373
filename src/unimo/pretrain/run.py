"""Pre-training entry point (paper section 3): language learning on a text corpus, visual learning on an image
collection and cross-modal learning on image-text pairs, trained jointly. Launched by
``script/pretrain/<corpus>/run.sh`` as ``python -m paddle.distributed.launch .../unimo/pretrain/run.py --config
conf.yaml [KEY=value ...]``.

The loop is the project's ``UnimoTrainer`` (PaddleNLP Trainer + official LR schedule + per-loss JSONL log); this
file adds the pre-training data (a virtual epoch of ``max_steps`` x global batch items, read in order by a
sequential distributed sampler, so a resumed run skips consumed batches in O(1)) and the pre-training model.
The paper's ablations are configurations: ``text_per_item`` / ``image_per_item`` / ``pair_per_item`` set to 0
disable a stream ("w/o single-modal" = ``text_per_item: 0, image_per_item: 0``; "w/o texts" = ``text_per_item:
0``), ``cmcl_weight: 0`` disables CMCL, ``cmcl_negatives: 0`` drops the rewritten hard negatives.

Writes into ``output_dir``: checkpoints (``checkpoint-N``, resumable), ``train_log.jsonl`` (total and per-loss
values), ``final/`` (``save_pretrained``: loadable by every fine-tuning task as ``init_checkpoint``) and
``results.json`` (data summaries, first / last logged losses, CMCL retrieval on ``eval_pairs_file``).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import json
import os
import sys
import time
from typing import Any, Optional

import unimo  # noqa: F401  (CPU environment before paddle)

from unimo.pretrain.data import STREAMS, PretrainDataConfig
from unimo.training.config import ModelConfig, TrainingConfig

@dataclass
class PretrainConfig(TrainingConfig, ModelConfig, PretrainDataConfig):
    """Every pre-training key: the shared loop and model concerns, the data concern (``PretrainDataConfig``: lengths,
    masking, streams, CMCL sampling), the corpora and the loss weights declared here."""

    # corpora (relative paths are resolved against data_dir)
    data_dir: Optional[str] = None
    text_corpus: Optional[str] = None
    text_format: str = "line"  # line: one document per line; blank: documents separated by blank lines
    image_store: Optional[str] = None
    image_list: Optional[str] = None
    pair_file: Optional[str] = None
    eval_pairs_file: Optional[str] = None  # CMCL retrieval at each evaluation (eval_steps > 0)
    skip_bad: bool = False
    # None = the model config's value
    txt_mask_ratio: Optional[float] = None
    vl_mask_ratio: Optional[float] = None
    image_predict_class: Optional[bool] = None
    image_use_soft_label: Optional[bool] = None
    image_predict_feature: Optional[bool] = None
    # losses
    cmcl_encoding: str = "joint"  # joint: paper section 3.1, one pass per candidate pair; dual: separate encodings
    cmcl_in_batch_negatives: bool = False  # joint only: also the other pairs' texts (equation 1 has none)
    cmcl_head: str = "pooler"  # "an FC layer": the official poolers (trained; the fine-tuning heads read them)
    # or fc: separate linear FCs (the poolers then keep their initialisation)
    cmcl_temperature: float = 0.07
    cmcl_symmetric: bool = False
    text_weight: float = 1.0
    image_weight: float = 1.0
    pair_weight: float = 1.0
    cmcl_weight: float = 1.0
    vl_weight: float = 1.0
    mrfr_weight: Optional[float] = None
    label_smoothing: float = 0.0
    anchor_unused_parameters: bool = True

    def validate(self) -> None:
        super().validate()
        self.require(self.text_format in ("line", "blank"), "text_format", "must be line or blank")
        for key in ("text_weight", "image_weight", "pair_weight", "cmcl_weight", "vl_weight", "label_smoothing"):
            self.require(getattr(self, key) >= 0, key, "must be >= 0")
        self.require(self.cmcl_temperature > 0, "cmcl_temperature", "must be > 0")
        self.require(self.cmcl_encoding in ("joint", "dual"), "cmcl_encoding", "must be joint or dual")
        self.require(not (self.cmcl_encoding == "joint" and self.cmcl_symmetric), "cmcl_symmetric",
                     "the text -> image direction is defined for cmcl_encoding: dual only")

    TEXT_LENGTH_KEYS = ("max_text_len", "max_caption_len")

    def check_files(self) -> None:
        super().check_files()
        from unimo.model.configuration import UnimoConfig

        try:
            data_config(self, UnimoConfig.from_json_file(self.model_config))
        except ValueError as e:
            raise self.error("data", str(e)) from None


def _resolve(cfg: dict[str, Any], key: str) -> Optional[str]:
    path = cfg.get(key)
    if not path:
        return None
    path = str(path)
    if not os.path.isabs(path) and cfg.get("data_dir") and not os.path.exists(path):
        path = os.path.join(str(cfg.data_dir), path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{key}: {path} does not exist")
    return path


def data_config(cfg: "PretrainConfig", model_config) -> PretrainDataConfig:
    fields = {f.name for f in dataclasses.fields(PretrainDataConfig)}
    values = {k: cfg[k] for k in fields if k in cfg}
    for key, fallback in (("txt_mask_ratio", model_config.txt_mask_ratio),
                          ("vl_mask_ratio", model_config.vl_mask_ratio),
                          ("image_predict_class", model_config.image_predict_class),
                          ("image_use_soft_label", model_config.image_use_soft_label)):
        if values.get(key) is None:
            values[key] = fallback
    data = PretrainDataConfig(**values)
    data.check()
    return data


def model_kwargs(cfg: "PretrainConfig", dcfg: PretrainDataConfig) -> dict[str, Any]:
    """The :class:`UnimoForPretraining` arguments of a pre-training configuration (its streams, CMCL and loss
    settings; ``dcfg`` = :func:`data_config`, which fills the region-label settings from the model config)."""
    return dict(streams=[s for s in STREAMS if dcfg.per_item(s) > 0], cmcl_encoding=cfg.cmcl_encoding,
                cmcl_in_batch_negatives=cfg.cmcl_in_batch_negatives,
                cmcl_share_negatives=bool(cfg.cmcl_share_negatives), cmcl_head=cfg.cmcl_head,
                cmcl_temperature=float(cfg.cmcl_temperature),
                cmcl_symmetric=bool(cfg.cmcl_symmetric), text_weight=float(cfg.text_weight),
                image_weight=float(cfg.image_weight), pair_weight=float(cfg.pair_weight),
                cmcl_weight=float(cfg.cmcl_weight), vl_weight=float(cfg.vl_weight),
                mrfr_weight=None if cfg.mrfr_weight is None else float(cfg.mrfr_weight),
                image_predict_feature=cfg.image_predict_feature, image_predict_class=dcfg.image_predict_class,
                image_use_soft_label=dcfg.image_use_soft_label, label_smoothing=float(cfg.label_smoothing))


def build(cfg: "PretrainConfig") -> dict[str, Any]:
    """Everything a run needs: tokenizer, corpora, dataset, collator, model, training args, trainer."""
    import paddle

    from unimo.training.trainer import make_training_args
    from unimo.model.configuration import UnimoConfig
    from unimo.reader.features import FeatureStore
    from unimo.reader.image_batch import ImageBatcher
    from unimo.tokenizer import UnimoTokenizer
    from unimo.pretrain.data import (PairCorpus, PretrainCollator, PretrainDataset, TextCorpus, load_image_ids,
                                     steps_per_pass)
    from unimo.pretrain.model import UnimoForPretraining

    if cfg.get("eval_batch_size") is None:
        cfg.eval_batch_size = cfg.batch_size
    cfg.output_dir = cfg.output_dir or os.path.join("output", "pretrain")
    model_config = UnimoConfig.from_json_file(cfg.model_config)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if cfg.get(key) is not None:
            setattr(model_config, key, float(cfg[key]))
    dcfg = data_config(cfg, model_config)
    tokenizer = UnimoTokenizer.from_pretrained(cfg.vocab_dir, do_lower_case=bool(cfg.do_lower_case))
    skip_bad = bool(cfg.skip_bad)
    progress = not bool(cfg.disable_tqdm)
    summaries: dict[str, Any] = {}

    text = images = pairs = None
    image_ids: list[str] = []
    if dcfg.text_per_item:
        path = _resolve(cfg, "text_corpus")
        if path is None:
            raise ValueError("text_per_item > 0 needs text_corpus (or set text_per_item: 0)")
        text = TextCorpus(path, str(cfg.text_format), skip_bad=skip_bad, progress=progress)
        summaries["text"] = text.summary
    store_path = _resolve(cfg, "image_store")
    if dcfg.image_per_item or dcfg.pair_per_item:
        if store_path is None:
            raise ValueError("the image and pair streams need image_store (a feature store directory)")
        store = FeatureStore.open(store_path)
        images = ImageBatcher(store, dcfg.max_img_len, dcfg.conf_threshold, dcfg.min_boxes, dcfg.max_boxes,
                              dcfg.fixed_boxes)
    if dcfg.image_per_item:
        summaries["image"] = {}
        image_ids = load_image_ids(images.store, _resolve(cfg, "image_list"), skip_bad, summaries["image"])
    if dcfg.pair_per_item:
        path = _resolve(cfg, "pair_file")
        if path is None:
            raise ValueError("pair_per_item > 0 needs pair_file (or set pair_per_item: 0)")
        pairs = PairCorpus(path, store=images.store, skip_bad=skip_bad, progress=progress)
        summaries["pair"] = pairs.summary
    for name, s in summaries.items():
        if s.get("skipped_total"):
            print(json.dumps({"skipped_bad_records": name, **{k: s[k] for k in ("skipped", "messages") if k in s}}))

    training_args = make_training_args(cfg, cfg.output_dir)
    world = int(getattr(training_args, "dataset_world_size", training_args.world_size))
    items_per_step = int(cfg.batch_size) * int(cfg.gradient_accumulation_steps) * world
    sizes = {"text": len(text) if text is not None else 0, "image": len(image_ids),
             "pair": len(pairs) if pairs is not None else 0}
    max_steps = int(cfg.get("max_steps") or -1)
    if max_steps <= 0:
        max_steps = int(float(cfg.epochs) * steps_per_pass(sizes, dcfg, items_per_step))
    training_args.max_steps = max_steps  # the virtual epoch holds exactly max_steps global batches
    dataset = PretrainDataset(dcfg, tokenizer, max_steps * items_per_step, text=text, images=images,
                              image_ids=image_ids, pairs=pairs, items_per_step=items_per_step)
    collator = PretrainCollator(share_negatives=dcfg.cmcl_share_negatives)

    kwargs = model_kwargs(cfg, dcfg)
    paddle.seed(int(cfg.seed))
    init = cfg.get("init_checkpoint")
    if init:
        model = UnimoForPretraining.from_pretrained(init, config=model_config, trust_pickle=cfg.trust_pickle,
                                                    **kwargs)
        print(json.dumps({"init_checkpoint": init, "missing_initialised": model.load_report.missing,
                          "unused_in_checkpoint": model.load_report.unexpected}))
    else:
        model = UnimoForPretraining(model_config, **kwargs)
    model.anchor_unused = bool(cfg.anchor_unused_parameters)

    evaluate_fn = None
    eval_pairs = _resolve(cfg, "eval_pairs_file")
    if eval_pairs and int(cfg.get("eval_steps") or 0) > 0:
        if images is None:
            raise ValueError("eval_pairs_file needs image_store")
        evaluate_fn = _retrieval_fn(eval_pairs, images, tokenizer, dcfg.max_caption_len, int(cfg.eval_batch_size))
    trainer = pretrain_trainer_class()(model=model, args=training_args, train_dataset=dataset, data_collator=collator,
                              evaluate_fn=evaluate_fn, key_metric=None, visualdl=cfg.visualdl,
                              lr_schedule_scale=cfg.lr_schedule_scale(), trust_pickle=cfg.trust_pickle)
    return {"cfg": cfg, "data_config": dcfg, "tokenizer": tokenizer, "images": images, "dataset": dataset,
            "collator": collator, "model": model, "trainer": trainer, "training_args": training_args,
            "summaries": summaries, "eval_pairs": eval_pairs, "items_per_step": items_per_step}


_TRAINER_CLASS = None


def pretrain_trainer_class():
    """``UnimoTrainer`` with a sequential distributed sampler (per-loss averages are UnimoTrainer's).

    Built on first use so that importing this module does not import PaddleNLP (~6 s).
    """
    global _TRAINER_CLASS
    if _TRAINER_CLASS is not None:
        return _TRAINER_CLASS
    from paddlenlp.utils.batch_sampler import DistributedBatchSampler as NlpDistributedBatchSampler

    from unimo.training.trainer import UnimoTrainer

    class PretrainTrainer(UnimoTrainer):

        def _get_train_sampler(self):
            # The dataset is already in training order (its item -> example map is shuffled per pass), so read it
            # sequentially: step g on rank r gets items [(g * ranks + r) * B, ... + B), the r-th slice of the global
            # batch g, and a resumed run skips consumed batches by arithmetic (consumed_samples) instead of
            # collating and dropping them.
            return NlpDistributedBatchSampler(
                self.train_dataset, batch_size=self.args.per_device_train_batch_size,
                num_replicas=self.args.dataset_world_size, rank=self.args.dataset_rank, shuffle=False,
                drop_last=True)

    _TRAINER_CLASS = PretrainTrainer
    return PretrainTrainer


def _retrieval_fn(path: str, images, tokenizer, max_caption_len: int, batch_size: int):
    from unimo.pretrain.eval_retrieval import cmcl_retrieval

    def fn(model, split: str) -> dict[str, float]:
        m = cmcl_retrieval(model, path, images, tokenizer, max_caption_len, batch_size)
        return {k: v for k, v in m.items() if isinstance(v, float)}

    return fn


def loss_history(log_history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """First and last logged value of the total and of every named loss (``loss`` / ``loss_<name>`` entries)."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for entry in log_history:
        for k, v in entry.items():
            if (k == "loss" or k.startswith("loss_")) and isinstance(v, (int, float)):
                first.setdefault(k, float(v))
                last[k] = float(v)
    return {"first": first, "last": last}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    from unimo.utils.config import parse_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pre-training YAML (script/pretrain/<corpus>/conf.yaml)")
    args, rest = parser.parse_known_args(argv)
    cfg = PretrainConfig.load(args.config, parse_overrides(rest))
    cfg.check_init_checkpoint()
    parts = build(cfg)
    trainer, model, cfg = parts["trainer"], parts["model"], parts["cfg"]
    started = time.time()
    trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    results: dict[str, Any] = {}
    if trainer.args.process_index == 0:
        import paddle

        output_dir = cfg.output_dir
        final_dir = os.path.join(output_dir, "final")
        model.save_pretrained(final_dir)
        retrieval = None
        if parts["eval_pairs"]:
            from unimo.pretrain.eval_retrieval import cmcl_retrieval

            with paddle.no_grad():
                retrieval = cmcl_retrieval(model, parts["eval_pairs"], parts["images"], parts["tokenizer"],
                                           parts["data_config"].max_caption_len, int(cfg.eval_batch_size))
        results = {
            "final_checkpoint": final_dir, "max_steps": trainer.args.max_steps,
            "global_batch_items": parts["items_per_step"], "world_size": trainer.args.world_size,
            "streams": model.streams, "losses": loss_history(trainer.state.log_history),
            "retrieval": retrieval, "eval_history": trainer.eval_history, "data": parts["summaries"],
            "train_seconds": round(time.time() - started, 1), "config": cfg.to_dict(),
        }
        path = os.path.join(output_dir, "results.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)
        os.replace(path + ".tmp", path)
        print(json.dumps({"results": path, "losses": results["losses"]["last"],
                          "retrieval_avg_recall@1": None if retrieval is None else retrieval["avg_recall@1"]}))
    return results


if __name__ == "__main__":
    from unimo.utils.errors import run_cli

    from unimo.utils.env import exit_process

    exit_process(run_cli(lambda argv: (main(argv), 0)[1], sys.argv[1:], prog="unimo.pretrain"))
