"""The measured process of a host benchmark: one model, one thread count, then exit.

Run as ``python -m device_bench.host_worker '<json params>'``; prints one JSON object on stdout. With
``inputs`` in the params it times every subgraph of the model in rounds instead (the profiler). It imports
only numpy and the LiteRT interpreter. The timed loop is what benchmark_model's is: read a monotonic clock,
invoke, read it again (through the interpreter's C++ binding, with no Python wrapper in between).
benchmark_model semantics: warm-up for at least ``warmup`` runs and ``warmup_min_secs``; then at least
``runs`` runs and ``min_secs`` seconds, stopping after ``max_secs``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")             # Linux: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _loop(invoke, minimum_runs: int, min_secs: float, max_secs: float) -> list[int]:
    clock, samples = time.perf_counter_ns, []
    start = clock()
    min_ns, max_ns = int(min_secs * 1e9), int(max_secs * 1e9)
    while True:
        elapsed = clock() - start
        if samples and (elapsed >= max_ns or (len(samples) >= minimum_runs and elapsed >= min_ns)):
            return samples
        before = clock()
        invoke()
        samples.append(clock() - before)


def measure(params: dict) -> dict:
    """Load ``params["model"]``, warm it up and time it."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if params["xnnpack"] else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    peak_reset = _reset_peak_rss()
    rss_before_kb = _status_kb("VmRSS")
    started = time.perf_counter_ns()
    interpreter = Interpreter(model_path=params["model"], num_threads=params["threads"],
                              experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    init_ns = time.perf_counter_ns() - started
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random(rng, detail["shape"], np.dtype(detail["dtype"])))
    invoke = interpreter._interpreter.Invoke   # the C++ call itself, as benchmark_model times it
    warmup = _loop(invoke, params["warmup"], params["warmup_min_secs"], params["max_secs"])
    samples = _loop(invoke, params["runs"], params["min_secs"], params["max_secs"])
    peak_kb = _status_kb("VmHWM")
    return {
        "init_us": init_ns / 1e3, "first_us": warmup[0] / 1e3,
        "warmup_us": [s / 1e3 for s in warmup], "samples_us": [s / 1e3 for s in samples],
        "mem_peak_mb": (peak_kb - rss_before_kb) / 1024 if peak_reset and peak_kb and rss_before_kb else None,
        "pid": os.getpid(),
    }


def measure_rounds(params: dict) -> dict:
    """Invoke every subgraph of ``params["model"]`` in turn, round after round (the profiler's slices).

    One interpreter, so one XNNPACK delegate and one thread pool serve every subgraph, and each slice runs
    after the slices before it, as it does inside the whole model. ``params["inputs"]`` lists the input
    tensor indices of each subgraph. A round is one sample per subgraph.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if params["xnnpack"] else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=params["model"], num_threads=params["threads"],
                              experimental_op_resolver_type=resolver)
    wrapper, rng = interpreter._interpreter, np.random.default_rng(0)
    feeds = []
    for subgraph, inputs in enumerate(params["inputs"]):
        wrapper.AllocateTensors(subgraph)
        feeds.append([])
        for tensor in inputs:
            detail = interpreter._get_tensor_details(tensor, subgraph)
            feeds[-1].append((tensor, _random(rng, detail["shape"], np.dtype(detail["dtype"]))))
            wrapper.SetTensor(*feeds[-1][-1], subgraph)
    clock, invoke, set_tensor = time.perf_counter_ns, wrapper.Invoke, wrapper.SetTensor
    samples: list[list[int]] = [[] for _ in params["inputs"]]

    def one_round():
        for subgraph, row in enumerate(samples):
            for tensor, value in feeds[subgraph]:   # inside the model the input was just written
                set_tensor(tensor, value, subgraph)
            before = clock()
            invoke(subgraph)
            row.append(clock() - before)
        return samples

    _loop(one_round, params["warmup"], params["warmup_min_secs"], params["max_secs"])
    samples[:] = [[] for _ in samples]
    _loop(one_round, params["runs"], params["min_secs"], params["max_secs"])
    return {"samples_us": [[s / 1e3 for s in row] for row in samples], "pid": os.getpid()}


def measure_pairs(params: dict) -> dict:
    """Load A and B in this one process and time them in pairs, each pair's order drawn at random.

    ``params["pair"]`` names A and B; ``params["instances"]`` interpreters of each are created, in random
    order (where each lands in memory changes its speed by a few per cent), and pair ``i`` uses instance
    ``i mod instances`` of both, so the layouts average out. Warm-up runs pairs for ``warmup_min_secs``;
    then pairs run until ``runs`` pairs and ``min_secs`` have passed (or ``max_secs``). Sample ``i`` of A
    and of B come from one pair and saw the same machine; ``a_first[i]`` says which ran first.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if params["xnnpack"] else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    rng = np.random.default_rng(params.get("seed"))
    count = int(params.get("instances", 1))
    invokes: dict[tuple[int, int], object] = {}
    for side, instance in rng.permutation([(side, i) for side in (0, 1) for i in range(count)]).tolist():
        interpreter = Interpreter(model_path=params["pair"][side], num_threads=params["threads"],
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], _random(rng, detail["shape"], np.dtype(detail["dtype"])))
        invokes[side, instance] = interpreter._interpreter.Invoke
    pairs = [(invokes[0, i], invokes[1, i]) for i in range(count)]
    clock, block = time.perf_counter_ns, int(params.get("block", 1))
    orders = rng.integers(2, size=1 << 16).astype(bool).tolist()  # drawn before timing starts
    a_ns, b_ns, a_first = [], [], []

    def timed(invoke):
        """The fastest of ``block`` runs: a run preempted by another process does not count."""
        invoke()                  # the first run after the other model pays for its caches: not timed
        best = None
        for _ in range(block):
            start = clock()
            invoke()
            elapsed = clock() - start
            best = elapsed if best is None or elapsed < best else best
        return best

    def one_pair():
        index = len(a_first)
        invoke_a, invoke_b = pairs[index % count]
        first = orders[index % len(orders)]
        a_first.append(first)
        if first:
            a_ns.append(timed(invoke_a))
            b_ns.append(timed(invoke_b))
        else:
            b_ns.append(timed(invoke_b))
            a_ns.append(timed(invoke_a))

    _loop(one_pair, params["warmup"], params["warmup_min_secs"], params["max_secs"])
    a_ns.clear(), b_ns.clear(), a_first.clear()
    _loop(one_pair, params["runs"], params["min_secs"], params["max_secs"])
    return {"a_us": [s / 1e3 for s in a_ns], "b_us": [s / 1e3 for s in b_ns], "a_first": a_first,
            "instances": count, "pid": os.getpid()}

def _random(rng, shape, dtype):
    """Inputs for timing: uniform in [-1, 1] for floats, the int8 range for integers."""
    import numpy as np

    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)


def _measured(params: dict) -> dict:
    try:
        if "pair" in params:
            return {"ok": True, **measure_pairs(params)}
        return {"ok": True, **(measure_rounds(params) if "inputs" in params else measure(params))}
    except Exception as error:  # reported to the parent as a failed row
        return {"ok": False, "error": f"{type(error).__name__}: {' '.join(str(error).split())}"}


def main() -> int:
    sys.stdout.write(json.dumps(_measured(json.loads(sys.argv[1]))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
