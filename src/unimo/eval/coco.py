"""coco-caption metrics (pycocoevalcap) for COCO captioning and SQuAD question generation.

Captioning follows ``COCOEvalCap``: the PTB tokenizer (Stanford CoreNLP 3.4.1, Java, ``-preserveLines
-lowerCase``, then coco's punctuation tokens dropped) on predictions and references, then BLEU-1..4 (corpus
level, "closest" reference length), METEOR 1.5 (Java), ROUGE-L (beta 1.2, max over references) and CIDEr
(pycocoevalcap's ``Cider`` *is* CIDEr-D: clipped n-gram counts, Gaussian length penalty sigma 6, x10, document
frequencies from the evaluated references), reported as ``"CIDEr-D"``. Scores are fractions as coco-caption
prints them (CIDEr-D around 1.2 for a good model, papers multiply by 100).

Without Java the tokenizer falls back to :func:`python_ptb_tokenize` (NLTK's Treebank tokenizer plus the PTB
rules that matter for captions: bracket escapes, sentence-internal periods, lowercase); the output says
``"tokenizer": "python-treebank-fallback"`` and METEOR is reported as unavailable with the reason. SPICE needs
Stanford CoreNLP models downloaded at first use, impossible offline: always ``{"SPICE": null,
"SPICE_unavailable": reason}``.

SQuAD question generation follows UniLM's QG evaluation (the nqg script of Du et al. 2017): predictions and
references are tokenized and lowercased, references of the same source sentence are pooled as multiple
references of that sentence, and BLEU-1..4 / METEOR / ROUGE-L are computed with the same pycocoevalcap scorers.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Hashable, Mapping, Sequence

from .fileio import EvalInputError, check_same_length

# coco-caption's PTBTokenizer drops exactly these tokens (case-sensitive, after lowercasing; so "-lrb-" stays)
COCO_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                               ".", "?", "!", ",", ":", "-", "--", "...", ";"])
SPICE_UNAVAILABLE = ("SPICE needs the Stanford CoreNLP 3.6.0 models, which pycocoevalcap downloads on first use; "
                     "no network access here, so it is not computed")
PTB_JAVA_NAME = "ptb-java (stanford-corenlp-3.4.1)"
PTB_PY_NAME = "python-treebank-fallback"


# ----------------------------------------------------------------------------------------------- Java helpers
@functools.lru_cache(maxsize=1)
def java_status() -> tuple[bool, str]:
    """(available, reason): whether a working ``java`` is on PATH (``UNIMO_EVAL_NO_JAVA=1`` pretends not)."""
    if os.environ.get("UNIMO_EVAL_NO_JAVA", "") not in ("", "0"):
        return False, "Java disabled by UNIMO_EVAL_NO_JAVA"
    java = shutil.which("java")
    if java is None:
        return False, "no `java` executable on PATH (install a JRE, e.g. `apt-get install default-jre-headless`)"
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"`java -version` failed: {e}"
    if proc.returncode != 0:
        return False, f"`java -version` exited with {proc.returncode}: {proc.stderr.strip()[:200]}"
    return True, (proc.stderr or proc.stdout).strip().splitlines()[0] if (proc.stderr or proc.stdout) else "java"


def _use_java(use_java: bool | None) -> tuple[bool, str]:
    if use_java is False:
        return False, "Java disabled by the caller"
    ok, reason = java_status()
    if use_java is True and not ok:
        raise RuntimeError(f"Java requested but unavailable: {reason}")
    return ok, reason


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap

    # pycocoevalcap ships without __init__.py (a namespace package): use its __path__
    return Path(list(pycocoevalcap.__path__)[0]).resolve()


# ------------------------------------------------------------------------------------------------ tokenizers
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
# abbreviations the PTB tokenizer keeps with their period (only those plausible in captions / questions)
_ABBREV = frozenset("mr mrs ms dr st jr sr vs etc inc co corp ltd no mt ft prof gen gov sen rep".split())


def _py_tokens(text: str) -> list[str]:
    from nltk.tokenize import TreebankWordTokenizer

    toks = TreebankWordTokenizer().tokenize(text.replace("\n", " ").replace("\r", " "))
    out: list[str] = []
    for t in toks:
        if t in _BRACKETS:
            out.append(_BRACKETS[t])
        # Treebank only splits the text-final period; PTB also splits "dogs." inside the text, but keeps
        # abbreviations and dotted acronyms ("u.s.", "p.m.", "mr.").
        elif (len(t) > 1 and t.endswith(".") and t.count(".") == 1 and not t.endswith("..")
              and t[:-1].lower() not in _ABBREV and not re.fullmatch(r"[A-Za-z]\.", t)):
            out.extend([t[:-1], "."])
        elif t.startswith("'") and len(t) > 1 and t[1:].isalpha() and t.lower() not in (
                "'s", "'m", "'d", "'ll", "'re", "'ve"):
            out.extend(["`", t[1:]])  # opening single quote, as PTB writes it
        else:
            out.append(t)
    return [t.lower() for t in out]


def python_ptb_tokenize(text: str, drop_punct: bool = True) -> str:
    """Pure-Python approximation of ``PTBTokenizer -preserveLines -lowerCase`` (+ coco punctuation removal)."""
    toks = _py_tokens(text)
    if drop_punct:
        toks = [t for t in toks if t not in COCO_PUNCTUATIONS]
    return " ".join(toks)


def _java_ptb_lines(texts: Sequence[str]) -> list[str]:
    """Run Stanford PTBTokenizer over ``texts`` (one per line) and return its lowercased token lines."""
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    if not jar.is_file():
        raise RuntimeError(f"PTB tokenizer jar not found at {jar}")
    clean = [t.replace("\r", " ").replace("\n", " ") for t in texts]
    with tempfile.TemporaryDirectory(prefix="unimo_ptb_") as tmp:
        src = Path(tmp) / "sentences.txt"
        src.write_text("\n".join(clean), encoding="utf-8")
        proc = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(src)],
                              capture_output=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"PTBTokenizer failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    lines = proc.stdout.decode("utf-8").split("\n")
    # the tokenizer does not echo trailing empty input lines; anything else missing is an error
    while len(lines) < len(clean) and all(not c.strip() for c in clean[len(lines):]):
        lines.append("")
    if len(lines) < len(clean):
        raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {len(clean)} captions")
    return [ln.rstrip() for ln in lines[:len(clean)]]


def ptb_tokenize(texts: Sequence[str], *, use_java: bool | None = None,
                 drop_punct: bool = True) -> tuple[list[str], str]:
    """Tokenize like coco-caption's PTBTokenizer. Returns (token strings, tokenizer name used)."""
    java, _ = _use_java(use_java)
    if java:
        lines = _java_ptb_lines(texts)
        if drop_punct:
            lines = [" ".join(w for w in ln.split(" ") if w not in COCO_PUNCTUATIONS) for ln in lines]
        return lines, PTB_JAVA_NAME
    return [python_ptb_tokenize(t, drop_punct=drop_punct) for t in texts], PTB_PY_NAME


