"""``python -m unimo.export --model DIR --task TASK --output OUT``: a Paddle Inference model of a fine-tuned task.

    python -m unimo.export --model output/img2txt/coco/best --task caption --output deploy/caption
    python -m unimo.export --model output/vqa/best --task vqa --output deploy/vqa

``--model`` is a ``save_pretrained`` folder of the task model; OUT receives programs written by ``paddle.jit.save``
(``paddle.jit.to_static`` with explicit ``InputSpec``; every dimension but the hidden ones is dynamic), the model
config and ``export.json`` (task, programs, their inputs and outputs):

* classification / ve / vqa / retrieval: ``forward`` -- the whole forward, logits (retrieval: match scores);
* caption / seq2seq: ``encoder*`` -- the source pass, returning the source keys/values of every layer, stacked
  ``[layers, rows, heads, Ls, head_dim]`` (caption: ``encoder`` for images alone, ``encoder_tags`` with object
  tags; seq2seq: ``encoder``); and ``step`` -- one cached decoding step. The step is static-graph friendly: its
  generated-token cache is a fixed-size buffer ``[layers, rows, heads, cap, head_dim]`` passed in and returned
  updated, the new keys/values written at ``write_index`` by a one-hot blend (exact: ``buf * 1 + new * 0``), the
  mask row ``[source validity ; ones up to this token ; zeros]`` an input; no Python on tensor values, no growth.

The search stays on the host: :class:`InferenceRunner` drives the exported encoder + step with the project's own
beam / greedy search (:mod:`unimo.generation.search`), so an exported model gives the ids of the dygraph model.
PaddleNLP's unimo-text export fails for its users because it wraps the model in FastGeneration, a custom
decoding op compiled at export time (no MSVC support, PaddleNLP issue #6848; the library must be loaded again at
inference, #4073): the programs here use built-in Paddle operators only.

Exit status: 0 written, 2 bad input or usage (one ``error:`` line: missing model folder, another task's model,
non-empty OUT without ``--overwrite``), 1 internal error. The last stdout line is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Mapping, Optional, Sequence

import unimo  # noqa: F401  (CPU environment before paddle)

from .tokenizer import BPE_FILE, ENCODER_FILE, VOCAB_FILE
from .utils.cli import HelpFormatter, add_json_option, emit_json
from .utils.errors import UserError, run_cli

FORMAT_VERSION = 1
MANIFEST_NAME = "export.json"
TASK_MODEL = {"caption": "UnimoForGeneration", "seq2seq": "UnimoForGeneration", "vqa": "UnimoForVQA",
              "ve": "UnimoForVisualEntailment", "retrieval": "UnimoForRetrieval",
              "classification": "UnimoForSequenceClassification"}
GENERATION_TASKS = ("caption", "seq2seq")
_INT_NAMES = {"input_ids", "position_ids", "obj_input_ids", "obj_position_ids", "role_ids", "turn_ids",
              "write_index"}


# ------------------------------------------------------------------------------------------------ static wrappers
def _spec(name: str, shape: list[Optional[int]]) -> Any:
    from paddle.static import InputSpec

    return InputSpec(shape, "int64" if name in _INT_NAMES else "float32", name=name)


def _source_inputs(task: str, config: Any, tags: bool = False) -> list[str]:
    """Names (in feed order) of a program's source inputs."""
    if task in ("caption",):
        names = ["image_features", "image_locations"] + (["obj_input_ids", "obj_position_ids"] if tags else [])
        return names + ["attention_mask"]
    if task == "seq2seq":
        names = ["input_ids", "position_ids"]
        names += ["role_ids"] if config.role_type_size else []
        names += ["turn_ids"] if config.turn_type_size else []
        return names + ["attention_mask"]
    if task == "classification":
        return ["input_ids", "position_ids", "attention_mask"]
    return ["input_ids", "position_ids", "image_features", "image_locations", "attention_mask"]


def _shapes(config: Any) -> dict[str, list[Optional[int]]]:
    return {"input_ids": [None, None], "position_ids": [None, None], "obj_input_ids": [None, None],
            "obj_position_ids": [None, None], "role_ids": [None, None], "turn_ids": [None, None],
            "image_features": [None, None, config.image_embedding_size], "image_locations": [None, None, 5],
            "attention_mask": [None, None, None], "write_index": [1]}


