"""UnimoTokenizer: exact ids against an independent GPT-2 BPE (HF GPT2Tokenizer in the oracle venv), id mapping
through vocab.txt, specials, decoding, and the official input layouts."""
from __future__ import annotations

import csv
import json

import pytest

from conftest import run_oracle

HANDWRITTEN = [
    "Hello world! It's 2021.",
    "I can't believe they'd've done it... we'll see; you're right, I'm sure.",
    "Ünïcödé façade — naïve café, 東京タワー, Москва, 🙂👍🏽 emoji and ZWJ 👨‍👩‍👧.",
    "Numbers: 3.14159, 1,000,000, 2e-5, -42, 0x1F, 12:30pm, 50%.",
    "Runs of   spaces,\ttabs,\n\nnewlines\r\n and trailing   ",
    "   leading spaces",
    "",
    " ",
    "MiXeD CaSe and UPPERCASE WORDS, snake_case, camelCase, kebab-case.",
    "URLs http://example.com/a?b=c&d=e#f and e-mails a.b@c.org",
    "<html><body>tags &amp; entities</body></html>",
    "a" * 300,
    "'s 't 're 've 'm 'll 'd 'S 'T",
]


def _sample_texts(shared_data) -> list[str]:
    texts = list(HANDWRITTEN)
    with open(shared_data / "text_samples" / "sst2_glue_dev.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts += [r["sentence"] for r in rows[:300]]
    with open(shared_data / "text_samples" / "xsum_sample.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts += [d["document"], d["summary"]]
    squad = json.load(open(shared_data / "text_samples" / "squad_v2_sample.json", encoding="utf-8"))
    for qa in squad["data"]:  # flat HF-fixture layout: id, question, context, answers
        texts += [qa["context"], qa["question"]]
    return texts


@pytest.fixture(scope="module")
def oracle_ids(tmp_path_factory, shared_data, oracle_python, dict_dir):
    texts = _sample_texts(shared_data)
    d = tmp_path_factory.mktemp("bpe")
    (d / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    run_oracle(oracle_python, "gpt2_bpe_oracle.py", str(dict_dir / "unimo_en.encoder.json"),
               str(dict_dir / "unimo_en.vocab.bpe"), str(d / "texts.json"), str(d / "out.json"))
    return texts, json.loads((d / "out.json").read_text())


def _vocab_map(dict_dir) -> dict[int, int]:
    """GPT-2 id -> model id, read independently from vocab.txt (line index = model id)."""
    lines = (dict_dir / "unimo_en.vocab.txt").read_text(encoding="utf-8").split("\n")
    return {int(t): i for i, t in enumerate(lines) if t.isdigit()}


def test_ids_match_independent_gpt2_bpe(tokenizer, oracle_ids, dict_dir):
    texts, gpt2_ids = oracle_ids
    g2m = _vocab_map(dict_dir)
    assert len(texts) > 350
    mismatches = [t for t, g in zip(texts, gpt2_ids) if tokenizer.encode(t) != [g2m[i] for i in g]]
    assert not mismatches, f"{len(mismatches)} texts differ, e.g. {mismatches[:2]!r}"


def test_roundtrip_decode(tokenizer, shared_data):
    for text in _sample_texts(shared_data):
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_ids_and_known_mapping(tokenizer):
    assert (tokenizer.cls_id, tokenizer.pad_id, tokenizer.sep_id, tokenizer.unk_id, tokenizer.mask_id) == \
        (0, 1, 2, 3, 50264)
    assert len(tokenizer) == 50265
    # spec 4.1: id 4 = GPT-2 13 ".", id 5 = GPT-2 262 " the"
    assert tokenizer.encode(".") == [4]
    assert tokenizer.encode(" the") == [5]
    assert tokenizer.convert_ids_to_tokens([0, 2, 50264, 5]) == ["[CLS]", "[SEP]", "[MASK]", "\u0120the"]
    assert tokenizer.decode([0, 5, 2, 50264], skip_special_tokens=False) == "[CLS] the[SEP][MASK]"
    assert tokenizer.decode([0, 5, 2, 50264]) == " the"


def test_lowercase_option(dict_dir):
    from unimo import UnimoTokenizer

    lower = UnimoTokenizer.from_pretrained(str(dict_dir), do_lower_case=True)
    cased = UnimoTokenizer.from_pretrained(str(dict_dir))
    assert lower.encode("The CAT") == cased.encode("the cat") != cased.encode("The CAT")


def test_word_starts(tokenizer):
    ids = tokenizer.encode("unbelievable things happened")
    starts = [tokenizer.is_word_start(i) for i in ids]
    table = tokenizer.word_start_table()
    assert starts == [bool(table[i]) for i in ids]
    assert starts[0] is False  # no leading space: a continuation-shaped first token (official behaviour)
    assert sum(starts) == 2    # " things", " happened"
    assert tokenizer.is_word_start(0) and tokenizer.is_word_start(50264)


def test_classification_layout(tokenizer):
    rec = tokenizer.build_inputs("a b c d e", "f g h", max_seq_len=8)
    ids = rec["input_ids"]
    assert len(ids) == 8 and ids[0] == 0 and ids.count(2) == 2 and ids[-1] == 2
    assert rec["position_ids"] == list(range(2, 10))
    # truncation pops from the longer side: 5 tokens vs 3 -> 5 budget -> a keeps 3, b keeps 2
    a = tokenizer.encode("a b c d e")
    b = tokenizer.encode("f g h")
    assert ids == [0] + a[:3] + [2] + b[:2] + [2]


def test_seq2seq_layout(tokenizer):
    rec = tokenizer.build_seq2seq_inputs(["one two", "three"], "four five", max_src_len=16, max_tgt_len=8)
    s1, s2, t = tokenizer.encode("one two"), tokenizer.encode("three"), tokenizer.encode("four five")
    assert rec["src_ids"] == [0] + s1 + [2] + s2 + [2]
    # positions restart at 3 for every segment (continuous_position=False)
    assert rec["src_pos"] == [2, 3, 4, 5, 3, 4]
    assert rec["tgt_ids"] == [0] + t + [50264]
    assert rec["tgt_pos"] == [2, 3, 4, 5]
    short = tokenizer.build_seq2seq_inputs("x", "a b c d e f g h", max_tgt_len=4)
    assert len(short["tgt_ids"]) == 4 and 50264 not in short["tgt_ids"]  # truncated target has no EOS


def test_batch_encode_pads(tokenizer):
    out = tokenizer.batch_encode(["short", "a much longer sentence here"], max_seq_len=32)
    assert out["input_ids"].shape == out["position_ids"].shape
    n = int(out["lengths"][0])
    assert (out["input_ids"][0, n:] == 1).all() and (out["position_ids"][0, n:] == 1).all()


def test_missing_vocab_file_message(tmp_path):
    from unimo import UnimoTokenizer

    with pytest.raises(FileNotFoundError, match="download_dict.sh"):
        UnimoTokenizer.from_pretrained(str(tmp_path))
