"""Inference CLI and API (``python -m unimo.predict`` / ``unimo.predict``) on tiny random task models and a
12-scene demo world. Oracles: each pair's output recomputed one at a time from inputs built by hand here (region
rows, 5-d locations, [CLS] text [SEP], full attention), greedy search for beam size 1, and the CLI vs the API."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ANSWERS = ["yes", "no", "1", "2", "3", "red", "blue", "circle", "square", "left"]
DECODE = ["--beam-size", "2", "--max-out-len", "5", "--min-out-len", "1", "--length-penalty", "0.6"]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from preprocess.demo_world import build_demo_world

    out = tmp_path_factory.mktemp("predict") / "world"
    build_demo_world(out, seed=3, num_scenes=12, progress=False)
    return out


@pytest.fixture(scope="module")
def store(world: Path) -> str:
    return str(world / "features" / "store")


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_config, dict_dir) -> dict[str, str]:
    import paddle

    from unimo.model.modeling import (UnimoForGeneration, UnimoForRetrieval, UnimoForVisualEntailment,
                                      UnimoForVQA, UnimoModel)

    root = tmp_path_factory.mktemp("models")
    # a wider init than 0.02 spreads the random heads' outputs, so rankings are not decided by float noise
    cfg = tiny_config.copy(initializer_range=0.2)
    paddle.seed(7)
    built = {"caption": UnimoForGeneration(cfg), "vqa": UnimoForVQA(cfg, num_answers=len(ANSWERS)),
             "ve": UnimoForVisualEntailment(cfg), "retrieve": UnimoForRetrieval(cfg), "backbone": UnimoModel(cfg)}
    out = {}
    for name, model in built.items():
        model.save_pretrained(str(root / name))
        out[name] = str(root / name)
    (root / "vqa" / "answer_vocab.json").write_text(json.dumps(ANSWERS))
    for name in ("caption", "vqa", "ve", "retrieve"):  # the tokenizer is found in the model folder
        for f in dict_dir.iterdir():
            (root / name / f.name).symlink_to(f)
    return out


@pytest.fixture(scope="module")
def loaded(models):
    """The saved models, loaded once for the oracles."""
    from unimo.model.modeling import UnimoForGeneration, UnimoForRetrieval, UnimoForVisualEntailment, UnimoForVQA

    out = {"caption": UnimoForGeneration.from_pretrained(models["caption"]),
           "vqa": UnimoForVQA.from_pretrained(models["vqa"]),
           "ve": UnimoForVisualEntailment.from_pretrained(models["ve"]),
           "retrieve": UnimoForRetrieval.from_pretrained(models["retrieve"])}
    for m in out.values():
        m.eval()
    return out


def _cli(argv: list[str], capsys) -> dict:
    from unimo.predict.cli import main

    summary = main(argv)
    capsys.readouterr()
    return summary


def _cli_error(argv: list[str], capsys) -> str:
    from unimo.predict.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def _rows(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------------------------ hand-built oracle
def _image_rows(store_path: str, image_id: str, max_img_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Global row (mean feature, [0,0,1,1,1]) + every stored box with [x1/W, y1/H, x2/W, y2/H, area/(W*H)]."""
    from unimo.reader.features import FeatureStore

    r = FeatureStore.open(store_path)[image_id]
    w, h = float(r.image_w), float(r.image_h)
    locs = [[0.0, 0.0, 1.0, 1.0, 1.0]]
    for x1, y1, x2, y2 in r.boxes.astype(np.float64):
        locs.append([x1 / w, y1 / h, x2 / w, y2 / h, (x2 - x1) * (y2 - y1) / (w * h)])
    feats = np.concatenate([r.features.mean(0, keepdims=True), r.features], 0)
    return feats[:max_img_len].astype(np.float32), np.array(locs[:max_img_len], np.float32)


def _pair_output(model, tokenizer, store_path: str, image_id: str, text: str, max_img_len: int = 37) -> np.ndarray:
    import paddle

    feats, locs = _image_rows(store_path, image_id, max_img_len)
    ids = [0] + tokenizer.encode(text) + [2]
    n = feats.shape[0] + len(ids)
    with paddle.no_grad():
        out = model(input_ids=paddle.to_tensor([ids]), position_ids=paddle.to_tensor([list(range(2, 2 + len(ids)))]),
                    image_features=paddle.to_tensor(feats[None]), image_locations=paddle.to_tensor(locs[None]),
                    attention_mask=paddle.ones([1, n, n], "float32"))
    return (out.scores if hasattr(out, "scores") else out.logits).numpy()[0]