def _build_wrappers(model: Any, task: str) -> dict[str, tuple[Any, list[str]]]:
    """{program name: (Layer whose forward takes the named inputs positionally, input names)}."""
    import paddle
    import paddle.nn as nn

    from .model.modeling import cached_attention

    config = model.config

    class Forward(nn.Layer):
        """The whole forward of an understanding task; returns its logits (retrieval: scores)."""

        def __init__(self, inner: Any, names: list[str]):
            super().__init__()
            self.inner, self.names = inner, names

        def forward(self, x0, x1=None, x2=None, x3=None, x4=None, x5=None, x6=None, x7=None, x8=None, x9=None,
                    x10=None, x11=None):
            out = self.inner(**dict(zip(self.names, [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11])))
            return out.scores if task == "retrieval" else out.logits

    class SourceCapture:
        """Cache protocol of :meth:`UnimoEncoderLayer.forward` for the source pass: keeps each layer's keys/values
        (head-major) and attends with the fused kernel, as the first call of :class:`KVCache` does."""

        def __init__(self) -> None:
            self.k: list[Any] = []
            self.v: list[Any] = []

        def attention(self, layer, q, k, v, attn_bias):
            self.k.append(k.transpose([0, 2, 1, 3]))
            self.v.append(v.transpose([0, 2, 1, 3]))
            return paddle.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)

    class Encoder(nn.Layer):
        def __init__(self, inner: Any, names: list[str]):
            super().__init__()
            self.inner, self.names = inner, names

        def forward(self, x0, x1=None, x2=None, x3=None, x4=None, x5=None, x6=None, x7=None, x8=None, x9=None,
                    x10=None, x11=None):
            capture = SourceCapture()
            self.inner.unimo(**dict(zip(self.names, [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11])),
                             cache=capture)
            return paddle.stack(capture.k), paddle.stack(capture.v)

    class StepCache:
        """Cache protocol for one decoding step over fixed-size inputs: source K/V and the generated-token buffer
        ([layers, rows, heads, *, head_dim]); this step's K/V go to position ``write_index`` of the buffer."""

        def __init__(self, src_k, src_v, gen_k, gen_v, write_index):
            self.src_k, self.src_v, self.gen_k, self.gen_v = src_k, src_v, gen_k, gen_v
            positions = paddle.arange(paddle.shape(gen_k)[3], dtype="int64")
            self.write = (positions == write_index).astype(gen_k.dtype).reshape([1, 1, -1, 1])  # one-hot [1,1,cap,1]
            self.new_k: list[Any] = []
            self.new_v: list[Any] = []

        def attention(self, layer, q, k, v, attn_bias):
            keep = 1.0 - self.write
            buf_k = self.gen_k[layer] * keep + k.transpose([0, 2, 1, 3]) * self.write
            buf_v = self.gen_v[layer] * keep + v.transpose([0, 2, 1, 3]) * self.write
            self.new_k.append(buf_k)
            self.new_v.append(buf_v)
            return cached_attention(q, self.src_k[layer], self.src_v[layer], buf_k, buf_v, attn_bias)

    class Step(nn.Layer):
        def __init__(self, inner: Any, names: list[str]):
            super().__init__()
            self.inner, self.names = inner, names

        def forward(self, x0, x1=None, x2=None, x3=None, x4=None, x5=None, x6=None, x7=None, x8=None, x9=None,
                    x10=None, x11=None):
            kw = dict(zip(self.names, [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11]))
            cache = StepCache(kw.pop("src_k"), kw.pop("src_v"), kw.pop("gen_k"), kw.pop("gen_v"),
                              kw.pop("write_index"))
            hidden = self.inner.unimo(**kw, cache=cache)
            logits = self.inner.lm_head(hidden[:, -1])
            return logits, paddle.stack(cache.new_k), paddle.stack(cache.new_v)

    if task not in GENERATION_TASKS:
        names = _source_inputs(task, config)
        return {"forward": (Forward(model, names), names)}
    out = {}
    variants = [("encoder", False)] + ([("encoder_tags", True)] if task == "caption" else [])
    for prog, tags in variants:
        names = _source_inputs(task, config, tags)
        out[prog] = (Encoder(model, names), names)
    step_names = ["input_ids", "position_ids"] + (["role_ids"] if config.role_type_size else []) + \
        (["turn_ids"] if config.turn_type_size else []) + ["attention_mask", "write_index", "src_k", "src_v",
                                                            "gen_k", "gen_v"]
    out["step"] = (Step(model, step_names), step_names)
    return out


