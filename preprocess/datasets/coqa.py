"""CoQA (``coqa-{train,dev}-v1.0.json``) -> dialog examples, one per question turn.

Example: {"id": "<story id>_<turn id>", "src": [q1, a1, ..., q(t-1), a(t-1), q(t)], "knowledge": story,
"tgt": a(t)} where the answers are the free-form ``input_text`` answers (what CoQA's F1 scores). The history is
kept whole; the official reader keeps only the last 15 turns when it builds the input, which the batcher does.
"""
from __future__ import annotations

import os
from collections import Counter

from tqdm import tqdm

from .common import AtomicOutputs, DataError, IssueLog, UsageError, check_kept, list_inputs, load_json, \
    make_summary, split_from_name


def _text(obj, key: str, path: str, where: str) -> str:
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, str):
        raise DataError(path, where, key, f"missing or not a string: {v!r:.60}",
                        "missing_field" if v is None else "bad_type")
    v = v.strip()
    if not v:
        raise DataError(path, where, key, "empty", "empty_text")
    return v


def _turn_id(obj, path: str, where: str) -> int:
    v = obj.get("turn_id") if isinstance(obj, dict) else None
    if isinstance(v, bool) or not isinstance(v, int):
        raise DataError(path, where, "turn_id", f"missing or not an int: {v!r:.60}", "bad_id")
    return v


def convert_coqa(inputs: list[str], output_dir: str, skip_bad: bool = False, progress: bool = True,
                 split: str | None = None, overwrite: bool = False) -> dict:
    """Convert CoQA json files (or a folder of them); split from the file name (train/dev) unless ``split``."""
    files = list_inputs(inputs, (".json",))
    if split and len(files) > 1:
        raise UsageError("--split names one split: give a single input file with it")
    log = IssueLog(skip_bad)
    stories: dict[str, int] = {}
    with AtomicOutputs(output_dir, overwrite) as out:
        for path in files:
            name = split or split_from_name(path)
            w = out.jsonl(f"{name}.jsonl")
            kept_before, skipped_before = w.count, Counter(log.skipped)
            data = load_json(path)
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise DataError(path, None, "data", "expected a top-level object with a 'data' list (CoQA json)",
                                "bad_layout")
            n_stories = 0
            for i, st in enumerate(tqdm(items, desc=os.path.basename(path), disable=not progress, leave=False)):
                where = f"data[{i}]"
                try:
                    sid = st.get("id") if isinstance(st, dict) else None
                    if not isinstance(sid, str) or not sid.strip():
                        raise DataError(path, where, "id", f"missing story id: {sid!r:.60}", "bad_id")
                    story = _text(st, "story", path, where)
                    qs, ans = st.get("questions"), st.get("answers")
                    if not isinstance(qs, list) or not qs:
                        raise DataError(path, where, "questions", "missing or empty list", "bad_layout")
                    if not isinstance(ans, list) or len(ans) != len(qs):
                        raise DataError(path, where, "answers", f"expected a list of {len(qs)} answers, got "
                                        f"{len(ans) if isinstance(ans, list) else ans!r:.60}", "bad_layout")
                    history: list[str] = []
                    turns = []
                    for t, (q, a) in enumerate(zip(qs, ans)):
                        qw, aw = f"{where}.questions[{t}]", f"{where}.answers[{t}]"
                        tq, ta = _turn_id(q, path, qw), _turn_id(a, path, aw)
                        if tq != ta or tq != t + 1:
                            raise DataError(path, aw, "turn_id", f"question turn {tq} / answer turn {ta} at "
                                            f"position {t + 1}: turns must be 1, 2, ... in both lists",
                                            "bad_turn")
                        qtext, atext = _text(q, "input_text", path, qw), _text(a, "input_text", path, aw)
                        turns.append({"id": f"{sid}_{tq}", "src": history + [qtext], "knowledge": story,
                                      "tgt": atext})
                        history = history + [qtext, atext]
                except DataError as err:
                    log.report(err)  # a broken story is skipped whole: its later turns depend on every answer
                    continue
                for ex in turns:
                    w.write(ex)
                n_stories += 1
            stories[name] = stories.get(name, 0) + n_stories
            check_kept(path, f"split '{name}'", w.count - kept_before, log, skipped_before, out)
    return make_summary("coqa", files, out, log, stories=stories)
