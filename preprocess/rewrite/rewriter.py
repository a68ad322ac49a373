"""Phrase/word-level hard negatives (paper section 3.1): replace one object, attribute or relation node of a
caption's scene graph with a different entry of the corresponding VG vocabulary.

Guarantees for every rewrite:
- exactly one node changes (its character span), plus the indefinite article right before it when a/an
  agreement requires it ("a dog" -> "an elephant");
- the replacement is not in a synonym group (VG line) of the replaced word, and for objects not the same
  noun in the other number ("dogs" never becomes "dog");
- plural heads get plural replacements ("two dogs" -> "two cats"), singular heads singular ones;
- the text differs from the caption and from every other caption of the same image.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .scene_graph import PREPOSITIONS, SceneGraph, SceneGraphParser
from .text import indefinite_article, match_case, normalize
from .vocab import VGVocab

KINDS = ("object", "attribute", "relation")
_ARTICLE_BEFORE = re.compile(r"(?:^|(?<=[^A-Za-z0-9'\-]))([Aa][Nn]?)(\s+)$")
# Relation forms usable in both slots a caption offers ("a man riding a horse", "a man is riding a horse"):
# prepositions and participles. Finite verbs ("has", "eats") and "left of" (needs "the") are left out.
_RELATION_LEADS = PREPOSITIONS - {"of", "to", "for", "like", "after", "up", "down", "off", "out", "side"}
_RELATION_WORDS_OK = PREPOSITIONS | {"made", "front", "top"}


def rng_for(seed: int, key: str) -> random.Random:
    """Per-pair generator: output does not depend on worker count, chunking or resumption."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8"), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


@dataclass
class Node:
    kind: str
    text: str
    span: tuple[int, int]
    plural: bool = False
    entity: int = -1


def usable_relation_form(forms: list[str]) -> str | None:
    """First form of a VG relation group that reads well after a noun or after "is/are"."""
    for form in forms:
        words = form.split()
        lead_ok = words[0] in _RELATION_LEADS or words[0].endswith("ing") or words[0] == "made"
        if lead_ok and all(w in _RELATION_WORDS_OK or w.endswith("ing") or w == "made" for w in words):
            return form
    return None


class _Pool:
    """Draws distinct group ids in random order, skipping forbidden ones, without materializing big lists."""

    def __init__(self, n: int, forbidden: set[int], accept: Callable[[int], str | None], rng: random.Random):
        self.n, self.forbidden, self.accept, self.rng = n, forbidden, accept, rng
        self.used: set[int] = set()
        self.rest: list[int] | None = None  # explicit remainder once random probing gets unlucky

    def draw(self) -> str | None:
        while True:
            gid = self._next_gid()
            if gid is None:
                return None
            form = self.accept(gid)
            if form is not None:
                return form

    def _next_gid(self) -> int | None:
        if self.rest is None:
            for _ in range(24):
                gid = self.rng.randrange(self.n)
                if gid not in self.used and gid not in self.forbidden:
                    self.used.add(gid)
                    return gid
            self.rest = [g for g in range(self.n) if g not in self.used and g not in self.forbidden]
            self.rng.shuffle(self.rest)
        return self.rest.pop() if self.rest else None


class SceneGraphRewriter:
    def __init__(self, vocab: VGVocab, parser: SceneGraphParser):
        self.vocab = vocab
        self.parser = parser
        self._rel_forms = [usable_relation_form(f) for f in vocab.relations.groups]
        rel_words = vocab.relation_words
        # Attribute groups whose first form is a relation verb ("holding") would read as a verb: left out.
        self._attr_forms = [None if forms[0] in rel_words else forms[0] for forms in vocab.attributes.groups]

    # ------------------------------------------------------------------ nodes

    def nodes(self, graph: SceneGraph) -> list[Node]:
        out: list[Node] = []
        for k, ent in enumerate(graph.entities):
            out.append(Node("object", ent.head, ent.head_span, ent.plural, k))
            for att in ent.attributes:
                out.append(Node("attribute", att.text, att.span, ent.plural, k))
        for rel in graph.relations:
            out.append(Node("relation", rel.phrase, rel.span))
        return out

    def _pool(self, node: Node, graph: SceneGraph, rng: random.Random) -> _Pool:
        v = self.vocab
        old = node.text.lower()
        if node.kind == "object":
            lemma = v.object_lemma(old)

            def accept(gid: int) -> str | None:
                form = v.object_form_for(gid, node.plural)
                if form is None or form == old or v.object_lemma(form) == lemma:
                    return None
                return form

            return _Pool(len(v.objects.groups), v.object_groups(old), accept, rng)
        if node.kind == "attribute":
            siblings = {a.text.lower() for a in graph.entities[node.entity].attributes}

            def accept(gid: int) -> str | None:
                form = self._attr_forms[gid]
                return None if form is None or form in siblings else form

            return _Pool(len(v.attributes.groups), v.attribute_groups(old), accept, rng)

        def accept(gid: int) -> str | None:
            form = self._rel_forms[gid]
            return None if form is None or form == old else form

        return _Pool(len(v.relations.groups), v.relation_groups(old), accept, rng)

    # ------------------------------------------------------------------ text

    @staticmethod
    def apply(caption: str, span: tuple[int, int], new: str) -> tuple[str, str]:
        """Caption with ``span`` replaced by ``new`` (case matched) and a/an fixed; also return the inserted text."""
        s, e = span
        new = match_case(caption[s:e], new)
        before = caption[:s]
        m = _ARTICLE_BEFORE.search(before)
        if m:
            art = m.group(1)
            want = indefinite_article(new.split()[0])
            if art.lower() != want:
                want = match_case(art, want) if not (art.isupper() and len(art) == 1) else want.capitalize()
                before = before[:m.start(1)] + want + m.group(2)
        return before + new + caption[e:], new

    # ------------------------------------------------------------------ main

    def rewrite(self, caption: str, n: int, rng: random.Random, avoid: Iterable[str] = (),
                graph: SceneGraph | None = None) -> list[dict]:
        """Up to ``n`` distinct single-node rewrites of ``caption`` (fewer when the graph is small)."""
        if n <= 0:
            return []
        graph = graph if graph is not None else self.parser.parse(caption)
        seen = {normalize(caption)} | {normalize(t) for t in avoid}
        by_kind: dict[str, list[tuple[Node, _Pool]]] = {k: [] for k in KINDS}
        for node in self.nodes(graph):
            by_kind[node.kind].append((node, self._pool(node, graph, rng)))
        out: list[dict] = []
        turn = 0
        while len(out) < n:
            live = [k for k in KINDS if by_kind[k]]
            if not live:
                break
            kind = live[turn % len(live)]
            turn += 1
            entries = by_kind[kind]
            idx = rng.randrange(len(entries))
            node, pool = entries[idx]
            form = pool.draw()
            if form is None:
                entries.pop(idx)
                continue
            text, inserted = self.apply(caption, node.span, form)
            key = normalize(text)
            if key in seen:
                continue
            seen.add(key)
            out.append({"text": text, "kind": kind, "replaced": [node.text, inserted], "span": list(node.span)})
        return out