# ------------------------------------------------------------------------------------------------ captioning
def test_caption_cli_equals_api_and_greedy(models, loaded, store, tokenizer, tmp_path, capsys):
    import paddle

    from unimo.generation import DecodeConfig, greedy_search, ids_to_text
    from unimo.predict import UnimoCaptioner

    out = tmp_path / "caps.jsonl"
    summary = _cli(["caption", "--model", models["caption"], "--features", store, "--all", *DECODE,
                    "--output", str(out), "--no-progress"], capsys)
    rows = _rows(out)
    all_ids = [str(i) for i in range(1, 13)]
    assert [r["image_id"] for r in rows] == all_ids
    assert all(set(r) == {"image_id", "caption"} and isinstance(r["caption"], str) for r in rows)
    assert summary["records"] == 12 and summary["images"] == 12 and summary["skipped_total"] == 0

    with UnimoCaptioner.from_pretrained(models["caption"], features=store, beam_size=2, max_out_len=5,
                                        min_out_len=1, length_penalty=0.6, progress=False) as cap:
        api = cap.generate(all_ids)
    assert api == {r["image_id"]: r["caption"] for r in rows}

    # beam size 1 = arg-max decoding: compare with greedy_search on hand-built image rows, one image at a time
    cap1 = UnimoCaptioner.from_pretrained(models["caption"], features=store, beam_size=1, max_out_len=5,
                                          min_out_len=1, length_penalty=0.0, progress=False)
    got = cap1.generate(["3", "8"])
    assert list(got) == ["3", "8"]
    for image_id in ("3", "8"):
        feats, locs = _image_rows(store, image_id, 37)
        n = feats.shape[0]
        source = {"image_features": feats[None], "image_locations": locs[None],
                  "attention_mask": np.ones((1, n, n), np.float32)}
        (ids, _score), = greedy_search(loaded["caption"], source, np.ones((1, n), np.float32),
                                       DecodeConfig(eos_id=2, max_out_len=5, min_out_len=1))
        assert got[image_id] == ids_to_text(ids, tokenizer, strip=True)
    assert paddle.is_grad_enabled()


def test_images_backend_equals_extracted_store(models, world, tmp_path, capsys):
    """--images (classic backend on the demo JPEGs) == --features on a store extract_directory built from them."""
    from preprocess.extract_features import extract_directory
    from unimo.predict import UnimoVQA

    extracted = tmp_path / "store"
    extract_directory(world / "images", extracted, backend="classic", image_id_regex=r"(\d+)$", progress=False)
    out_store, out_images = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    ids = ["2", "5", "11"]
    args = ["caption", "--model", models["caption"], *DECODE, "--no-progress", "--image-id", ids[0], "--image-id",
            ids[1], "--image-id", ids[2]]
    _cli([*args, "--features", str(extracted), "--output", str(out_store)], capsys)
    summary = _cli([*args, "--images", str(world / "images"), "--image-id-regex", r"(\d+)$", "--backend", "classic",
                    "--output", str(out_images)], capsys)
    assert summary["extracted_images"] == 3  # only the selected images are extracted
    assert _rows(out_store) == _rows(out_images)
    assert [r["image_id"] for r in _rows(out_store)] == ids

    # API: regions are extracted on first use, reused afterwards, and the temporary stores go away on close()
    vqa_images = UnimoVQA.from_pretrained(models["vqa"], images=str(world / "images"), image_id_regex=r"(\d+)$",
                                          progress=False)
    vqa_store = UnimoVQA.from_pretrained(models["vqa"], features=str(extracted), progress=False)
    a = vqa_images.answer(["4", "9"], "what color is the circle?")
    assert vqa_images.features.extracted == 2
    b = vqa_images.answer("4", ["how many squares are there?", "is there a red star?"])
    assert vqa_images.features.extracted == 2
    assert a == vqa_store.answer(["4", "9"], "what color is the circle?")
    assert b == vqa_store.answer("4", ["how many squares are there?", "is there a red star?"])
    tmp = vqa_images.features._tmp
    assert os.path.isdir(tmp)
    vqa_images.close()
    assert not os.path.exists(tmp)


