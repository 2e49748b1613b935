"""The host target: benchmark .tflite models on this CPU with the LiteRT interpreter.

Every (model, thread count) runs in a fresh worker process (``host_worker``), so one model cannot disturb
another's timing or memory, and the parent's imports never share the measured process. Workers die with
the parent (even a SIGKILLed one); rows are stored as each worker finishes.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import BenchError

from . import stats
from .provenance import model_columns, run_columns

if TYPE_CHECKING:
    from .store import RunWriter

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class HostParams:
    """benchmark_model's flags, with its defaults."""

    runs: int = 50                 # --num_runs
    min_secs: float = 1.0          # --min_secs
    max_secs: float = 150.0        # --max_secs
    warmup: int = 1                # --warmup_runs
    warmup_min_secs: float = 0.5   # --warmup_min_secs
    xnnpack: bool = True           # --use_xnnpack

    def __post_init__(self):
        if self.runs < 1 or self.warmup < 0:
            raise BenchError(f"runs must be >= 1 and warmup >= 0, got runs={self.runs} warmup={self.warmup}")
        if self.min_secs < 0 or self.max_secs <= 0:
            raise BenchError(f"min-secs must be >= 0 and max-secs > 0, got {self.min_secs}, {self.max_secs}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU flags that decide which int8 kernels XNNPACK picks (x86: VNNI dot products, AMX tiles; ARM: dot product
# and int8 matrix multiply), as /proc/cpuinfo spells them, with the names reports use.
INT8_FLAGS = {"avx2": "avx2", "avx512f": "avx512f", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni",
              "amx_int8": "amx_int8", "asimddp": "neon_dotprod", "i8mm": "neon_i8mm"}


def cpu_facts(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and the int8-relevant flags it has (``cpuinfo``: /proc/cpuinfo's text)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as info:
                cpuinfo = info.read()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    model = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags |= set(value.split())
        elif key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip()
    return {"model": model or platform.processor() or platform.machine(), "machine": platform.machine(),
            "flags": [name for flag, name in INT8_FLAGS.items() if flag in flags]}


def host_description() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "hostname": platform.node()}


def runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ai-edge-litert {version('ai-edge-litert')}"
    except PackageNotFoundError:
        return "ai-edge-litert (not installed)"


def run_worker(model: Path, threads: int, params: HostParams, inputs: list[list[int]] | None = None) -> dict:
    """One fresh process measuring ``model``; returns the worker's JSON (``ok`` False with ``error`` on
    failure).

    With ``inputs`` (input tensor indices per subgraph) every subgraph is timed, in rounds.
    """
    extra = {} if inputs is None else {"inputs": inputs}
    payload = json.dumps({"model": str(model), "threads": threads, **asdict(params), **extra})
    return _spawn_worker(payload, params.max_secs * 2 + params.warmup_min_secs + 120)


def run_pair_worker(model_a: Path, model_b: Path, threads: int, params: HostParams, seed: int,
                    instances: int = 1, block: int = 1) -> dict:
    """One fresh process timing A and B interleaved in random order (``host_worker.measure_pairs``).

    ``params.runs`` counts pairs. Returns the worker's JSON: ``a_us``, ``b_us`` (paired), ``a_first``.
    """
    payload = json.dumps({"pair": [str(model_a), str(model_b)], "threads": threads, "seed": seed,
                          "instances": instances, "block": block, **asdict(params)})
    return _spawn_worker(payload, params.max_secs * 2 + params.warmup_min_secs + 120)


def _spawn_worker(payload: str, timeout_s: float) -> dict:
    try:
        done = subprocess.run([sys.executable, "-m", "device_bench.host_worker", payload],
                              capture_output=True, text=True, timeout=timeout_s,
                              preexec_fn=die_with_parent(os.getpid()))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"worker timed out after {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr.split())[-300:]
        return {"ok": False, "error": f"worker exited with status {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child die when this process dies, even by SIGKILL.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent did not die before the
    prctl took effect. Elsewhere nothing is done (the worker's own timeout still bounds it).
    """
    def arm() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:
            os._exit(1)

    return arm if sys.platform.startswith("linux") else lambda: None


def _checked_model(model: Path) -> dict:
    """The model's columns, after LiteRT has loaded it once (a corrupt file fails here, not mid-run)."""
    from .tflite_file import open_interpreter, read_bytes

    open_interpreter(read_bytes(model))
    return model_columns(model)


def _row(model: Path, model_info: dict, threads: int, params: HostParams, result: dict,
         context: dict) -> dict:
    from .store import utc_now

    row = {**context, **model_info, "threads": threads, "delegate": "xnnpack" if params.xnnpack else "cpu",
           "utc_time": utc_now()}
    if not result["ok"]:
        return {**row, "status": "failed", "error": result["error"]}
    summary = stats.summarize(result["samples_us"])
    warmup = result["warmup_us"]
    return {**row, **summary, "status": "ok", "error": None, "init_us": result["init_us"],
            "first_us": result["first_us"],
            "warmup_avg_us": sum(warmup) / len(warmup), "mem_peak_mb": result["mem_peak_mb"]}


@dataclass
class BenchRun:
    """What :func:`bench` measured: every row, where they are stored, and why storing failed (if it did)."""

    rows: list[dict]
    run_dir: Path | None
    store_error: str | None = None


def bench(models: list[Path], threads: list[int], params: HostParams, results_dir: Path | None,
          on_result: Callable[[dict], None] | None = None, op_profile: bool = False) -> BenchRun:
    """Benchmark every model at every thread count; store each row in ``results_dir`` as it is measured.

    With ``op_profile`` every row that ran is then profiled per operator (``profile.profile(by="op")``,
    same threads and settings) and stored with its op times (:mod:`device_bench.op_times`); ``rows`` hold
    them under ``op_times`` (None, with ``op_times_error``, when profiling failed: the row stands).

    The store is checked before anything is measured; an interruption keeps the rows already measured. A
    model is its path and content: the same file given twice is measured once, two different files with
    one name are two models. A store that fails mid-run does not stop the measuring: the rows are returned
    with ``store_error``.

    Raises:
        StoreError: ``results_dir`` cannot take results (before any measuring).
        ModelFileError: a model is missing or LiteRT cannot load it (before any measuring).
    """
    # The store (pandas) is imported here, so timing a model (run_worker) needs only LiteRT and numpy.
    from .store import ResultStore

    if any(t < 1 for t in threads):
        raise BenchError(f"threads must be >= 1, got {threads}")
    infos = {}
    for model in models:   # every file is checked before any timing
        info = _checked_model(model)
        if not any(known["model_sha256"] == info["model_sha256"] and known["model"] == info["model"]
                   for known in infos.values()):
            infos[model] = info
    run_id = ResultStore.new_run_id()
    writer = ResultStore(results_dir).writer(run_id) if results_dir is not None else None
    context = {**run_columns(), "run_id": run_id, "target": "host", "target_kind": "host",
               "target_desc": json.dumps(host_description(), sort_keys=True), "runtime": runtime_version()}
    done = BenchRun([], None)
    for model, info in infos.items():
        for count in threads:
            result = run_worker(model, count, params)
            row = _row(model, info, count, params, result, context)
            done.rows.append(row)
            if writer is not None and done.store_error is None:
                done.run_dir, done.store_error = _stored(writer, row, result)
            if op_profile and result["ok"]:
                try:
                    times, why = _op_times(model, count, params), None
                except BenchError as error:  # the row stands; it has no op times
                    times, why = None, str(error)
                if times is not None and writer is not None and done.store_error is None:
                    done.run_dir, done.store_error = _stored(writer, row, result, times)
                row = {**row, "op_times": times, **({"op_times_error": why} if why else {})}
                done.rows[-1] = row
            if on_result:
                on_result(row)
    return done


def _op_times(model: Path, threads: int, params: HostParams) -> dict:
    """The model's per-operator times from the slicing profiler, with the bench's settings."""
    from .profile import op_times_of

    return op_times_of(model, threads, params)


def _stored(writer: RunWriter, row: dict, result: dict,
            op_times: dict | None = None) -> tuple[Path | None, str | None]:
    from .store import row_key

    samples = {row_key(row): result["samples_us"]} if result["ok"] else {}
    try:
        return writer.put([row], samples, op_times={row_key(row): op_times} if op_times else None), None
    except OSError as error:
        return (writer.path if writer.stored else None,
                f"cannot store results in {writer.path}: {error.strerror or error}")
