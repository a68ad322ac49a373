"""Which parameters pre-training trains: every parameter a fine-tuning head reads (the official poolers, the LM
head) leaves pre-training trained under the shipped configurations, and each loss reaches exactly the parameter
groups the table in unimo/pretrain/model.py lists."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# read by the fine-tuning heads (src/unimo/model/modeling.py task models)
READ_BY_FINETUNING = {"pooler_text", "pooler_image", "lm_head", "text_embed", "image_embed", "encoder"}


@pytest.mark.parametrize("conf", sorted(glob.glob(str(REPO / "script" / "pretrain" / "*" / "conf.yaml"))))
def test_shipped_pretraining_trains_what_fine_tuning_reads(conf, tiny_config, monkeypatch):
    from unimo.pretrain.model import UnimoForPretraining
    from unimo.pretrain.run import PretrainConfig, data_config, model_kwargs

    monkeypatch.chdir(REPO)
    cfg = PretrainConfig.load(conf, {})
    model = UnimoForPretraining(tiny_config, **model_kwargs(cfg, data_config(cfg, tiny_config)))
    assert not READ_BY_FINETUNING & set(model.frozen_groups), (conf, model.frozen_groups)
    assert cfg.cmcl_head == "pooler"


def _grads_by_group(model, loss) -> set[str]:
    loss.backward()
    got = set()
    for group, params in model.param_groups().items():
        if any(p.grad is not None and float(np.abs(p.grad.numpy()).sum()) > 0 for p in params):
            got.add(group)
    model.clear_gradients()
    return got


def test_each_loss_trains_the_groups_of_the_table(tiny_config):
    """One loss at a time (the others weighted 0, anchors off), on random inputs: the groups with a non-zero
    gradient are the documented ones."""
    import paddle

    from unimo.pretrain.model import UnimoForPretraining

    cfg = tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, image_embedding_size=16,
                           image_class_size=5)
    rng = np.random.default_rng(0)
    b, n, lt, k = 2, 4, 6, 3
    feats = paddle.to_tensor(rng.normal(size=(b, n, 16)).astype("float32"))
    locs = paddle.to_tensor(rng.uniform(size=(b, n, 5)).astype("float32"))
    ids = paddle.to_tensor(rng.integers(5, 100, size=(k, lt)))
    pos = paddle.to_tensor(np.tile(np.arange(2, 2 + lt), (k, 1)))
    for head, cmcl_groups in (("pooler", {"pooler_text", "pooler_image"}), ("fc", {"cmcl_fc_text", "cmcl_fc_image"})):
        paddle.seed(0)
        model = UnimoForPretraining(cfg, streams=["pair"], cmcl_head=head, cmcl_encoding="dual", vl_weight=0.0)
        model.anchor_unused = False
        model.train()
        img = model.embed_images(feats, locs, paddle.ones([b, n]))
        txt = model.embed_texts(ids, pos, paddle.ones([k, lt]))
        from unimo.pretrain.losses import cmcl_loss

        positive = np.array([[1, 0, 0], [0, 1, 0]], bool)
        loss = cmcl_loss(img, txt, positive, None, 0.1)
        assert _grads_by_group(model, loss) == {"text_embed", "image_embed", "encoder"} | cmcl_groups
    # masked LM on text: text embedding, encoder, LM head (tied to the word embedding, in text_embed too)
    paddle.seed(0)
    model = UnimoForPretraining(cfg, streams=["text"])
    model.anchor_unused = False
    seq = model.unimo(input_ids=ids, position_ids=pos, attention_mask=paddle.ones([k, lt]))
    nll = model._token_nll(seq, paddle.to_tensor([1, 7, 13]), paddle.to_tensor([5, 6, 7]))
    assert _grads_by_group(model, nll.mean()) == {"text_embed", "encoder", "lm_head"}
    # region regression / classification on images: image embedding, encoder, region heads
    paddle.seed(0)
    model = UnimoForPretraining(cfg, streams=["image"], image_predict_class=True, image_predict_feature=True)
    seq = model.unimo(image_features=feats, image_locations=locs, attention_mask=paddle.ones([b, n]))
    rows = model._gather(seq, paddle.to_tensor([1, 6]))
    loss = model.mrfr_fc(rows).square().mean() + model.mrc_fc(rows).square().mean()
    assert _grads_by_group(model, loss) == {"image_embed", "encoder", "mrfr_fc", "mrc_fc"}
