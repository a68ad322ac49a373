"""Oracle side of bench_model_step.py (runs in .venv-oracle): HF RoBERTa-base training step time in torch.

usage: torch_roberta_step.py BATCH SEQ STEPS THREADS  -> prints JSON (median step, forward / backward / optimizer)
"""
import json
import sys
import time

import torch
from transformers import RobertaConfig, RobertaModel

batch, seq, steps, threads = map(int, sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
model = RobertaModel(cfg, add_pooling_layer=False)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
ids = torch.randint(4, 50000, (batch, seq))
times, parts = [], []
for i in range(steps + 1):
    t0 = time.perf_counter()
    out = model(input_ids=ids).last_hidden_state
    loss = out.float().pow(2).mean()
    float(loss)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    if i:
        times.append(t3 - t0)
        parts.append((t1 - t0, t2 - t1, t3 - t2))


def median(values):
    return sorted(values)[len(values) // 2]


print(json.dumps({"step_s": median(times), "all": times, "forward_s": median([p[0] for p in parts]),
                  "backward_s": median([p[1] for p in parts]), "optimizer_s": median([p[2] for p in parts]),
                  "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "sdpa": getattr(model.config, "_attn_implementation", None)}))
