"""Loading weights without running code.

``paddle.load`` unpickles: a crafted ``model_state.pdparams`` (``{"w": obj}`` whose ``__reduce__`` is
``os.system``) runs its command when opened. Weights are only numpy arrays, so :func:`load_pdparams` reads a
``.pdparams`` with an unpickler that rebuilds numpy arrays (and the containers Paddle writes around them) and refuses
every other global with an error naming the file and the refused global; ``trust_pickle=True`` is the explicit way
out (Paddle's own loader). ``model.safetensors`` (:func:`load_safetensors`) has no code path at all.
"""
from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from .errors import UserError

# what paddle.save writes for a state dict of tensors (numpy arrays inside plain containers)
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
})


# a Trainer checkpoint's RNG file also holds Paddle's generator states (plain data, rebuilt by __setstate__)
TRAINING_STATE_GLOBALS = ALLOWED_GLOBALS | frozenset({("paddle.base.libpaddle", "GeneratorState")})
# the pickles PaddleNLP's Trainer opens when it resumes (weights, optimizer, scheduler, scaler, RNG); not
# training_args.bin, which resuming never reads
TRAINING_STATE_SUFFIXES = (".pdparams", ".pdopt", ".pth")

PADDLE_NAME_TABLE = "StructuredToParameterName@@"


class UnsafePickleError(UserError):
    """A pickle that would need a global outside :data:`ALLOWED_GLOBALS` (i.e. could run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: str, allowed: frozenset = ALLOWED_GLOBALS):
        super().__init__(file)
        self.path = path
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused to load: the pickle needs the global {module}.{name}, which is not a "
                                "numpy array type (a checkpoint holds only arrays)", file=self.path,
                                hint="load it only if you trust its source: trust_pickle=True / --trust-pickle")


def restricted_unpickle(path: str, allowed: frozenset = ALLOWED_GLOBALS, kind: str = "pickle") -> Any:
    """The object pickled in ``path``, rebuilt only from the globals in ``allowed`` (:class:`UnsafePickleError`
    names the first other one; nothing of the pickle runs); a damaged file is a :class:`UserError`."""
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, path, allowed).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged file: one clear line
            raise UserError(f"not a readable {kind} ({type(e).__name__}: {e})", file=path) from None


def check_training_checkpoint(directory: str) -> list[str]:
    """Vet every pickle PaddleNLP's Trainer reads when resuming from ``directory`` (``*.pdparams``, ``*.pdopt``,
    ``*.pth``) with the restricted unpickler, before the Trainer opens them with ``paddle.load``: a file needing
    any global beyond numpy arrays and Paddle generator states is refused (:class:`UnsafePickleError`). Returns the
    files checked."""
    if not os.path.isdir(directory):
        raise UserError("checkpoint folder not found", file=directory)
    checked = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(TRAINING_STATE_SUFFIXES) and os.path.isfile(path):
            restricted_unpickle(path, TRAINING_STATE_GLOBALS)
            checked.append(path)
    return checked


def load_pdparams(path: str, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    """A ``.pdparams`` state dict as {name: numpy array}, through the restricted unpickler unless ``trust_pickle``."""
    if not os.path.isfile(path):
        raise UserError("weights file not found", file=path)
    if trust_pickle:
        import paddle

        state = paddle.load(path, return_numpy=True)
    else:
        state = restricted_unpickle(path, kind=".pdparams pickle")
    if not isinstance(state, dict):
        raise UserError(f"expected a state dict, got {type(state).__name__}", file=path)
    out = {}
    for key, value in state.items():
        if key == PADDLE_NAME_TABLE and isinstance(value, dict):  # paddle.save's {key: parameter name} table
            continue
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise UserError(f"entry {key!r} is a {type(value).__name__}, not an array", file=path)
        out[key] = value
    return out


def load_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise UserError("weights file not found", file=path)
    try:
        return dict(load_file(path))
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a readable safetensors file ({type(e).__name__}: {e})", file=path) from None


def save_safetensors(state: dict[str, np.ndarray], path: str) -> None:
    """Write {name: array} as safetensors (contiguous copies; atomic)."""
    from safetensors.numpy import save

    from .io import atomic_write

    data = save({k: np.ascontiguousarray(v) for k, v in state.items()})
    with atomic_write(path, "wb") as f:
        f.write(data)
