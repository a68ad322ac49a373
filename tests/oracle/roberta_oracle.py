"""Oracle (runs in .venv-oracle with torch + transformers): random tiny HF RoBERTa checkpoints and their outputs.

    python roberta_oracle.py OUT_DIR

Writes OUT_DIR/model (RobertaModel) and OUT_DIR/mlm (RobertaForMaskedLM), each saved with ``save_pretrained``
(safetensors), plus input_ids.npy / attention_mask.npy and, per model, the outputs on those inputs:
model_sequence.npy (last hidden state), mlm_sequence.npy and mlm_logits.npy; and long_ids.npy, one unpadded
sequence of the maximum length 512 (every position row is used), with model_long_sequence.npy. Prints a JSON
summary.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
from transformers import RobertaConfig, RobertaForMaskedLM, RobertaModel


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Random LayerNorm gains/biases, biases and a large token-type row: every mapped tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "token_type_embeddings" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))  # non-zero row: folding must be exact


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50265, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=256, max_position_embeddings=514, layer_norm_eps=1e-5,
                           type_vocab_size=1, hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    # rows 0 and 1 are right-padded; row 2 is full length
    ids = np.full((3, 40), 1, dtype=np.int64)
    rng = np.random.default_rng(0)
    ids[0, :12] = [0, *rng.integers(4, 50000, 10), 2]
    ids[1, :7] = [0, *rng.integers(4, 50000, 5), 2]
    ids[2, :] = [0, *rng.integers(4, 50000, 38), 2]
    mask = (ids != 1).astype(np.int64)
    long_ids = np.array([[0, *rng.integers(4, 50000, 510), 2]], dtype=np.int64)  # positions 2..513
    np.save(os.path.join(out, "long_ids.npy"), long_ids)
    np.save(os.path.join(out, "input_ids.npy"), ids)
    np.save(os.path.join(out, "attention_mask.npy"), mask)
    summary = {}
    for tag, cls in (("model", RobertaModel), ("mlm", RobertaForMaskedLM)):
        model = cls(config)
        perturb(model, seed=1 if tag == "model" else 2)
        model.eval()
        model.save_pretrained(os.path.join(out, tag), safe_serialization=True)
        with torch.no_grad():
            kwargs = dict(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
            if tag == "model":
                seq = model(**kwargs).last_hidden_state
                long_seq = model(input_ids=torch.from_numpy(long_ids)).last_hidden_state
                np.save(os.path.join(out, "model_long_sequence.npy"), long_seq.numpy())
            else:
                res = model(**kwargs, output_hidden_states=True)
                seq = res.hidden_states[-1]
                np.save(os.path.join(out, "mlm_logits.npy"), res.logits.numpy())
        np.save(os.path.join(out, f"{tag}_sequence.npy"), seq.numpy())
        summary[tag] = sorted(os.listdir(os.path.join(out, tag)))
    summary["torch"] = torch.__version__
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
