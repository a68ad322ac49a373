"""Generated ids -> text, as the official post-processing (``seq2seq.py:364-471``)."""
from __future__ import annotations

import re
from typing import Any, Sequence

from ..tokenizer import CLS_ID, MASK_ID, PAD_ID, UNK_ID

OFFICIAL_REMOVED_IDS = frozenset({CLS_ID, MASK_ID, PAD_ID, UNK_ID})
_SPACES = re.compile(r"\s+")


def ids_to_text(ids: Sequence[int], tokenizer: Any, strip: bool = False) -> str:
    """Drop [CLS]/[MASK]/[PAD]/[UNK], BPE-decode, collapse whitespace runs to one space.

    The official code keeps the leading space GPT-2 BPE text usually starts with; ``strip=True`` removes it.
    Other special tokens (e.g. [SEP] inside a text hypothesis) have no BPE text and decode to nothing.
    """
    kept = [int(i) for i in ids if int(i) not in OFFICIAL_REMOVED_IDS]
    text = _SPACES.sub(" ", tokenizer.decode(kept, skip_special_tokens=True))
    return text.strip() if strip else text
