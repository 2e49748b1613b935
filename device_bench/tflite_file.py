"""The .tflite file layer: read a model, hash it, its embedded configuration, operators, tensor types and
delegation, and its flatbuffer object tree (what :mod:`device_bench.slices` cuts).

Uses the flatbuffer schema shipped with ai-edge-litert; no TensorFlow import.
"""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import ModelFileError

METADATA_KEY = "mnbench"


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def read_bytes(path: Path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a .tflite model file")
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise ModelFileError(f"model file {path} {what}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"cannot read model file {path}: {error.strerror or error}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path} is not a .tflite model (no TFL3 identifier)")
    return data


def sha256(source: bytes | str | Path) -> str:
    """sha256 of bytes, or of a file's content (read in 1 MiB blocks)."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree(data: bytes):
    """The model as a mutable flatbuffer object tree (``ai_edge_litert``'s ``ModelT``).

    Raises:
        ModelFileError: a truncated or corrupt flatbuffer.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    try:
        return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    except Exception as error:  # flatbuffers raises struct.error, IndexError, ... on corrupt input
        raise ModelFileError(f"corrupt .tflite model: {type(error).__name__}: {error}") from None


def embed_metadata(model: bytes, payload: dict) -> bytes:
    """Return ``model`` with ``payload`` (JSON) stored as flatbuffer metadata under ``METADATA_KEY``."""
    from ai_edge_litert.tools import flatbuffer_utils

    schema = _schema()
    objects = tree(model)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(payload, sort_keys=True).encode(), dtype=np.uint8)
    objects.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(objects.buffers) - 1
    objects.metadata = [m for m in (objects.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(objects))


def _model(data: bytes):
    schema = _schema()
    try:
        return schema.Model.GetRootAsModel(data, 0)
    except Exception as error:  # flatbuffers raises assorted errors on corrupt input
        raise ModelFileError(f"corrupt .tflite model: {error}") from None


def read_metadata(data: bytes) -> dict | None:
    """The configuration mnbench embedded, or None for a model mnbench did not write."""
    model = _model(data)
    try:
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() and entry.Name().decode() == METADATA_KEY:
                raw = model.Buffers(entry.Buffer()).DataAsNumpy()
                return json.loads(bytes(raw).decode())
    except Exception as error:  # flatbuffers raises struct.error, IndexError, TypeError, ... on corrupt input
        raise ModelFileError(f"not a readable .tflite model: {type(error).__name__}: {error}") from None
    return None


def operators(data: bytes) -> list[dict]:
    """Every operator of the main subgraph: name, output dtype, fused activation."""
    schema = _schema()
    ops, types = _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType)
    model = _model(data)
    try:
        graph = model.Subgraphs(0)
        result = []
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = ops.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            outputs = [graph.Tensors(op.Outputs(i)) for i in range(op.OutputsLength())]
            result.append({"index": index, "op": name,
                           "output_type": types.get(outputs[0].Type(), "?") if outputs else None})
        return result
    except Exception as error:
        raise ModelFileError(f"corrupt .tflite model: {error}") from None


def op_histogram(ops: list[dict]) -> dict[str, int]:
    counts = collections.Counter(f"{op['op']}:{op['output_type']}" for op in ops)
    return dict(sorted(counts.items()))


def float_ops(ops: list[dict]) -> list[str]:
    """Compute operators whose output stays float (the islands an int8 model should not have)."""
    boundary = {"QUANTIZE", "DEQUANTIZE"}
    return [f"{op['index']}:{op['op']}" for op in ops
            if op["output_type"] in ("FLOAT32", "FLOAT16") and op["op"] not in boundary]


FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16", "FLOAT8_E4M3FN", "FLOAT8_E5M2")


def integer_report(data: bytes) -> dict:
    """Whether the model is full integer (no floating-point tensor anywhere, so integer input and output),
    and which operators would keep a strict integer delegate (NPU, DSP, Edge TPU) from taking the whole
    graph: every operator that reads or writes a floating-point tensor (weights included), such as the
    DEQUANTIZE, float operators and QUANTIZE of a float island, or the QUANTIZE / DEQUANTIZE of float I/O.

    Returns:
        ``{"full_integer": bool, "float_tensors": n, "float_io": [names], "input_types": ["int8"],
        "output_types": ["int8"], "blocking_ops": ["3:CONV_2D", ...]}`` over every subgraph
        (``blocking_ops`` of subgraph k > 0 are written ``k/3:CONV_2D``).
    """
    schema = _schema()
    ops, types = _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType)
    model = _model(data)
    try:
        floats, blocking, float_io, io_types = 0, [], [], {}
        for number in range(model.SubgraphsLength()):
            graph = model.Subgraphs(number)
            is_float = [types.get(graph.Tensors(i).Type()) in FLOAT_TYPES
                        for i in range(graph.TensorsLength())]
            floats += sum(is_float)
            if number == 0:
                inputs = [graph.Inputs(i) for i in range(graph.InputsLength())]
                outputs = [graph.Outputs(i) for i in range(graph.OutputsLength())]
                float_io = [graph.Tensors(i).Name().decode() for i in inputs + outputs if is_float[i]]
                io_types = {kind: sorted({types.get(graph.Tensors(i).Type(), "?").lower() for i in tensors})
                            for kind, tensors in (("input_types", inputs), ("output_types", outputs))}
            for index in range(graph.OperatorsLength()):
                op = graph.Operators(index)
                tensors = [op.Inputs(i) for i in range(op.InputsLength())] + \
                    [op.Outputs(i) for i in range(op.OutputsLength())]
                if any(t >= 0 and is_float[t] for t in tensors):
                    code = model.OperatorCodes(op.OpcodeIndex())
                    name = ops.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
                    blocking.append(f"{index}:{name}" if number == 0 else f"{number}/{index}:{name}")
    except Exception as error:  # flatbuffers raises struct.error, IndexError, ... on corrupt input
        raise ModelFileError(f"corrupt .tflite model: {type(error).__name__}: {error}") from None
    return {"full_integer": floats == 0, "float_tensors": floats, "float_io": float_io,
            **io_types, "blocking_ops": blocking}


