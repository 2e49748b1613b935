#!/usr/bin/env python3
"""A stand-in for TFLite's ``benchmark_model`` binary, pushed to the loopback device by tests.

Behaviour comes from ``$FAKE_BENCHMARK_MODE`` or ``<sandbox>/.loopback/fake_benchmark.json`` (written by
``tests.loopback_adb.fixtures.set_fake_benchmark``)::

    {"mode": "ok" | "nonzero" | "crash" | "garbage" | "truncated" | "hang" | "custom" | "replay",
     "exit_code": int, "inference_avg_us": float, "init_us": float, "delay_s": float, "hang_s": float,
     "stdout": str, "stderr": str,         # stdout/stderr: the text printed in "custom" mode
     "avg_us_by_graph": {str: float},      # the first key found in the --graph file name sets the average
     "replay": {"cpu" | "gpu" | "npu": str},  # "replay": a captured log, chosen by --use_npu / --use_gpu
     "tool": "classic" | "compiled_model" | "unknown",  # which benchmark_model it plays (default classic;
                                              # unknown: --help lists only the common flags, all consumed)
     "litert_profile": [[node type, first ms, avg ms, calls], ...]}  # per node, for --use_profiler=true

In "replay" mode the fake prints the captured log of the accelerator its flags ask for (``--use_npu=true``:
``npu``, ``--use_gpu=true``: ``gpu``, else ``cpu``) with this run's model path and thread count in the lines
that name them (``Loading model from:``, ``Loaded model``, ``Graph: [``, ``Num threads: [``), and exits 1
when the log says ``Benchmarking failed``.

It plays one of the two tools (``"tool"``): ``--help`` prints that tool's flag list as ``Flags::Usage``
(``tflite/tools/command_line_flags.cc``) does, with a subset of the real flags and their real help texts
(``tflite/tools/benchmark/benchmark_model.cc``, ``benchmark_tflite_model.cc``, ``tflite/tools/delegates/
*_provider.cc``; ``litert/tools/benchmark_litert_model.h``), the CompiledModel tool after its NPU vendor
flags (``litert/tools/benchmark_litert_model_main.cc``) and exiting 0, the classic one ending with
``Benchmarking failed.`` and exit 1 (``benchmark_main.cc``); ``--help`` calls are logged in
``fake_benchmark_probes.jsonl``, not with the runs. A run given flags its tool does not define prints
``WARN: Unconsumed cmdline flags: ...`` after ``STARTING!`` (``BenchmarkModel::ParseFlags``). As the
CompiledModel tool with ``--use_profiler=true``, "replay" prints ``litert_profile`` after the results block
as ``LiteRtProfileSummarizer::GetOutputString`` (``litert/runtime/profiler_summarizer.cc``) formats it.

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
_COMMON_FLAGS = [  # BenchmarkModel::GetFlags() (both tools)
    ("num_runs", "50", "int32", "expected number of runs, see also min_secs, max_secs"),
    ("min_secs", "1", "float", "minimum number of seconds to rerun for, potentially making the actual number "
                               "of runs to be greater than num_runs"),
    ("num_threads", "-1", "int32", "number of threads"),
    ("warmup_runs", "1", "int32", "minimum number of runs performed on initialization, to allow performance "
                                  "characteristics to settle, see also warmup_min_secs"),
    ("verbose", "false", "bool", "Whether to log parameters whose values are not set. By default, only log "
                                 "those parameters that are set by parsing their values from the commandline "
                                 "flags."),
]
TOOL_FLAGS = {
    "classic": _COMMON_FLAGS + [  # benchmark_tflite_model.cc and tflite/tools/delegates/*_provider.cc
        ("graph", "", "string", "graph file name"),
        ("require_full_delegation", "false", "bool", "require delegate to run the entire graph"),
        ("enable_op_profiling", "false", "bool", "enable op profiling"),
        ("help", "false", "bool", "Print out all supported flags if true."),
        ("use_xnnpack", "false", "bool", "explicitly apply the XNNPACK delegate. Note the XNNPACK delegate "
                                         "could be implicitly applied by the TF Lite runtime regardless the "
                                         "value of this parameter. To disable this implicit application, set "
                                         "the value to false explicitly."),
        ("use_gpu", "false", "bool", "use gpu"),
        ("gpu_precision_loss_allowed", "true", "bool", "Allow to process computation in lower precision than "
                                                       "FP32 in GPU. By default, it's enabled."),
        ("gpu_backend", "", "string", "Force the GPU delegate to use a particular backend for execution, and "
                                      "fail if unsuccessful. Should be one of: cl, gl"),
        ("use_nnapi", "false", "bool", "use nnapi delegate api"),
    ],
    "compiled_model": _COMMON_FLAGS + [  # litert/tools/benchmark_litert_model.h GetFlags()
        ("graph", "", "string", "The path to the model file."),
        ("signature_to_run_for", "", "string", "The signature to run for."),
        ("use_cpu", "true", "bool", "Whether to use CPU accelerator."),
        ("use_gpu", "false", "bool", "Whether to use GPU accelerator."),
        ("use_npu", "false", "bool", "Whether to use NPU accelerator."),
        ("dispatch_library_path", "", "string", "Dispatch library path."),
        ("compiler_plugin_library_path", "", "string", "Compiler plugin library path. Only for JIT "
                                                       "compilation."),
        ("require_full_delegation", "false", "bool", "Whether to require full delegation."),
        ("use_profiler", "false", "bool", "Whether to use profiler."),
        ("gpu_backend", "", "string", "GPU backend to use when using GPU accelerator."),
        ("gpu-precision", "auto", "string", "GPU precision option [auto|fp16|fp32]."),
    ],
}
_VENDOR_FLAGS = (  # litert/tools/flags/vendors/qualcomm_flags.cc, as the main's --help loop prints them
    "    --qualcomm_enable_weight_sharing (Whether to enable weight sharing, this is unsupported on mobile "
    "platforms.); default: false;\n"
    "    --qualcomm_enable_just_in_time (Whether to enable Just-In-Time in QNN, bypassing serialization.); "
    "default: false;\n")


def _read_settings():
    state = os.path.join(os.environ.get("LOOPBACK_SANDBOX", "/nonexistent"), ".loopback")
    settings = {"mode": "ok"}
    try:
        with open(os.path.join(state, "fake_benchmark.json")) as handle:
            settings.update(json.load(handle))
    except (OSError, ValueError):
        pass
    if os.environ.get("FAKE_BENCHMARK_MODE"):
        settings["mode"] = os.environ["FAKE_BENCHMARK_MODE"]
    return settings


def _record_probe():
    """Log a ``--help`` call (apart from the runs in fake_benchmark_calls.jsonl)."""
    state = os.path.join(os.environ.get("LOOPBACK_SANDBOX", "/nonexistent"), ".loopback")
    try:
        with open(os.path.join(state, "fake_benchmark_probes.jsonl"), "a") as handle:
            handle.write(json.dumps({"argv": sys.argv[1:]}) + "\n")
    except OSError:
        pass


def _settings():
    settings = _read_settings()
    state = os.path.join(os.environ.get("LOOPBACK_SANDBOX", "/nonexistent"), ".loopback")
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


def _tool(settings):
    return settings.get("tool", "classic")


def _unconsumed(tool, argv):
    """``WARN: Unconsumed cmdline flags: ...`` for the arguments ``tool`` does not define, else None."""
    if tool not in TOOL_FLAGS:
        return None
    known = {name for name, _, _, _ in TOOL_FLAGS[tool]}
    left = [arg for arg in argv if not arg.startswith("--") or arg.split("=", 1)[0][2:] not in known]
    return f"WARN: Unconsumed cmdline flags: {' '.join(left)}" if left else None


def _help(tool):
    """What ``--help`` prints (stdout, stderr) and its exit status."""
    flags = TOOL_FLAGS.get(tool, _COMMON_FLAGS)
    rows = [(f"--{name}={default}", kind, text) for name, default, kind, text in flags]
    width = max(len(row[0]) for row in rows)
    usage = f"ERROR: usage: {sys.argv[0]} <flags>\nFlags:\n" + "".join(
        f"\t{name:<{width}}\t{kind}\toptional\t{text}\n" for name, kind, text in rows)
    if tool == "compiled_model":
        return f"\n  NPU Vendor Flags from LiteRT:\n{_VENDOR_FLAGS}\nINFO: STARTING!\n", usage, 0
    return "INFO: STARTING!\n", usage + "ERROR: Benchmarking failed.\n", 1


def _header(flags):
    lines = ["INFO: STARTING!", "INFO: Log parameter values verbosely: [0]"]
    lines[1:1] = [_run_state["unconsumed"]] if _run_state.get("unconsumed") else []
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
    unconsumed = _run_state.get("unconsumed")
    text = text.replace("INFO: STARTING!\n", f"INFO: STARTING!\n{unconsumed}\n", 1) if unconsumed else text
    profiled = flags.get("use_profiler") == "true" and "litert_profile" in settings
    if _tool(settings) == "compiled_model" and profiled:
        end = "======================================\n"
        summary = "INFO: [./litert/tools/benchmark_litert_model.h:192] \n" + _litert_summary(
            settings["litert_profile"])
        text = text.replace(end, end + "\n" + summary, 1)
    return text, 1 if "Benchmarking failed" in text else 0


def _litert_summary(nodes):
    """``LiteRtProfileSummarizer::GetOutputString()`` for nodes ``[type, first ms, avg ms, calls]``."""
    def header(title, width):
        label = f" {title} "
        left = max(width - len(label), 0) // 2
        return "=" * left + label + "=" * (max(width - len(label), 0) - left) + "\n"

    columns = "%60s %10s %10s %10s %10s %10s %10s %14s   %s\n" % (
        "[node type]", "[start]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]", "[times called]",
        "[Name]")
    rows, start_ms = [], 0.0
    for index, (kind, first_ms, avg_ms, calls) in enumerate(nodes):
        name = f"[{'Delegate' if kind.startswith('Delegate/') else 'Builtin'}]:{index}"
        rows.append((kind, start_ms, first_ms, avg_ms * calls, calls, name))
        start_ms += first_ms
    total = sum(row[3] for row in rows) or 1.0

    def table(ordered):
        text, cdf = "", 0.0
        for kind, start, first, spent, calls, name in ordered:
            cdf += spent
            text += "%60s %10.3f %10.3f %10.3f %9.3f%% %9.3f%% %10.3f %14d   %s\n" % (
                kind, start, first, spent / calls, spent / total * 100, cdf / total * 100, 0.0, calls, name)
        return text

    out = header("Run Order", 150) + columns + table(rows)
    out += "\n" + header("Top by Computation Time", 150) + columns
    out += table(sorted(rows, key=lambda row: -row[3]))
    out += f"\nNumber of nodes executed: {len(rows)}\n"
    out += "\n" + header("Summary by node type", 130) + "%60s %10s %10s %10s %10s %10s %14s\n" % (
        "[Node type]", "[count]", "[avg ms]", "[avg %]", "[cdf %]", "[mem KB]", "[times called]")
    by_type = {}
    for kind, _, _, spent, calls, _ in rows:
        known = by_type.setdefault(kind, [0, 0.0, 0])
        known[0], known[1], known[2] = known[0] + 1, known[1] + spent, known[2] + calls
    cdf = 0.0
    for kind, (count, spent, calls) in sorted(by_type.items(), key=lambda item: -item[1][1]):
        cdf += spent
        out += "%60s %10d %10.3f %9.3f%% %9.3f%% %10.3f %14d\n" % (
            kind, count, spent / calls, spent / total * 100, cdf / total * 100, 0.0, calls)
    out += f"\nTimings (microseconds): count={len(rows)} curr={round(total * 1000)}\n"
    return out + f"Memory (bytes): count=0\n{len(rows)} nodes observed\n"


def _out(text, stream=sys.stdout):
    stream.write(text)
    stream.flush()


_run_state = {}  # this call's "unconsumed" line (main() sets it)


def main():
    if sys.argv[1:] == ["--help"]:
        _record_probe()
        out, err, code = _help(_tool(_read_settings()))
        _out(out)
        _out(err, sys.stderr)
        return code
    settings = _settings()
    _run_state["unconsumed"] = _unconsumed(_tool(settings), sys.argv[1:])
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
        if sys.argv[1:] != ["--help"]:
            _record_span(_started_s)
    sys.exit(_code)
