"""The compiled model file: the one contract between model/ and hw/.

Layout (all integers little-endian)::

    magic    8 bytes   b"SFHWMDL\\0"
    version  u32       FORMAT_VERSION
    hlen     u32       length of the header
    header   hlen      UTF-8 JSON: config, program, tensor index, widths, metadata
    payload  ...       the tensors' raw bytes, at the offsets the index gives
    sha256   32 bytes  over everything before it

Loading checks each part in that order and says which one is wrong: not a model file, an
unsupported version, a truncated file, a corrupt file (checksum), or an inconsistent header.
This module needs numpy only (no torch), so hw/ and the golden model can read models.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"SFHWMDL\0"
FORMAT_VERSION = 1
_DTYPES = ("int8", "int16", "int32", "int64", "uint8")


class ModelFileError(ValueError):
    """A compiled model file that cannot be used; the message says why."""


@dataclass
class CompiledModel:
    """Config, layer program and integer tensors of a compiled network."""

    config: dict
    program: list[dict]
    tensors: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def op(self, name: str) -> dict:
        for op in self.program:
            if op["name"] == name:
                return op
        raise KeyError(f"No layer named {name!r} in the program")

    @property
    def weight_count(self) -> int:
        """Integer weights of all convs and the head (biases and thresholds not counted)."""
        return int(sum(a.size for k, a in self.tensors.items() if k.endswith(".weight")))

    def tensor(self, key: str) -> np.ndarray:
        try:
            return self.tensors[key]
        except KeyError:
            raise ModelFileError(f"Program refers to tensor {key!r}, which the file lacks") \
                from None

    # -- file I/O -----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        index, chunks, offset = {}, [], 0
        for key in sorted(self.tensors):
            a = np.ascontiguousarray(self.tensors[key])
            if a.dtype.name not in _DTYPES:
                raise ModelFileError(f"Tensor {key!r} has dtype {a.dtype}; a model file holds "
                                     f"integers only ({', '.join(_DTYPES)})")
            raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
            index[key] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                          "nbytes": len(raw)}
            chunks.append(raw)
            offset += len(raw)
        header = json.dumps({"config": self.config, "program": self.program, "tensors": index,
                             "meta": self.meta, "payload_bytes": offset},
                            sort_keys=True).encode()
        body = MAGIC + struct.pack("<II", FORMAT_VERSION, len(header)) + header + b"".join(chunks)
        return body + hashlib.sha256(body).digest()

    def save(self, path: str | Path) -> str:
        """Write the file; returns its sha256 (hex)."""
        data = self.to_bytes()
        Path(path).write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @property
    def checksum(self) -> str:
        """sha256 of the serialized model (its identity in manifests)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "model file") -> CompiledModel:
        if len(data) < 16 or data[:8] != MAGIC:
            raise ModelFileError(f"{source}: not a compiled model file (bad magic "
                                 f"{data[:8]!r}, expected {MAGIC!r})")
        version, hlen = struct.unpack("<II", data[8:16])
        if version != FORMAT_VERSION:
            raise ModelFileError(f"{source}: format version {version}; this reader supports "
                                 f"version {FORMAT_VERSION} (recompile the model)")
        if len(data) < 16 + hlen + 32:
            raise ModelFileError(f"{source}: truncated: {len(data)} bytes, the header alone "
                                 f"needs {16 + hlen + 32}")
        try:
            header = json.loads(data[16:16 + hlen])
            payload_bytes = int(header["payload_bytes"])
        except (ValueError, KeyError, TypeError):
            header = None
        expected = 16 + hlen + (payload_bytes if header else 0) + 32
        if header is not None and len(data) < expected:
            raise ModelFileError(f"{source}: truncated: {len(data)} bytes, expected {expected}")
        body, digest = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != digest:
            raise ModelFileError(f"{source}: checksum mismatch: the file is corrupt")
        if header is None:
            raise ModelFileError(f"{source}: header is not valid JSON with payload_bytes")
        if len(data) != expected:
            raise ModelFileError(f"{source}: {len(data)} bytes, header says {expected}")
        payload = memoryview(data)[16 + hlen:16 + hlen + payload_bytes]
        tensors = {}
        for key, t in header["tensors"].items():
            if t["dtype"] not in _DTYPES:
                raise ModelFileError(f"{source}: tensor {key!r} has unsupported dtype "
                                     f"{t['dtype']!r}")
            dt = np.dtype(t["dtype"]).newbyteorder("<")
            n = int(np.prod(t["shape"], dtype=np.int64)) * dt.itemsize
            if n != t["nbytes"] or t["offset"] < 0 or t["offset"] + n > payload_bytes:
                raise ModelFileError(f"{source}: tensor {key!r} does not fit its index entry")
            arr = np.frombuffer(payload[t["offset"]:t["offset"] + n], dtype=dt)
            tensors[key] = arr.reshape(t["shape"]).astype(dt.newbyteorder("="))
        cm = cls(config=header["config"], program=header["program"], tensors=tensors,
                 meta=header.get("meta", {}))
        cm.validate(source)
        return cm

    @classmethod
    def load(cls, path: str | Path) -> CompiledModel:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No compiled model at {path}")
        return cls.from_bytes(path.read_bytes(), str(path))

    def validate(self, source: str = "model"):
        """Every tensor the program names exists; names are unique; sources come first."""
        seen = {"image"}
        for i, op in enumerate(self.program):
            if "op" not in op or "name" not in op:
                raise ModelFileError(f"{source}: program entry {i} lacks 'op' or 'name'")
            for src in op.get("inputs", []):
                if src not in seen:
                    raise ModelFileError(f"{source}: layer {op['name']!r} reads {src!r}, "
                                         f"which no earlier layer produces")
            for key in op.get("tensors", {}).values():
                self.tensor(key)
            if op["name"] in seen:
                raise ModelFileError(f"{source}: layer name {op['name']!r} appears twice")
            seen.add(op["name"])
