"""An embedded "demo world": small rendered scenes with captions, VQA, SNLI-VE and a text corpus, written in the
real public file formats so every converter and reader of the project runs on it exactly as on real data.

    python -m preprocess.demo_world --output demo_data --seed 0 [--num-scenes 2000] [--image-size 128]

Each scene has 2-4 objects: 6 shapes x 6 colours x 2 sizes, placed without overlap on a lightly tinted, noisy
background; a (colour, shape) pair occurs at most once per scene, so "the red circle" always names one object.
Region features come from the weight-free ``classic`` extractor run on the saved JPEG (so re-running
``preprocess.extract_features --backend classic --image-id-regex '(\\d+)$'`` on ``images/`` reproduces them).
Class probabilities stand in for a detector's classifier: each region is matched to the rendered objects by IoU,
q = clip((IoU - 0.2) / 0.5, 0, 1); ``0.9 q`` of its mass goes to the matched shape's Visual Genome class, ``0.1 q``
is spread over the other demo shapes, ``1 - q`` goes to background (column 0 of the 1601-way BUTD class space).

Output folder (see the README.md written into it)::

    images/demo_<12-digit id>.jpg            rendered scenes (ids 1..N)
    features/demo_butd.tsv                   BUTD generate_tsv.py layout (image_id = the integer id)
    features/npz/demo_<12-digit id>.npz      UNITER layout (features, norm_bb, conf, soft_labels)
    features/store/                          canonical feature store (features, boxes, cls_prob, obj_conf)
    captions/dataset_coco.json               Karpathy COCO layout, 5 captions per image
    captions/dataset_flickr30k.json          Karpathy Flickr30k layout (retrieval), 5 other captions per image
    vqa/v2_OpenEnded_mscoco_{train,val}2014_questions.json, vqa/v2_mscoco_{train,val}2014_annotations.json
    snli_ve/snli_ve_{train,dev,test}.jsonl   SNLI-VE layout (Flickr30K_ID = the demo image id)
    corpus/text_corpus.txt                   text-only documents (scenes never rendered + generic sentences)
    corpus/image_only.txt                    ids of images with no text anywhere (image-only pre-training)
    README.md, manifest.json

Everything is a function of ``--seed`` (and the options): the same seed gives byte-identical JSON/text files.
The whole folder is built under a temporary name and renamed at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import unimo  # noqa: F401  (CPU environment; keeps entry points uniform)

import cv2
import numpy as np
from tqdm import tqdm

from preprocess.extractors import ExtractorError, box_iou
from preprocess.extractors.classic import ClassicExtractor
from unimo.reader.features import FeatureStore, FeatureStoreWriter, RegionFeatures, write_butd_tsv, \
    write_uniter_npz_dir

# ---------------------------------------------------------------------------------------------------------------
# The world's vocabulary
# ---------------------------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
# Column of each shape in the 1601-way BUTD/VG class space = 1-based line number in
# vg_1600_400_20/objects_vocab.txt (column 0 = background). VG has no "square" object; "box" stands in for it.
VG_OBJECT_WORD = {"circle": "circle", "square": "box", "triangle": "triangle", "star": "star", "heart": "heart",
                  "cross": "cross"}
VG_CLASS_INDEX = {"circle": 1115, "square": 720, "triangle": 918, "star": 1595, "heart": 1091, "cross": 849}
NUM_VG_CLASSES = 1601
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
COLOUR_BGR = {"red": (40, 40, 215), "green": (50, 170, 40), "blue": (210, 80, 30), "yellow": (30, 215, 235),
              "purple": (160, 40, 140), "orange": (20, 130, 245)}
SIZES = ("small", "large")
SIZE_RADIUS = {"small": 0.085, "large": 0.15}  # fraction of the image side
RELATIONS = ("left of", "right of", "above", "below")
# Bumped whenever the same seed stops giving the same files (script/prepare_demo_data.sh rebuilds older worlds).
# 2: centred classic features; SNLI-VE colour-attribute hypotheses.
WORLD_VERSION = 2
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
SPLIT_FRACTIONS = {"image_only": 0.10, "test": 0.10, "val": 0.10, "restval": 0.10}  # the rest is "train"

# VQA question types are prefixes from the official list (QuestionTypes/mscoco_question_types.txt)
VQA_TYPES = {"colour": ("what color is the", "other"), "shape": ("what", "other"), "count": ("how many", "number"),
             "exists": ("is there a", "yes/no"), "relation_yn": ("is the", "yes/no"),
             "relation_what": ("what is", "other")}

GENERIC_SENTENCES = (
    "A circle has no corners.", "A square has four equal sides and four corners.", "A triangle has three sides.",
    "A star usually has five points.", "A heart is a symbol of love.", "A cross is made of two crossing bars.",
    "Red, yellow and blue are primary colours.", "Orange is a mix of red and yellow.",
    "Purple is a mix of red and blue.", "Green is a mix of blue and yellow.",
    "Shapes can be drawn in many different colours.", "A small shape takes less space than a large one.",
    "Objects on the left appear first when we read a picture.", "Children often learn shapes and colours together.",
    "A drawing can show several shapes next to each other.", "Counting the shapes in a picture is a simple task.",
)
NEUTRAL_PREDICATES = ("is made of paper", "was drawn by a child", "is heavy", "is made of wood", "is moving",
                      "was drawn first", "is a sticker", "is cold to the touch")


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    angle: float  # degrees
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # pixel x1, y1, x2, y2 of the drawn shape

    def name(self, with_size: bool = False) -> str:
        return f"{self.size + ' ' if with_size else ''}{self.colour} {self.shape}"


@dataclass
class Scene:
    image_id: int
    split: str  # train / restval / val / test / image_only
    objects: list[SceneObject]
    background: tuple[int, int, int]
    gradient: float

    @property
    def file_name(self) -> str:
        return f"demo_{self.image_id:012d}.jpg"

    @property
    def stem(self) -> str:
        return f"demo_{self.image_id:012d}"


def relation(a: SceneObject, b: SceneObject) -> str:
    """Spatial relation of ``a`` to ``b`` along the dominant axis ("left of" = a's centre is further left)."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


# ---------------------------------------------------------------------------------------------------------------
# Scene sampling and rendering
# ---------------------------------------------------------------------------------------------------------------

def _unit_polygon(shape: str) -> np.ndarray | None:
    """Outline of a shape of radius ~1 centred at 0 (None for the circle, drawn with cv2.circle)."""
    if shape == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if shape == "triangle":
        a = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(a), np.sin(a) + 0.25], 1)  # shifted so the box is centred
    if shape == "star":
        a = np.deg2rad(np.arange(10) * 36 - 90)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a) + 0.1], 1)
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x / 17.0, (y + 2.5) / 17.0], 1)
    if shape == "cross":
        w = 0.32
        return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1], [-w, w], [-1, w],
                         [-1, -w], [-w, -w]])
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}")


