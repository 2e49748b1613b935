"""Where the time goes in a model on the host: time sub-models cut out of the flatbuffer.

Each slice keeps some operators of the model with exactly their weights and quantization parameters; its
inputs are the non-constant tensors those operators read but do not produce, its outputs the tensors they
produce that anything else reads (or the model's outputs). Slices are subgraphs of one model, invoked in
model order, round after round, in a fresh worker process: they share one XNNPACK thread pool and meet the
caches much as they do inside the whole model. A slice's figure is its median minus the median of an almost
empty subgraph timed in the same rounds (the invoke floor, which the whole model pays once). The report
says how close the sum comes to the whole model timed alone.

Caveats: slices are fed random data (the kernels here do not depend on values); XNNPACK fuses chains of
operators (V3-Small int8, 1 thread: the stem's h-swish MUL takes 32 us alone and adds nothing after its
ADD; the input rescale MUL+ADD takes 5.8 us, its MUL alone 22.6 us), so an operator is measured as what it
adds to its layer, not alone.
"""

from __future__ import annotations

import collections
import copy
import re
import tempfile
from pathlib import Path

import numpy as np

from mnbench.errors import BenchError

from .host import HostParams

# Our layer names (mobilenets_tf.plan) inside TFLite tensor names, e.g. ".../block03_expand_bn_1/...".
_BLOCK = re.compile(r"(?:^|/)(rescale|stem|block\d+|head\d+|pool|logits|flatten|predictions)[_/]")
_BLOCK_ALIASES = {"rescale": "stem", "flatten": "logits", "predictions": "logits"}


def _tree(data: bytes):
    """The model as flatbuffer objects; a truncated or corrupt file is a ModelFileError, not a crash."""
    from ai_edge_litert.tools import flatbuffer_utils

    from export.tflite_file import ModelFileError

    try:
        return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    except Exception as error:  # flatbuffers raises struct.error, IndexError, ... on corrupt input
        raise ModelFileError(f"corrupt .tflite model: {type(error).__name__}: {error}") from None


def _op_name(tree, op) -> str:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    code = tree.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


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
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU",
                "HARD_SWISH", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE", "SQUARED_DIFFERENCE"}


def layers(tree) -> list[list[int]]:
    """Operator indices per layer: an element-wise operator joins the layer of its latest-produced input."""
    result: list[list[int]] = []
    layer_of: dict[int, int] = {}
    for index, op in enumerate(tree.subgraphs[0].operators):
        sources = [layer_of[t] for t in op.inputs if t in layer_of]
        if _op_name(tree, op) in _ELEMENTWISE and sources:
            layer = max(sources)
            result[layer].append(index)
        else:
            layer = len(result)
            result.append([index])
        layer_of.update({t: layer for t in op.outputs})
    return result


def groups(tree, by: str) -> list[tuple[str, list[int]]]:
    """Operator indices per slice: one per operator (``op``), per layer (``layer``) or per block (``block``)."""
    operators = tree.subgraphs[0].operators
    if by == "op":
        return [(f"{i}:{_op_name(tree, op)}", [i]) for i, op in enumerate(operators)]
    if by == "layer":
        return [(f"{ops[0]}:{_op_name(tree, operators[ops[0]])}", ops) for ops in layers(tree)]
    blocks: dict[str, list[int]] = {}
    producers: dict[int, str] = {}
    for index, op in enumerate(operators):
        block = block_of(tree, op, producers)
        producers.update({t: block for t in op.outputs})
        blocks.setdefault(block, []).append(index)
    return list(blocks.items())


def _slice_graph(tree, indices: list[int]):
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
    part.outputs = sorted(t for t in produced if t in rest or t in set(graph.outputs)) or list(kept[-1].outputs)
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
    part = _slice_graph(tree, indices)
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
    subgraphs = [floor] + [_slice_graph(tree, indices) for indices in slices]
    return _serialized(tree, subgraphs, codes=codes), [[int(t) for t in graph.inputs] for graph in subgraphs]


def _has_data(tree, tensor) -> bool:
    data = tree.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _empty_buffer():
    from ai_edge_litert import schema_py_generated as schema

    return schema.BufferT()


def _median_us(model: Path, threads: int, params: HostParams, inputs=None):
    """Median latency of ``model`` (or of each of its subgraphs, given their inputs), in a fresh process."""
    import statistics

    from .host import run_worker

    result = run_worker(model, threads, params, inputs)
    if not result["ok"]:
        raise BenchError(f"profile worker failed: {result['error']}")
    if inputs is None:
        return statistics.median(result["samples_us"])
    return [statistics.median(samples) for samples in result["samples_us"]]


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
    part = _slice_graph(tree, indices)
    return weight_bytes(tree, indices) + sum(_activation_bytes(tree, t) for t in [*part.inputs, *part.outputs])


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


