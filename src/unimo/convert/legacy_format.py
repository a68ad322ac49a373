"""Reader and writer for Paddle 1.x ``save_persistables`` tensor files (one LoDTensor per file), numpy only.

Layout of one file (little-endian; Paddle's ``SerializeToStream`` for a LoDTensor)::

    uint32  version (0)
    uint64  lod_level
            per level: uint64 byte size, then that many bytes of size_t offsets
    uint32  tensor version (0)
    int32   byte length of a ``VarType.TensorDesc`` protobuf
    bytes   TensorDesc: field 1 data_type (varint enum), field 2 repeated int64 dims (varint, unpacked)
    bytes   raw little-endian data, prod(dims) * itemsize bytes

The tiny protobuf is encoded/decoded by hand so that no protobuf dependency is needed. Paddle writes proto2
``repeated int64`` unpacked (one ``0x10`` tag per dim); the reader also accepts the packed form.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..utils.errors import UserError

# VarType.Type enum values (paddle/fluid/framework/framework.proto) for the pod types we can represent in numpy.
DTYPE_CODES: dict[int, np.dtype] = {
    0: np.dtype("bool"),
    1: np.dtype("<i2"),
    2: np.dtype("<i4"),
    3: np.dtype("<i8"),
    4: np.dtype("<f2"),
    5: np.dtype("<f4"),
    6: np.dtype("<f8"),
    19: np.dtype("<u8"),  # SIZE_T (Paddle 1.x)
    20: np.dtype("u1"),
    21: np.dtype("i1"),
    23: np.dtype("<c8"),
    24: np.dtype("<c16"),
    36: np.dtype("<u2"),
    37: np.dtype("<u4"),
    38: np.dtype("<u8"),
}
DTYPE_NAMES: dict[int, str] = {0: "BOOL", 1: "INT16", 2: "INT32", 3: "INT64", 4: "FP16", 5: "FP32", 6: "FP64",
                               19: "SIZE_T", 20: "UINT8", 21: "INT8", 22: "BF16", 23: "COMPLEX64",
                               24: "COMPLEX128", 32: "FP8_E4M3FN", 33: "FP8_E5M2", 36: "UINT16", 37: "UINT32",
                               38: "UINT64"}
# numpy dtype -> code for writing (uint64 is written as UINT64, not the legacy SIZE_T)
_CODE_FOR_DTYPE: dict[np.dtype, int] = {dt: code for code, dt in DTYPE_CODES.items() if code != 19}

_MAX_LOD_LEVELS = 16  # real files have 0 (parameters) or 1-2 (sequence data); more means a foreign file
_MAX_DESC_BYTES = 1 << 16


class LegacyFormatError(UserError, ValueError):
    """A file that is not a well-formed legacy LoDTensor file (names the file and the offending field)."""


@dataclass
class TensorHeader:
    """Everything before the raw data of one legacy tensor file."""

    path: str
    dtype_code: int
    shape: tuple[int, ...]
    lod: list[list[int]] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    @property
    def dtype(self) -> np.dtype:
        return DTYPE_CODES[self.dtype_code]

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype_code, f"type {self.dtype_code}")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


# ---------------------------------------------------------------------------------------------- protobuf (by hand)
def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_varint(buf: bytes, pos: int, path: str, what: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise LegacyFormatError(f"{path}: TensorDesc field {what}: varint runs past the end of the descriptor")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise LegacyFormatError(f"{path}: TensorDesc field {what}: varint longer than 10 bytes")
    if result >= 1 << 63:
        result -= 1 << 64
    return result, pos


def encode_tensor_desc(dtype_code: int, shape: Sequence[int]) -> bytes:
    """``VarType.TensorDesc`` as Paddle serialises it: data_type (field 1), then each dim (field 2, unpacked)."""
    out = bytearray(b"\x08" + _encode_varint(dtype_code))
    for dim in shape:
        out += b"\x10" + _encode_varint(int(dim))
    return bytes(out)


def decode_tensor_desc(buf: bytes, path: str = "<bytes>") -> tuple[int, tuple[int, ...]]:
    dtype_code: Optional[int] = None
    dims: list[int] = []
    pos = 0
    while pos < len(buf):
        key, pos = _decode_varint(buf, pos, path, "key")
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 0:
            dtype_code, pos = _decode_varint(buf, pos, path, "1 (data_type)")
        elif number == 2 and wire == 0:
            dim, pos = _decode_varint(buf, pos, path, "2 (dims)")
            dims.append(dim)
        elif number == 2 and wire == 2:  # packed repeated int64
            length, pos = _decode_varint(buf, pos, path, "2 (dims, packed length)")
            end = pos + length
            if end > len(buf):
                raise LegacyFormatError(f"{path}: TensorDesc field 2 (dims): packed length {length} runs past the "
                                        f"end of the descriptor")
            while pos < end:
                dim, pos = _decode_varint(buf, pos, path, "2 (dims)")
                dims.append(dim)
        else:
            raise LegacyFormatError(f"{path}: TensorDesc has unexpected field {number} (wire type {wire}); "
                                    f"expected only 1 (data_type) and 2 (dims): not a Paddle tensor file")
    if dtype_code is None:
        raise LegacyFormatError(f"{path}: TensorDesc lacks field 1 (data_type)")
    if any(d < 0 for d in dims):
        raise LegacyFormatError(f"{path}: TensorDesc field 2 (dims) has a negative dimension: {dims}")
    return dtype_code, tuple(dims)


# ---------------------------------------------------------------------------------------------- reading
class _Cursor:
    def __init__(self, f, path: str, size: int):
        self.f, self.path, self.size = f, path, size

    def read(self, n: int, what: str) -> bytes:
        offset = self.f.tell()
        data = self.f.read(n)
        if len(data) != n:
            raise LegacyFormatError(f"{self.path}: truncated in {what} at byte {offset}: expected {n} bytes, "
                                    f"found {len(data)} (file size {self.size})")
        return data


def read_header(path: str) -> TensorHeader:
    """Parse everything up to the raw data and check the data byte count against the file size (cheap: no data
    is read). Raises :class:`LegacyFormatError` naming the file, the field and expected vs actual sizes."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"legacy tensor file not found: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        cur = _Cursor(f, path, size)
        (version,) = struct.unpack("<I", cur.read(4, "the LoDTensor version (uint32)"))
        if version != 0:
            raise LegacyFormatError(f"{path}: LoDTensor version field is {version}, expected 0: not a Paddle 1.x "
                                    f"tensor file")
        (lod_level,) = struct.unpack("<Q", cur.read(8, "lod_level (uint64)"))
        if lod_level > _MAX_LOD_LEVELS:
            raise LegacyFormatError(f"{path}: lod_level is {lod_level} (at most {_MAX_LOD_LEVELS} expected): not a "
                                    f"Paddle tensor file")
        lod: list[list[int]] = []
        for level in range(lod_level):
            (nbytes,) = struct.unpack("<Q", cur.read(8, f"the byte size of LoD level {level} (uint64)"))
            if nbytes % 8 or nbytes > size:
                raise LegacyFormatError(f"{path}: LoD level {level} byte size {nbytes} is not a multiple of 8 or "
                                        f"exceeds the file size {size}")
            lod.append(np.frombuffer(cur.read(nbytes, f"LoD level {level} offsets"), dtype="<u8").tolist())
        (tversion,) = struct.unpack("<I", cur.read(4, "the tensor version (uint32)"))
        if tversion != 0:
            raise LegacyFormatError(f"{path}: tensor version field is {tversion}, expected 0")
        (desc_len,) = struct.unpack("<i", cur.read(4, "the TensorDesc length (int32)"))
        if not 0 < desc_len <= _MAX_DESC_BYTES:
            raise LegacyFormatError(f"{path}: TensorDesc length field is {desc_len}, expected 1..{_MAX_DESC_BYTES}")
        dtype_code, shape = decode_tensor_desc(cur.read(desc_len, "the TensorDesc protobuf"), path)
        data_offset = f.tell()
    header = TensorHeader(path=path, dtype_code=dtype_code, shape=shape, lod=lod, data_offset=data_offset,
                          file_size=size)
    if dtype_code not in DTYPE_CODES:
        raise LegacyFormatError(f"{path}: data_type {header.dtype_name} ({dtype_code}) has no numpy equivalent; "
                                f"supported: {', '.join(DTYPE_NAMES[c] for c in DTYPE_CODES)}")
    actual = size - data_offset
    if actual < header.nbytes:
        raise LegacyFormatError(f"{path}: truncated: shape {list(shape)} {header.dtype_name} needs {header.nbytes} "
                                f"data bytes after the {data_offset}-byte header, file has {actual}")
    if actual > header.nbytes:
        raise LegacyFormatError(f"{path}: {actual - header.nbytes} unexpected trailing bytes after the data of "
                                f"shape {list(shape)} {header.dtype_name} ({header.nbytes} bytes expected)")
    return header


