"""The ``benchmark_model`` binary a phone runs: the user's build, or an official prebuilt, installed once.

``--benchmark-binary PATH`` pushes the user's build. Otherwise the prebuilt for the device's ABI comes from
:data:`PREBUILT` (URL and sha256 in this one place), downloaded once into ``$XDG_CACHE_HOME/mnbench`` (default
``~/.cache/mnbench``) and used only when its sha256 matches. The binary lives at :data:`DEVICE_BINARY` and is
pushed again only when ``sha256sum`` on the device disagrees with the local file's hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .errors import BenchError
from .tflite_file import sha256

from .errors import CommandFailed, TransferFailed
from .transport import Transport, join

logger = logging.getLogger(__name__)

DEVICE_DIR = "/data/local/tmp/mnbench"
DEVICE_BINARY = f"{DEVICE_DIR}/benchmark_model"
DOWNLOAD_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Prebuilt:
    """Where the official binary for one ABI comes from; ``sha256`` None means "not pinned"."""

    url: str
    sha256: str | None


# TFLite's benchmark_model (the --use_xnnpack/--use_gpu/--use_nnapi flags mnbench passes), from
# tensorflow/lite/g3doc/performance/measurement.md. Only the rolling "nightly/latest" path is documented: its
# content changes with every nightly, so no checksum can be pinned for it, and mnbench refuses to run an
# unchecked download. To use a prebuilt, download it yourself, check it, and pass --benchmark-binary PATH;
# or put a versioned URL and its sha256 here. (LiteRT's versioned storage.googleapis.com/litert/binaries/
# builds are a different tool, //litert/tools:benchmark_model, with other flags.) Nothing here has been
# downloaded or run by mnbench's tests.
_NIGHTLY = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/"
            "nightly/latest")
PREBUILT: dict[str, Prebuilt] = {
    "arm64-v8a": Prebuilt(f"{_NIGHTLY}/android_aarch64_benchmark_model", sha256=None),
    "armeabi-v7a": Prebuilt(f"{_NIGHTLY}/android_arm_benchmark_model", sha256=None),
}

_download_lock = threading.Lock()  # one download at a time: two phones with one ABI share the file


class BinaryUnavailable(BenchError):
    """No benchmark_model can be used for a device (no prebuilt, unpinned, download or checksum failed)."""


@dataclass(frozen=True)
class BenchmarkBinary:
    """A local ``benchmark_model`` file and where it came from (``source``: ``user`` or ``prebuilt``)."""

    path: Path
    sha256: str
    source: str
    url: str | None = None

    def describe(self) -> dict:
        """For ``target_desc``: which binary produced a result."""
        return {"source": self.source, "sha256": self.sha256, "url": self.url,
                "file": self.path.name if self.source == "user" else None}




def user_binary(path: Path) -> BenchmarkBinary:
    """The user's build given with ``--benchmark-binary``.

    Raises:
        BinaryUnavailable: the path is not a readable file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BinaryUnavailable(f"--benchmark-binary {path}: no such file")
    return BenchmarkBinary(path, sha256(path), "user")


def cache_dir() -> Path:
    """mnbench's download cache: ``$XDG_CACHE_HOME/mnbench``, else ``~/.cache/mnbench``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / "mnbench"


def prebuilt_binary(abis: Sequence[str], table: Mapping[str, Prebuilt] | None = None,
                    cache: Path | None = None) -> BenchmarkBinary:
    """The official binary for the first ABI of ``abis`` that :data:`PREBUILT` lists, downloaded once.

    Raises:
        BinaryUnavailable: no entry for these ABIs, the entry has no pinned sha256, the download failed or
            the file's sha256 differs from the pinned one.
    """
    table = PREBUILT if table is None else table
    abi = next((name for name in abis if name in table), None)
    if abi is None:
        listed = ", ".join(abis) or "unknown"
        raise BinaryUnavailable(f"no prebuilt benchmark_model for ABI {listed}: pass --benchmark-binary PATH "
                                "(build it with bazel, see the README)")
    entry = table[abi]
    if not entry.sha256:
        raise BinaryUnavailable(
            f"the prebuilt benchmark_model for {abi} ({entry.url}) has no pinned sha256, so mnbench will not "
            "run it unchecked: download and check it yourself and pass --benchmark-binary PATH, or pin its "
            "checksum in device_bench.binary.PREBUILT")
    target = (cache or cache_dir()) / "benchmark_model" / abi / entry.sha256 / "benchmark_model"
    with _download_lock:
        if not (target.is_file() and sha256(target) == entry.sha256):
            _download(entry, target)
    return BenchmarkBinary(target, entry.sha256, "prebuilt", entry.url)


def _download(entry: Prebuilt, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    logger.info("downloading %s", entry.url)
    try:
        with urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(partial, "wb") as handle:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                handle.write(chunk)
        if digest.hexdigest() != entry.sha256:
            raise BinaryUnavailable(f"{entry.url}: sha256 {digest.hexdigest()} differs from the pinned "
                                    f"{entry.sha256}; the file was not used")
        partial.chmod(0o755)
        os.replace(partial, target)
    except (urllib.error.URLError, OSError) as error:
        raise BinaryUnavailable(f"cannot download {entry.url}: {error}; pass --benchmark-binary PATH "
                                "instead") from error
    finally:
        partial.unlink(missing_ok=True)


def device_sha256(transport: Transport, remote: str = DEVICE_BINARY,
                  timeout_s: float = INSTALL_TIMEOUT_S) -> str | None:
    """sha256 of a device file (toybox ``sha256sum``); None when missing or the tool is absent."""
    completed = transport.shell(f"sha256sum {join([remote])} 2>/dev/null", timeout_s)
    words = completed.stdout.split()
    if completed.ok and words and len(words[0]) == 64:
        return words[0].lower()
    return None


def install(transport: Transport, binary: BenchmarkBinary, remote: str = DEVICE_BINARY,
            timeout_s: float = INSTALL_TIMEOUT_S) -> bool:
    """Make ``remote`` an executable copy of ``binary``; returns whether it had to be pushed.

    Raises:
        TransferFailed: after the push, the device's sha256 still differs.
        CommandFailed: ``chmod`` failed.
        DeviceError: the connection failed.
    """
    if device_sha256(transport, remote, timeout_s) == binary.sha256:
        logger.debug("%s already holds sha256 %s", remote, binary.sha256)
        return False
    folder = posixpath.dirname(remote)
    made = transport.shell(f"mkdir -p {join([folder])}", timeout_s)  # old adbd may not create parents
    if not made.ok:
        raise CommandFailed(f"mkdir -p {join([folder])}", made.returncode, made.stderr or made.stdout)
    transport.push(binary.path, remote)
    command = f"chmod 755 {join([remote])} && {{ sha256sum {join([remote])} 2>/dev/null || true; }}"
    completed = transport.shell(command, timeout_s)
    if not completed.ok:
        raise CommandFailed(command, completed.returncode, completed.stderr or completed.stdout)
    words = completed.stdout.split()
    if words and len(words[0]) == 64 and words[0].lower() != binary.sha256:
        raise TransferFailed(f"{remote} on the device has sha256 {words[0]} after the push, expected "
                             f"{binary.sha256}")
    return True

