"""Summarise a demo run: one results table (learned model vs the trivial baseline of each task), loss curves and a
sheet of example predictions on demo images, as PNG files a person can look at.

usage: python -m unimo.utils.demo_summary --output demo_output --world demo_data/world

Writes ``results.md`` and ``results.json`` (``"kind": "unimo-demo-summary"``, which ``python -m unimo.report`` skips:
it is a summary of the runs below it, not a run) atomically, then the PNGs.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .io import atomic_write

KIND = "unimo-demo-summary"  # unimo.report.DEMO_SUMMARY_KIND

# (task dir, metric, baseline metric, blind-control metric, label); values as written by the tasks' evaluate().
# The blind control is the same model on shuffled images (captions scored against another image's references):
# the gap to it is what the model reads from the image; for retrieval, chance is already the blind score.
ROWS = [
    ("img2txt", "CIDEr-D", "constant_caption_CIDEr-D", "CIDEr-D_shuffled_images",
     "COCO-style captioning, object tags: CIDEr-D vs a constant caption"),
    ("img2txt_notags", "CIDEr-D", "constant_caption_CIDEr-D", "CIDEr-D_shuffled_images",
     "COCO-style captioning, no tags: CIDEr-D vs a constant caption"),
    ("vqa", "vqa_acc", "majority_answer_acc", "vqa_acc_shuffled_images",
     "VQA v2-style: VQA accuracy vs the majority answer"),
    ("ve", "acc", "majority_class_acc", "acc_shuffled_images", "SNLI-VE-style: accuracy vs the majority class"),
    ("retrieval", "avg_recall@1", "chance_recall@1", None, "Flickr-style retrieval: mean R@1 vs chance"),
]


def _load(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def results_table(output: str) -> tuple[str, dict[str, Any]]:
    lines = ["| task | learned | trivial baseline | same model, shuffled images | split |", "|---|---|---|---|---|"]
    data: dict[str, Any] = {}
    pre = os.path.join(output, "pretrain", "results.json")
    if os.path.exists(pre):
        data["pretrain"] = _load(pre)
    for task, metric, base, blind, label in ROWS:
        path = os.path.join(output, task, "results.json")
        if not os.path.exists(path):
            lines.append(f"| {label} | not run | | | |")
            continue
        res = _load(path)
        split = "test" if res["metrics"].get("test") else "dev"
        m = res["metrics"].get(split, {})
        data[task] = {"split": split, metric: m.get(metric), base: m.get(base)}
        if blind:
            data[task][blind] = m.get(blind)
        fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
        lines.append(f"| {label} | {fmt(m.get(metric))} | {fmt(m.get(base))} | "
                     f"{fmt(m.get(blind)) if blind else '-'} | {split} |")
    return "\n".join(lines) + "\n", data


# captioning runs whose captions are checked against the scenes (task dir, label)
CAPTIONERS = [("img2txt", "with object tags"), ("img2txt_notags", "without object tags")]


def scene_objects(world: str) -> tuple[dict[str, list[tuple[str, str]]], list[str], list[str]]:
    """({image id: [(colour, shape), ...]}, shapes, colours) of a demo world: its scenes re-derived from the
    manifest's seed and options (``preprocess.demo_world.iter_scene_specs``, the scenes the build rendered)."""
    from preprocess.demo_world import iter_scene_specs

    manifest = _load(os.path.join(world, "manifest.json"))
    opts = manifest["options"]
    scenes = {str(s.image_id): [(o.colour, o.shape) for o in s.objects]
              for s in iter_scene_specs(manifest["seed"], opts["num_scenes"], opts["image_size"])}
    vocab = manifest["vocabulary"]
    return scenes, list(vocab["shapes"]), list(vocab["colours"])


def _captions_file(output: str, task: str) -> tuple[str, str] | tuple[None, None]:
    for split in ("test", "dev"):
        path = os.path.join(output, task, f"captions_{split}_results.json")
        if os.path.exists(path):
            return path, split
    return None, None


