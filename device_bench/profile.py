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
import tempfile
from pathlib import Path

from .errors import BenchError
from .host import HostParams
from .slices import bundle, footprint, groups, layers, node_name, op_name, whole_footprint
from .tflite_file import open_interpreter, read_bytes, tree as model_tree


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
    count = max(-(-sum(sizes) // int(FOOTPRINT_SLACK * whole_footprint(tree))),
                -(-len(slices) // SLICES_PER_SESSION))
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


def _time_slices(model: Path, tree, slices, threads: int, params: HostParams) -> tuple[list[float], list,
                                                                                       list]:
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
    when XNNPACK runs the longer chain as a faster fused kernel), so a layer's operators add up to it; each
    slice then also has ``node``, the operator's name as benchmark_model's op profile prints it.
    """
    import statistics

    if by not in ("op", "layer", "block"):
        raise BenchError(f"--by must be op, layer or block, got {by!r}")
    data = read_bytes(model)
    open_interpreter(data)  # a model LiteRT cannot load fails here, with LiteRT's reason
    tree = model_tree(data)
    operators = tree.subgraphs[0].operators
    if not operators:
        raise BenchError(f"{Path(model).name} has no operators to profile")
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
        named = [(f"{i}:{op_name(tree, operators[i])}", [i]) for i in sorted(added)]
        parts = [added[i] for i in sorted(added)]
    layer_of = {i: f"{chain[0]}:{op_name(tree, operators[chain[0]])}"
                for chain in layers(tree) for i in chain}
    rows = [{"slice": label, "ops": len(indices), "layer": layer_of[indices[0]],
             "op_types": dict(collections.Counter(op_name(tree, operators[i]) for i in indices)),
             "median_us": part, **({"node": node_name(tree, indices[0])} if by == "op" else {})}
            for (label, indices), part in zip(named, parts)]
    by_type: dict[str, float] = collections.defaultdict(float)
    if by == "op":
        for row in rows:
            by_type[next(iter(row["op_types"]))] += row["median_us"]
    total = sum(parts) + floor     # the whole model pays the invoke floor once
    return {"model": str(model), "by": by, "threads": threads, "whole_us": whole,
            "floor_us": floor, "sessions": len(floors),
            "sum_us": total, "sum_over_whole": total / whole, "slices": rows, "by_op_type": dict(by_type)}


def op_times_of(model: Path, threads: int = 1, params: HostParams | None = None) -> dict:
    """The model's per-operator times (:mod:`device_bench.op_times`) from :func:`profile` by operator."""
    from .op_times import OpTimesError, from_profile

    report = profile(model, by="op", threads=threads) if params is None else \
        profile(model, by="op", threads=threads, params=params)
    try:
        return from_profile(report)
    except OpTimesError as error:
        raise BenchError(f"{Path(model).name}: no per-operator times: {error}") from None
