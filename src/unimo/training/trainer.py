"""The one training loop of the project: PaddleNLP's ``Trainer`` with the official UNIMO optimisation recipe.

What we add to PaddleNLP's loop, and why:
* the official learning-rate schedule (``linear_warmup_decay``: ``peak*step/warmup`` then ``peak*(1-step/total)``,
  counted from step 0, so there is a small drop at the end of warm-up), instead of PaddleNLP's "linear";
* AdamW with the official decay exclusion (LayerNorm parameters and biases; PaddleNLP's rule "name contains
  bias/norm" is exactly that for our parameter names), beta2/epsilon from the task YAML, global-norm clip 1.0;
* task-defined evaluation (beam search, VQA accuracy, retrieval recall...) called at the Trainer's eval points,
  with best-checkpoint selection by the task's key metric (saved to ``<output_dir>/best``);
* per-loss logging: models may return ``(loss, {"name": tensor, ...})`` and each named loss is averaged over the
  logging interval and written, with the Trainer's own logs, to ``<output_dir>/train_log.jsonl``.
* exact resume in any epoch: the training order of epoch e is a permutation drawn from (seed, e)
  (:class:`EpochSeededBatchSampler`; PaddleNLP's single-process sampler draws from the global NumPy RNG, so a run
  resumed after its first epoch saw another order), and the evaluation history and best checkpoint are saved in
  each ``checkpoint-N`` and restored on resume (else the resumed run's first evaluation always "improves");
* resuming opens no pickle that could run code: PaddleNLP ``paddle.load``s the checkpoint's weights, optimizer,
  scheduler and RNG files, so each is first vetted by the restricted unpickler (``unimo.utils.safe_load``; numpy
  arrays and Paddle generator states only); ``trust_pickle=True`` skips the check;
* data-loading errors end the run at once (:class:`GuardedCollator`): Paddle's DataLoader hangs forever when the
  collate function raises in its prefetch thread (``num_workers: 0``) and reports a worker's exception as
  "Blocking queue is killed" otherwise;
Everything else (fleet data parallel, gradient accumulation, AMP on GPU, exact resume incl. RNG and data position,
checkpoint rotation, tqdm) is PaddleNLP's.
"""
from __future__ import annotations

import json
import os
import traceback
from typing import Any, Callable, Optional

import numpy as np
import paddle
from paddlenlp.trainer import Trainer, TrainingArguments

from ..utils.errors import UserError
from .config import TrainingConfig

LOADER_ERROR_KEY = "__unimo_loader_error__"
EVAL_STATE_NAME = "unimo_eval_state.json"


class EpochSeededBatchSampler(paddle.io.DistributedBatchSampler):
    """Paddle's distributed batch sampler (rank r takes its share of each epoch's permutation) with the permutation
    of epoch e drawn from ``RandomState(seed * 1000003 + e)``: reproducible per epoch whatever happened before (a
    resumed run), and different for different seeds (Paddle's own draws from ``RandomState(e)`` for every seed)."""

    def __init__(self, *args: Any, seed: int = 1, **kwargs: Any):
        self.seed = int(seed)
        super().__init__(*args, **kwargs)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:  # noqa: D401 - Paddle's API
        self.epoch = (self.seed * 1000003 + int(epoch)) % (2 ** 32)


class GuardedCollator:
    """A collate function that cannot hang the loader: an exception is caught where it happens (the loader's
    prefetch thread or a worker process) and returned as a one-key batch carrying its message, which the training
    step re-raises in the main process (:func:`raise_loader_error`) - a user error (bad record) as the same one-line
    error, anything else with its traceback."""

    def __init__(self, collate: Callable[[Any], Any]):
        self.collate = collate

    def __call__(self, examples: Any) -> Any:
        try:
            return self.collate(examples)
        except Exception as e:  # noqa: BLE001 - carried to the main process and re-raised there
            user = isinstance(e, UserError)
            payload = json.dumps({"user": user, "message": str(e) if user else traceback.format_exc()})
            return {LOADER_ERROR_KEY: np.frombuffer(payload.encode("utf-8"), dtype=np.uint8).copy()}


def raise_loader_error(inputs: Any) -> None:
    """Re-raise the error a :class:`GuardedCollator` put into ``inputs`` (no-op for a normal batch)."""
    if not isinstance(inputs, dict) or LOADER_ERROR_KEY not in inputs:
        return
    value = inputs[LOADER_ERROR_KEY]
    raw = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    payload = json.loads(raw.astype(np.uint8).tobytes().decode("utf-8"))
    if payload["user"]:
        raise UserError(payload["message"])
    raise RuntimeError("data loading failed:\n" + payload["message"])


