#!/usr/bin/env python3
"""A stand-in for TFLite's ``benchmark_model`` binary, pushed to the loopback device by tests.

Behaviour comes from ``$FAKE_BENCHMARK_MODE`` or ``<sandbox>/.loopback/fake_benchmark.json`` (written by
``tests.loopback_adb.fixtures.set_fake_benchmark``)::

    {"mode": "ok" | "nonzero" | "crash" | "garbage" | "truncated" | "hang" | "custom" | "replay",
     "exit_code": int, "inference_avg_us": float, "init_us": float, "delay_s": float, "hang_s": float,
     "stdout": str, "stderr": str,         # stdout/stderr: the text printed in "custom" mode
     "avg_us_by_graph": {str: float},      # the first key found in the --graph file name sets the average
     "replay": {"cpu" | "gpu" | "npu": str}}  # "replay": a captured log, chosen by --use_npu / --use_gpu

In "replay" mode the fake prints the captured log of the accelerator its flags ask for (``--use_npu=true``:
``npu``, ``--use_gpu=true``: ``gpu``, else ``cpu``) with this run's model path and thread count in the lines
that name them (``Loading model from:``, ``Loaded model``, ``Graph: [``, ``Num threads: [``), and exits 1
when the log says ``Benchmarking failed``.

Like the real tool, INFO lines go to stdout and VERBOSE/ERROR lines to stderr. Every call is appended to
``<sandbox>/.loopback/fake_benchmark_calls.jsonl`` (argv, cwd, ``LD_LIBRARY_PATH`` and the files in
``--dispatch_library_path``) so tests can check the flags, and its start and
end times to ``fake_benchmark_spans.jsonl`` (so tests can check that runs on one phone never overlap).
Standard library only: it runs under the host's python3 through the sandbox's ``/system/bin/python3``.
"""

import json
import os
import random
import re
import signal
import sys
import time

MODES = ("ok", "nonzero", "crash", "garbage", "truncated", "hang", "custom", "replay")


def _settings():
    state = os.path.join(os.environ.get("LOOPBACK_SANDBOX", "/nonexistent"), ".loopback")
    settings = {"mode": "ok"}
    try:
        with open(os.path.join(state, "fake_benchmark.json")) as handle:
            settings.update(json.load(handle))
    except (OSError, ValueError):
        pass
    if os.environ.get("FAKE_BENCHMARK_MODE"):
        settings["mode"] = os.environ["FAKE_BENCHMARK_MODE"]
    root = os.environ.get("LOOPBACK_SANDBOX", "/nonexistent")
    argv = [arg.replace(root + "/", "/") for arg in sys.argv[1:]]  # device paths, as the caller wrote them
    cwd = "/" + os.path.relpath(os.getcwd(), root).lstrip(".")
    libraries = _flags(sys.argv[1:]).get("dispatch_library_path")
    call = {"argv": argv, "cwd": cwd,
            "ld_library_path": os.environ.get("LD_LIBRARY_PATH", "").replace(root + "/", "/") or None,
            "libraries": sorted(os.listdir(libraries)) if libraries and os.path.isdir(libraries) else None}
    try:
        with open(os.path.join(state, "fake_benchmark_calls.jsonl"), "a") as handle:
            handle.write(json.dumps(call) + "\n")
    except OSError:
        pass
    return settings


def _flags(argv):
    flags = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
    return flags


def _header(flags):
    lines = ["INFO: STARTING!", "INFO: Log parameter values verbosely: [0]"]
    if "num_runs" in flags:
        lines.append(f"INFO: Min num runs: [{flags['num_runs']}]")
    if "warmup_runs" in flags:
        lines.append(f"INFO: Min warmup runs: [{flags['warmup_runs']}]")
    if "num_threads" in flags:
        lines.append(f"INFO: Num threads: [{flags['num_threads']}]")
    lines += [f"INFO: Graph: [{flags.get('graph', '')}]", "INFO: Signature to run: []"]
    return lines


def _ok_log(flags, settings):
    avg_us = float(settings.get("inference_avg_us", 12340.5))
    graph = os.path.basename(flags.get("graph", ""))
    avg_us = next((float(us) for key, us in settings.get("avg_us_by_graph", {}).items() if key in graph),
                  avg_us)
    init_us = float(settings.get("init_us", 35210))
    first_us, warmup_us = round(avg_us * 1.31), round(avg_us * 1.04, 1)
    runs = max(int(flags.get("num_runs", 50)), 1)
    warmups = max(int(flags.get("warmup_runs", 1)), 1)
    size_mb = os.path.getsize(flags["graph"]) / 1e6

    def stats(count, first, mean):
        low, high = round(mean * 0.95), round(mean * 1.2)
        return (f"INFO: count={count} first={first} curr={round(mean)} min={low} max={max(high, first)} "
                f"avg={mean} std={round(mean * 0.03)} p5={low} median={round(mean)} p95={round(mean * 1.1)}")

    lines = _header(flags) + [
        f"INFO: Loaded model {flags['graph']}",
        "INFO: Initialized TensorFlow Lite runtime.",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        f"INFO: The input model file size (MB): {size_mb:.6g}",
        f"INFO: Initialized session in {init_us / 1000:g}ms.",
        f"INFO: Running benchmark for at least {warmups} iterations and at least 0.5 seconds but terminate "
        "if exceeding 150 seconds.",
        stats(warmups, first_us, warmup_us), "",
        f"INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if "
        "exceeding 150 seconds.",
        stats(runs, round(avg_us), avg_us), "",
        f"INFO: Inference timings in us: Init: {init_us:g}, First inference: {first_us}, "
        f"Warmup (avg): {warmup_us:g}, Inference (avg): {avg_us:g}",
        "INFO: Note: as the benchmark tool itself affects memory footprint, the following is only "
        "APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your "
        "discretion.",
        "INFO: Memory footprint delta from the start of the tool (MB): init=7.42188 overall=9.86328",
    ]
    return "\n".join(lines) + "\n"