# ------------------------------------------------------------------------------------------------ VQA
def test_vqa_answer_is_argmax_and_cli_equals_api(models, loaded, store, tokenizer, tmp_path, capsys):
    from unimo.predict import UnimoVQA

    questions = tmp_path / "q.jsonl"
    lines = [{"question_id": 7, "image_id": "3", "question": "What color is the square?",
              "answers": [{"answer": "red", "score": 1.0}], "question_type": "what color is the"},  # converter layout
             {"question_id": "q8", "image_id": 10, "question": "How many circles are there?"},
             {"question": "Is there a blue star?"}]  # no image_id: asked of every selected image
    questions.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "vqa.jsonl"
    _cli(["vqa", "--model", models["vqa"], "--features", store, "--questions", str(questions), "--image-id", "5",
          "--image-id", "6", "--top-k", "3", "--output", str(out), "--no-progress"], capsys)
    rows = _rows(out)
    assert [(r.get("question_id"), r["image_id"], r["question"]) for r in rows] == [
        (7, "3", "What color is the square?"), ("q8", "10", "How many circles are there?"),
        (None, "5", "Is there a blue star?"), (None, "6", "Is there a blue star?")]
    assert "question_id" not in rows[2]

    vqa = UnimoVQA.from_pretrained(models["vqa"], features=store, progress=False)
    api = vqa.answer(["3", "10", "5", "6"], [r["question"] for r in rows], question_ids=[7, "q8", None, None],
                     top_k=3)
    for r, a in zip(rows, api):
        a = {k: v for k, v in a.items() if not (k == "question_id" and v is None)}
        assert r == a
    for r in rows:
        logits = _pair_output(loaded["vqa"], tokenizer, store, r["image_id"], r["question"]).astype(np.float64)
        assert logits.shape == (len(ANSWERS),)
        # answer = arg-max over the vocabulary (up to float noise between batched and single forward passes)
        assert logits[ANSWERS.index(r["answer"])] >= logits.max() - 1e-5
        assert r["score"] == pytest.approx(1 / (1 + np.exp(-logits.max())), abs=1e-5)
        assert len(r["top_answers"]) == 3 and r["top_answers"][0] == {"answer": r["answer"], "score": r["score"]}
        picked = [logits[ANSWERS.index(t["answer"])] for t in r["top_answers"]]
        assert all(a >= b - 1e-5 for a, b in zip(picked, picked[1:])) and picked[-1] >= np.sort(logits)[-3] - 1e-5
        for t, z in zip(r["top_answers"], picked):
            assert t["score"] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-5)


