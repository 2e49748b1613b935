"""Cut a .tflite model into slices: sub-models that keep some of its operators with exactly their weights
and quantization parameters (what ``mnbench profile`` times and mixed precision chooses between).

A slice's inputs are the non-constant tensors its operators read but do not produce, its outputs the tensors
they produce that anything else reads (or the model's outputs). Works on the object tree of
:func:`device_bench.tflite_file.tree`; no TensorFlow import.
"""

from __future__ import annotations

import copy
import re

import numpy as np

# Our layer names (mobilenets_tf.plan) inside TFLite tensor names, e.g. ".../block03_expand_bn_1/...".
_BLOCK = re.compile(r"(?:^|/)(rescale|stem|block\d+|head\d+|pool|logits|flatten|predictions)[_/]")
_BLOCK_ALIASES = {"rescale": "stem", "flatten": "logits", "predictions": "logits"}


def op_name(tree, op) -> str:
    """The builtin operator name of ``op`` (``CONV_2D``, ``HARD_SWISH``; ``CUSTOM`` for others)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    code = tree.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def node_name(tree, index: int) -> str:
    """Operator ``index`` named as benchmark_model's op profile names a node: ``[output tensors]:index``."""
    graph = tree.subgraphs[0]
    outputs = [graph.tensors[i].name for i in graph.operators[index].outputs if i >= 0]
    names = [name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in outputs]
    return f"[{', '.join(names)}]:{index}"


def block_of(tree, op, producers: dict[int, str]) -> str:
    """The block named in the op's output tensor names, else the block that produced its first input."""
    graph = tree.subgraphs[0]
    for index in op.outputs:
        match = _BLOCK.search(graph.tensors[index].name.decode(errors="replace"))
        if match:
            return _BLOCK_ALIASES.get(match.group(1), match.group(1))
    return next((producers[t] for t in op.inputs if t in producers), "other")


# Operators XNNPACK may run fused with the operator that produced their input (an activation, a rescale, a
# residual sum): a layer is an operator outside this set with the element-wise operators that follow from it.
ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "RELU", "RELU6", "RELU_N1_TO_1",
               "LEAKY_RELU", "HARD_SWISH", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE", "SQUARED_DIFFERENCE"}


def layers(tree) -> list[list[int]]:
    """Operator indices per layer: an element-wise operator joins the layer of its latest-produced input."""
    result: list[list[int]] = []
    layer_of: dict[int, int] = {}
    for index, op in enumerate(tree.subgraphs[0].operators):
        sources = [layer_of[t] for t in op.inputs if t in layer_of]
        if op_name(tree, op) in ELEMENTWISE and sources:
            layer = max(sources)
            result[layer].append(index)
        else:
            layer = len(result)
            result.append([index])
        layer_of.update({t: layer for t in op.outputs})
    return result


def groups(tree, by: str) -> list[tuple[str, list[int]]]:
    """Operator indices per slice: one per operator (``op``), per layer (``layer``) or per block
    (``block``)."""
    operators = tree.subgraphs[0].operators
    if by == "op":
        return [(f"{i}:{op_name(tree, op)}", [i]) for i, op in enumerate(operators)]
    if by == "layer":
        return [(f"{ops[0]}:{op_name(tree, operators[ops[0]])}", ops) for ops in layers(tree)]
    labels: list[str] = []
    producers: dict[int, str] = {}
    for op in operators:
        labels.append(block_of(tree, op, producers))
        producers.update({t: labels[-1] for t in op.outputs})
    # An operator named by no block and fed by none (the DEQUANTIZE of the input before a float stem) belongs
    # to the block that reads its output.
    for index in reversed(range(len(operators))):
        if labels[index] == "other":
            outputs = set(operators[index].outputs)
            labels[index] = next((labels[j] for j in range(index + 1, len(operators))
                                  if outputs & set(operators[j].inputs) and labels[j] != "other"), "other")
    blocks: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        blocks.setdefault(label, []).append(index)
    return list(blocks.items())


def slice_graph(tree, indices: list[int]):
    """A copy of the main subgraph that runs only ``indices``; it shares tensors and weights with it."""
    graph = tree.subgraphs[0]
    chosen = set(indices)
    kept = [graph.operators[i] for i in indices]
    produced = {t for op in kept for t in op.outputs}
    consumed = {t for op in kept for t in op.inputs if t >= 0}
    constant = {t for t in consumed if _has_data(tree, graph.tensors[t])}
    rest = {t for i, op in enumerate(graph.operators) if i not in chosen for t in op.inputs}
    part = copy.copy(graph)
    part.operators = kept
    part.inputs = sorted(consumed - produced - constant)
    outputs = set(graph.outputs)
    part.outputs = sorted(t for t in produced if t in rest or t in outputs) or list(kept[-1].outputs)
    return part