def _input_specs(names: list[str], config: Any) -> list[Any]:
    shapes = _shapes(config)
    kv = [config.num_hidden_layers, None, config.num_attention_heads, None, config.head_dim]
    return [_spec(n, kv if n in ("src_k", "src_v", "gen_k", "gen_v") else shapes[n]) for n in names]


# files of a model folder a deployment also needs (tokenizer dictionaries, VQA answer vocabulary): copied if present
SIDE_FILES = (ENCODER_FILE, BPE_FILE, VOCAB_FILE, "answer_vocab.json")  # the last: unimo.predict.api.ANSWER_VOCAB_NAME


def export_model(model: Any, task: str, output: str, overwrite: bool = False,
                 model_dir: Optional[str] = None) -> dict[str, Any]:
    """Write ``model`` (a task model in eval mode) as Paddle Inference programs into ``output`` (atomically: a
    temporary folder whose entries replace OUT's at the end) and return the manifest written to ``export.json``.
    ``model_dir``: the folder it was loaded from, whose :data:`SIDE_FILES` are copied along."""
    import shutil

    import paddle

    from .utils.io import atomic_directory

    if task not in TASK_MODEL:
        raise UserError(f"unknown task {task!r} (one of {', '.join(TASK_MODEL)})", field="--task")
    if type(model).__name__ != TASK_MODEL[task]:
        raise UserError(f"task {task} needs a {TASK_MODEL[task]}, got a {type(model).__name__}", field="--task")
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise UserError("output folder is not empty (--overwrite replaces the exported files in it)", file=output,
                        field="--output")
    model.eval()
    config = model.config
    wrappers = _build_wrappers(model, task)
    manifest: dict[str, Any] = {"format_version": FORMAT_VERSION, "task": task, "architecture": type(model).__name__,
                                "paddle_version": paddle.__version__, "num_layers": config.num_hidden_layers,
                                "num_heads": config.num_attention_heads, "head_dim": config.head_dim,
                                "vocab_size": config.vocab_size, "programs": {}}
    stride_flag = "FLAGS_use_stride_kernel"
    stride = paddle.get_flags([stride_flag])[stride_flag]
    paddle.set_flags({stride_flag: False})  # as the dygraph search runs (unimo.generation.search._inference)
    try:
        with atomic_directory(output) as tmp:
            for prog, (layer, names) in wrappers.items():
                layer.eval()
                static = paddle.jit.to_static(layer, input_spec=_input_specs(names, config), full_graph=True)
                paddle.jit.save(static, os.path.join(tmp, prog))
                outputs = ["logits"] if task not in GENERATION_TASKS else \
                    (["src_k", "src_v"] if prog.startswith("encoder") else ["logits", "gen_k", "gen_v"])
                if task == "retrieval":
                    outputs = ["scores"]
                manifest["programs"][prog] = {"inputs": names, "outputs": outputs,
                                              "files": sorted(f for f in os.listdir(tmp) if f.startswith(prog + "."))}
            config.save_pretrained(tmp)
            copied = [n for n in SIDE_FILES if model_dir and os.path.isfile(os.path.join(model_dir, n))]
            for name in copied:
                shutil.copyfile(os.path.join(model_dir, name), os.path.join(tmp, name))
            manifest["side_files"] = copied
            with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)
    finally:
        paddle.set_flags({stride_flag: stride})
    return manifest


