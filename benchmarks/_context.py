"""Machine, versions and date stamped on every benchmark's output."""

import datetime
import os
import platform
from importlib.metadata import PackageNotFoundError, version

from device_bench.host import cpu_model
from device_bench.provenance import git_commit


def context() -> dict:
    versions = {}
    for package in ("mnbench", "tensorflow", "keras", "ai-edge-litert", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"utc_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "git_commit": git_commit(), "versions": versions}


def header(title: str, command: str) -> str:
    ctx = context()
    versions = ", ".join(f"{k} {v}" for k, v in ctx["versions"].items())
    return (f"# {title}\n\nCommand: `{command}`  \nMachine: {ctx['cpu']}, {ctx['cores']} cores, {ctx['os']}, "
            f"Python {ctx['python']}  \nVersions: {versions}  \nCommit: {ctx['git_commit']}  \n"
            f"Date: {ctx['utc_time']}\n")
