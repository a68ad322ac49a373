"""Metric functions against hand-computed values (the arithmetic is written next to each expected number)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unimo.eval import (EvalInputError, accuracy, caption_scores, coqa_f1, coqa_normalize, coqa_official,
                        coqa_scores, java_status, matthews_corr, pearson_spearman, ptb_tokenize, qg_scores,
                        recall_at_k, rouge_scores, split_sentences, vqa_accuracy, vqa_evaluate, vqa_normalize,
                        write_vqa_results)
from unimo.eval.coco import coco_scores, qg_tokenize
from unimo.eval.coqa import turn_score
from unimo.eval.vqa import load_vqa_results

HAS_JAVA = java_status()[0]
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="java not installed")


# ------------------------------------------------------------------------------------------------------ GLUE
def test_accuracy_by_hand():
    # matches at positions 0, 2, 4 -> 3/5
    assert accuracy([1, 0, 1, 1, 0], [1, 1, 1, 0, 0]) == pytest.approx(0.6)
    assert accuracy(["entailment", "neutral"], ["entailment", "contradiction"]) == pytest.approx(0.5)


def test_mcc_by_hand():
    # labels [1,1,1,0,0], preds [1,0,1,1,0]: TP=2 (pos 0,2), FN=1 (pos 1), FP=1 (pos 3), TN=1 (pos 4)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2-1)/sqrt(3*3*2*2) = 1/6
    assert matthews_corr([1, 0, 1, 1, 0], [1, 1, 1, 0, 0]) == pytest.approx(1 / 6)
    assert matthews_corr([1, 0, 0, 1], [1, 0, 0, 1]) == pytest.approx(1.0)
    assert matthews_corr([0, 1, 1, 0], [1, 0, 0, 1]) == pytest.approx(-1.0)
    # a constant predictor has an empty confusion-matrix margin: defined as 0 (as scikit-learn / CoLA do)
    assert matthews_corr([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0


def test_pearson_spearman_by_hand():
    # preds [1,2,3,4] labels [1,3,2,4]: deviations (-1.5,-.5,.5,1.5) and (-1.5,.5,-.5,1.5)
    # cov = 2.25-.25-.25+2.25 = 4, var sums 5 and 5 -> r = 4/5; ranks equal the values -> rho = 0.8
    r = pearson_spearman([1, 2, 3, 4], [1, 3, 2, 4])
    assert r["pearson"] == pytest.approx(0.8) and r["spearman"] == pytest.approx(0.8)
    assert r["corr"] == pytest.approx(0.8)
    # preds [1,2,3,10] labels [1,2,3,4]: monotone -> rho = 1; pearson: dev (-3,-2,-1,6), (-1.5,-.5,.5,1.5)
    # cov = 4.5+1-.5+9 = 14, sums of squares 50 and 5 -> r = 14/sqrt(250)
    r = pearson_spearman([1, 2, 3, 10], [1, 2, 3, 4])
    assert r["pearson"] == pytest.approx(14 / math.sqrt(250)) and r["spearman"] == pytest.approx(1.0)
    assert r["corr"] == pytest.approx((14 / math.sqrt(250) + 1) / 2)


def test_pearson_degenerate_and_bad_inputs():
    r = pearson_spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert r["pearson"] is None and "constant" in r["correlation_undefined"]
    with pytest.raises(EvalInputError, match="position 2"):
        pearson_spearman([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(EvalInputError, match="length mismatch"):
        accuracy([1, 0], [1])


# ----------------------------------------------------------------------------------------------------- ROUGE
def test_rouge_hand_counted():
    # pred "the cat sat on the mat" vs ref "the cat lay on the mat" (6 tokens each)
    # ROUGE-1: overlap the x2, cat, on, mat = 5 -> P = R = 5/6
    # ROUGE-2: pred bigrams {the cat, cat sat, sat on, on the, the mat}, ref shares the cat, on the, the mat -> 3/5
    # ROUGE-L: LCS "the cat on the mat" = 5 -> 5/6
    r = rouge_scores(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert r["rouge-1"] == pytest.approx(5 / 6)
    assert r["rouge-2"] == pytest.approx(3 / 5)
    assert r["rouge-l"] == pytest.approx(5 / 6)
    assert r["rouge_settings"]["stemming"] is True and r["num_examples"] == 1


def test_rouge_stemming_and_mean():
    # stemmed: pred [the, dog, run] ref [run, dog]: ROUGE-1 overlap 2 -> P = 2/3, R = 1 -> F = 0.8
    # ROUGE-L: LCS length 1 -> P = 1/3, R = 1/2 -> F = 2*(1/6)/(5/6) = 0.4; no shared bigram
    r = rouge_scores(["The dog runs."], ["Running dogs"])
    assert r["rouge-1"] == pytest.approx(0.8)
    assert r["rouge-2"] == 0.0
    assert r["rouge-l"] == pytest.approx(0.4)
    # corpus score = mean of per-document F1: (1 + 0) / 2
    r = rouge_scores(["alpha bravo", "charlie"], ["alpha bravo", "delta"])
    assert r["rouge-1"] == pytest.approx(0.5)


def test_rouge_cnndm_summary_level_lcs():
    pred = "Alpha bravo echo. Charlie delta foxtrot."
    ref = "alpha bravo charlie delta <S_SEP> echo foxtrot"
    # summary level: ref sentence 1 = union(LCS with "alpha bravo echo" -> {alpha, bravo},
    #   LCS with "charlie delta foxtrot" -> {charlie, delta}) = 4 hits; ref sentence 2 -> {echo} + {foxtrot} = 2
    #   -> 6/6 = 1.0
    # sentence level on the concatenations: LCS "alpha bravo charlie delta foxtrot" = 5 -> 5/6
    cnn = rouge_scores([pred], [ref], cnndm=True)
    giga = rouge_scores([pred], ["alpha bravo charlie delta echo foxtrot"])
    assert cnn["rouge-l"] == pytest.approx(1.0)
    assert giga["rouge-l"] == pytest.approx(5 / 6)
    assert "rougeLsum" in cnn["rouge_settings"]["rouge_l"] and "rougeL" in giga["rouge_settings"]["rouge_l"]


def test_split_sentences():
    assert split_sentences('He said "go." Then U.S. forces left! Mr. Smith, J. K. Rowling wrote it? yes') == [
        'He said "go."', "Then U.S. forces left!", "Mr. Smith, J. K. Rowling wrote it?", "yes"]
    assert split_sentences("a b <S_SEP> c d [X_SEP] e") == ["a b", "c d", "e"]
    assert split_sentences("x\ny") == ["x", "y"]


def test_rouge_gigaword_digits():
    # references of the Gigaword release mask digits with '#'; ROUGE tokenization drops '#', so "2" vs "#"
    # stops counting as a mismatching token: pred [police, arrest, 2] vs ref [police, arrest] -> R1 = 2*(2/3)/(5/3)
    plain = rouge_scores(["police arrest 2"], ["police arrest #"])
    masked = rouge_scores(["police arrest 2"], ["police arrest #"], gigaword_digits=True)
    assert plain["rouge-1"] == pytest.approx(0.8)
    assert masked["rouge-1"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------- BLEU / CIDEr-D
def test_bleu_by_hand_with_brevity_penalty():
    hyp = "the cat sat on the mat"           # 6 tokens
    ref = "the cat sat on the red mat"       # 7 tokens
    # clipped precisions: 1-gram 6/6; 2-gram {the cat, cat sat, sat on, on the} of 5 -> 4/5;
    # 3-gram {the cat sat, cat sat on, sat on the} of 4 -> 3/4; 4-gram {the cat sat on, cat sat on the} of 3 -> 2/3
    # brevity penalty: c=6 < r=7 -> exp(1 - 7/6)
    bp = math.exp(1 - 7 / 6)
    expected = [bp * 1.0, bp * (1 * 4 / 5) ** (1 / 2), bp * (1 * 4 / 5 * 3 / 4) ** (1 / 3),
                bp * (1 * 4 / 5 * 3 / 4 * 2 / 3) ** (1 / 4)]
    out = coco_scores({0: [ref]}, {0: [hyp]}, meteor=False, cider=False)
    for n in range(4):
        assert out[f"Bleu_{n + 1}"] == pytest.approx(expected[n], rel=1e-6)
    assert out["METEOR"] is None and out["METEOR_unavailable"]
    # "closest" reference length: a second, shorter reference (4 tokens, |6-4| = 2 > |6-7| = 1) adds no match
    # and does not change the penalty (the "average" option would give r = 5.5 and no penalty)
    out2 = coco_scores({0: [ref, "a cat is here"]}, {0: [hyp]}, meteor=False, cider=False)
    assert out2["Bleu_4"] == pytest.approx(expected[3], rel=1e-6)


CAPTION_REFS = {
    1: ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean."],
    2: ["Two giraffes standing next to each other in a field.", "A pair of giraffes in a grassy field."],
    3: ["A plate with eggs, toast and bacon.", "Breakfast food on a white plate."],
}


def test_cider_d_sanity():
    same = {k: v[0] for k, v in CAPTION_REFS.items()}
    other = {1: "a man on a surfboard in the water", 2: "some animals standing in a field",
             3: "a plate of food on a table"}
    disjoint = {1: "zebra keyboard", 2: "violin umbrella", 3: "tractor snowman"}
    s_same = caption_scores(same, CAPTION_REFS, use_java=False, meteor=False)
    s_other = caption_scores(other, CAPTION_REFS, use_java=False, meteor=False)
    s_dis = caption_scores(disjoint, CAPTION_REFS, use_java=False, meteor=False)
    assert s_same["CIDEr-D"] > s_other["CIDEr-D"] > 0.0
    assert s_dis["CIDEr-D"] == 0.0 and s_dis["Bleu_1"] < 1e-6 and s_dis["ROUGE_L"] == 0.0
    assert s_same["SPICE"] is None and "SPICE_unavailable" in s_same
    assert s_same["tokenizer"] == "python-treebank-fallback"
    assert s_same["METEOR"] is None and "skipped" in s_same["METEOR_unavailable"]


def test_caption_id_checks():
    with pytest.raises(EvalInputError, match="image_id 9"):
        caption_scores({9: "x"}, CAPTION_REFS, use_java=False, meteor=False)
    with pytest.raises(EvalInputError, match="no prediction for image_id"):
        caption_scores({1: "a man"}, CAPTION_REFS, use_java=False, meteor=False)
    out = caption_scores({1: "a man"}, CAPTION_REFS, use_java=False, meteor=False, allow_missing=True)
    assert out["num_images"] == 1 and out["num_missing_predictions"] == 2


PTB_CASES = [
    "A man's (red) hat, isn't it? \"yes\" u.s. 3.5 dogs. cats.",
    "A dog on a t-shirt... at 5:30 p.m. with $3,000 & more!",
    "Two dogs; running-fast / cats. Mr. Smith cannot go. 'quoted' it's",
    "There's a cat that won't sit on the laptop's keyboard!",
    "how many people live in new york city ( nyc ) ?",
    "People are gathered outside the \"Blue Cafe\" in the evening.",
    "",
]


@needs_java
@pytest.mark.parametrize("drop_punct", [True, False])
def test_python_fallback_tokenizer_matches_java_ptb(drop_punct):
    java, name_j = ptb_tokenize(PTB_CASES, use_java=True, drop_punct=drop_punct)
    py, name_p = ptb_tokenize(PTB_CASES, use_java=False, drop_punct=drop_punct)
    assert name_j.startswith("ptb-java") and name_p == "python-treebank-fallback"
    assert py == java
    if drop_punct:
        assert java[0] == "a man 's -lrb- red -rrb- hat is n't it yes u.s. 3.5 dogs cats"


@needs_java
def test_caption_scores_with_java_and_meteor():
    preds = {1: "A man riding a wave on top of a surfboard.", 2: "some animals standing in a field",
             3: "zebra keyboard"}
    out = caption_scores(preds, CAPTION_REFS)
    assert out["tokenizer"].startswith("ptb-java")
    assert 0.0 < out["METEOR"] < 1.0
    fallback = caption_scores(preds, CAPTION_REFS, use_java=False, meteor=False)
    for k in ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr-D"):  # same tokens -> same scores
        assert out[k] == pytest.approx(fallback[k])
    # METEOR of an exact match is 1 - fragmentation penalty 0.5*(1 chunk / 10 matches)^3 -> about 0.9995
    exact = coco_scores({0: ["a man riding a wave on top of a surfboard"], 1: ["two dogs"]},
                        {0: ["a man riding a wave on top of a surfboard"], 1: ["two dogs"]}, cider=False)
    assert exact["METEOR"] > 0.99


def test_caption_without_java_reports_meteor_unavailable(monkeypatch):
    monkeypatch.setenv("UNIMO_EVAL_NO_JAVA", "1")
    java_status.cache_clear()
    try:
        out = caption_scores({k: v[0] for k, v in CAPTION_REFS.items()}, CAPTION_REFS)
    finally:
        monkeypatch.delenv("UNIMO_EVAL_NO_JAVA")
        java_status.cache_clear()
    assert out["METEOR"] is None and "Java" in out["METEOR_unavailable"]
    assert out["tokenizer"] == "python-treebank-fallback"
    assert out["Bleu_4"] > 0.99


# ------------------------------------------------------------------------------------------------------ QG
def test_qg_tokenization_and_grouping():
    assert qg_tokenize("What year did the U.S. declare independence?") == \
        "what year did the u.s. declare independence ?"
    assert qg_tokenize("what year did the u.s. declare independence ?") == \
        "what year did the u.s. declare independence ?"  # already tokenized text is a fixed point
    preds = ["who is y ?", "What is X?", "when was z founded ?"]
    refs = ["what is x ?", "who is y ?", "when was z founded ?"]
    src = ["Sentence one.", "sentence one.", "Sentence two."]
    # grouped: "sentence one." has references {what is x ?, who is y ?} and its *last* prediction "what is x ?";
    # both groups are then exact matches -> BLEU-4 = 1
    grouped = qg_scores(preds, refs, src, meteor=False)
    assert grouped["num_groups"] == 2
    assert grouped["Bleu_4"] == pytest.approx(1.0, abs=1e-6) and grouped["ROUGE_L"] == pytest.approx(1.0)
    # ungrouped: line 1 "who is y ?" vs "what is x ?" shares only "is" and "?"
    single = qg_scores(preds, refs, meteor=False)
    assert single["num_groups"] == 3 and single["Bleu_4"] < grouped["Bleu_4"]


# ---------------------------------------------------------------------------------------------------- CoQA
def test_coqa_normalisation_and_f1():
    # lowercase -> drop punctuation -> drop a/an/the -> collapse whitespace
    assert coqa_normalize("The Cat, a dog!") == "cat dog"
    assert coqa_normalize("An apple's core") == "apples core"
    # gold [big, red, dog], pred [red, dog, barked]: common 2 -> P = R = 2/3 -> F1 = 2/3
    assert coqa_f1("the big red dog", "a red dog barked") == pytest.approx(2 / 3)
    assert coqa_f1("", "") == 1.0 and coqa_f1("", "yes") == 0.0
    assert coqa_f1("the", "a") == 1.0  # both normalise to no tokens


def test_coqa_leave_one_out_averaging():
    # golds g0 "red dog", g1 "dog", g2 "blue cat"; pred "red dog": F1 vs each = 1, 2/3 (P=1/2,R=1), 0
    # leave g0 out -> max(2/3, 0) = 2/3; leave g1 out -> max(1, 0) = 1; leave g2 out -> max(1, 2/3) = 1
    # F1 = (2/3 + 1 + 1) / 3 = 8/9; EM: (0 + 1 + 1) / 3 = 2/3
    s = turn_score(["red dog", "dog", "blue cat"], "red dog")
    assert s["f1"] == pytest.approx(8 / 9) and s["em"] == pytest.approx(2 / 3)
    # a single gold: plain score
    assert turn_score(["dog"], "red dog")["f1"] == pytest.approx(2 / 3)
    out = coqa_scores(["red dog", "yes"], [["red dog", "dog", "blue cat"], ["Yes."]])
    assert out["f1"] == pytest.approx(100 * (8 / 9 + 1) / 2) and out["turns"] == 2


def test_coqa_official_json_domains():
    gold = {("s1", 1): ["red dog", "dog", "blue cat"], ("s1", 2): ["yes"], ("s2", 1): ["no"]}
    sources = {"s1": "cnn", "s2": "reddit"}
    preds = {("s1", 1): "red dog", ("s1", 2): "yes", ("s2", 1): "yes"}
    out = coqa_official(gold, sources, preds)
    # in-domain (cnn): (8/9 + 1)/2; out-of-domain (reddit): 0; overall: (8/9 + 1 + 0)/3
    assert out["by_domain"]["in_domain"]["f1"] == pytest.approx(100 * (8 / 9 + 1) / 2)
    assert out["by_domain"]["out_domain"]["f1"] == 0.0
    assert out["f1"] == pytest.approx(100 * (8 / 9 + 1) / 3)
    with pytest.raises(EvalInputError, match="missing prediction for story 's2' turn 1"):
        coqa_official(gold, sources, {("s1", 1): "x", ("s1", 2): "y"})


# ----------------------------------------------------------------------------------------------------- VQA
@pytest.mark.parametrize("raw,norm", [
    ("Yes.", "yes"),            # period not followed by a digit is deleted
    ("yes!", "yes"),
    ("two", "2"),               # number words -> digits
    ("Two dogs", "2 dogs"),
    ("none", "0"),
    ("the dog", "dog"),         # articles dropped
    ("a man, woman", "man woman"),   # ", " next to a space -> comma deleted
    ("red,blue", "red blue"),   # no space, no digit-comma-digit -> replaced by a space
    ("1,000", "1000"),          # digit-comma-digit -> all punctuation deleted
    ("3.5", "3.5"),             # period followed by a digit is kept
    ("dont", "don't"),          # contractions get their apostrophe back
    ("isnt it", "isn't it"),
    ("t-shirt", "t shirt"),
    ("  Yes\n", "yes"),
])
def test_vqa_normalisation(raw, norm):
    assert vqa_normalize(raw) == norm


def test_vqa_leave_one_out_accuracy():
    # 10 answers, m of them equal to the prediction. Leave-one-out over the 10 humans:
    #   dropping a matching answer (m cases) leaves m-1 matches, dropping another (10-m cases) leaves m
    #   acc = [m * min(1,(m-1)/3) + (10-m) * min(1, m/3)] / 10
    # m=1: (0 + 9/3)/10 = 0.3; m=2: (2*(1/3) + 8*(2/3))/10 = 0.6; m=3: (3*(2/3) + 7)/10 = 0.9; m=4: 1.0
    for m, exp in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]:
        gts = ["yes"] * m + ["no"] * (10 - m)
        assert vqa_accuracy("Yes.", gts) == pytest.approx(exp), m


def test_vqa_gt_processing_asymmetry():
    # ground truths are punctuation-processed only when they disagree (official quirk)
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 3 + ["shirt"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 10) == 0.0


def test_vqa_evaluate_and_results_file(tmp_path):
    anns = {
        1: {"question_id": 1, "answer_type": "yes/no", "question_type": "is the",
            "answers": [{"answer": "yes"}] * 2 + [{"answer": "no"}] * 8},
        2: {"question_id": 2, "answer_type": "number", "question_type": "how many",
            "answers": [{"answer": "2"}] * 10},
        3: {"question_id": 3, "answer_type": "number", "question_type": "how many",
            "answers": [{"answer": "3"}] * 10},
    }
    results = {1: "yes", 2: "two", 3: "4"}
    out = vqa_evaluate(results, anns)
    # per question 0.6, 1.0, 0.0 -> overall 100*1.6/3; number: 100*(1+0)/2; yes/no: 60
    assert out["overall"] == pytest.approx(100 * 1.6 / 3)
    assert out["perAnswerType"] == {"number": pytest.approx(50.0), "yes/no": pytest.approx(60.0)}
    assert out["perQuestionType"]["how many"] == pytest.approx(50.0)
    with pytest.raises(EvalInputError, match="question_id 3"):
        vqa_evaluate({1: "yes", 2: "2"}, anns)
    path = tmp_path / "res.json"
    write_vqa_results(path, results)
    assert json.loads(path.read_text()) == [{"question_id": 1, "answer": "yes"},
                                            {"question_id": 2, "answer": "two"},
                                            {"question_id": 3, "answer": "4"}]
    assert load_vqa_results(path) == results


# ----------------------------------------------------------------------------------------------- retrieval
def test_retrieval_3x3_by_hand():
    s = np.array([[0.9, 0.1, 0.5],    # caption 0 (image 0): image 0 ranks 1st
                  [0.8, 0.3, 0.2],    # caption 1 (image 1): 0.8 > 0.3 -> 2nd
                  [0.7, 0.6, 0.4]])   # caption 2 (image 2): 0.7, 0.6 > 0.4 -> 3rd
    # text retrieval, column by column: image 0 [.9,.8,.7] caption 0 first; image 1 [.1,.3,.6] caption 1
    # second; image 2 [.5,.2,.4] caption 2 second
    out = recall_at_k(s, [0, 1, 2])
    assert out["img_recall@1"] == pytest.approx(1 / 3) and out["img_recall@5"] == 1.0
    assert out["img_avg_rank"] == pytest.approx((1 + 2 + 3) / 3)
    assert out["cap_recall@1"] == pytest.approx(1 / 3) and out["cap_recall@10"] == 1.0
    assert out["cap_avg_rank"] == pytest.approx((1 + 2 + 2) / 3)
    assert out["avg_recall@1"] == pytest.approx(1 / 3)
    # mean of the six recalls: (1/3 + 1 + 1 + 1/3 + 1 + 1) / 6 = 7/9
    assert out["mean_recall"] == pytest.approx(7 / 9)
    assert out["key_eval"] == "avg_recall@1"


def test_retrieval_multi_caption_min_rank_and_ties():
    # 4 captions, 2 images; captions 0,1 -> image 0; captions 2,3 -> image 1
    s = np.array([[0.5, 0.5],    # tie: the official reversed argsort puts the larger index (image 1) first
                  [0.1, 0.9],
                  [0.2, 0.8],
                  [0.3, 0.4]])
    out = recall_at_k(s, [0, 0, 1, 1])
    # image ranks: caption 0 -> 1 (tie lost), caption 1 -> 1, caption 2 -> 0, caption 3 -> 0: R@1 = 2/4
    assert out["img_recall@1"] == pytest.approx(0.5)
    # image 0 column [.5,.1,.2,.3]: caption 0 is first -> best rank 0; image 1 column [.5,.9,.8,.4]:
    # caption 2 (0.8) is second, caption 3 fourth -> best rank 1
    assert out["cap_recall@1"] == pytest.approx(0.5)
    assert out["cap_avg_rank"] == pytest.approx((1 + 2) / 2)


def _naive_recall(s: np.ndarray, gt: np.ndarray) -> dict:
    """Loop version of the definition (reversed stable argsort as the ranking)."""
    img_r = [int(np.where(np.argsort(s[c], kind="stable")[::-1] == gt[c])[0][0]) for c in range(len(gt))]
    cap_r = []
    for i in range(s.shape[1]):
        order = np.argsort(s[:, i], kind="stable")[::-1]
        cap_r.append(min(int(np.where(order == c)[0][0]) for c in np.flatnonzero(gt == i)))
    return {"img": np.array(img_r), "cap": np.array(cap_r)}


def test_retrieval_matches_naive_loops_with_ties():
    rng = np.random.default_rng(0)
    n_img = 23
    gt = np.repeat(np.arange(n_img), 5)
    rng.shuffle(gt)
    s = rng.integers(0, 6, size=(len(gt), n_img)).astype(np.float32)  # many ties on purpose
    out = recall_at_k(s, gt)
    ref = _naive_recall(s, gt)
    for k in (1, 5, 10):
        assert out[f"img_recall@{k}"] == pytest.approx(np.mean(ref["img"] < k))
        assert out[f"cap_recall@{k}"] == pytest.approx(np.mean(ref["cap"] < k))
    assert out["img_avg_rank"] == pytest.approx(np.mean(ref["img"] + 1))
    assert out["cap_avg_rank"] == pytest.approx(np.mean(ref["cap"] + 1))


def test_retrieval_bad_inputs():
    with pytest.raises(EvalInputError, match="image 1 has no ground-truth caption"):
        recall_at_k(np.zeros((2, 2)), [0, 0])
    with pytest.raises(EvalInputError, match="caption 1, image 0"):
        recall_at_k(np.array([[1.0, 0.0], [np.nan, 1.0]]), [0, 1])
    with pytest.raises(EvalInputError, match="3 entries"):
        recall_at_k(np.zeros((2, 2)), [0, 1, 1])
    with pytest.raises(EvalInputError, match="outside"):
        recall_at_k(np.zeros((2, 2)), [0, 2])


def test_rouge_sentence_markers_are_not_words():
    # without --cnndm the markers are dropped: "a <S_SEP> b" scores like "a b"
    assert rouge_scores(["alpha bravo"], ["alpha <S_SEP> bravo"])["rouge-2"] == pytest.approx(1.0)


def test_meteor_failure_is_reported_not_invented(monkeypatch):
    import unimo.eval.coco as coco

    class DeadJVM:
        def compute_score(self, gts, res):
            raise ValueError("could not convert string to float: ''")

    monkeypatch.setattr(coco, "_meteor_scorer", lambda: DeadJVM())
    monkeypatch.setattr(coco, "java_status", lambda: (True, "java"))
    out = coco_scores({0: ["a b c"]}, {0: ["a b c"]}, cider=False)
    assert out["METEOR"] is None and "METEOR failed: ValueError" in out["METEOR_unavailable"]


def test_mcc_rejects_continuous_values():
    with pytest.raises(EvalInputError, match="class labels"):
        matthews_corr([0.5, 0.25], [1.0, 0.0])


def test_rouge_cached_stemmer_equals_rouge_score_default():
    from rouge_score import rouge_scorer

    preds = ["Police arrested running suspects on Tuesday.", "The dogs were barking loudly at cats"]
    refs = ["police arrest suspects who ran", "dog barks at the cat"]
    ours = rouge_scores(preds, refs)
    ref_scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for ours_key, rs_key in (("rouge-1", "rouge1"), ("rouge-2", "rouge2"), ("rouge-l", "rougeL")):
        expected = sum(ref_scorer.score(r, p)[rs_key].fmeasure for p, r in zip(preds, refs)) / 2
        assert ours[ours_key] == pytest.approx(expected)


@needs_java
def test_caption_scores_equal_pycocoevalcap_pipeline():
    """Independent path: pycocoevalcap's own PTBTokenizer wrapper + scorers, fed the COCOEvalCap way."""
    import os

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer import ptbtokenizer

    if not os.access(os.path.dirname(ptbtokenizer.__file__), os.W_OK):
        pytest.skip("pycocoevalcap's PTBTokenizer writes its temp file next to itself; not writable here")
    preds = {1: "A man riding a wave on top of a surfboard!", 2: "some animals (giraffes) standing in a field",
             3: "a plate of food, with eggs."}
    ours = caption_scores(preds, CAPTION_REFS, meteor=False)
    tok = ptbtokenizer.PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in CAPTION_REFS.items()})
    res = tok.tokenize({k: [{"caption": c}] for k, c in preds.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [ours[f"Bleu_{i}"] for i in range(1, 5)] == pytest.approx(bleu)
    assert ours["ROUGE_L"] == pytest.approx(Rouge().compute_score(gts, res)[0])
    assert ours["CIDEr-D"] == pytest.approx(Cider().compute_score(gts, res)[0])
