"""Zero-shot image-text retrieval with the CMCL projections (no fine-tuning): how well pre-training aligned the
two modalities, scored as the model was trained (``cmcl_encoding``): ``joint`` - one joint pass per (image,
caption) pair, cos(FC(h[IMG]), FC(h[CLS])) of that pass (paper section 3.1; I x C passes); ``dual`` - images
encoded alone, captions alone, cosine similarity in the shared space. Recalls as the official ``recall_at_k``
(:func:`unimo.eval.retrieval.recall_at_k`).

    python -m unimo.pretrain.eval_retrieval --model OUT/final --pairs held_out.jsonl \
        --features STORE [--vocab-dir model_files/dict] [--output metrics.json]

(``--checkpoint`` / ``--feature-store`` are the old spellings.) Exit status: 0 ok, 2 bad input or usage (one
``error:`` line), 1 internal error. A ``model_state.pdparams`` is read through the restricted unpickler (arrays
only) unless ``--trust-pickle``.

``--pairs``: caption JSONL (``{"image_id","caption"}`` per line) or retrieval JSONL (``{"image_id","captions"}``).
Prints (and with ``--output`` writes) a JSON object: ``img_recall@K`` (caption -> image), ``cap_recall@K``
(image -> caption), ``avg_recall@1`` ..., ``chance_recall@1`` = 1 / #images (R@1 of a random ranking, both directions).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

import unimo  # noqa: F401  (CPU environment before paddle)


def encode_cmcl(model, image_ids: Sequence[str], captions: Sequence[str], images, tokenizer,
                max_caption_len: int = 64, batch_size: int = 64, progress: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised CMCL embeddings ``(images [I, E], captions [C, E])`` of ``model`` (a UnimoForPretraining)."""
    import paddle
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    img_out, txt_out = [], []
    with paddle.no_grad():
        for s in tqdm(range(0, len(image_ids), batch_size), desc="cmcl images", disable=not progress):
            b = images.batch(list(image_ids[s:s + batch_size]))
            emb = model.embed_images(paddle.to_tensor(b["image_features"]), paddle.to_tensor(b["image_locations"]),
                                     paddle.to_tensor(b["image_valid"]))
            img_out.append(emb.astype("float32").numpy())
        for s in tqdm(range(0, len(captions), batch_size), desc="cmcl captions", disable=not progress):
            ids, pos, valid = _caption_rows(captions[s:s + batch_size], tokenizer, max_caption_len)
            emb = model.embed_texts(paddle.to_tensor(ids), paddle.to_tensor(pos), paddle.to_tensor(valid))
            txt_out.append(emb.astype("float32").numpy())
    if was_training:
        model.train()

    def norm(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return norm(np.concatenate(img_out)), norm(np.concatenate(txt_out))


def _caption_rows(captions: Sequence[str], tokenizer, max_caption_len: int) -> tuple[np.ndarray, ...]:
    from ..tokenizer import CLS_ID, PAD_ID, SEP_ID

    rows = [[CLS_ID] + tokenizer.encode(c)[:max_caption_len - 2] + [SEP_ID] for c in captions]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), PAD_ID, np.int64)
    pos = np.full((len(rows), width), PAD_ID, np.int64)
    valid = np.zeros((len(rows), width), np.float32)
    for i, r in enumerate(rows):
        ids[i, :len(r)], pos[i, :len(r)], valid[i, :len(r)] = r, np.arange(2, 2 + len(r)), 1.0
    return ids, pos, valid


