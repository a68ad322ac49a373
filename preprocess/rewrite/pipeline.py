"""End-to-end rewriting run: pairs in, one JSONL record per pair out (see ``python -m preprocess.rewrite -h``)."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data_io import InputError, Pair, ResumableWriter, read_corpus, read_pairs, write_json_atomic
from .retrieval import DEFAULT_MAX_NNZ, CaptionIndex, CorpusIndex
from .rewriter import KINDS, SceneGraphRewriter, rng_for
from .scene_graph import get_parser
from .translate import Translator, get_translator
from .saved_index import index_options, load_index
from .vocab import VGVocab
from unimo.utils.io import atomic_write
from unimo.utils.shards import PARTITION_RULE, find_shards, shard_of, shard_output

POSITIONS_SUFFIX = ".positions.npy"  # a shard's input position of each output line, for the merge

# Options that change the content of a record: a resumed run must use the same values.
_CONTENT_OPTIONS = ("positives", "negatives", "retrieval_negatives", "parser", "vocab_dir", "paraphrases",
                    "translator", "mt_model", "corpus", "related", "seed", "karpathy_splits", "tfidf_max_df")


@dataclass
class RewriteConfig:
    pairs: str
    output: str
    positives: int = 2
    negatives: int = 100
    retrieval_negatives: int = 10
    parser: str = "rule"
    vocab_dir: str | None = "model_files/vg_1600_400_20"
    paraphrases: str | None = None
    translator: str | None = None
    mt_model: list[str] = field(default_factory=list)
    corpus: str | None = None
    related: int = 5
    workers: int = 1
    seed: int = 0
    chunk_size: int = 256
    max_nnz: int = DEFAULT_MAX_NNZ
    tfidf_max_df: float | int = 1.0
    karpathy_splits: list[str] | None = None
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    shard: tuple[int, int] | None = None  # (I, N): only the pairs of images in shard I, into OUTPUT/shard-I-of-N.jsonl
    index: str | None = None  # a saved pairs + TF-IDF index (python -m preprocess.rewrite index) instead of --pairs

    def validate(self) -> None:
        for name in ("positives", "negatives", "retrieval_negatives", "related"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("workers", "chunk_size", "max_nnz"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.tfidf_max_df, float) and not 0 < self.tfidf_max_df <= 1 or \
                isinstance(self.tfidf_max_df, int) and self.tfidf_max_df < 1:
            raise ValueError(f"--tfidf-max-df must be a fraction in (0, 1] or a count >= 1, got {self.tfidf_max_df}")
        if self.parser not in ("rule", "sng"):
            raise ValueError(f"--parser must be 'rule' or 'sng', got {self.parser!r}")


class _State:
    """Everything a chunk needs; module-global so forked workers share it copy-on-write."""

    def __init__(self, cfg: RewriteConfig, pairs: list[Pair], index: CaptionIndex,
                 translator: Translator | None, corpus: CorpusIndex | None,
                 rewriter: SceneGraphRewriter | None):
        self.cfg, self.pairs, self.index = cfg, pairs, index
        self.translator, self.corpus, self.rewriter = translator, corpus, rewriter


_STATE: _State | None = None


def _process_chunk(todo: np.ndarray) -> tuple[list[str], Counter]:
    st = _STATE
    cfg = st.cfg
    stats: Counter = Counter()
    caps = [st.pairs[p].caption for p in todo]
    retrieved = st.index.retrieve(todo, cfg.retrieval_negatives, cfg.max_nnz) if cfg.retrieval_negatives \
        else [[] for _ in todo]
    positives = st.translator.paraphrases(caps, cfg.positives) if st.translator else [[] for _ in todo]
    related = st.corpus.related(caps, cfg.related, cfg.max_nnz) if st.corpus and cfg.related \
        else [[] for _ in todo]
    lines = []
    for j, p in enumerate(todo):
        pair = st.pairs[p]
        negs = list(retrieved[j])
        if cfg.negatives:
            rng = rng_for(cfg.seed, pair.caption_id)
            sg = st.rewriter.rewrite(pair.caption, cfg.negatives, rng, avoid=st.index.image_captions(p))
            negs += sg
            stats["pairs_with_fewer_scene_graph_negatives"] += len(sg) < cfg.negatives
        stats["pairs_with_fewer_retrieval_negatives"] += len(retrieved[j]) < cfg.retrieval_negatives
        stats["pairs_with_fewer_positives"] += len(positives[j]) < cfg.positives
        stats["positives"] += len(positives[j])
        stats["related_texts"] += len(related[j])
        for n in negs:
            stats["neg_" + n["kind"]] += 1
        rec = {"image_id": pair.image_id, "caption_id": pair.caption_id, "caption": pair.caption,
               "positives": positives[j], "negatives": negs, "related_texts": related[j]}
        lines.append(json.dumps(rec, ensure_ascii=False))
    return lines, stats


def _ordered_results(chunks: list[np.ndarray], workers: int):
    """Yield chunk results in order, keeping at most ``4 * workers`` chunks in flight (bounded memory)."""
    if workers == 1 or len(chunks) <= 1:
        for c in chunks:
            yield len(c), _process_chunk(c)
        return
    ctx = mp.get_context("fork")  # workers inherit the index/vocab without pickling them
    with ctx.Pool(workers) as pool:
        pending = []
        it = iter(chunks)
        for c in it:
            pending.append((len(c), pool.apply_async(_process_chunk, (c,))))
            if len(pending) >= 4 * workers:
                break
        while pending:
            n, res = pending.pop(0)
            out = res.get()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((len(nxt), pool.apply_async(_process_chunk, (nxt,))))
            yield n, out


def _options(cfg: RewriteConfig) -> dict:
    d = asdict(cfg)
    return {k: d[k] for k in _CONTENT_OPTIONS}


def run(cfg: RewriteConfig) -> dict:
    """Run the whole pipeline; returns (and writes next to the output) the summary dictionary."""
    global _STATE
    cfg.validate()
    t0 = time.time()
    translator = get_translator(cfg.translator, cfg.paraphrases, cfg.mt_model, cfg.positives)
    rewriter = None
    if cfg.negatives > 0:
        if not cfg.vocab_dir:
            raise InputError("--negatives > 0 needs the VG vocabularies (--vocab-dir)")
        vocab = VGVocab.from_dir(cfg.vocab_dir)
        # built before the workers fork: they share it (and a missing sng install fails here, not in a worker)
        rewriter = SceneGraphRewriter(vocab, get_parser(cfg.parser, vocab))
    index = None
    if cfg.index:
        pairs, report, index, _ = load_index(cfg.index, index_options(cfg.tfidf_max_df, cfg.karpathy_splits,
                                                                      cfg.skip_bad))
    else:
        pairs, report = read_pairs(cfg.pairs, cfg.skip_bad, cfg.karpathy_splits)
    corpus, corpus_blank = None, 0
    if cfg.corpus and cfg.related > 0:
        docs, corpus_blank = read_corpus(cfg.corpus)
        corpus = CorpusIndex(docs)

    if cfg.shard is not None and Path(cfg.output).is_file():
        raise InputError(f"{cfg.output}: is a file; with --num-shards, --output names the directory of shard files")
    out = shard_output(cfg.output, cfg.shard, ".jsonl")
    meta_path = out.with_name(out.name + ".options.json")
    writer = ResumableWriter(out, cfg.resume, cfg.overwrite)
    if cfg.resume and meta_path.exists() and writer.done:
        before = json.loads(meta_path.read_text(encoding="utf-8"))
        diff = sorted(k for k in _CONTENT_OPTIONS if before.get(k) != _options(cfg)[k])
        if diff:
            writer.close()
            raise InputError(f"{meta_path}: --resume with different options than the unfinished run: "
                             f"{', '.join(diff)}")
    write_json_atomic(meta_path, _options(cfg))

    if cfg.shard is None:
        mine = range(len(pairs))
    else:  # every shard reads all pairs (the TF-IDF index is over all captions) and answers its own queries
        shard_id, num_shards = cfg.shard
        mine = [k for k, p in enumerate(pairs) if shard_of(p.image_id, num_shards) == shard_id]
    todo = np.array([k for k in mine if pairs[k].caption_id not in writer.done], dtype=np.int64)
    if index is None:
        index = CaptionIndex.build([p.image_id for p in pairs], [p.caption for p in pairs],
                                   tfidf=cfg.retrieval_negatives > 0 and len(todo) > 0, max_df=cfg.tfidf_max_df)
    if cfg.shard is not None:
        position = {p.caption_id: k for k, p in enumerate(pairs)}
        unknown = [c for c in writer.done_order if c not in position]
        if unknown:
            writer.close()
            raise InputError(f"{writer.partial}: caption_id {unknown[0]!r} is not in the input any more; a shard "
                             "can only be resumed with the same pairs")
        positions = np.array([position[c] for c in writer.done_order] + todo.tolist(), dtype=np.int64)
        del position
    _STATE = _State(cfg, pairs, index, translator, corpus, rewriter)
    chunks = [todo[i:i + cfg.chunk_size] for i in range(0, len(todo), cfg.chunk_size)]
    stats: Counter = Counter()
    try:
        with tqdm(total=len(todo), unit="pair", desc="rewrite", disable=not cfg.progress) as bar:
            for n, (lines, st) in _ordered_results(chunks, cfg.workers):
                writer.write_lines(lines)
                stats.update(st)
                bar.update(n)
        if cfg.shard is not None:  # before the output appears: merge finds a complete shard or none
            with atomic_write(out.with_name(out.name + POSITIONS_SUFFIX), "wb") as fh:
                np.save(fh, positions)
        writer.finish()
    finally:
        writer.close()
        _STATE = None
    summary = {
        "output": str(out),
        "pairs_total": len(pairs),
        "pairs_written": int(len(todo)),
        "pairs_resumed": len(mine) - int(len(todo)),
        **({} if cfg.shard is None else {"shard": cfg.shard[0], "num_shards": cfg.shard[1],
                                          "partition": PARTITION_RULE, "pairs_other_shards": len(pairs) - len(mine)}),
        "index": cfg.index,
        "truncated_tail_bytes_dropped": writer.truncated_bytes,
        "bad_input_skipped": report.bad,
        "bad_input_examples": report.examples,
        "images": len(index.image_ids),
        "distinct_captions": len(index.texts),
        "negatives": {k: stats.get("neg_" + k, 0) for k in ("retrieval",) + KINDS},
        "positives": stats.get("positives", 0),
        "related_texts": stats.get("related_texts", 0),
        "corpus_blank_lines_skipped": corpus_blank,
        "pairs_with_fewer_retrieval_negatives": stats.get("pairs_with_fewer_retrieval_negatives", 0),
        "pairs_with_fewer_scene_graph_negatives": stats.get("pairs_with_fewer_scene_graph_negatives", 0),
        "pairs_with_fewer_positives": stats.get("pairs_with_fewer_positives", 0),
        "seconds": round(time.time() - t0, 3),
        "options": _options(cfg),
    }
    write_json_atomic(out.with_name(out.name + ".summary.json"), summary)
    return summary


def merge_shards(input_dir: str, output: str, overwrite: bool = False, progress: bool = True) -> dict:
    """One JSONL from the shard files of ``input_dir`` (``shard-IIIII-of-NNNNN.jsonl``, all N of one run), lines
    in the order of the unsharded run: byte for byte its output. Options must be the same in every shard."""
    t0 = time.time()
    try:
        files = find_shards(input_dir, ".jsonl")
    except Exception as exc:  # UserError: missing shards, mixed runs
        raise InputError(str(exc)) from None
    out = Path(output)
    if (out.exists() or out.with_name(out.name + ".partial").exists()) and not overwrite:
        raise InputError(f"{out}: exists; pass --overwrite to replace it")
    options, positions, summaries = None, [], []
    for f in files:
        opts_path = f.with_name(f.name + ".options.json")
        pos_path = f.with_name(f.name + POSITIONS_SUFFIX)
        sum_path = f.with_name(f.name + ".summary.json")
        for extra in (opts_path, pos_path, sum_path):
            if not extra.is_file():
                raise InputError(f"{extra}: missing; the shard {f.name} is not a finished shard of a sharded run")
        opts = json.loads(opts_path.read_text(encoding="utf-8"))
        if options is None:
            options, first = opts, f
        elif opts != options:
            diff = sorted(k for k in set(opts) | set(options) if opts.get(k) != options.get(k))
            raise InputError(f"{f}: made with other options than {first.name}: {', '.join(diff)}")
        positions.append(np.load(pos_path))
        summaries.append(json.loads(sum_path.read_text(encoding="utf-8")))
        if np.any(np.diff(positions[-1]) <= 0):
            raise InputError(f"{pos_path}: lines are not in input order (a shard extended by --resume with new "
                             "pairs); rerun that shard with --overwrite")
    totals = {s_["pairs_total"] for s_ in summaries}
    if len(totals) != 1:
        raise InputError(f"{input_dir}: shards read different inputs (pairs_total {sorted(totals)})")
    owner = np.full(totals.pop(), -1, dtype=np.int64)
    for i, pos in enumerate(positions):
        if len(pos) and (pos.min() < 0 or pos.max() >= len(owner)):
            raise InputError(f"{files[i]}: positions beyond the {len(owner)} input pairs")
        clash = pos[owner[pos] >= 0]
        if len(clash):
            raise InputError(f"pair {int(clash[0])} of the input is in two shards: {files[int(owner[clash[0]])]} "
                             f"and {files[i]}")
        owner[pos] = i
    if (owner < 0).any():
        raise InputError(f"{input_dir}: the shards hold {int((owner >= 0).sum())} of {len(owner)} pairs "
                         f"(first missing: pair {int(np.flatnonzero(owner < 0)[0])})")
    handles = [f.open("rb") for f in files]
    try:
        with atomic_write(out, "wb") as dst:
            for i in tqdm(owner.tolist(), desc="merge", unit="pair", disable=not progress):
                line = handles[i].readline()
                if not line.endswith(b"\n"):
                    raise InputError(f"{files[i]}: fewer lines than its {POSITIONS_SUFFIX}")
                dst.write(line)
            for f, h in zip(files, handles):
                if h.readline():
                    raise InputError(f"{f}: more lines than its {POSITIONS_SUFFIX}")
    finally:
        for h in handles:
            h.close()
    write_json_atomic(out.with_name(out.name + ".options.json"), options)
    summary = {"output": str(out), "input": str(input_dir), "shards": len(files), "pairs_written": len(owner),
               "negatives": {k: sum(s_["negatives"].get(k, 0) for s_ in summaries) for k in summaries[0]["negatives"]},
               "positives": sum(s_["positives"] for s_ in summaries),
               "related_texts": sum(s_["related_texts"] for s_ in summaries),
               "shard_seconds": [s_["seconds"] for s_ in summaries], "seconds": round(time.time() - t0, 3),
               "options": options}
    write_json_atomic(out.with_name(out.name + ".summary.json"), summary)
    return summary
