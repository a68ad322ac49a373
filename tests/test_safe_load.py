"""Opening a checkpoint must not run code (issue 14): the restricted .pdparams loader refuses a crafted pickle
whose __reduce__ is os.system - the command never runs - and still reads what paddle.save writes."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from unimo.utils.errors import UserError
from unimo.utils.safe_load import UnsafePickleError, load_pdparams, load_safetensors, save_safetensors


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_state.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"w": _Exploit(str(marker))}, f)
    with pytest.raises(UnsafePickleError) as caught:
        load_pdparams(str(path))
    assert not marker.exists()
    assert str(caught.value) == (f"{path}: refused to load: the pickle needs the global posix.system, which is not a "
                                 "numpy array type (a checkpoint holds only arrays) (load it only if you trust its "
                                 "source: trust_pickle=True / --trust-pickle)")


def test_paddle_saved_state_dict_loads_unchanged(tmp_path):
    import paddle

    state = {"a.weight": paddle.rand([3, 4]), "b": paddle.arange(5, dtype="int64"), "c": paddle.zeros([0])}
    path = tmp_path / "s.pdparams"
    paddle.save(state, str(path))
    got = load_pdparams(str(path))
    assert sorted(got) == sorted(state)
    for k, v in state.items():
        assert got[k].dtype == v.numpy().dtype and np.array_equal(got[k], v.numpy())
    assert all(np.array_equal(got[k], v) for k, v in load_pdparams(str(path), trust_pickle=True).items())


def test_safetensors_round_trip_and_bad_files(tmp_path):
    state = {"x": np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32), "y": np.arange(4)}
    path = tmp_path / "model.safetensors"
    save_safetensors(state, str(path))
    got = load_safetensors(str(path))
    assert all(np.array_equal(got[k], state[k]) for k in state)
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_safetensors(str(path))
    (tmp_path / "bad.pdparams").write_bytes(b"\x80\x04garbage")
    with pytest.raises(UserError, match="not a readable .pdparams pickle"):
        load_pdparams(str(tmp_path / "bad.pdparams"))