_UNIT_POLYGONS = {s: _unit_polygon(s) for s in SHAPES}


def _outline(obj: SceneObject) -> np.ndarray | None:
    poly = _UNIT_POLYGONS[obj.shape]
    if poly is None:
        return None
    a = np.deg2rad(obj.angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return poly @ rot.T * obj.radius + np.array([obj.cx, obj.cy])


def sample_scene(rng: np.random.Generator, image_id: int, split: str, size: int) -> Scene:
    """2-4 non-overlapping objects with distinct (colour, shape) pairs."""
    n_target = int(rng.integers(2, 5))
    objects: list[SceneObject] = []
    used: set[tuple[str, str]] = set()
    attempts = 0
    while len(objects) < n_target and attempts < 200:
        attempts += 1
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        size_name = SIZES[int(rng.integers(len(SIZES)))]
        if (colour, shape) in used:
            continue
        r = SIZE_RADIUS[size_name] * size * float(rng.uniform(0.92, 1.08))
        margin = r + 0.03 * size
        cx, cy = rng.uniform(margin, size - margin, 2)
        # keep a gap so objects never touch (separate regions) and relations are unambiguous enough
        if any(math.hypot(cx - o.cx, cy - o.cy) < r + o.radius + 0.06 * size for o in objects):
            continue
        angle = 0.0 if shape == "circle" else float(rng.uniform(-20, 20))
        obj = SceneObject(shape, colour, size_name, float(cx), float(cy), float(r), angle)
        outline = _outline(obj)
        if outline is None:
            obj.box = (cx - r, cy - r, cx + r, cy + r)
        else:
            obj.box = (float(outline[:, 0].min()), float(outline[:, 1].min()), float(outline[:, 0].max()),
                       float(outline[:, 1].max()))
        objects.append(obj)
        used.add((colour, shape))
    base = int(rng.integers(185, 230))
    tint = rng.integers(-12, 13, 3)
    background = tuple(int(np.clip(base + t, 0, 255)) for t in tint)
    return Scene(image_id, split, objects, background, float(rng.uniform(-18, 18)))


def render(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """BGR uint8 image of a scene: tinted background with a vertical gradient and mild noise, shapes anti-aliased."""
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)[:, None, None] * scene.gradient
    img = np.broadcast_to(np.asarray(scene.background, np.float32) + ramp, (size, size, 3)).copy()
    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    shift = 4  # sub-pixel precision of the drawing calls
    for obj in scene.objects:
        colour = tuple(int(c) for c in COLOUR_BGR[obj.colour])
        outline = _outline(obj)
        if outline is None:
            cv2.circle(img, (round(obj.cx * (1 << shift)), round(obj.cy * (1 << shift))),
                       round(obj.radius * (1 << shift)), colour, -1, cv2.LINE_AA, shift)
        else:
            pts = np.round(outline * (1 << shift)).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, shift)
    return img


