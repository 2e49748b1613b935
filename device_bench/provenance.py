"""Columns every result row carries whatever the target: the model's identity and mnbench's own."""

from __future__ import annotations

import functools
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .tflite_file import read_bytes, read_metadata, sha256


def model_columns(path: Path) -> dict:
    """model, model_sha256, version, alpha, resolution, quant, config, params, macs of a .tflite file.

    The configuration and its cost (params, Mult-Adds) come from the export sidecar beside the model, else
    from what export embedded in the file; a model mnbench did not export gets None for those.
    """
    path = Path(path)
    data = read_bytes(path)
    columns = {"model": path.name, "model_sha256": sha256(data), "version": None, "alpha": None,
               "resolution": None, "quant": None, "config": None, "params": None, "macs": None}
    sidecar = path.with_suffix(".json")
    record = None
    if sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text())
        except ValueError:
            record = None
    if record is None or record.get("sha256") != columns["model_sha256"]:
        record = read_metadata(data)
    if record is None:
        return columns
    config = record["config"]
    columns.update(version=config["version"], alpha=float(config["alpha"]),
                   resolution=int(config["resolution"]),
                   quant=record["quant"], config=json.dumps(config, sort_keys=True),
                   params=record.get("params"), macs=record.get("macs"))
    return columns


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when it has local changes), or None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def toolkit_version() -> str:
    """The installed mnbench distribution's version (it holds all four packages), or "unknown"."""
    try:
        return version("mnbench")
    except PackageNotFoundError:
        return "unknown"


def run_columns() -> dict:
    return {"mnbench_version": toolkit_version(), "git_commit": git_commit()}