# ------------------------------------------------------------------------------------------------ inference runner
class _Program:
    """One exported program behind a ``paddle.inference`` predictor: named inputs (numpy arrays or Paddle tensors)
    in, Paddle tensors out (the predictor's tensor API: no copies through numpy)."""

    def __init__(self, directory: str, name: str, spec: Mapping[str, Any], threads: int, ir_optim: bool,
                 onednn: bool = False):
        import paddle.inference as pi

        files = spec["files"]
        model_file = next((f for f in files if f.endswith((".json", ".pdmodel"))), None)
        if model_file is None or not os.path.isfile(os.path.join(directory, name + ".pdiparams")):
            raise UserError(f"program {name!r} is incomplete (files {files})", file=directory)
        cfg = pi.Config(os.path.join(directory, model_file), os.path.join(directory, name + ".pdiparams"))
        cfg.disable_gpu()
        cfg.set_cpu_math_library_num_threads(threads)
        cfg.switch_ir_optim(ir_optim)
        if not onednn:
            cfg.disable_onednn()
        cfg.disable_glog_info()
        self.predictor = pi.create_predictor(cfg)
        self.inputs = list(spec["inputs"])
        self.outputs = list(spec["outputs"])
        self.feed_order = self.predictor.get_input_names()
        if sorted(self.feed_order) != sorted(self.inputs):
            raise UserError(f"program {name!r} feeds {self.feed_order}, export.json says {self.inputs}",
                            file=directory)

    def __call__(self, **values: Any) -> list[Any]:
        return self.predictor.run([_tensor(n, values[n]) for n in self.feed_order])


def _tensor(name: str, value: Any) -> Any:
    import numpy as np
    import paddle

    dtype = "int64" if name in _INT_NAMES else "float32"
    if isinstance(value, paddle.Tensor):
        return value if value.dtype == getattr(paddle, dtype) else value.astype(dtype)
    return paddle.to_tensor(np.ascontiguousarray(value, dtype=dtype))


class InferenceRunner:
    """Load an exported folder with ``paddle.inference`` and run it.

    * understanding tasks: :meth:`forward` (the task model's logits / retrieval scores as numpy);
    * generation tasks: :meth:`beam_search`, :meth:`greedy_search`, :meth:`sample` -- the functions of
      :mod:`unimo.generation.search` (same arguments, same outputs) with the exported encoder + step in place of
      the dygraph model, through :class:`ExportedGenerationModel`.
    """

    def __init__(self, directory: str, threads: Optional[int] = None, ir_optim: bool = True, onednn: bool = False):
        from .model.configuration import UnimoConfig

        path = os.path.join(directory, MANIFEST_NAME)
        if not os.path.isdir(directory):
            raise UserError("exported model folder not found", file=directory)
        if not os.path.isfile(path):
            raise UserError(f"no {MANIFEST_NAME}: not a folder written by `python -m unimo.export`", file=directory)
        with open(path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"format_version {self.manifest.get('format_version')!r}, this release reads "
                            f"{FORMAT_VERSION}", file=path)
        self.directory = directory
        self.task: str = self.manifest["task"]
        self.config = UnimoConfig.from_pretrained(directory)
        threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)
        self.programs = {name: _Program(directory, name, spec, threads, ir_optim, onednn)
                         for name, spec in self.manifest["programs"].items()}

    # -- understanding
    def forward(self, **inputs: Any) -> Any:
        """Logits [B, N] (retrieval: scores [B]) for the task model's inputs (numpy or tensors)."""
        if "forward" not in self.programs:
            raise ValueError(f"an exported {self.task} model decodes: use beam_search / greedy_search")
        prog = self.programs["forward"]
        missing = [n for n in prog.inputs if inputs.get(n) is None]
        if missing:
            raise ValueError(f"{self.task} inputs lack {missing} (the exported forward takes {prog.inputs})")
        return prog(**{n: inputs[n] for n in prog.inputs})[0].numpy()

    def task_model(self) -> "ExportedTaskModel":
        """The exported forward behind the task model's call convention (``model(**tensors).logits``)."""
        if "forward" not in self.programs:
            raise ValueError(f"an exported {self.task} model decodes: use generation_model")
        return ExportedTaskModel(self)

    # -- generation
    def generation_model(self) -> "ExportedGenerationModel":
        if "step" not in self.programs:
            raise ValueError(f"an exported {self.task} model has no decoding step: use forward")
        return ExportedGenerationModel(self)

    def beam_search(self, source: Mapping[str, Any], source_valid: Any, config: Any = None, **kwargs: Any) -> list:
        from .generation.search import beam_search

        return beam_search(self.generation_model(), source, source_valid, config, **kwargs)

    def greedy_search(self, source: Mapping[str, Any], source_valid: Any, config: Any = None, **kwargs: Any) -> list:
        from .generation.search import greedy_search

        return greedy_search(self.generation_model(), source, source_valid, config, **kwargs)

    def sample(self, source: Mapping[str, Any], source_valid: Any, config: Any = None, **kwargs: Any) -> list:
        from .generation.search import sample

        return sample(self.generation_model(), source, source_valid, config, **kwargs)


