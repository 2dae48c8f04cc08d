"""Read PyTorch ``.pth`` state dicts into numpy arrays without importing torch.

PyTorch checkpoints are pickles, and unpickling untrusted data can run
arbitrary code.  This module therefore uses a *restricted* unpickler whose
``find_class`` hands out only a handful of inert stand-ins (tensor rebuild
helpers, ``OrderedDict`` and storage type markers) and refuses every other
global, so a malicious file fails with :class:`WeightsFormatError` instead of
executing anything.

Two on-disk layouts are supported:

* the legacy (torch < 1.6) stream: several pickles back to back (magic number,
  protocol version, sys_info, the object pickle, the list of storage keys)
  followed by each storage's raw bytes, each preceded by an int64 element
  count;
* the zip layout (torch >= 1.6): ``<prefix>/data.pkl`` plus one
  ``<prefix>/data/<key>`` member per storage.

Only little-endian data is supported (what every mainstream platform writes).

Only the standard library and numpy are imported here, on purpose.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["WeightsFormatError", "load_torch_state_dict"]

# Written as the first pickle of a legacy torch.save() stream.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype of one element.  bfloat16 has no
# numpy dtype, so it is read as uint16 and widened to float32 afterwards.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
}


class WeightsFormatError(ValueError):
    """A weights file is malformed, truncated, unsupported or unsafe."""


@dataclass(frozen=True)
class _StorageType:
    """Inert stand-in for a ``torch.*Storage`` class named in the pickle."""

    name: str
    dtype: np.dtype


@dataclass
class _StorageRef:
    """A storage referenced by a persistent id; ``array`` is filled in later.

    In the legacy layout the bytes follow the object pickle, so tensors can
    only be materialised after all storages have been read.
    """

    key: str
    storage_type: _StorageType
    numel: int
    array: np.ndarray | None = None


@dataclass
class _TensorStub:
    """A tensor described by the pickle, materialised once its storage is read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: only records the layout."""
    if not isinstance(storage, _StorageRef):
        raise WeightsFormatError("tensor does not reference a storage")
    if not (isinstance(storage_offset, int) and _is_int_tuple(size) and _is_int_tuple(stride)
            and len(size) == len(stride)):
        raise WeightsFormatError("tensor has an invalid size/stride/offset description")
    return _TensorStub(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its data."""
    if not isinstance(data, _TensorStub):
        raise WeightsFormatError("parameter does not wrap a tensor")
    return data


def _is_int_tuple(value) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) for v in value)


