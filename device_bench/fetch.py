"""Files fetched once over HTTP(S) into mnbench's cache, trusted on first use like a package lock file.

:func:`fetch` streams a URL into a temporary file in the cache folder, checks its length against
``Content-Length`` and its sha256 against what is expected, fsyncs it and renames it into place, so the
cache never holds a partial file. The first download of a URL records its sha256 in ``binaries.lock.json``
in the cache; a later download of that URL (the cached file was removed, or a new cache file) must have the
same hash, or it is refused. An explicit pin (``--benchmark-sha256``) is checked instead of the lock entry,
and replaces it. A process-wide lock (``fcntl.flock`` on a file in the cache) makes concurrent mnbench
processes download a file once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import DownloadFailed
from .tflite_file import sha256

logger = logging.getLogger(__name__)

LOCK_FILE = "binaries.lock.json"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20
_thread_lock = threading.Lock()  # flock() serialises processes; this serialises this process's threads


@dataclass(frozen=True)
class Fetched:
    """A cached copy of ``url``: its local path and sha256; ``downloaded`` is False when the cache had it."""

    url: str
    path: Path
    sha256: str
    downloaded: bool


def cache_path(cache: Path, url: str) -> Path:
    """Where ``url`` is cached: one folder per URL (its sha256 prefix), named like the URL's last part."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    return cache / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:20] / name


def read_lock(cache: Path) -> dict[str, dict]:
    """The lock file's entries, ``{url: {"sha256": ..., "size_bytes": ...}}``; empty when absent.

    Raises:
        DownloadFailed: the lock file exists but is not a JSON object (edited by hand?).
    """
    path = cache / LOCK_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise DownloadFailed(f"cannot read the hash lock file {path}: {error}; fix or remove it") from None
    if not isinstance(entries, dict):
        raise DownloadFailed(f"the hash lock file {path} is not a JSON object; fix or remove it")
    return entries


def fetch(url: str, cache: Path, pin_sha256: str | None = None, executable: bool = False,
          timeout_s: float = DOWNLOAD_TIMEOUT_S, hint: str = "") -> Fetched:
    """A verified local copy of ``url``, downloaded at most once.

    Args:
        url: what to fetch (http, https or file).
        cache: the cache folder (created if needed).
        pin_sha256: the hash the file must have; None = the lock file's entry, or trust on first use.
        executable: make the cached file executable.
        timeout_s: socket timeout of the download.
        hint: appended to every error message (e.g. what to pass instead).

    Raises:
        DownloadFailed: offline, an HTTP error, a truncated body, a hash that differs from the pin or the
            lock entry, or the cache cannot be written. No partial file is left behind.
    """
    cache = Path(cache)
    suffix = f"; {hint}" if hint else ""
    target = cache_path(cache, url)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _cache_locked(cache):
            entries = read_lock(cache)
            recorded = (entries.get(url) or {}).get("sha256")
            expected = pin_sha256.lower() if pin_sha256 else recorded
            if target.is_file() and (expected is None or sha256(target) == expected):
                digest = expected or sha256(target)
                if recorded != digest:
                    _record(cache, entries, url, digest, target.stat().st_size)
                return Fetched(url, target, digest, downloaded=False)
            digest, size = _download(url, target, expected, recorded, pin_sha256 is not None, executable,
                                     timeout_s, suffix)
            if recorded != digest:
                _record(cache, entries, url, digest, size)
            return Fetched(url, target, digest, downloaded=True)
    except OSError as error:
        raise DownloadFailed(f"cannot store {url} in the cache {cache}: {error}{suffix}") from error


def _download(url: str, target: Path, expected: str | None, recorded: str | None, pinned: bool,
              executable: bool, timeout_s: float, suffix: str) -> tuple[str, int]:
    """Stream url into a temporary file beside target, check it, fsync, rename; returns (sha256, size)."""
    logger.warning("downloading %s", url)
    digest, size = hashlib.sha256(), 0
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial",
                                         delete=False)
    partial = Path(handle.name)
    try:
        with handle:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    announced = response.headers.get("Content-Length")
                    while chunk := response.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
            except urllib.error.HTTPError as error:
                raise DownloadFailed(
                    f"cannot download {url}: HTTP {error.code} {error.reason}{suffix}") from None
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", None) or error
                raise DownloadFailed(f"cannot download {url}: {reason}{suffix}") from None
            if announced is not None and announced.isdigit() and int(announced) != size:
                raise DownloadFailed(f"download of {url} was truncated: {size} of {announced} bytes{suffix}")
            handle.flush()
            os.fsync(handle.fileno())
        got = digest.hexdigest()
        if expected is not None and got != expected:
            origin = "--benchmark-sha256" if pinned else f"the first download (recorded in {LOCK_FILE})"
            raise DownloadFailed(f"{url} now has sha256 {got}, not {expected} from {origin}: refused"
                                 + (" (remove its entry from the lock file if the new file is trusted)"
                                    if not pinned else "") + suffix)
        if recorded is not None and pinned and recorded != got:
            logger.warning("%s: pinned sha256 %s replaces the recorded %s", url, got, recorded)
        partial.chmod(0o755 if executable else 0o644)
        os.replace(partial, target)
        _fsync_dir(target.parent)
        return got, size
    finally:
        partial.unlink(missing_ok=True)


def _record(cache: Path, entries: dict, url: str, sha256: str, size: int) -> None:
    """Write the lock file atomically with url's entry set."""
    entries = {**entries, url: {"sha256": sha256, "size_bytes": size}}
    with tempfile.NamedTemporaryFile("w", dir=cache, prefix=f".{LOCK_FILE}.", delete=False,
                                     encoding="utf-8") as handle:
        json.dump(entries, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, cache / LOCK_FILE)
    _fsync_dir(cache)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _cache_locked(cache: Path) -> Iterator[None]:
    with _thread_lock, open(cache / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
