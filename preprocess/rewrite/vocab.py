"""Visual Genome object / attribute / relation vocabularies (bottom-up-attention ``1600-400-20`` release).

Each file has one class per line; a line may list comma-separated synonyms ("stop sign,stopsign"). Lines are
kept as synonym groups: a replacement never comes from a group that contains the replaced word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .text import PLURALIA_TANTUM, looks_plural, pluralize, singular_candidates

VOCAB_FILES = {"object": "objects_vocab.txt", "attribute": "attributes_vocab.txt", "relation": "relations_vocab.txt"}
EXPECTED_LINES = {"object": 1600, "attribute": 400, "relation": 20}
_ARTICLES = ("a", "an", "the")


class VocabError(ValueError):
    pass


def read_vocab_file(path: Path) -> list[list[str]]:
    """Synonym groups of one vocabulary file (lower-cased, stripped, empty entries rejected)."""
    if not path.is_file():
        raise VocabError(f"{path}: vocabulary file not found (get it with model_files/download_vg_vocab.sh "
                         f"or pass --vocab-dir)")
    groups: list[list[str]] = []
    text = path.read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), 1):
        forms = [w.strip().lower() for w in line.split(",")]
        forms = [" ".join(w.split()) for w in forms if w.strip()]
        if not forms:
            raise VocabError(f"{path}:{lineno}: empty vocabulary line")
        groups.append(list(dict.fromkeys(forms)))  # the files repeat some forms within a line
    return groups


@dataclass
class Lexicon:
    """One vocabulary: synonym groups plus a form -> group-ids index."""

    kind: str
    groups: list[list[str]]
    index: dict[str, set[int]] = field(default_factory=dict)
    max_words: int = 1

    def __post_init__(self) -> None:
        for gid, forms in enumerate(self.groups):
            for form in forms:
                self.index.setdefault(form, set()).add(gid)
                self.max_words = max(self.max_words, len(form.split()))

    def groups_of(self, form: str) -> set[int]:
        return self.index.get(form.lower(), set())


class VGVocab:
    """The three VG vocabularies with the number-aware lookups the parser and the rewriter need."""

    def __init__(self, objects: list[list[str]], attributes: list[list[str]], relations: list[list[str]]):
        self.objects = Lexicon("object", objects)
        self.attributes = Lexicon("attribute", attributes)
        # Relation forms such as "has a" / "behind an" carry an article that belongs to the object phrase.
        rel_groups = []
        for forms in relations:
            stripped = []
            for f in forms:
                words = f.split()
                while len(words) > 1 and words[-1] in _ARTICLES:
                    words = words[:-1]
                stripped.append(" ".join(words))
            rel_groups.append(list(dict.fromkeys(stripped)))
        self.relations = Lexicon("relation", rel_groups)
        self.relation_words = {w for forms in rel_groups for f in forms for w in f.split()}
        # Object lemmas (singular forms) -> groups, so "dogs" finds the group of "dog" *and* of "dogs".
        self._lemma_groups: dict[str, set[int]] = {}
        for gid, forms in enumerate(objects):
            for form in forms:
                self._lemma_groups.setdefault(self.object_lemma(form), set()).add(gid)

    @classmethod
    def from_dir(cls, vocab_dir: str | Path) -> "VGVocab":
        vocab_dir = Path(vocab_dir)
        if not vocab_dir.is_dir():
            raise VocabError(f"{vocab_dir}: VG vocabulary folder not found (run model_files/download_vg_vocab.sh "
                             f"or pass --vocab-dir)")
        groups = {kind: read_vocab_file(vocab_dir / name) for kind, name in VOCAB_FILES.items()}
        return cls(groups["object"], groups["attribute"], groups["relation"])

    # ------------------------------------------------------------------ objects

    def object_lemma(self, form: str) -> str:
        """Singular form of an object phrase (only the last word inflects)."""
        form = " ".join(form.lower().split())
        prefix, _, last = form.rpartition(" ")
        prefix = prefix + " " if prefix else ""
        if last in PLURALIA_TANTUM or not looks_plural(form):
            return form
        for cand in singular_candidates(last):
            if (prefix + cand) in self.objects.index:
                return prefix + cand
        cands = singular_candidates(last)
        return prefix + (cands[-1] if cands else last)

    def match_object(self, words: list[str]) -> tuple[str, bool] | None:
        """If ``words`` (lower-case) name a vocabulary object, return (matched vocabulary form, plural?)."""
        phrase = " ".join(words)
        if phrase in self.objects.index:
            return phrase, looks_plural(phrase)
        prefix = " ".join(words[:-1])
        for cand in singular_candidates(words[-1]):
            form = (prefix + " " + cand).strip()
            if form in self.objects.index:
                return form, True
        return None

    def object_groups(self, head: str) -> set[int]:
        """Every synonym group the object ``head`` (any number) belongs to: groups never used to replace it."""
        head = " ".join(head.lower().split())
        out = set(self.objects.groups_of(head))
        out |= self._lemma_groups.get(self.object_lemma(head), set())
        return out

    def object_form_for(self, gid: int, plural: bool) -> str | None:
        """A form of group ``gid`` inflected for the slot's number, or None when the group cannot fill it."""
        from .text import MASS_NOUNS  # local: keeps the module's import list short

        form = self.objects.groups[gid][0]
        form_plural = looks_plural(form)
        if plural:
            if form_plural:
                return form
            if form in MASS_NOUNS or form.rpartition(" ")[2] in MASS_NOUNS:
                return None
            return pluralize(form)
        if form_plural:  # "jeans", "dogs": no singular slot for them
            return None
        return form

    # ------------------------------------------------------------------ attributes / relations

    def attribute_groups(self, text: str) -> set[int]:
        return self.attributes.groups_of(" ".join(text.lower().split()))

    def relation_groups(self, phrase: str) -> set[int]:
        """Groups of every relation form found inside ``phrase`` ("standing next to" -> the group of "next to")."""
        words = phrase.lower().split()
        out: set[int] = set()
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                out |= self.relations.groups_of(" ".join(words[i:j]))
        return out
