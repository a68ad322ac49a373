"""The layering the README promises, checked on the import graph of the source (AST, no import side effects):
``model/`` knows no reader, task or metric; ``reader/`` never imports the model; ``eval/`` is pure functions (no
model, no Paddle); fine-tuning and pre-training share ``training/`` and neither imports the other; and everything the
installed package imports from the repository root (``preprocess``) is packaged by ``pyproject.toml``."""
from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "unimo"


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by one file (relative imports resolved against its package)."""
    package = list(path.relative_to(REPO / "src").with_suffix("").parts)[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _package_imports(sub: str) -> dict[str, set[str]]:
    return {str(p.relative_to(REPO)): _imports(p) for p in sorted((SRC / sub).rglob("*.py"))}


@pytest.mark.parametrize("package, forbidden", [
    ("model", ("unimo.reader", "unimo.finetune", "unimo.eval", "unimo.pretrain", "unimo.training", "unimo.predict")),
    ("reader", ("unimo.model", "unimo.finetune", "unimo.pretrain", "unimo.training")),
    ("eval", ("unimo.model", "unimo.reader", "unimo.finetune", "unimo.training", "paddle")),
    ("pretrain", ("unimo.finetune",)),
    ("training", ("unimo.finetune", "unimo.pretrain")),
])
def test_layers(package, forbidden):
    bad = {f: sorted(m for m in mods for f0 in forbidden if m == f0 or m.startswith(f0 + "."))
           for f, mods in _package_imports(package).items()}
    bad = {f: m for f, m in bad.items() if m}
    assert not bad, f"unimo.{package} imports what its layer must not: {bad}"


def test_the_trainer_lives_in_training():
    assert (SRC / "training" / "trainer.py").is_file() and (SRC / "training" / "adversarial.py").is_file()
    assert not (SRC / "finetune" / "trainer.py").exists() and not (SRC / "finetune" / "adversarial.py").exists()
    assert (SRC / "eval" / "cider.py").is_file()


def test_root_packages_imported_by_unimo_are_packaged():
    """``unimo.predict`` imports ``preprocess`` (feature extraction): pyproject must package it, or an installed
    (non-editable) unimo fails at ``import preprocess``."""
    roots = {m.split(".")[0] for mods in _package_imports("").values() for m in mods}
    local_roots = sorted(r for r in roots if (REPO / r / "__init__.py").is_file())
    assert "preprocess" in local_roots
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    from setuptools import find_packages

    packaged = {p for where in find["where"] for p in find_packages(str(REPO / where), include=find["include"])}
    for root in local_roots + ["unimo"]:
        assert root in packaged, f"pyproject.toml does not package {root}"
    subpackages = {str(p.parent.relative_to(REPO)).replace("/", ".") for p in (REPO / "preprocess").rglob("__init__.py")}
    assert subpackages <= packaged, sorted(subpackages - packaged)
    assert sys.version_info >= (3, 11)  # tomllib


def test_one_task_registry_names_everything():
    """unimo.registry is the one table of task names: every entry resolves to a task class with a typed config,
    a reader kind the reader knows, a converter head, a model class, and (when set) a predict command."""
    from unimo import registry
    from unimo.convert.names import TASKS as CONVERTER_HEADS
    from unimo.model import modeling
    from unimo.reader.datasets import TASKS as READER_KINDS
    from unimo.utils.config import ConfigBase

    names = registry.task_names()
    assert set(names) == {"classification", "regression", "visual_entailment", "vqa", "retrieval", "seq2seq",
                          "dialog", "img2txt", "img2txt_scst"}
    for name in names:
        spec = registry.get_spec(name)
        cls = registry.get_task_class(name)
        assert issubclass(cls.config_class, ConfigBase), name
        assert spec.reader_kind in READER_KINDS, name
        assert spec.head in CONVERTER_HEADS, name
        assert isinstance(getattr(modeling, spec.model_class), type), name
        assert spec.multimodal == ("feature_store" in cls.config_class.field_types()), name
    assert set(CONVERTER_HEADS) == {"backbone"} | {registry.get_spec(n).head for n in names}
    commands = {registry.get_spec(n).predict_command for n in names} - {None}
    assert commands == {"caption", "vqa", "ve", "retrieve"}
    import pytest as _pytest

    with _pytest.raises(KeyError, match="unknown task 'img2text'; known: classification"):
        registry.get_task_class("img2text")
