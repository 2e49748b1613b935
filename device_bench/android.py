"""Benchmark models on one or more Android phones and store the results (``mnbench device``).

One worker thread per device (:class:`~device_bench.android_session.DeviceSession`); each run is stored as
it finishes, all devices' rows in one run of the results store, in the same schema as the host target.
Models are loaded by LiteRT on this machine first (a file it cannot load is not pushed; its runs fail). A
device that cannot be reached, refuses us or drops out yields failed rows with the reason and does not stop
the others. The rows of
``benchmark_model`` runs carry the tool's summary figures; the tool prints no per-run latencies, so these
rows have no samples (``samples_file`` empty) and no ``p90_us``/``p99_us``/confidence interval/``cv``.
A run with ``--enable_op_profiling`` keeps its per-operator tables as the row's op times
(:mod:`device_bench.op_times`), which ``compare`` and the history read.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import BenchError, ModelFileError, UnknownSerial

from .android_run import DELEGATES, BenchSettings, ModelFile, result_row
from .android_session import DeviceSession, RunResult
from .binary import BinaryChoice
from .connect import open_transport
from .lab import LabDevice, read_devices_file
from .op_times import from_benchmark_tables
from .provenance import model_columns, run_columns
from .store import DEFAULT_ROOT, ResultStore, RunWriter, row_key
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


def reach_devices(devices: Sequence[LabDevice], connect: Callable[..., Transport] = open_transport
                  ) -> list[BenchError]:
    """Connect to every device once, before anything is exported or pushed.

    Returns:
        Why each device that cannot be used now (unauthorized, offline, ...) failed; its runs would fail so.

    Raises:
        UnknownSerial: no adb server or USB phone has one of the serials (a typo, an unplugged phone).
    """
    failures: list[BenchError] = []
    for device in devices:
        opener = functools.partial(connect, server=device.server) if device.server else connect
        try:
            opener(device.serial).close()
        except UnknownSerial:
            raise
        except BenchError as error:
            failures.append(error)
    return failures


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
                      on_result: Callable[[RunResult], None] | None = None,
                      on_interrupt: Callable[[str], None] = logger.warning) -> AndroidRun:
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
        on_result: called from the worker threads after each run (progress output), once it is stored.
        on_interrupt: told, at the first Ctrl-C, what is being stopped and where the results are.

    Every run is stored as it finishes. At the first Ctrl-C the running benchmarks are stopped, the devices
    cleaned up and the rest of the runs stored as failed ("interrupted"); a second Ctrl-C quits at once,
    keeping what was already stored.

    Returns:
        The stored run; failed runs are in it with their reason.

    Raises:
        BenchError: bad arguments (no device, no model, unknown delegate, missing binary file).
        ModelFileError: a model is not a .tflite file.
        StoreError: the results store cannot be written (checked before any device is reached).
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
    saved = _Saver(store.writer(run_id), on_result)  # checks the store before anything runs
    stop = threading.Event()
    problems = {model.name: problem for model in loaded if (problem := local_problem(model))}
    sessions = [DeviceSession(device.serial, run_id, loaded, list(dict.fromkeys(threads)),
                              list(dict.fromkeys(delegates)), settings, binary,
                              functools.partial(connect, server=device.server) if device.server else connect,
                              stop, saved.add, target=device.name, about=device.about(),
                              model_problems=problems)
                for device in devices]
    per_device: list[list[RunResult] | None] = [None] * len(sessions)  # set when a worker is done

    def work(index: int) -> None:
        per_device[index] = _run_safely(sessions[index])

    workers = [threading.Thread(target=work, args=(index,), name=f"mnbench-device-{index}", daemon=True)
               for index in range(len(sessions))]  # daemon: a second Ctrl-C quits without waiting
    for worker in workers:
        worker.start()
    try:
        _wait(per_device)
    except KeyboardInterrupt:
        stop.set()  # workers stop their running benchmark, clean up, and fail the rest as interrupted
        running = [f"{session.target} ({session.current})" for session in sessions if session.current]
        on_interrupt(f"interrupted: stopping the benchmark running on {', '.join(running) or 'no device'}; "
                     f"finished runs are stored in {saved.writer.path} (Ctrl-C again to quit at once)")
        for session in sessions:
            threading.Thread(target=session.interrupt, daemon=True).start()
        _wait(per_device)
        saved.finish([result for results in per_device for result in results or []])
        raise
    results = [result for device_results in per_device for result in device_results or []]
    return AndroidRun(run_id, saved.finish(results), results)


def local_problem(model: ModelFile) -> str | None:
    """Why LiteRT on this host cannot load a model (so the phone would not either), or None.

    Cheap next to a push and a failed run on the phone: a truncated, bit-flipped or foreign file fails its
    runs here with LiteRT's reason.
    """
    from .tflite_file import open_interpreter, read_bytes

    try:
        open_interpreter(read_bytes(model.path))
    except ModelFileError as error:
        return f"not run: {error}"
    return None


def _wait(per_device: list) -> None:
    """Wait until every worker has stored its results. Polls rather than ``Thread.join``: a join that
    Ctrl-C interrupts can leave the thread looking finished while it still runs (seen on CPython 3.11)."""
    while any(results is None for results in per_device):
        time.sleep(0.1)


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


class _Saver:
    """Stores each run as it finishes (from the worker threads), so an interruption loses none of them."""

    def __init__(self, writer: RunWriter, on_result: Callable[[RunResult], None] | None) -> None:
        self.writer, self.on_result = writer, on_result
        self._lock = threading.Lock()
        self._log_names: dict[str, str] = {}  # row key -> raw log name, stable across rewrites
        self.error: str | None = None

    def add(self, result: RunResult) -> None:
        with self._lock:
            try:
                self._put([result])
            except OSError as error:  # keep measuring; finish() tries again and reports it
                self.error = f"{error.strerror or error}"
                logger.warning("cannot store a result in %s: %s", self.writer.path, self.error)
        if self.on_result is not None:
            self.on_result(result)

    def finish(self, results: list[RunResult]) -> Path:
        """Store every result in its final form; returns the run folder."""
        with self._lock:
            try:
                return self._put(results)
            except OSError as error:
                raise BenchError(f"cannot write the results of run {self.writer.run_id} to "
                                 f"{self.writer.root}: {error.strerror or error}") from error

    def _put(self, results: list[RunResult]) -> Path:
        raw_logs, op_times = {}, {}
        for result in results:
            tables = result.parsed or {}
            found = from_benchmark_tables(tables.get("op_profile"), tables.get("op_profile_nodes"))
            if found is not None and result.row["status"] == "ok":
                op_times[row_key(result.row)] = found
            if result.raw_log is not None:
                key = row_key(result.row)
                name = self._log_names.setdefault(key, _log_name(result.row, set(self._log_names.values())))
                raw_logs[name] = result.raw_log
                desc = json.loads(result.row["target_desc"])
                desc.setdefault("run", {})["raw_log"] = f"raw/{name}.txt"
                result.row["target_desc"] = json.dumps(desc, sort_keys=True, default=str)
        return self.writer.put([result.row for result in results], {}, raw_logs, op_times)


def _log_name(row: dict, taken: set[str]) -> str:
    base = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", str(part)).strip("-.") or "x"
                    for part in (row["target"], row["model"], f"t{row['threads']}", row["delegate"]))
    name, index = base, 1
    while name in taken:
        index += 1
        name = f"{base}_{index}"
    taken.add(name)
    return name
