"""Oracle: GPT-2 BPE ids from HuggingFace's GPT-2 tokenizer (an independent implementation), run in .venv-oracle.

usage: gpt2_bpe_oracle.py ENCODER_JSON VOCAB_BPE TEXTS_JSON OUT_JSON
"""
import json
import os
import shutil
import sys
import tempfile

from transformers import GPT2Tokenizer

encoder, merges, texts_path, out_path = sys.argv[1:5]
with tempfile.TemporaryDirectory() as d:
    # HF expects the GPT-2 file names; the UNIMO files are byte-identical to GPT-2's vocab.json / merges.txt.
    shutil.copy(encoder, os.path.join(d, "vocab.json"))
    shutil.copy(merges, os.path.join(d, "merges.txt"))
    tok = GPT2Tokenizer.from_pretrained(d)
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    probe = tok.encode("Hello world", add_special_tokens=False)
    if probe != [15496, 995]:
        raise SystemExit(f"oracle tokenizer misconfigured: 'Hello world' -> {probe}")
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(ids, f)
