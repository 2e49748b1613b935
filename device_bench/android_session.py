"""One phone's benchmark session: connect, read facts, install the binary, run every combination, clean up.

Every (model, threads, delegate) combination ends as exactly one :class:`RunResult`, ``ok`` or ``failed`` with
its reason: a device that cannot be reached fails all of its runs, a model that cannot be pushed fails its
own runs, a run that crashes, hangs or loses the connection fails alone. After a connection error the device
is probed once; if it does not answer, the remaining runs fail with that reason instead of each waiting for
its own timeout. The per-run folder :func:`~device_bench.android_run.run_dir` is removed at the end, also
after failures (a leftover benchmark process is killed first). Each result is handed to ``on_result`` as
soon as it is recorded (the caller stores it). :meth:`DeviceSession.interrupt`, called from another thread
after ``stop`` is set, kills the benchmark running now; that run fails as "interrupted".

Which tool the binary is (:data:`device_bench.binary.TOOLS`) is known for the prebuilt and asked once per
session of a user's build (``--help``); each row's ``target_desc`` says it (``run.tool``). A build whose
``--help`` names neither tool's flags gets the classic tool's flags, with a warning in each row. A
combination the tool cannot run (:func:`~device_bench.android_run.refusal`) fails unrun, with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .android_run import (RUN_ROOT, BenchSettings, ModelFile, accelerator_use, benchmark_argv, benchmark_env,
                          judge_run, refusal, result_row, run_desc, run_dir)
from .delegates import NNAPI_DEPRECATED_SDK
from .binary import CLASSIC, DEVICE_BINARY, BinaryChoice, install, probe_tool
from .connect import open_transport
from .device_facts import DeviceFacts, Temperatures, cpu_mask, pin_cores, read_facts, read_temperatures
from .errors import BenchError, CommandFailed, CommandTimeout
from .phone_lock import PhoneLock, remove_stale_run_folders
from .tflite_file import sha256
from .provenance import run_columns
from .transport import Transport, join

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 15.0
Combo = tuple[ModelFile, int, str]


@dataclass
class RunResult:
    """One (device, model, threads, delegate) run: its store row, raw log and parser output."""

    row: dict
    raw_log: str | None = None
    parsed: dict | None = None
    facts: DeviceFacts | None = None
    desc: dict = field(default_factory=dict)  # per-run part of target_desc, merged in by finish()


class DeviceSession:
    """Runs every combination on one device; :meth:`run` never raises for device or tool failures."""

    def __init__(self, serial: str, run_id: str, models: list[ModelFile], threads: list[int],
                 delegates: list[str], settings: BenchSettings, binary: BinaryChoice | None = None,
                 connect: Callable[[str], Transport] = open_transport, stop: threading.Event | None = None,
                 on_result: Callable[[RunResult], None] | None = None, target: str | None = None,
                 about: dict | None = None, model_problems: dict[str, str] | None = None) -> None:
        self.serial, self.run_id, self.settings, self.models = serial, run_id, settings, list(models)
        self.target = target or serial  # the rows' ``target``: HOST:PORT/SERIAL when a serial is ambiguous
        self.combos: list[Combo] = [(model, count, delegate) for model in models for count in threads
                                    for delegate in delegates]
        self.choice, self.connect = binary or BinaryChoice(), connect
        self.binary = None
        self.tool: str | None = None  # which tool the binary is (device_bench.binary.TOOLS); None: unknown
        self.tool_note: str | None = None  # why the tool is unknown
        self.lock: PhoneLock | None = None
        self.stop = stop or threading.Event()
        self.on_result = on_result
        self.model_problems = model_problems or {}  # model name -> why it is not run (checked on the host)
        self.current: str | None = None  # the run in progress, for the interrupt message
        self.transport: Transport | None = None
        self.facts: DeviceFacts | None = None
        self.folder = run_dir(run_id)
        self.library_dir: str | None = None  # where the NPU libraries were pushed (npu runs only)
        self.lost: str | None = None  # why the device stopped answering
        self.results: dict[tuple[str, int, str], RunResult] = {}
        self.session_desc: dict = {"serial": serial, **(about or {})}
        self.stage = "cannot connect"
        self._columns = run_columns()

    # ------------------------------------------------------------------------------------------ flow
    def run(self) -> list[RunResult]:
        """Benchmark every combination; results in combination order."""
        try:
            self._prepare()
            self._shell(f"mkdir -p {join([self.folder])}")
            self._push_npu_libraries()
            for model in self.models:
                self._bench_model(model)
        except BenchError as error:
            self.lost = self.lost or f"{self.stage}: {error}"
        finally:
            if self.stage == "running":
                self._clean_up()
            if self.lock is not None:
                self.lock.release()
                self.session_desc["lock"] = {"notes": self.lock.notes, "released": True}
            if self.transport is not None:
                self.transport.close()
        return self._finish()

    def _prepare(self) -> None:
        """Connect, read the facts, take the phone's lock, remove dead runs' folders, install the binary."""
        self.transport = self.connect(self.serial)
        self.stage = "cannot read the device facts"
        self.facts = read_facts(self.transport, self.serial, self.settings.command_timeout_s)
        self.stage = "cannot lock the phone"
        settings = self.settings
        self.lock = PhoneLock(self.transport, self.folder, settings.lock_wait_s, settings.lock_stale_after_s,
                              settings.command_timeout_s)
        self.lock.acquire(self.stop)
        self.stage = "cannot remove the folders of earlier runs"
        stale = remove_stale_run_folders(self.transport, RUN_ROOT, "mnbench-", self.folder,
                                         settings.command_timeout_s)
        self.session_desc["stale_run_folders_removed"] = stale
        self.stage = "cannot install benchmark_model"
        self.binary = self.choice.for_abis(self.facts.abilist or [self.facts.abi or "unknown"])
        pushed = install(self.transport, self.binary, DEVICE_BINARY, settings.command_timeout_s)
        self.stage = "cannot ask benchmark_model which tool it is"
        self.tool, known_from = self.binary.tool, "where it comes from (Google's LiteRT release)"
        if self.tool is None:
            self.tool, known_from = probe_tool(self.transport, DEVICE_BINARY, settings.command_timeout_s)
        if self.tool is None:
            self.tool_note = (f"which benchmark_model this is is unknown ({known_from}): it was given the "
                              "classic TFLite tool's flags")
        self.session_desc.update(binary={**self.binary.describe(), "pushed": pushed, "tool": self.tool,
                                         "tool_known_from": known_from})
        self.stage = "running"

    def _push_npu_libraries(self) -> None:
        """Push the vendor's NPU libraries into the run folder when an ``npu`` run will need them."""
        libraries = self.settings.npu_libraries
        if not libraries or not any(delegate == "npu" for _, _, delegate in self.combos):
            return
        self.stage = "cannot push the NPU libraries"
        folder = f"{self.folder}/npu"
        self._shell(f"mkdir -p {join([folder])}")
        for library in libraries:
            self.transport.push(library, f"{folder}/{library.name}")
        self.library_dir = folder
        self.session_desc["npu_libraries"] = [{"name": library.name, "sha256": sha256(library)}
                                              for library in libraries]
        self.stage = "running"

    def _bench_model(self, model: ModelFile) -> None:
        if self.lost or self.stop.is_set():
            return
        remote = f"{self.folder}/{model.name}"
        if model.name in self.model_problems:
            for combo in self.combos:
                if combo[0] is model:
                    self._record(combo, "failed", self.model_problems[model.name], None, None, {})
            return
        try:
            self.transport.push(model.path, remote)
        except BenchError as error:
            for combo in self.combos:
                if combo[0] is model:
                    self._record(combo, "failed", f"push of {model.name} failed: {error}", None, None, {})
            self._probe(error)
            return
        for combo in self.combos:
            if combo[0] is model and not self.lost and not self.stop.is_set():
                self._bench_one(combo, remote)

    def _bench_one(self, combo: Combo, remote: str) -> None:
        model, threads, delegate = combo
        cores = pin_cores(self.facts, threads) if self.facts.has_tool("taskset") else ()
        mask = cpu_mask(cores)
        desc: dict = {"taskset_mask": mask, "pinned_cpus": list(cores), "tool": self.tool or "unknown"}
        tool = self.tool or CLASSIC
        if (refused := refusal(tool, delegate, self.settings)) is not None:
            self._record(combo, "failed", refused, None, None, desc)
            return
        why = ("no core's max frequency is known" if self.facts.has_tool("taskset")
               else "no taskset on the device")
        notes = ([] if mask else [f"not pinned: {why}"]) + ([self.tool_note] if self.tool_note else [])
        if delegate == "nnapi" and (self.facts.sdk or 0) >= NNAPI_DEPRECATED_SDK:
            notes.append(f"NNAPI is deprecated from Android 15 (this phone: SDK {self.facts.sdk}); vendors "
                         "may drop its drivers: measure --delegate npu or gpu instead")
        try:
            before, waited_s, note = self._cool_down()
        except BenchError as error:
            self._record(combo, "failed", f"cannot read the temperatures before the run: {error}", None, None,
                         desc)
            self._probe(error)
            return
        notes += [note] if note else []
        argv = benchmark_argv(DEVICE_BINARY, remote, threads, delegate, self.settings, self.library_dir,
                              tool=tool)
        env = benchmark_env(delegate, self.library_dir)
        command = join((["taskset", mask] if mask else []) + (["env", *env] if env else []) + argv) + " 2>&1"
        desc.update(command=command, cooldown_wait_s=round(waited_s, 3), temperatures_before=before.as_dict())
        log, returncode = None, None
        if not self._heartbeat():
            return
        self.current = f"{model.name} threads={threads} {delegate}"
        try:
            completed = self.transport.shell(command, self.settings.run_timeout_s)
            log, returncode = completed.stdout + completed.stderr, completed.returncode
            if self.stop.is_set() and returncode != 0:
                raise _Interrupted
            status, error, parsed, warnings = judge_run(log, returncode, delegate,
                                                        self.settings.strict_delegation, graph=remote,
                                                        threads=threads, op_profile=self.settings.op_profile)
        except CommandTimeout:
            status, error, parsed, warnings = "failed", (
                f"timed out after {self.settings.run_timeout_s:g} s; benchmark_model was stopped"), None, []
            self._kill_leftovers()
        except _Interrupted:
            status, error, parsed, warnings = "failed", "interrupted (Ctrl-C): benchmark_model was stopped", \
                None, []
        except BenchError as lost:
            why = "interrupted (Ctrl-C) during the run" if self.stop.is_set() else \
                "connection lost during the run"
            status, error, parsed, warnings = "failed", f"{why}: {lost}", None, []
            if not self.stop.is_set():
                self._probe(lost)
        finally:
            self.current = None
        after = self._temperatures() if not self.lost else None
        desc.update(temperatures_after=after.as_dict() if after else None, exit_status=returncode,
                    **run_desc(parsed, notes + warnings))
        if (use := accelerator_use(parsed, delegate, self.settings)) is not None:
            desc["accelerator"] = use
        raw = None if log is None else (f"# mnbench: {self.serial} run {self.run_id}\n# command: {command}\n"
                                        f"# exit status: {returncode}\n{log}")
        self._record(combo, status, error, parsed, raw, desc)

    # ------------------------------------------------------------------------------------------ device
    def _shell(self, command: str) -> str:
        completed = self.transport.shell(command, self.settings.command_timeout_s)
        if not completed.ok:
            raise CommandFailed(command, completed.returncode, completed.stderr or completed.stdout)
        return completed.stdout

    def _cool_down(self) -> tuple[Temperatures, float, str | None]:
        """Wait until the hottest zone is below the threshold, at most cooldown_max_wait_s."""
        started = time.monotonic()
        while True:
            temperatures = read_temperatures(self.transport, self.settings.command_timeout_s)
            hottest, waited_s = temperatures.hottest(), time.monotonic() - started
            if hottest is None or hottest.temp_c < self.settings.cooldown_below_c:
                return temperatures, waited_s, None
            if waited_s >= self.settings.cooldown_max_wait_s or self.stop.is_set():
                return temperatures, waited_s, (
                    f"still {hottest.temp_c:g} °C in thermal zone {hottest.zone} ({hottest.type}) after "
                    f"cooling down for {waited_s:.1f} s "
                    f"(target: below {self.settings.cooldown_below_c:g} °C)")
            self.stop.wait(min(self.settings.cooldown_poll_s, self.settings.cooldown_max_wait_s - waited_s))

    def _temperatures(self) -> Temperatures | None:
        try:
            return read_temperatures(self.transport, self.settings.command_timeout_s)
        except BenchError as error:
            logger.warning("%s: cannot read temperatures after the run: %s", self.serial, error)
            return None

    def _heartbeat(self) -> bool:
        """Renew the phone's lock before each step; losing it (another process broke it) ends the session."""
        if self.lock is None:
            return True
        try:
            held = self.lock.heartbeat()
        except BenchError:
            return True   # the run's own command reports the lost connection, with its reason
        if not held:
            self.lost = "the phone's lock was taken over by another process (this session looked dead to it)"
        return held

    def _probe(self, error: Exception) -> None:
        """After a connection error: does the device still answer? If not, the remaining runs fail."""
        try:
            self.transport.shell("true", PROBE_TIMEOUT_S)
        except BenchError as probe:
            self.lost = f"device lost after: {error} (reconnecting failed: {probe})"

    def _kill_leftovers(self, transport: Transport | None = None) -> None:
        # The pattern matches the tool's "--graph=<run dir>/" argument but not this command's own text.
        pattern = "[-]-graph=" + self.folder.replace(".", "[.]") + "/"
        try:
            (transport or self.transport).shell(f"pkill -KILL -f {join([pattern])} 2>/dev/null; true",
                                                PROBE_TIMEOUT_S)
        except BenchError as error:
            logger.warning("%s: could not stop a leftover benchmark_model: %s", self.serial, error)

    def interrupt(self) -> None:
        """Stop the benchmark running now (called from another thread, after ``stop`` is set).

        Uses a connection of its own: the worker's connection is busy waiting for the run to end.
        """
        if self.current is None:
            return
        try:
            transport = self.connect(self.serial)
        except BenchError as error:
            logger.warning("%s: cannot reach the device to stop the running benchmark: %s", self.serial,
                           error)
            return
        try:
            self._kill_leftovers(transport)
        finally:
            transport.close()

    def _clean_up(self) -> None:
        try:
            self._kill_leftovers()
            self._shell(f"rm -rf {join([self.folder])}")
            self.session_desc["cleanup"] = "removed " + self.folder
        except BenchError as error:
            self.session_desc["cleanup"] = f"failed: {self.folder} may remain on the device ({error})"
            logger.warning("%s: %s", self.serial, self.session_desc["cleanup"])

    # ------------------------------------------------------------------------------------------ results
    def _record(self, combo: Combo, status: str, error: str | None, parsed: dict | None, raw: str | None,
                desc: dict) -> None:
        model, threads, delegate = combo
        row = result_row(run_id=self.run_id, serial=self.target, model=model, threads=threads,
                         delegate=delegate, status=status, error=error, parsed=parsed,
                         run_columns=self._columns, desc={})
        result = RunResult(row, raw, parsed, self.facts, desc)
        self._describe(result)
        self.results[(model.name, threads, delegate)] = result
        if self.on_result is not None:
            self.on_result(result)

    def _finish(self) -> list[RunResult]:
        """Fail the runs that never ran, then write each row's target_desc (facts + session + run)."""
        reason = self.lost or ("interrupted before this run" if self.stop.is_set() else "not run")
        for combo in self.combos:
            if (combo[0].name, combo[1], combo[2]) not in self.results:
                self._record(combo, "failed", reason, None, None, {})
        ordered = [self.results[(model.name, threads, delegate)] for model, threads, delegate in self.combos]
        for result in ordered:
            self._describe(result)  # again: the session part now holds the clean-up
        return ordered

    def _describe(self, result: RunResult) -> None:
        """Write the row's target_desc: device facts, session (binary, clean-up) and run parts."""
        facts = self.facts.as_dict() if self.facts else {"serial": self.serial}
        desc = {**facts, **self.session_desc, "run": result.desc}
        result.row["target_desc"] = json.dumps(desc, sort_keys=True, default=str)


class _Interrupted(Exception):
    """The run ended because the user pressed Ctrl-C and its benchmark was stopped."""
