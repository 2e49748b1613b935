"""Columns every result row carries whatever the target: the model's identity and mnbench's own."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import mnbench
from export.tflite_file import read_bytes, read_metadata, sha256


def model_columns(path: Path) -> dict:
    """model, model_sha256, version, alpha, resolution, quant, config, params, macs of a .tflite file.

    The configuration comes from the export sidecar beside the model, else from the configuration embedded in
    the file; a model mnbench did not export gets None for those.
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
    if record is not None and record.get("sha256") == columns["model_sha256"]:
        config, quant = record["config"], record["quant"]
    elif (embedded := read_metadata(data)) is not None:
        config, quant = embedded["config"], embedded["quant"]
    else:
        return columns
    from mobilenets_tf import configure

    report = configure(**config).cost()
    columns.update(version=config["version"], alpha=float(config["alpha"]), resolution=int(config["resolution"]),
                   quant=quant, config=json.dumps(config, sort_keys=True), params=report.params, macs=report.macs)
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


def run_columns() -> dict:
    return {"mnbench_version": mnbench.__version__, "git_commit": git_commit()}
