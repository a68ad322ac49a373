"""Karpathy-split caption files (``dataset_coco.json``, ``dataset_flickr30k.json``) -> captioning / retrieval JSONL.

Input layout (Karpathy's release): {"images": [{"filename", "filepath"?, "split": train|val|test|restval,
"cocoid"? (COCO), "imgid", "sentences": [{"raw", "tokens", "sentid", "imgid"}], "sentids"}], "dataset"}.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Any

from tqdm import tqdm

from .common import AtomicOutputs, DataError, IssueLog, UsageError, check_kept, clean_text, load_json, make_summary

SPLITS = ("train", "val", "test", "restval")
IMAGE_ID_SOURCES = ("cocoid", "stem", "filename", "imgid")


def _image_id(img: dict, source: str, path: str, where: str) -> str:
    if source == "cocoid":
        v = img.get("cocoid")
        if isinstance(v, bool) or not isinstance(v, (int, str)) or str(v).strip() == "":
            raise DataError(path, where, "cocoid", f"missing or not an id: {v!r}", "bad_id")
        return str(v)
    if source == "imgid":
        v = img.get("imgid")
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataError(path, where, "imgid", f"missing or not an int: {v!r}", "bad_id")
        return str(v)
    name = img.get("filename")
    if not isinstance(name, str) or not name.strip():
        raise DataError(path, where, "filename", f"missing or empty: {name!r}", "bad_id")
    return os.path.splitext(name)[0] if source == "stem" else name


def _iter_karpathy(path: str, log: IssueLog, stats: Counter, image_id_from: str, text: str, restval: str,
                   progress: bool):
    """Yield (image_id, split, [(sentid, caption)]) per valid image, reporting bad images/captions to ``log``."""
    if image_id_from not in IMAGE_ID_SOURCES:
        raise UsageError(f"image_id_from must be one of {IMAGE_ID_SOURCES}, got {image_id_from!r}")
    if text not in ("raw", "tokens"):
        raise UsageError(f"text must be 'raw' or 'tokens', got {text!r}")
    if restval not in ("train", "separate"):
        raise UsageError(f"restval must be 'train' or 'separate', got {restval!r}")
    data = load_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(path, None, "images", "expected a top-level object with an 'images' list "
                        "(Karpathy's dataset_*.json)", "bad_layout")
    seen_images: set[str] = set()
    seen_sents: set[Any] = set()
    for i, img in enumerate(tqdm(images, desc=os.path.basename(path), disable=not progress, leave=False)):
        where = f"images[{i}]"
        try:
            if not isinstance(img, dict):
                raise DataError(path, where, None, "expected an object", "bad_type")
            split = img.get("split")
            if split not in SPLITS:
                raise DataError(path, where, "split", f"expected one of {SPLITS}, got {split!r}", "bad_split")
            if split == "restval" and restval == "train":
                split = "train"  # Karpathy's convention: restval images are extra training data
            image_id = _image_id(img, image_id_from, path, where)
            if image_id in seen_images:
                raise DataError(path, where, image_id_from, f"duplicate image id {image_id}", "duplicate")
            sents = img.get("sentences")
            if not isinstance(sents, list) or not sents:
                raise DataError(path, where, "sentences", "missing or empty list", "no_captions")
        except DataError as err:
            log.report(err)
            continue
        caps = []
        for j, s in enumerate(sents):
            swhere = f"{where}.sentences[{j}]"
            try:
                if not isinstance(s, dict):
                    raise DataError(path, swhere, None, "expected an object", "bad_type")
                sid = s.get("sentid")
                if isinstance(sid, bool) or not isinstance(sid, int):
                    raise DataError(path, swhere, "sentid", f"missing or not an int: {sid!r}", "bad_id")
                if sid in seen_sents:
                    raise DataError(path, swhere, "sentid", f"duplicate sentence id {sid}", "duplicate")
                if text == "raw":
                    cap = s.get("raw")
                    if not isinstance(cap, str):
                        raise DataError(path, swhere, "raw", f"missing or not a string: {cap!r:.60}", "bad_type")
                else:
                    toks = s.get("tokens")
                    if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
                        raise DataError(path, swhere, "tokens", "missing or not a list of strings", "bad_type")
                    cap = " ".join(toks)
                cap = clean_text(cap)
                if not cap:
                    raise DataError(path, swhere, text, "empty caption", "empty_text")
            except DataError as err:
                log.report(err)
                continue
            seen_sents.add(sid)
            caps.append((sid, cap))
        if not caps:  # every caption of the image was bad; they are counted already, the image goes with them
            stats["images_without_valid_captions"] += 1
            continue
        seen_images.add(image_id)
        yield image_id, split, caps


def convert_coco_karpathy(input: str, output_dir: str, skip_bad: bool = False, progress: bool = True,
                          restval: str = "train", text: str = "raw", image_id_from: str = "cocoid",
                          overwrite: bool = False) -> dict:
    """``dataset_coco.json`` -> ``captions_{split}.jsonl`` (one line per caption) + ``captions_{split}_refs.json``.

    Example: {"image_id": str, "caption", "caption_id": sentid, "split"}. The refs file is in the COCO annotation
    format pycocoevalcap reads. ``restval="train"`` merges restval into train (default); "separate" writes a
    restval split. ``text="tokens"`` uses Karpathy's lowercased tokens joined by spaces instead of the raw caption.
    """
    log = IssueLog(skip_bad)
    stats: Counter[str] = Counter()
    per_split: dict[str, list] = defaultdict(list)
    with AtomicOutputs(output_dir, overwrite) as out:
        for image_id, split, caps in _iter_karpathy(input, log, stats, image_id_from, text, restval, progress):
            w = out.jsonl(f"captions_{split}.jsonl")
            for sid, cap in caps:
                w.write({"image_id": image_id, "caption": cap, "caption_id": sid, "split": split})
            per_split[split].append((image_id, caps))
        check_kept(input, "any split", sum(len(caps) for items in per_split.values() for _, caps in items), log,
                   Counter(), out)
        for split, items in sorted(per_split.items()):
            out.json(f"captions_{split}_refs.json", {
                "info": {"description": f"references of the {split} split, from {os.path.basename(input)}"},
                "licenses": [], "type": "captions",
                "images": [{"id": image_id} for image_id, _ in items],
                "annotations": [{"image_id": image_id, "caption": cap, "id": sid}
                                for image_id, caps in items for sid, cap in caps]})
    return make_summary("coco-karpathy", [input], out, log,
                        images={s: len(v) for s, v in sorted(per_split.items())},
                        captions={s: sum(len(c) for _, c in v) for s, v in sorted(per_split.items())},
                        **dict(stats))


def convert_flickr30k(input: str, output_dir: str, skip_bad: bool = False, progress: bool = True,
                      restval: str = "train", text: str = "raw", image_id_from: str = "stem",
                      overwrite: bool = False) -> dict:
    """``dataset_flickr30k.json`` -> ``retrieval_{split}.jsonl``: {"image_id", "captions": [...], "split"}.

    The image id defaults to the file name without extension ("1000092795"), the key the feature files use.
    """
    log = IssueLog(skip_bad)
    stats: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    with AtomicOutputs(output_dir, overwrite) as out:
        for image_id, split, caps in _iter_karpathy(input, log, stats, image_id_from, text, restval, progress):
            out.jsonl(f"retrieval_{split}.jsonl").write(
                {"image_id": image_id, "captions": [c for _, c in caps], "split": split})
            counts[split] += 1
        check_kept(input, "any split", sum(counts.values()), log, Counter(), out)
    return make_summary("flickr30k", [input], out, log, images=dict(sorted(counts.items())), **dict(stats))
