"""Grounding of generated captions in a scene's ground truth (the demo world: coloured shapes).

CIDEr-D rewards a caption that gets the colours right and the shapes wrong ("a green cross and a green cross" for a
green star and a green heart) almost as much as a right one; these counts say directly whether the shapes and the
colour-shape pairs a caption names are in the scene.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence


def _words_pattern(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def shape_mentions(captions: Mapping[str, str], scenes: Mapping[str, Sequence[tuple[str, str]]],
                   shapes: Sequence[str], colours: Sequence[str]) -> dict[str, float | int]:
    """Counts over ``captions`` ({image id: text}) against ``scenes`` ({image id: [(colour, shape), ...]}).

    A shape noun is a word of ``shapes`` (plural ``-s`` allowed), case-insensitive; a colour-shape pair is a colour
    word directly before a shape noun ("a small red circle": the size comes first). Returns

    * ``shape_precision``: fraction of the generated shape nouns whose shape is in the image's scene;
    * ``pair_precision``: fraction of the generated colour-shape pairs that are an object of the scene;
    * ``captions_shapes_right``: fraction of captions that name at least one shape and only shapes of the scene;
    * ``shape_recall``: mean over captions of the fraction of the scene's distinct shapes the caption names;
    * the counts (``shape_nouns``, ``pairs``, ``captions``).

    Every captioned image must have a scene (``KeyError`` otherwise); no caption -> ``ValueError``.
    """
    if not captions:
        raise ValueError("no captions")
    shape_re = re.compile(rf"\b({_words_pattern(shapes)})s?\b", re.IGNORECASE)
    pair_re = re.compile(rf"\b({_words_pattern(colours)})\s+({_words_pattern(shapes)})s?\b", re.IGNORECASE)
    nouns = nouns_ok = pairs = pairs_ok = right = 0
    recall = 0.0
    for image_id, text in captions.items():
        if image_id not in scenes:
            raise KeyError(f"image {image_id!r} has no ground-truth scene")
        objects = {(c.lower(), s.lower()) for c, s in scenes[image_id]}
        scene_shapes = {s for _, s in objects}
        named = [m.group(1).lower() for m in shape_re.finditer(text)]
        ok = [s for s in named if s in scene_shapes]
        nouns += len(named)
        nouns_ok += len(ok)
        right += int(bool(named) and len(ok) == len(named))
        recall += len(set(named) & scene_shapes) / max(1, len(scene_shapes))
        for m in pair_re.finditer(text):
            pairs += 1
            pairs_ok += int((m.group(1).lower(), m.group(2).lower()) in objects)
    n = len(captions)
    return {"shape_precision": nouns_ok / nouns if nouns else 0.0,
            "pair_precision": pairs_ok / pairs if pairs else 0.0,
            "captions_shapes_right": right / n, "shape_recall": recall / n,
            "shape_nouns": nouns, "pairs": pairs, "captions": n}
