"""MiniLM's six encoder layers as one onnxruntime session, in float32 (the default) or int8.

numpy runs each matmul well but pays Python's and numpy's fixed cost on every one of the ~90 small operations
of a forward pass, and has no fast int8 (nor float16) matmul on a CPU. onnxruntime, which chromadb already
installs, runs the whole encoder as one graph with fused kernels: in float32 the same vectors as numpy (cosine
0.9999998) at about twice numpy's speed for one query and 1.3x in bulk; in int8 (`MatMulIntegerToFloat`: integer
dot-product instructions where the CPU has them, AVX-512 VNNI, AVX-VNNI, Arm's dot product) about 2.5x numpy in
bulk on such a CPU, and 1.3-1.7x on one with AVX2 only; cosine >= 0.99.
This module writes the graph by hand (the protobuf wire format of the few messages needed, no `onnx` package)
from the weights `minilm.MiniLM` already holds. Embeddings, the embedding LayerNorm and mean pooling stay in
numpy; `minilm.py` keeps the whole model in numpy as the reference and the fallback.

int8 quantization, chosen by the cosine to float32 on generic sentences (none of the retrieval sets):
- weights: symmetric per output column (scale = max |w| / levels of each column): 127 levels per sign, or 63
  on CPUs whose integer matmul would otherwise overflow (`weight_levels`);
- activations: the input of every linear layer is divided by each row's largest magnitude, so every token gets
  the whole range, quantized to uint8 around 128, and the product is multiplied back (y = r * (x / r) W: exact
  in real numbers, per-row quantization in effect);
- attention scores, softmax, GELU (exact, erf) and LayerNorms in float32.

Per sentence the int8 cosine to float32 is >= 0.99 (mean 0.996-0.998) on realistic propositions; test_embeddings_speed
checks it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from gum_mcp.index.onnx_graph import (
    FLOAT,
    INT64,
    MS,
    UINT8,
    Initializers,
    Session,
    model,
    node,
    tensor,
    value_info,
)

#: What the graph computes its linear layers in. "float32": the same vectors as sentence-transformers; "int8":
#: about 2.5x faster in bulk, cosine >= 0.99 to float32.
PRECISIONS = ("float32", "int8")


class Unsupported(RuntimeError):
    """onnxruntime is missing or cannot run the graph here: use numpy (float32)."""


# -- the encoder graph

Layer = tuple  # minilm.MiniLM.layers: (qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2), (in, out) matrices


def _quantize_columns(weight: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    scale = np.maximum(np.abs(weight).max(axis=0), np.float32(1e-12)) / np.float32(levels)
    quantized = np.clip(np.rint(weight / scale), -levels, levels).astype(np.int8)
    return quantized, scale.astype(np.float32)


#: Weight levels per sign: the full int8 range, and the 7-bit range whose products cannot overflow 16 bits.
FULL_WEIGHT_LEVELS, SAFE_WEIGHT_LEVELS = 127, 63
_levels_lock = threading.Lock()
_levels: int | None = None


def integer_matmul(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """onnxruntime's MatMulIntegerToFloat (the int8 encoder's kernel) on uint8 `activations` (zero point 128)
    and int8 `weights`, scales 1."""
    k, n = weights.shape
    inits = [tensor("w", weights), tensor("as", np.array(1.0, np.float32)), tensor("ws", np.ones(n, np.float32)),
             tensor("az", np.array(128, np.uint8))]
    proto = model("integer_matmul", [node("MatMulIntegerToFloat", ["a", "w", "as", "ws", "az"], ["y"], MS)], inits,
                  [value_info("a", UINT8, ["m", k])], [value_info("y", FLOAT, ["m", n])])
    return Session(proto, threads=1).run({"a": activations})


def weight_levels() -> int:
    """How many levels per sign the int8 weights get on this CPU: 127 where onnxruntime's integer matmul is
    exact, 63 where it is not. CPUs with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, Arm's dot
    product) add each product into 32 bits. x86 CPUs without them (AVX2 only, e.g. AMD Zen 2/3, Intel before
    Ice Lake) multiply pairs of uint8 x int8 into a saturating 16-bit sum: 2 x 255 x 127 overflows it, and a
    saturated sum silently corrupts the vector (seen: 48,960 for 6,193,536). With weights in [-63, 63] no pair
    can overflow (2 x 255 x 63 < 32,767), as onnxruntime's own quantizer does with `reduce_range`. Asked once
    per process by running the kernel on a worst case (a few ms)."""
    global _levels
    with _levels_lock:
        if _levels is None:
            weights = np.full((64, 16), FULL_WEIGHT_LEVELS, np.int8)
            weights[:, 1::2] = -FULL_WEIGHT_LEVELS
            activations = np.array([[255] * 64, [0] * 64, [128] * 64, [200, 7] * 32], np.uint8)
            exact = (activations.astype(np.int64) - 128) @ weights.astype(np.int64)
            _levels = (FULL_WEIGHT_LEVELS if np.array_equal(integer_matmul(weights, activations), exact)
                       else SAFE_WEIGHT_LEVELS)
        return _levels


def encoder_graph(layers: Sequence[Layer], hidden: int, eps: float, precision: str,
                  levels: int = FULL_WEIGHT_LEVELS) -> tuple[bytes, dict[str, np.ndarray]]:
    """The ONNX model of the encoder layers, and the arrays of its external initializers by name. Inputs:
    x (tokens, hidden) float32 after the embedding LayerNorm: the batch's real tokens, text after text, no
    padding; pad (b * t): for each slot of the padded (b, t) layout the row of x it takes (attention needs
    the texts side by side; a slot past a text's end takes any of its rows, masked); unpad (tokens): each
    token's slot; mask (b, 1, 1, t) additive; shape4 = [b, t, heads, head dim], shape2 = [b * t, hidden];
    output y (tokens, hidden). Only attention sees the padded layout: the linear layers, GELU and LayerNorms
    run on the real tokens alone. The linear layers run in `precision` (int8: weights in [-levels, levels],
    see `weight_levels`); everything else in float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    nodes: list[bytes] = []
    inits = Initializers()
    inits.add("split", np.array([hidden] * 3, np.int64))
    if precision == "int8":
        inits.add("tiny", np.array(1e-12, np.float32))
        inits.add("a.scale", np.array(1.0 / 127.0, np.float32))  # a row's largest -> 127
        inits.add("a.zero", np.array(128, np.uint8))

    def linear(name: str, x: str, weight: np.ndarray, bias: np.ndarray, out: str) -> None:
        """out = x @ weight + bias; in int8, each row of x quantized over its own largest magnitude."""
        if precision == "float32":
            inits.add(f"{name}.w", weight.astype(np.float32, copy=False))
            inits.add(f"{name}.b", bias.astype(np.float32, copy=False))
            nodes.extend([node("MatMul", [x, f"{name}.w"], [f"{name}.y"]),
                          node("Add", [f"{name}.y", f"{name}.b"], [out])])
            return
        quantized, scale = _quantize_columns(weight, levels)
        inits.add(f"{name}.w", quantized)
        inits.add(f"{name}.s", scale)
        inits.add(f"{name}.b", bias.astype(np.float32, copy=False))
        nodes.extend([
            node("Abs", [x], [f"{name}.abs"]),
            node("ReduceMax", [f"{name}.abs"], [f"{name}.rmax"], axes=[-1], keepdims=1),
            node("Max", [f"{name}.rmax", "tiny"], [f"{name}.r"]),
            node("Div", [x, f"{name}.r"], [f"{name}.xr"]),  # every row in [-1, 1]
            node("QuantizeLinear", [f"{name}.xr", "a.scale", "a.zero"], [f"{name}.xq"]),
            node("MatMulIntegerToFloat", [f"{name}.xq", f"{name}.w", "a.scale", f"{name}.s", "a.zero"],
                  [f"{name}.yr"], MS),
            node("Mul", [f"{name}.yr", f"{name}.r"], [f"{name}.y"]),
            node("Add", [f"{name}.y", f"{name}.b"], [out]),
        ])

    x = "x"
    for n, (qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2) in enumerate(layers):
        p = f"l{n}."
        linear(p + "qkv", x, qkv_w, qkv_b, p + "qkv")  # the query part is pre-scaled
        nodes.append(node("Gather", [p + "qkv", "pad"], [p + "qkvp"], axis=0))  # (b * t, 3 hidden)
        nodes.append(node("Split", [p + "qkvp", "split"], [p + "q", p + "k", p + "v"], axis=1))
        for part in "qkv":
            nodes.append(node("Reshape", [p + part, "shape4"], [p + part + "4"]))  # (b, t, heads, hd)
        nodes.extend([
            node("Transpose", [p + "q4"], [p + "qt"], perm=[0, 2, 1, 3]),
            node("Transpose", [p + "k4"], [p + "kt"], perm=[0, 2, 3, 1]),
            node("Transpose", [p + "v4"], [p + "vt"], perm=[0, 2, 1, 3]),
            node("MatMul", [p + "qt", p + "kt"], [p + "scores"]),
            node("Add", [p + "scores", "mask"], [p + "masked"]),
            node("Softmax", [p + "masked"], [p + "attn"], axis=-1),
            node("MatMul", [p + "attn", p + "vt"], [p + "ctx"]),
            node("Transpose", [p + "ctx"], [p + "ctxt"], perm=[0, 2, 1, 3]),
            node("Reshape", [p + "ctxt", "shape2"], [p + "ctx2"]),
            node("Gather", [p + "ctx2", "unpad"], [p + "ctxu"], axis=0),  # the real tokens' rows again
        ])
        linear(p + "o", p + "ctxu", o_w, o_b, p + "ao")
        inits.add(p + "ln1.g", ln1[0])
        inits.add(p + "ln1.b", ln1[1])
        nodes.append(node("Add", [p + "ao", x], [p + "res1"]))
        nodes.append(node("LayerNormalization", [p + "res1", p + "ln1.g", p + "ln1.b"], [p + "x1"], axis=-1,
                           epsilon=float(eps)))
        linear(p + "i", p + "x1", i_w, i_b, p + "inner")
        nodes.append(node("Gelu", [p + "inner"], [p + "gelu"], MS))  # exact (erf)
        linear(p + "f", p + "gelu", f_w, f_b, p + "ffn")
        inits.add(p + "ln2.g", ln2[0])
        inits.add(p + "ln2.b", ln2[1])
        nodes.append(node("Add", [p + "ffn", p + "x1"], [p + "res2"]))
        nodes.append(node("LayerNormalization", [p + "res2", p + "ln2.g", p + "ln2.b"], [p + "x2"], axis=-1,
                           epsilon=float(eps)))
        x = p + "x2"
    nodes.append(node("Identity", [x], ["y"]))
    inputs = [value_info("x", FLOAT, ["tokens", hidden]), value_info("pad", INT64, ["slots"]),
              value_info("unpad", INT64, ["tokens"]), value_info("mask", FLOAT, ["b", 1, 1, "t"]),
              value_info("shape4", INT64, [4]), value_info("shape2", INT64, [2])]
    outputs = [value_info("y", FLOAT, ["tokens", hidden])]
    return model("minilm_encoder", nodes, inits.protos, inputs, outputs), inits.arrays


class OnnxEncoder:
    """The encoder layers as one onnxruntime session (`threads` per run, idle ones asleep; runs may overlap:
    thread-safe)."""

    def __init__(self, layers: Sequence[Layer], hidden: int, heads: int, eps: float, precision: str,
                 threads: int = 1) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:  # chromadb depends on it, so this is a broken install
            raise Unsupported(f"onnxruntime is not installed ({exc})") from None
        self.hidden = hidden
        self.heads = heads
        try:
            #: int8 weights' levels per sign on this CPU (`weight_levels`; float32 does not use it)
            self.levels = weight_levels() if precision == "int8" else FULL_WEIGHT_LEVELS
            proto, arrays = encoder_graph(layers, hidden, eps, precision, self.levels)
            # threads: minilm.py decides how passes share the cores
            self._session = Session(proto, threads, external=arrays)
        except Exception as exc:  # an onnxruntime without the contrib ops
            raise Unsupported(f"onnxruntime cannot run the {precision} encoder "
                              f"({type(exc).__name__}: {exc})") from None

    def __call__(self, x: np.ndarray, pad: np.ndarray, unpad: np.ndarray, bias: np.ndarray, b: int, t: int
                 ) -> np.ndarray:
        """x: (tokens, hidden) float32 after the embedding LayerNorm, the real tokens only; pad, unpad: int64
        (`encoder_graph`); bias: (b, 1, 1, t) additive attention mask. Returns (tokens, hidden)."""
        feeds = {"x": x, "pad": pad, "unpad": unpad, "mask": bias,
                 "shape4": np.array([b, t, self.heads, self.hidden // self.heads], np.int64),
                 "shape2": np.array([b * t, self.hidden], np.int64)}
        return self._session.run(feeds)
