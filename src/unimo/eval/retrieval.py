"""Image-text retrieval recall as the official UNIMO ``recall_at_k`` (``src/eval/img_eval.py``) reports it.

Input: a score matrix ``[num_captions, num_images]`` (every caption scored against every image) and, for each
caption, the column of its ground-truth image.

* image retrieval (caption -> image, ``img_*``): rank of the caption's image among all images;
* text retrieval (image -> caption, ``cap_*``): for each image, the best rank among all its ground-truth captions
  (an image has ~5);
* ``recall@K`` = fraction with rank < K, ``avg_rank`` = mean 1-based rank; ``avg_recall@K`` = mean of the two
  directions, ``avg_img_recall`` / ``avg_cap_recall`` = mean of R@1/5/10 in one direction; ``mean_recall`` = mean
  of all six recalls. Key metric (``key_eval``): ``avg_recall@1``. Values are fractions, as in the official code.

Ties are broken as the official ``np.argsort(score)[::-1]`` does: among equal scores the candidate with the larger
index ranks first.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Sequence

import numpy as np

from .fileio import EvalInputError, load_json

KS = (1, 5, 10)


def _ranks_in_rows(scores: np.ndarray, target: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """0-based rank of column ``target[r]`` within row ``r`` (descending, ties: larger index first)."""
    n, m = scores.shape
    out = np.empty(n, dtype=np.int64)
    col = np.arange(m)
    for s in range(0, n, chunk):  # chunks bound the boolean temporaries (COCO 5k: 25k x 5k)
        blk = scores[s:s + chunk]
        t = target[s:s + chunk]
        gt = blk[np.arange(len(blk)), t][:, None]
        out[s:s + chunk] = (blk > gt).sum(1) + ((blk == gt) & (col[None, :] > t[:, None])).sum(1)
    return out


def _recalls(ranks: np.ndarray) -> dict[str, float]:
    d = {f"recall@{k}": float(np.mean(ranks < k)) for k in KS}
    d["avg_rank"] = float(np.mean(ranks + 1))
    return d


def recall_at_k(scores: np.ndarray, caption_to_image: Sequence[int], *, progress: bool = False) -> dict:
    """Official retrieval metrics from ``scores[c, i]`` and ``caption_to_image[c]`` (column index of caption c's image)."""
    from tqdm import tqdm

    s = np.asarray(scores)
    if s.ndim != 2:
        raise EvalInputError(f"score matrix must be 2-D [num_captions, num_images], got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number):
        raise EvalInputError(f"score matrix must be numeric, got dtype {s.dtype}")
    n_cap, n_img = s.shape
    if n_cap == 0 or n_img == 0:
        raise EvalInputError(f"empty score matrix {s.shape}")
    bad = np.argwhere(~np.isfinite(s))
    if len(bad):
        r, c = bad[0]
        raise EvalInputError(f"score matrix: non-finite value {s[r, c]} at caption {r}, image {c} "
                             f"({len(bad)} such entries)")
    gt = np.asarray(caption_to_image)
    if gt.shape != (n_cap,):
        raise EvalInputError(f"ground truth has {gt.size} entries but the score matrix has {n_cap} caption rows")
    if not np.issubdtype(gt.dtype, np.integer):
        raise EvalInputError(f"ground-truth image indices must be integers, got dtype {gt.dtype}")
    out_of_range = np.flatnonzero((gt < 0) | (gt >= n_img))
    if out_of_range.size:
        c = out_of_range[0]
        raise EvalInputError(f"caption {c}: ground-truth image index {gt[c]} outside [0, {n_img})")
    counts = np.bincount(gt, minlength=n_img)
    lonely = np.flatnonzero(counts == 0)
    if lonely.size:
        raise EvalInputError(f"image {lonely[0]} has no ground-truth caption ({lonely.size} such images): "
                             "text retrieval is undefined for it")

    img_ranks = _ranks_in_rows(s, gt)  # caption -> image
    # image -> caption: rank of every caption within its own image's column, then the best one per image
    s_t = np.ascontiguousarray(s.T)
    cap_rank_in_own_col = np.empty(n_cap, dtype=np.int64)
    caps_of = [[] for _ in range(n_img)]
    for c, i in enumerate(gt.tolist()):
        caps_of[i].append(c)
    row_idx = np.arange(n_cap)
    for i in tqdm(range(n_img), desc="text retrieval", disable=not progress):
        col = s_t[i]
        cs = np.asarray(caps_of[i])
        v = col[cs][:, None]
        cap_rank_in_own_col[cs] = (col[None, :] > v).sum(1) + ((col[None, :] == v) & (row_idx[None, :] > cs[:, None])).sum(1)
    cap_ranks = np.full(n_img, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(cap_ranks, gt, cap_rank_in_own_col)

    ir, tr = _recalls(img_ranks), _recalls(cap_ranks)
    ret: OrderedDict = OrderedDict()
    ret["img_avg_rank"] = ir["avg_rank"]
    ret["cap_avg_rank"] = tr["avg_rank"]
    for k in KS:
        ret[f"img_recall@{k}"] = ir[f"recall@{k}"]
    for k in KS:
        ret[f"cap_recall@{k}"] = tr[f"recall@{k}"]
    ret["avg_img_recall"] = sum(ir[f"recall@{k}"] for k in KS) / 3
    ret["avg_cap_recall"] = sum(tr[f"recall@{k}"] for k in KS) / 3
    for k in KS:
        ret[f"avg_recall@{k}"] = (ir[f"recall@{k}"] + tr[f"recall@{k}"]) / 2
    ret["mean_recall"] = (ret["avg_img_recall"] + ret["avg_cap_recall"]) / 2
    ret["key_eval"] = "avg_recall@1"
    ret["num_captions"] = n_cap
    ret["num_images"] = n_img
    return dict(ret)


def load_retrieval_gt(path: str | os.PathLike, num_captions: int | None = None) -> np.ndarray:
    """Caption -> image ground truth. Accepted JSON forms:

    * ``[i_0, i_1, ...]`` or ``{"caption_to_image": [...]}``: image column index of each caption row;
    * ``{"images": [name, ...], "caption_images": [name, ...]}``: image names of the score columns and the image
      name of each caption row (the official caption file's ``image_name`` field).
    """
    data = load_json(path)
    if isinstance(data, dict) and "caption_to_image" in data:
        data = data["caption_to_image"]
    if isinstance(data, list):
        for c, v in enumerate(data):
            if isinstance(v, bool) or not isinstance(v, int):
                raise EvalInputError(f"{path}: caption {c}: image index {v!r} is not an integer")
        gt = np.asarray(data, dtype=np.int64)
    elif isinstance(data, dict) and "images" in data and "caption_images" in data:
        col = {}
        for j, name in enumerate(data["images"]):
            if name in col:
                raise EvalInputError(f"{path}: images[{j}]: duplicate image name {name!r}")
            col[name] = j
        idx = []
        for c, name in enumerate(data["caption_images"]):
            if name not in col:
                raise EvalInputError(f"{path}: caption_images[{c}]: image {name!r} is not in \"images\"")
            idx.append(col[name])
        gt = np.asarray(idx, dtype=np.int64)
    else:
        raise EvalInputError(f"{path}: expected a list of image indices, {{\"caption_to_image\": [...]}} or "
                             "{\"images\": [...], \"caption_images\": [...]}")
    if num_captions is not None and len(gt) != num_captions:
        raise EvalInputError(f"{path}: {len(gt)} captions but the score matrix has {num_captions} rows")
    return gt
