"""Evaluation metrics for the UNIMO downstream tasks: pure functions of predictions and references.

No Paddle and no model code is imported here (CLI: ``python -m unimo.eval <metric> ...``). Each metric keeps the
scale of the official tool it reproduces:

=================  ==========================================================  ==========
task               function                                                     scale
=================  ==========================================================  ==========
GLUE               :func:`accuracy`, :func:`matthews_corr`, :func:`pearson_spearman`  fraction
CNN/DM, Gigaword   :func:`rouge_scores` (``rouge_score``, ROUGE-1.5.5 settings)   fraction
COCO captions      :func:`caption_scores` (coco-caption, CIDEr-D)                 fraction
SQuAD-QG           :func:`qg_scores` (coco-caption BLEU/METEOR/ROUGE-L)           fraction
CoQA               :func:`coqa_scores`, :func:`coqa_official`                     percent
VQA                :func:`vqa_accuracy`, :func:`vqa_evaluate`                     fraction / percent
Flickr30k / COCO   :func:`recall_at_k` (official UNIMO ``recall_at_k``)          fraction
=================  ==========================================================  ==========
"""
from .coco import caption_scores, java_status, ptb_tokenize, python_ptb_tokenize, qg_scores
from .coqa import coqa_official, coqa_scores
from .coqa import f1_score as coqa_f1
from .coqa import normalize_answer as coqa_normalize
from .fileio import EvalInputError
from .glue import accuracy, glue_metric, matthews_corr, pearson_spearman
from .retrieval import recall_at_k
from .rouge import rouge_scores, split_sentences
from .vqa import normalize_answer as vqa_normalize
from .vqa import vqa_accuracy, vqa_evaluate, write_vqa_results

__all__ = [
    "EvalInputError", "accuracy", "matthews_corr", "pearson_spearman", "glue_metric", "rouge_scores",
    "split_sentences", "caption_scores", "qg_scores", "ptb_tokenize", "python_ptb_tokenize", "java_status",
    "coqa_scores", "coqa_official", "coqa_f1", "coqa_normalize", "vqa_accuracy", "vqa_evaluate",
    "vqa_normalize", "write_vqa_results", "recall_at_k",
]
