"""The official global batch and the official GLUE schedule (issue 17 section 3): gradient accumulation derived
from ``global_batch_size`` for the processes at hand, refused with a clear error when they do not divide, and
``lr_schedule: official_glue`` reproducing the schedule the official GLUE runner computed (warm-up and decay for
k = global / per-device batch times more steps than it took)."""
from __future__ import annotations

import numpy as np
import pytest

from unimo.training.config import TrainingConfig
from unimo.training.trainer import official_lr_lambda, schedule_steps
from unimo.utils.errors import ConfigError


def test_global_batch_derives_gradient_accumulation():
    cfg = TrainingConfig.from_values(batch_size=4, global_batch_size=32)
    cfg.resolve_global_batch(2)
    assert cfg.gradient_accumulation_steps == 4
    cfg = TrainingConfig.from_values(batch_size=4, global_batch_size=32)
    with pytest.raises(ConfigError) as caught:
        cfg.resolve_global_batch(3)
    assert str(caught.value) == ("values: global_batch_size: 32 is not a multiple of batch_size 4 x 3 process(es) = "
                                 "12 (change batch_size or the number of processes (NPROC), or set "
                                 "global_batch_size=null)")
    with pytest.raises(ConfigError, match="gradient_accumulation_steps: is derived from global_batch_size"):
        TrainingConfig.from_values(batch_size=4, global_batch_size=32, gradient_accumulation_steps=2)
    with pytest.raises(ConfigError, match="lr_schedule: official_glue needs global_batch_size"):
        TrainingConfig.from_values(lr_schedule="official_glue")
    assert TrainingConfig.from_values(batch_size=4, global_batch_size=32,
                                      lr_schedule="official_glue").lr_schedule_scale() == 8.0


def test_official_glue_schedule_numbers():
    """SST-2 with 8 devices: warm-up 0.06 x 8 = 48% of the real steps, LR at the end 1 - 1/8 = 0.875 x peak."""
    warmup, decay = schedule_steps(0.06, 0, 1000, scale=8.0)
    assert (warmup, decay) == (480, 8000)
    fn = official_lr_lambda(warmup, decay)
    assert fn(240) == pytest.approx(0.5) and fn(480) == pytest.approx(1 - 480 / 8000)
    assert fn(1000) == pytest.approx(0.875)
    assert schedule_steps(0.06, 0, 1000) == (60, 1000)  # linear: the textbook schedule over the real steps


@pytest.mark.slow
def test_trainer_follows_the_official_glue_schedule(tmp_path):
    """A real UnimoTrainer run: the logged learning rate at every step is the formula's, with accumulation 8."""
    import paddle

    from unimo.training.trainer import UnimoTrainer, make_training_args

    class Data(paddle.io.Dataset):
        def __len__(self):
            return 256

        def __getitem__(self, i):
            return i

    class Model(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.w = paddle.nn.Linear(4, 1)

        def forward(self, x):
            return self.w(x).mean()

    cfg = TrainingConfig.from_values(batch_size=4, global_batch_size=32, lr_schedule="official_glue",
                                     learning_rate=1.0, warmup_ratio=0.06, max_steps=10, logging_steps=1,
                                     save_steps=1000, disable_tqdm=True, visualdl=False)
    args = make_training_args(cfg, str(tmp_path / "out"))
    assert args.gradient_accumulation_steps == 8
    trainer = UnimoTrainer(model=Model(), args=args, train_dataset=Data(), lr_schedule_scale=cfg.lr_schedule_scale(),
                           data_collator=lambda items: {"x": np.ones((len(items), 4), np.float32)})
    trainer.train()
    logged = [(e["step"] if "step" in e else e.get("global_step"), e["learning_rate"])
              for e in trainer.state.log_history if "learning_rate" in e]
    want = official_lr_lambda(*schedule_steps(0.06, 0, 10, 8.0))  # warm-up 4 steps, decay over 80
    assert [round(lr, 6) for _, lr in logged] == [round(want(s), 6) for s in range(1, 11)]
