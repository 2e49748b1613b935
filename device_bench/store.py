"""Append-only results store: latency runs of every benchmark target (host CPU, Android phones), and any
other kind of results given its :class:`Schema` (``mnbench.accuracy.results`` stores accuracy runs here).

Layout under ``root`` (default ``results/runs/``): ``<run_id>/rows.csv`` (one row per (model, target,
threads, delegate), exactly ``COLUMNS`` in order; an empty field is missing, so '' is stored as missing),
``<run_id>/samples.json`` (``{row_key(row): [latency_us, ...]}``, a row's ``samples_file`` is
``samples.json#<key>``), ``<run_id>/op_times.json`` (``{row_key(row): op times}``, only for rows that
have per-operator times, see :mod:`device_bench.op_times`; runs written before it existed have none) and
``<run_id>/raw/<name>.txt`` (raw tool logs). A run is written into a hidden
``.tmp-<run_id>-<hex>`` dir and renamed into place when complete, so a crash leaves at most that hidden
dir, which ``load`` skips. A run that is measured for long is stored as it goes instead
(:class:`RunWriter`): its files are replaced whole after each row, so an interruption keeps every finished
row. Runs are never overwritten by another run; the store computes no statistics. ``load`` refuses rows
that no run can produce (a non-finite number, a negative latency, an ok row with neither median nor
average).
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import re
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from .errors import BenchInputError
from .op_times import OpTimesError, check as check_op_times
from .provenance import toolkit_version

STR, INT, FLOAT = "string", "Int64", "Float64"  # pandas nullable dtypes
COLUMNS: tuple[tuple[str, str], ...] = (  # the one schema for every target: (name, dtype), in file order
    ("run_id", STR), ("utc_time", STR), ("mnbench_version", STR), ("git_commit", STR),
    ("target", STR), ("target_kind", STR), ("target_desc", STR), ("runtime", STR),
    ("model", STR), ("model_sha256", STR), ("version", STR), ("alpha", FLOAT), ("resolution", INT),
    ("quant", STR), ("config", STR), ("params", INT), ("macs", INT),
    ("threads", INT), ("delegate", STR), ("status", STR), ("error", STR),
    ("count", INT), ("init_us", FLOAT), ("first_us", FLOAT), ("warmup_avg_us", FLOAT),
    ("mean_us", FLOAT), ("avg_us", FLOAT), ("std_us", FLOAT), ("min_us", FLOAT), ("max_us", FLOAT),
    ("median_us", FLOAT), ("p90_us", FLOAT), ("p99_us", FLOAT),
    ("median_ci_low_us", FLOAT), ("median_ci_high_us", FLOAT), ("cv", FLOAT),
    ("mem_peak_mb", FLOAT), ("mem_init_mb", FLOAT), ("mem_overall_mb", FLOAT), ("samples_file", STR),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
DTYPES = dict(COLUMNS)
REQUIRED = ("run_id", "utc_time", "mnbench_version", "target", "target_kind", "runtime", "model",
            "threads", "delegate", "status")
JSON_COLUMNS = ("target_desc", "config")
CHOICES = {"target_kind": ("host", "android"), "status": ("ok", "failed")}
DEFAULT_ROOT = Path("results/runs")
SAMPLES_NAME = "samples.json"
OP_TIMES_NAME = "op_times.json"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # run ids and raw log names: one safe path part
_UTC_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_PARSERS = {STR: str, INT: int, FLOAT: float}


@dataclass(frozen=True, eq=False)
class Schema:
    """What the rows of one kind of results hold.

    Attributes:
        name: what the results are called in error messages ("results", "accuracy results").
        columns: ``(name, pandas dtype)`` in file order.
        required: columns every row must fill.
        json_columns: string columns that must hold JSON.
        choices: the values some columns allow.
        more_required: ``row -> [missing value, ...]``, for what a row needs depending on its values.
        key: ``row -> key`` of a row inside its run (keys ``samples``; keys must differ), or None for
            results without samples.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    required: tuple[str, ...]
    json_columns: tuple[str, ...] = ()
    choices: Mapping[str, tuple] = field(default_factory=dict)
    more_required: Callable[[Mapping[str, Any]], list[str]] = lambda row: []
    key: Callable[[Mapping[str, Any]], str] | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def dtypes(self) -> dict[str, str]:
        return dict(self.columns)


