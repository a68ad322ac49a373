"""Python inference API: a fine-tuned task model + its image features, in three lines.

    from unimo.predict import UnimoCaptioner
    cap = UnimoCaptioner.from_pretrained("output/img2txt/coco/best", features="data/coco_features")
    print(cap.generate(["391895"]))            # {"391895": "a man riding a bike ..."}

``UnimoVQA.answer(image_ids, questions)``, ``UnimoVisualEntailment.predict(image_ids, hypotheses)`` and
``UnimoRetriever.rank_images(caption, image_ids, top_k)`` / ``rank_captions(image_id, captions, top_k)`` work
the same way. ``features=`` is a feature store (``python -m preprocess.features convert`` /
``python -m preprocess.extract_features``); ``images=`` a folder of raw images whose regions are extracted on
first use with an extractor backend (``backend="classic"|"grid"``, ``extractor_options={"weights": ...}``).

Inputs are built by the fine-tuning tasks themselves (``MultimodalTask.text_ids`` / ``pack``,
``CaptionTask.generate`` with its beam-search settings), so a prediction equals what the task's evaluation
computes for the same image and text.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import paddle
from tqdm import tqdm

from ..registry import get_spec, get_task_class, task_names
from ..finetune.tasks.multimodal import VisualEntailmentTask
from ..model.configuration import CONFIG_NAME, UnimoConfig
from ..model.modeling import (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, UnimoForGeneration, UnimoForRetrieval,
                              UnimoForVisualEntailment, UnimoForVQA, UnimoPretrainedModel, find_weights)
from ..reader.features import FeatureStore
from ..reader.image_batch import ImageBatcher
from ..tokenizer import BPE_FILE, ENCODER_FILE, VOCAB_FILE, UnimoTokenizer
from .errors import ModelLoadError, PredictError, UnknownImageError
from .images import ImageFolderFeatures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DICT_FILES = (ENCODER_FILE, BPE_FILE, VOCAB_FILE)
ANSWER_VOCAB_NAME = "answer_vocab.json"
# architecture recorded by save_pretrained -> the predict command that serves it (from unimo.registry)
ARCHITECTURE_COMMAND = {spec.model_class: spec.predict_command for spec in map(get_spec, task_names())
                        if spec.predict_command}


# ------------------------------------------------------------------------------------------------ loading helpers
def load_task_model(model_dir: str, model_cls: type, command: str, trust_pickle: bool = False
                    ) -> UnimoPretrainedModel:
    """``model_cls.from_pretrained(model_dir)`` in eval mode, refusing folders of another task's model. A
    ``model_state.pdparams`` is read through the restricted unpickler unless ``trust_pickle``."""
    if not os.path.isdir(model_dir):
        raise ModelLoadError(f"model directory not found: {model_dir}")
    hint = "expected a folder written by save_pretrained, such as <output_dir>/best of a fine-tuning run"
    if not os.path.isfile(os.path.join(model_dir, CONFIG_NAME)):
        raise ModelLoadError(f"{model_dir}: no {CONFIG_NAME} ({hint})")
    if find_weights(model_dir) is None:
        raise ModelLoadError(f"{model_dir}: no {SAFE_WEIGHTS_NAME} or {WEIGHTS_NAME} ({hint})")
    try:
        config = UnimoConfig.from_pretrained(model_dir)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    arch = config.extra.get("architecture")
    if arch is not None and arch != model_cls.__name__:
        other = ARCHITECTURE_COMMAND.get(arch)
        hint = f"; use `python -m unimo.predict {other}`" if other else ""
        raise ModelLoadError(f"{model_dir} holds a {arch} model (architecture in {CONFIG_NAME}), but `{command}` "
                             f"needs a fine-tuned {model_cls.__name__}{hint}")
    model = model_cls.from_pretrained(model_dir, config=config, trust_pickle=trust_pickle)
    missing = model.load_report.missing
    if missing:  # e.g. a pre-trained backbone without the task head: predictions would be random
        raise ModelLoadError(f"{model_dir}: the checkpoint lacks {len(missing)} weight(s) of {model_cls.__name__} "
                             f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); `{command}` needs a "
                             "model fine-tuned for this task")
    model.eval()
    return model


def resolve_vocab_dir(vocab_dir: str | None, model_dir: str | None = None) -> str:
    """The tokenizer dictionary folder: ``vocab_dir``, else the model folder, else ``model_files/dict`` (current
    folder, then the repository)."""
    def complete(d: str) -> bool:
        return all(os.path.isfile(os.path.join(d, f)) for f in DICT_FILES)

    if vocab_dir:
        if not complete(vocab_dir):
            missing = [f for f in DICT_FILES if not os.path.isfile(os.path.join(vocab_dir, f))]
            raise ModelLoadError(f"vocab dir {vocab_dir}: missing {', '.join(missing)}")
        return vocab_dir
    for cand in (model_dir, "model_files/dict", os.path.join(REPO_ROOT, "model_files", "dict")):
        if cand and complete(cand):
            return cand
    raise ModelLoadError(f"no tokenizer dictionary ({', '.join(DICT_FILES)}) in the model folder or model_files/dict; "
                         "pass --vocab-dir (bash model_files/download_dict.sh fetches it)")


def load_task_config(config: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A task YAML (``script/<task>/<dataset>/conf.yaml``, ``base:`` followed) or a dict; ``{}`` for None."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    from ..utils.config import load_config

    return load_config(str(config))


def _data_path(task_config: Mapping[str, Any], path: str) -> str:
    """Relative paths of a task YAML are tried as given, then under its ``data_dir`` (as the tasks do)."""
    if not os.path.isabs(path) and task_config.get("data_dir") and not os.path.exists(path):
        return os.path.join(task_config["data_dir"], path)
    return path


def open_features(features: str | os.PathLike | Any | None, images: str | os.PathLike | None, feature_dim: int,
                  task_config: Mapping[str, Any] | None = None, backend: str = "classic",
                  image_id_regex: str | None = None, recursive: bool = False,
                  extractor_options: Mapping[str, Any] | None = None) -> tuple[Any, bool]:
    """The image source and whether the caller owns it (a temporary image-folder extraction to close)."""
    if features is not None and images is not None:
        raise PredictError("give either features (a feature store) or images (a folder of images), not both")
    if images is not None:
        opts = dict(extractor_options or {})
        dim = opts.pop("feature_dim", None) or feature_dim
        return ImageFolderFeatures(images, backend=backend, feature_dim=int(dim), image_id_regex=image_id_regex,
                                   recursive=recursive, **opts), True
    if features is None:
        store = (task_config or {}).get("feature_store")
        if not store:
            raise PredictError("no image features: pass --features STORE (a feature store) or --images DIR")
        features = _data_path(task_config or {}, str(store))
    if isinstance(features, (str, os.PathLike)):
        return FeatureStore.open(features), False
    return features, False


def load_answer_vocab(path: str) -> list[str]:
    """``answer_vocab.json`` of ``python -m preprocess.datasets vqa-v2``: a JSON list of unique answer strings."""
    import json

    if not os.path.isfile(path):
        raise FileNotFoundError(f"answer vocabulary not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredictError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise PredictError(f"{path}: expected a non-empty JSON list of answers")
    seen: dict[str, int] = {}
    for i, a in enumerate(data):
        if not isinstance(a, str):
            raise PredictError(f"{path}: entry {i} is {a!r:.40}, expected a string")
        if a in seen:
            raise PredictError(f"{path}: answer {a!r} appears twice (entries {seen[a]} and {i})")
        seen[a] = i
    return list(data)


def resolve_answer_vocab(answer_vocab: str | None, model_dir: str, task_config: Mapping[str, Any]) -> str:
    """``answer_vocab``, else ``<model_dir>/answer_vocab.json``, else the task YAML's ``answer_vocab``."""
    if answer_vocab:
        return answer_vocab
    beside = os.path.join(model_dir, ANSWER_VOCAB_NAME)
    if os.path.isfile(beside):
        return beside
    if task_config.get("answer_vocab"):
        return _data_path(task_config, str(task_config["answer_vocab"]))
    raise PredictError(f"no answer vocabulary: {beside} does not exist; pass --answer-vocab (the "
                       f"{ANSWER_VOCAB_NAME} written by `python -m preprocess.datasets vqa-v2`)")


