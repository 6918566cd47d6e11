"""CTranslate2's binary model format (`model.bin`, as faster-whisper ships it): its header and tensors.

Format (CTranslate2's `model_spec.py` writes it; binary versions 2 to 6 are read): little-endian
`uint32` version, the spec's name (`uint16` length, bytes with a closing NUL), `uint32` revision,
`uint32` tensor count; per tensor its name, `uint8` rank, `uint32` dims, `uint8` type id,
`uint32` byte count (version 4 on; before it an item size and an element count), the bytes; then
`uint32` alias count and (alias, target) name pairs. int8 weights come with a per-row `<name>_scale`
(`int8 = round(w · scale)`), which is undone here. `vzcore.ctranslate` maps the tensors onto a model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["MODEL_FILE", "CTranslate2Error", "Header", "Tensor", "is_ctranslate2_folder", "read_header", "read_tensors"]

MODEL_FILE = "model.bin"
# CTranslate2's DataType enum, in order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEM_DTYPES = {1: np.int8, 2: np.float16, 4: np.float32}  # binary versions < 4 give an item size only


class CTranslate2Error(ValueError):
    """A file that is not a CTranslate2 model, or one whose layout this converter does not know."""


@dataclass(frozen=True)
class Tensor:
    """Where one named tensor's bytes are in `model.bin`."""

    shape: tuple[int, ...]
    dtype: Any  # a numpy dtype, or "bfloat16"
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Header:
    """A `model.bin`'s spec name, revision, tensors (no data read) and aliases (alias -> tensor name)."""

    version: int
    spec: str
    revision: int
    tensors: dict[str, Tensor]
    aliases: dict[str, str]


def _take(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise CTranslate2Error("model.bin ends early: truncated or not a CTranslate2 model")
    values = struct.unpack("<" + fmt, raw)
    return values[0] if len(values) == 1 else values


def _name(f: BinaryIO) -> str:
    length = _take(f, "H")
    raw = f.read(length)
    if len(raw) != length:
        raise CTranslate2Error("model.bin ends early: truncated or not a CTranslate2 model")
    try:
        return raw.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError as err:
        raise CTranslate2Error("model.bin holds a name that is not text: not a CTranslate2 model") from err


def read_header(path: Path) -> Header:
    """Read a `model.bin`'s header and tensor index, seeking past the data."""
    size = Path(path).stat().st_size
    with Path(path).open("rb") as f:
        version = _take(f, "I")
        if not 2 <= version <= 6:
            raise CTranslate2Error(f"{path}: binary version {version} is not a CTranslate2 model this reads (2 to 6)")
        spec, revision, count = _name(f), _take(f, "I"), _take(f, "I")
        tensors: dict[str, Tensor] = {}
        for _ in range(count):
            name = _name(f)
            rank = _take(f, "B")
            dims = _take(f, f"{rank}I") if rank else ()
            shape = (dims,) if isinstance(dims, int) else tuple(dims)
            if version >= 4:
                type_id, nbytes = _take(f, "B"), _take(f, "I")
                if type_id not in _DTYPES:
                    raise CTranslate2Error(f"{path}: tensor {name} has an unknown type id {type_id}")
                dtype = _DTYPES[type_id]
            else:
                item, count_items = _take(f, "B"), _take(f, "I")
                dtype, nbytes = _ITEM_DTYPES[item], item * count_items
            tensors[name] = Tensor(shape, dtype, f.tell(), nbytes)
            if f.seek(nbytes, 1) > size:
                raise CTranslate2Error(f"{path} ends early, inside tensor {name}: truncated")
        aliases = {}
        if version >= 3:
            for _ in range(_take(f, "I")):
                alias = _name(f)
                aliases[alias] = _name(f)
    return Header(version, spec, revision, tensors, aliases)


def is_ctranslate2_folder(path: Path) -> bool:
    """Whether `path` is a folder whose `model.bin` starts like a CTranslate2 model (a cheap look, no data read)."""
    model = Path(path) / MODEL_FILE
    if not model.is_file():
        return False
    with model.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        version, length = struct.unpack("<IH", head[:6])
        name = head[6:] + f.read(max(length - 2, 0))
    return 2 <= version <= 6 and name.rstrip(b"\0").endswith(b"Spec")


def read_tensors(path: Path, header: Header | None = None, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Read a `model.bin`'s tensors (all, or `names` and their scales): floating ones as float32,
    int8 weights de-quantised by their scales, integer settings as they are; aliases included."""
    header = header or read_header(path)
    raw: dict[str, np.ndarray] = {}
    with Path(path).open("rb") as f:
        for name, t in header.tensors.items():
            if names is not None and name not in names and name.removesuffix("_scale") not in names:
                continue
            f.seek(t.offset)
            data = f.read(t.nbytes)
            if t.dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32's high half
                array = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(data, t.dtype)
            if array.size != int(np.prod(t.shape, dtype=np.int64)):
                raise CTranslate2Error(f"{path}: tensor {name} holds {array.size} values, its shape says {t.shape}")
            raw[name] = array.reshape(t.shape)
    out = {}
    for name, array in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None:  # int8 = round(w * scale), one scale per output row
            array = array.astype(np.float32) / scale.astype(np.float32).reshape(-1, *([1] * (array.ndim - 1)))
        out[name] = array.astype(np.float32) if array.dtype.kind == "f" or scale is not None else array
    for alias, target in header.aliases.items():
        if target in out:
            out.setdefault(alias, out[target])
    return out