def read_tensor(path: str, header: Optional[TensorHeader] = None) -> np.ndarray:
    """The tensor stored in ``path`` as a native-endian numpy array of its own dtype."""
    header = header or read_header(path)
    count = int(np.prod(header.shape, dtype=np.int64))
    data = np.fromfile(path, dtype=header.dtype, count=count, offset=header.data_offset)
    if data.size != count:  # the file changed between header and data read
        raise LegacyFormatError(f"{path}: truncated: expected {count} elements, read {data.size}")
    data = data.reshape(header.shape)
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))


def read_lod_tensor(path: str) -> tuple[np.ndarray, list[list[int]]]:
    """Array and LoD (list of offset lists; empty for parameters)."""
    header = read_header(path)
    return read_tensor(path, header), header.lod


# ---------------------------------------------------------------------------------------------- writing
def serialize(array: np.ndarray, lod: Optional[Sequence[Sequence[int]]] = None) -> list[bytes]:
    """Header bytes and data buffer of ``array`` in the legacy layout (no copy of C-contiguous data)."""
    array = np.asarray(array)
    le = array.dtype.newbyteorder("<") if array.dtype.byteorder not in ("|", "<") else array.dtype
    code = _CODE_FOR_DTYPE.get(np.dtype(le))
    if code is None:
        raise TypeError(f"dtype {array.dtype} has no legacy Paddle data_type; supported: "
                        f"{sorted({str(d) for d in _CODE_FOR_DTYPE})}")
    array = np.ascontiguousarray(array, dtype=le)
    lod = [list(level) for level in (lod or [])]
    head = bytearray(struct.pack("<IQ", 0, len(lod)))
    for level in lod:
        offsets = np.asarray(level, dtype="<u8")
        head += struct.pack("<Q", offsets.nbytes) + offsets.tobytes()
    desc = encode_tensor_desc(code, array.shape)
    head += struct.pack("<Ii", 0, len(desc)) + desc
    return [bytes(head), memoryview(array).cast("B") if array.size else b""]


def write_tensor(path: str, array: np.ndarray, lod: Optional[Sequence[Sequence[int]]] = None) -> int:
    """Write one legacy tensor file; returns its size in bytes."""
    parts = serialize(array, lod)
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)
    return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
