"""Two pre-training processes on CPU (gloo, PaddleNLP Trainer + DataParallel): parameters stay identical across the
ranks and equal those of one process that sees the same global batches as two accumulated halves."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import build_demo_data

REPO = Path(__file__).resolve().parents[1]

# Runs pre-training from a config and saves this rank's parameters (run.py's main saves only rank 0's model).
HELPER = '''
import os, sys
import unimo  # noqa: F401
from unimo.pretrain.run import PretrainConfig, build
from unimo.utils.config import parse_overrides
import paddle

cfg = PretrainConfig.load(sys.argv[1], parse_overrides(sys.argv[2:]))
parts = build(cfg)
rank = parts["trainer"].args.process_index
init = {k: v.numpy() for k, v in parts["model"].state_dict().items()}
paddle.save(init, os.path.join(cfg["output_dir"], f"init{rank}.pdparams"))
parts["trainer"].train()
state = {k: v.numpy() for k, v in parts["model"].state_dict().items()}
paddle.save(state, os.path.join(cfg["output_dir"], f"rank{rank}.pdparams"))
print("world", parts["trainer"].args.world_size, "rank", rank, "items/step", parts["items_per_step"],
      "recompute", parts["model"].unimo.enable_recompute)
'''


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNIMO_VISUALDL": "0"}
    env.pop("PADDLE_TRAINERS_NUM", None)
    return env


def launch_two_ranks(tmp_path: Path, conf: Path, *overrides: str) -> None:
    """``paddle.distributed.launch --nproc_per_node 2`` of the helper into tmp_path/two (asserting success)."""
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
              str(tmp_path / "log"), str(tmp_path / "helper.py"), str(conf), f"output_dir={tmp_path / 'two'}",
              *overrides]
    proc = subprocess.run(launch, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    logs = "".join((tmp_path / "log" / f"workerlog.{r}").read_text()[-3000:] for r in (0, 1)
                   if (tmp_path / "log" / f"workerlog.{r}").exists())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist") / "data"
    return build_demo_data(root, 60)


@pytest.mark.parametrize("mixing, recompute", [("joint", False), ("sample", False), ("joint", True)])
def test_two_ranks_match_one_process(world, tmp_path, dict_dir, mixing, recompute):
    """``sample`` trains one stream per step: the other heads get no gradient that step and must be anchored, or
    DataParallel aborts. With recompute the two ranks recompute activations (PaddleNLP then reduces gradients by
    hand) and must still match the single process that does not."""
    (tmp_path / "helper.py").write_text(HELPER)
    conf = tmp_path / "conf.yaml"
    # dropout off: the ranks draw different dropout masks than the single process would
    conf.write_text(f"""base: {REPO / "script" / "pretrain" / "demo" / "conf.yaml"}