def describe_integer(report: dict) -> str:
    """One line: ``full integer: yes``, or no with the float tensors and the operators by type."""
    if report["full_integer"]:
        return (f"full integer: yes (no floating-point tensor; input {'/'.join(report['input_types'])}, "
                f"output {'/'.join(report['output_types'])})")
    by_type = collections.Counter(entry.split(":", 1)[1] for entry in report["blocking_ops"])
    where = ", ".join(f"{op} x{count}" for op, count in by_type.items()) or "none (float constants only)"
    io = f"; float input/output: {', '.join(report['float_io'])}" if report["float_io"] else ""
    return (f"full integer: no ({report['float_tensors']} floating-point tensor(s){io}); operators a strict "
            f"integer delegate would not take: {where}")


def tensor_details(interpreter, which: str) -> list[dict]:
    details = interpreter.get_input_details() if which == "input" else interpreter.get_output_details()
    result = []
    for d in details:
        scale, zero = d["quantization"]
        result.append({"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
                       "shape": [int(s) for s in d["shape"]],
                       "scale": float(scale) if scale else None, "zero_point": int(zero) if scale else None})
    return result


def delegation(interpreter) -> dict:
    """XNNPACK partitions and the operators the runtime keeps outside them, after ``allocate_tensors``.

    ``_get_ops_details()`` lists the original operators followed by one DELEGATE node per partition. An
    original operator runs outside the delegate when none of its outputs comes out of a DELEGATE node and
    every output is consumed by a DELEGATE node, by another outside operator, or is a model output.
    """
    details = interpreter._get_ops_details()
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    original = [d for d in details if d["op_name"] != "DELEGATE"]
    delegate_outputs = {int(t) for d in delegates for t in d["outputs"]}
    model_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    consumed_by_delegate = {int(t) for d in delegates for t in d["inputs"]}
    outside, live = [], set(model_outputs) | consumed_by_delegate
    for op in reversed(original):
        outputs = {int(t) for t in op["outputs"]}
        if outputs & delegate_outputs or not delegates:
            continue
        if outputs and outputs <= live:
            outside.append(op["op_name"])
            live |= {int(t) for t in op["inputs"]}
    if not delegates:
        outside = [op["op_name"] for op in original]
    return {"partitions": len(delegates), "ops_outside_delegate": dict(collections.Counter(outside)),
            "nodes": len(original)}


def describe(path: Path, with_delegation: bool = True) -> dict:
    """Everything ``mnbench inspect`` shows about one model file."""
    data = read_bytes(path)
    ops = operators(data)
    info = {"file": str(path), "size_bytes": len(data), "sha256": sha256(data),
            "embedded": read_metadata(data), "op_histogram": op_histogram(ops), "float_ops": float_ops(ops),
            "integer": integer_report(data), "operators": len(ops)}
    interpreter = open_interpreter(data)
    info["inputs"] = tensor_details(interpreter, "input")
    info["outputs"] = tensor_details(interpreter, "output")
    info["tensor_types"] = dict(collections.Counter(np.dtype(t["dtype"]).name
                                                    for t in interpreter.get_tensor_details()))
    if with_delegation:
        info["delegation"] = delegation(interpreter)
    return info


def open_interpreter(data: bytes, num_threads: int = 1, preserve_all_tensors: bool = False):
    """A LiteRT interpreter (default XNNPACK delegate) with tensors allocated, its notices silenced."""
    from ai_edge_litert.interpreter import Interpreter

    from .quiet import captured

    try:
        with captured():
            interpreter = Interpreter(model_content=data, num_threads=num_threads,
                                      experimental_preserve_all_tensors=preserve_all_tensors)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ModelFileError(f"LiteRT cannot load the model: {' '.join(str(error).split())}") from None
    return interpreter
