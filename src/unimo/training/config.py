"""Configuration concerns shared by fine-tuning and pre-training: the training loop and optimisation, the model, and
VILLA adversarial training. Each field is declared once, with its type and its default; the defaults are the
official UNIMO fine-tuning values where the official scripts set one (``../shared/docs/official_unimo_spec.md``).
Task and pre-training configurations derive from these (``unimo.finetune.config``, ``unimo.pretrain.run``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar, Optional

from ..utils.config import ConfigBase

AMP_MODES = ("none", "fp16", "bf16")
LR_SCHEDULES = ("linear", "official_glue")


@dataclass
class TrainingConfig(ConfigBase):
    """The loop: optimisation (AdamW + the official linear warm-up/decay), batching, logging, checkpoints."""

    output_dir: Optional[str] = None  # default output/<task>_<dataset> (fine-tuning), output/pretrain
    resume_from_checkpoint: Optional[str] = None  # a checkpoint-N directory of the same run: exact resume
    # resuming reads the checkpoint's pickles (optimizer, scheduler, RNG) through a restricted unpickler that
    # rebuilds arrays only; true: Paddle's own loader, which can run code (only for checkpoints you trust)
    trust_pickle: bool = False
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 16  # per device
    eval_batch_size: Optional[int] = None  # default batch_size
    gradient_accumulation_steps: int = 1
    # the official global batch (the official per-device batch x its devices, spec section 5): the loop derives
    # gradient_accumulation_steps = global_batch_size / (batch_size x processes) and refuses a remainder
    global_batch_size: Optional[int] = None
    learning_rate: float = 5e-5
    # linear: the official linear_warmup_decay over the steps really taken; official_glue: the schedule the
    # official GLUE runs computed (warm-up and decay over global_batch_size / batch_size times more steps than
    # they took, see unimo.training.trainer.official_lr_lambda)
    lr_schedule: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0  # > 0 overrides warmup_ratio
    lr_decay_epochs: Optional[list[float]] = None  # step decay x0.1 at these epochs (official retrieval schedule)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.98
    epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    seed: int = 1
    logging_steps: int = 10
    eval_steps: int = 0  # 0: no step evaluation (see eval_each_epoch)
    eval_each_epoch: bool = False
    save_steps: int = 1000
    save_total_limit: int = 2
    amp: str = "none"  # fp16 / bf16 on GPU; ignored on CPU (no half-precision kernels)
    amp_level: str = "O1"
    recompute: bool = False
    num_workers: int = 0
    disable_tqdm: bool = False
    visualdl: bool = True  # VisualDL scalars in <output_dir>/vdl_log when visualdl is installed

    def validate(self) -> None:
        super().validate()
        for key in ("batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps"):
            self.require(getattr(self, key) >= 1, key, "must be >= 1")
        self.require(self.eval_batch_size is None or self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        self.require(self.learning_rate > 0, "learning_rate", "must be > 0")
        self.require(self.epochs > 0 or self.max_steps > 0, "epochs", "must be > 0 (or set max_steps)")
        self.require(self.max_steps == -1 or self.max_steps >= 1, "max_steps", "must be -1 (use epochs) or >= 1")
        self.require(0.0 <= self.warmup_ratio <= 1.0, "warmup_ratio", "must be in [0, 1]")
        for key in ("warmup_steps", "weight_decay", "max_grad_norm", "eval_steps", "num_workers"):
            self.require(getattr(self, key) >= 0, key, "must be >= 0")
        self.require(self.save_total_limit >= 1, "save_total_limit", "must be >= 1")
        for key in ("beta1", "beta2"):
            self.require(0.0 <= getattr(self, key) < 1.0, key, "must be in [0, 1)")
        self.require(self.epsilon > 0, "epsilon", "must be > 0")
        self.require(self.amp in AMP_MODES, "amp", f"must be one of {', '.join(AMP_MODES)}")
        self.require(self.amp_level in ("O1", "O2"), "amp_level", "must be O1 or O2")
        self.require(self.lr_decay_epochs is None or all(e > 0 for e in self.lr_decay_epochs), "lr_decay_epochs",
                     "must be positive epochs")
        self.require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
        if self.global_batch_size is not None:
            self.require(self.global_batch_size >= self.batch_size, "global_batch_size", "must be >= batch_size")
            self.require(self.gradient_accumulation_steps == 1, "gradient_accumulation_steps",
                         "is derived from global_batch_size: leave it at 1 or set global_batch_size=null")
        if self.lr_schedule == "official_glue":
            self.require(self.global_batch_size is not None, "lr_schedule",
                         "official_glue needs global_batch_size (the official devices x batch_size)")

    def resolve_global_batch(self, world_size: int) -> None:
        """Derive gradient_accumulation_steps from global_batch_size for ``world_size`` processes."""
        if self.global_batch_size is None:
            return
        per_step = self.batch_size * world_size
        if self.global_batch_size % per_step:
            raise self.error("global_batch_size", f"{self.global_batch_size} is not a multiple of batch_size "
                             f"{self.batch_size} x {world_size} process(es) = {per_step}",
                             "change batch_size or the number of processes (NPROC), or set global_batch_size=null")
        self.gradient_accumulation_steps = self.global_batch_size // per_step

    def lr_schedule_scale(self) -> float:
        """How many more steps the schedule is computed for than are taken (1 for the linear schedule)."""
        if self.lr_schedule == "official_glue":
            return self.global_batch_size / self.batch_size  # type: ignore[operator]
        return 1.0


@dataclass
class ModelConfig(ConfigBase):
    """The model: its JSON configuration, the weights to start from, the vocabulary, dropout overrides."""

    model_config: str = "model_files/config/unimo_base_en.json"
    init_checkpoint: Optional[str] = None  # a converted checkpoint directory (python -m unimo.convert ...)
    vocab_dir: str = "model_files/dict"
    do_lower_case: bool = False
    hidden_dropout_prob: Optional[float] = None  # None: the model config's value
    attention_probs_dropout_prob: Optional[float] = None

    # text-length keys checked against the model's position table (a run configuration lists its own)
    TEXT_LENGTH_KEYS: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        super().validate()
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, key)
            self.require(value is None or 0.0 <= value < 1.0, key, "must be in [0, 1)")

    def check_files(self) -> None:
        super().check_files()
        self.require(os.path.isfile(self.model_config), "model_config", "file not found")
        self.check_lengths(tuple(k for k in self.TEXT_LENGTH_KEYS if hasattr(self, k)))

    def check_init_checkpoint(self) -> None:
        """Run time (not load time: the shipped configs name checkpoints a user downloads and converts first)."""
        if self.init_checkpoint and not os.path.isdir(self.init_checkpoint):
            raise self.error("init_checkpoint", f"checkpoint directory not found: {self.init_checkpoint}",
                             _DOWNLOAD_HINT)

    def position_table_size(self) -> int:
        """Rows of the model's position-embedding table (positions start at 2, RoBERTa layout)."""
        with open(self.model_config, encoding="utf-8") as f:
            return int(json.load(f).get("max_position_embeddings", 514))

    def check_lengths(self, keys: tuple[str, ...]) -> None:
        """Each text length key must fit the position table: a text of n tokens uses positions 2..n+1."""
        positions = self.position_table_size()
        for key in keys:
            value = getattr(self, key, None)
            if value is not None:
                self.require(1 <= value <= positions - 2, key, f"must be in [1, {positions - 2}]",
                             f"{self.model_config} has {positions} position embeddings; positions start at 2")