# ------------------------------------------------------------------------------------------------ VE
def test_ve_probs_and_cli_equals_api(models, loaded, store, tokenizer, tmp_path, capsys):
    from unimo.predict import UnimoVisualEntailment

    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# images to test\n4\n\n9\n4\n")
    out = tmp_path / "ve.jsonl"
    _cli(["ve", "--model", models["ve"], "--features", store, "--image-ids", str(ids_file), "--hypothesis",
          "There is a red circle.", "--output", str(out), "--no-progress"], capsys)
    rows = _rows(out)
    assert [(r["image_id"], r["hypothesis"]) for r in rows] == [("4", "There is a red circle."),
                                                              ("9", "There is a red circle.")]
    ve = UnimoVisualEntailment.from_pretrained(models["ve"], features=store, progress=False)
    assert ve.predict(["4", "9"], "There is a red circle.") == rows
    for r in rows:
        assert set(r) == {"image_id", "hypothesis", "label", "probs"}
        logits = _pair_output(loaded["ve"], tokenizer, store, r["image_id"], r["hypothesis"]).astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        assert list(r["probs"]) == ["entailment", "neutral", "contradiction"]
        np.testing.assert_allclose(list(r["probs"].values()), p, atol=1e-5)
        assert p[["entailment", "neutral", "contradiction"].index(r["label"])] >= p.max() - 1e-6
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------------------------------------ retrieval
def test_retrieval_ranking_sorts_pair_scores(models, loaded, store, tokenizer, tmp_path, capsys):
    from unimo.predict import UnimoRetriever

    images = ["1", "2", "3", "4", "5", "6"]
    captions = ["A small red circle.", "Two blue squares next to a star.", "A yellow heart above a cross."]
    ret = UnimoRetriever.from_pretrained(models["retrieve"], features=store, batch_size=5, progress=False)
    scores = ret.score(images, captions)
    assert scores.shape == (3, 6)
    oracle = np.array([[_pair_output(loaded["retrieve"], tokenizer, store, i, c) for i in images] for c in captions])
    np.testing.assert_allclose(scores, oracle, atol=1e-5)
    assert np.ptp(oracle) > 1e-3  # the heads really distinguish the pairs

    # a ranking = the pair scores sorted: its own scores descend, equal the oracle's, and no better one is left out
    ranked = ret.rank_images(captions[1], images, top_k=4)
    assert len(ranked) == 4 and len({r["image_id"] for r in ranked}) == 4
    own = [r["score"] for r in ranked]
    assert own == sorted(own, reverse=True)
    np.testing.assert_allclose(own, [oracle[1, images.index(r["image_id"])] for r in ranked], atol=1e-5)
    assert own[-1] >= np.sort(oracle[1])[-4] - 1e-5
    by_caption = ret.rank_captions("5", captions, top_k=None)
    assert sorted(r["caption"] for r in by_caption) == sorted(captions)
    own = [r["score"] for r in by_caption]
    assert own == sorted(own, reverse=True)
    np.testing.assert_allclose(own, [oracle[captions.index(r["caption"]), 4] for r in by_caption], atol=1e-5)

    caps_file = tmp_path / "caps.jsonl"
    caps_file.write_text(json.dumps({"caption": captions[0], "caption_id": 11}) + "\n"
                         + json.dumps({"image_id": "1", "captions": captions[1:]}) + "\n")  # converter layout
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(images) + "\n")
    out = tmp_path / "ranks.jsonl"
    _cli(["retrieve", "--model", models["retrieve"], "--features", store, "--captions", str(caps_file),
          "--image-ids", str(ids_file), "--top-k", "2", "--batch-size", "5", "--output", str(out), "--no-progress"],
         capsys)
    rows = _rows(out)
    assert [r["direction"] for r in rows] == ["text_to_image"] * 3 + ["image_to_text"] * 6
    assert rows == ret.search(captions, images, top_k=2, caption_ids=[11, None, None])
    for c, row in enumerate(rows[:3]):
        assert row["query"] == captions[c]
        assert [r["image_id"] for r in row["results"]] == [images[j] for j in np.argsort(-scores[c], kind="stable")[:2]]
    for i, row in enumerate(rows[3:]):
        assert row["query"] == images[i]
        best = int(np.argmax(scores[:, i]))
        assert row["results"][0]["caption"] == captions[best]
        assert row["results"][0]["score"] == pytest.approx(float(oracle[best, i]), abs=1e-5)
        assert ("caption_id" in row["results"][0]) == (best == 0)


