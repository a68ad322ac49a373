"""Small text utilities shared by the rewriting steps: tokenization with character offsets, normalization,
English noun inflection and a/an agreement.

Everything here is rule-based on purpose: the rewriter must run over millions of captions with no model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:['\u2019\-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()

    @property
    def is_word(self) -> bool:
        return self.text[0].isalnum()


def tokenize(text: str) -> list[Token]:
    """Words (letters/digits, inner hyphens and apostrophes kept) and single punctuation marks, with offsets."""
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


_TRAILING_PUNCT = " .!?;,"


def normalize(text: str) -> str:
    """Key used for "identical caption" checks: case-folded, whitespace collapsed, final punctuation dropped."""
    return " ".join(text.lower().split()).rstrip(_TRAILING_PUNCT).strip()


# --------------------------------------------------------------------------- inflection

IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "person": "people", "child": "children", "foot": "feet", "tooth": "teeth",
    "mouse": "mice", "goose": "geese", "ox": "oxen", "louse": "lice", "die": "dice", "policeman": "policemen",
    "fireman": "firemen", "businessman": "businessmen", "gentleman": "gentlemen", "lady": "ladies",
    "knife": "knives", "leaf": "leaves", "shelf": "shelves", "wolf": "wolves", "calf": "calves", "half": "halves",
    "loaf": "loaves", "scarf": "scarves", "wife": "wives", "life": "lives", "thief": "thieves",
    "cactus": "cacti", "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "mango": "mangoes",
}
IRREGULAR_SINGULARS = {v: k for k, v in IRREGULAR_PLURALS.items()}
# Same form in both numbers: treated as singular when there is no other evidence.
INVARIANT_NOUNS = {"sheep", "deer", "fish", "moose", "aircraft", "bison", "salmon", "series", "species", "shrimp"}
# Nouns that are plural in form and number (they take "are" and no "a").
PLURALIA_TANTUM = {
    "jeans", "pants", "shorts", "trousers", "scissors", "glasses", "eyeglasses", "sunglasses", "goggles",
    "clothes", "overalls", "slacks", "sweatpants", "tongs", "headphones", "suspenders", "bleachers", "stairs",
    "trunks", "blinds", "drapes", "electronics", "toiletries", "pliers", "binoculars", "leggings", "tights",
}
# Words ending in "s" that are singular.
SINGULAR_S = {
    "bus", "gas", "lens", "canvas", "asparagus", "christmas", "atlas", "iris", "tennis", "cactus", "octopus",
    "hippopotamus", "walrus", "circus", "campus", "virus", "bonus", "chaos", "news", "physics", "mathematics",
    "lettuce", "hummus", "couscous", "citrus", "bias", "plus", "class", "cross", "dress", "glass", "grass",
    "harness", "mattress", "overpass", "boss", "moss", "bass", "gas", "compass", "fungus", "status", "this",
    "has", "was", "is", "us", "yes", "its", "his", "as", "thus", "lotus", "uterus", "hibiscus", "crocus", "ibis",
}
# Mass nouns read oddly in a plural slot ("two waters"); never used as plural replacements.
MASS_NOUNS = {
    "water", "grass", "snow", "sand", "hair", "dirt", "rice", "broccoli", "meat", "asphalt", "gravel", "cement",
    "concrete", "mud", "food", "milk", "coffee", "tea", "juice", "wine", "beer", "soup", "sauce", "cheese",
    "butter", "bread", "cereal", "pasta", "lettuce", "foliage", "furniture", "luggage", "traffic", "smoke", "fog",
    "sky", "ocean water", "ice", "air", "wood", "glass", "paper", "plastic", "metal", "steel", "clay", "salt",
    "sugar", "frosting", "icing", "whipped cream", "cream", "ketchup", "mustard", "mayo", "mayonnaise", "hay",
    "straw", "cotton", "fur", "wool", "leather", "lace", "mesh", "foam", "spinach", "cabbage", "beef", "pork",
    "bacon", "ham", "ground", "dust", "mist", "rain", "sunlight",
    "graffiti", "writing", "lettering", "text", "asparagus", "celery", "corn", "garlic", "ginger", "parsley",
    "cauliflower", "zucchini", "oatmeal", "toast", "candy", "chocolate", "money",
    "equipment", "clothing", "machinery", "scenery", "soap", "toothpaste",
    "marble", "granite", "linoleum", "carpet", "flooring", "siding", "netting", "fencing", "fabric", "material",
    "bamboo", "ivy", "moss", "seaweed", "weeds", "dough", "batter", "yolk", "fruit", "produce", "broth",
}
_VOWEL_SOUND_EXCEPTIONS_A = ("uni", "use", "usu", "uten", "uti", "usb", "ura", "ure", "uri", "uro", "eu", "ewe", "one", "once",
                             "ukulele", "u-", "uk", "ufo")
_VOWEL_SOUND_EXCEPTIONS_AN = ("hour", "honest", "honor", "honour", "heir")


def _split_last(phrase: str) -> tuple[str, str]:
    head, _, last = phrase.rpartition(" ")
    return (head + " " if head else ""), last


def pluralize(noun: str) -> str:
    """Plural of a (possibly multi-word) noun: only the last word is inflected ("alarm clock" -> "alarm clocks")."""
    prefix, word = _split_last(noun)
    low = word.lower()
    if low in IRREGULAR_PLURALS:
        plural = IRREGULAR_PLURALS[low]
    elif low in INVARIANT_NOUNS or low in PLURALIA_TANTUM:
        plural = low
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        plural = low + "es"
    elif low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        plural = low[:-1] + "ies"
    else:
        plural = low + "s"
    if word[:1].isupper():
        plural = plural[:1].upper() + plural[1:]
    return prefix + plural


def singular_candidates(word: str) -> list[str]:
    """Possible singular forms of ``word`` if it were a regular or irregular plural (most likely first)."""
    low = word.lower()
    out: list[str] = []
    if low in IRREGULAR_SINGULARS:
        out.append(IRREGULAR_SINGULARS[low])
    if low.endswith("ies") and len(low) > 4:
        out.append(low[:-3] + "y")
    if low.endswith("ves") and len(low) > 4:
        out += [low[:-3] + "f", low[:-3] + "fe"]
    if low.endswith("es") and len(low) > 3 and low[:-2].endswith(("s", "x", "z", "ch", "sh", "o")):
        out.append(low[:-2])  # "boxes", "dishes", "potatoes" (but "stares" -> "stare", not "star")
    if low.endswith("s") and not low.endswith("ss") and len(low) > 2:
        out.append(low[:-1])
    return out


def looks_plural(phrase: str) -> bool:
    """Number of a noun phrase judged from the form of its last word alone (no lexicon)."""
    _, word = _split_last(phrase.lower())
    if word in IRREGULAR_SINGULARS or word in PLURALIA_TANTUM:
        return True
    if word in SINGULAR_S or word in INVARIANT_NOUNS or word in IRREGULAR_PLURALS:
        return False
    if word.endswith(("ss", "us")):
        return False
    if word.endswith("is") and word not in ("skis", "skiis", "kiwis", "taxis"):
        return False
    return word.endswith("s") and len(word) > 2


def indefinite_article(word: str) -> str:
    """"a" or "an" for the word that follows the article (by spelling, with the usual exceptions)."""
    low = word.lower()
    if not low:
        return "a"
    if low.startswith(_VOWEL_SOUND_EXCEPTIONS_AN):
        return "an"
    if low.startswith(_VOWEL_SOUND_EXCEPTIONS_A):
        return "a"
    if low[0] in "aeiou":
        return "an"
    if low[0] == "8" or low.startswith(("11", "18")) and (len(low) == 2 or not low[2:3].isdigit()):
        return "an"
    return "a"


def match_case(template: str, text: str) -> str:
    """Give ``text`` the capitalization pattern of ``template`` (capitalized first letter or all caps)."""
    if template.isupper() and len(template) > 1:
        return text.upper()
    if template[:1].isupper():
        return text[:1].upper() + text[1:]
    return text
