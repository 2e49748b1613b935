"""Append-only accuracy results, joinable with latency runs on ``model_sha256``.

Stored by ``device_bench.store.ResultStore`` in the ``ACCURACY`` schema, under ``root`` (default
``results/accuracy/``): ``<run_id>/rows.csv`` (one row per model, exactly ``COLUMNS``) and
``<run_id>/predictions.json`` (image paths, true class and every model's top-1, so two models can be
compared image by image later). The identity columns are those of the latency store
(``device_bench.store.COLUMNS``), so ``join_latency(latency, accuracy)`` puts top-1 beside median latency.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from device_bench.provenance import model_columns, run_columns
from device_bench.store import FLOAT, INT, STR, ResultStore, Schema, utc_now

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
ACCURACY = Schema("accuracy results", COLUMNS,
                  required=("run_id", "utc_time", "mnbench_version", "model", "model_sha256", "dataset",
                            "count"),
                  json_columns=("config", "per_class", "confusions"))
def rows_for(results: list[dict], run_id: str) -> list[dict]:
    """Result rows (``COLUMNS``) for the dicts :func:`mnbench.accuracy.evaluate.evaluate` returns."""
    run, now, rows = run_columns(), utc_now(), []
    for result in results:
        identity = model_columns(Path(result["path"]))
        paired = result.get("vs_first") or {}
        rows.append({"run_id": run_id, "utc_time": now, **run, **identity,
                     "dataset": result["dataset"], "dataset_sha256": result["dataset_sha256"],
                     "count": result["count"], "skipped": result["skipped"],
                     "classes": len(result["per_class"]),
                     "top1": result["top1"], "top1_ci_low": result["top1_ci95"][0],
                     "top1_ci_high": result["top1_ci95"][1], "top5": result["top5"],
                     "top5_k": result["top5_k"],
                     "mean_class_top1": result["mean_class_top1"],
                     "class_names_source": result["class_names_source"],
                     "per_class": json.dumps(result["per_class"]),
                     "confusions": json.dumps(result["confusions"]),
                     "paired_with": paired.get("model"), "agreement": paired.get("agreement"),
                     "lost": paired.get("lost"), "gained": paired.get("gained"),
                     "mcnemar_p": paired.get("mcnemar_p"), "seconds": result["seconds"]})
    return [{name: row.get(name) for name in COLUMN_NAMES} for row in rows]


def write_run(results: list[dict], image_paths: list[str], labels: list[str],
              root: Path = DEFAULT_ROOT) -> Path:
    """Store one evaluation (every model on the same images) as a new run; return its folder.

    Raises:
        device_bench.store.StoreError: rows that do not fit ``ACCURACY``, or a folder that cannot be written.
    """
    store = ResultStore(root, ACCURACY)
    run_id = store.new_run_id()
    predictions = {"images": image_paths, "labels": labels,
                   "models": [{"model": r["model"], "sha256": r["model_sha256"], "top1": r["predictions"]}
                              for r in results]}
    return store.write_run(run_id, rows_for(results, run_id), {},
                           files={"predictions.json": json.dumps(predictions)})


def load(root: Path = DEFAULT_ROOT) -> pd.DataFrame:
    """Every accuracy run under ``root`` (none when it does not exist), with the schema's dtypes.

    Raises:
        device_bench.store.StoreError: a rows.csv that is not in the accuracy schema.
    """
    store = ResultStore(root, ACCURACY)
    return store.load() if Path(root).is_dir() else store.empty()


def join_latency(latency: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """Latency rows (``ResultStore.load()``) with the latest top-1/top-5 of the same model file beside
    them."""
    latest = accuracy.sort_values("utc_time").drop_duplicates("model_sha256", keep="last")
    wanted = ["model_sha256", "dataset", "count", "top1", "top1_ci_low", "top1_ci_high", "top5"]
    return latency.merge(latest[wanted].rename(columns={"count": "images"}), on="model_sha256", how="left")