# ------------------------------------------------------------------------------------------------ errors
def test_errors_name_the_problem(models, store, world, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    base = ["--features", store, "--output", str(out), "--no-progress"]
    err = _cli_error(["caption", "--model", models["caption"], "--image-id", "1", "--image-id", "999", *base], capsys)
    assert "unknown image id(s) '999' (1 of 2 requested)" in err and store in err
    err = _cli_error(["caption", "--model", models["vqa"], "--all", *base], capsys)
    assert "holds a UnimoForVQA model" in err and "python -m unimo.predict vqa" in err
    err = _cli_error(["ve", "--model", str(tmp_path / "nope"), "--all", "--hypothesis", "x", *base], capsys)
    assert "model directory not found" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_config.json").write_text(Path(models["ve"], "model_config.json").read_text())
    err = _cli_error(["ve", "--model", str(broken), "--all", "--hypothesis", "x", *base], capsys)
    assert "no model.safetensors or model_state.pdparams" in err
    # a backbone checkpoint without a recorded architecture: the head weights are missing
    bare = tmp_path / "bare"
    bare.mkdir()
    cfg = json.loads(Path(models["backbone"], "model_config.json").read_text())
    cfg.pop("architecture")
    (bare / "model_config.json").write_text(json.dumps(cfg))
    os.link(Path(models["backbone"], "model.safetensors"), bare / "model.safetensors")
    err = _cli_error(["ve", "--model", str(bare), "--all", "--hypothesis", "x", *base], capsys)
    assert "lacks 4 weight(s) of UnimoForVisualEntailment" in err
    err = _cli_error(["vqa", "--model", models["vqa"], "--answer-vocab", str(tmp_path / "v.json"), "--all",
                      "--question", "x", *base], capsys)
    assert "answer vocabulary not found" in err
    (tmp_path / "v.json").write_text(json.dumps(ANSWERS[:4]))
    err = _cli_error(["vqa", "--model", models["vqa"], "--answer-vocab", str(tmp_path / "v.json"), "--all",
                      "--question", "x", *base], capsys)
    assert "has 4 answers but the model's head has 10 outputs" in err
    err = _cli_error(["vqa", "--model", models["vqa"], "--question", "what?", *base], capsys)
    assert "has no image_id" in err
    err = _cli_error(["caption", "--model", models["caption"], "--images", str(world / "images"), "--image-id", "1",
                      "--output", str(out), "--no-progress"], capsys)
    assert "unknown image id(s) '1'" in err and "'demo_000000000001'" in err
    err = _cli_error(["caption", "--model", models["caption"], "--images", str(world / "images"), "--all",
                      "--feature-dim", "64", "--output", str(out), "--no-progress"], capsys)
    assert "features have 64 dimensions, the model expects 2048" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_query_lines_fail_or_are_skipped(models, store, tmp_path, capsys):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"image_id": "2", "question": "What shape is red?"}) + "\n"
                 + json.dumps({"image_id": "2", "question": ""}) + "\n"
                 + "{not json\n"
                 + json.dumps({"image_id": "404", "question": "Is it big?"}) + "\n")
    out = tmp_path / "a.jsonl"
    argv = ["vqa", "--model", models["vqa"], "--features", store, "--questions", str(q), "--output", str(out),
            "--no-progress"]
    err = _cli_error(argv, capsys)
    assert f"{q}:2: field 'question': empty text" in err
    assert not out.exists()
    summary = _cli([*argv, "--skip-bad"], capsys)
    assert summary["skipped"] == {"empty_text": 1, "bad_json": 1, "unknown_image": 1}
    assert summary["records"] == 1 and [r["question"] for r in _rows(out)] == ["What shape is red?"]
    assert any(f"{q}:3:" in m for m in summary["skip_messages"])


def test_unreadable_images_fail_or_are_skipped(models, world, tmp_path, capsys):
    """--images with a file OpenCV cannot decode: one error line naming it (exit 2, nothing written), or with
    --skip-bad the image is left out and counted, and the other captions equal those of a clean folder."""
    images = tmp_path / "images"
    images.mkdir()
    for i in ("2", "5"):
        os.link(world / "images" / f"demo_{int(i):012d}.jpg", images / f"demo_{int(i):012d}.jpg")
    (images / "demo_000000000007.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "c.jsonl"
    argv = ["caption", "--model", models["caption"], *DECODE, "--no-progress", "--images", str(images),
            "--image-id-regex", r"(\d+)$", "--all", "--output", str(out)]
    err = _cli_error(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"error: {images / 'demo_000000000007.jpg'}: not a decodable image (empty, truncated or not an "
                     "image format OpenCV reads)"], err
    assert not out.exists()
    summary = _cli([*argv, "--skip-bad"], capsys)
    assert summary["skipped"] == {"unreadable_image": 1} and summary["records"] == 2
    assert summary["skip_messages"] == [lines[0][len("error: "):]]
    (images / "demo_000000000007.jpg").unlink()
    clean = _cli([*argv[:-1], str(tmp_path / "clean.jsonl")], capsys)
    assert clean["records"] == 2 and _rows(out) == _rows(tmp_path / "clean.jsonl")


def test_crafted_pickle_checkpoint_is_refused_by_the_cli(models, store, tmp_path):
    """A shared "fine-tuned model" whose model_state.pdparams runs a command when unpickled: the CLI refuses it
    (exit 2, one line naming the file and the global) and the command never runs."""
    import pickle

    from test_checkpoint_safety import Exploit

    bad = tmp_path / "shared_model"
    bad.mkdir()
    (bad / "model_config.json").write_text(Path(models["ve"], "model_config.json").read_text())
    marker = tmp_path / "pwned"
    with open(bad / "model_state.pdparams", "wb") as f:
        pickle.dump({"w": Exploit(str(marker))}, f)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "unimo.predict", "ve", "--model", str(bad), "--features", store,
                           "--image-id", "7", "--hypothesis", "x", "--output", str(tmp_path / "o.jsonl"),
                           "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: {bad / 'model_state.pdparams'}: refused to load: the pickle needs the global "
                      "posix.system, which is not a numpy array type (a checkpoint holds only arrays) (load it only "
                      "if you trust its source: trust_pickle=True / --trust-pickle)"], proc.stderr[-2000:]
    assert not marker.exists() and not (tmp_path / "o.jsonl").exists()