def joint_similarity(model, image_ids: Sequence[str], captions: Sequence[str], images, tokenizer,
                     max_caption_len: int = 64, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """[C, I] cosine similarities of one joint pass per (caption, image) pair (``model.joint_scores``)."""
    import paddle
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    b = images.batch(list(image_ids))
    feats, locs, img_valid = (paddle.to_tensor(b[k]) for k in ("image_features", "image_locations", "image_valid"))
    ids, pos, txt_valid = (paddle.to_tensor(a) for a in _caption_rows(captions, tokenizer, max_caption_len))
    n_img, n_cap = len(image_ids), len(captions)
    cap_index, img_index = np.divmod(np.arange(n_img * n_cap, dtype=np.int64), n_img)
    out = []
    with paddle.no_grad():
        for s in tqdm(range(0, len(cap_index), batch_size), desc="cmcl joint pairs", disable=not progress):
            out.append(model.joint_scores(feats, locs, img_valid, ids, pos, txt_valid,
                                          paddle.to_tensor(img_index[s:s + batch_size]),
                                          paddle.to_tensor(cap_index[s:s + batch_size])).astype("float32").numpy())
    if was_training:
        model.train()
    return np.concatenate(out).reshape(n_cap, n_img)


def cmcl_retrieval(model, pairs_path: str, images, tokenizer, max_caption_len: int = 64, batch_size: int = 64,
                   progress: bool = False, encoding: Optional[str] = None) -> dict[str, Any]:
    """Recall@K of CMCL similarity on the held-out pairs of ``pairs_path`` (every caption vs every image), with
    the model's ``cmcl_encoding`` (or ``encoding``: joint | dual)."""
    from ..eval.retrieval import recall_at_k
    from .data import load_eval_pairs

    image_ids, captions, gt = load_eval_pairs(pairs_path, store=images.store)
    encoding = encoding or getattr(model, "cmcl_encoding", "dual")
    if encoding == "joint":
        sim = joint_similarity(model, image_ids, captions, images, tokenizer, max_caption_len, batch_size, progress)
    else:
        img, txt = encode_cmcl(model, image_ids, captions, images, tokenizer, max_caption_len, batch_size, progress)
        sim = txt @ img.T
    metrics = recall_at_k(sim, np.asarray(gt, np.int64))
    metrics["encoding"] = encoding
    # A random ranking puts one of image i's n_i captions first with probability n_i / C: both directions average
    # to 1 / #images.
    metrics["chance_recall@1"] = 1.0 / len(image_ids)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    from ..utils.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m unimo.pretrain.eval_retrieval", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="model", required=True,
                   help="save_pretrained directory (pre-training output/final)")
    p.add_argument("--pairs", required=True, help="held-out caption / retrieval JSONL")
    p.add_argument("--features", "--feature-store", dest="features", required=True,
                   help="feature store with the held-out images")
    p.add_argument("--vocab-dir", default="model_files/dict", help="tokenizer dictionary folder")
    p.add_argument("--max-img-len", type=int, default=37, help="image rows incl. the global one")
    p.add_argument("--max-caption-len", type=int, default=64, help="caption tokens incl. [CLS] and [SEP]")
    p.add_argument("--batch-size", type=int, default=64, help="images / captions (joint: pairs) per forward pass")
    p.add_argument("--output", help="write the metrics JSON here too (atomically; default: stdout only)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read a model_state.pdparams with Paddle's unrestricted loader, which can run code: only "
                        "for a trusted source (default: refuse anything but arrays)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    from ..utils.errors import UserError

    for name, path in (("--model", args.model), ("--features", args.features), ("--vocab-dir", args.vocab_dir)):
        if not os.path.isdir(path):
            raise UserError(f"{name}: not a directory" if os.path.exists(path) else f"{name}: directory not found",
                            file=path)
    if not os.path.isfile(args.pairs):
        raise UserError("--pairs: file not found", file=args.pairs)
    from ..reader.image_batch import ImageBatcher
    from ..tokenizer import UnimoTokenizer
    from ..utils.io import write_json_atomic
    from .model import UnimoForPretraining

    model = UnimoForPretraining.from_pretrained(args.model, trust_pickle=args.trust_pickle)
    tokenizer = UnimoTokenizer.from_pretrained(args.vocab_dir)
    images = ImageBatcher(args.features, max_img_len=args.max_img_len)
    metrics = cmcl_retrieval(model, args.pairs, images, tokenizer, args.max_caption_len, args.batch_size,
                             progress=not args.no_progress)
    metrics = {"checkpoint": args.model, "pairs": args.pairs, **metrics}
    if args.output:
        write_json_atomic(args.output, metrics)
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    from ..utils.errors import run_cli

    sys.exit(run_cli(main, sys.argv[1:], prog="unimo.pretrain.eval_retrieval"))