_DOWNLOAD_HINT = ("get it with `bash model_files/download_unimo_base_en.sh` (or _large_en) and "
                  "`bash script/convert/legacy.sh --input model_files/unimo_base_en --config "
                  "model_files/config/unimo_base_en.json --output model_files/unimo_base_en_paddle`, "
                  "or set init_checkpoint=null to train from scratch")


@dataclass
class VillaConfig(ConfigBase):
    """VILLA adversarial training (the official recipe for COCO captioning and SNLI-VE); ``adv_steps: 0`` = off."""

    adv_steps: int = 0
    adv_lr: float = 0.03
    adv_max_norm: float = 0.0  # 0: no projection
    adv_init_mag: float = 0.4
    adv_kl_weight: float = 1.0
    adv_with_pure_model: bool = True
    # the official projection (spec section 5.4, img2txt.py:712-722, visual_entailment.py pgd_with_l2): where the
    # per-example L2 norm of the gradient just used exceeds adv_max_norm, the delta is multiplied by
    # adv_max_norm / ||g||; false: the conventional projection of the delta onto the adv_max_norm ball
    adv_official_projection: bool = True

    def validate(self) -> None:
        super().validate()
        for key in ("adv_steps", "adv_lr", "adv_max_norm", "adv_init_mag", "adv_kl_weight"):
            self.require(getattr(self, key) >= 0, key, "must be >= 0")
