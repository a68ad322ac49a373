"""``python -m unimo.export`` round trip: a saved tiny task model, exported with the CLI and run by
``paddle.inference`` (:class:`unimo.export.InferenceRunner`), gives the dygraph model's outputs -- logits/scores
within 1e-5 for the understanding tasks; the same token ids and scores within 1e-5 for greedy and beam search of
seq2seq and caption (sources of different lengths, hypotheses finishing at different steps, more steps than one
cache chunk). CLI conventions: exit 2 with one error line for bad input, --help without Paddle output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from unimo import masks
from unimo.export import MANIFEST_NAME, InferenceRunner, main
from unimo.generation import beam_search, greedy_search
from unimo.model.modeling import (UnimoForGeneration, UnimoForRetrieval, UnimoForSequenceClassification,
                                  UnimoForVisualEntailment, UnimoForVQA)
from unimo.utils.errors import run_cli

REPO = Path(__file__).resolve().parents[1]
EOS, BOS = 2, 0
TOL = 1e-5


def _sharpen(model, eos_bias: float) -> None:
    """A random tiny model predicts near-uniformly (every beam ties); scaling the tied embedding gives peaked,
    source-dependent distributions, and an EOS bias makes hypotheses finish at different steps."""
    emb = model.unimo.word_embedding.weight
    emb.set_value(emb * 25.0)
    bias = model.lm_head.mask_lm_out_fc_bias.numpy()
    bias[EOS] += eos_bias
    model.lm_head.mask_lm_out_fc_bias.set_value(bias)


def _amplify_heads(model, factor: float = 10.0) -> None:
    """Initial heads (std 0.02) give logits of ~1e-3, where an absolute 1e-5 says little: scale the poolers and the
    head's fc layers so that outputs are of order 1 (layer norms and the Xavier-initialised match_fc already are)."""
    for name, p in model.named_parameters():
        head = not name.startswith("unimo.") and "layer_norm" not in name and "match_fc" not in name
        if head or "pooled_fc" in name:
            p.set_value(p * factor)


def _export(tmp: Path, model, task: str, name: str) -> tuple[object, InferenceRunner]:
    src, out = tmp / f"{name}_model", tmp / f"{name}_export"
    model.save_pretrained(str(src))
    if task == "vqa":  # a side file a deployment needs: copied into the export
        (src / "answer_vocab.json").write_text(json.dumps([f"answer {i}" for i in range(7)]))
    assert run_cli(main, ["--model", str(src), "--task", task, "--output", str(out)]) == 0
    return model, InferenceRunner(str(out))


@pytest.fixture(scope="module")
def exported(tiny_config, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    paddle.seed(1)
    s2s = UnimoForGeneration(tiny_config)
    _sharpen(s2s, 8.0)
    cap = UnimoForGeneration(tiny_config)
    _sharpen(cap, 8.0)
    dialog = UnimoForGeneration(tiny_config.copy(role_type_size=3, turn_type_size=5))  # role/turn embeddings
    _sharpen(dialog, 10.0)
    built = {"seq2seq": s2s, "caption": cap, "dialog": dialog,
             "classification": UnimoForSequenceClassification(tiny_config, num_labels=3),
             "ve": UnimoForVisualEntailment(tiny_config, hidden=32), "vqa": UnimoForVQA(tiny_config, num_answers=7),
             "retrieval": UnimoForRetrieval(tiny_config)}
    out = {}
    for task, model in built.items():
        model.eval()
        if task not in ("seq2seq", "caption", "dialog"):
            _amplify_heads(model)
        out[task] = _export(tmp, model, "seq2seq" if task == "dialog" else task, task)
    return out


def _text(rng, lengths, vocab=50000):
    width = max(lengths)
    ids = np.ones((len(lengths), width), np.int64)
    pos = np.ones((len(lengths), width), np.int64)
    valid = np.zeros((len(lengths), width), np.float32)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(4, vocab, n)
        pos[i, :n] = np.arange(2, 2 + n)
        valid[i, :n] = 1
    return ids, pos, valid


def _images(rng, counts, dim=2048):
    width = max(counts)
    feats = rng.normal(size=(len(counts), width, dim)).astype(np.float32)
    locs = rng.uniform(size=(len(counts), width, 5)).astype(np.float32)
    valid = np.zeros((len(counts), width), np.float32)
    for i, n in enumerate(counts):
        valid[i, :n] = 1
    return feats, locs, valid


def _dygraph(model, inputs):
    with paddle.no_grad():
        out = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})
    return (out.scores if isinstance(model, UnimoForRetrieval) else out.logits).numpy()


