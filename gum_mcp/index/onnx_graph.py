"""The protobuf wire format of the few ONNX messages gum_mcp writes (no `onnx` package): tensors, nodes,
graphs, models; and `Session`, the one way such a model is run. `onnx_encoder` writes MiniLM's encoder with
it, `cosines` a matrix product."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: ONNX TensorProto data types.
FLOAT, UINT8, INT8, INT64 = 1, 2, 3, 7
DATA_TYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8, np.dtype(np.int8): INT8,
              np.dtype(np.int64): INT64}
MS = "com.microsoft"


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, DATA_TYPES[array.dtype]) + _bytes(8, name)
            + _bytes(9, array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()))


def external_tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto whose data is supplied from memory when the session is made: dims (1), data_type (2),
    name (8), external_data (13: key 1, value 2), data_location (14: EXTERNAL = 1)."""
    where = b"".join(_bytes(13, _bytes(1, key) + _bytes(2, value))
                     for key, value in (("location", "memory"), ("offset", "0"), ("length", str(array.nbytes))))
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, DATA_TYPES[array.dtype]) + _bytes(8, name)
            + where + _int(14, 1))


class Initializers:
    """The graph's constant tensors. Weights are declared in the model as external data and handed to onnxruntime
    from memory (`SessionOptions.add_external_initializers`): their 40 MB are never serialised. Small tensors
    (shapes, scalars) are written into the model, where shape inference can read them."""

    INLINE_BYTES = 256

    def __init__(self) -> None:
        self.protos: list[bytes] = []
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        if array.nbytes <= self.INLINE_BYTES:
            self.protos.append(tensor(name, array))
            return
        self.arrays[name] = array
        self.protos.append(external_tensor(name, array))


def value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> bytes:
    """ValueInfoProto: name (1), type (2: TypeProto.tensor_type (1): elem_type (1), shape (2): dim (1))."""
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, shape)))


def attribute(name: str, value: float | int | Sequence[int]) -> bytes:
    """AttributeProto: name (1), type (20), f (2), i (3), ints (8)."""
    if isinstance(value, float):
        return _bytes(1, name) + _int(20, 1) + _varint(2 << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, int):
        return _bytes(1, name) + _int(20, 2) + _int(3, value)
    return _bytes(1, name) + _int(20, 7) + b"".join(_int(8, v) for v in value)


def node(op: str, inputs: Sequence[str], outputs: Sequence[str], domain: str = "", **attributes: Any) -> bytes:
    """NodeProto: input (1), output (2), op_type (4), attribute (5), domain (7)."""
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs) + _bytes(4, op)
            + b"".join(_bytes(5, attribute(k, v)) for k, v in attributes.items())
            + (_bytes(7, domain) if domain else b""))


def model(name: str, nodes: list[bytes], initializers: list[bytes], inputs: list[bytes], outputs: list[bytes]
          ) -> bytes:
    """ModelProto: ir_version (1), graph (7: node 1, name 2, initializer 5, input 11, output 12), opset_import (8)."""
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, name)
             + b"".join(_bytes(5, t) for t in initializers) + b"".join(_bytes(11, v) for v in inputs)
             + b"".join(_bytes(12, v) for v in outputs))
    opsets = _bytes(8, _bytes(1, "") + _int(2, 17)) + _bytes(8, _bytes(1, MS) + _int(2, 1))
    return _int(1, 8) + opsets + _bytes(7, graph)


class Session:
    """`proto` (a model whose output is "y") on onnxruntime's CPU provider, `threads` threads a run; idle ones
    sleep instead of spinning on a core (a server shares its cores). `external` arrays are handed over from memory
    (`Initializers`) and kept here: they must outlive the session. Thread-safe. Raises ImportError without
    onnxruntime, and onnxruntime's own errors for a model it cannot run."""

    def __init__(self, proto: bytes, threads: int, external: Mapping[str, np.ndarray] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        external = external or {}
        # onnxruntime reads these arrays when the session is made and keeps its own packed copies of weights
        self._values = [ort.OrtValue.ortvalue_from_numpy(array) for array in external.values()]
        if external:
            options.add_external_initializers(list(external), self._values)
        self._session = ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The output "y" for these inputs."""
        return self._session.run(["y"], dict(feeds))[0]