# ---------------------------------------------------------------------------------------------------------------
# Text: captions, questions, hypotheses, corpus
# ---------------------------------------------------------------------------------------------------------------

def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _relation_phrase(rel: str) -> str:
    return {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}[rel]


def _tokens(raw: str) -> list[str]:
    """Karpathy-style tokens: lower case words without punctuation."""
    return [t for t in "".join(c.lower() if c.isalnum() else " " for c in raw).split() if t]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def scene_sentences(scene: Scene, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` different sentences describing the scene (colours, shapes, sizes, relations, counts)."""
    objs = scene.objects
    n = len(objs)

    def nm(o: SceneObject) -> str:
        return o.name(with_size=bool(rng.random() < 0.4))

    def pair() -> tuple[SceneObject, SceneObject]:
        i, j = rng.choice(n, 2, replace=False)
        return objs[int(i)], objs[int(j)]

    templates = [
        lambda: f"{_list([_a(nm(o)) for o in objs])}.",
        lambda: (lambda a, b: f"{_a(nm(a))} {_relation_phrase(relation(a, b))} {_a(nm(b))}.")(*pair()),
        lambda: f"{NUMBER_WORDS[n]} shapes on a light background: {_list([_a(nm(o)) for o in objs])}.",
        lambda: (lambda a, b: f"the {nm(a)} is {_relation_phrase(relation(a, b))} the {nm(b)}.")(*pair()),
        lambda: f"a picture of {_list([_a(nm(o)) for o in rng.permutation(objs)])}.",
        lambda: (lambda a, b: f"there is {_a(nm(a))} {_relation_phrase(relation(a, b))} {_a(nm(b))} in the image.")(
            *pair()),
        lambda: f"{NUMBER_WORDS[n]} objects, including {_a(nm(objs[int(rng.integers(n))]))}.",
        lambda: (lambda o: f"{_a(o.size + ' ' + o.colour + ' ' + o.shape)} among {NUMBER_WORDS[n - 1]} other "
                           f"shape{'s' if n > 2 else ''}.")(objs[int(rng.integers(n))]),
    ]
    order = rng.permutation(len(templates))
    out: list[str] = []
    for k in order:
        s = _cap(templates[int(k)]())
        if s not in out:
            out.append(s)
        if len(out) == count:
            break
    return out


def _unique_phrase(scene: Scene, obj: SceneObject) -> str | None:
    """A phrase naming ``obj`` uniquely without its colour ("star", "small star"), or None."""
    if sum(o.shape == obj.shape for o in scene.objects) == 1:
        return obj.shape
    if sum(o.shape == obj.shape and o.size == obj.size for o in scene.objects) == 1:
        return f"{obj.size} {obj.shape}"
    return None


def _noisy_answers(rng: np.random.Generator, answer: str, alternatives: Sequence[str]) -> list[dict]:
    """10 human answers: mostly the truth, 0-3 plausible wrong ones (VQA annotators disagree a little)."""
    n_noise = int(rng.choice([0, 0, 0, 1, 1, 2, 3]))
    answers = [answer] * 10
    wrong = [a for a in alternatives if a != answer]
    for pos in rng.choice(10, n_noise, replace=False):
        answers[int(pos)] = wrong[int(rng.integers(len(wrong)))]
    out = []
    for i, a in enumerate(answers):
        conf = "yes" if a == answer and rng.random() < 0.85 else ("maybe" if rng.random() < 0.7 else "no")
        out.append({"answer": a, "answer_confidence": conf, "answer_id": i + 1})
    return out


def scene_questions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(kind, question, answer) for one scene: colour, shape, count, existence and relation questions."""
    objs = scene.objects
    qs: list[tuple[str, str, str]] = []
    # colour: about an object nameable without its colour (else the answer would be in the question)
    nameable = [(o, p) for o in objs if (p := _unique_phrase(scene, o)) is not None]
    if nameable:
        o, phrase = nameable[int(rng.integers(len(nameable)))]
        qs.append(("colour", f"What color is the {phrase}?", o.colour))
    o = objs[int(rng.integers(len(objs)))]
    same_colour = [x for x in objs if x.colour == o.colour]
    phrase = f"{o.colour} object" if len(same_colour) == 1 else f"{o.size} {o.colour} object"
    if len([x for x in objs if x.colour == o.colour and (len(same_colour) == 1 or x.size == o.size)]) == 1:
        qs.append(("shape", f"What shape is the {phrase}?", o.shape))
    if rng.random() < 0.5:
        qs.append(("count", "How many shapes are there?", str(len(objs))))
    else:
        # sometimes a shape that may be absent (answer 0), mostly one in the scene
        if rng.random() < 0.4:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
        else:
            shape = objs[int(rng.integers(len(objs)))].shape
        qs.append(("count", f"How many {shape}s are there?", str(sum(x.shape == shape for x in objs))))
    if rng.random() < 0.5:
        o = objs[int(rng.integers(len(objs)))]
        qs.append(("exists", f"Is there a {o.colour} {o.shape}?", "yes"))
    else:
        present = {(x.colour, x.shape) for x in objs}
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        c, s = absent[int(rng.integers(len(absent)))]
        qs.append(("exists", f"Is there a {c} {s}?", "no"))
    i, j = (int(v) for v in rng.choice(len(objs), 2, replace=False))
    a, b = objs[i], objs[j]
    rel = relation(a, b)
    asked = rel if rng.random() < 0.5 else RELATIONS[int(rng.integers(len(RELATIONS)))]
    qs.append(("relation_yn", f"Is the {a.name()} {_relation_phrase(asked)} the {b.name()}?",
               "yes" if asked == rel else "no"))
    # "what is <rel> the X": only when exactly one object stands in that relation to X
    b = objs[int(rng.integers(len(objs)))]
    by_rel: dict[str, list[SceneObject]] = {}
    for x in objs:
        if x is not b:
            by_rel.setdefault(relation(x, b), []).append(x)
    unique = [(r, xs[0]) for r, xs in sorted(by_rel.items()) if len(xs) == 1]
    if unique:
        r, x = unique[int(rng.integers(len(unique)))]
        qs.append(("relation_what", f"What is {_relation_phrase(r)} the {b.name()}?", x.shape))
    return qs


def _answer_space(kind: str) -> Sequence[str]:
    if kind == "colour":
        return COLOURS
    if kind in ("shape", "relation_what"):
        return SHAPES
    if kind == "count":
        return ("0", "1", "2", "3", "4")
    return ("yes", "no")


def scene_hypotheses(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(hypothesis, gold_label): one entailment, one neutral, one contradiction. Entailment and contradiction differ
    only in what the image decides (a relation, a colour, a count), so they cannot be told apart from the text."""
    objs = scene.objects
    o = objs[int(rng.integers(len(objs)))]
    n = len(objs)
    present = {(x.colour, x.shape) for x in objs}
    kind = rng.random()
    single = [x for x in objs if sum(y.shape == x.shape for y in objs) == 1]  # "the heart" names one object
    if kind < 0.3 and n >= 2:
        i, j = (int(v) for v in rng.choice(n, 2, replace=False))
        a, b = objs[i], objs[j]
        ent = f"The {a.name()} is {_relation_phrase(relation(a, b))} the {b.name()}."
        opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        con = f"The {a.name()} is {_relation_phrase(opposite[relation(a, b)])} the {b.name()}."
    elif kind < 0.6 and single:
        x = single[int(rng.integers(len(single)))]
        wrong = [c for c in COLOURS if c != x.colour]
        ent = f"The {x.shape} is {x.colour}."
        con = f"The {x.shape} is {wrong[int(rng.integers(len(wrong)))]}."
    elif kind < 0.8:
        ent = f"There is {_a(o.name())} in the picture."
        wrong = [c for c in COLOURS if (c, o.shape) not in present]
        con = f"There is {_a(wrong[int(rng.integers(len(wrong)))] + ' ' + o.shape)} in the picture."
    else:
        ent = f"There are {NUMBER_WORDS[n]} shapes."
        other = [k for k in NUMBER_WORDS if k != n]
        con = f"There are {NUMBER_WORDS[other[int(rng.integers(len(other)))]]} shapes."
    neu = f"The {o.name()} {NEUTRAL_PREDICATES[int(rng.integers(len(NEUTRAL_PREDICATES)))]}."
    return [(ent, "entailment"), (neu, "neutral"), (con, "contradiction")]


# ---------------------------------------------------------------------------------------------------------------
# Region labels (the stand-in for a detector's classifier)
# ---------------------------------------------------------------------------------------------------------------

def label_confidence(iou: np.ndarray) -> np.ndarray:
    """How sure the stand-in classifier is that a region shows the object it overlaps: 0 up to IoU 0.2, rising
    linearly to 1 at IoU 0.7 (a detector names a box well aligned with an object, not a loose or group box)."""
    return np.clip((np.asarray(iou, dtype=np.float64) - 0.2) / 0.5, 0.0, 1.0)


def soft_labels(boxes: np.ndarray, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """[N, 1601] class probabilities and [N] matched object index (-1 when no overlap) for extracted boxes.

    With q = label_confidence(IoU with the best-overlapping object): 0.9 q on that object's VG class, 0.1 q spread
    over the other demo shapes, 1 - q on background (column 0). The class wins the argmax from IoU ~0.46 on.
    """
    gt = np.asarray([o.box for o in scene.objects], dtype=np.float64)
    iou = box_iou(boxes, gt)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(boxes)), best]
    conf = label_confidence(best_iou)
    probs = np.zeros((len(boxes), NUM_VG_CLASSES), dtype=np.float32)
    columns = np.array([VG_CLASS_INDEX[s] for s in SHAPES])
    for i, (j, q) in enumerate(zip(best, conf)):
        probs[i, 0] = 1.0 - q
        if q <= 0:
            continue
        cls = VG_CLASS_INDEX[scene.objects[int(j)].shape]
        rest = columns[columns != cls]
        probs[i, rest] = 0.1 * q / len(rest)
        probs[i, cls] = 0.9 * q
    matched = np.where(best_iou > 0, best, -1)
    return probs, matched


# ---------------------------------------------------------------------------------------------------------------
# Builders of the public files
# ---------------------------------------------------------------------------------------------------------------

def _karpathy(scenes: list[Scene], captions: dict[int, list[str]], dataset: str) -> dict:
    images, sentid = [], 0
    for imgid, scene in enumerate(scenes):
        sents, ids = [], []
        for raw in captions[scene.image_id]:
            sents.append({"tokens": _tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentid})
            ids.append(sentid)
            sentid += 1
        entry = {"filepath": "images", "sentids": ids, "filename": scene.file_name, "imgid": imgid,
                 "split": scene.split, "sentences": sents, "cocoid": scene.image_id}
        if dataset == "flickr30k":
            # Flickr30k's release has no restval split. Its file name stem is the image id there; ours is not, so
            # the entries keep COCO's "cocoid" (converters: --image-id-from cocoid) alongside the real keys.
            entry["split"] = "train" if scene.split == "restval" else scene.split
        images.append(entry)
    return {"images": images, "dataset": dataset}


def _vqa_files(scenes: list[Scene], rng: np.random.Generator) -> dict[str, tuple[dict, dict]]:
    info = {"description": "UNIMO demo world (synthetic shapes), VQA v2 layout", "version": "1.0"}
    licence = {"name": "same as the project (Apache-2.0)", "url": ""}
    out = {}
    for subtype, splits in (("train2014", ("train", "restval")), ("val2014", ("val", "test"))):
        questions, annotations = [], []
        for scene in scenes:
            if scene.split not in splits:
                continue
            for k, (kind, question, answer) in enumerate(scene_questions(scene, rng)):
                qid = scene.image_id * 1000 + k  # VQA v2 numbers questions image_id * 1000 + k
                qtype, atype = VQA_TYPES[kind]
                questions.append({"image_id": scene.image_id, "question": question, "question_id": qid})
                answers = _noisy_answers(rng, answer, _answer_space(kind))
                majority = Counter(a["answer"] for a in answers).most_common(1)[0][0]
                annotations.append({"question_type": qtype, "multiple_choice_answer": majority, "answers": answers,
                                    "image_id": scene.image_id, "answer_type": atype, "question_id": qid})
        q = {"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": licence,
             "data_subtype": subtype, "questions": questions}
        a = {"info": info, "license": licence, "data_subtype": subtype, "annotations": annotations,
             "data_type": "mscoco"}
        out[subtype] = (q, a)
    return out


def _snli_ve(scenes: list[Scene], captions: dict[int, list[str]], rng: np.random.Generator) -> dict[str, list[dict]]:
    split_map = {"train": "train", "restval": "train", "val": "dev", "test": "test"}
    letter = {"entailment": "e", "neutral": "n", "contradiction": "c"}
    out: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for scene in scenes:
        for k in rng.choice(len(captions[scene.image_id]), 2, replace=False):
            caption_id = f"{scene.file_name}#{int(k)}"
            for hyp, label in scene_hypotheses(scene, rng):
                out[split_map[scene.split]].append({
                    "Flickr30K_ID": str(scene.image_id), "annotator_labels": [label], "captionID": caption_id,
                    "gold_label": label, "pairID": f"{caption_id}r1{letter[label]}",
                    "sentence1": captions[scene.image_id][int(k)], "sentence2": hyp})
    return out


def _text_corpus(rng: np.random.Generator, n_docs: int, size: int) -> list[str]:
    """Documents about scenes that are never rendered, interleaved with generic sentences about shapes."""
    docs = []
    for i in range(n_docs):
        if i % 5 == 4:
            pick = rng.choice(len(GENERIC_SENTENCES), 3, replace=False)
            docs.append(" ".join(GENERIC_SENTENCES[int(k)] for k in pick))
            continue
        scene = sample_scene(rng, 0, "text", size)
        docs.append(" ".join(scene_sentences(scene, rng, int(rng.integers(2, 5)))))
    return docs


README = """# UNIMO demo world (seed {seed})

Synthetic scenes of coloured shapes, written in the real public file formats so the project's converters and
readers run on them exactly as on COCO / VQA / SNLI-VE / Flickr30k. Built by
`python -m preprocess.demo_world --output DIR --seed {seed} --num-scenes {num_scenes} --image-size {image_size}`.

Scenes: 2-4 objects; shapes {shapes}; colours {colours}; sizes small/large; relations left of / right of /
above / below (the dominant axis between object centres). Image ids are 1..{num_scenes}; the file of id 123 is
`images/demo_000000000123.jpg`. Rule that recovers the id from any file name here: the digits after the last `_`.

| path | what it is |
|---|---|
| `images/` | {image_size}x{image_size} JPEG scenes (COCO-like names `demo_<12-digit id>.jpg`) |
| `features/demo_butd.tsv` | BUTD `generate_tsv.py` layout: `image_id, image_w, image_h, num_boxes, boxes, features` (base64 float32, {feature_dim}-d, image_id = the integer id) |
| `features/npz/` | UNITER layout, one `demo_<12-digit id>.npz` per image: `features`, `norm_bb`, `conf`, `soft_labels` (1601-way); read with `--image-id-regex '(\\d+)$'` |
| `features/store/` | the project's canonical feature store (features, boxes, cls_prob, obj_conf), keyed by the integer id |
| `captions/dataset_coco.json` | Karpathy COCO layout, 5 captions per image, splits train/restval/val/test |
| `captions/dataset_flickr30k.json` | Karpathy Flickr30k layout (retrieval), 5 other captions per image, splits train/val/test; it also keeps COCO's `cocoid`/`filepath` keys because the demo file names are not the ids (convert with `--image-id-from cocoid` so ids match the features) |
| `vqa/v2_OpenEnded_mscoco_{{train,val}}2014_questions.json`, `vqa/v2_mscoco_{{train,val}}2014_annotations.json` | VQA v2 layout: colour, shape, count, yes/no and relation questions, 10 answers each (a few noisy); train2014 = Karpathy train+restval images, val2014 = val+test |
| `snli_ve/snli_ve_{{train,dev,test}}.jsonl` | SNLI-VE layout (`Flickr30K_ID` = the demo image id as a string, `sentence1` a Flickr30k-file caption, `sentence2` the hypothesis, `gold_label`); parse-tree fields of the real release are omitted |
| `corpus/text_corpus.txt` | text-only corpus: one document per line about scenes that were never rendered, plus generic sentences |
| `corpus/image_only.txt` | ids of the images that have no text anywhere (image-only pre-training data) |
| `manifest.json` | seed, options, counts, paths |

Region features come from the weight-free `classic` extractor (OpenCV proposals + colour/shape/size/position/texture
descriptors, random projection seed {projection_seed}), run on the saved JPEGs. Class probabilities stand in for a
detector's classifier: a region whose best IoU with a rendered object is v gets, with q = clip((v - 0.2) / 0.5, 0, 1),
0.9 q on that shape's Visual Genome class, 0.1 q spread over the other demo shapes and 1 - q on background
(column 0). `obj_conf` is the largest non-background probability, as for the BUTD detector. Class columns are
1-based line numbers of `vg_1600_400_20/objects_vocab.txt`: {vg_classes}. VG has no "square" object; "box"
stands in for it.
"""


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _assign_splits(rng: np.random.Generator, n: int) -> list[str]:
    order = rng.permutation(n)
    splits = ["train"] * n
    start = 0
    for name, frac in SPLIT_FRACTIONS.items():
        count = int(round(frac * n))
        for idx in order[start:start + count]:
            splits[int(idx)] = name
        start += count
    return splits


def build_demo_world(out: str | os.PathLike, seed: int = 0, num_scenes: int = 2000, image_size: int = 128,
                     feature_dim: int = 2048, max_boxes: int = 36, min_boxes: int = 10, jpeg_quality: int = 92,
                     overwrite: bool = False, progress: bool = True) -> dict:
    """Build the demo world folder ``out``; returns the manifest plus timings."""
    if num_scenes < 10:
        raise ValueError(f"--num-scenes must be >= 10 (every split needs images), got {num_scenes}")
    if image_size < 64:
        raise ValueError(f"--image-size must be >= 64, got {image_size}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg quality must be in 1..100, got {jpeg_quality}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    if out.exists():
        _check_replaceable(out)
    t_start, c_start = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    # independent streams, so e.g. changing the question templates never changes the images
    streams = np.random.SeedSequence(seed).spawn(7)
    rng_scene, rng_pix, rng_cap, rng_flk, rng_vqa, rng_ve, rng_txt = (np.random.default_rng(s) for s in streams)
    splits = _assign_splits(rng_scene, num_scenes)
    scenes = [sample_scene(rng_scene, i + 1, splits[i], image_size) for i in range(num_scenes)]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        (tmp / "images").mkdir()
        (tmp / "features").mkdir()
        extractor = ClassicExtractor(feature_dim=feature_dim, max_boxes=max_boxes, min_boxes=min_boxes)
        t0, c0 = time.perf_counter(), time.process_time()
        t_extract = 0.0
        n_boxes = 0
        matched_objects = 0
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        with FeatureStoreWriter(tmp / "features" / "store", feature_dim=feature_dim,
                                num_classes=NUM_VG_CLASSES) as writer:
            for scene in tqdm(scenes, desc="render+extract", unit="scene", disable=not progress, file=sys.stderr):
                ok, enc = cv2.imencode(".jpg", render(scene, image_size, rng_pix), params)
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for scene {scene.image_id}")
                enc.tofile(str(tmp / "images" / scene.file_name))
                image = cv2.imdecode(enc, cv2.IMREAD_COLOR)  # features from the JPEG a user would read back
                t1 = time.process_time()
                regions = extractor.extract(image)
                t_extract += time.process_time() - t1
                probs, matched = soft_labels(regions.boxes, scene)
                # best-overlapping box per object: IoU > 0.5 counts as "found" (reported in the manifest)
                iou = box_iou(np.asarray([o.box for o in scene.objects]), regions.boxes)
                matched_objects += int((iou.max(axis=1) > 0.5).sum())
                writer.add(RegionFeatures(str(scene.image_id), image_size, image_size, regions.boxes,
                                          regions.features, cls_prob=probs, obj_conf=probs[:, 1:].max(axis=1)))
                n_boxes += len(regions)
        timings["render_extract_s"] = time.perf_counter() - t0
        timings["render_extract_cpu_s"] = time.process_time() - c0
        timings["extract_only_cpu_s"] = t_extract

        t0, c0 = time.perf_counter(), time.process_time()
        store = FeatureStore.open(tmp / "features" / "store")
        ids = [str(s.image_id) for s in scenes]
        write_butd_tsv(tmp / "features" / "demo_butd.tsv", (store[i] for i in ids))
        # UNITER names files by image (coco_train2014_000000xxxxxx.npz); compressed like the BUTD docker's dumps
        write_uniter_npz_dir(tmp / "features" / "npz", (dataclasses.replace(store[str(s.image_id)], image_id=s.stem)
                                                         for s in scenes), compressed=True)
        store.close()
        timings["feature_files_s"] = time.perf_counter() - t0
        timings["feature_files_cpu_s"] = time.process_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        text_scenes = [s for s in scenes if s.split != "image_only"]
        captions = {s.image_id: scene_sentences(s, rng_cap, 5) for s in text_scenes}
        flickr_captions = {s.image_id: scene_sentences(s, rng_flk, 5) for s in text_scenes}
        files: dict[str, bytes] = {
            "captions/dataset_coco.json": _json_bytes(_karpathy(text_scenes, captions, "coco")),
            "captions/dataset_flickr30k.json": _json_bytes(_karpathy(text_scenes, flickr_captions, "flickr30k")),
        }
        vqa = _vqa_files(text_scenes, rng_vqa)
        for subtype, (q, a) in vqa.items():
            files[f"vqa/v2_OpenEnded_mscoco_{subtype}_questions.json"] = _json_bytes(q)
            files[f"vqa/v2_mscoco_{subtype}_annotations.json"] = _json_bytes(a)
        ve = _snli_ve(text_scenes, flickr_captions, rng_ve)
        for split, rows in ve.items():
            files[f"snli_ve/snli_ve_{split}.jsonl"] = "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        corpus = _text_corpus(rng_txt, num_scenes, image_size)
        files["corpus/text_corpus.txt"] = ("\n".join(corpus) + "\n").encode("utf-8")
        image_only = [s.image_id for s in scenes if s.split == "image_only"]
        files["corpus/image_only.txt"] = "".join(f"{i}\n" for i in image_only).encode("utf-8")
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        timings["text_files_s"] = time.perf_counter() - t0
        timings["text_files_cpu_s"] = time.process_time() - c0

        split_counts = Counter(s.split for s in scenes)
        n_objects = sum(len(s.objects) for s in scenes)
        manifest = {
            "name": "unimo-demo-world", "version": WORLD_VERSION, "seed": seed,
            "options": {"num_scenes": num_scenes, "image_size": image_size, "feature_dim": feature_dim,
                        "max_boxes": max_boxes, "min_boxes": min_boxes, "jpeg_quality": jpeg_quality},
            "extractor": extractor.describe(),
            "vocabulary": {"shapes": list(SHAPES), "colours": list(COLOURS), "sizes": list(SIZES),
                           "relations": list(RELATIONS), "vg_class_index": VG_CLASS_INDEX,
                           "vg_object_word": VG_OBJECT_WORD},
            "counts": {
                "images": num_scenes, "objects": n_objects, "regions": n_boxes,
                "objects_with_region_iou_gt_0.5": matched_objects,
                "splits": {k: split_counts.get(k, 0) for k in ("train", "restval", "val", "test", "image_only")},
                "captions_coco": 5 * len(text_scenes), "captions_flickr30k": 5 * len(text_scenes),
                "vqa_questions": {k: len(q["questions"]) for k, (q, _) in vqa.items()},
                "snli_ve_pairs": {k: len(v) for k, v in ve.items()},
                "text_corpus_documents": len(corpus), "image_only": len(image_only),
            },
            "paths": {"images": "images", "butd_tsv": "features/demo_butd.tsv", "uniter_npz": "features/npz",
                      "feature_store": "features/store", **{Path(k).stem: k for k in sorted(files)}},
            "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(README.format(
            seed=seed, num_scenes=num_scenes, image_size=image_size, feature_dim=feature_dim,
            shapes=", ".join(SHAPES), colours=", ".join(COLOURS),
            projection_seed=extractor.describe()["projection_seed"],
            vg_classes=", ".join(f"{s} -> {VG_CLASS_INDEX[s]} ({VG_OBJECT_WORD[s]})" for s in SHAPES)),
            encoding="utf-8")
        if out.exists():
            foreign = sorted(_relative_files(out) - _relative_files(tmp))
            if foreign:  # --overwrite replaces a demo world, never files the generator did not write
                raise FileExistsError(f"{out} holds files a demo world does not have ({', '.join(foreign[:5])}"
                                      f"{', ...' if len(foreign) > 5 else ''}); refusing to overwrite it: move them "
                                      "away or choose another --out")
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total_s"] = time.perf_counter() - t_start
    timings["total_cpu_s"] = time.process_time() - c_start
    return {"out": str(out), **manifest, "timings": {k: round(v, 3) for k, v in timings.items()}}


def _relative_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def _check_replaceable(out: Path) -> None:
    """``--overwrite`` replaces only a demo world: a folder with its manifest (checked again, file by file, before
    the old world is removed)."""
    try:
        name = json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    if not out.is_dir() or name != "unimo-demo-world":
        raise FileExistsError(f"{out} exists and is not a demo world (no manifest.json naming unimo-demo-world); "
                              "refusing to overwrite it: choose another --out")


def iter_scene_specs(seed: int, num_scenes: int, image_size: int = 128) -> Iterator[Scene]:
    """The scenes (objects, boxes, splits) a build with these options renders, without rendering anything."""
    streams = np.random.SeedSequence(seed).spawn(7)
    rng = np.random.default_rng(streams[0])
    splits = _assign_splits(rng, num_scenes)
    for i in range(num_scenes):
        yield sample_scene(rng, i + 1, splits[i], image_size)


def build_parser() -> argparse.ArgumentParser:
    from unimo.utils.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m preprocess.demo_world", description=__doc__.split("\n")[0],
                                epilog="Exit status: 0 ok, 2 bad input or usage (one error line), 1 internal error. "
                                       "--out is the old spelling of --output.", formatter_class=HelpFormatter)
    p.add_argument("--output", "--out", dest="output", required=True,
                   help="output folder (created; must not exist unless --overwrite)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene sampler (same seed, same world)")
    p.add_argument("--num-scenes", type=int, default=2000, help="scenes (= images) to render")
    p.add_argument("--image-size", type=int, default=128, help="side of the square images in pixels")
    p.add_argument("--feature-dim", type=int, default=2048, help="region feature size of the store")
    p.add_argument("--max-boxes", type=int, default=36, help="most regions per image")
    p.add_argument("--min-boxes", type=int, default=10, help="fewest regions per image")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        result = build_demo_world(args.output, seed=args.seed, num_scenes=args.num_scenes, image_size=args.image_size,
                                  feature_dim=args.feature_dim, max_boxes=args.max_boxes, min_boxes=args.min_boxes,
                                  overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, OSError, ExtractorError) as err:  # bad input; a bug's traceback exits 1
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = {k: result[k] for k in ("out", "seed", "counts", "timings")}
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