def _numpy(value: Any) -> Any:
    import numpy as np

    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


class _HostCache:
    """The decoding cache of an exported model, outside the programs: source K/V from the encoder, the generated
    part a buffer grown by whole chunks between steps (the step program sees a fixed-size buffer). Same reorder
    rules as :class:`unimo.model.modeling.KVCache`: nothing moves when the parents are the identity, the source part
    stays when every row keeps its source."""

    def __init__(self, runner: InferenceRunner, chunk: int = 16):
        self.runner, self.chunk = runner, chunk
        self.src_k = self.src_v = self.gen_k = self.gen_v = None
        self.row_source = None

    def encode(self, inputs: Mapping[str, Any]) -> None:
        import numpy as np
        import paddle

        tags = inputs.get("obj_input_ids") is not None
        prog = self.runner.programs["encoder_tags" if tags else "encoder"]
        self.src_k, self.src_v = prog(**{n: inputs[n] for n in prog.inputs})
        rows = int(self.src_k.shape[1])
        m = self.runner.manifest
        shape = [m["num_layers"], rows, m["num_heads"], self.chunk, m["head_dim"]]
        self.gen_k, self.gen_v = paddle.zeros(shape), paddle.zeros(shape)
        self.row_source = np.arange(rows)

    def step(self, inputs: Mapping[str, Any], attention_mask: Any) -> Any:
        import numpy as np
        import paddle

        mask = _tensor("attention_mask", attention_mask)  # [N, 1, Ls + g + 1]
        ls = int(self.src_k.shape[3])
        width = int(mask.shape[-1])
        g = width - ls - 1  # tokens already in the buffer: this one goes to position g
        cap = int(self.gen_k.shape[3])
        if g >= cap:  # grow by a whole chunk (copies the old part once per chunk)
            pad = paddle.zeros(list(self.gen_k.shape[:3]) + [self.chunk] + list(self.gen_k.shape[4:]))
            self.gen_k = paddle.concat([self.gen_k, pad], axis=3)
            self.gen_v = paddle.concat([self.gen_v, pad], axis=3)
            cap += self.chunk
        if ls + cap > width:  # the buffer's unwritten positions are blocked
            mask = paddle.concat([mask, paddle.zeros(list(mask.shape[:2]) + [ls + cap - width])], axis=-1)
        prog = self.runner.programs["step"]
        feed = {n: inputs[n] for n in prog.inputs if n in inputs}
        feed.update(attention_mask=mask, write_index=np.array([g], np.int64), src_k=self.src_k, src_v=self.src_v,
                    gen_k=self.gen_k, gen_v=self.gen_v)
        logits, self.gen_k, self.gen_v = prog(**feed)
        return logits

    def reorder(self, index: Any) -> None:
        import numpy as np
        import paddle

        idx = np.asarray(_numpy(index), dtype=np.int64).reshape(-1)
        rows = len(self.row_source)
        if len(idx) == rows and np.array_equal(idx, np.arange(rows)):
            return
        index_t = paddle.to_tensor(idx)
        new_source = self.row_source[idx]
        if not (len(idx) == rows and np.array_equal(new_source, self.row_source)):
            self.src_k = paddle.gather(self.src_k, index_t, axis=1)
            self.src_v = paddle.gather(self.src_v, index_t, axis=1)
        self.gen_k = paddle.gather(self.gen_k, index_t, axis=1)
        self.gen_v = paddle.gather(self.gen_v, index_t, axis=1)
        self.row_source = new_source