@pytest.mark.parametrize("task", ["classification", "ve", "vqa", "retrieval"])
def test_understanding_forward_matches_dygraph(exported, task):
    model, runner = exported[task]
    rng = np.random.default_rng(3)
    for text_lengths, image_counts in (([9, 4], [6, 3]), ([5, 5, 2], [4, 4, 1])):  # two shapes, one predictor
        ids, pos, tvalid = _text(rng, text_lengths)
        inputs = {"input_ids": ids, "position_ids": pos}
        valid = tvalid
        if task != "classification":
            feats, locs, ivalid = _images(rng, image_counts)
            inputs.update(image_features=feats, image_locations=locs)
            valid = np.concatenate([ivalid, tvalid], axis=1)
        inputs["attention_mask"] = masks.bidirectional_batch(valid)
        want = _dygraph(model, inputs)
        got = runner.forward(**inputs)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOL, np.abs(got - want).max()
        assert 0.3 < np.abs(want).max() < 10  # outputs of order 1: an absolute 1e-5 is a real tolerance


def test_task_model_adapter_behaves_as_the_task_model(exported):
    """``runner.task_model()`` answers ``model(**tensors).logits`` / ``.scores`` as the dygraph task models do (what
    ``unimo.predict`` and ``MultimodalTask.forward_batches`` call), and refuses inputs the export does not take."""
    rng = np.random.default_rng(9)
    ids, pos, tvalid = _text(rng, [4, 6])
    feats, locs, ivalid = _images(rng, [3, 5])
    inputs = {"input_ids": ids, "position_ids": pos, "image_features": feats, "image_locations": locs,
              "attention_mask": masks.bidirectional_batch(np.concatenate([ivalid, tvalid], axis=1))}
    for task, field in (("vqa", "logits"), ("retrieval", "scores")):
        model, runner = exported[task]
        adapter = runner.task_model()
        assert adapter.architecture == type(model).__name__ and adapter.config.hidden_size == 64
        got = getattr(adapter.eval()(**{k: paddle.to_tensor(v) for k, v in inputs.items()}), field)
        assert isinstance(got, paddle.Tensor)
        assert np.abs(got.numpy() - _dygraph(model, inputs)).max() <= TOL
    with pytest.raises(ValueError, match="labels"):
        exported["vqa"][1].task_model()(**inputs, labels=np.zeros((2, 7), np.float32))


def _check_same(want, got):
    assert [ids for ids, _ in got] == [ids for ids, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=TOL)


def _seq2seq_source(rng, dialog: bool = False):
    ids, pos, valid = _text(rng, [7, 3, 5])
    ids[:, 0] = BOS
    source = {"input_ids": ids, "position_ids": pos, "attention_mask": masks.bidirectional_batch(valid)}
    if dialog:
        source.update(role_ids=rng.integers(0, 3, ids.shape), turn_ids=rng.integers(0, 5, ids.shape))
    return source, valid


def _caption_source(rng, tags: bool):
    feats, locs, valid = _images(rng, [5, 2, 4])
    source = {"image_features": feats, "image_locations": locs}
    if tags:
        tag_ids, tag_pos, tag_valid = _text(rng, [3, 1, 2])
        source.update(obj_input_ids=tag_ids, obj_position_ids=tag_pos)
        valid = np.concatenate([valid, tag_valid], axis=1)
    source["attention_mask"] = masks.bidirectional_batch(valid)
    return source, valid


@pytest.mark.parametrize("task, tags", [("seq2seq", False), ("dialog", False), ("caption", False),
                                       ("caption", True)])
def test_generation_matches_dygraph(exported, task, tags):
    model, runner = exported[task]
    rng = np.random.default_rng(5)
    source, valid = _caption_source(rng, tags) if task == "caption" else _seq2seq_source(rng, task == "dialog")
    settings = dict(bos_id=BOS, eos_id=EOS, max_out_len=20, min_out_len=2)  # 20 > one 16-position cache chunk
    want = beam_search(model, source, valid, beam_size=3, length_penalty=0.6, return_all=True, **settings)
    got = runner.beam_search(source, valid, beam_size=3, length_penalty=0.6, return_all=True, **settings)
    for w, g in zip(want, got):
        _check_same(w, g)
    lengths = [len(ids) for hyps in want for ids, _ in hyps]
    assert len(set(lengths)) > 1 and max(lengths) == 20, lengths  # hypotheses end at different steps, one at the cap
    _check_same(greedy_search(model, source, valid, **settings), runner.greedy_search(source, valid, **settings))


