"""Where the time goes in a model on the host: time sub-models cut out of the flatbuffer.

Each slice keeps some operators of the model with exactly their weights and quantization parameters; its
inputs are the non-constant tensors those operators read but do not produce, its outputs the tensors they
produce that anything else reads (or the model's outputs). Slices are timed one after another in one fresh
worker process, beside the whole model; the report says how close the sum of the slices comes to it.
Caveats: slices are fed random data (the kernels here do not depend on values), each slice pays one invoke
and delegate entry (a few microseconds), and cross-slice fusion is lost.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from mnbench.errors import BenchError

from .host import HostParams

# Our layer names (mobilenets_tf.plan) inside TFLite tensor names, e.g. ".../block03_expand_bn_1/...".
_BLOCK = re.compile(r"(?:^|/)(rescale|stem|block\d+|head\d+|pool|logits|flatten|predictions)[_/]")
_BLOCK_ALIASES = {"rescale": "stem", "flatten": "logits", "predictions": "logits"}


def _tree(data: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))


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


def groups(tree, by: str) -> list[tuple[str, list[int]]]:
    """Operator indices per slice: one per operator (``op``) or per network block (``block``)."""
    operators = tree.subgraphs[0].operators
    if by == "op":
        return [(f"{i}:{_op_name(tree, op)}", [i]) for i, op in enumerate(operators)]
    blocks: dict[str, list[int]] = {}
    producers: dict[int, str] = {}
    for index, op in enumerate(operators):
        block = block_of(tree, op, producers)
        producers.update({t: block for t in op.outputs})
        blocks.setdefault(block, []).append(index)
    return list(blocks.items())


def cut(tree, indices: list[int]) -> bytes:
    """Serialize a sub-model holding only ``indices`` (the tree is restored afterwards)."""
    from ai_edge_litert.tools import flatbuffer_utils

    graph = tree.subgraphs[0]
    kept = [graph.operators[i] for i in indices]
    produced = {t for op in kept for t in op.outputs}
    consumed = {t for op in kept for t in op.inputs if t >= 0}
    constant = {t for t in consumed if _has_data(tree, graph.tensors[t])}
    rest = {t for i, op in enumerate(graph.operators) if i not in set(indices) for t in op.inputs}
    outputs = sorted(t for t in produced if t in rest or t in set(graph.outputs)) or list(kept[-1].outputs)
    inputs = sorted(consumed - produced - constant)
    saved = (graph.operators, graph.inputs, graph.outputs, tree.signatureDefs, tree.buffers)
    needed = {graph.tensors[t].buffer for t in constant}
    empty = _empty_buffer()
    try:
        graph.operators, graph.inputs, graph.outputs, tree.signatureDefs = kept, inputs, outputs, []
        tree.buffers = [b if i in needed or i == 0 else empty for i, b in enumerate(saved[4])]
        return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
    finally:
        graph.operators, graph.inputs, graph.outputs, tree.signatureDefs, tree.buffers = saved


def _has_data(tree, tensor) -> bool:
    data = tree.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _empty_buffer():
    from ai_edge_litert import schema_py_generated as schema

    return schema.BufferT()


def _time_all(paths: list[Path], threads: int, params: HostParams) -> list[dict]:
    payload = json.dumps({"models": [str(p) for p in paths], "threads": threads, **asdict(params)})
    done = subprocess.run([sys.executable, "-m", "device_bench.host_worker", payload], capture_output=True,
                          text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"profile worker failed: {' '.join(done.stderr.split())[-300:]}")
    return json.loads(lines[-1])


def profile(model: Path, by: str = "block", threads: int = 1,
            params: HostParams = HostParams(runs=50, min_secs=0.05, warmup=5, warmup_min_secs=0.02)) -> dict:
    """Median latency of every slice, per op type, and the sum of the slices against the whole model."""
    import statistics

    from export.tflite_file import read_bytes

    if by not in ("op", "block"):
        raise BenchError(f"--by must be op or block, got {by!r}")
    data = read_bytes(model)
    tree = _tree(data)
    slices = groups(tree, by)
    with tempfile.TemporaryDirectory(prefix="mnbench-profile-") as tmp:
        paths = [Path(model)]
        for number, (label, indices) in enumerate(slices):
            path = Path(tmp) / f"slice{number:03d}.tflite"
            path.write_bytes(cut(tree, indices))
            paths.append(path)
        results = _time_all(paths, threads, params)
    failed = [r["error"] for r in results if not r["ok"]]
    if failed:
        raise BenchError(f"a slice could not be timed: {failed[0]}")
    medians = [statistics.median(r["samples_us"]) for r in results]
    whole, parts = medians[0], medians[1:]
    operators = tree.subgraphs[0].operators
    rows = [{"slice": label, "ops": len(indices),
             "op_types": dict(collections.Counter(_op_name(tree, operators[i]) for i in indices)),
             "median_us": part} for (label, indices), part in zip(slices, parts)]
    by_type: dict[str, float] = collections.defaultdict(float)
    if by == "op":
        for row in rows:
            by_type[next(iter(row["op_types"]))] += row["median_us"]
    return {"model": str(model), "by": by, "threads": threads, "whole_us": whole, "sum_us": sum(parts),
            "sum_over_whole": sum(parts) / whole, "slices": rows, "by_op_type": dict(by_type)}
