"""Append-only accuracy results, joinable with latency runs on ``model_sha256``.

Layout under ``root`` (default ``results/accuracy/``): ``<run_id>/rows.csv`` (one row per model, exactly
``COLUMNS``) and ``<run_id>/predictions.json`` (image paths, true class and every model's top-1, so two
models can be compared image by image later). The identity columns are those of the latency store
(``device_bench.store.COLUMNS``), so ``join_latency(latency, accuracy)`` puts top-1 beside median latency.
A run is written to a hidden temporary folder and renamed into place; runs are never overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
from pathlib import Path

import pandas as pd

from device_bench.provenance import model_columns, run_columns
from device_bench.store import FLOAT, INT, STR, ResultStore, utc_now

from .errors import DatasetError

DEFAULT_ROOT = Path("results/accuracy")
IDENTITY = (("run_id", STR), ("utc_time", STR), ("mnbench_version", STR), ("git_commit", STR),
            ("model", STR), ("model_sha256", STR), ("version", STR), ("alpha", FLOAT), ("resolution", INT),
            ("quant", STR), ("config", STR), ("params", INT), ("macs", INT))
COLUMNS: tuple[tuple[str, str], ...] = IDENTITY + (
    ("dataset", STR), ("dataset_sha256", STR), ("count", INT), ("skipped", INT), ("classes", INT),
    ("top1", FLOAT), ("top1_ci_low", FLOAT), ("top1_ci_high", FLOAT), ("top5", FLOAT), ("top5_k", INT),
    ("mean_class_top1", FLOAT), ("class_names_source", STR), ("per_class", STR), ("confusions", STR),
    ("paired_with", STR), ("agreement", FLOAT), ("lost", INT), ("gained", INT), ("mcnemar_p", FLOAT),
    ("seconds", FLOAT),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
_PARSERS = {STR: str, INT: int, FLOAT: float}


class AccuracyStoreError(DatasetError):
    """An accuracy results folder or file that cannot be written or read."""


def rows_for(results: list[dict], run_id: str) -> list[dict]:
    """Result rows (``COLUMNS``) for the dicts :func:`mnbench.accuracy.evaluate.evaluate` returns."""
    run, now, rows = run_columns(), utc_now(), []
    for result in results:
        identity = model_columns(Path(result["path"]))
        paired = result.get("vs_first") or {}
        rows.append({"run_id": run_id, "utc_time": now, **run, **identity,
                     "dataset": result["dataset"], "dataset_sha256": result["dataset_sha256"],
                     "count": result["count"], "skipped": result["skipped"], "classes": len(result["per_class"]),
                     "top1": result["top1"], "top1_ci_low": result["top1_ci95"][0],
                     "top1_ci_high": result["top1_ci95"][1], "top5": result["top5"], "top5_k": result["top5_k"],
                     "mean_class_top1": result["mean_class_top1"], "class_names_source": result["class_names_source"],
                     "per_class": json.dumps(result["per_class"]), "confusions": json.dumps(result["confusions"]),
                     "paired_with": paired.get("model"), "agreement": paired.get("agreement"),
                     "lost": paired.get("lost"), "gained": paired.get("gained"), "mcnemar_p": paired.get("mcnemar_p"),
                     "seconds": result["seconds"]})
    return [{name: row.get(name) for name in COLUMN_NAMES} for row in rows]


def write_run(results: list[dict], image_paths: list[str], labels: list[str], root: Path = DEFAULT_ROOT) -> Path:
    """Store one evaluation (every model on the same images) as a new run; return its folder."""
    run_id = ResultStore.new_run_id()
    rows = rows_for(results, run_id)
    predictions = {"images": image_paths, "labels": labels,
                   "models": [{"model": r["model"], "sha256": r["model_sha256"], "top1": r["predictions"]}
                              for r in results]}
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = root / f".tmp-{run_id}-{secrets.token_hex(4)}"
        temp.mkdir()
    except OSError as error:
        raise AccuracyStoreError(f"cannot write accuracy results under {root}: {error.strerror}") from None
    try:
        (temp / "rows.csv").write_text(_to_csv(rows), encoding="utf-8")
        (temp / "predictions.json").write_text(json.dumps(predictions), encoding="utf-8")
        os.rename(temp, root / run_id)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return root / run_id


def _to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMN_NAMES)
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row.values()])
    return buffer.getvalue()


def load(root: Path = DEFAULT_ROOT) -> pd.DataFrame:
    """Every accuracy run under ``root`` (hidden temporary folders skipped), with the schema's dtypes.

    Raises:
        AccuracyStoreError: a rows.csv that is not in the accuracy schema.
    """
    columns: dict[str, list] = {name: [] for name in COLUMN_NAMES}
    for path in sorted(Path(root).glob("*/rows.csv")):
        if path.parent.name.startswith("."):
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            lines = list(csv.reader(handle))
        if not lines or tuple(lines[0]) != COLUMN_NAMES:
            raise AccuracyStoreError(f"{path} is not in the accuracy results schema")
        for cells in lines[1:]:
            for (name, dtype), cell in zip(COLUMNS, cells):
                columns[name].append(None if cell == "" else _PARSERS[dtype](cell))
    return pd.DataFrame({name: pd.array(columns[name], dtype=dtype) for name, dtype in COLUMNS})


def join_latency(latency: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """Latency rows (``ResultStore.load()``) with the latest top-1/top-5 of the same model file beside them."""
    latest = accuracy.sort_values("utc_time").drop_duplicates("model_sha256", keep="last")
    wanted = ["model_sha256", "dataset", "count", "top1", "top1_ci_low", "top1_ci_high", "top5"]
    return latency.merge(latest[wanted].rename(columns={"count": "images"}), on="model_sha256", how="left")