def _pairs(image_ids: str | int | Sequence[Any], texts: str | Sequence[str], what: str) -> list[tuple[str, str]]:
    """Pair image ids with texts: equal lengths zip, and a single image or a single text is broadcast."""
    imgs = [str(image_ids)] if isinstance(image_ids, (str, int)) else [str(i) for i in image_ids]
    txts = [texts] if isinstance(texts, str) else list(texts)
    for t in txts:
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"each {what} must be a non-empty string, got {t!r:.60}")
    if not imgs or not txts:
        raise ValueError(f"need at least one image id and one {what}")
    if len(imgs) == 1:
        imgs = imgs * len(txts)
    elif len(txts) == 1:
        txts = txts * len(imgs)
    elif len(imgs) != len(txts):
        raise ValueError(f"{len(imgs)} image ids but {len(txts)} {what}s: give one of either, or equal numbers")
    return list(zip(imgs, txts))


def describe_source(source: Any) -> str:
    """Short name of an image source for messages."""
    if isinstance(source, FeatureStore):
        return f"feature store {source.path}"
    if isinstance(source, ImageFolderFeatures):
        some = ", ".join(repr(i) for i in source.image_ids()[:3])
        return (f"image folder {source.images_dir} (its ids: {some}, ...; ids are file stems unless "
                "--image-id-regex picks a part)")
    return repr(source)


