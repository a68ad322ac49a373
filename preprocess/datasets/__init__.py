"""Dataset converters: public dataset files -> the normalised JSONL that ``unimo.reader.datasets`` loads.

Run ``python -m preprocess.datasets <name> --input ... --output DIR [--skip-bad]``; every converter writes its
outputs atomically (temporary names, renamed at the end), shows tqdm progress, and prints a JSON summary
(also saved as ``DIR/<name>_summary.json``).
"""
from .captions import convert_coco_karpathy, convert_flickr30k
from .coqa import convert_coqa
from .glue import convert_glue
from .seq2seq import convert_seq2seq
from .snli_ve import convert_snli_ve
from .vqa import convert_vqa_v2, vqa_score
from .vqa_normalize import normalize_answer

CONVERTERS = ("coco-karpathy", "flickr30k", "vqa-v2", "snli-ve", "glue", "cnndm", "gigaword", "squad-qg", "xsum",
              "seq2seq-jsonl", "coqa")

__all__ = ["CONVERTERS", "convert_coco_karpathy", "convert_flickr30k", "convert_vqa_v2", "convert_snli_ve",
           "convert_glue", "convert_seq2seq", "convert_coqa", "normalize_answer", "vqa_score"]