def _replay(flags, settings):
    """The captured log for the accelerator the flags ask for, naming this run's model and threads."""
    unit = "npu" if flags.get("use_npu") == "true" else "gpu" if flags.get("use_gpu") == "true" else "cpu"
    text = settings.get("replay", {}).get(unit)
    if text is None:
        return f"fake_benchmark_model: no {unit} log to replay\n", 2
    graph, threads = flags.get("graph", ""), flags.get("num_threads", "")
    text = re.sub(r"(Loading model from: |Loaded model ).*", lambda match: match[1] + graph, text)
    text = re.sub(r"Graph: \[.*\]", lambda _: f"Graph: [{graph}]", text)
    text = re.sub(r"Num threads: \[\d+\]", lambda _: f"Num threads: [{threads}]", text) if threads else text
    return text, 1 if "Benchmarking failed" in text else 0


def _out(text, stream=sys.stdout):
    stream.write(text)
    stream.flush()


def main():
    settings = _settings()
    flags = _flags(sys.argv[1:])
    mode = settings["mode"]
    if mode not in MODES:
        _out(f"fake_benchmark_model: unknown mode {mode!r}\n", sys.stderr)
        return 2
    graph = flags.get("graph", "")
    if mode == "replay":
        text, code = _replay(flags, settings)
        _out(text)
        return code
    if mode == "custom":
        _out(settings.get("stdout", ""))
        _out(settings.get("stderr", ""), sys.stderr)
        return int(settings.get("exit_code", 0))
    if mode == "hang":
        _out("\n".join(_header(flags)) + "\n")
        time.sleep(float(settings.get("hang_s", 3600)))
        return 0
    if mode == "garbage":
        noise = random.Random(7)
        sys.stdout.buffer.write(bytes(noise.randrange(256) for _ in range(512)) + b"\nno timings here\n")
        sys.stdout.flush()
        return int(settings.get("exit_code", 0))
    if not graph or not os.path.isfile(graph):
        _out("\n".join(_header(flags)) + "\n")
        _out(f"ERROR: Could not open '{graph}'.\nERROR: Failed to mmap model {graph}\n"
             "ERROR: Benchmarking failed.\n", sys.stderr)
        return 1
    if mode == "nonzero":
        _out("\n".join(_header(flags)) + f"\nINFO: Loaded model {graph}\n")
        _out("ERROR: Node number 57 (BATCH_MATMUL) failed to prepare.\nERROR: Failed to allocate tensors!\n"
             "ERROR: Benchmarking failed.\n", sys.stderr)
        return int(settings.get("exit_code", 1))
    log = _ok_log(flags, settings)
    if mode == "crash":
        _out(log[:log.index("INFO: Running benchmark")])
        os.kill(os.getpid(), signal.SIGSEGV)
        return 139
    if mode == "truncated":
        _out(log[:len(log) // 2])
        return int(settings.get("exit_code", 0))
    time.sleep(float(settings.get("delay_s", 0)))
    head, _, tail = log.partition("INFO: The input model file size")
    _out(head)
    _out("VERBOSE: Replacing 66 out of 66 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 "
         "partitions for subgraph 0.\n", sys.stderr)
    _out("INFO: The input model file size" + tail)
    return int(settings.get("exit_code", 0))


def _record_span(started_s):
    """Append when this run started and ended (host clock = device clock) for the no-overlap checks."""
    root = os.environ.get("LOOPBACK_SANDBOX", "/nonexistent")
    state = os.path.join(root, ".loopback")
    graph = _flags(sys.argv[1:]).get("graph", "").replace(root + "/", "/")
    try:
        with open(os.path.join(state, "fake_benchmark_spans.jsonl"), "a") as handle:
            handle.write(json.dumps({"graph": graph, "start_s": started_s,
                                     "end_s": time.time(), "pid": os.getpid()}) + "\n")
    except OSError:
        pass


if __name__ == "__main__":
    _started_s = time.time()
    try:
        _code = main()
    finally:
        _record_span(_started_s)
    sys.exit(_code)
