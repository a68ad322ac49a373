"""Text rewriting for cross-modal contrastive learning (UNIMO paper, section 3.1).

For each image-caption pair: sentence-level positives (back-translation / user paraphrases), sentence-level
hard negatives (TF-IDF-similar captions of other images), phrase/word-level hard negatives (one scene-graph
node replaced from the Visual Genome vocabularies) and related texts from a corpus.
Run ``python -m preprocess.rewrite -h``.
"""
from .data_io import InputError, Pair, read_pairs
from .pipeline import RewriteConfig, run
from .retrieval import CaptionIndex, CorpusIndex, make_vectorizer, topk_sparse
from .rewriter import SceneGraphRewriter, rng_for
from .scene_graph import Attribute, Entity, Relation, RuleParser, SceneGraph, SngParser, get_parser
from .translate import MarianBackTranslator, ParaphraseFile, TranslatorError, get_translator
from .vocab import VGVocab, VocabError

__all__ = [
    "Attribute", "CaptionIndex", "CorpusIndex", "Entity", "InputError", "MarianBackTranslator", "Pair",
    "ParaphraseFile", "Relation", "RewriteConfig", "RuleParser", "SceneGraph", "SceneGraphRewriter", "SngParser",
    "TranslatorError", "VGVocab", "VocabError", "get_parser", "get_translator", "make_vectorizer", "read_pairs",
    "rng_for", "run", "topk_sparse",
]
