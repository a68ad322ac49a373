"""The pairs and their TF-IDF caption index, built once and saved for the shards of a rewriting run.

``python -m preprocess.rewrite index --input PAIRS --output INDEX`` reads the pairs and fits the index once;
every shard then starts with ``--index INDEX`` instead of re-reading the pairs and re-fitting (measured in
``bench/bench_preprocess.py``: loading took 0.17 s where reading + fitting took 0.63 s for 20K captions, ~80 s vs
~300 s at 9.6M if linear; see the README). The folder holds
only numpy arrays and JSON (no pickle): strings as one UTF-8 blob plus offsets, the TF-IDF matrix as its CSR
arrays. Loading gives exactly the pairs and index a shard would build itself (same order, same float32 matrix).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from unimo.utils.io import atomic_directory

from .data_io import InputError, Pair, ReadReport, read_pairs
from .retrieval import CaptionIndex

FORMAT = "unimo-rewrite-index"
VERSION = 1
_FILES = frozenset({"meta.json", "strings.npz", "arrays.npz"})


def _pack(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = blob.tobytes()
    bounds = offsets.tolist()
    return [data[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]


def index_options(max_df: float | int, karpathy_splits: list[str] | None, skip_bad: bool) -> dict:
    """The reading/fitting options a saved index was made with (a run loading it must use the same)."""
    return {"tfidf_max_df": max_df, "karpathy_splits": karpathy_splits, "skip_bad": skip_bad}


def save_index(pairs_path: str, output: str, max_df: float | int = 1.0, karpathy_splits: list[str] | None = None,
               skip_bad: bool = False, overwrite: bool = False) -> dict:
    """Read ``pairs_path``, fit the caption index and save both in the folder ``output``; returns a summary."""
    out = Path(output)
    if out.exists():
        foreign = sorted(set(os.listdir(out)) - _FILES) if out.is_dir() else [out.name]
        if not overwrite or foreign:
            raise InputError(f"{out}: exists" + (f" and holds other files ({', '.join(foreign[:5])})" if foreign
                                                 else "; pass --overwrite to replace it"))
    pairs, report = read_pairs(pairs_path, skip_bad, karpathy_splits)
    index = CaptionIndex.build([p.image_id for p in pairs], [p.caption for p in pairs], tfidf=True, max_df=max_df)
    strings = {}
    for name, values in (("caption_id", [p.caption_id for p in pairs]), ("image_id", [p.image_id for p in pairs]),
                         ("caption", [p.caption for p in pairs]), ("texts", index.texts),
                         ("image_ids", index.image_ids)):
        strings[f"{name}_blob"], strings[f"{name}_offsets"] = _pack(values)
    X = index.X
    meta = {"format": FORMAT, "version": VERSION, "pairs": str(pairs_path), "num_pairs": len(pairs),
            "num_texts": len(index.texts), "options": index_options(max_df, karpathy_splits, skip_bad),
            "bad_input_skipped": report.bad, "bad_input_examples": report.examples,
            "tfidf_shape": list(X.shape)}
    with atomic_directory(out, _FILES) as tmp:
        np.savez(os.path.join(tmp, "strings.npz"), **strings)
        np.savez(os.path.join(tmp, "arrays.npz"), pair_doc=index.pair_doc, pair_image=index.pair_image,
                 data=X.data, indices=X.indices, indptr=X.indptr)
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1, ensure_ascii=False)
    return {"output": str(out), "pairs": len(pairs), "distinct_captions": len(index.texts),
            "images": len(index.image_ids), "tfidf_nnz": int(X.nnz), "bad_input_skipped": report.bad}


def load_index(path: str, options: dict) -> tuple[list[Pair], ReadReport, CaptionIndex, dict]:
    """Pairs, read report, fitted index and metadata of a saved index; ``options`` must be the ones it was made
    with (:func:`index_options`), else an :class:`InputError` naming the difference."""
    root = Path(path)
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{root}: not a saved rewrite index (no meta.json; make one with "
                         "python -m preprocess.rewrite index)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(f"{meta_path}: not a {FORMAT} v{VERSION} index")
    diff = sorted(k for k in options if json.dumps(meta["options"].get(k)) != json.dumps(options[k]))
    if diff:
        raise InputError(f"{root}: saved with other options than this run: "
                         + ", ".join(f"{k} {meta['options'].get(k)!r} (this run {options[k]!r})" for k in diff))
    with np.load(root / "strings.npz") as z:
        strings = {name: _unpack(z[f"{name}_blob"], z[f"{name}_offsets"])
                   for name in ("caption_id", "image_id", "caption", "texts", "image_ids")}
    with np.load(root / "arrays.npz") as z:
        pair_doc, pair_image = z["pair_doc"], z["pair_image"]
        X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(meta["tfidf_shape"]))
    if len(strings["caption_id"]) != meta["num_pairs"] or len(pair_doc) != meta["num_pairs"]:
        raise InputError(f"{root}: holds {len(pair_doc)} pairs, meta.json says {meta['num_pairs']} (damaged)")
    pairs = [Pair(i, c, t) for c, i, t in zip(strings["caption_id"], strings["image_id"], strings["caption"])]
    report = ReadReport(meta["bad_input_skipped"], list(meta["bad_input_examples"]))
    index = CaptionIndex.from_parts(strings["texts"], strings["image_ids"], pair_doc, pair_image, X)
    return pairs, report, index, meta