def official_lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak LR at ``step`` (official ``linear_warmup_decay``)."""
    def fn(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return step / warmup_steps
        return max(0.0, 1.0 - step / max(1, total_steps))
    return fn


def schedule_steps(warmup_ratio: float, warmup_steps: int, total_steps: int, scale: float = 1.0) -> tuple[int, int]:
    """(warm-up steps, decay length) of the linear schedule over ``total_steps`` real steps.

    ``scale`` > 1 is ``lr_schedule: official_glue``: the official GLUE runner (one process, ParallelExecutor over k
    devices, spec section 5) computed ``max_train_steps = epochs x examples / batch_size`` as if one device took
    every batch, and the warm-up as ``warmup_proportion x max_train_steps``, while each real step consumed k
    batches. In real steps that is a warm-up of ``warmup_ratio x k x total`` and a decay towards zero at
    ``k x total``: with k = 8 and 0.06, warm-up covers 48% of the run and the LR ends at (1 - 1/8) = 0.875 x peak.
    k = global_batch_size / batch_size. An explicit ``warmup_steps`` is taken as given (in real steps)."""
    warmup = warmup_steps if warmup_steps > 0 else int(warmup_ratio * scale * total_steps)
    return warmup, int(round(scale * total_steps))


class UnimoTrainer(Trainer):
    """``Trainer`` + official schedule + task evaluation + per-loss JSON logging."""

    def __init__(self, *args: Any, evaluate_fn: Optional[Callable[[Any, str], dict[str, float]]] = None,
                 key_metric: Optional[str] = None, greater_is_better: bool = True,
                 lr_decay_epochs: Optional[list[float]] = None,
                 save_fn: Optional[Callable[[Any, str], None]] = None, visualdl: bool = True,
                 lr_schedule_scale: float = 1.0, trust_pickle: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trust_pickle = bool(trust_pickle)
        self.lr_schedule_scale = float(lr_schedule_scale)
        self.lr_decay_epochs = list(lr_decay_epochs or [])
        self.save_fn = save_fn or (lambda model, directory: model.save_pretrained(directory))
        self.evaluate_fn = evaluate_fn
        self.key_metric = key_metric
        self.greater_is_better = greater_is_better
        self.best_metric: Optional[float] = None
        self.best_step: Optional[int] = None
        self.eval_history: list[dict[str, Any]] = []
        self._loss_parts: dict[str, float] = {}
        self._loss_part_counts: dict[str, int] = {}
        # VisualDL scalars (the `visualdl` config key; UNIMO_VISUALDL=0 switches them off for every run)
        self._vdl = None if visualdl and os.environ.get("UNIMO_VISUALDL", "1") != "0" else False
        if self.data_collator is not None and not isinstance(self.data_collator, GuardedCollator):
            self.data_collator = GuardedCollator(self.data_collator)

    def training_step(self, model, inputs):
        raise_loader_error(inputs)
        return super().training_step(model, inputs)

    # -------------------------------------------------------------- data order and resume
    def _get_train_sampler(self):
        if self.train_dataset is None:
            return None
        return EpochSeededBatchSampler(self.train_dataset, batch_size=self.args.per_device_train_batch_size,
                                       num_replicas=self.args.dataset_world_size, rank=self.args.dataset_rank,
                                       shuffle=True, drop_last=self.args.dataloader_drop_last, seed=self.args.seed)

    def _save_checkpoint(self, model, metrics=None):
        super()._save_checkpoint(model, metrics)
        if self.args.process_index == 0:
            from ..utils.io import write_json_atomic

            folder = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}")
            if os.path.isdir(folder):
                write_json_atomic(os.path.join(folder, EVAL_STATE_NAME), {
                    "eval_history": self.eval_history, "best_metric": self.best_metric, "best_step": self.best_step})

    def train(self, resume_from_checkpoint=None, *args: Any, **kwargs: Any):
        if resume_from_checkpoint is True:  # PaddleNLP's "the last checkpoint-N of output_dir"
            from paddlenlp.trainer.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or resume_from_checkpoint
        if isinstance(resume_from_checkpoint, str) and not self.trust_pickle:
            # PaddleNLP reads weights, optimizer, scheduler and RNG state with paddle.load (a pickle that may run
            # code): each is first rebuilt by the restricted unpickler, which refuses anything but arrays
            from ..utils.safe_load import check_training_checkpoint

            check_training_checkpoint(resume_from_checkpoint)
        if isinstance(resume_from_checkpoint, str):
            path = os.path.join(resume_from_checkpoint, EVAL_STATE_NAME)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    state = json.load(f)
                self.eval_history = list(state["eval_history"])
                self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # -------------------------------------------------------------- optimisation
    def create_scheduler(self, num_training_steps: int):
        if self.lr_scheduler is None:
            warmup, decay_steps = schedule_steps(self.args.warmup_ratio, self.args.warmup_steps, num_training_steps,
                                                 self.lr_schedule_scale)
            if self.lr_decay_epochs:
                # official retrieval schedule (scale_by_epoch_decay): x0.1 at each listed epoch, no decay otherwise
                steps_per_epoch = max(1, num_training_steps / max(self.args.num_train_epochs, 1e-9))
                bounds = [int(e * steps_per_epoch) for e in self.lr_decay_epochs]
                lr_lambda = lambda step: (min(1.0, step / warmup) if warmup else 1.0) * 0.1 ** sum(  # noqa: E731
                    step >= b for b in bounds)
            else:
                lr_lambda = official_lr_lambda(warmup, decay_steps)
            self.lr_scheduler = paddle.optimizer.lr.LambdaDecay(learning_rate=self.args.learning_rate,
                                                                lr_lambda=lr_lambda)
        return self.lr_scheduler

    # -------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False):
        """The model's loss. Task models return an output dataclass (``.loss``; ``.loss_parts``, a dict of named
        losses, is averaged per name over the logging interval and logged); pre-training and wrappers may return
        ``(loss, {"name": tensor})``."""
        outputs = model(**inputs)
        parts = None
        if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], dict):
            loss, parts = outputs
        elif isinstance(outputs, tuple):
            loss = outputs[0]
        elif hasattr(outputs, "loss"):
            loss, parts = outputs.loss, getattr(outputs, "loss_parts", None)
        else:
            loss = outputs
        for name, value in (parts or {}).items():  # averaged per name: a part may come from only some steps
            self._loss_parts[name] = self._loss_parts.get(name, 0.0) + float(value)
            self._loss_part_counts[name] = self._loss_part_counts.get(name, 0) + 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], **kwargs: Any) -> None:
        if self._loss_parts and "loss" in logs:
            for name, total in self._loss_parts.items():
                logs[f"loss_{name}"] = round(total / self._loss_part_counts[name], 6)
            self._loss_parts, self._loss_part_counts = {}, {}
        super().log(logs, **kwargs)
        if self.args.process_index == 0:
            self._visualdl_scalars(logs)
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, "train_log.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": self.state.global_step, **logs}) + "\n")

    def _visualdl_scalars(self, logs: dict[str, float]) -> None:
        if self._vdl is None and _has_visualdl():
            from visualdl import LogWriter

            self._vdl = LogWriter(logdir=os.path.join(self.args.output_dir, "vdl_log"))
        if self._vdl:
            for key, value in logs.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._vdl.add_scalar(key, value, self.state.global_step)

    # -------------------------------------------------------------- evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        if self.evaluate_fn is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        from .adversarial import unwrap_model

        model = unwrap_model(self.model._layers if isinstance(self.model, paddle.DataParallel) else self.model)
        metrics: dict[str, float] = {}
        if self.eval_history and self.eval_history[-1]["step"] == self.state.global_step:
            # PaddleNLP asks again at the last step when eval_steps divides max_steps: nothing changed since
            return {f"{metric_key_prefix}_{k}": v for k, v in self.eval_history[-1].items() if k != "step"}
        if self.args.process_index == 0:
            model.eval()
            with paddle.no_grad():
                raw = self.evaluate_fn(model, "dev")
            model.train()
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in raw.items()}
            self.eval_history.append({"step": self.state.global_step, **raw})
            value = raw.get(self.key_metric) if self.key_metric else None
            if value is not None and (self.best_metric is None or (
                    value > self.best_metric if self.greater_is_better else value < self.best_metric)):
                self.best_metric, self.best_step = float(value), self.state.global_step
                self.save_fn(model, os.path.join(self.args.output_dir, "best"))
            self.log(metrics)
        if self.args.world_size > 1:
            paddle.distributed.barrier()
        return metrics


def make_training_args(cfg: TrainingConfig, output_dir: str) -> TrainingArguments:
    """Map the run configuration onto ``TrainingArguments`` (names follow the official run scripts where they exist)."""
    # processes of this run (paddle.distributed.launch sets PADDLE_TRAINERS_NUM; 1 without the launcher)
    cfg.resolve_global_batch(int(os.environ.get("PADDLE_TRAINERS_NUM", "1")))
    on_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    amp = cfg.amp if on_gpu else "none"  # AMP is a GPU feature (no CPU kernels)
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        warmup_ratio=cfg.warmup_ratio,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.beta1,
        adam_beta2=cfg.beta2,
        adam_epsilon=cfg.epsilon,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        evaluation_strategy="steps" if cfg.eval_steps > 0 else ("epoch" if cfg.eval_each_epoch else "no"),
        eval_steps=cfg.eval_steps or None,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        fp16=amp == "fp16",
        bf16=amp == "bf16",
        fp16_opt_level=cfg.amp_level,
        recompute=cfg.recompute,
        dataloader_num_workers=cfg.num_workers,
        disable_tqdm=cfg.disable_tqdm,
        # PaddleNLP's VisualDL callback crashes on boolean hparams with the pinned protobuf; UnimoTrainer.log writes
        # scalars to VisualDL itself instead.
        report_to=["none"],
        logging_dir=os.path.join(output_dir, "vdl_log"),
        skip_memory_metrics=True,
        do_train=True,
        remove_unused_columns=False,
    )


def _has_visualdl() -> bool:
    try:
        import visualdl  # noqa: F401
        return True
    except Exception:
        return False
