"""Official Paddle 1.x checkpoints (``save_persistables`` directories) <-> our ``save_pretrained`` directories."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from . import legacy_format as lf
from .core import (WEIGHTS_NAME, ConversionError, ConversionReport, atomic_directory, build_lazy_model,
                   check_destination, expected_shapes, load_config, official_to_local, write_converted)
from .names import (adjust_config_for_checkpoint, backbone_part, detect_task, head_of, ignore_pattern,
                    model_class_and_kwargs, reads_images)

_FP32 = 5


def _list_variables(src: str) -> list[str]:
    if not os.path.isdir(src):
        raise ConversionError(f"--input {src} is not a directory (expected a Paddle 1.x save_persistables directory)")
    names = sorted(n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n)))
    if not names:
        raise ConversionError(f"--input {src} holds no files")
    return names


def _headers(src: str, names: list[str]) -> tuple[dict[str, lf.TensorHeader], dict[str, str]]:
    """Headers of every file that may be a weight (ignored optimizer state is not opened), and the format errors
    of those that could not be parsed (fatal only for variables the model uses)."""
    headers, errors = {}, {}
    for name in names:
        if ignore_pattern(name):
            continue
        try:
            headers[name] = lf.read_header(os.path.join(src, name))
        except lf.LegacyFormatError as e:
            errors[name] = str(e)
    return headers, errors


def _missing_backbone(names: list[str], to_local: dict[str, str], task: str) -> list[tuple[str, str]]:
    """``(official name, what it is)`` of every backbone tensor the checkpoint lacks (``names.backbone_part``):
    the text encoder always; the image input layers when the model reads images, or when only some are there."""
    present = set(names)
    absent = [n for n in to_local if n not in present and backbone_part(n) is not None]
    image_absent = [n for n in absent if backbone_part(n) == "image"]
    image_all = [n for n in to_local if backbone_part(n) == "image"]
    images_needed = reads_images(task)
    out = [(n, "text encoder") for n in absent if backbone_part(n) == "text"]
    if image_absent and (images_needed or len(image_absent) < len(image_all)):
        why = f"--task {task} reads images" if images_needed else "the other image input layers are there"
        out += [(n, f"image input layer; {why}") for n in image_absent]
    return out


def convert_legacy(src: str, config_path: str, dst: str, task: Optional[str] = None,
                   num_labels: Optional[int] = None, seed: int = 0, overwrite: bool = False,
                   dry_run: bool = False, allow_missing: bool = False,
                   weights_format: str = "safetensors") -> ConversionReport:
    """Convert an official checkpoint directory into ``dst`` (``model_config.json``, ``model.safetensors`` (or
    ``model_state.pdparams`` with ``weights_format="pdparams"``),
    ``conversion_report.json``). Every problem (bad file, dtype, shape, config) is collected first and raised as
    one :class:`ConversionError`; ``dst`` is then untouched.

    Only heads may be freshly initialised (listed in ``report.missing``): a checkpoint that lacks a backbone tensor
    (the text encoder; the image input layers for a model that reads images) is refused naming every such tensor,
    unless ``allow_missing`` (``--allow-missing``) initialises them too (listed, and named in a note)."""
    config = load_config(config_path)
    if not dry_run:
        check_destination(dst, overwrite)
    names = _list_variables(src)
    problems: list[str] = []
    headers, bad_files = _headers(src, names)
    shapes = {n: h.shape for n, h in headers.items()}
    candidates = [n for n in names if not ignore_pattern(n)]  # unreadable head files still decide the task

    report = ConversionReport(kind="legacy", src=src, dst=dst, seed=seed, dry_run=dry_run)
    if task is None:
        try:
            choice = detect_task(candidates, shapes)
        except ValueError as e:
            raise ConversionError(f"{src}: {e}") from e
        task = choice.task
        num_labels = num_labels if num_labels is not None else choice.num_labels
        report.notes.append(f"task detected: {task} ({choice.reason})")
    try:
        cls, kwargs = model_class_and_kwargs(task, num_labels, candidates, shapes)
    except ValueError as e:
        raise ConversionError(str(e)) from e
    config, notes = adjust_config_for_checkpoint(config, shapes)
    report.notes += notes
    model = build_lazy_model(cls, config, kwargs)
    report.task, report.model_class, report.init_kwargs = task, cls.__name__, model.init_kwargs()
    to_local = official_to_local(model)
    want = expected_shapes(model)

    sources: dict[str, str] = {}  # our key -> official name
    for name in names:
        path = os.path.join(src, name)
        if name in to_local:
            key = to_local[name]
            header = headers.get(name)
            if header is None:
                problems.append(bad_files[name])
            elif header.dtype_code != _FP32:
                problems.append(f"{path}: variable {name} has dtype {header.dtype_name}, expected FP32")
            elif header.shape != want[key]:
                problems.append(f"{path}: variable {name} has shape {list(header.shape)} but the config "
                                f"({config_path}) gives {list(want[key])} for {key}")
            else:
                sources[key] = name
                report.loaded.append({"name": name, "key": key, "shape": list(header.shape)})
        elif (hit := ignore_pattern(name)) is not None:
            report.ignored.append({"name": name, "pattern": hit[0], "reason": hit[1]})
        elif (owner := head_of(name)) is not None:
            report.unused.append({"name": name, "reason": f"{owner} head variable; {cls.__name__} has no place "
                                                          f"for it (choose --task {owner} to keep it)"
                                  if owner in ("generation", "classification", "ve", "retrieval", "vqa")
                                  else f"{owner} variable the config does not enable"})
        else:
            report.unknown.append(name)
        if name in bad_files and name not in to_local:
            report.notes.append(f"not a readable tensor file (not needed): {bad_files[name]}")
    missing_backbone = _missing_backbone(names, to_local, task)
    if missing_backbone and allow_missing:
        report.notes.append(f"--allow-missing: {len(missing_backbone)} backbone tensor(s) freshly initialised: "
                            + ", ".join(n for n, _ in missing_backbone))
    elif missing_backbone:
        problems += [f"{src}: lacks backbone tensor {n} ({what}; our {to_local[n]} {list(want[to_local[n]])})"
                     for n, what in missing_backbone]
    if problems:
        hint = ("\n  (only heads may be freshly initialised; --allow-missing initialises the missing backbone "
                "tensors too, listed in the report)") if missing_backbone and not allow_missing else ""
        raise ConversionError(f"cannot convert {src} ({len(problems)} problem(s)); nothing written:\n  "
                              + "\n  ".join(problems) + hint)

    state = model.state_dict()
    producers = {key: (lambda p=os.path.join(src, name), h=headers[name]: lf.read_tensor(p, h))
                 for key, name in sources.items() if key in state}
    return write_converted(model, producers, want, report, dst, overwrite, seed, dry_run, weights_format)


def export_legacy(src: str, dst: str, overwrite: bool = False, trust_pickle: bool = False) -> ConversionReport:
    """Write a ``save_pretrained`` directory back as an official checkpoint directory (one file per variable,
    official names), bit-exact to the files it was converted from. Its ``model.safetensors`` is read as data, a
    ``model_state.pdparams`` through the restricted unpickler unless ``trust_pickle``."""
    from ..model import modeling

    config = load_config(src)
    check_destination(dst, overwrite)
    weights = modeling.find_weights(src)
    if weights is None:
        raise ConversionError(f"--input {src}: no {modeling.SAFE_WEIGHTS_NAME} or {WEIGHTS_NAME}")
    arch = config.extra.get("architecture", "UnimoModel")
    cls = getattr(modeling, arch, None)
    if not (isinstance(cls, type) and issubclass(cls, modeling.UnimoPretrainedModel)):
        raise ConversionError(f"{src}: model_config.json names an unknown architecture {arch!r}")
    model = build_lazy_model(cls, config, dict(config.extra.get("init_kwargs", {})))
    to_official = {v: k for k, v in official_to_local(model).items()}
    want = expected_shapes(model)
    state = modeling.read_weights(weights, trust_pickle=trust_pickle)  # a .pdparams: restricted unpickler
    problems = [f"{weights}: key {k} has no official name in {arch}" for k in state if k not in to_official]
    problems += [f"{weights}: lacks {k} (official {to_official[k]})" for k in to_official if k not in state]
    problems += [f"{weights}: {k} has shape {list(np.shape(v))}, {arch} expects {list(want[k])}"
                 for k, v in state.items() if k in want and tuple(np.shape(v)) != want[k]]
    if problems:
        raise ConversionError(f"cannot export {src}; nothing written:\n  " + "\n  ".join(problems))
    report = ConversionReport(kind="export-legacy", src=src, dst=dst, task="", model_class=arch,
                              init_kwargs=model.init_kwargs())
    with atomic_directory(dst, overwrite, {to_official[key] for key in want}) as tmp:
        for key in want:  # model order: deterministic file set
            name = to_official[key]
            lf.write_tensor(os.path.join(tmp, name), np.asarray(state[key]))
            report.loaded.append({"name": name, "key": key, "shape": list(want[key])})
    return report
