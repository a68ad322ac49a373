"""Sentence-level positives by back-translation (paper section 3.1), behind a pluggable interface.

Backends
- ``file``: the user's own paraphrases: JSONL ``{"caption": ..., "paraphrases": [...]}`` or TSV
  ``caption<TAB>paraphrase[<TAB>paraphrase...]`` (a caption may appear on several lines).
- ``marian``: two MarianMT checkpoints saved with ``save_pretrained`` (English->pivot and pivot->English),
  run with ``transformers`` + ``torch`` (imported only for this backend; nothing is downloaded).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, Sequence

from .text import normalize


class TranslatorError(ValueError):
    pass


NOT_CONFIGURED = ("back-translation is not configured but --positives > 0: pass --paraphrases FILE "
                  "(JSONL {\"caption\", \"paraphrases\"} or TSV caption<TAB>paraphrase), or --translator marian "
                  "--mt-model DIR, or --positives 0")


class Translator(Protocol):
    name: str

    def paraphrases(self, captions: Sequence[str], n: int) -> list[list[str]]:
        """Up to ``n`` distinct paraphrases per caption, none identical to the caption itself."""
        ...


def _dedupe(caption: str, cands: Sequence[str], n: int) -> list[str]:
    seen = {normalize(caption)}
    out = []
    for c in cands:
        c = " ".join(c.split())
        key = normalize(c)
        if c and key not in seen:
            seen.add(key)
            out.append(c)
            if len(out) == n:
                break
    return out


class ParaphraseFile:
    """Lookup of user-supplied paraphrases, by exact caption text first, then by normalized text."""

    name = "file"

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise TranslatorError(f"{path}: paraphrase file not found")
        self.table: dict[str, list[str]] = {}
        with path.open(encoding="utf-8") as f:
            first = f.readline()
        is_jsonl = path.suffix in (".jsonl", ".json") or first.lstrip().startswith("{")
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                if is_jsonl:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise TranslatorError(f"{where}: malformed JSON ({exc.msg})") from None
                    if not isinstance(rec, dict):
                        raise TranslatorError(f"{where}: expected a JSON object")
                    cap, paras = rec.get("caption"), rec.get("paraphrases")
                    if not isinstance(cap, str) or not cap.strip():
                        raise TranslatorError(f"{where}: field 'caption' missing or empty")
                    if not isinstance(paras, list) or not all(isinstance(p, str) for p in paras):
                        raise TranslatorError(f"{where}: field 'paraphrases' must be a list of strings")
                else:
                    cols = line.rstrip("\n").rstrip("\r").split("\t")
                    if len(cols) < 2 or not cols[0].strip():
                        raise TranslatorError(f"{where}: expected caption<TAB>paraphrase")
                    cap, paras = cols[0], cols[1:]
                for key in (cap.strip(), normalize(cap)):
                    self.table.setdefault(key, []).extend(p for p in paras if p.strip())

    def paraphrases(self, captions: Sequence[str], n: int) -> list[list[str]]:
        out = []
        for cap in captions:
            cands = self.table.get(cap.strip()) or self.table.get(normalize(cap)) or []
            out.append(_dedupe(cap, cands, n))
        return out


class MarianBackTranslator:
    """English -> pivot -> English with two local MarianMT checkpoints (``forward`` and ``backward``)."""

    name = "marian"

    def __init__(self, model_dirs: Sequence[str], batch_size: int = 32, num_beams: int = 4, device: str = "cpu"):
        dirs = [Path(d) for d in model_dirs]
        if len(dirs) == 1:  # one folder holding forward/ and backward/
            dirs = [dirs[0] / "forward", dirs[0] / "backward"]
        if len(dirs) != 2:
            raise TranslatorError("--mt-model takes one folder with forward/ and backward/ sub-folders, or two "
                                  "folders (English->pivot, pivot->English)")
        for d in dirs:
            if not (d / "config.json").is_file():
                raise TranslatorError(f"{d}: not a MarianMT model folder (no config.json); no model can be "
                                      f"downloaded here: save one with save_pretrained() and pass its folder")
        self.dirs, self.batch_size, self.num_beams, self.device = dirs, batch_size, num_beams, device
        self._models = None

    def _load(self):
        if self._models is None:
            try:
                import torch  # noqa: F401
                from transformers import MarianMTModel, MarianTokenizer
            except ImportError as exc:
                raise TranslatorError(f"--translator marian needs torch, transformers and sentencepiece ({exc})") \
                    from exc
            self._models = []
            for d in self.dirs:
                tok = MarianTokenizer.from_pretrained(str(d))
                model = MarianMTModel.from_pretrained(str(d)).to(self.device).eval()
                self._models.append((tok, model))
        return self._models

    def _generate(self, tok, model, texts: Sequence[str], n: int) -> list[list[str]]:
        import torch

        out: list[list[str]] = []
        for i in range(0, len(texts), self.batch_size):
            batch = list(texts[i:i + self.batch_size])
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True).to(self.device)
            with torch.no_grad():
                gen = model.generate(**enc, num_beams=max(self.num_beams, n), num_return_sequences=n,
                                     max_new_tokens=128)
            dec = tok.batch_decode(gen, skip_special_tokens=True)
            out += [dec[j * n:(j + 1) * n] for j in range(len(batch))]
        return out

    def paraphrases(self, captions: Sequence[str], n: int) -> list[list[str]]:
        if n <= 0:
            return [[] for _ in captions]
        (ftok, fwd), (btok, bwd) = self._load()
        # n pivot translations per caption (beam search), each translated back once.
        pivots = self._generate(ftok, fwd, captions, n)
        flat = [p for ps in pivots for p in ps]
        back = self._generate(btok, bwd, flat, 1)
        out = []
        for j, cap in enumerate(captions):
            cands = [b[0] for b in back[j * n:(j + 1) * n]]
            out.append(_dedupe(cap, cands, n))
        return out


def get_translator(name: str | None, paraphrases: str | None, mt_model: Sequence[str] | None,
                   positives: int) -> Translator | None:
    """Backend chosen by ``--translator`` (inferred from --paraphrases / --mt-model when not given)."""
    if name is None:
        name = "file" if paraphrases else ("marian" if mt_model else "none")
    if name == "none":
        if positives > 0:
            raise TranslatorError(NOT_CONFIGURED)
        return None
    if positives <= 0:
        return None
    if name == "file":
        if not paraphrases:
            raise TranslatorError("--translator file needs --paraphrases FILE")
        return ParaphraseFile(paraphrases)
    if name == "marian":
        if not mt_model:
            raise TranslatorError("--translator marian needs --mt-model DIR (a local MarianMT checkpoint; no "
                                  "model can be downloaded here)")
        return MarianBackTranslator(mt_model)
    raise TranslatorError(f"unknown translator {name!r} (choose none, file or marian)")