def _serialized(tree, subgraphs, keep: set[int] | None = None, codes: list | None = None) -> bytes:
    """Serialize the tree with these subgraphs (and only the ``keep`` buffers, if given), then restore it."""
    from ai_edge_litert.tools import flatbuffer_utils

    saved = (tree.subgraphs, tree.signatureDefs, tree.buffers, tree.operatorCodes)
    try:
        tree.subgraphs, tree.signatureDefs, tree.operatorCodes = subgraphs, [], codes or tree.operatorCodes
        if keep is not None:
            empty = _empty_buffer()
            tree.buffers = [b if i in keep or i == 0 else empty for i, b in enumerate(saved[2])]
        return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
    finally:
        tree.subgraphs, tree.signatureDefs, tree.buffers, tree.operatorCodes = saved


def cut(tree, indices: list[int]) -> bytes:
    """A model holding only ``indices``, with their weights and nothing else."""
    part = slice_graph(tree, indices)
    keep = {part.tensors[t].buffer for op in part.operators for t in op.inputs if t >= 0}
    return _serialized(tree, [part], keep)


def _floor_graph(tree) -> tuple[object, list]:
    """A subgraph adding two 8-float vectors: what invoking a subgraph costs when it does nearly nothing."""
    from ai_edge_litert import schema_py_generated as schema

    codes = list(tree.operatorCodes)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    codes.append(code)
    graph = schema.SubGraphT()
    graph.tensors = []
    for name in (b"floor_a", b"floor_b", b"floor_sum"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1, 8], schema.TensorType.FLOAT32, 0, name
        graph.tensors.append(tensor)
    add = schema.OperatorT()
    add.opcodeIndex, add.inputs, add.outputs = len(codes) - 1, [0, 1], [2]
    add.builtinOptionsType, add.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    graph.operators, graph.inputs, graph.outputs, graph.name = [add], [0, 1], [2], b"floor"
    return graph, codes


def bundle(tree, slices: list[list[int]]) -> tuple[bytes, list[list[int]]]:
    """One model: subgraph 0 the invoke floor, 1.. the slices; and each one's input tensors."""
    floor, codes = _floor_graph(tree)
    subgraphs = [floor] + [slice_graph(tree, indices) for indices in slices]
    return _serialized(tree, subgraphs, codes=codes), [[int(t) for t in graph.inputs] for graph in subgraphs]


def _has_data(tree, tensor) -> bool:
    data = tree.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _empty_buffer():
    from ai_edge_litert import schema_py_generated as schema

    return schema.BufferT()


def weight_bytes(tree, indices) -> int:
    """Bytes of the weight buffers the operators ``indices`` read."""
    graph = tree.subgraphs[0]
    buffers = {graph.tensors[t].buffer for i in indices for t in graph.operators[i].inputs
               if t >= 0 and _has_data(tree, graph.tensors[t])}
    return sum(len(tree.buffers[b].data) for b in buffers)


def _activation_bytes(tree, tensor: int) -> int:
    info = tree.subgraphs[0].tensors[tensor]
    return int(np.prod(info.shape)) * _ITEMSIZE.get(info.type, 4)


_ITEMSIZE = {1: 2, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 16, 11: 8, 16: 2, 17: 1}   # TensorType -> bytes (else 4)


def footprint(tree, indices) -> int:
    """Memory a slice touches that no other slice shares: its packed weights and its input and output
    tensors (its intermediate tensors live in XNNPACK's workspace, which all subgraphs share)."""
    part = slice_graph(tree, indices)
    return weight_bytes(tree,
                        indices) + sum(_activation_bytes(tree, t) for t in [*part.inputs, *part.outputs])


def whole_footprint(tree) -> int:
    """Memory the whole model touches: its weights and the most activation bytes alive at once."""
    graph = tree.subgraphs[0]
    last_use = {t: index for index, op in enumerate(graph.operators) for t in op.inputs if t >= 0}
    last_use.update({t: len(graph.operators) for t in graph.outputs})
    live, peak = {t: _activation_bytes(tree, t) for t in graph.inputs}, 0
    for index, op in enumerate(graph.operators):
        live.update({t: _activation_bytes(tree, t) for t in op.outputs})
        peak = max(peak, sum(live.values()))
        live = {t: size for t, size in live.items() if last_use.get(t, -1) > index}
    return weight_bytes(tree, range(len(graph.operators))) + peak