SLICES_PER_SESSION = 24   # beyond this, the runtime state of the other subgraphs slows each invoke
FOOTPRINT_SLACK = 1.5     # slices' inputs and outputs are counted apart; XNNPACK reuses one buffer for both


def sessions(tree, slices: list[list[int]]) -> list[list[int]]:
    """Consecutive runs of at most SLICES_PER_SESSION slices, touching about the memory the whole model does.

    Timed in one round, slices should stream through the caches what the whole model streams: no more
    (XNNPACK packs weights per subgraph, ``op``'s prefixes repeat operators, and every slice's inputs and
    outputs are its own tensors) and no less (they would run from warmer caches than inside the model).
    Too many subgraphs in a round also slow every invoke (measured: benchmarks/profile_sums.py).
    """
    sizes = [footprint(tree, indices) for indices in slices]
    count = max(-(-sum(sizes) // int(FOOTPRINT_SLACK * whole_footprint(tree))), -(-len(slices) // SLICES_PER_SESSION))
    target = sum(sizes) / count      # about equal sessions: a short one would run from warmer caches
    result: list[list[int]] = [[]]
    used = 0
    for position, size in enumerate(sizes):
        full = len(result[-1]) == SLICES_PER_SESSION
        if result[-1] and (full or (len(result) < count and used + size / 2 > target)):
            result.append([])
            used = 0
        result[-1].append(position)
        used += size
    return result


def _time_slices(model: Path, tree, slices, threads: int, params: HostParams) -> tuple[list[float], list, list]:
    """Each slice's median minus its session's invoke floor; every session's floor; and the whole model's
    median before each session and after the last (a machine's speed drifts: the whole is their median)."""
    parts, floors, wholes = [], [], []
    with tempfile.TemporaryDirectory(prefix="mnbench-profile-") as tmp:
        path = Path(tmp) / "slices.tflite"
        for session in sessions(tree, slices):
            wholes.append(_median_us(model, threads, params))
            data, inputs = bundle(tree, [slices[p] for p in session])
            path.write_bytes(data)
            floor, *medians = _median_us(path, threads, params, inputs)
            floors.append(floor)
            parts += [median - floor for median in medians]
    wholes.append(_median_us(model, threads, params))
    return parts, floors, wholes


def profile(model: Path, by: str = "block", threads: int = 1,
            params: HostParams = HostParams(runs=50, min_secs=1.0, warmup=5, warmup_min_secs=0.2)) -> dict:
    """Median latency of every slice, per op type, and the sum of the slices against the whole model.

    ``block`` and ``layer`` time one slice per block or layer. ``op`` times, in every layer, the layer's
    first operator, its first two, and so on: an operator's figure is what it adds to its layer (negative
    when XNNPACK runs the longer chain as a faster fused kernel), so a layer's operators add up to it.
    """
    import statistics

    from export.tflite_file import open_interpreter, read_bytes

    if by not in ("op", "layer", "block"):
        raise BenchError(f"--by must be op, layer or block, got {by!r}")
    data = read_bytes(model)
    open_interpreter(data)  # a model LiteRT cannot load fails here, with LiteRT's reason
    tree = _tree(data)
    operators = tree.subgraphs[0].operators
    if by == "op":
        chains = layers(tree)
        slices = [chain[:k] for chain in chains for k in range(1, len(chain) + 1)]
    else:
        named = groups(tree, by)
        slices = [indices for _, indices in named]
    parts, floors, wholes = _time_slices(Path(model), tree, slices, threads, params)
    floor, whole = statistics.median(floors), statistics.median(wholes)
    if by == "op":
        added = {}
        for indices, part in zip(slices, parts):
            added[indices[-1]] = part - sum(added[i] for i in indices[:-1])
        named = [(f"{i}:{_op_name(tree, operators[i])}", [i]) for i in sorted(added)]
        parts = [added[i] for i in sorted(added)]
    layer_of = {i: f"{chain[0]}:{_op_name(tree, operators[chain[0]])}" for chain in layers(tree) for i in chain}
    rows = [{"slice": label, "ops": len(indices), "layer": layer_of[indices[0]],
             "op_types": dict(collections.Counter(_op_name(tree, operators[i]) for i in indices)),
             "median_us": part} for (label, indices), part in zip(named, parts)]
    by_type: dict[str, float] = collections.defaultdict(float)
    if by == "op":
        for row in rows:
            by_type[next(iter(row["op_types"]))] += row["median_us"]
    total = sum(parts) + floor     # the whole model pays the invoke floor once
    return {"model": str(model), "by": by, "threads": threads, "whole_us": whole,
            "floor_us": floor, "sessions": len(floors),
            "sum_us": total, "sum_over_whole": total / whole, "slices": rows, "by_op_type": dict(by_type)}