def test_module_entry_point(models, store, tmp_path):
    out = tmp_path / "ve.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "unimo.predict", "ve", "--model", models["ve"], "--features", store,
                           "--image-id", "7", "--hypothesis", "There are two shapes.", "--output", str(out),
                           "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["command"] == "ve" and summary["records"] == 1
    (row,) = _rows(out)
    assert row["image_id"] == "7" and row["label"] in ("entailment", "neutral", "contradiction")


def test_grid_backend_options_reach_the_extractor(models, world, tmp_path):
    """--images with the grid backend (random ResNet-50, small input) == a store extract_directory wrote."""
    from preprocess.extract_features import extract_directory
    from unimo.predict import UnimoVisualEntailment

    opts = {"random_init": True, "input_size": 64, "grid_size": 2}
    images = tmp_path / "images"
    images.mkdir()
    for i in (3, 6):
        name = f"demo_{i:012d}.jpg"
        (images / name).symlink_to(world / "images" / name)
    extracted = tmp_path / "grid_store"
    extract_directory(images, extracted, backend="grid", image_id_regex=r"(\d+)$", progress=False, **opts)
    with UnimoVisualEntailment.from_pretrained(models["ve"], images=str(images), backend="grid",
                                               image_id_regex=r"(\d+)$", extractor_options=opts,
                                               progress=False) as ve:
        got = ve.predict(["3", "6"], "A small green cross.")
        assert ve.features.extracted == 2 and ve.features.extractor.grid_size == 2
    want = UnimoVisualEntailment.from_pretrained(models["ve"], features=str(extracted), progress=False)
    assert got == want.predict(["3", "6"], "A small green cross.")
    assert len(want.features["3"].boxes) == 5  # whole image + 2x2 cells


def test_training_config_settings_apply(models, store, tmp_path, capsys):
    """--config: feature_store and answer_vocab relative to data_dir, and max_img_len, come from the YAML."""
    from unimo.predict import UnimoVQA

    model = tmp_path / "vqa_model"  # no answer_vocab.json beside the weights
    model.mkdir()
    for f in Path(models["vqa"]).iterdir():
        if f.name != "answer_vocab.json":
            (model / f.name).symlink_to(f.resolve())
    data = tmp_path / "data"
    data.mkdir()
    (data / "answer_vocab.json").write_text(json.dumps(ANSWERS))
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"task: vqa\ndata_dir: {data}\nanswer_vocab: answer_vocab.json\nfeature_store: {store}\n"
                    "max_img_len: 6\nmax_seq_len: 8\n")
    out = tmp_path / "a.jsonl"
    question = "What color is the large square on the left of the picture?"
    _cli(["vqa", "--model", str(model), "--config", str(conf), "--image-id", "2", "--question", question,
          "--output", str(out), "--no-progress"], capsys)
    (row,) = _rows(out)
    short = UnimoVQA.from_pretrained(models["vqa"], features=store, max_img_len=6, max_seq_len=8, progress=False)
    assert short.task.text_ids(question, None)[-1] == 2 and len(short.task.text_ids(question, None)) == 8
    assert row == short.answer("2", question)[0]
    full = UnimoVQA.from_pretrained(models["vqa"], features=store, progress=False)
    assert row["top_answers"] != full.answer("2", question)[0]["top_answers"]  # the settings did change the input
