"""The ``benchmark_model`` a phone runs: the user's build, or Google's prebuilt for this LiteRT release.

``--benchmark-binary PATH`` pushes the user's build. Otherwise mnbench uses the prebuilt that Google publishes
per LiteRT release (the layout Google's own ``litert-cli`` 0.2.1 uses, ``litert_cli/core/constants.py``)::

    $MNBENCH_BINARIES_URL/<ai-edge-litert version>/android_arm64/benchmark_model

(default base ``https://storage.googleapis.com/litert/binaries``; ``nightly`` for
``ai-edge-litert-nightly``), so the phone runs the same LiteRT release as the host interpreter. That
prebuilt is LiteRT's CompiledModel benchmark (``//litert/tools:benchmark_model``,
https://ai.google.dev/edge/litert/next/benchmark), which ``--delegate gpu|npu`` drive with its accelerator
flags (:func:`device_bench.android_run.benchmark_argv`). Only arm64-v8a is published. The download is
cached in ``$MNBENCH_CACHE_DIR`` (default ``~/.cache/mnbench``) and
trusted on first use (:mod:`device_bench.fetch`); ``--benchmark-sha256`` pins it. The binary lives at
:data:`DEVICE_BINARY` and is pushed again only when ``sha256sum`` on the device disagrees with the local
file's hash.

Which tool a binary is decides the flags it is given (:data:`TOOLS`): the prebuilt is known to be the
CompiledModel benchmark from where it comes from; a user's build is asked once per phone session with
``--help`` (:func:`probe_tool`). Both tools print their flag list for ``--help`` (``Flags::Usage`` in
``tflite/tools/command_line_flags.cc``: one ``--name=default  type  optional  help`` line per flag, on
stderr). The classic tool (``tflite/tools/benchmark/benchmark_main.cc``) then says ``Benchmarking failed.``
and exits 1; the CompiledModel tool (``litert/tools/benchmark_litert_model_main.cc``) first prints ``NPU
Vendor Flags from LiteRT:`` on stdout and exits 0. Only the flag names are read, never the exit status.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import BenchError, BenchInputError, CommandFailed, TransferFailed
from .fetch import cache_path, fetch, read_lock
from .tflite_file import sha256
from .transport import Transport, join

logger = logging.getLogger(__name__)

DEVICE_DIR = "/data/local/tmp/mnbench"
DEVICE_BINARY = f"{DEVICE_DIR}/benchmark_model"
INSTALL_TIMEOUT_S = 60.0
DEFAULT_BINARIES_URL = "https://storage.googleapis.com/litert/binaries"
TOOL = "benchmark_model"
PREBUILT_FOLDERS = {"arm64-v8a": "android_arm64"}  # ABI -> folder in Google's release layout
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FIX = "pass --benchmark-binary PATH (your own build) instead"
COMPILED_MODEL = "compiled_model"  # LiteRT's litert/tools/benchmark_litert_model (the prebuilt)
CLASSIC = "classic"                # TFLite's tflite/tools/benchmark/benchmark_tflite_model
TOOLS = (COMPILED_MODEL, CLASSIC)
PREBUILT_TOOL = COMPILED_MODEL     # //litert/tools:benchmark_model (ai.google.dev/edge/litert/next/benchmark)
# Flags only one tool defines (benchmark_litert_model.h GetFlags(); benchmark_tflite_model.cc GetFlags() and
# tflite/tools/delegates/xnnpack_delegate_provider.cc), as Flags::Usage prints them: "--name=default".
_TOOL_MARKS = {COMPILED_MODEL: re.compile(r"--(?:use_profiler|use_npu|dispatch_library_path)="
                                          r"|NPU Vendor Flags from LiteRT"),
               CLASSIC: re.compile(r"--(?:enable_op_profiling|use_xnnpack|use_nnapi)=")}


class BinaryUnavailable(BenchInputError):
    """No benchmark_model can be used (a missing or mismatching ``--benchmark-binary``, a malformed pin, no
    prebuilt for the phone's ABI); reaching the command line, it is bad input (exit 2)."""


@dataclass(frozen=True)
class BenchmarkBinary:
    """A local ``benchmark_model`` file, its sha256, and where it came from.

    Attributes:
        kind: ``user`` (``--benchmark-binary``) or ``prebuilt`` (downloaded).
        source: the URL it was downloaded from, or the user's absolute path.
        tool: which tool it is (:data:`TOOLS`) when known without asking it (the prebuilt), else None.
    """

    path: Path
    sha256: str
    kind: str
    source: str
    tool: str | None = None

    def describe(self) -> dict:
        """For ``target_desc``: which binary produced a result."""
        return {"kind": self.kind, "sha256": self.sha256, "source": self.source}


@dataclass(frozen=True)
class BinaryChoice:
    """What the user asked for: their build (``path``) or the prebuilt, optionally pinned to a sha256.

    Raises:
        BinaryUnavailable: (on construction) a pin that is not 64 hex digits.
    """

    path: Path | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise BinaryUnavailable(f"--benchmark-sha256 {self.sha256!r} is not 64 hexadecimal digits")

    def user(self) -> BenchmarkBinary | None:
        """The user's build, checked against the pin; None when the prebuilt is wanted."""
        return None if self.path is None else user_binary(self.path, self.sha256)

    def for_abis(self, abis: Sequence[str], cache: Path | None = None) -> BenchmarkBinary:
        """The binary for a phone with these ABIs (the user's build, or the prebuilt, fetched once)."""
        return self.user() or prebuilt_binary(abis, self.sha256, cache)


def user_binary(path: Path, pin_sha256: str | None = None) -> BenchmarkBinary:
    """The user's build given with ``--benchmark-binary``.

    Raises:
        BinaryUnavailable: the path is not a readable file, or its sha256 is not the pinned one.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BinaryUnavailable(f"--benchmark-binary {path}: no such file")
    digest = sha256(path)
    if pin_sha256 and digest != pin_sha256.lower():
        raise BinaryUnavailable(f"--benchmark-binary {path} has sha256 {digest}, not the pinned "
                                f"--benchmark-sha256 {pin_sha256.lower()}: refused")
    return BenchmarkBinary(path, digest, "user", str(path.resolve()))


def cache_dir() -> Path:
    """mnbench's download cache: ``$MNBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mnbench``, else
    ``~/.cache/mnbench``."""
    own = os.environ.get("MNBENCH_CACHE_DIR", "").strip()
    if own:
        return Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / "mnbench"


def litert_release() -> str:
    """The LiteRT release whose prebuilts to use: the installed ``ai-edge-litert`` version, or ``nightly``.

    Raises:
        BinaryUnavailable: neither ``ai-edge-litert`` nor ``ai-edge-litert-nightly`` is installed.
    """
    for package, release in (("ai-edge-litert", None), ("ai-edge-litert-nightly", "nightly")):
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
        return release or version
    raise BinaryUnavailable(f"ai-edge-litert is not installed, so no LiteRT release names a prebuilt "
                            f"benchmark_model; {_FIX}")


def prebuilt_url(abi: str, release: str | None = None, base: str | None = None) -> str:
    """The URL of Google's prebuilt for one ABI (see the module docstring).

    Raises:
        BinaryUnavailable: Google publishes no prebuilt for this ABI.
    """
    folder = PREBUILT_FOLDERS.get(abi)
    if folder is None:
        raise BinaryUnavailable(f"no prebuilt benchmark_model for the phone's ABI {abi or 'unknown'} (Google "
                                f"publishes {', '.join(PREBUILT_FOLDERS)} only): {_FIX}")
    base = (base or os.environ.get("MNBENCH_BINARIES_URL", "").strip() or DEFAULT_BINARIES_URL).rstrip("/")
    return f"{base}/{release or litert_release()}/{folder}/{TOOL}"


def prebuilt_abi(abis: Sequence[str]) -> str:
    """The ABI of ``abis`` (the phone's ``ro.product.cpu.abilist``) that has a prebuilt, else the first."""
    return next((abi for abi in abis if abi in PREBUILT_FOLDERS), abis[0] if abis else "unknown")


def prebuilt_binary(abis: Sequence[str], pin_sha256: str | None = None,
                    cache: Path | None = None) -> BenchmarkBinary:
    """Google's prebuilt for a phone with these ABIs, downloaded once into the cache and hash-checked.

    Raises:
        BinaryUnavailable: no prebuilt for these ABIs, or no LiteRT release installed.
        DownloadFailed: offline, HTTP error, truncated, or a sha256 other than the pinned or recorded one.
    """
    url = prebuilt_url(prebuilt_abi(abis))
    fetched = fetch(url, cache or cache_dir(), pin_sha256, executable=True,
                    hint=f"or {_FIX}")
    return BenchmarkBinary(fetched.path, fetched.sha256, "prebuilt", url, PREBUILT_TOOL)


def readiness(transport: Transport, abis: Sequence[str], choice: BinaryChoice, cache: Path | None = None,
              timeout_s: float = INSTALL_TIMEOUT_S) -> str:
    """Whether a phone is ready to run, for ``mnbench devices --check``; downloads nothing.

    Returns one of ``ready``, ``will push ...``, ``will download ...``, or ``no ...: pass ...``.
    """
    on_device = device_sha256(transport, DEVICE_BINARY, timeout_s)
    try:
        local = choice.user()
        if local is None:
            url = prebuilt_url(prebuilt_abi(abis))
            cache = cache or cache_dir()
            recorded = (read_lock(cache).get(url) or {}).get("sha256")
            wanted = choice.sha256.lower() if choice.sha256 else recorded
            if wanted is None or not cache_path(cache, url).is_file():
                return f"will download {url}"
            if on_device == wanted:
                return f"ready ({url}, sha256 {wanted[:12]})"
            return f"will push the cached {url} (sha256 {wanted[:12]})"
    except BenchError as error:
        return f"not ready: {error}"
    if on_device == local.sha256:
        return f"ready ({local.source}, sha256 {local.sha256[:12]})"
    return f"will push {local.source} (sha256 {local.sha256[:12]})"


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



def tool_from_help(text: str) -> str | None:
    """Which tool printed this ``--help`` output (:data:`TOOLS`); None when its flags name neither."""
    found = [tool for tool, mark in _TOOL_MARKS.items() if mark.search(text)]
    return found[0] if len(found) == 1 else None


def probe_tool(transport: Transport, remote: str = DEVICE_BINARY,
               timeout_s: float = INSTALL_TIMEOUT_S) -> tuple[str | None, str]:
    """Ask an installed binary which tool it is: ``(tool or None, what its --help output was)``.

    Raises:
        DeviceError: the connection failed.
    """
    completed = transport.shell(f"{join([remote, '--help'])} 2>&1", timeout_s)
    text = completed.stdout + completed.stderr
    tool = tool_from_help(text)
    if tool is not None:
        return tool, "--help"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return None, (f"--help (exit status {completed.returncode}) names neither tool's flags"
                  + (f"; it printed {first[:80]!r}" if first else "; it printed nothing"))
