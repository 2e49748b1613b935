"""Test support for ``mnbench history``: a throwaway PostgreSQL server and synthetic result folders.

The PostgreSQL server is Debian's (``postgresql`` package, binaries under ``/usr/lib/postgresql/*/bin``),
started once per session on 127.0.0.1 at a free port with trust authentication, as the ``postgres`` user
when the tests run as root (PostgreSQL refuses to run as root). Tests that need it skip, saying why, only
when it is not installed or does not start.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from device_bench import stats
from device_bench.store import ResultStore, row_key

HOST = {"cpu": "AMD EPYC 7B13", "cores": 2, "machine": "x86_64", "os": "Linux", "python": "3.11"}
PHONE = {"manufacturer": "Google", "model": "Pixel 7", "abi": "arm64-v8a"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl in a private folder; ``url(name)`` creates a fresh database."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="mnbench-pg-"))
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str, timeout_s: float = 60) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True, text=True, timeout=timeout_s)

    def start(self) -> None:
        data, log = self.folder / "data", self.folder / "log"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "mnbench", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                      "stop", timeout_s=30)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://mnbench@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bindirs:
        pytest.skip("PostgreSQL is not installed (Debian package 'postgresql'; .ci/run installs it)")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_user("postgres")):
        pytest.skip("running as root without a 'postgres' user to run the server as")
    server = PostgresServer(Path(bindirs[-1]).parent)
    try:
        server.start()
    except (OSError, subprocess.SubprocessError) as error:
        server.stop()
        pytest.skip(f"PostgreSQL did not start: {getattr(error, 'stderr', '') or error}")
    yield server
    server.stop()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty history database of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_server").new_database()


def write_history(root: Path, levels_us: list[float], *, model: str = "v3-small_a1.00_r224_int8.tflite",
                  target_kind: str = "host", target: str = "host", desc: dict | None = None, threads: int = 1,
                  noise: float = 0.004, runs_per_commit: int = 1, seed: int = 0, start_day: int = 1,
                  commit_prefix: str = "c", op_times: list[dict | None] | None = None) -> list[str]:
    """One run per commit (and per repeat) with ``levels_us[i]`` as commit i's true median; returns run ids.

    ``op_times[i]``, when given and not None, is stored as the per-operator times of commit i's rows.

    Commits are named ``f"{commit_prefix}{i:03d}"``; each run has 60 log-normal samples around the level
    and one ok row whose summary comes from ``device_bench.stats.summarize``.
    """
    rng = np.random.default_rng(seed)
    store, run_ids = ResultStore(root), []
    for index, level in enumerate(levels_us):
        for repeat in range(runs_per_commit):
            values = (level * rng.lognormal(0, noise) * rng.lognormal(0, 0.01, 60)).tolist()
            row = {"utc_time": f"2026-11-{start_day + index // 24:02d}T{index % 24:02d}:{repeat:02d}:00Z",
                   "mnbench_version": "0.1.0", "git_commit": f"{commit_prefix}{index:03d}", "target": target,
                   "target_kind": target_kind, "target_desc": _json(desc or (HOST if target_kind == "host"
                                                                              else PHONE)),
                   "runtime": "ai-edge-litert 2.3.0", "model": model, "model_sha256": f"{index:064x}",
                   "threads": threads, "delegate": "xnnpack", "status": "ok", **stats.summarize(values)}
            run_id = f"r{index:04d}.{repeat}-{uuid.uuid4().hex[:10]}"
            times = op_times[index] if op_times else None
            store.write_run(run_id, [row], {row_key(row): values},
                            op_times={row_key(row): times} if times else None)
            run_ids.append(run_id)
    return run_ids


def _json(value: dict) -> str:
    import json

    return json.dumps(value, sort_keys=True)