@pytest.mark.parametrize("task, tags", [("seq2seq", False), ("dialog", False), ("caption", False),
                                       ("caption", True)])
def test_exported_encoder_fills_the_cache_as_dygraph(exported, task, tags):
    """The source keys/values of every layer (what the step attends to) equal those of the dygraph KVCache."""
    model, runner = exported[task]
    rng = np.random.default_rng(11)
    source, _ = _caption_source(rng, tags) if task == "caption" else _seq2seq_source(rng, task == "dialog")
    cache = model.unimo.init_cache()
    with paddle.no_grad():
        model.unimo(**{k: paddle.to_tensor(v) for k, v in source.items()}, cache=cache)
    k, v = (t.numpy() for t in runner.programs["encoder_tags" if tags else "encoder"](**source))
    assert k.shape == (2, 3, 4, source["attention_mask"].shape[1], 16)
    for got, want in ((k, cache.src_k), (v, cache.src_v)):
        want = np.stack([t.numpy() for t in want])
        assert np.abs(got - want).max() <= TOL, np.abs(got - want).max()


def test_runner_step_logits_equal_dygraph_cache(exported):
    """One level below the searches: the exported step's logits vs the dygraph cached decoder's, row by row, over
    steps with a beam reorder in between (host cache reorder vs KVCache.reorder)."""
    from unimo.generation import make_decoder
    from unimo.export import ExportedGenerationModel

    model, runner = exported["seq2seq"]
    rng = np.random.default_rng(7)
    source, valid = _seq2seq_source(rng)
    with paddle.no_grad():
        dy = make_decoder(model, source, valid)
        ex = make_decoder(ExportedGenerationModel(runner), source, valid)
        feed = np.full(3, BOS)
        for step, rows in enumerate([[0, 0, 1, 2, 2], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4], [1, 1, 1, 0, 3]]):
            a, b = dy.step(feed).numpy(), ex.step(feed).numpy()
            assert np.abs(a - b).max() <= TOL, (step, np.abs(a - b).max())
            dy.select(rows)
            ex.select(rows)
            feed = rng.integers(4, 50000, len(rows))


def test_export_writes_a_complete_manifest(exported):
    _, runner = exported["caption"]
    manifest = json.loads(Path(runner.directory, MANIFEST_NAME).read_text())
    assert sorted(manifest["programs"]) == ["encoder", "encoder_tags", "step"]
    assert manifest["programs"]["step"]["inputs"][-4:] == ["src_k", "src_v", "gen_k", "gen_v"]
    for spec in manifest["programs"].values():
        for f in spec["files"]:
            assert os.path.getsize(os.path.join(runner.directory, f)) > 0
    assert "forward" in exported["vqa"][1].programs
    vqa_dir = Path(exported["vqa"][1].directory)
    assert json.loads((vqa_dir / "answer_vocab.json").read_text())[6] == "answer 6"
    assert json.loads((vqa_dir / MANIFEST_NAME).read_text())["side_files"] == ["answer_vocab.json"]
    with pytest.raises(ValueError, match="decodes"):
        runner.forward()


def test_cli_bad_input_exits_2_with_one_error_line(exported, tmp_path, capsys):
    seq2seq_model = str(Path(exported["seq2seq"][1].directory).parent / "seq2seq_model")
    cases = [
        (["--model", str(tmp_path / "missing"), "--task", "caption", "--output", str(tmp_path / "o1")],
         "model directory not found"),
        (["--model", seq2seq_model, "--task", "captions", "--output", str(tmp_path / "o2")], "unknown task"),
        (["--model", seq2seq_model, "--task", "vqa", "--output", str(tmp_path / "o3")], "UnimoForGeneration"),
        (["--model", seq2seq_model, "--task", "seq2seq", "--output", exported["seq2seq"][1].directory],
         "not empty"),
    ]
    for argv, what in cases:
        capsys.readouterr()
        assert run_cli(main, argv, prog="python -m unimo.export") == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0] and what in err[0], (argv, err)
    assert not (tmp_path / "o3").exists()  # nothing written on a refused export
    with pytest.raises(Exception, match="export.json"):
        InferenceRunner(seq2seq_model)


def test_help_prints_no_paddle_output(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "unimo.export", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "--model" in proc.stdout and "--output" in proc.stdout and "default:" in proc.stdout