class _ExportedBackbone:
    """Stands in for ``UnimoModel`` inside :class:`unimo.generation.decoder.CachedDecoder`: the first call with a
    fresh cache encodes the source, every later call is one decoding step, returning logits as [N, 1, V] (the
    decoder reads ``hidden[:, -1]`` and hands it to the identity LM head)."""

    def __init__(self, runner: InferenceRunner):
        self.runner, self.config = runner, runner.config

    def init_cache(self) -> _HostCache:
        return _HostCache(self.runner)

    def __call__(self, *, cache: _HostCache, attention_mask: Any, **inputs: Any) -> Any:
        if cache.src_k is None:
            cache.encode(dict(inputs, attention_mask=attention_mask))
            return None
        return cache.step(inputs, attention_mask).unsqueeze(1)


class _ExportedModelBase:
    """What callers of a task model read besides its call: ``config``, ``architecture``, ``eval()``/``train()``."""

    training = False

    def __init__(self, runner: InferenceRunner):
        self.runner, self.config = runner, runner.config
        self.architecture: str = runner.manifest["architecture"]

    def eval(self) -> "_ExportedModelBase":
        return self

    def train(self) -> "_ExportedModelBase":
        return self


class ExportedTaskModel(_ExportedModelBase):
    """Duck-types an understanding task model's call: ``model(**inputs)`` returns an object whose ``logits``
    (retrieval: ``scores``) is a Paddle tensor, as ``UnimoClassificationOutput`` & co. An input the exported
    forward does not take (labels, adversarial deltas, role ids) is refused rather than ignored."""

    def __call__(self, **inputs: Any) -> Any:
        import types

        import paddle

        prog = self.runner.programs["forward"]
        extra = sorted(k for k, v in inputs.items() if v is not None and k not in prog.inputs)
        if extra:
            raise ValueError(f"the exported {self.runner.task} forward takes {prog.inputs}, not {extra}")
        field = "scores" if self.runner.task == "retrieval" else "logits"
        return types.SimpleNamespace(**{field: paddle.to_tensor(self.runner.forward(**inputs))})


class ExportedGenerationModel(_ExportedModelBase):
    """Duck-types :class:`UnimoForGeneration` for :mod:`unimo.generation.search` (``.unimo`` + ``.lm_head``): the
    search code runs unchanged over the exported programs."""

    def __init__(self, runner: InferenceRunner):
        super().__init__(runner)
        self.unimo = _ExportedBackbone(runner)

    @staticmethod
    def lm_head(logits: Any) -> Any:  # the step program already applies the LM head
        return logits


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unimo.export", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="save_pretrained folder of the fine-tuned task model")
    p.add_argument("--task", required=True, metavar="TASK",
                   help=f"task the model was fine-tuned for: {', '.join(TASK_MODEL)}")
    p.add_argument("--output", required=True, help="folder to write the inference model into")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the exported files in a non-empty --output (other files are kept; default: a "
                        "non-empty --output is an error)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read a model_state.pdparams with Paddle's unrestricted loader, which can run code: only for "
                        "a trusted source (default: refuse anything but arrays)")
    add_json_option(p, "the export manifest")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.task not in TASK_MODEL:  # checked here, not by argparse: one error line, no usage block
        raise UserError(f"unknown task {args.task!r} (one of {', '.join(TASK_MODEL)})", field="--task")
    if not os.path.isdir(args.model):  # before Paddle is imported: the error line stays the only output
        raise UserError("model directory not found", file=args.model, field="--model")
    if os.path.isdir(args.output) and os.listdir(args.output) and not args.overwrite:
        raise UserError("output folder is not empty (--overwrite replaces the exported files in it)",
                        file=args.output, field="--output")
    from .model import modeling
    from .predict.api import load_task_model
    from .predict.errors import PredictError

    try:
        model = load_task_model(args.model, getattr(modeling, TASK_MODEL[args.task]), f"export --task {args.task}",
                                trust_pickle=args.trust_pickle)
    except PredictError as exc:
        raise UserError(str(exc), field="--model") from None
    manifest = export_model(model, args.task, args.output, overwrite=args.overwrite, model_dir=args.model)
    summary = {"output": args.output, "task": args.task, "programs": sorted(manifest["programs"])}
    if args.json is not None:
        emit_json(args.json, manifest)
    if args.json != "-":  # stdout holds one JSON document either way
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m unimo.export"))
