"""VQA answer normalisation, behaving like the official VQA evaluation (``vqaEval.py``).

Steps, in the official order: newlines/tabs -> spaces and strip; punctuation (each symbol is deleted when it
touches a space or when the answer contains a digit-comma-digit group, otherwise replaced by a space); periods
not followed by a digit are deleted (so "2.5" keeps its point); lowercase; number words zero..ten (and "none")
become digits; articles a/an/the are dropped; apostrophe-less contractions get their apostrophe ("dont" ->
"don't"). The contraction table reproduces the official one, quirks included (entries written with a capital
letter never fire because the text is lowercased first; "somebody'd" maps to "somebodyd").
"""
from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["normalize_answer", "process_punctuation", "process_digit_article"]

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
          "!")
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})

# "written form -> canonical form" pairs of the official table, one pair per line.
_CONTRACTION_TABLE = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've|couldnt've couldn't've
didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've|hadn'tve hadn't've|hasnt hasn't
havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's|howd how'd|howll how'll|hows how's
Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd|itd've it'd've|it'dve it'd've|itll it'll
let's let's|maam ma'am|mightnt mightn't|mightnt've mightn't've|mightn'tve mightn't've|mightve might've
mustnt mustn't|mustve must've|neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't
ow's'at 'ow's'at|'ows'at 'ow's'at|'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's
shouldve should've|shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd
somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's
someoned someone'd|someoned've someone'd've|someone'dve someone'd've|someonell someone'll|someones someone's
somethingd something'd|somethingd've something'd've|something'dve something'd've|somethingll something'll
thats that's|thered there'd|thered've there'd've|there'dve there'd've|therere there're|theres there's
theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll|theyre they're|theyve they've|twas 'twas
wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've|werent weren't|whatll what'll|whatre what're
whats what's|whatve what've|whens when's|whered where'd|wheres where's|whereve where've|whod who'd
whod've who'd've|who'dve who'd've|wholl who'll|whos who's|whove who've|whyll why'll|whyre why're|whys why's
wont won't|wouldve would've|wouldnt wouldn't|wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all
yall'll y'all'll|y'allll y'all'll|yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd
youd've you'd've|you'dve you'd've|youll you'll|youre you're|youve you've
"""
_CONTRACTIONS: dict[str, str] = {}
for _line in _CONTRACTION_TABLE.strip().splitlines():
    for _pair in _line.split("|"):
        _k, _v = _pair.split(" ")
        _CONTRACTIONS[_k] = _v


def process_punctuation(text: str) -> str:
    out = text
    has_number_comma = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCT:
        # the official test looks at the *original* text for every symbol
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def process_digit_article(text: str) -> str:
    words = []
    for w in text.lower().split():
        w = _NUMBER_WORDS.get(w, w)
        if w not in _ARTICLES:
            words.append(w)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


@lru_cache(maxsize=1 << 18)  # annotator answers repeat heavily ("yes", "2", ...)
def normalize_answer(answer: str) -> str:
    """The official VQA answer normalisation (see the module docstring)."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))