def _top(scores: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties keep input order); all of them for k None."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if k is None:
        return order
    if int(k) < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    return order[:int(k)]


# ------------------------------------------------------------------------------------------------ predictors
class _Predictor:
    """Shared half: the model, the tokenizer, the image source and the fine-tuning task that builds inputs."""

    command = ""
    task_name = ""
    model_class: type = UnimoPretrainedModel
    default_batch_size = 32
    output_field = "logits"  # what _forward reads from the model's output

    def __init__(self, model: UnimoPretrainedModel, tokenizer: UnimoTokenizer, features: Any, *,
                 task_config: Mapping[str, Any] | None = None, batch_size: int | None = None,
                 max_img_len: int | None = None, progress: bool = True, **settings: Any) -> None:
        if not isinstance(model, self.model_class):
            raise ModelLoadError(f"`{self.command}` needs a {self.model_class.__name__}, got {type(model).__name__}")
        self.model = model
        model.eval()
        self.tokenizer = tokenizer
        self.features = FeatureStore.open(features) if isinstance(features, (str, os.PathLike)) else features
        self._owns_features = False
        expected = int(model.config.image_embedding_size)
        if int(self.features.feature_dim) != expected:
            raise PredictError(f"{describe_source(self.features)}: features have {self.features.feature_dim} "
                               f"dimensions, the model expects {expected} (image_embedding_size in its "
                               f"{CONFIG_NAME})")
        task_cls = get_task_class(self.task_name)
        raw = dict(task_config or {})
        known = task_cls.config_class.field_types()
        unknown = sorted(k for k in settings if k not in known)
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)} for {type(self).__name__}; known: "
                            f"{', '.join(sorted(known))}")
        # the training YAML's task keys (its file paths and split keys do not matter here), then the settings
        values = {k: v for k, v in raw.items() if k in known}
        values.update({k: v for k, v in settings.items() if v is not None})
        if max_img_len is None:  # the training YAML's value, else the model config's
            max_img_len = raw.get("max_img_len") or model.config.max_img_len
        bs = int(batch_size or self.default_batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        values.update(task=raw.get("task") or self.task_name, do_train=False, max_img_len=int(max_img_len),
                      batch_size=bs, eval_batch_size=bs, disable_tqdm=not progress, feature_store=None)
        if "score_batch_size" in known:
            values["score_batch_size"] = bs
        cfg = task_cls.config_class.from_values(values)
        self.cfg, self.progress = cfg, progress
        self.task = task_cls(cfg, tokenizer, ".")
        # The task reads images through its ImageBatcher (built from cfg.feature_store, a path); ours may be an
        # open store or an image folder, so hand it over directly.
        self.task.images = ImageBatcher(self.features, cfg.max_img_len, cfg.conf_threshold, cfg.min_boxes,
                                         cfg.max_boxes, cfg.fixed_boxes)
        # a captioner trained with object tags (the official COCO recipe; object_tags in --config) reads them from
        # the features' object predictions: the training tag file need not list the images predicted here
        if getattr(cfg, "object_tags", False) and not settings.get("object_tag_file"):
            self.task.use_store_tags(self.features)

    @classmethod
    def from_pretrained(cls, model_dir: str, features: str | os.PathLike | Any | None = None,
                        images: str | os.PathLike | None = None, *, vocab_dir: str | None = None,
                        config: str | Mapping[str, Any] | None = None, backend: str = "classic",
                        image_id_regex: str | None = None, recursive: bool = False,
                        extractor_options: Mapping[str, Any] | None = None, batch_size: int | None = None,
                        max_img_len: int | None = None, progress: bool = True, trust_pickle: bool = False,
                        **settings: Any) -> "_Predictor":
        """Load a fine-tuned model folder (``save_pretrained`` layout) with a feature store (``features``) or an
        image folder (``images``, extracted on first use with ``backend``). ``config`` is the training YAML (or a
        dict) whose settings (max_img_len, decoding, ...) apply; ``settings`` override single task settings
        (e.g. ``beam_size=3``). ``trust_pickle``: read a ``model_state.pdparams`` with Paddle's unrestricted
        loader (only for checkpoints from a trusted source; ``model.safetensors`` needs nothing)."""
        model = load_task_model(model_dir, cls.model_class, cls.command, trust_pickle=trust_pickle)
        task_config = load_task_config(config)
        tokenizer = UnimoTokenizer.from_pretrained(resolve_vocab_dir(vocab_dir, model_dir),
                                                   do_lower_case=bool(task_config.get("do_lower_case", False)))
        source, owned = open_features(features, images, int(model.config.image_embedding_size), task_config,
                                      backend, image_id_regex, recursive, extractor_options)
        try:
            out = cls(model, tokenizer, source, task_config=task_config, batch_size=batch_size,
                      max_img_len=max_img_len, progress=progress, **settings)
        except BaseException:
            if owned:
                source.close()
            raise
        out._owns_features = owned
        return out

    # -- images
    def image_ids(self) -> list[str]:
        """Every image id the feature store / image folder has."""
        return list(self.features.image_ids())

    def check_images(self, image_ids: Iterable[Any]) -> list[str]:
        """``image_ids`` as strings; raises :class:`UnknownImageError` for ids the source lacks and extracts
        the needed regions of an image folder (with a progress bar)."""
        ids = [str(i) for i in image_ids]
        unique = list(dict.fromkeys(ids))
        missing = [i for i in unique if i not in self.features]
        if missing:
            raise UnknownImageError(missing, describe_source(self.features), len(unique))
        if hasattr(self.features, "prepare"):
            self.features.prepare(unique, progress=self.progress)
        return ids

    # -- model
    def _forward(self, image_ids: Sequence[str], texts: Sequence[list[int]], desc: str) -> np.ndarray:
        """The head's output (the ``output_field`` of the model's output: logits, or retrieval scores) for each
        (image, text ids) pair, batched through ``MultimodalTask.pack``."""
        bs = self.cfg.batch_size
        outs = []
        with paddle.no_grad():
            for i in tqdm(range(0, len(texts), bs), desc=desc, disable=not self.progress):
                batch = self.task.pack(image_ids[i:i + bs], texts[i:i + bs])
                out = self.model(**self.task.to_tensors(batch))
                outs.append(getattr(out, self.output_field).numpy())
        return np.concatenate(outs, axis=0) if outs else np.zeros((0,), np.float32)

    def close(self) -> None:
        """Delete temporary image features (image-folder sources opened by ``from_pretrained``)."""
        if self._owns_features and hasattr(self.features, "close"):
            self.features.close()

    def __enter__(self) -> "_Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UnimoCaptioner(_Predictor):
    """Image captioning with a fine-tuned ``UnimoForGeneration`` (``CaptionTask``'s beam search: beam_size,
    max_out_len, min_out_len, length_penalty, trigram_blocking)."""

    command, task_name, model_class, default_batch_size = "caption", "img2txt", UnimoForGeneration, 8

    def generate(self, image_ids: str | int | Sequence[Any]) -> dict[str, str]:
        """``{image_id: caption}`` in input order (an id given twice is captioned once)."""
        ids = self.check_images([image_ids] if isinstance(image_ids, (str, int)) else image_ids)
        return self.task.generate(self.model, list(dict.fromkeys(ids)))


class UnimoVQA(_Predictor):
    """VQA with a fine-tuned ``UnimoForVQA``: the answer is the argmax over the answer vocabulary, its score the
    sigmoid of the logit (the head is trained with BCE on soft VQA scores, so it estimates the VQA accuracy)."""

    command, task_name, model_class = "vqa", "vqa", UnimoForVQA

    def __init__(self, model: UnimoForVQA, tokenizer: UnimoTokenizer, features: Any, answers: Sequence[str],
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, features, **kwargs)
        self.answers = list(answers)
        if len(self.answers) != model.num_answers:
            raise PredictError(f"the answer vocabulary has {len(self.answers)} answers but the model's head has "
                               f"{model.num_answers} outputs: pass the answer_vocab.json the model was trained with")

    @classmethod
    def from_pretrained(cls, model_dir: str, features: Any = None, images: Any = None, *,
                        answer_vocab: str | None = None, config: str | Mapping[str, Any] | None = None,
                        **kwargs: Any) -> "UnimoVQA":
        """As :meth:`_Predictor.from_pretrained`; ``answer_vocab`` defaults to ``<model_dir>/answer_vocab.json``,
        then the YAML's ``answer_vocab``."""
        task_config = load_task_config(config)
        if not os.path.isdir(model_dir):
            raise ModelLoadError(f"model directory not found: {model_dir}")
        answers = load_answer_vocab(resolve_answer_vocab(answer_vocab, model_dir, task_config))
        return super().from_pretrained(model_dir, features, images, config=task_config, answers=answers, **kwargs)

    def answer(self, image_ids: str | int | Sequence[Any], questions: str | Sequence[str],
               question_ids: Sequence[Any] | None = None, top_k: int = 5) -> list[dict[str, Any]]:
        """One record per (image, question) pair: ``{"question_id"?, "image_id", "question", "answer", "score",
        "top_answers": [{"answer", "score"}, ...]}``. A single image or question is paired with every other."""
        pairs = _pairs(image_ids, questions, "question")
        if question_ids is not None and len(question_ids) != len(pairs):
            raise ValueError(f"{len(question_ids)} question ids for {len(pairs)} questions")
        ids = self.check_images([p[0] for p in pairs])
        logits = self._forward(ids, [self.task.text_ids(q, None) for _, q in pairs], "vqa").astype(np.float64)
        probs = 1.0 / (1.0 + np.exp(-logits))
        out = []
        for row, (image_id, question) in enumerate(pairs):
            top = _top(logits[row], top_k)
            rec: dict[str, Any] = {} if question_ids is None else {"question_id": question_ids[row]}
            rec.update(image_id=image_id, question=question, answer=self.answers[int(top[0])],
                       score=float(probs[row, top[0]]),
                       top_answers=[{"answer": self.answers[int(j)], "score": float(probs[row, j])} for j in top])
            out.append(rec)
        return out


class UnimoVisualEntailment(_Predictor):
    """SNLI-VE with a fine-tuned ``UnimoForVisualEntailment``: softmax over entailment / neutral / contradiction."""

    command, task_name, model_class = "ve", "visual_entailment", UnimoForVisualEntailment
    labels = tuple(VisualEntailmentTask.LABELS)

    def predict(self, image_ids: str | int | Sequence[Any], hypotheses: str | Sequence[str],
                pair_ids: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """One record per (image, hypothesis): ``{"pair_id"?, "image_id", "hypothesis", "label", "probs":
        {label: p}}``."""
        if self.model.num_labels != len(self.labels):
            raise PredictError(f"the model has {self.model.num_labels} labels, SNLI-VE has {len(self.labels)}")
        pairs = _pairs(image_ids, hypotheses, "hypothesis")
        if pair_ids is not None and len(pair_ids) != len(pairs):
            raise ValueError(f"{len(pair_ids)} pair ids for {len(pairs)} hypotheses")
        ids = self.check_images([p[0] for p in pairs])
        logits = self._forward(ids, [self.task.text_ids(h, None) for _, h in pairs], "ve").astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        out = []
        for row, (image_id, hypothesis) in enumerate(pairs):
            rec: dict[str, Any] = {} if pair_ids is None else {"pair_id": pair_ids[row]}
            rec.update(image_id=image_id, hypothesis=hypothesis, label=self.labels[int(np.argmax(logits[row]))],
                       probs={name: float(p) for name, p in zip(self.labels, probs[row])})
            out.append(rec)
        return out


class UnimoRetriever(_Predictor):
    """Image-text retrieval with a fine-tuned ``UnimoForRetrieval`` (a cross-encoder: every pair is scored)."""

    command, task_name, model_class, default_batch_size = "retrieve", "retrieval", UnimoForRetrieval, 128
    output_field = "scores"

    def score(self, image_ids: Sequence[Any], captions: Sequence[str]) -> np.ndarray:
        """Match scores [len(captions), len(image_ids)] (float32)."""
        if isinstance(image_ids, (str, int)) or isinstance(captions, str):
            raise TypeError("score() takes a list of image ids and a list of captions")
        for c in captions:
            if not isinstance(c, str) or not c.strip():
                raise ValueError(f"each caption must be a non-empty string, got {c!r:.60}")
        ids = self.check_images(image_ids)
        texts = [self.task.text_ids(c, None) for c in captions]
        pair_imgs = [i for _ in texts for i in ids]
        pair_txts = [t for t in texts for _ in ids]
        scores = self._forward(pair_imgs, pair_txts, "retrieve")
        return scores.reshape(len(texts), len(ids)).astype(np.float32)

    def rank_images(self, caption: str, image_ids: Sequence[Any] | None = None,
                    top_k: int | None = 5) -> list[dict[str, Any]]:
        """Images (all of the source for None) best first for ``caption``: ``[{"image_id", "score"}]``."""
        ids = [str(i) for i in (self.image_ids() if image_ids is None else image_ids)]
        row = self.score(ids, [caption])[0]
        return [{"image_id": ids[j], "score": float(row[j])} for j in _top(row, top_k)]

    def rank_captions(self, image_id: str | int, captions: Sequence[str],
                      top_k: int | None = 5) -> list[dict[str, Any]]:
        """Captions best first for ``image_id``: ``[{"caption", "score"}]``."""
        col = self.score([str(image_id)], list(captions))[:, 0]
        return [{"caption": captions[j], "score": float(col[j])} for j in _top(col, top_k)]

    def search(self, captions: Sequence[str], image_ids: Sequence[Any] | None = None, top_k: int | None = 5,
               direction: str = "both", caption_ids: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Both rankings from one score matrix: ``text_to_image`` rows ``{"direction", "query": caption,
        "results": [{"image_id", "score"}]}`` (one per caption), then ``image_to_text`` rows ``{"direction",
        "query": image_id, "results": [{"caption", "caption_id"?, "score"}]}`` (one per image)."""
        if direction not in ("both", "text_to_image", "image_to_text"):
            raise ValueError(f"direction must be both, text_to_image or image_to_text, got {direction!r}")
        if caption_ids is not None and len(caption_ids) != len(captions):
            raise ValueError(f"{len(caption_ids)} caption ids for {len(captions)} captions")
        ids = [str(i) for i in (self.image_ids() if image_ids is None else image_ids)]
        scores = self.score(ids, list(captions))
        rows: list[dict[str, Any]] = []
        if direction in ("both", "text_to_image"):
            for c, caption in enumerate(captions):
                rows.append({"direction": "text_to_image", "query": caption,
                             "results": [{"image_id": ids[j], "score": float(scores[c, j])}
                                         for j in _top(scores[c], top_k)]})
        if direction in ("both", "image_to_text"):
            for i, image_id in enumerate(ids):
                results = []
                for c in _top(scores[:, i], top_k):
                    hit: dict[str, Any] = {"caption": captions[c]}
                    if caption_ids is not None and caption_ids[c] is not None:
                        hit["caption_id"] = caption_ids[c]
                    hit["score"] = float(scores[c, i])
                    results.append(hit)
                rows.append({"direction": "image_to_text", "query": image_id, "results": results})
        return rows


PREDICTORS: dict[str, type[_Predictor]] = {p.command: p for p in (UnimoCaptioner, UnimoVQA, UnimoVisualEntailment,
                                                                  UnimoRetriever)}