# (module, name) -> object handed to the unpickler.  Everything else is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_ALLOWED_GLOBALS.update(
    {("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and torch storage ids."""

    def __init__(self, file: BinaryIO, storages: dict[str, _StorageRef]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsFormatError(
                f"refusing to load global {module}.{name!s}: only plain tensor "
                "state dicts are supported (this file may be unsafe or not a state dict)"
            ) from None

    def persistent_load(self, pid):
        # Both layouts use ('storage', storage_type, key, location, numel, ...);
        # the legacy one appends view metadata, which only very old files use.
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsFormatError(f"unsupported persistent id in pickle: {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise WeightsFormatError(f"persistent id names an unknown storage type: {storage_type!r:.80}")
        if view is not None:
            raise WeightsFormatError("storage views (pre-0.4 checkpoints) are not supported")
        if not isinstance(numel, int) or numel < 0:
            raise WeightsFormatError("storage has an invalid element count")
        key = str(key)
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, storage_type, numel)
        elif ref.storage_type != storage_type:
            raise WeightsFormatError(f"storage {key} is used with two different dtypes")
        return ref


def _safe_unpickle(data: BinaryIO, storages: dict[str, _StorageRef]) -> Any:
    """Run the restricted unpickler, turning every failure into WeightsFormatError."""
    try:
        return _RestrictedUnpickler(data, storages).load()
    except WeightsFormatError:
        raise
    except Exception as exc:  # pickle raises many types on garbage input
        raise WeightsFormatError(f"corrupt or truncated pickle data ({type(exc).__name__}: {exc})") from exc


def _materialise(stub: _TensorStub) -> np.ndarray:
    """Build a contiguous numpy array from a tensor stub, bounds-checked."""
    storage = stub.storage.array
    if storage is None:
        raise WeightsFormatError(f"storage {stub.storage.key} has no data in the file")
    if any(s < 0 for s in stub.size) or any(s < 0 for s in stub.stride) or stub.offset < 0:
        raise WeightsFormatError("negative tensor size, stride or offset")
    if 0 in stub.size:
        out = np.empty(stub.size, dtype=storage.dtype)
    else:
        # as_strided does no bounds checking, so check here: a hostile file
        # must not be able to make us read outside the storage buffer.
        last = stub.offset + sum((n - 1) * s for n, s in zip(stub.size, stub.stride))
        if last >= storage.size:
            raise WeightsFormatError(
                f"tensor of size {stub.size} reads past the end of storage {stub.storage.key}"
            )
        # Zero strides could expand a tiny storage into a huge array (memory
        # exhaustion); state dicts never need more elements than they store.
        if np.prod(stub.size, dtype=np.float64) > storage.size:
            raise WeightsFormatError(
                f"tensor of size {stub.size} has more elements than storage {stub.storage.key}"
            )
        base = storage[stub.offset:]
        strides = tuple(s * storage.itemsize for s in stub.stride)
        out = np.lib.stride_tricks.as_strided(base, shape=stub.size, strides=strides).copy()
    if stub.storage.storage_type.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    # Native byte order so downstream code (keras, numpy maths) sees plain arrays.
    return out.astype(out.dtype.newbyteorder("="), copy=False)


def _resolve(obj: Any) -> Any:
    """Replace tensor stubs by arrays throughout the unpickled structure."""
    if isinstance(obj, _TensorStub):
        return _materialise(obj)
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}  # plain dicts keep insertion order
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WeightsFormatError(f"file is truncated while reading {what}")
    return data


def _load_legacy(f: BinaryIO, size: int) -> Any:
    """Parse the pre-1.6 stream layout described in the module docstring."""
    storages: dict[str, _StorageRef] = {}
    # The three header pickles contain only ints/dicts; still use the
    # restricted unpickler so nothing in them can run code either.
    magic = _safe_unpickle(f, storages)
    if magic != _LEGACY_MAGIC:
        raise WeightsFormatError("not a PyTorch checkpoint (wrong magic number)")
    protocol = _safe_unpickle(f, storages)
    if protocol != _LEGACY_PROTOCOL:
        raise WeightsFormatError(f"unsupported legacy torch protocol version {protocol!r}")
    sys_info = _safe_unpickle(f, storages)
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise WeightsFormatError("big-endian checkpoints are not supported")

    result = _safe_unpickle(f, storages)
    keys = _safe_unpickle(f, storages)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise WeightsFormatError("malformed storage key list")

    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise WeightsFormatError(f"storage key {key} is not referenced by any tensor")
        (numel,) = struct.unpack("<q", _read_exact(f, 8, f"storage {key} header"))
        nbytes = numel * ref.storage_type.dtype.itemsize
        # Check against the file size before allocating: a corrupt count must
        # not trigger a giant allocation.
        if numel < 0 or f.tell() + nbytes > size:
            raise WeightsFormatError(f"file is truncated in storage {key}")
        raw = _read_exact(f, nbytes, f"storage {key}")
        ref.array = np.frombuffer(raw, dtype=ref.storage_type.dtype)
    return _resolve(result)


def _load_zip(path: Path) -> Any:
    """Parse the torch>=1.6 zip layout: <prefix>/data.pkl + <prefix>/data/<key>."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl_names = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
            if len(pkl_names) != 1:
                raise WeightsFormatError("zip file is not a torch checkpoint (no unique data.pkl)")
            prefix = pkl_names[0][: -len("data.pkl")]
            byteorder = prefix + "byteorder"
            if byteorder in names and zf.read(byteorder).strip() != b"little":
                raise WeightsFormatError("big-endian checkpoints are not supported")

            storages: dict[str, _StorageRef] = {}
            result = _safe_unpickle(io.BytesIO(zf.read(pkl_names[0])), storages)
            for key, ref in storages.items():
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise WeightsFormatError(f"zip checkpoint lacks storage {member}")
                raw = zf.read(member)
                if len(raw) % ref.storage_type.dtype.itemsize:
                    raise WeightsFormatError(f"storage {key} has a partial element")
                ref.array = np.frombuffer(raw, dtype=ref.storage_type.dtype)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise WeightsFormatError(f"corrupt zip checkpoint {path}: {exc}") from exc
    return _resolve(result)


def _as_state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    """Accept a bare state dict or the common {'state_dict': {...}} wrapper."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsFormatError(f"{path} does not contain a state dict (got {type(obj).__name__})")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise WeightsFormatError(
                f"{path}: entry {key!r:.80} is not a named tensor (got {type(value).__name__})"
            )
        out[key] = value
    return out


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a PyTorch state dict (``.pth``/``.pt``) as ``{name: numpy array}``.

    Arrays keep PyTorch's layout (e.g. conv weights are OIHW) and dtype.
    Raises ``FileNotFoundError`` if the file is missing and
    :class:`WeightsFormatError` if it is malformed, truncated, in an
    unsupported layout, or references anything besides plain tensors.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        with open(path, "rb") as f:
            head = f.read(2)
            if head[:1] != b"\x80":
                raise WeightsFormatError(
                    f"{path} is not a PyTorch checkpoint (neither zip nor pickle data)"
                )
            f.seek(0)
            obj = _load_legacy(f, path.stat().st_size)
    return _as_state_dict(obj, path)