# --------------------------------------------------------------------------------------------------- scorers
_METEOR_LOCK = threading.Lock()
_METEOR = None


def _meteor_scorer():
    """One METEOR JVM per process: it takes ~10 s to load its paraphrase table."""
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is None:
            from pycocoevalcap.meteor.meteor import Meteor

            _METEOR = Meteor()
        return _METEOR


def _drop_meteor_scorer() -> None:
    """Forget a failed METEOR JVM. pycocoevalcap's wrapper keeps its lock held when a call raises, and its
    ``__del__`` takes that lock, which would hang the interpreter at exit: kill the JVM and release the lock."""
    global _METEOR
    with _METEOR_LOCK:
        m, _METEOR = _METEOR, None
    if m is None:
        return
    try:
        m.meteor_p.kill()
    except Exception:
        pass
    if m.lock.locked():
        m.lock.release()


def _sanitize_meteor(text: str) -> str:
    # the METEOR stdio protocol is line based and uses "|||" as a field separator
    return " ".join(text.replace("|||", " ").split())


def coco_scores(gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str]], *,
                meteor: bool | None = None, meteor_unavailable: str | None = None, cider: bool = True) -> dict:
    """Run pycocoevalcap BLEU-1..4 / METEOR / ROUGE-L (/ CIDEr-D) on *already tokenized* texts.

    ``gts[k]``: list of references, ``res[k]``: one-element list with the hypothesis. ``meteor=None``: compute it
    when Java is available, else report it unavailable; ``False``: skip (reported as skipped).
    ``meteor_unavailable``: a reason to report METEOR as unavailable without trying (e.g. Java disabled).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(gts) != set(res):
        raise EvalInputError("internal: reference and prediction keys differ")
    for k, v in res.items():
        if len(v) != 1:
            raise EvalInputError(f"id {k!r}: expected exactly one prediction, got {len(v)}")
        if not gts[k]:
            raise EvalInputError(f"id {k!r}: no reference")
    out: dict = OrderedDict()
    with contextlib.redirect_stdout(sys.stderr):  # pycocoevalcap prints progress on stdout
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for i, b in enumerate(bleu):
            out[f"Bleu_{i + 1}"] = float(b)
        if meteor is False:
            out["METEOR"] = None
            out["METEOR_unavailable"] = "skipped by the caller"
        else:
            ok, reason = (False, meteor_unavailable) if meteor_unavailable else java_status()
            if not ok:
                out["METEOR"] = None
                out["METEOR_unavailable"] = f"METEOR 1.5 runs on Java: {reason}"
            else:
                try:
                    m_gts = {k: [_sanitize_meteor(r) for r in v] for k, v in gts.items()}
                    m_res = {k: [_sanitize_meteor(h) for h in v] for k, v in res.items()}
                    score, _ = _meteor_scorer().compute_score(m_gts, m_res)
                    out["METEOR"] = float(score)
                except Exception as e:  # a dead JVM shows up as an unparsable line; never invent a number
                    _drop_meteor_scorer()
                    out["METEOR"] = None
                    out["METEOR_unavailable"] = f"METEOR failed: {type(e).__name__}: {e}"
        out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
        if cider:
            out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    return out


# ------------------------------------------------------------------------------------------------ captioning
def caption_scores(preds: Mapping[Hashable, str], refs: Mapping[Hashable, Sequence[str]], *,
                   use_java: bool | None = None, meteor: bool | None = None,
                   allow_missing: bool = False) -> dict:
    """COCO caption metrics of ``preds`` (image id -> caption) against ``refs`` (image id -> captions).

    Every predicted id must have references. Every reference image must have a prediction unless
    ``allow_missing`` (then only predicted images are scored, as coco-caption does, and the count is reported).
    """
    unknown = [k for k in preds if k not in refs]
    if unknown:
        raise EvalInputError(f"prediction for image_id {unknown[0]!r} which has no reference caption "
                             f"({len(unknown)} such ids)")
    missing = [k for k in refs if k not in preds]
    if missing and not allow_missing:
        raise EvalInputError(f"no prediction for image_id {missing[0]!r} ({len(missing)} reference images "
                             "without prediction; pass allow_missing / --allow-missing to score the subset)")
    ids = list(preds)
    if not ids:
        raise EvalInputError("no predictions to evaluate")
    java, java_reason = _use_java(use_java)
    flat_refs = [(k, r) for k in ids for r in refs[k]]
    # one tokenizer run (one JVM start) for references and predictions; -preserveLines keeps them apart
    toks, tok_name = ptb_tokenize([r for _, r in flat_refs] + [preds[k] for k in ids], use_java=java)
    tok_refs, tok_preds = toks[:len(flat_refs)], toks[len(flat_refs):]
    gts: dict = {k: [] for k in ids}
    for (k, _), t in zip(flat_refs, tok_refs):
        gts[k].append(t)
    res = {k: [t] for k, t in zip(ids, tok_preds)}
    out = coco_scores(gts, res, meteor=meteor, meteor_unavailable=None if java else java_reason)
    out["SPICE"] = None
    out["SPICE_unavailable"] = SPICE_UNAVAILABLE
    out["tokenizer"] = tok_name
    out["num_images"] = len(ids)
    out["num_missing_predictions"] = len(missing)
    return dict(out)


def load_coco_results(path: str | os.PathLike) -> dict:
    """COCO results file ``[{"image_id": ..., "caption": str}, ...]`` -> {image_id: caption}; duplicates are errors."""
    from .fileio import load_json

    data = load_json(path)
    if not isinstance(data, list):
        raise EvalInputError(f"{path}: expected a JSON list of {{\"image_id\", \"caption\"}} objects")
    out: dict = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise EvalInputError(f"{path}: entry {i}: needs fields \"image_id\" and \"caption\"")
        if not isinstance(item["caption"], str):
            raise EvalInputError(f"{path}: entry {i} (image_id {item['image_id']!r}): caption is not a string")
        k = item["image_id"]
        if k in out:
            raise EvalInputError(f"{path}: entry {i}: duplicate prediction for image_id {k!r}")
        out[k] = item["caption"]
    return out


def load_coco_annotations(path: str | os.PathLike) -> dict:
    """COCO captions annotation file ``{"images": [...], "annotations": [{"image_id", "caption", "id"}]}``
    -> {image_id: [captions]} (images listed without any caption are errors)."""
    from .fileio import load_json

    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise EvalInputError(f"{path}: expected a COCO annotation object with an \"annotations\" list")
    refs: dict = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise EvalInputError(f"{path}: annotations[{i}]: needs fields \"image_id\" and \"caption\"")
        if not isinstance(ann["caption"], str):
            raise EvalInputError(f"{path}: annotations[{i}] (id {ann.get('id')!r}): caption is not a string")
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    for j, img in enumerate(data.get("images", []) or []):
        iid = img.get("id") if isinstance(img, dict) else None
        if iid is None:
            raise EvalInputError(f"{path}: images[{j}]: missing \"id\"")
        if iid not in refs:
            raise EvalInputError(f"{path}: image id {iid!r} has no caption in \"annotations\"")
    return refs


# ----------------------------------------------------------------------------------------- question generation
def qg_tokenize(text: str, tokenize: bool = True) -> str:
    """Tokenized, lowercased text as in UniLM's QG eval (punctuation kept: "?" is part of the references)."""
    if tokenize:
        return " ".join(_py_tokens(text))
    return " ".join(text.lower().split())


