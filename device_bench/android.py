"""Benchmark models on one or more Android phones and store the results (``mnbench device``).

One worker thread per device (:class:`~device_bench.android_session.DeviceSession`); their rows are merged
into one run of the results store, in the same schema as the host target. A device that cannot be reached,
refuses us or drops out yields failed rows with the reason and does not stop the others. The rows of
``benchmark_model`` runs carry the tool's summary figures; the tool prints no per-run latencies, so these
rows have no samples (``samples_file`` empty) and no ``p90_us``/``p99_us``/confidence interval/``cv``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import BenchError

from .android_run import DELEGATES, BenchSettings, ModelFile, result_row
from .android_session import DeviceSession, RunResult
from .binary import BinaryChoice
from .connect import open_transport
from .lab import LabDevice, read_devices_file
from .provenance import model_columns, run_columns
from .store import DEFAULT_ROOT, ResultStore
from .transport import Transport

logger = logging.getLogger(__name__)
__all__ = ["AndroidRun", "BenchSettings", "DELEGATES", "RunResult", "benchmark_devices", "load_models",
           "read_devices_file"]


@dataclass(frozen=True)
class AndroidRun:
    """A finished ``mnbench device`` run: its id, its folder in the results store and every result."""

    run_id: str
    run_dir: Path
    results: list[RunResult]

    @property
    def rows(self) -> list[dict]:
        return [result.row for result in self.results]

    @property
    def failed(self) -> list[RunResult]:
        return [result for result in self.results if result.row["status"] != "ok"]


def load_models(paths: Sequence[Path | ModelFile]) -> list[ModelFile]:
    """Model files with their result columns; the same file twice counts once.

    Raises:
        ModelFileError: a path is missing, has no .tflite identifier or a corrupt flatbuffer.
        BenchError: a model cannot be read, or two different models share a file name (rows are keyed
            by it).
    """
    models: dict[str, ModelFile] = {}
    for path in paths:
        model = path if isinstance(path, ModelFile) else ModelFile(Path(path), model_columns(Path(path)))
        known = models.get(model.name)
        if known is not None and known.columns["model_sha256"] != model.columns["model_sha256"]:
            raise BenchError(f"two different models are named {model.name} ({known.path} and {path}); "
                             "rename one")
        models.setdefault(model.name, model)
    return list(models.values())


def benchmark_devices(serials: Sequence[str | LabDevice], models: Sequence[Path | ModelFile], *,
                      threads: Sequence[int] = (1,), delegates: Sequence[str] = ("xnnpack",),
                      settings: BenchSettings | None = None, benchmark_binary: Path | None = None,
                      benchmark_sha256: str | None = None, results_root: Path = DEFAULT_ROOT,
                      connect: Callable[[str], Transport] = open_transport,
                      on_result: Callable[[RunResult], None] | None = None) -> AndroidRun:
    """Benchmark every (model, threads, delegate) on every device in parallel and store one run.

    Args:
        serials: devices as ``adb devices`` lists them, or ``host:port``, or resolved lab devices
            (:func:`device_bench.lab.select`: their adb server and labels); duplicates count once.
        models: .tflite files (or :class:`ModelFile`).
        threads: ``--num_threads`` values.
        delegates: from :data:`DELEGATES`.
        settings: run settings (defaults: :class:`BenchSettings`).
        benchmark_binary: the user's benchmark_model build; None = Google's prebuilt for this LiteRT release.
        benchmark_sha256: the sha256 the binary must have (the prebuilt's download, or the user's file).
        results_root: the results store's root.
        connect: opens a transport for a serial (tests pass key and timeout options).
        on_result: called from the worker threads after each run (progress output).

    Returns:
        The stored run; failed runs are in it with their reason.

    Raises:
        BenchError: bad arguments (no device, no model, unknown delegate, missing binary file).
        ModelFileError: a model is not a .tflite file.
    """
    devices = [item if isinstance(item, LabDevice) else LabDevice(item.strip(), None, item.strip())
               for item in serials if isinstance(item, LabDevice) or item.strip()]
    devices = list({device.name: device for device in devices}.values())
    if not devices:
        raise BenchError("no device: pass --serial SERIAL (see `mnbench devices`) or --devices-file")
    loaded = load_models(models)
    if not loaded:
        raise BenchError("no model to benchmark")
    bad = [name for name in delegates if name not in DELEGATES]
    if bad or not delegates:
        raise BenchError(f"unknown delegate {', '.join(bad) or '(none)'}; choose from {', '.join(DELEGATES)}")
    if not threads or min(threads) < 1:
        raise BenchError(f"threads must be >= 1, received {list(threads)}")
    settings = settings or BenchSettings()
    binary = BinaryChoice(benchmark_binary, benchmark_sha256)
    binary.user()   # a missing or mismatching --benchmark-binary is an error before any phone is touched
    store = ResultStore(results_root)
    run_id = store.new_run_id()
    stop = threading.Event()
    sessions = [DeviceSession(device.serial, run_id, loaded, list(dict.fromkeys(threads)),
                              list(dict.fromkeys(delegates)), settings, binary,
                              functools.partial(connect, server=device.server) if device.server else connect,
                              stop, on_result, target=device.name, about=device.about())
                for device in devices]
    with ThreadPoolExecutor(max_workers=len(sessions), thread_name_prefix="mnbench-device") as pool:
        futures = [pool.submit(_run_safely, session) for session in sessions]
        try:
            per_device = [future.result() for future in futures]
        except KeyboardInterrupt:
            stop.set()  # workers finish their current run, clean up, and fail the rest as interrupted
            per_device = [future.result() for future in futures]
            _store(store, run_id, per_device)
            raise
    results = [result for device_results in per_device for result in device_results]
    return AndroidRun(run_id, _store(store, run_id, per_device), results)


def _run_safely(session: DeviceSession) -> list[RunResult]:
    """A bug in one worker must not lose the other devices' results: record it as failed rows."""
    try:
        return session.run()
    except Exception as error:  # noqa: BLE001 - reported in the rows and the log
        logger.exception("%s: unexpected error", session.serial)
        reason = f"internal error: {type(error).__name__}: {error}"
        return [RunResult(result_row(run_id=session.run_id, serial=session.target, model=model, threads=count,
                                     delegate=delegate, status="failed", error=reason, parsed=None,
                                     run_columns=run_columns(), desc={"serial": session.serial}))
                for model, count, delegate in session.combos]


def _store(store: ResultStore, run_id: str, per_device: list[list[RunResult]]) -> Path:
    results = [result for results in per_device for result in results]
    raw_logs, names = {}, set()
    for result in results:
        if result.raw_log is not None:
            name = _log_name(result.row, names)
            raw_logs[name] = result.raw_log
            desc = json.loads(result.row["target_desc"])
            desc.setdefault("run", {})["raw_log"] = f"raw/{name}.txt"
            result.row["target_desc"] = json.dumps(desc, sort_keys=True, default=str)
    try:
        return store.write_run(run_id, [result.row for result in results], {}, raw_logs)
    except OSError as error:
        raise BenchError(f"cannot write the results of run {run_id} to {store.root}: {error}") from error


def _log_name(row: dict, taken: set[str]) -> str:
    base = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", str(part)).strip("-.") or "x"
                    for part in (row["target"], row["model"], f"t{row['threads']}", row["delegate"]))
    name, index = base, 1
    while name in taken:
        index += 1
        name = f"{base}_{index}"
    taken.add(name)
    return name