class StoreError(BenchInputError):
    """A results file that is missing, corrupt or not in the results schema."""


class RunExistsError(StoreError):
    """The run directory already exists; runs are append-only."""


class SchemaError(StoreError, ValueError):
    """Rows, samples or logs handed to :meth:`ResultStore.write_run` that do not fit the schema."""


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a ``Z`` suffix, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def row_key(row: Mapping[str, Any]) -> str:
    """Key of a row in its run, e.g. ``mnv2.tflite@3f9a1c2b4d5e|host|threads=4|xnnpack``; keys ``samples``.

    A model is its file name and content (the start of its sha256, when known): two different models with
    the same file name from different folders are two rows.
    """
    sha = row.get("model_sha256")
    model = f"{row.get('model')}@{sha[:12]}" if isinstance(sha, str) and sha else row.get("model")
    return f"{model}|{row.get('target')}|threads={row.get('threads')}|{row.get('delegate')}"


def _latency_figures(row: Mapping[str, Any]) -> list[str]:
    """An ok row has a run count and a central figure (older tools print no median); a failed one an error."""
    missing = []
    if row["status"] == "ok":
        missing += ["count"] if row["count"] is None else []
        missing += ["median_us or avg_us"] if row["median_us"] is None and row["avg_us"] is None else []
    missing += ["error"] if row["status"] == "failed" and row["error"] is None else []
    return missing


LATENCY = Schema("results", COLUMNS, REQUIRED, JSON_COLUMNS, CHOICES, _latency_figures, row_key)


