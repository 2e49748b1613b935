"""One ``benchmark_model`` run on a phone, without I/O: its command line, its verdict, its result row.

* :func:`benchmark_argv` is the only place the tool's flags are spelled, and it spells only flags the tool
  consumes (``tool``, :data:`device_bench.binary.TOOLS`). LiteRT's CompiledModel benchmark (Google's prebuilt,
  ``litert/tools/benchmark_litert_model.{h,cc}``) takes ``--use_cpu`` (its CPU path is XNNPACK, with TFLite's
  kernels for what XNNPACK leaves), ``--use_gpu``, ``--gpu-precision`` (with a hyphen), ``--gpu_backend``,
  ``--use_npu``, ``--dispatch_library_path``, ``--compiler_plugin_library_path``,
  ``--require_full_delegation`` and ``--use_profiler``; the classic TFLite tool
  (``tflite/tools/benchmark/benchmark_tflite_model.cc`` and ``tflite/tools/delegates/*_provider.cc``) takes
  ``--use_xnnpack``, ``--use_gpu``, ``--gpu_precision_loss_allowed``, ``--gpu_backend`` (``cl``/``gl``),
  ``--use_nnapi``, ``--require_full_delegation`` and ``--enable_op_profiling``. What a tool cannot do is
  refused before the run (:func:`refusal`: a failed row with the reason): ``cpu`` (plain kernels without
  XNNPACK) and ``nnapi`` on the CompiledModel tool, ``npu`` and the WebGPU backend on the classic one. The
  NPU vendor libraries are pushed into one device folder, given as both library paths and on
  ``LD_LIBRARY_PATH`` and ``ADSP_LIBRARY_PATH`` (:func:`benchmark_env`), as Google's ``litert-cli`` does
  (``litert_cli/commands/benchmark/android.py``).
* :func:`judge_run` turns the tool's exit status and output into ``(status, error, parsed, warnings)``. A run
  is ``failed`` when the tool exited non-zero (a signal is named: SIGSEGV for exit status 139), when its
  output is not benchmark_model output or the parser finds it failed or truncated, or when the requested
  delegate silently fell back to the CPU (not applied, or applied to no node), or when the log names another
  model or thread count than the run asked for. A delegate that took only part of the graph is a warning (the
  row measures that delegate on that model, with the rest on the CPU), or a failure with
  ``strict_delegation``. An ``ok`` row also needs a run count and an average (``count``,
  ``avg_us``); builds that print no ``median=`` (before percentiles, e.g. TF 2.0) are ``ok`` rows whose
  ``median_us`` is empty, which the results schema accepts. For ``gpu``/``npu`` the share of the model's
  operators each unit ran (:func:`accelerator_use`) decides: none or part of them on the accelerator is a
  warning naming the CPU fallback, and the row measures what ran (a failure with ``strict_delegation``, which
  also passes ``--use_cpu=false --require_full_delegation=true`` so the tool itself refuses a partial graph).
  A flag the tool reports as ``Unconsumed cmdline flags`` (it ignored it and went on) is a warning naming
  it, and so is ``--op-profile`` on a run whose log holds no per-operator tables.
* :func:`result_row` fills exactly the results-store columns (``device_bench.store.COLUMNS``).
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from .binary import CLASSIC, COMPILED_MODEL, TOOLS
from .delegates import ACCELERATORS, DELEGATES, GPU_BACKENDS, GPU_PRECISIONS
from .errors import BenchError, BenchInputError, ToolOutputParseError
from .parser import parse_last_run
from .store import COLUMN_NAMES, utc_now

DELEGATE_LOG_NAMES = {"xnnpack": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI", "npu": "NPU"}  # parser's names
RUNTIME = "benchmark_model"
RUN_ROOT = "/data/local/tmp"
_PARTIAL_RE = re.compile(r"delegate (?P<name>\S+) applied to (?P<nodes>\d+) of (?P<total>\d+) nodes")
_SEVERAL_RE = re.compile(r"several delegates replaced nodes")
# Why an accelerator took nothing, as LiteRT logs it (litert/runtime/accelerators/*_registry.cc,
# litert/runtime/compiled_model.cc, litert/runtime/dispatch/*.cc).
_NO_ACCELERATOR_RE = re.compile(
    r"(?:WARNING|ERROR): (?:(?:GPU|NPU) accelerator could not be loaded and registered.*|Failed to (?:load "
    r"compiler plugins|apply compiler plugins|initialize Dispatch API|create a dispatch delegate kernel).*"
    r"|No dispatch library found.*|You should provide the `DispatchLibraryDir` option to use NPU.*)")
_UNIT_LABELS = {"XNNPACK": "XNNPACK (CPU)", "CPU": "CPU kernels"}
_UNCONSUMED = "Unconsumed cmdline flags:"  # tflite/tools/benchmark/benchmark_model.cc ParseFlags()
_TOOL_NAMES = {COMPILED_MODEL: "LiteRT's CompiledModel benchmark_model", CLASSIC: "the classic TFLite "
               "benchmark_model"}
_CLASSIC_GPU_BACKENDS = {"opengl": "gl"}  # gpu_delegate_provider.cc: "Should be one of: cl, gl"
_CLASSIC_PRECISION_LOSS = {"fp16": "true", "fp32": "false"}  # --gpu_precision_loss_allowed


@dataclass(frozen=True)
class BenchSettings:
    """How each run is made.

    Attributes:
        num_runs, min_secs, warmup_runs: ``--num_runs``, ``--min_secs``, ``--warmup_runs``.
        op_profile: profile per operator (``--use_profiler=true`` or ``--enable_op_profiling=true``).
        run_timeout_s: a run taking longer is stopped and recorded as failed.
        cooldown_below_c: before each run, wait until the hottest thermal zone is below this (°C) ...
        cooldown_max_wait_s: ... but no longer than this; then run anyway and record a warning.
        cooldown_poll_s: time between temperature readings while cooling down.
        strict_delegation: a delegate that takes only part of the graph fails the run instead of warning.
        command_timeout_s: limit for the other device commands (facts, temperatures, hashes, cleanup).
        lock_wait_s: how long to wait for a phone another mnbench process is benchmarking.
        gpu_precision: ``--gpu-precision`` of ``gpu`` runs (:data:`~device_bench.delegates.GPU_PRECISIONS`).
        gpu_backend: ``--gpu_backend`` of ``gpu`` runs; ``auto`` passes none (the accelerator's default).
        npu_libraries: the vendor's NPU dispatch / compiler-plugin libraries, pushed for ``npu`` runs.
    """

    num_runs: int = 50
    min_secs: float = 1.0
    warmup_runs: int = 1
    op_profile: bool = False
    run_timeout_s: float = 300.0
    cooldown_below_c: float = 45.0
    cooldown_max_wait_s: float = 120.0
    cooldown_poll_s: float = 5.0
    strict_delegation: bool = False
    command_timeout_s: float = 60.0
    lock_wait_s: float = 600.0
    gpu_precision: str = "auto"
    gpu_backend: str = "auto"
    npu_libraries: tuple[Path, ...] = ()

    @property
    def lock_stale_after_s(self) -> float:
        """A lock whose heartbeat is older than this is stale: longer than a run, its cool-down and the
        commands around it may take (the holder renews it before each run)."""
        return (self.run_timeout_s + self.cooldown_max_wait_s + self.cooldown_poll_s
                + 4 * self.command_timeout_s)

    def __post_init__(self) -> None:
        for name in ("num_runs", "warmup_runs"):
            if getattr(self, name) < 0:
                raise BenchError(f"{name} must be >= 0, received {getattr(self, name)}")
        for name in ("run_timeout_s", "command_timeout_s", "cooldown_poll_s"):
            if not getattr(self, name) > 0:
                raise BenchError(f"{name} must be > 0, received {getattr(self, name)}")
        if self.min_secs < 0 or self.cooldown_max_wait_s < 0 or self.lock_wait_s < 0:
            raise BenchError("min_secs, cooldown_max_wait_s and lock_wait_s must be >= 0")
        for name, allowed in (("gpu_precision", GPU_PRECISIONS), ("gpu_backend", GPU_BACKENDS)):
            if getattr(self, name) not in allowed:
                raise BenchError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"received {getattr(self, name)!r}")
        object.__setattr__(self, "npu_libraries", tuple(Path(path) for path in self.npu_libraries))
        names = [path.name for path in self.npu_libraries]
        if len(set(names)) != len(names):
            raise BenchInputError(f"two NPU libraries share a file name: {', '.join(sorted(names))}")


@dataclass(frozen=True)
class ModelFile:
    """A local model and its result columns (``device_bench.provenance.model_columns``)."""

    path: Path
    columns: dict

    @property
    def name(self) -> str:
        return self.path.name


def run_dir(run_id: str) -> str:
    """The per-run device folder, removed when the run ends."""
    return f"{RUN_ROOT}/mnbench-{run_id}"


def benchmark_argv(binary: str, graph: str, threads: int, delegate: str, settings: BenchSettings,
                   library_dir: str | None = None, *, tool: str) -> list[str]:
    """The tool's argv (unquoted; quote it with :func:`device_bench.transport.join`).

    ``library_dir`` is the device folder holding the NPU libraries (``npu`` runs only); ``tool`` which tool
    runs (:data:`device_bench.binary.TOOLS`).

    Raises:
        BenchError: for an unknown delegate or tool, threads < 1, or a combination :func:`refusal` refuses.
    """
    if delegate not in DELEGATES:
        raise BenchError(f"unknown delegate {delegate!r}; choose from {', '.join(DELEGATES)}")
    if tool not in TOOLS:
        raise BenchError(f"unknown benchmark tool {tool!r}; choose from {', '.join(TOOLS)}")
    if threads < 1:
        raise BenchError(f"threads must be >= 1, received {threads}")
    if (why := refusal(tool, delegate, settings)) is not None:
        raise BenchError(why)
    argv = [binary, f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={settings.num_runs}",
            f"--min_secs={settings.min_secs:g}", f"--warmup_runs={settings.warmup_runs}"]
    if tool == COMPILED_MODEL:
        flags = _accelerator_flags(delegate, settings, library_dir) if delegate in ACCELERATORS \
            else ["--use_cpu=true"]
        return argv + flags + (["--use_profiler=true"] if settings.op_profile else [])
    argv.append(f"--use_xnnpack={'true' if delegate == 'xnnpack' else 'false'}")
    if delegate == "gpu":
        argv.append("--use_gpu=true")
        precision = _CLASSIC_PRECISION_LOSS.get(settings.gpu_precision)
        argv += [f"--gpu_precision_loss_allowed={precision}"] if precision else []
        backend = _CLASSIC_GPU_BACKENDS.get(settings.gpu_backend)
        argv += [f"--gpu_backend={backend}"] if backend else []
        argv += ["--require_full_delegation=true"] if settings.strict_delegation else []
    argv += ["--use_nnapi=true"] if delegate == "nnapi" else []
    return argv + (["--enable_op_profiling=true"] if settings.op_profile else [])


def refusal(tool: str, delegate: str, settings: BenchSettings) -> str | None:
    """Why ``tool`` cannot run ``delegate`` as asked (the row fails with this, unrun); None when it can."""
    name = _TOOL_NAMES.get(tool, tool)
    if tool == COMPILED_MODEL and delegate == "cpu":
        return (f"{name} has no CPU path without XNNPACK (--use_cpu runs XNNPACK, with TFLite's kernels for "
                "what it leaves): use --delegate xnnpack, or --benchmark-binary with a classic TFLite "
                "benchmark_model for the plain CPU kernels")
    if tool == COMPILED_MODEL and delegate == "nnapi":
        return (f"{name} has no NNAPI (--use_nnapi is a flag of the classic TFLite tool): use --delegate npu "
                "or gpu, or --benchmark-binary with a classic TFLite benchmark_model")
    if tool == CLASSIC and delegate == "npu":
        return (f"{name} has no NPU accelerator (--use_npu is a flag of LiteRT's CompiledModel benchmark): "
                "leave out --benchmark-binary to use Google's prebuilt, or pass a LiteRT build")
    if tool == CLASSIC and delegate == "gpu" and settings.gpu_backend not in ("auto", *_CLASSIC_GPU_BACKENDS):
        return (f"{name} has no {settings.gpu_backend} GPU backend (its --gpu_backend takes cl or gl): use "
                "--gpu-backend auto or opengl, or LiteRT's CompiledModel benchmark_model")
    return None


def _accelerator_flags(delegate: str, settings: BenchSettings, library_dir: str | None) -> list[str]:
    """The CompiledModel tool's flags for a ``gpu`` or ``npu`` run."""
    if delegate == "gpu":
        flags = ["--use_gpu=true", f"--gpu-precision={settings.gpu_precision}"]
        flags += [f"--gpu_backend={settings.gpu_backend}"] if settings.gpu_backend != "auto" else []
    else:
        flags = ["--use_npu=true"]
        flags += [f"--dispatch_library_path={library_dir}",
                  f"--compiler_plugin_library_path={library_dir}"] if library_dir else []
    if settings.strict_delegation:  # the tool aborts when both --use_cpu and full delegation are asked
        flags += ["--use_cpu=false", "--require_full_delegation=true"]
    return flags


def benchmark_env(delegate: str, library_dir: str | None) -> list[str]:
    """``NAME=value`` words for ``env`` before the tool: where an ``npu`` run's vendor libraries are."""
    if delegate != "npu" or not library_dir:
        return []
    return [f"LD_LIBRARY_PATH={library_dir}", f"ADSP_LIBRARY_PATH={library_dir}"]


def judge_run(text: str, returncode: int, delegate: str, strict_delegation: bool = False, *,
              graph: str | None = None, threads: int | None = None, op_profile: bool = False
              ) -> tuple[str, str | None, dict | None, list[str]]:
    """Verdict on a finished run: ``(status, error, parsed row or None, warnings)``.

    ``graph`` and ``threads`` are what was asked for: a log that names another model or thread count is
    another run's log and fails. ``op_profile``: per-operator tables were asked for.
    """
    try:
        parsed = parse_last_run(text)
    except ToolOutputParseError:
        parsed = None
    warnings = [_unconsumed_warning(text) if text.startswith(_UNCONSUMED) else text
                for text in (parsed["warnings"] if parsed else [])]
    if op_profile and parsed and parsed["op_profile"] is None and not any(
            text.startswith("op profil") for text in warnings):
        warnings.append("op profiling was asked for but the log holds no per-operator tables")
    causes = [] if returncode == 0 else [exit_text(returncode)]
    if parsed is None:
        causes.append(f"the output ({len(text)} characters) is not benchmark_model output")
    elif parsed["status"] != "ok":
        causes.append(parsed["error"])
    else:
        if delegate in ACCELERATORS and parsed.get("units"):  # per-unit counts replace the per-delegate ones
            warnings = [text for text in warnings if not (_PARTIAL_RE.match(text) or _SEVERAL_RE.match(text))]
        error, delegation_warnings = check_delegation(parsed, delegate, strict_delegation)
        warnings += delegation_warnings
        if error is None and (parsed["count"] is None or parsed["avg_us"] is None):
            error = "the log gives no run count or average latency"
        error = error or _mismatch(parsed, graph, threads)
        causes += [error] if error else []
    return ("failed", ": ".join(causes), parsed, warnings) if causes else ("ok", None, parsed, warnings)


def _unconsumed_warning(line: str) -> str:
    flags = line[len(_UNCONSUMED):].strip()
    return (f"benchmark_model ignored flags mnbench passed ({_UNCONSUMED} {flags}): the row may not measure "
            "what was asked")


def _mismatch(parsed: dict, graph: str | None, threads: int | None) -> str | None:
    """Why the log is not the requested run's: it names another model or thread count."""
    if graph is not None and parsed["graph"] is not None and parsed["graph"] != graph:
        return f"the log is another model's: it ran {parsed['graph']!r}, not {graph!r}"
    if threads is not None and parsed["num_threads"] is not None and parsed["num_threads"] != threads:
        return f"the log ran {parsed['num_threads']} threads, not the {threads} requested"
    return None


def exit_text(returncode: int) -> str:
    """``benchmark_model was killed by SIGSEGV (exit status 139)`` and the like."""
    if returncode > 128:
        try:
            return f"benchmark_model was killed by {signal.Signals(returncode - 128).name} " \
                   f"(exit status {returncode})"
        except ValueError:
            pass
    hint = {126: " (not executable)", 127: " (not found, or a library is missing)"}.get(returncode, "")
    return f"benchmark_model exited with status {returncode}{hint}"


def check_delegation(parsed: dict, delegate: str, strict: bool = False) -> tuple[str | None, list[str]]:
    """``(error, warnings)`` about how much of the graph the requested delegate took (see module doc)."""
    name = DELEGATE_LOG_NAMES.get(delegate)
    applied = parsed.get("delegates") or []
    if delegate in ACCELERATORS and parsed.get("units"):
        return _check_units(accelerator_use(parsed, delegate), strict, _why_no_accelerator(parsed))
    partial = [match for warning in parsed.get("warnings") or [] if (match := _PARTIAL_RE.match(warning))]
    if name is None:
        if "XNNPACK" in applied:
            return None, ["XNNPACK was applied although --use_xnnpack=false was passed (this build applies "
                          "it anyway)"]
        return None, []
    if name not in applied:
        message = (f"{name} delegate was not applied: the model silently ran on the CPU "
                   f"(delegates seen: {', '.join(applied) or 'none'})")
        if delegate in ACCELERATORS:  # the row measures the CPU fallback; it says so (fails when strict)
            message += _why_no_accelerator(parsed)
            return (message, []) if strict else (None, [message])
        return message, []
    counts = [(int(match["nodes"]), int(match["total"])) for match in partial if match["name"] == name]
    if not counts and applied[0] == name and None not in (parsed["delegate_nodes"], parsed["total_nodes"]) \
            and parsed["delegate_nodes"] < parsed["total_nodes"]:
        counts = [(parsed["delegate_nodes"], parsed["total_nodes"])]
    if not counts:
        return None, []
    nodes, total = sum(count[0] for count in counts), sum(count[1] for count in counts)
    message = f"{name} delegate took only {nodes} of {total} nodes; the rest ran on the CPU"
    return (message, []) if strict else (None, [message])


def accelerator_use(parsed: dict | None, delegate: str, settings: BenchSettings | None = None) -> dict | None:
    """What a ``gpu``/``npu`` run asked for and what ran, for the row's ``target_desc``; None otherwise.

    ``units`` are the parser's operators per unit (``CPU`` = built-in kernels no delegate took); ``fallback``
    names the units other than the accelerator that ran operators (None when it took them all).
    """
    if delegate not in ACCELERATORS:
        return None
    name, units = DELEGATE_LOG_NAMES[delegate], (parsed or {}).get("units")
    use: dict = {"requested": name, "units": units, "total_ops": None, "accelerator_ops": None,
                 "fallback": None}
    if settings is not None and delegate == "gpu":
        use.update(gpu_precision=settings.gpu_precision, gpu_backend=settings.gpu_backend)
    if units:
        taken = units.get(name, 0)
        use.update(total_ops=sum(units.values()), accelerator_ops=taken, fallback=", ".join(
            f"{_UNIT_LABELS.get(unit, unit)} {ops}" for unit, ops in units.items() if unit != name and ops)
            or None)
    return use


def _check_units(use: dict, strict: bool, why: str) -> tuple[str | None, list[str]]:
    name, taken, total = use["requested"], use["accelerator_ops"], use["total_ops"]
    if taken == 0:
        message = (f"{name} delegate was not applied: the model silently ran on the CPU "
                   f"(all {total} operators: {use['fallback']}){why}")
    elif taken < total:
        message = (f"{name} delegate took only {taken} of {total} operators ({100 * taken / total:.0f} %); "
                   f"CPU fallback: {use['fallback']}")
    else:
        return None, []
    return (message, []) if strict else (None, [message])


def _why_no_accelerator(parsed: dict) -> str:
    reasons = [text.split(": ", 1)[1] for text in parsed.get("warnings") or []
               if _NO_ACCELERATOR_RE.match(text)]
    return f"; LiteRT said: {reasons[0]}" if reasons else ""


def result_row(*, run_id: str, serial: str, model: ModelFile, threads: int, delegate: str, status: str,
               error: str | None, parsed: dict | None, run_columns: dict, desc: dict) -> dict:
    """One results-store row of an Android run; figures come from the parser, never computed here."""
    figures = parsed or {}
    row = {**run_columns, **model.columns, "run_id": run_id, "utc_time": utc_now(), "target": serial,
           "target_kind": "android", "target_desc": json.dumps(desc, sort_keys=True, default=str),
           "runtime": RUNTIME, "threads": threads, "delegate": delegate, "status": status, "error": error,
           "mean_us": figures.get("avg_us")}
    for key in ("count", "init_us", "first_us", "warmup_avg_us", "avg_us", "std_us", "min_us", "max_us",
                "median_us", "mem_peak_mb", "mem_init_mb", "mem_overall_mb"):
        row[key] = figures.get(key)
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:  # a programming error: model or run columns that the schema does not have
        raise ValueError(f"row columns not in the results schema: {sorted(unknown)}")
    return {name: row.get(name) for name in COLUMN_NAMES}


def run_desc(parsed: dict | None, warnings: list[str]) -> dict:
    """The parser's figures that have no results column, for ``target_desc``."""
    figures = parsed or {}
    return {"tool_format": figures.get("tool_format"), "p5_us": figures.get("p5_us"),
            "p95_us": figures.get("p95_us"), "warmup_count": figures.get("warmup_count"),
            "num_threads_reported": figures.get("num_threads"), "delegates": figures.get("delegates"),
            "delegate_nodes": figures.get("delegate_nodes"), "total_nodes": figures.get("total_nodes"),
            "partitions": figures.get("partitions"), "warnings": warnings}
