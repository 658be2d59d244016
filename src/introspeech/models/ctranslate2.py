"""Reader of CTranslate2 model files (``model.bin``): the variables by name, as numpy arrays.

The format: a uint32 version, the spec's name (a uint16 length, then the bytes with a closing
NUL), a uint32 revision, a uint32 count of variables, then for each: its name, a uint8 rank, the
dimensions (uint32 each), a uint8 type code, a uint32 byte count and the bytes; then a uint32
count of aliases, each a name and the name of the variable it stands for. Written here because the
CTranslate2 package reads the file only into its own runtime (no access to the tensors).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import InputError

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InputError(self.path, f"truncated CTranslate2 file ({len(self.data)} bytes, needs more at {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.uint("H"))
        return raw.rstrip(b"\0").decode("utf-8")


def read_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, variables by name, aliases resolved) of a CTranslate2 ``model.bin``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such CTranslate2 model file")
    r = _Reader(path.read_bytes(), path)
    version = r.uint("I")
    if version not in (5, 6):
        raise InputError(path, f"CTranslate2 model format version {version} is not read here (versions 5 and 6 are)")
    spec = r.string()
    r.uint("I")  # revision of the spec
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.uint("I")):
        name = r.string()
        dims = [r.uint("I") for _ in range(r.uint("B"))]
        code = r.uint("B")
        if code not in DTYPES:
            raise InputError(path, f"variable {name!r} has a type code {code} not read here")
        raw = r.take(r.uint("I"))
        arr = np.frombuffer(raw, dtype=DTYPES[code])
        if arr.size != int(np.prod(dims)):
            raise InputError(path, f"variable {name!r}: {arr.size} values for dimensions {dims}")
        variables[name] = arr.reshape(dims)
    if r.pos < len(r.data):
        for _ in range(r.uint("I")):
            alias, target = r.string(), r.string()
            variables[alias] = variables[target]
    return spec, variables