class ResultStore:
    """Append-only store of runs under ``root``, every row in one schema (latency by default)."""

    def __init__(self, root: Path | str = DEFAULT_ROOT, schema: Schema = LATENCY):
        """Args: root: folder holding one sub-folder per run (created on first write); schema: of the rows."""
        self.root = Path(root)
        self.schema = schema
        self._run_dirs: dict[str, Path] = {}  # run_id -> folder, for runs loaded from outside root

    @staticmethod
    def new_run_id() -> str:
        """Sortable run id: UTC time (ms) + random suffix, e.g. ``20250131T120000.123Z-3f9a1c``."""
        now = datetime.now(timezone.utc)
        return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"

    def write_run(self, run_id: str, rows: Sequence[Mapping[str, Any]],
                  samples: Mapping[str, Sequence[float]], raw_logs: Mapping[str, str] | None = None,
                  files: Mapping[str, str] | None = None, op_times: Mapping[str, dict] | None = None) -> Path:
        """Writes one complete run atomically and returns its folder ``root/<run_id>``.

        Args:
            run_id: folder name, e.g. from :meth:`new_run_id`; rows may omit it.
            rows: one mapping per (model, target, threads, delegate), keys from ``COLUMN_NAMES``; missing
                keys are None, ``utc_time`` defaults to now, ``mnbench_version`` to this package's.
            samples: ``{row_key(row): [latency_us, ...]}``; write_run sets the rows' ``samples_file``.
            raw_logs: ``{name: text}`` written to ``raw/<name>.txt``.
            files: ``{file name: text}`` written beside ``rows.csv`` (e.g. an accuracy run's predictions).
            op_times: ``{row_key(row): op times}`` (:mod:`device_bench.op_times`) of the rows that have them.

        Raises:
            SchemaError: for unknown columns, bad values, duplicate row keys or unmatched samples.
            RunExistsError: if ``root/<run_id>`` already exists.
        """
        _check_name(run_id, "run_id")
        final = self.root / run_id
        if final.exists():
            raise RunExistsError(f"run {run_id!r} already exists in {self.root}; runs are append-only")
        if not rows:
            raise SchemaError(f"run {run_id!r} has no rows")
        records = [_prepare_row(self.schema, row, run_id, f"rows[{index}]") for index, row in enumerate(rows)]
        samples_out = _attach_samples(self.schema, records, samples)
        ops_out = _checked_op_times(self.schema, records, op_times or {})
        for name in raw_logs or {}:
            _check_name(name, "raw log name")
        for name in files or {}:
            _check_name(name, "file name")
        if {"rows.csv", SAMPLES_NAME, OP_TIMES_NAME, "raw"} & set(files or {}):
            raise SchemaError(f"files may not be named rows.csv, {SAMPLES_NAME}, {OP_TIMES_NAME} or raw")
        tmp = self.root / f".tmp-{run_id}-{secrets.token_hex(4)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as error:
            raise StoreError(f"cannot write {self.schema.name} under {self.root}: {error.strerror}") from None
        try:
            _write_text(tmp / "rows.csv", _to_csv(self.schema, records))
            if self.schema.key is not None:
                _write_text(tmp / SAMPLES_NAME, json.dumps(samples_out, indent=1))
            if ops_out:
                _write_text(tmp / OP_TIMES_NAME, json.dumps(ops_out, indent=1))
            for name, text in (files or {}).items():
                _write_text(tmp / name, text)
            if raw_logs:
                (tmp / "raw").mkdir()
                for name, text in raw_logs.items():
                    _write_text(tmp / "raw" / f"{name}.txt", text)
            if final.exists():  # raced with another writer; rename would replace an empty dir
                raise RunExistsError(f"run {run_id!r} appeared in {self.root} while writing")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def writer(self, run_id: str) -> "RunWriter":
        """A run stored as it goes (see :class:`RunWriter`); checks first that ``root`` can be written.

        Raises:
            StoreError: ``root`` cannot be created or written (read-only, a file, no space left).
            RunExistsError: the run already exists.
        """
        return RunWriter(self, run_id)

    def load(self, *sources: Path | str) -> pd.DataFrame:
        """Loads runs into one DataFrame with the schema's dtypes, in source order, then run-folder order.

        Args:
            *sources: results folders (every run below them; hidden ``.tmp-*`` dirs skipped), run
                folders, ``rows.csv`` files or run ids under ``root``. None means all of ``root``.

        Raises:
            StoreError: for a source that does not exist or a missing/corrupt file.
        """
        paths: list[Path] = []
        for source in sources or (self.root,):
            paths += [path for path in self._resolve(source) if path not in paths]
        frames = [_read_csv(self.schema, path) for path in paths]
        for path, frame in zip(paths, frames):
            self._run_dirs.update({str(run_id): path.parent for run_id in frame["run_id"].dropna().unique()})
        return pd.concat(frames, ignore_index=True) if frames else self.empty()

    def empty(self) -> pd.DataFrame:
        """A frame with the schema's columns and dtypes and no rows."""
        return pd.DataFrame({name: pd.array([], dtype=dtype) for name, dtype in self.schema.columns})

    def load_samples(self, row: Mapping[str, Any]) -> list[float]:
        """Raw latencies (us) of a loaded row, read from the file its ``samples_file`` points at.

        Raises:
            StoreError: if the row has no samples or the samples file is missing or corrupt.
        """
        ref, run_id = row["samples_file"], row["run_id"]
        if pd.isna(ref):
            raise StoreError(f"row {row_key(row)!r} of run {run_id!r} has no samples")
        file_name, _, key = str(ref).partition("#")
        run_dir = self._run_dirs.get(run_id, self.root / str(run_id))
        path = run_dir / file_name
        if not path.resolve().is_relative_to(run_dir.resolve()):
            raise StoreError(f"row {row_key(row)!r} of run {run_id!r}: samples_file {str(ref)!r} leaves "
                             f"the run folder {run_dir}: refused")
        try:
            return [float(value) for value in json.loads(path.read_text(encoding="utf-8"))[key]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read samples {key!r} from {path}: {exc!r}") from None

    def load_op_times(self, row: Mapping[str, Any]) -> dict | None:
        """The per-operator times stored with a loaded row (:mod:`device_bench.op_times`), or None.

        Raises:
            StoreError: if the run's op times file is corrupt.
        """
        run_dir = self._run_dirs.get(row["run_id"], self.root / str(row["run_id"]))
        path = run_dir / OP_TIMES_NAME
        try:
            found = json.loads(path.read_text(encoding="utf-8")).get(row_key(row))
            return None if found is None else check_op_times(found)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as exc:  # OpTimesError is a ValueError
            raise StoreError(f"cannot read op times {row_key(row)!r} from {path}: {exc}") from None

    def _resolve(self, source: Path | str) -> list[Path]:
        """rows.csv files named by one source."""
        path = Path(source)
        if path.is_file():
            return [path]
        if not path.is_dir() and isinstance(source, str) and _NAME_RE.fullmatch(source):
            path = self.root / source  # a run id
        if not path.is_dir():
            raise StoreError(f"no results folder, rows.csv or run id {str(source)!r} (root {self.root})")
        run_dirs = sorted({p.parent for pattern in ("rows.csv", SAMPLES_NAME) for p in path.rglob(pattern)
                           if not any(part.startswith(".") for part in p.relative_to(path).parts)})
        for run_dir in run_dirs:
            if not (run_dir / "rows.csv").is_file():
                raise StoreError(f"run folder {run_dir} has no rows.csv")
        return [run_dir / "rows.csv" for run_dir in run_dirs]


class RunWriter:
    """One run stored row by row, so that an interruption keeps every row already finished.

    :meth:`put` adds rows (a row whose key is already stored replaces it: a row can be stored early and
    completed later) and rewrites ``rows.csv`` and ``samples.json`` whole: each is written to a temporary
    file, flushed, then renamed over the old one, so a reader, a crash or a full disk never sees half a file.
    Raw logs are written before the rows that name them.
    """

    def __init__(self, store: ResultStore, run_id: str) -> None:
        _check_name(run_id, "run_id")
        self.path = store.root / run_id
        if self.path.exists():
            raise RunExistsError(f"run {run_id!r} already exists in {store.root}; runs are append-only")
        if store.schema.key is None:
            raise SchemaError(f"{store.schema.name} have no row keys: store them whole with write_run")
        self.run_id, self.root, self.schema = run_id, store.root, store.schema
        self._records: dict[str, dict[str, Any]] = {}
        self._samples: dict[str, list[float]] = {}
        self._op_times: dict[str, dict] = {}
        _check_writable(store.root)

    @property
    def stored(self) -> int:
        """How many rows are on disk."""
        return len(self._records)

    def put(self, rows: Sequence[Mapping[str, Any]], samples: Mapping[str, Sequence[float]] | None = None,
            raw_logs: Mapping[str, str] | None = None, op_times: Mapping[str, dict] | None = None) -> Path:
        """Store (or replace) rows, their samples, raw logs and op times; returns the run folder.

        Raises:
            SchemaError: bad rows, samples or log names (nothing is written).
            OSError: the disk refused (the files on disk keep the previous rows).
        """
        records = [_prepare_row(self.schema, row, self.run_id, f"rows[{index}]")
                   for index, row in enumerate(rows)]
        keys = [self.schema.key(record) for record in records]
        _attach_samples(self.schema, records, samples or {})  # checks repeats within rows and orphan samples
        ops = _checked_op_times(self.schema, records, op_times or {})
        for name in raw_logs or {}:
            _check_name(name, "raw log name")
        self.path.mkdir(exist_ok=True)
        for name, text in (raw_logs or {}).items():
            (self.path / "raw").mkdir(exist_ok=True)
            _replace_text(self.path / "raw" / f"{name}.txt", text)
        merged, merged_samples, merged_ops = dict(self._records), dict(self._samples), dict(self._op_times)
        for key, record in zip(keys, records):
            merged[key] = record
            if record["samples_file"] is not None:
                merged_samples[key] = [float(value) for value in samples[key]]
            merged_ops.pop(key, None)  # a replaced row keeps only the op times given with it
        merged_ops.update(ops)
        _replace_text(self.path / SAMPLES_NAME, json.dumps(merged_samples, indent=1))
        if merged_ops or self._op_times:
            _replace_text(self.path / OP_TIMES_NAME, json.dumps(merged_ops, indent=1))
        _replace_text(self.path / "rows.csv", _to_csv(self.schema, list(merged.values())))
        self._records, self._samples, self._op_times = merged, merged_samples, merged_ops
        return self.path


def _check_writable(root: Path) -> None:
    """Create ``root`` and write a small file in it, so a store that cannot take results fails first."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"cannot store results in {root}: it is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=root, prefix=".write-check-")
        try:
            os.write(handle, b"x" * 4096)
            os.fsync(handle)
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise StoreError(f"cannot store results in {root}: {error.strerror or error}") from None


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a flushed temporary file renamed over it."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _check_name(name: Any, what: str) -> None:
    if not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise SchemaError(f"{what} must match {_NAME_RE.pattern}, received {name!r}")


def _prepare_row(schema: Schema, row: Mapping[str, Any], run_id: str, where: str) -> dict[str, Any]:
    """Validated copy of one row with every column, values normalized to str/int/float/None."""
    if not isinstance(row, Mapping):
        raise SchemaError(f"{where} must be a mapping, received {type(row).__name__}")
    names = schema.column_names
    unknown = sorted(set(row) - set(names))
    if unknown:
        raise SchemaError(f"{where} has columns not in the {schema.name} schema: "
                          f"{', '.join(map(str, unknown))}")
    if row.get("samples_file") is not None:
        raise SchemaError(f"{where}: samples_file is set by write_run, received {row['samples_file']!r}")
    defaults = {"run_id": run_id, "utc_time": utc_now(), "mnbench_version": toolkit_version()}
    record = {name: _coerce(schema, name, row.get(name), where) for name in names}
    record.update({name: value for name,
                   value in defaults.items() if name in record and record[name] is None})
    if record["run_id"] != run_id:
        raise SchemaError(f"{where}: run_id {record['run_id']!r} differs from the run's {run_id!r}")
    if not _UTC_RE.fullmatch(record["utc_time"]):
        raise SchemaError(f"{where}: utc_time must be ISO 8601 ending in Z, received {record['utc_time']!r}")
    missing = [name for name in schema.required if record[name] is None] + schema.more_required(record)
    if missing:
        shown = schema.key(record) if schema.key else record.get("model")
        raise SchemaError(f"{where} ({shown}) lacks required values: {', '.join(missing)}")
    for name, allowed in schema.choices.items():
        if record[name] not in allowed:
            raise SchemaError(f"{where}: {name} must be one of {allowed}, received {record[name]!r}")
    return record


def is_missing(value: Any) -> bool:
    """None, pandas' NA and NaN are a missing cell."""
    return value is None or value is pd.NA or (isinstance(value, numbers.Real) and math.isnan(value))


def target_desc(row: Mapping[str, Any]) -> dict:
    """A row's ``target_desc`` JSON as a dict ({} when missing or not an object)."""
    try:
        value = json.loads(row.get("target_desc") or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _coerce(schema: Schema, name: str, value: Any, where: str) -> str | int | float | None:
    """One cell normalized to its column's Python type; None, NA, NaN and '' are missing."""
    dtype = schema.dtypes[name]
    if is_missing(value):
        return None
    if dtype == STR and isinstance(value, str):
        if name in schema.json_columns and value:
            try:
                json.loads(value)
            except ValueError:
                raise SchemaError(f"{where}: {name} must be a JSON string, received {value[:80]!r}") from None
        return value or None
    if dtype == INT and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if dtype == FLOAT and _is_finite_number(value):
        return float(value)
    kind = {STR: "a string", INT: "an integer", FLOAT: "a finite number"}[dtype]
    raise SchemaError(f"{where}: {name} must be {kind} or None, received {value!r}")


def _attach_samples(schema: Schema, records: list[dict[str, Any]],
                    samples: Mapping[str, Sequence[float]]) -> dict:
    """Points each record at its samples and returns the validated ``samples.json`` content."""
    if schema.key is None:
        if samples:
            raise SchemaError(f"{schema.name} have no samples")
        return {}
    keys = [schema.key(record) for record in records]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise SchemaError(f"rows repeat (model, target, threads, delegate): {', '.join(duplicates)}")
    orphans = sorted(set(samples) - set(keys))
    if orphans:
        raise SchemaError(f"samples for keys that match no row: {', '.join(map(str, orphans))}")
    out = {}
    for key, record in zip(keys, records):
        if key in samples:
            values = samples[key]
            if isinstance(values, (str, bytes)) or not all(_is_finite_number(v) for v in values):
                raise SchemaError(f"samples[{key!r}] must be a list of finite numbers")
            out[key] = [float(v) for v in values]
            record["samples_file"] = f"{SAMPLES_NAME}#{key}"
    return out


def _checked_op_times(schema: Schema, records: list[dict[str, Any]], op_times: Mapping[str, Any]) -> dict:
    """The validated ``op_times.json`` content for these rows (keys must be theirs)."""
    if not op_times:
        return {}
    if schema.key is None:
        raise SchemaError(f"{schema.name} have no op times")
    orphans = sorted(set(op_times) - {schema.key(record) for record in records})
    if orphans:
        raise SchemaError(f"op times for keys that match no row: {', '.join(map(str, orphans))}")
    try:
        return {key: check_op_times(value) for key, value in op_times.items()}
    except OpTimesError as error:
        raise SchemaError(str(error)) from None


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _to_csv(schema: Schema, records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(schema.column_names)
    for record in records:  # repr(float) is the shortest text that reads back to the same float
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v
                         for v in record.values()])
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> None:
    """Creates ``path`` (never overwrites) and flushes it to disk before the run is renamed into place."""
    with path.open("x", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _read_csv(schema: Schema, path: Path) -> pd.DataFrame:
    """Parses one rows.csv strictly: exact header, field count and cell types."""
    names, columns_and_types = schema.column_names, schema.columns
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            lines = list(csv.reader(handle, strict=True))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(f"cannot read results {path}: {exc}") from None
    if not lines or tuple(lines[0]) != names:
        found = ",".join(lines[0])[:80] if lines else "an empty file"
        raise StoreError(f"corrupt results {path}: header is not the {schema.name} schema, found {found!r}")
    body = lines[1:]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for number, cells in enumerate(body, start=1):
        if len(cells) != len(names):
            raise StoreError(f"corrupt results {path}: row {number} has {len(cells)}/{len(names)} fields")
        for (name, dtype), cell in zip(columns_and_types, cells):
            try:
                value = None if cell == "" else _PARSERS[dtype](cell)
            except ValueError:
                raise StoreError(f"corrupt results {path}: row {number}: {name}={cell[:40]!r} "
                                 f"is not {dtype}") from None
            if dtype == FLOAT and value is not None and not (math.isfinite(value)
                                                             and (value >= 0 or not name.endswith("_us"))):
                raise StoreError(f"corrupt results {path}: row {number}: {name}={cell[:40]!r} is not "
                                 f"{'a latency' if name.endswith('_us') else 'a finite number'}")
            columns[name].append(value)
        record = {name: values[-1] for name, values in columns.items()}
        missing = schema.more_required(record)  # what the writer requires, e.g. an ok row's count and median
        if missing:
            raise StoreError(f"corrupt results {path}: row {number} ({record.get('status')}) has no "
                             f"{', '.join(missing)}")
    return pd.DataFrame({name: pd.array(columns[name], dtype=dtype) for name, dtype in columns_and_types})