def qg_scores(preds: Sequence[str], refs: Sequence[str], sources: Sequence[str] | None = None, *,
              tokenize: bool = True, meteor: bool | None = None) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L for question generation (line-aligned predictions and references).

    With ``sources`` (the input sentence of each example) examples are grouped by their lowercased, stripped
    source sentence as in the nqg / UniLM script: all references of a sentence become its reference set and the
    *last* prediction of the sentence is its hypothesis. Without sources each line is its own group.
    """
    check_same_length("predictions", len(preds), "references", len(refs))
    if sources is not None:
        check_same_length("predictions", len(preds), "sources", len(sources))
    if not preds:
        raise EvalInputError("no examples to evaluate")
    gts: dict = {}
    res: dict = {}
    for i, (p, r) in enumerate(zip(preds, refs)):
        key = sources[i].strip().lower() if sources is not None else i
        res[key] = [qg_tokenize(p, tokenize)]
        gts.setdefault(key, []).append(qg_tokenize(r, tokenize))
    out = coco_scores(gts, res, meteor=meteor, cider=False)
    out["num_examples"] = len(preds)
    out["num_groups"] = len(gts)
    out["tokenization"] = "nltk-treebank+ptb-rules, lowercased" if tokenize else "whitespace, lowercased"
    return dict(out)