def grounding_table(output: str, world: str) -> tuple[str, dict[str, Any]]:
    """How many of the shapes / colour-shape pairs the captions name are in the scene (demo ground truth)."""
    from ..eval.shapes import shape_mentions

    lines = ["| captioner | shape nouns in the scene | colour-shape pairs in the scene | captions naming only scene "
             "shapes | scene shapes named | split |", "|---|---|---|---|---|---|"]
    data: dict[str, Any] = {}
    if not os.path.exists(os.path.join(world, "manifest.json")):
        return "", data
    scenes, shapes, colours = scene_objects(world)
    for task, label in CAPTIONERS:
        path, split = _captions_file(output, task)
        if path is None:
            continue
        captions = {str(r["image_id"]): r["caption"] for r in _load(path)}
        m = shape_mentions(captions, scenes, shapes, colours)
        data[task] = {"split": split, **m}
        lines.append(f"| {label} | {m['shape_precision']:.3f} ({m['shape_nouns']}) | {m['pair_precision']:.3f} "
                     f"({m['pairs']}) | {m['captions_shapes_right']:.3f} | {m['shape_recall']:.3f} | "
                     f"{split}, {m['captions']} images |")
    if not data:
        return "", data
    return "\n".join(lines) + "\n", data


def loss_curves(output: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ["pretrain"] + [r[0] for r in ROWS] if os.path.exists(os.path.join(output, t, "train_log.jsonl"))]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        series: dict[str, list[tuple[int, float]]] = {}
        with open(os.path.join(output, task, "train_log.jsonl"), encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                for k, v in rec.items():
                    if (k == "loss" or k.startswith("loss_")) and isinstance(v, (int, float)):
                        series.setdefault(k, []).append((rec["step"], v))
        for k, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        values = [v for pts in series.values() for _, v in pts]
        if values and min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")  # pre-training: feature regression (~1e3) next to the cross-entropies (~1)
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def example_sheet(output: str, world: str, path: str, n: int = 6) -> None:
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps_path = next((os.path.join(output, "img2txt", f) for f in ("captions_test_results.json",
                                                                     "captions_dev_results.json")
                      if os.path.exists(os.path.join(output, "img2txt", f))), None)
    if caps_path is None:
        return
    captions = {str(r["image_id"]): r["caption"] for r in _load(caps_path)}
    plain_path, _ = _captions_file(output, "img2txt_notags")
    plain = {str(r["image_id"]): r["caption"] for r in _load(plain_path)} if plain_path else {}
    answers: dict[str, list[str]] = {}
    vqa_pred = os.path.join(output, "vqa", "predictions_examples.json")
    if os.path.exists(vqa_pred):
        for r in _load(vqa_pred):
            answers.setdefault(str(r["image_id"]), []).append(f"Q: {r['question']} A: {r['answer']}")
    ids = list(captions)[:n]
    fig, axes = plt.subplots(1, len(ids), figsize=(3.2 * len(ids), 5.0), squeeze=False)
    for ax, image_id in zip(axes[0], ids):
        img = cv2.imread(os.path.join(world, "images", f"demo_{int(image_id):012d}.jpg"))
        if img is not None:
            ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        lines = [f"tags: {captions[image_id]}", f"no tags: {plain[image_id]}"] if image_id in plain \
            else [captions[image_id]]
        text = "\n".join(lines + answers.get(image_id, [])[:2])
        ax.set_title(f"image {image_id}", fontsize=8)
        ax.set_xlabel(_wrap(text, 38), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the whole caption + answers below each image, never clipped
    plt.close(fig)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="demo_output")
    ap.add_argument("--world", default="demo_data/world")
    args = ap.parse_args(argv)
    table, data = results_table(args.output)
    grounding, shapes = grounding_table(args.output, args.world)
    if grounding:
        data["caption_grounding"] = shapes
        table += ("\nCaptions against the scene (demo ground truth): fraction of the generated shape nouns and "
                  "colour-shape pairs that are in the image (count in brackets), captions whose shapes are all "
                  "right, and the scene's shapes a caption names on average.\n\n" + grounding)
    with atomic_write(os.path.join(args.output, "results.md")) as f:
        f.write("# UNIMO demo results (tiny model, demo world)\n\n" + table)
    with atomic_write(os.path.join(args.output, "results.json")) as f:
        json.dump({"kind": KIND, **data}, f, indent=2)
    loss_curves(args.output, os.path.join(args.output, "loss_curves.png"))
    example_sheet(args.output, args.world, os.path.join(args.output, "examples.png"))
    print(table)
    print(f"written: {args.output}/results.md, results.json, loss_curves.png, examples.png")


if __name__ == "__main__":
    main()