model_config: {REPO / "model_files" / "config" / "unimo_tiny_en.json"}
vocab_dir: {dict_dir}
data_dir: {world}
pair_file: coco/captions_train.jsonl
eval_pairs_file: null
hidden_dropout_prob: 0.0
attention_probs_dropout_prob: 0.0
cmcl_encoding: joint   # rank-local (dual gathers every rank's texts: test_dual_cmcl_gathers_texts_of_every_rank)
cmcl_head: pooler
mixing: {mixing}
stream_probs: {{text: 1, image: 1, pair: 1}}
max_steps: 6
batch_size: 2
pair_per_item: 2
cmcl_caption_positives: 1
max_text_len: 32
max_caption_len: 24
logging_steps: 1
save_steps: 1000
disable_tqdm: true
""")
    env = _env()
    launch_two_ranks(tmp_path, conf, f"recompute={str(recompute).lower()}")
    assert f"world 2 rank 1 items/step 4 recompute {recompute}" in (tmp_path / "log" / "workerlog.1").read_text()
    one = subprocess.run([sys.executable, str(tmp_path / "helper.py"), str(conf), f"output_dir={tmp_path / 'one'}",
                          "gradient_accumulation_steps=2"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
    assert "world 1 rank 0 items/step 4 recompute False" in one.stdout
    if mixing == "sample":  # the 6 steps trained every stream, one per step
        log = [json.loads(line) for line in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
        trained = [sorted(k for k in rec if k.startswith("loss_")) for rec in log if "loss" in rec]
        pair = ["loss_cmcl", "loss_vl_mlm", "loss_vl_mrc", "loss_vl_mrfr"]
        assert trained[:5] == [pair, pair, ["loss_mrc", "loss_mrfr"], ["loss_mrc", "loss_mrfr"], pair]
        assert trained[5] and set(trained[5]) <= {"loss_mlm", "loss_s2s"}

    import paddle

    def load(name: str) -> dict:
        return paddle.load(str(tmp_path / name), return_numpy=True)

    r0, r1, single = load("two/rank0.pdparams"), load("two/rank1.pdparams"), load("one/rank0.pdparams")
    assert sorted(r0) == sorted(r1) == sorted(single)
    assert max(float(np.abs(r0[k] - r1[k]).max()) for k in r0) == 0.0  # the ranks never drift apart
    diff = {k: float(np.abs(r0[k] - single[k]).max()) for k in r0}
    print("max |two ranks - one process| =", max(diff.values()))
    assert max(diff.values()) < 1e-6, sorted(diff.items(), key=lambda kv: -kv[1])[:5]
    # all three started from the same weights, and training moved them (the comparison is not of untouched weights)
    init0, init1, init_single = load("two/init0.pdparams"), load("two/init1.pdparams"), load("one/init0.pdparams")
    assert all(np.array_equal(init0[k], init1[k]) and np.array_equal(init0[k], init_single[k]) for k in init0)
    moved = {k: float(np.abs(r0[k] - init0[k]).max()) for k in r0}
    # (a key bias gets no gradient: softmax is invariant to it)
    trained = [k for k in moved if k.startswith(("unimo.layers", "lm_head", "mrfr_fc", "mrc_fc", "unimo.image_emb"))
               and not k.endswith("key_fc.bias")]
    assert min(moved[k] for k in trained) > 1e-5, sorted((moved[k], k) for k in trained)[:3]


def test_two_nodes_match_one_process(world, tmp_path, dict_dir):
    """A multi-node launch (the README's command): two launchers with ``--nnodes 2 --master 127.0.0.1:PORT``, one
    process each, on this one machine, train as one process on the same global batches (accumulated halves)."""
    import socket

    (tmp_path / "helper.py").write_text(HELPER)
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"""base: {REPO / "script" / "pretrain" / "demo" / "conf.yaml"}
model_config: {REPO / "model_files" / "config" / "unimo_tiny_en.json"}
vocab_dir: {dict_dir}
data_dir: {world}
pair_file: coco/captions_train.jsonl
eval_pairs_file: null
hidden_dropout_prob: 0.0
attention_probs_dropout_prob: 0.0
cmcl_encoding: joint
cmcl_head: pooler
max_steps: 4
batch_size: 2
max_text_len: 32
max_caption_len: 24
logging_steps: 1
save_steps: 1000
disable_tqdm: true
""")
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNIMO_VISUALDL": "0"}
    env.pop("PADDLE_TRAINERS_NUM", None)
    nodes = [subprocess.Popen([sys.executable, "-m", "paddle.distributed.launch", "--nnodes", "2", "--master",
                               f"127.0.0.1:{port}", "--nproc_per_node", "1", "--log_dir", str(tmp_path / f"log{n}"),
                               str(tmp_path / "helper.py"), str(conf), f"output_dir={tmp_path / 'two'}"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in range(2)]
    outs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-2000:] for o in outs)
    ranks = sorted(line for n in range(2) for line in (tmp_path / f"log{n}" / "workerlog.0").read_text().splitlines()
                   if line.startswith("world "))
    assert ranks == ["world 2 rank 0 items/step 4 recompute False", "world 2 rank 1 items/step 4 recompute False"]
    one = subprocess.run([sys.executable, str(tmp_path / "helper.py"), str(conf), f"output_dir={tmp_path / 'one'}",
                          "gradient_accumulation_steps=2"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
    import paddle

    r0, r1, single = (paddle.load(str(tmp_path / n), return_numpy=True)
                      for n in ("two/rank0.pdparams", "two/rank1.pdparams", "one/rank0.pdparams"))
    assert max(float(np.abs(r0[k] - r1[k]).max()) for k in r0) == 0.0
    assert max(float(np.abs(r0[k] - single[k]).max()) for k in r0) < 1e-6


def test_dual_cmcl_gathers_texts_of_every_rank(world, tmp_path, dict_dir):
    """Dual CMCL under two processes takes its in-batch negatives from the global batch (every rank's texts, the
    gradient flowing back to the rank that encoded them): two ranks of 3 pairs train exactly as one process on the
    6 concatenated pairs - which a rank-local loss would not (the single process contrasts each image with 6
    captions, a rank-local one with 3)."""
    (tmp_path / "helper.py").write_text(HELPER)
    # one caption per image: no image twice in a global batch (positives are rank-local) and no text twice (the
    # single process would merge the two columns)
    seen: dict[str, str] = {}
    for line in (Path(world) / "coco" / "captions_train.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["image_id"] not in seen and rec["caption"] not in seen.values():
            seen[rec["image_id"]] = line
    (tmp_path / "pairs.jsonl").write_text("\n".join(seen.values()) + "\n")
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"""base: {REPO / "script" / "pretrain" / "demo" / "conf.yaml"}
model_config: {REPO / "model_files" / "config" / "unimo_tiny_en.json"}
vocab_dir: {dict_dir}
data_dir: {world}
pair_file: {tmp_path / "pairs.jsonl"}
eval_pairs_file: null
hidden_dropout_prob: 0.0
attention_probs_dropout_prob: 0.0
cmcl_encoding: dual
cmcl_head: pooler
text_per_item: 0
image_per_item: 0
pair_per_item: 1
vl_weight: 0.0
cmcl_caption_positives: 0
cmcl_negatives: 0
max_steps: 4
learning_rate: 1.0e-2
max_caption_len: 24
logging_steps: 1
save_steps: 1000
disable_tqdm: true
""")
    env = _env()
    launch_two_ranks(tmp_path, conf, "batch_size=3")
    runs = {}
    for name, extra in (("one", ["batch_size=6"]), ("local", ["batch_size=3", "gradient_accumulation_steps=2"])):
        one = subprocess.run([sys.executable, str(tmp_path / "helper.py"), str(conf),
                              f"output_dir={tmp_path / name}", *extra], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
        assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
        assert "items/step 6" in one.stdout
        runs[name] = one
    import paddle

    r0, r1, single, local = (paddle.load(str(tmp_path / n), return_numpy=True) for n in
                             ("two/rank0.pdparams", "two/rank1.pdparams", "one/rank0.pdparams", "local/rank0.pdparams"))
    assert max(float(np.abs(r0[k] - r1[k]).max()) for k in r0) == 0.0

    def logged(run: str, key: str) -> list[float]:
        return [json.loads(line)[key] for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()
                if f'"{key}"' in line]

    # the loss the two ranks log (their mean) is the single process's, step by step
    np.testing.assert_allclose(logged("two", "loss"), logged("one", "loss_cmcl"), rtol=2e-5)
    # Parameters: the [6, 6] similarity matrix is summed in another order than two [3, 6] ones, and Adam divides
    # gradients by their own magnitude, so rounding-level differences of near-zero gradients become visible; the
    # two runs still agree ~1000x closer than rank-local negatives (accumulated halves) do.
    mean_two = float(np.mean([np.abs(r0[k] - single[k]).mean() for k in r0]))
    mean_local = float(np.mean([np.abs(local[k] - single[k]).mean() for k in r0]))
    max_two = max(float(np.abs(r0[k] - single[k]).max()) for k in r0)
    max_local = max(float(np.abs(local[k] - single[k]).max()) for k in r0)
    assert mean_two < 1e-5 and mean_local > 1e-3 and mean_two < 1e-3 * mean_local, (mean_two, mean_local)
    assert max_two < 0.05 * max_local, (max_two, max_local)
    for run in ("one", "two"):  # the first step contrasts each image with the 6 captions of the global batch
        cmcl = [json.loads(line)["loss_cmcl"] for line in (tmp_path / run / "train_log.jsonl").read_text()
                .splitlines() if '"loss_cmcl"' in line]
        assert cmcl and cmcl[0] > np.log(4.0), (run, cmcl)  # near log 6 untrained; rank-local 3 give <= log 3
